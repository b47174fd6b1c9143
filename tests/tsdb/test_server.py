"""The HTTP server, spoken to by TDengine's own REST client (taospy's taosrest) and by raw HTTP."""

import datetime as dt
import json

import httpx
import pytest
import taosrest
import taosrest.errors

from septet.tsdb.connection import connect

from .server_util import ThreadServer

ROOT = ("root", "taosdata")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ThreadServer(tmp_path_factory.mktemp("srv"), fsync="off") as s:
        yield s


def test_taosrest_client_creates_inserts_and_queries(server):
    conn = taosrest.connect(url=server.url, user="root", password="taosdata")
    assert "septet" in conn.server_info
    cur = conn.cursor()
    cur.execute("CREATE DATABASE power PRECISION 'ms'")
    cur.execute(
        "CREATE STABLE power.meters (ts TIMESTAMP, current FLOAT, voltage INT, phase FLOAT) "
        "TAGS (location VARCHAR(64), groupid INT)"
    )
    n = cur.execute(
        "INSERT INTO power.d1001 USING power.meters TAGS ('California.SanFrancisco', 2) VALUES "
        "('2018-10-03 14:38:05.000', 10.3, 219, 0.31) ('2018-10-03 14:38:15.000', 12.6, 218, 0.33)"
    )
    assert n == 2 and cur.affected_rows == 2
    cur.execute("SELECT ts, voltage, location FROM power.meters ORDER BY ts")
    assert cur.rowcount == 2
    assert [d[0] for d in cur.description] == ["ts", "voltage", "location"]
    rows = cur.fetchall()
    assert [r[1:] for r in rows] == [
        [219, "California.SanFrancisco"],
        [218, "California.SanFrancisco"],
    ]
    # taosrest turned TDengine's RFC 3339 UTC strings into (naive, local-time) datetimes.
    utc = [r[0].astimezone(dt.UTC) for r in rows]
    assert utc[0] == dt.datetime(2018, 10, 3, 14, 38, 5, tzinfo=dt.UTC)
    # The per-database URL, as taosrest.connect(database=...) uses it.
    client = taosrest.RestClient(server.url, database="power")
    body = client.sql("SELECT count(*), max(voltage) FROM meters")
    assert body["data"] == [[2, 219]] and body["column_meta"][1][1] == "INT"
    body = client.sql("SELECT current FROM meters ORDER BY ts")
    assert body["data"] == [[10.3], [12.6]] and body["column_meta"][0][1] == "FLOAT"


def test_rest_body_types_and_errors(server):
    auth = ROOT
    httpx.post(
        f"{server.url}/rest/sql",
        content="CREATE DATABASE IF NOT EXISTS t1 PRECISION 'us'",
        auth=auth,
    )
    r = httpx.post(
        f"{server.url}/rest/sql/t1",
        content="CREATE TABLE x (ts TIMESTAMP, b BOOL, f DOUBLE, s NCHAR(8)); "
        "INSERT INTO x VALUES (1700000000000001, true, 1.5, 'héllo')",
        auth=auth,
    )
    assert r.json() == {
        "code": 0,
        "column_meta": [["affected_rows", "INT", 4]],
        "data": [[1]],
        "rows": 1,
    }
    r = httpx.post(f"{server.url}/rest/sql/t1", content="SELECT * FROM x", auth=auth).json()
    assert r["data"] == [["2023-11-14T22:13:20.000001Z", True, 1.5, "héllo"]]
    assert [m[1] for m in r["column_meta"]] == ["TIMESTAMP", "BOOL", "DOUBLE", "VARCHAR"]
    r = httpx.post(f"{server.url}/rest/sql/t1", content="SELECT * FROM nope", auth=auth).json()
    assert r["code"] != 0 and "nope" in r["desc"]
    r = httpx.post(f"{server.url}/rest/sql", content="SELEC 1", auth=auth).json()
    assert r["code"] == 0x2600 and "syntax error" in r["desc"]


def test_every_endpoint_needs_the_right_password(server):
    for method, path in [
        ("GET", "/health"),
        ("POST", "/rest/sql"),
        ("POST", "/influxdb/v1/write?db=x"),
        ("POST", "/opentsdb/v1/put/telnet/x"),
    ]:
        for auth in [None, ("root", "wrong"), ("nobody", "taosdata")]:
            r = httpx.request(method, server.url + path, content="SHOW DATABASES", auth=auth)
            assert r.status_code == 401, (path, auth)
            assert r.json()["code"] != 0 and "desc" in r.json()
    assert httpx.get(server.url + "/health", auth=ROOT).json()["status"] == "ok"
    with pytest.raises(taosrest.errors.HTTPError, match="401"):
        taosrest.connect(url=server.url, password="wrong").cursor().execute("SHOW DATABASES")


def test_users_are_created_changed_dropped_and_read_only(server):
    def sql(text, auth=ROOT):
        return httpx.post(f"{server.url}/rest/sql", content=text, auth=auth)

    sql("CREATE DATABASE IF NOT EXISTS u1")
    sql("CREATE TABLE u1.t (ts TIMESTAMP, v INT)")
    assert sql("CREATE USER alice PASS 'Secret1'").json()["code"] == 0
    assert sql("CREATE USER reader PASS 'r3ad' READONLY").json()["code"] == 0
    assert (
        sql("INSERT INTO u1.t VALUES (1700000000000, 1)", ("alice", "Secret1")).json()["code"] == 0
    )
    r = sql("INSERT INTO u1.t VALUES (1700000001000, 2)", ("reader", "r3ad"))
    assert r.status_code == 403 and "read-only" in r.json()["desc"]
    assert sql("SELECT v FROM u1.t", ("reader", "r3ad")).json()["data"] == [[1]]
    r = sql("CREATE USER mallory PASS 'x'", ("alice", "Secret1"))
    assert r.status_code == 403
    assert sql("ALTER USER alice PASS 'Secret2'", ("alice", "Secret1")).json()["code"] == 0
    assert sql("SHOW DATABASES", ("alice", "Secret1")).status_code == 401
    assert sql("SHOW DATABASES", ("alice", "Secret2")).status_code == 200
    names = [r[0] for r in sql("SHOW USERS").json()["data"]]
    assert names == ["alice", "reader", "root"]
    assert sql("DROP USER alice").json()["code"] == 0
    assert sql("SHOW DATABASES", ("alice", "Secret2")).status_code == 401
    # Stored hashed: the password is nowhere in the users file.
    text = (server.directory / "users.json").read_text()
    assert "r3ad" not in text and "taosdata" not in text


def test_verified_credentials_are_remembered_until_the_password_changes(tmp_path):
    import base64

    from septet.tsdb.server import Server
    from septet.tsdb.users import AuthError

    def basic(name, password):
        return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()

    server = Server(tmp_path, fsync="off")
    try:
        server.users.create("bob", "pw1")
        old = basic("bob", "pw1")
        bob = server.authenticate(old)
        assert server.authenticate(old) is bob  # the second time from the cache
        server.users.set_read_only("bob", True)  # a privilege change shows at once
        assert server.authenticate(old).read_only
        server.users.set_password("bob", "pw2")
        with pytest.raises(AuthError):
            server.authenticate(old)  # the cached header no longer lets bob in
        assert server.authenticate(basic("bob", "pw2")).name == "bob"
        server.users.drop("bob")
        with pytest.raises(AuthError):
            server.authenticate(basic("bob", "pw2"))
        server.users.create("bob", "pw1")  # a new bob with the first password again
        assert server.authenticate(old) is not bob
        with pytest.raises(AuthError):
            server.authenticate(basic("root", "wrong"))
    finally:
        server.close()


def test_unknown_endpoints_and_methods(server):
    r = httpx.get(server.url + "/nope", auth=ROOT)
    assert r.status_code == 404 and r.json()["code"] != 0
    r = httpx.get(server.url + "/rest/sql", auth=ROOT)
    assert r.status_code == 405 and "POST" in r.json()["desc"]
    r = httpx.post(server.url + "/influxdb/v1/write", content="m v=1", auth=ROOT)
    assert r.status_code == 400 and "db=" in r.json()["desc"]


def test_request_body_limit(tmp_path):
    with ThreadServer(tmp_path, fsync="off", max_body_bytes=1000) as s:
        r = httpx.post(f"{s.url}/rest/sql", content="SELECT 1 " + " " * 2000, auth=ROOT)
        assert r.status_code == 413 and r.json()["code"] != 0


def test_an_idle_keep_alive_connection_outlives_clients_pooling_times(server):
    """A connection left idle for 6 s still answers its next request. With uvicorn's default
    keep-alive of 5 s the server closed it, and a client (httpx pools connections for 5 s)
    reusing it at that moment got "server disconnected" with no answer: the failure of a
    1,000-host benchmark run during double-groupby-5."""
    import base64
    import socket
    import time

    auth = base64.b64encode(b"root:taosdata")
    body = b"SELECT server_version()"
    request = (
        b"POST /rest/sql HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + auth + b"\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )

    def answer(sock: socket.socket) -> bytes:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                return data  # closed by the server
            data += chunk
        return data

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        assert answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6)
        assert answer(sock).startswith(b"HTTP/1.1 200"), "the idle connection was closed"


def test_graceful_shutdown_flushes(tmp_path):
    with ThreadServer(tmp_path, fsync="off") as s:
        httpx.post(
            f"{s.url}/rest/sql",
            content="CREATE DATABASE g; CREATE TABLE g.t "
            "(ts TIMESTAMP, v INT); INSERT INTO g.t VALUES (1700000000000, 7)",
            auth=ROOT,
        )
    assert list(tmp_path.glob("g/p*/*.seg"))  # the memtable went to a segment on shutdown
    with connect(tmp_path) as con:
        assert con.execute("SELECT v FROM g.t").fetchall() == [(7,)]


@pytest.mark.parametrize("n", [0, 1, 37])
def test_small_results_are_the_rest_body_and_the_columnar_writers_values(n, monkeypatch):
    """The writer of small answers writes the values of rest_body, and the columnar writer of
    large ones the same: NULLs, escapes, non-ASCII, NaN and infinities as null (JSON has
    neither), float32, every type; a planned query's answer too."""
    import json

    import numpy as np
    import pyarrow as pa

    import septet.tsdb.rest_format as rf
    from septet.tsdb.executor import Result

    rng = np.random.default_rng(n)
    v = rng.normal(size=n) * 10.0 ** rng.integers(-8, 20, size=n)
    v[::5] = np.nan
    v[1::9] = np.inf
    v[2::9] = -np.inf
    v[3::9] = np.round(v[3::9])  # whole numbers
    table = pa.table(
        {
            "ts": pa.array(T_MS + np.arange(n) * 1001, pa.timestamp("ms")),
            "host": pa.array([f'h"{i % 7}\\é\n' if i % 4 else None for i in range(n)]),
            "v": pa.array(v),
            "f": pa.array(v, pa.float32()),
            "i": pa.array([None if i % 6 == 1 else i - 20 for i in range(n)], pa.int64()),
            "b": pa.array([None if i % 3 == 0 else i % 2 == 0 for i in range(n)]),
        }
    )
    small = rf.rest_json(Result(table, 0))
    body = rf.rest_body(Result(table, 0))
    assert json.loads(small) == body
    assert all(x is None or np.isfinite(x) for row in body["data"] for x in row[2:4])
    columns = [("v", pa.float64(), v, None), ("f", pa.float32(), v.astype(np.float32), None)]
    assert rf.rest_json_columns(columns) == rf.rest_json(Result(table.select(["v", "f"]), 0))
    if n:  # the columnar writer is for tables with rows
        monkeypatch.setattr(rf, "SMALL_ROWS", 0)
        assert json.loads(rf.rest_json(Result(table, 0))) == body


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_large_results_are_written_column_by_column_as_the_row_writer_would(unit):
    import json

    import numpy as np
    import pyarrow as pa

    from septet.tsdb.executor import Result
    from septet.tsdb.rest_format import rest_body, rest_json

    n = 1500  # 1500 rows x 9 columns: the columnar writer
    per_s = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit] + 7  # sub-second digits too
    rng = np.random.default_rng(5)
    v = rng.normal(size=n) * 10.0 ** rng.integers(-8, 20, size=n)
    v[::97] = np.nan
    table = pa.table(
        {
            "ts": pa.array(rng.integers(-(10**9), 10**9, size=n) * per_s, pa.timestamp(unit)),
            "host": pa.array([f'h"{i % 7}\\é\n' if i % 11 else None for i in range(n)]),
            "tag": pa.array([f"t{i % 3}" for i in range(n)]).dictionary_encode(),
            "v": pa.array(v),
            "f": pa.array(v, pa.float32()),
            "i": pa.array(rng.integers(-(2**62), 2**62, size=n), pa.int64()),
            "u": pa.array(rng.integers(0, 200, size=n), pa.uint8()),
            "b": pa.array([None if i % 13 == 0 else i % 2 == 0 for i in range(n)]),
            "n": pa.array([None if i % 3 else float(i) for i in range(n)]),
        }
    )
    assert json.loads(rest_json(Result(table, 0))) == rest_body(Result(table, 0))
    narrow = table.select(["ts", "v"]).slice(0, 300)  # 300 rows x 2: columnar too
    assert json.loads(rest_json(Result(narrow, 0))) == rest_body(Result(narrow, 0))


def test_a_large_result_formatted_in_slices_on_threads_is_the_same_text(monkeypatch):
    """Slices of rows formatted on the thread pool and joined give the bytes that formatting
    the whole table at once gives (column types of every kind, NULLs, escapes)."""
    import numpy as np
    import pyarrow as pa

    import septet.tsdb.rest_format as srv
    from septet.tsdb.executor import Result

    n = 2000
    rng = np.random.default_rng(11)
    v = rng.normal(size=n) * 10.0 ** rng.integers(-8, 20, size=n)
    v[::89] = np.nan
    table = pa.table(
        {
            "ts": pa.array(T_MS + rng.integers(0, 10**9, size=n), pa.timestamp("ms")),
            "host": pa.array([f'h"{i % 7}\\é' if i % 11 else None for i in range(n)]),
            "tag": pa.array([f"t{i % 3}" for i in range(n)]).dictionary_encode(),
            "v": pa.array(v),
            "f": pa.array(v, pa.float32()),
            "i": pa.array(rng.integers(-(2**62), 2**62, size=n), pa.int64()),
            "b": pa.array([None if i % 13 == 0 else i % 2 == 0 for i in range(n)]),
        }
    )
    result = Result(table, 0)
    monkeypatch.setattr(srv, "ROWS_PER_SLICE", 10**9)
    whole = srv.rest_json(result)
    monkeypatch.setattr(srv, "ROWS_PER_SLICE", 300)
    for cores in (2, 3, 7):
        monkeypatch.setattr(srv, "cores", lambda cores=cores: cores)
        assert srv.rest_json(result) == whole
    assert json.loads(whole)["rows"] == n


T_MS = 1_451_606_400_000  # 2016-01-01


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamp_column_texts_are_each_value_formatted_alone_quoted(unit):
    """The columnar timestamp writer (texts copied from tables into one byte array) writes
    what _format_ts writes for each value: any day from year 1 to 9999, before and after
    1970, NULLs, columns spanning a few days or thousands (dates per distinct day)."""
    import numpy as np
    import pyarrow as pa

    from septet.tsdb.rest_format import _format_ts, _timestamps_json

    per_day = 86_400 * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    rng = np.random.default_rng(4)
    spans = [(0, 2), (-3, 3), (16_800, 16_801), (-30, 4000), (16_000, 30_000)]
    if unit != "ns":  # nanoseconds reach 1677-2262 only
        spans += [(-719_162, -719_000), (2_932_800, 2_932_896), (-719_162, 2_932_896)]
    for lo, hi in spans:
        raw = rng.integers(lo * per_day, hi * per_day, size=3000)
        raw[:3] = [lo * per_day, hi * per_day - 1, 0 if lo <= 0 < hi else lo * per_day]
        valid = rng.random(3000) > 0.05
        col = pa.array(raw, pa.int64(), mask=~valid).cast(pa.timestamp(unit))
        got = _timestamps_json(col, unit).to_pylist()
        want = [
            json.dumps(_format_ts(int(x), unit)) if ok else None
            for x, ok in zip(raw, valid, strict=True)
        ]
        assert got == want, (lo, hi)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamp_texts_of_a_column_equal_each_value_formatted_alone(unit):
    import random

    from septet.tsdb.rest_format import _format_ts, _format_ts_list

    rng = random.Random(3)
    per_s = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    values = [rng.randint(-(10**10), 10**10) * per_s // 7 for _ in range(3000)]
    values += [None, 0, -1, 86_400 * per_s - 1, 1451606400 * per_s]
    texts = _format_ts_list(values, unit)
    assert texts == [_format_ts(v, unit) for v in values]
    assert (
        texts[-1]
        == "2016-01-01T00:00:00" + ("." + "0" * len(str(per_s)[1:]) if per_s > 1 else "") + "Z"
    )


def test_write_requests_are_parsed_together_and_written_in_turn(tmp_path, monkeypatch):
    """Line-protocol bodies sent at once are parsed at the same time (parsing touches no
    database and mostly runs without the GIL) but written one after the other: two inserts
    at once only slowed each other (see Server.__init__)."""
    import contextlib
    import threading
    import time

    import septet.tsdb.line_protocol as lp
    from septet.tsdb.server import Server

    def tracking(real):
        state = {"running": 0, "most": 0}
        barrier = threading.Barrier(4, timeout=0.3)

        def tracked(*args, **kw):
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            # Parsers meet at the barrier; writers, one holding the lock, cannot: it times out.
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
            time.sleep(0.02)
            try:
                return real(*args, **kw)
            finally:
                state["running"] -= 1

        return tracked, state

    parse, parsing = tracking(lp.parse_line_protocol)
    write, writing = tracking(lp.write_parsed)
    monkeypatch.setattr(lp, "parse_line_protocol", parse)
    monkeypatch.setattr(lp, "write_parsed", write)
    server = Server(tmp_path, fsync="off")
    try:
        root = server.users.authenticate("root", "taosdata")
        server.run_sql(root, "CREATE DATABASE w", None)
        lines = [f"m,host=h{i} v={i} {1700000000000 + i}".encode() for i in range(4)]
        threads = [
            threading.Thread(target=server.write_lines, args=(root, "w", b, "ms", "influx"))
            for b in lines
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert parsing["most"] == 4
        assert writing["most"] == 1
        assert server.run_sql(root, "SELECT count(*) FROM w.m", None).endswith(b'[[4]],"rows":1}')
    finally:
        server.close()


def test_quick_selects_run_on_the_event_loop_and_the_rest_on_the_pool(tmp_path):
    """A SELECT of a shape whose last run was quick (and whose credentials are known) skips
    the hop to a pool thread; a new shape, a slow one, other statements and new credentials
    keep it. The answers are the same either way."""
    import threading

    from septet.tsdb.server import INLINE_MS

    with ThreadServer(tmp_path, fsync="off") as s:
        server = s.app.server
        ran_on: list[str] = []
        real = server.run_sql

        def spy(*args):
            ran_on.append("pool" if threading.current_thread().name.startswith("tsdb-") else "loop")
            return real(*args)

        server.run_sql = spy

        def sql(text, auth=ROOT):
            r = httpx.post(f"{s.url}/rest/sql/q", content=text, auth=auth)
            assert r.status_code == 200 and r.json()["code"] == 0, r.text
            return r.json()["data"]

        httpx.post(f"{s.url}/rest/sql", content="CREATE DATABASE q", auth=ROOT)
        sql("CREATE TABLE t (ts TIMESTAMP, v INT)")
        sql("INSERT INTO t VALUES (1700000000000, 1) (1700000001000, 5) (1700000002000, 9)")
        ran_on.clear()
        assert sql("SELECT count(*) FROM t WHERE v > 2") == [[2]]  # a new shape: pool
        assert ran_on == ["pool"]
        for _ in range(5):  # the first run made the template too: slow on a loaded machine
            if max(server._last_ms.values()) < INLINE_MS:
                break
            sql("SELECT count(*) FROM t WHERE v > 1")
        ran_on.clear()
        assert sql("SELECT count(*) FROM t WHERE v > 6") == [[1]]  # quick last time: loop
        assert sql("SELECT count(*) FROM t WHERE v > 0") == [[3]]
        assert ran_on == ["loop", "loop"]
        ran_on.clear()
        server._last_ms = {k: 1000.0 for k in server._last_ms}  # the shape turned slow
        assert sql("SELECT count(*) FROM t WHERE v > 8") == [[1]]
        sql("SHOW DATABASES")
        sql("SHOW DATABASES")
        sql("CREATE USER reader PASS 'secret1' READONLY")
        new_auth = ("reader", "secret1")
        assert sql("SELECT count(*) FROM t WHERE v > 4", new_auth) == [[2]]  # scrypt: pool
        assert ran_on == ["pool", "pool", "pool", "pool", "pool"]


@pytest.mark.parametrize("n", [0, 1, 60, 300])
def test_answers_written_from_numpy_columns_are_those_of_their_arrow_table(n):
    """rest_json_columns (a planned query's answer, straight from numpy) writes the bytes that
    rest_json writes for the Arrow table of the same columns: every type an aggregate gives,
    NULLs, NaN, float32, timestamps of each precision, small and large answers."""
    import numpy as np
    import pyarrow as pa

    from septet.tsdb.executor import Result
    from septet.tsdb.rest_format import rest_json, rest_json_columns
    from septet.tsdb.segment import from_numpy_valid

    rng = np.random.default_rng(n)
    f = np.round(rng.normal(size=n) * 10.0 ** rng.integers(-6, 9, size=n), 3)
    f[::7] = np.nan
    some = rng.random(n) > 0.2
    columns = [
        (f"ts_{unit}", pa.timestamp(unit), T_MS * 10**k // 1000 + np.arange(n) * 60_000, None)
        for unit, k in (("s", 0), ("ms", 3), ("us", 6), ("ns", 9))
    ] + [
        ("f", pa.float64(), f, some),
        ("g", pa.float64(), f, None),
        ("h", pa.float32(), f.astype(np.float32), some),
        ("count(*)", pa.int64(), rng.integers(0, 99, size=n), None),
        ("i", pa.int32(), rng.integers(-(2**31), 2**31 - 1, size=n).astype(np.int32), some),
        ("u", pa.uint16(), rng.integers(0, 2**16, size=n).astype(np.uint16), None),
        ("b", pa.bool_(), rng.random(n) > 0.5, some),
    ]
    arrays = {
        name: pa.array(v, t) if ok is None else from_numpy_valid(v, ok, t)
        for name, t, v, ok in columns
    }
    assert rest_json_columns(columns) == rest_json(Result(pa.table(arrays), n))
