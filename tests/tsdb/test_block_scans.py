"""Block-wise query execution: windows answered from block statistics, filters that skip
blocks by their min/max, pieces that never overlap, and the thread pool. Every answer is
checked against DuckDB over the raw rows (or numpy), and the tests count which blocks were
decoded to show that the skipping really happens."""

import numpy as np
import pyarrow as pa
import pytest

import septet.tsdb as tsdb
from septet.tsdb import segment
from septet.tsdb.engine import Engine

from .conftest import MINUTE, T0
from .test_queries import norm

HOUR = 60 * MINUTE


def small_blocks(raw, threads=0, overlap=True):
    """The fixture rows in 50-row blocks (~25 minutes each); ``overlap``: some rows written
    again into the memtable, so that a few blocks overlap newer data."""
    c = tsdb.connect(":memory:", query_threads=threads)
    c.execute("CREATE DATABASE s KEEP 36500 MAXROWS 50")
    c.execute("USE s")
    c.execute("CREATE STABLE m (ts TIMESTAMP, v DOUBLE, n INT) TAGS (site VARCHAR(16), grp INT)")
    c.insert_arrow("m", raw)
    c.flush()
    if overlap:
        c.insert_arrow("m", raw.slice(0, 20))
    return c


@pytest.fixture
def decoded(monkeypatch):
    """Column ids of every block decoded while the test runs."""
    seen = []
    as_arrow = segment.SegmentReader.read_column
    as_numpy = segment.SegmentReader.read_values

    def counting_arrow(self, block, col_id, type_, compressor):
        seen.append(col_id)
        return as_arrow(self, block, col_id, type_, compressor)

    def counting_numpy(self, block, col_id, dtype, *prefix):
        seen.append(col_id)
        return as_numpy(self, block, col_id, dtype, *prefix)

    as_frame = segment.SegmentReader.frame

    def counting_frame(self, block, col_id):  # read to be decoded (blocks.decode_cut)
        seen.append(col_id)
        return as_frame(self, block, col_id)

    monkeypatch.setattr(segment.SegmentReader, "read_column", counting_arrow)
    monkeypatch.setattr(segment.SegmentReader, "read_values", counting_numpy)
    monkeypatch.setattr(segment.SegmentReader, "frame", counting_frame)
    return seen


def bucket(ms: int, offset: int = 0) -> str:
    return f"(ts - {offset}) // {ms} * {ms} + {offset}"


def duck_of(raw):
    import duckdb

    d = duckdb.connect()
    d.register("raw", raw)
    return d


@pytest.mark.parametrize(
    ("window", "ms", "offset"),
    [("1m", MINUTE, 0), ("7m", 7 * MINUTE, 0), ("1h", HOUR, 0), ("2h", 2 * HOUR, 0),
     ("1d", 24 * HOUR, 0), ("3h, 20m", 3 * HOUR, 20 * MINUTE)],
)  # fmt: skip
@pytest.mark.parametrize("keys", ["", "site", "tbname", "site, grp"])
def test_windowed_aggregates_match_duckdb_for_any_window_and_partition(
    raw, window, ms, offset, keys
):
    c = small_blocks(raw)
    lo, hi = T0 + 17 * MINUTE, T0 + 333 * MINUTE
    part = f"PARTITION BY {keys}" if keys else ""
    cols = f"{keys}, " if keys else ""
    got = c.execute(
        f"SELECT _wstart, {cols}count(*), count(v), sum(n), avg(v), min(v), max(n), spread(v) "
        f"FROM m WHERE ts >= {lo} AND ts < {hi} {part} INTERVAL({window})"
    ).fetchall()
    group = f", {keys}" if keys else ""
    want = (
        duck_of(raw)
        .execute(
            f"SELECT {bucket(ms, offset)} AS w, {cols}count(*), count(v), sum(n), avg(v), "
            f"min(v), max(n), max(v) - min(v) FROM raw WHERE ts >= {lo} AND ts < {hi} "
            f"GROUP BY w{group}"
        )
        .fetchall()
    )
    assert norm(got) == norm(want) and got


def test_windows_that_cover_whole_blocks_are_answered_without_decoding_them(raw, decoded):
    c = small_blocks(raw, overlap=False)
    c.engine.cache.clear()  # as after reopening: the flush left the rows in the cache
    sql = "SELECT _wstart, site, count(*), sum(n), min(v), max(v), avg(v) FROM m "
    got = c.execute(sql + "PARTITION BY site INTERVAL(1d)").fetchall()
    want = (
        duck_of(raw)
        .execute(
            f"SELECT {bucket(24 * HOUR)} AS w, site, count(*), sum(n), min(v), max(v), avg(v) "
            "FROM raw GROUP BY w, site"
        )
        .fetchall()
    )
    assert norm(got) == norm(want)
    blocks = 4 * 300 // 50
    # Only blocks that straddle a day boundary are decoded (the data spans two days).
    assert len(decoded) <= 2 * 4, decoded
    # Windows inside blocks need every block (those decoded above come from the cache).
    c.execute(sql + "PARTITION BY site INTERVAL(10m)").fetchall()
    assert len(decoded) == 2 * blocks


@pytest.mark.parametrize(
    "cond",
    [
        "v > 62",
        "v >= 70 AND n < 0",
        "n <= -95",
        "v BETWEEN 49.5 AND 50.5",
        "n = 7",
        "62 < v",
        "v > 1000",
        "-v < -62",  # not a plain comparison: evaluated, never used to skip
        "v > 62 OR n = 3",
        "v IS NULL AND n > 90",
    ],
)
def test_filters_match_duckdb_whatever_blocks_they_skip(raw, cond):
    c = small_blocks(raw)
    got = c.execute(f"SELECT ts, tbname, v, n, site FROM m WHERE {cond}").fetchall()
    want = duck_of(raw).execute(f"SELECT ts, tbname, v, n, site FROM raw WHERE {cond}").fetchall()
    assert norm(got) == norm(want)


@pytest.mark.parametrize("null_block", [0, 1, 2])
def test_filtered_rows_keep_nulls_that_only_some_blocks_hold(null_block):
    # Blocks of 4 rows; only one block has NULLs in n and s, so the gathered columns mix
    # pieces with and without a validity bitmap (before, between and after the others).
    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE s KEEP 36500 MAXROWS 4")
    c.execute("USE s")
    c.execute("CREATE TABLE t (ts TIMESTAMP, v DOUBLE, n INT, b BOOL, s VARCHAR(8))")
    v = [float(x % 5) for x in range(12)]
    n: list = list(range(12))
    s: list = [f"s{x}" for x in range(12)]
    for k in range(4 * null_block, 4 * null_block + 4, 2):
        n[k], s[k] = None, None
    rows = pa.table(
        {"ts": T0 + np.arange(12) * 1000, "v": v, "n": pa.array(n, pa.int32()),
         "b": [x % 3 == 0 for x in range(12)], "s": s}
    )  # fmt: skip
    c.insert_arrow("t", rows)
    c.flush()
    got = c.execute("SELECT ts, v, n, b, s FROM t WHERE v > 1.5").fetchall()
    want = duck_of(rows).execute("SELECT ts, v, n, b, s FROM raw WHERE v > 1.5").fetchall()
    assert norm(got) == norm(want) and any(r[2] is None for r in got)


@pytest.mark.parametrize(("old", "new"), [(100.0, 1.0), (1.0, 100.0)])
def test_min_max_skipping_never_lets_an_overwritten_row_through(old, new):
    # Two flushed segments whose blocks hold the same timestamps: the newer block's values
    # win, whether or not its min/max alone would rule it out of the filter.
    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE s KEEP 36500 MAXROWS 4")
    c.execute("USE s")
    c.execute("CREATE TABLE t (ts TIMESTAMP, v DOUBLE)")
    ts = T0 + np.arange(8) * 1000
    c.insert_arrow("t", pa.table({"ts": ts, "v": np.full(8, old)}))
    c.flush()
    c.insert_arrow("t", pa.table({"ts": ts[2:6], "v": np.full(4, new)}))
    c.flush()
    got = c.execute("SELECT ts, v FROM t WHERE v > 50").fetchall()
    want = [
        (int(t), v) for t, v in zip(ts, [old] * 2 + [new] * 4 + [old] * 2, strict=True) if v > 50
    ]
    assert norm(got) == norm(want)


def test_filters_skip_the_blocks_whose_min_max_rule_them_out(raw, decoded):
    c = small_blocks(raw, overlap=False)
    c.engine.cache.clear()  # as after reopening: the flush left the rows in the cache
    assert c.execute("SELECT count(*) FROM m WHERE v > 1000").fetchall() == [(0,)]
    assert decoded == []  # every block's max(v) is below 1000: nothing was read
    threshold = 68.0
    rows = c.execute(f"SELECT ts, v, n FROM m WHERE v > {threshold}").fetchall()
    v = raw.column("v").to_numpy(zero_copy_only=False)
    assert len(rows) == int(np.sum(v > threshold))
    engine = c.engine
    blocks = [b for r in engine.readers.values() for bs in r.tables.values() for b in bs]
    hopeful = sum(1 for b in blocks if b.cols[1][4] is not None and b.cols[1][4] > threshold)
    # v (id 1) of the blocks that may hold a match; n (id 2) only of those that did.
    assert decoded.count(1) == hopeful < len(blocks)
    assert decoded.count(2) <= hopeful


def test_nan_and_infinity_never_make_a_block_skip_rows_it_holds():
    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE s KEEP 36500 MAXROWS 4")
    c.execute("USE s")
    c.execute("CREATE TABLE t (ts TIMESTAMP, v DOUBLE)")
    values = [1.0, float("nan"), 2.0, 3.0, float("inf"), 0.5, 1.0, 1.5, -float("inf"), 9.0]
    c.insert_arrow("t", pa.table({"ts": T0 + np.arange(10) * 1000, "v": values}))
    c.flush()
    got = [r[0] for r in c.execute("SELECT v FROM t WHERE v > 2.5").fetchall()]
    assert got == [3.0, float("inf"), 9.0]
    assert c.execute("SELECT count(*) FROM t WHERE v < -1e300").fetchall() == [(1,)]
    got = c.execute("SELECT max(v), min(v) FROM t INTERVAL(1d)").fetchall()
    assert np.isnan(got[0][0]) and np.isnan(got[0][1])  # NaN wins MIN and MAX, as in numpy


def test_thread_pool_gives_the_same_answers_as_one_thread(raw, monkeypatch):
    from septet.tsdb import blocks, parallel, windowagg

    # The fixture is small: let the pool decode even a few blocks, and count that it did.
    monkeypatch.setattr(blocks, "MIN_PARALLEL_DECODES", 2)
    monkeypatch.setattr(blocks, "MIN_PARALLEL_OWN_DECODES", 2)
    monkeypatch.setattr(windowagg, "MIN_PARALLEL_OWN_DECODES", 2)
    pooled = []
    executor = parallel._executor
    monkeypatch.setattr(parallel, "_executor", lambda n: pooled.append(n) or executor(n))
    one, many = small_blocks(raw, threads=1), small_blocks(raw, threads=4)
    for c in (one, many):
        c.engine.cache.clear()  # cold: blocks are decoded (the flush left them cached)
    for sql in (
        "SELECT _wstart, tbname, avg(v), max(n), count(*) FROM m PARTITION BY tbname INTERVAL(1h)",
        "SELECT _wstart, site, sum(n), min(v) FROM m PARTITION BY site INTERVAL(5m) FILL(NULL)",
        "SELECT ts, tbname, v, n FROM m WHERE v > 60",
        "SELECT count(*), spread(v) FROM m",
    ):
        assert one.execute(sql).fetchall() == many.execute(sql).fetchall(), sql
    assert pooled and set(pooled) == {4}  # the 4-thread connection used the pool


def test_pieces_never_overlap_and_the_newest_write_wins(tmp_path):
    engine = Engine(tmp_path, max_segments=8)
    from septet.tsdb.catalog import DatabaseOptions

    engine.create_database("db", DatabaseOptions(block_rows=10, keep_days=36500), False)
    engine.create_table("db", "t", [("ts", "TIMESTAMP"), ("v", "DOUBLE")], False)
    uid = engine.dbs["db"].tables["t"].uid
    rng = np.random.default_rng(1)
    truth: dict[int, float] = {}
    for round_ in range(4):  # segments that overlap each other, then a memtable on top
        ts = T0 + rng.choice(300, size=60, replace=False) * 1000
        v = rng.normal(size=60) + round_
        engine.insert([(uid, pa.table({"ts": ts, "c1": v}))])
        truth.update(zip(ts.tolist(), v.tolist(), strict=True))
        if round_ < 3:
            engine.flush()
    t0, t1 = T0 + 40_000, T0 + 250_000
    with engine.lock:
        pieces = engine.pieces(uid, [1], t0, t1)
        ts = np.concatenate([p.ts() for p in pieces])
        v = np.concatenate([p.values(1)[0] for p in pieces])
    assert (np.diff(ts) > 0).all()
    want = sorted((t, x) for t, x in truth.items() if t0 <= t <= t1)
    assert list(zip(ts.tolist(), v.tolist(), strict=True)) == want
    whole = [p for p in pieces if p.whole]
    for p in whole:  # a whole block's statistics describe exactly its rows
        x = p.values(1)[0]
        assert p.stats(1)[0] == x.size and p.stats(1)[3] == pytest.approx(x.sum())
    engine.close()


def test_cached_sub_tables_and_tags_follow_every_catalog_change(raw):
    c = small_blocks(raw, overlap=False)
    sql = "SELECT site, count(*) FROM m WHERE grp < 5 GROUP BY site"
    before = dict(c.execute(sql).fetchall())
    c.execute("ALTER TABLE d0 SET TAG site = 'west'")
    after = dict(c.execute(sql).fetchall())
    assert after["west"] == 300 and after["north"] == before["north"] - 300
    c.execute(f"INSERT INTO d9 USING m TAGS ('west', 4) VALUES ({T0}, 1.0, 1)")
    assert dict(c.execute(sql).fetchall())["west"] == 301
    c.execute("DROP TABLE d9")
    assert dict(c.execute(sql).fetchall())["west"] == 300
    got = c.execute("SELECT tbname, site FROM m WHERE site = 'west' PARTITION BY tbname")
    assert {r for r in got.fetchall()} == {("d0", "west")}


@pytest.mark.parametrize(
    "shape",
    [
        "SELECT _wstart, site, avg(v), count(*) FROM m {w} PARTITION BY site INTERVAL(5m) "
        "FILL(PREV)",
        "SELECT _wstart, _wend, sum(n), spread(v) FROM m {w} INTERVAL(17m, 3m) FILL(LINEAR)",
        "SELECT _wstart, tbname, max(n) FROM m {w} PARTITION BY tbname INTERVAL(1h) FILL(NULL) "
        "LIMIT 3",
        "SELECT grp, min(v), max(v), count(n) FROM m {w} GROUP BY grp HAVING count(n) > 10",
        "SELECT _wstart, avg(v) AS a FROM m {w} INTERVAL(10m) ORDER BY a DESC LIMIT 4",
        "SELECT count(*), avg(v) * 2 + 1, max(n) - min(n) FROM m {w}",
    ],
)
def test_block_wise_and_row_wise_aggregation_agree(con, shape):
    # A condition that every row passes sends the same query down the general path.
    block_wise = con.execute(shape.format(w="")).fetchall()
    row_wise = con.execute(shape.format(w="WHERE n > -1000 OR n IS NULL")).fetchall()
    assert norm(block_wise) == norm(row_wise) and block_wise


def test_queries_run_safely_beside_writes_flushes_and_compactions():
    import threading

    c = tsdb.connect(":memory:", max_segments=2, query_threads=4)
    c.execute("CREATE DATABASE s KEEP 36500 MAXROWS 20")
    c.execute("USE s")
    c.execute("CREATE STABLE m (ts TIMESTAMP, v DOUBLE) TAGS (k INT)")
    rng = np.random.default_rng(5)
    errors, done = [], threading.Event()

    def write():
        try:
            for i in range(40):
                ts = T0 + rng.choice(2000, size=50, replace=False) * 1000
                batch = pa.table({"ts": ts, "v": rng.normal(size=50), "tbname": [f"t{i % 4}"] * 50,
                                  "k": pa.array([i % 4] * 50, pa.int32())})  # fmt: skip
                c.insert_arrow("m", batch)
                if i % 5 == 4:
                    c.flush()  # two segments per partition: every other flush compacts
        except Exception as exc:  # reported by the test below
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reader = c.cursor()
    while not done.is_set():
        for sql in (
            "SELECT _wstart, tbname, count(*), avg(v) FROM m PARTITION BY tbname INTERVAL(1m)",
            "SELECT ts, v FROM m WHERE v > 1.5",
            "SELECT count(*), max(v) FROM m",
        ):
            reader.execute(sql).fetchall()
    writer.join()
    assert not errors, errors
    total = c.execute("SELECT count(*) FROM m").fetchall()[0][0]
    per_table = c.execute("SELECT tbname, count(*) FROM m PARTITION BY tbname").fetchall()
    assert total == sum(n for _, n in per_table) > 0
