"""Background flush (EngineOptions.background_flush, septet.tsdb.flusher): the memtable is
frozen and a process of its own reads its rows back from the WAL and encodes them into
segments while writes and reads go on; the segments are committed when it is done; a failed
or interrupted flush loses nothing, however often the database is reopened."""

import time

import numpy as np
import pyarrow as pa

import septet.tsdb as tsdb
from septet.tsdb.flusher import Flusher

NOW_MS = int(time.time() * 1000) // 1000 * 1000


def make(path, **options):
    con = tsdb.connect(path, background_flush=True, memtable_bytes=40_000, **options)
    con.execute("CREATE DATABASE IF NOT EXISTS db KEEP 30 DURATION 1")
    con.execute("USE db")
    con.execute("CREATE STABLE IF NOT EXISTS m (ts TIMESTAMP, v DOUBLE) TAGS (site INT)")
    return con


def insert(con, model, rng, n=400):
    tb = [f"d{i}" for i in rng.integers(0, 7, n)]
    ts = (NOW_MS + rng.integers(0, 5000, n) * 1000).tolist()
    v = rng.normal(size=n).round(4).tolist()
    con.insert_arrow("m", pa.table({"tbname": tb, "ts": ts, "v": v, "site": [1] * n}))
    for t, s, x in zip(tb, ts, v, strict=True):
        model.setdefault(t, {})[s] = x


def check(con, model):
    for t, expected in model.items():
        got = con.execute(f"SELECT ts, v FROM {t}").fetchall()
        assert [(int(a.timestamp() * 1000), b) for a, b in got] == sorted(expected.items()), t


def flush_process_fails(monkeypatch):
    def broken(self, job, done):
        done(RuntimeError("the flush process exited (-9)"), [])

    monkeypatch.setattr(Flusher, "submit", broken)


def segment_files(path):
    return sorted(p.name for p in (path / "db").glob("p*/*.seg"))


def test_writes_and_reads_go_on_while_the_flush_process_writes_segments(tmp_path):
    con = make(tmp_path)
    rng = np.random.default_rng(0)
    model: dict = {}
    frozen_seen = False
    for step in range(30):
        if step == 10:  # columns come and go between the WAL records a flush reads back
            con.execute("ALTER STABLE m ADD COLUMN w INT")
        if step == 20:
            con.execute("ALTER STABLE m DROP COLUMN w")
        insert(con, model, rng)
        if 10 <= step < 20:
            con.execute(f"INSERT INTO d0 (ts, v, w) VALUES ({NOW_MS - 1000}, {step}, 7)")
            model.setdefault("d0", {})[NOW_MS - 1000] = float(step)
        engine = con.engine
        with engine.lock:
            frozen_seen |= engine._imm is not None
        check(con, model)  # reads see the frozen memtable, the new one and the segments
    assert frozen_seen, "no flush ran in the background"
    with con.engine.lock:
        con.engine._wait_for_background()
    assert con.engine._flusher is not None  # the segments came from the flush process
    assert segment_files(tmp_path)
    check(con, model)
    con.execute("DROP TABLE d3")  # its rows in the WAL must not come back
    del model["d3"]
    for _ in range(10):
        insert(con, model, rng)
        model.pop("d3", None)
        con.execute("DROP TABLE IF EXISTS d3")
    con.close()
    con = tsdb.connect(tmp_path, "db")
    check(con, model)
    assert con.execute("SHOW TABLES LIKE 'd3'").fetchall() == []


def test_a_failed_flush_process_is_replaced_by_a_flush_in_the_engine(tmp_path, monkeypatch):
    flush_process_fails(monkeypatch)
    con = make(tmp_path)
    rng = np.random.default_rng(1)
    model: dict = {}
    for _ in range(10):
        insert(con, model, rng)
    assert segment_files(tmp_path)  # written by the engine itself
    check(con, model)
    con.close()
    check(tsdb.connect(tmp_path, "db"), model)


def test_a_crash_during_a_background_flush_loses_no_row(tmp_path, monkeypatch):
    """The process dies after the memtable was frozen, before the commit: the manifest still
    names the WAL generation of the frozen rows, so they are replayed, also after a second
    crash that follows a manifest written by DDL; a segment file the manifest does not name
    is removed."""
    started = []

    def never_done(self, job, done):  # the flush process got the job, then all died
        started.append(job)

    monkeypatch.setattr(Flusher, "submit", never_done)
    con = make(tmp_path)
    rng = np.random.default_rng(2)
    model: dict = {}
    while not started:
        insert(con, model, rng)
    insert(con, model, rng)  # rows in the new WAL generation too
    con.execute("CREATE TABLE extra USING m TAGS (2)")  # a manifest written meanwhile
    (tmp_path / "db" / "p0").mkdir(parents=True, exist_ok=True)
    orphan = tmp_path / "db" / "p0" / "0000099999.seg"
    orphan.write_bytes(b"half a segment")
    con.engine.wal.close()  # the crash: nothing more reaches the disk
    monkeypatch.undo()
    con = tsdb.connect(tmp_path, "db", background_flush=True, memtable_bytes=1 << 30)
    check(con, model)
    assert not orphan.exists()
    con.execute("CREATE TABLE extra2 USING m TAGS (3)")  # a manifest, rows still unflushed
    con.engine.wal.close()  # a second crash
    con = tsdb.connect(tmp_path, "db")
    check(con, model)


def test_a_flush_that_cannot_commit_puts_its_rows_back_and_the_next_one_retries(
    tmp_path, monkeypatch
):
    """Both the flush process and the engine's own flush fail (a full disk, say): the frozen
    rows go back in front of the memtable, reads and writes go on, the next flush commits
    them, and nothing is lost across a reopen."""
    from septet.tsdb.engine import Engine

    failures = [2]
    real_encode = Engine._encode_segment

    def encode_fails_twice(self, key, tables):
        if failures[0]:
            failures[0] -= 1
            raise OSError(28, "No space left on device")
        return real_encode(self, key, tables)

    flush_process_fails(monkeypatch)
    monkeypatch.setattr(Engine, "_encode_segment", encode_fails_twice)
    con = make(tmp_path)
    rng = np.random.default_rng(3)
    model: dict = {}
    for _ in range(12):
        insert(con, model, rng)
        check(con, model)
    assert failures == [0]
    assert segment_files(tmp_path)  # a later flush committed
    con.close()
    check(tsdb.connect(tmp_path, "db"), model)


def test_an_engine_in_memory_flushes_in_place_even_when_asked_to_flush_in_the_background():
    """In memory there is no WAL for a flush process to read the rows back from."""
    con = tsdb.connect(":memory:", background_flush=True, memtable_bytes=40_000)
    con.execute("CREATE DATABASE db KEEP 30 DURATION 1")
    con.execute("USE db")
    con.execute("CREATE STABLE m (ts TIMESTAMP, v DOUBLE) TAGS (site INT)")
    rng = np.random.default_rng(4)
    model: dict = {}
    for _ in range(12):
        insert(con, model, rng)
    assert con.engine._memory_segments and con.engine._flusher is None
    check(con, model)
