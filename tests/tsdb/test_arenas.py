"""Segment arenas (segment.Arena): a segment's blocks of one column decoded side by side, so
that aggregates (windowagg.py) and filtered gathers (arenascan.py) over many sub-tables run a
few numpy calls per segment. The answers must be exactly those of the piece-by-piece path,
with one thread or several, and the arenas must follow every change of the data: inserts
over stored rows, DELETE, ALTER, flush and compaction, and stay within the cache's bound."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import septet.tsdb as tsdb
from septet.tsdb import arenascan, blocks, segment, windowagg
from septet.tsdb import engine as engine_module

from .conftest import MINUTE, T0
from .test_queries import norm

TABLES = 24


def _rows(rng: np.random.Generator, first: int, n: int, k: int) -> pa.Table:
    """``n`` rows of sub-table ``k`` from minute ``first`` on, irregular steps, some NULLs,
    NaN and infinities."""
    ts = T0 + (first * 60 + np.cumsum(rng.integers(5, 40, size=n))) * 1000 + k
    v = np.round(rng.normal(50, 20, size=n), 3)
    v[rng.random(n) < 0.02] = np.nan
    v[rng.random(n) < 0.01] = np.inf
    f = rng.normal(0, 1, size=n).astype(np.float32)
    i = rng.integers(-1000, 1000, size=n)
    return pa.table(
        {
            "tbname": [f"d{k:02d}"] * n,
            "site": [["north", "south", "east"][k % 3]] * n,
            "grp": pa.array([k % 4] * n, pa.int32()),
            "ts": pa.array(ts, pa.int64()),
            "v": pa.array(v, mask=rng.random(n) < 0.05),
            "f": pa.array(f, pa.float32()),
            "i": pa.array(i.astype(np.int32), pa.int32(), mask=rng.random(n) < 0.05),
            "b": pa.array(i * 1_000_000_007, pa.int64()),
        }
    )


def many_tables(threads: int = 1, cache_bytes: int = 512 << 20, tmp=None) -> tsdb.Connection:
    """24 sub-tables in 40-row blocks over three segments (three flushes), a column added
    after the first, and some rows rewritten in the memtable."""
    rng = np.random.default_rng(11)
    c = tsdb.connect(
        ":memory:" if tmp is None else tmp,
        query_threads=threads,
        block_cache_bytes=cache_bytes,
        max_segments=8,
    )
    c.execute("CREATE DATABASE s KEEP 36500 MAXROWS 40")
    c.execute("USE s")
    c.execute(
        "CREATE STABLE m (ts TIMESTAMP, v DOUBLE, f FLOAT, i INT, b BIGINT) "
        "TAGS (site VARCHAR(16), grp INT)"
    )
    for flush, first in enumerate((0, 200, 400)):
        batch = pa.concat_tables([_rows(rng, first, 300, k) for k in range(TABLES)])
        if flush == 0:
            c.insert_arrow("m", batch)
        else:
            c.insert_arrow("m", batch.append_column("x", pa.array(np.arange(len(batch)) % 7)))
        if flush == 0:
            c.execute("ALTER STABLE m ADD COLUMN x BIGINT")
        c.flush()
    # A fourth segment whose blocks overlap the first's (sub-table 7), and newer rows over
    # stored ones in the memtable (sub-table 3): those are merged, not read block by block.
    c.insert_arrow("m", _rows(rng, 50, 40, 7).append_column("x", pa.array([8] * 40)))
    c.flush()
    c.insert_arrow("m", _rows(rng, 250, 30, 3).append_column("x", pa.array([9] * 30)))
    return c


AGGREGATES = [
    "SELECT _wstart, tbname, count(*), count(v), sum(v), avg(f), min(i), max(b), spread(x) "
    "FROM m {w} PARTITION BY tbname INTERVAL(7m)",
    "SELECT _wstart, site, avg(v), max(v), min(f), sum(i), count(x) FROM m {w} "
    "PARTITION BY site INTERVAL(1h, 5m)",
    "SELECT _wstart, sum(b), max(i), avg(x) FROM m {w} INTERVAL(13m) FILL(NULL)",
    "SELECT grp, count(*), avg(v), min(v), spread(f) FROM m {w} GROUP BY grp",
    "SELECT count(*), sum(i), max(v), min(x) FROM m {w}",
]
RANGES = ["", f"WHERE ts >= {T0 + 137 * MINUTE} AND ts < {T0 + 311 * MINUTE}"]
FILTERS = [
    "SELECT ts, tbname, v, f, i, b, x FROM m WHERE v > 60",
    "SELECT ts, v, i FROM m WHERE i <= -500 AND f > 0.5",
    f"SELECT ts, tbname, b, x FROM m WHERE x = 3 AND ts > {T0 + 77 * MINUTE}",
    f"SELECT ts, v FROM m WHERE v BETWEEN 40 AND 41 AND ts <= {T0 + 500 * MINUTE}",
]


def piece_by_piece(monkeypatch) -> None:
    """Send every query down the per-piece path."""
    monkeypatch.setattr(windowagg, "ARENA_MIN_PIECES", 10**9)
    monkeypatch.setattr(arenascan, "ARENA_MIN_PIECES", 10**9)


@pytest.fixture(scope="module")
def reference():
    """Every query's answer on the per-piece path."""
    mp = pytest.MonkeyPatch()
    piece_by_piece(mp)
    c = many_tables()
    out = {}
    for sql in AGGREGATES:
        for w in RANGES:
            out[sql.format(w=w)] = c.execute(sql.format(w=w)).fetchall()
    for sql in FILTERS:
        out[sql] = c.execute(sql).fetchall()
    mp.undo()
    return out


def _identical(got, want) -> bool:
    """Equal rows in equal order, cell by cell (NaN equals NaN)."""

    def cell(x):
        return "NaN" if isinstance(x, float) and x != x else x

    return [tuple(map(cell, r)) for r in got] == [tuple(map(cell, r)) for r in want]


def _same(got, want, sql):
    assert got, sql
    assert norm(got) == norm(want), sql


@pytest.mark.parametrize(("gap", "bulk"), [(0, 10**9), (100, 1), (10**6, 1)])
def test_arena_runs_give_the_per_piece_answers(reference, monkeypatch, gap, bulk):
    # gap: rows between two pieces read and thrown away rather than a new run; 0: every
    # piece is its own run, 10**6: a segment is one run. bulk: the tables from which pieces
    # are found segment by segment (engine._pieces_bulk) rather than table by table.
    monkeypatch.setattr(windowagg, "MAX_GAP_ROWS", gap)
    monkeypatch.setattr(arenascan, "MAX_GAP_ROWS", gap)
    monkeypatch.setattr(engine_module, "BULK_PIECES_TABLES", bulk)
    c = many_tables()
    for sql, want in reference.items():
        got = c.execute(sql).fetchall()
        if "WHERE v >" in sql or "WHERE i" in sql or "WHERE x" in sql or "BETWEEN" in sql:
            assert _identical(got, want), sql  # gathered rows: the same, in the same order
        else:
            _same(got, want, sql)


def _cells(piece) -> list:
    """A piece's values of column 1, bit for bit (NaN too); NULL as None."""
    x, valid = piece.values(1)
    return [
        None if valid is not None and not valid[k] else x[k : k + 1].tobytes()
        for k in range(x.size)
    ]


@pytest.mark.parametrize("window", [None, (T0 + 90 * MINUTE, T0 + 420 * MINUTE)])
def test_pieces_found_in_bulk_are_the_pieces_found_table_by_table(window):
    c = many_tables()
    engine = c.engine
    uids = sorted(t.uid for t in engine.dbs["s"].tables.values())
    t0, t1 = window or (None, None)
    ids = [1, 2]

    def described(pieces):
        return [
            [(type(p).__name__, p.t0, p.t1, p.whole, p.ts().tobytes(), _cells(p)) for p in ps]
            for ps in pieces
        ]

    def skip(block):  # a filter's min/max test
        return block.t0 % 3 == 0

    with engine.lock:
        for rule in (None, skip):
            bulk = engine._pieces_bulk(uids, ids, t0, t1, rule, {})
            assert bulk is not None
            one_by_one = [engine.pieces_many([u], ids, t0, t1, skip=rule)[0] for u in uids]
            assert described(bulk) == described(one_by_one)
    assert any(isinstance(p, blocks.RowsPiece) for ps in bulk for p in ps)  # merged ones too


def test_arena_paths_really_run(monkeypatch):
    calls = []
    agg, gather = windowagg._arena_partials, arenascan._segment_hits
    monkeypatch.setattr(windowagg, "_arena_partials", lambda *a: calls.append(1) or agg(*a))
    monkeypatch.setattr(arenascan, "_segment_hits", lambda *a: calls.append(2) or gather(*a))
    c = many_tables()
    c.execute(AGGREGATES[0].format(w="")).fetchall()
    c.execute(FILTERS[0]).fetchall()
    assert set(calls) == {1, 2}


def test_threads_give_exactly_the_answers_of_one_thread(monkeypatch):
    # Let the pool take even this small data's columns, and check that it did.
    from septet.tsdb import parallel

    monkeypatch.setattr(windowagg, "MIN_PARALLEL_VALUES", 0)
    monkeypatch.setattr(arenascan, "MIN_PARALLEL_VALUES", 0)
    pooled = []
    executor = parallel._executor
    monkeypatch.setattr(parallel, "_executor", lambda n: pooled.append(n) or executor(n))
    one, many = many_tables(threads=1), many_tables(threads=3)
    for sql in [a.format(w=w) for a in AGGREGATES for w in RANGES] + FILTERS:
        assert _identical(one.execute(sql).fetchall(), many.execute(sql).fetchall()), sql
    assert pooled and set(pooled) == {3}


def test_filtered_rows_match_duckdb():
    import duckdb

    c = many_tables()
    rows = c.execute("SELECT ts, tbname, v, i, x FROM m").fetch_arrow()
    d = duckdb.connect()
    d.register("r", rows)
    got = c.execute("SELECT ts, tbname, v, i, x FROM m WHERE v > 70 AND i < 0").fetchall()
    # DuckDB orders NaN above every number; in SQL (and here) a comparison with NaN is false.
    want = d.sql("SELECT * FROM r WHERE v > 70 AND NOT isnan(v) AND i < 0").fetchall()
    assert norm(got) == norm(want) and got
    got = c.execute("SELECT tbname, count(*), sum(x), max(v) FROM m PARTITION BY tbname")
    want = d.sql("SELECT tbname, count(*), sum(x), max(v) FROM r GROUP BY tbname")
    assert norm(got.fetchall()) == norm(want.fetchall())


def _arena_keys(c) -> set:
    return {k for k in c.engine.cache._tables if k[1] == "arena"}


def test_arenas_follow_inserts_deletes_alters_and_compactions(tmp_path):
    c = many_tables(tmp=tmp_path / "db")
    sql = "SELECT tbname, count(*), sum(i), max(x) FROM m PARTITION BY tbname"
    c.execute("SELECT _wstart, sum(i), max(x) FROM m INTERVAL(5m)").fetchall()  # in arenas
    assert _arena_keys(c)
    # Rows written over stored ones win at once, flushed or not.
    d0 = c.execute("SELECT ts FROM d00 LIMIT 2").fetchall()
    stamps = [int(t.timestamp() * 1000) for (t,) in d0]
    for ts in stamps:
        c.execute(f"INSERT INTO d00 VALUES ({ts}, 1.0, 1.0, 123456, 1, 1000)")
    want = dict((r[0], r[1:]) for r in c.execute(sql).fetchall())
    assert want["d00"][2] == 1000
    c.flush()
    assert dict((r[0], r[1:]) for r in c.execute(sql).fetchall()) == want
    # DELETE rewrites segments: the old ones' arenas go with them.
    c.execute(f"DELETE FROM m WHERE ts < {T0 + 100 * MINUTE}")
    live = set(c.engine.readers)
    assert all(k[0] in live for k in _arena_keys(c))
    got = dict((r[0], r[1:]) for r in c.execute(sql).fetchall())
    assert all(got[t][0] < want[t][0] for t in got)
    n_rows = c.execute(f"SELECT count(*) FROM m WHERE ts < {T0 + 100 * MINUTE}").fetchall()
    assert n_rows == [(0,)]
    # A column dropped and added again is a new column: NULL in every stored block.
    c.execute("ALTER STABLE m DROP COLUMN x")
    c.execute("ALTER STABLE m ADD COLUMN x BIGINT")
    assert c.execute("SELECT count(x), count(*) FROM m").fetchall()[0][0] == 0
    assert c.execute("SELECT count(*) FROM m WHERE x > 0").fetchall() == [(0,)]
    # Reopened: nothing is cached and the answers are the same.
    got_before = c.execute(sql).fetchall()
    c.close()
    c2 = tsdb.connect(tmp_path / "db", "s")
    assert not _arena_keys(c2)
    assert c2.execute(sql).fetchall() == got_before
    c2.close()


def test_compaction_evicts_the_merged_segments_arenas():
    c = many_tables()
    c.execute("SELECT avg(v) FROM m INTERVAL(1h)").fetchall()
    old = {k[0] for k in _arena_keys(c)}
    c.engine.options.max_segments = 1  # the next flush merges every segment of a partition
    c.execute(f"INSERT INTO d05 VALUES ({T0 + 5}, 1.0, 1.0, 1, 1, 1)")
    c.flush()
    assert not old & set(c.engine.readers)
    assert not old & {k[0] for k in _arena_keys(c)}
    assert c.execute("SELECT count(*) FROM d05").fetchall()[0][0] > 0


def test_the_cache_stays_within_its_bound_and_answers_stay_right(reference):
    # A cache far smaller than the data: arenas are evicted (and decoded again) all along.
    c = many_tables(cache_bytes=40_000)
    cache = c.engine.cache
    for sql, want in reference.items():
        got = c.execute(sql).fetchall()
        _same(got, want, sql)
        largest = max(cache._sizes.values(), default=0)
        assert cache.used <= cache.capacity + largest  # over only by the entry in use


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(-50, 50), min_size=0, max_size=12), min_size=1, max_size=8),
    st.integers(-60, 60),
)
def test_vectorised_binary_search_is_searchsorted_of_each_run(runs, v):
    parts = [np.sort(np.array(r, np.int64)) for r in runs]
    ts = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    ends = np.cumsum([p.size for p in parts])
    lo, hi = ends - [p.size for p in parts], ends
    got = blocks.search_sorted_runs(ts, lo, hi, np.full(len(parts), v, np.int64))
    want = [a + int(np.searchsorted(p, v)) for a, p in zip(lo.tolist(), parts, strict=True)]
    assert got.tolist() == want


def test_null_slots_hold_zero_and_blocks_older_than_a_column_are_null():
    c = many_tables()
    c.execute("SELECT _wstart, sum(v), sum(x) FROM m INTERVAL(1m)").fetchall()  # decodes
    x_id = next(col.id for col in c.engine.dbs["s"].stables["m"].columns if col.name == "x")
    seen = 0
    for key, arena in c.engine.cache._tables.items():
        if key[1] != "arena" or key[2] == segment.TS or arena.valid is None:
            continue
        assert (arena.values[~arena.valid] == 0).all()  # what reductions may sum unmasked
        if key[2] != x_id:
            continue
        reader = c.engine.readers[key[0]]
        for table_blocks in reader.tables.values():
            for b in table_blocks:
                if not arena.done[b.seq]:
                    continue
                valid = arena.valid[b.row0 : b.row0 + b.rows]
                assert valid.any() == (x_id in b.cols)  # the first flush predates x
                seen += 1
    assert seen >= TABLES * 3


def test_a_flush_leaves_exactly_the_decoded_blocks_in_the_cache():
    # Write-through: the rows just flushed are put in the new segment's arenas, bit for bit
    # what decoding the segment gives (NULL slots aside), with the same validity.
    c = many_tables()
    cache = c.engine.cache
    seen = 0
    for key, arena in list(cache._tables.items()):
        if key[1] != "arena":
            continue
        reader = c.engine.readers[key[0]]
        col = key[2]
        for table_blocks in reader.tables.values():
            for b in table_blocks:
                if not arena.done[b.seq]:
                    continue
                if col == segment.TS:
                    want = (reader.read_ts(b), None)
                else:
                    want = reader.read_values(b, col, arena.values.dtype)
                got = arena.values[b.row0 : b.row0 + b.rows]
                live = np.ones(b.rows, bool) if want[1] is None else want[1]
                assert got[live].tobytes() == want[0][live].tobytes()
                if arena.valid is not None:
                    assert (arena.valid[b.row0 : b.row0 + b.rows] == live).all()
                seen += 1
    assert seen > TABLES * 10
    # A cold cache gives the same answers.
    sql = AGGREGATES[0].format(w="")
    warm = c.execute(sql).fetchall()
    cache.clear()
    assert _identical(c.execute(sql).fetchall(), warm)


@pytest.mark.parametrize(
    "bounds",
    [
        [(1, ">", 60.0)],
        [(1, ">=", 95.5), (2, "<", 0)],
        [(1, "<=", -10)],
        [(2, "=", 0.25)],
        [(1, ">", 4e15)],
        [(1, "<", -4e15)],
    ],
)
def test_block_filters_over_a_whole_segment_match_block_by_block(bounds):
    from septet.tsdb.query import _BlockFilter, _excluded

    c = many_tables()  # v (1) holds NaN and infinities; f (2) is FLOAT
    rule = _BlockFilter(bounds, {1, 2})
    assert rule.vectorised
    for reader in c.engine.readers.values():
        metas = reader.block_table()[3]
        want = [_excluded(b, bounds) for b in metas]
        assert rule.many(reader).tolist() == want
    # And the pieces a query over all sub-tables gets are the same either way.
    engine = c.engine
    uids = sorted(t.uid for t in engine.dbs["s"].tables.values())
    with engine.lock:
        fast = engine._pieces_bulk(uids, [1, 2], None, None, rule, {})
        slow = [
            engine.pieces_many([u], [1, 2], skip=lambda b: _excluded(b, bounds))[0] for u in uids
        ]
        assert [[(p.t0, p.t1) for p in ps] for ps in fast] == [
            [(p.t0, p.t1) for p in ps] for ps in slow
        ]
    assert not _BlockFilter([(5, ">", 1)], {1, 2}).vectorised  # x is BIGINT: block by block
    assert not _BlockFilter([(1, ">", 2**60)], {1, 2}).vectorised  # not exact in float64


def test_one_table_of_many_blocks_takes_the_arena_path_with_the_same_answers(monkeypatch):
    rng = np.random.default_rng(4)
    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE o KEEP 36500 MAXROWS 10")
    c.execute("USE o")
    c.execute("CREATE TABLE t (ts TIMESTAMP, v DOUBLE, k INT)")
    ts = T0 + np.cumsum(rng.integers(1, 30, size=1000)) * 1000
    v = pa.array(rng.normal(size=1000), mask=rng.random(1000) < 0.1)
    c.insert_arrow(
        "t", pa.table({"ts": ts, "v": v, "k": pa.array(rng.integers(0, 9, 1000), pa.int32())})
    )
    c.flush()
    queries = [
        f"SELECT _wstart, count(*), avg(v), max(k), spread(v) FROM t WHERE ts > {T0 + 999_000} "
        "INTERVAL(1m, 10s)",
        "SELECT ts, v, k FROM t WHERE v > 0.5 AND k < 7",
        "SELECT count(v), sum(k) FROM t",
    ]
    arena = [c.execute(q).fetchall() for q in queries]
    piece_by_piece(monkeypatch)
    per_piece = [c.execute(q).fetchall() for q in queries]
    for got, want, q in zip(arena, per_piece, queries, strict=True):
        assert got and _identical(got, want), q
