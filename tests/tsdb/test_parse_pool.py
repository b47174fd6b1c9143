"""Line protocol parsed half here, half in a parser process (septet.tsdb.parse_pool): the
same Rows as one parse, the first malformed line named by its place in the whole body,
the exact parser's lines and Fallback passed on, and a dead process replaced."""

import pytest

import septet.tsdb as tsdb
from septet.tsdb import parse_pool
from septet.tsdb.line_batch import Fallback, parse_rows
from septet.tsdb.line_protocol import LineProtocolError, write_parsed
from septet.tsdb.parse_pool import ParsePool

T0 = 1_700_000_000_000_000_000


def batch(n: int = 400) -> list[str]:
    lines = []
    for i in range(n):
        extra = ',note="a b"' if i % 97 == 0 else (",w=2i" if i > 250 else "")
        # Every 50 lines a (host, time) repeats: the later line must win.
        lines.append(f"cpu,host=h{i % 5} v={i * 0.25}{extra} {T0 + (i % 50) * 10**9}")
        if i % 50 == 0:
            lines.append(f"mem,host=h{i % 5},dc=x{i % 3} free={i}i {T0 + i}")
    return lines


def described(rows) -> list:
    out = []
    for r in rows:
        fields = {k: v.to_pylist() for k, v in r.fields.items()}
        for i, line in enumerate(r.lines.tolist()):
            tags = r.series[r.series_index[i]]
            out.append((line, r.measurement, tags, {k: v[i] for k, v in fields.items()}))
    return sorted(out, key=lambda t: t[0])


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.setattr(parse_pool, "SPLIT_BYTES", 0)
    p = ParsePool(1)
    yield p
    p.close()


def test_a_batch_parsed_in_two_processes_gives_the_rows_of_one_parse(pool, monkeypatch):
    answers = []
    receive = parse_pool._Parser.receive

    def recorded(self):
        answers.append(receive(self))
        return answers[-1]

    monkeypatch.setattr(parse_pool._Parser, "receive", recorded)
    body = "\n".join(batch()).encode()
    assert described(pool.parse(body)) == described(parse_rows(body))
    assert [kind for kind, _ in answers] == ["rows"]  # the parser process parsed its half
    # Written: the newest write of a repeated (host, time) wins across the halves.
    con = tsdb.connect(":memory:")
    con.execute("CREATE DATABASE db PRECISION 'ns' KEEP 36500")
    from septet.tsdb.line_protocol import parse_line_protocol

    write_parsed(con, "db", parse_line_protocol(body, pool), "ns")
    got = dict(con.execute("SELECT _ts, last(v) FROM db.cpu WHERE host = 'h1' GROUP BY _ts"))
    expected = {}
    for i in range(400):
        if i % 5 == 1:
            expected[T0 + (i % 50) * 10**9] = i * 0.25
    assert sorted(v for v in got.values()) == sorted(expected.values())


def test_errors_name_the_line_in_the_whole_body_and_fallback_is_passed_on(pool):
    lines = batch()
    late = [*lines[:380], "cpu,host=h1 v=1,n=3x 1700000000000", *lines[380:]]
    with pytest.raises(LineProtocolError, match=r"^line 381, column 19: .*'3x'"):
        pool.parse("\n".join(late).encode())
    both = [*late[:10], "cpu,host=h1 v=", *late[10:]]
    with pytest.raises(LineProtocolError, match=r"^line 11, "):
        pool.parse("\n".join(both).encode())
    huge = [*lines[:300], f"cpu,host=h1 v=1 {10**30}", *lines[300:]]  # not 64-bit: Fallback
    with pytest.raises(Fallback):
        pool.parse("\n".join(huge).encode())
    body = "\n".join(lines).encode()  # and the process still serves the next request
    assert described(pool.parse(body)) == described(parse_rows(body))


def test_a_parser_process_that_died_is_replaced(pool):
    body = "\n".join(batch()).encode()
    pool.parse(body)
    first = pool._all[0]
    first.proc.kill()
    first.proc.wait()
    assert described(pool.parse(body)) == described(parse_rows(body))  # parsed here
    assert described(pool.parse(body)) == described(parse_rows(body))  # a new process
    assert pool._all and pool._all[0] is not first


def test_a_server_splits_a_batch_only_when_a_core_is_free_for_the_parser(tmp_path, monkeypatch):
    """One write request alone: its batch is split; two at once, or one during a background
    flush: parsed whole (the other core is taken)."""
    import threading

    import septet.tsdb.line_protocol as lp
    from septet.tsdb.server import Server

    pools = []
    real = lp.parse_line_protocol
    meet = threading.Barrier(2, timeout=2)

    def tracked(text, pool=None):
        pools.append(pool)
        if len(pools) in (2, 3):  # the two concurrent requests wait for each other here
            meet.wait()
        return real(text, pool)

    monkeypatch.setattr(lp, "parse_line_protocol", tracked)
    server = Server(tmp_path, fsync="off", parse_processes=1)
    try:
        root = server.users.authenticate("root", "taosdata")
        server.run_sql(root, "CREATE DATABASE w", None)
        body = "\n".join(batch()).encode()
        server.write_lines(root, "w", body, "ns", "influx")
        assert pools == [server.parse_pool]
        threads = [
            threading.Thread(target=server.write_lines, args=(root, "w", body, "ns", "influx"))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(pools) == 3 and None in pools[1:]  # the later of the two parsed whole
        server.engine._background = ("a flush", 0)  # as if the flush process were at work
        try:
            server.write_lines(root, "w", body, "ns", "influx")
        finally:
            server.engine._background = None
        assert pools[3] is None
    finally:
        server.close()
