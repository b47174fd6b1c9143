"""Pieces cut by a query's time range (blocks.BlockPiece._cut_ts, _cut_values): a block of
which a query needs a small share is decoded only up to its last needed row, into scratch
memory, and the block cache keeps only the rows needed. Answers must be exactly those of
decoding whole blocks, however queries' ranges overlap, extend or outgrow what was kept;
the scratch memory must never end up in the cache or an answer; the cache's byte count must
stay exact."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import septet.tsdb as tsdb
from septet.tsdb import blocks, codecs, parallel, segment, windowagg

from .conftest import T0

COMPRESSORS = st.sampled_from(["zstd", "lz4", "none"])
INT64 = st.integers(-(2**63), 2**63 - 1)
PART = blocks.PART_SHARE  # as shipped (tests patch it)
ROWS = 1200  # rows per block (MAXROWS): a cut piece of at most 300 rows keeps only those


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([np.int64, np.int32, np.uint64, np.int8, np.float64, np.float32]).flatmap(
        lambda dt: hnp.arrays(dt, st.integers(0, 300))
    ),
    st.booleans(),
    st.data(),
)
def test_rows_decoded_into_scratch_are_those_rows_of_the_whole_block(x, nulls, data):
    valid = None
    if nulls and x.size:
        valid = np.array(data.draw(st.lists(st.booleans(), min_size=x.size, max_size=x.size)))
    enc = codecs.encode_values(x, valid, compressor=data.draw(COMPRESSORS))
    whole, whole_valid = codecs.decode_values(enc.data, x.dtype)
    stop = data.draw(st.integers(0, x.size + 3))
    start = data.draw(st.integers(0, stop + 2))
    out = np.full(8 * x.size + 64, 0xAB, np.uint8)  # garbage left by an earlier decode
    for into in (out, None):
        got, got_valid = codecs.decode_values(enc.data, x.dtype, stop, into, start)
        assert got.dtype == x.dtype
        want = whole[start:stop]
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
        if whole_valid is None:
            assert got_valid is None
        else:
            np.testing.assert_array_equal(got_valid, whole_valid[start:stop])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([np.float64, np.float32]), st.integers(1, 6), st.data())
def test_float_blocks_decoded_together_equal_each_decoded_alone(dtype, blocks_n, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    m = data.draw(st.integers(0, 50))
    group, want = [], []
    for _ in range(blocks_n):
        n = data.draw(st.integers(m, m + 300))
        x = rng.normal(50, 20, size=n).astype(dtype)
        x[rng.random(n) < 0.05] = np.nan
        lo = data.draw(st.integers(0, n - m))
        enc = codecs.encode_values(x)
        header, compressed = codecs.frame(enc.data)
        raw = codecs.decompress(compressed, codecs.compressor_name(header[0]))
        group.append((_Keeper(), 3, lo, lo + m, raw, n, lo == 0 and m == n))
        want.append(x[lo : lo + m])
    blocks._decode_floats_together(group, np.dtype(dtype), m)
    for (keeper, _, lo, *_), w in zip(group, want, strict=True):
        (col, (first, got, valid)) = keeper.kept
        assert col == 3 and first == lo and valid is None and got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got.view(np.uint8), w.view(np.uint8))


class _Keeper:
    """Stands in for a BlockPiece: records what it is asked to keep."""

    def _keep_part(self, col, part):
        self.kept = (col, part)

    def _keep_own(self, col, values, valid):  # the whole block
        self.kept = (col, (0, values, valid))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 300), elements=INT64), st.data())
def test_timestamp_prefixes_match_even_unsorted_and_with_huge_jumps(ts, data):
    enc = codecs.encode_values(ts, timestamps=True)
    stop = data.draw(st.integers(0, ts.size))
    got, _ = codecs.decode_values(
        enc.data, np.dtype(np.int64), stop, np.empty(8 * ts.size, np.uint8)
    )
    np.testing.assert_array_equal(got, ts[:stop])


@settings(max_examples=200, deadline=None)
@given(INT64, st.integers(-(2**40), 2**40), st.integers(0, 50), COMPRESSORS)
def test_regular_timestamps_are_recognised_exactly(first, step, n, compressor):
    ts = first + step * np.arange(n, dtype=object)
    if n and not -(2**63) <= ts[-1] < 2**63:
        return  # not a series an int64 column holds
    ts = ts.astype(np.int64)
    enc = codecs.encode_values(ts, timestamps=True, compressor=compressor)
    got = codecs.regular_timestamps(enc.data)
    if n >= 3 and step > 0:
        assert got == (first, step, n)
    else:  # too short to tell, or not rising: decoded the general way
        assert got is None


def test_segments_name_the_step_of_regular_timestamps_in_their_index(monkeypatch):
    w = segment.SegmentWriter(block_rows=100)
    regular = T0 + 10_000 * np.arange(250, dtype=np.int64)
    irregular = regular.copy()
    irregular[120] += 1
    for uid, ts in ((1, regular), (2, irregular)):
        w.add_table(uid, pa.table({"ts": ts, "c1": np.arange(ts.size, dtype=np.float64)}))
    r = segment.SegmentReader("s", w.finish())
    assert [b.step for b in r.blocks(1)] == [10_000] * 3
    assert [b.step for b in r.blocks(2)] == [10_000, None, 10_000]
    monkeypatch.setattr(codecs, "regular_timestamps", None)  # not decoded when named
    for b in r.blocks(1):
        first, step, n = r.regular_ts(b)
        np.testing.assert_array_equal(first + step * np.arange(n), r.read_ts(b))


def test_a_step_that_disagrees_with_a_blocks_times_is_corruption():
    meta = {"rows": 10, "t0": T0, "t1": T0 + 90, "step": 10}
    assert segment._step(meta) == 10 and segment._step({**meta, "step": None}) is None
    with pytest.raises(segment.CorruptionError, match="step"):
        segment._step({**meta, "step": 11})


def test_irregular_or_nullable_timestamps_are_not_regular():
    ts = T0 + 10_000 * np.arange(100, dtype=np.int64)
    ts[57] += 1
    assert codecs.regular_timestamps(codecs.encode_values(ts, timestamps=True).data) is None
    floats = codecs.encode_values(ts.astype(np.float64)).data
    assert codecs.regular_timestamps(floats) is None


def _table(k: int, regular: bool, rng: np.random.Generator) -> pa.Table:
    n = 4000
    if regular:
        ts = T0 + k * 17 + 10_000 * np.arange(n, dtype=np.int64)
    else:
        ts = T0 + k * 17 + np.cumsum(rng.integers(1, 20_000, size=n))
    v = rng.normal(50, 20, size=n)
    v[rng.random(n) < 0.01] = np.nan
    nulls = rng.random(n) < (0.05 if k % 2 else 0.0)  # some tables' blocks have NULLs
    return pa.table(
        {
            "tbname": [f"d{k}"] * n,
            "site": [["a", "b"][k % 2]] * n,
            "ts": pa.array(ts, pa.int64()),
            "v": pa.array(v, mask=nulls),
            "f": pa.array(rng.normal(0, 1, size=n).astype(np.float32)),
            "i": pa.array(rng.integers(-1000, 1000, size=n).astype(np.int32), mask=nulls),
            "b": pa.array(rng.integers(-(2**62), 2**62, size=n), pa.int64()),
        }
    )


def _connection(path, threads: int = 1) -> tsdb.Connection:
    c = tsdb.connect(path, query_threads=threads)
    c.execute("USE s")
    c.engine.cache.clear()  # cold, as after opening
    return c


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Six sub-tables (three with regular 10 s timestamps) in 1200-row blocks on disk."""
    path = tmp_path_factory.mktemp("cut") / "db"
    rng = np.random.default_rng(5)
    c = tsdb.connect(path)
    c.execute(f"CREATE DATABASE s KEEP 36500 MAXROWS {ROWS}")
    c.execute("USE s")
    c.execute(
        "CREATE STABLE m (ts TIMESTAMP, v DOUBLE, f FLOAT, i INT, b BIGINT) TAGS (site VARCHAR(4))"
    )
    c.insert_arrow("m", pa.concat_tables([_table(k, k < 3, rng) for k in range(6)]))
    c.flush()
    c.close()
    return path


def _queries(rng: np.random.Generator) -> list[str]:
    """Ranges of a few rows to some hundreds, repeated, nested, overlapping and growing, so
    that what a cut piece kept is reused, extended, and outgrown by the whole block."""
    # Whole blocks that span several windows: decoded whole (together, see decode_cut).
    out = ["SELECT _wstart, tbname, max(v), min(f), sum(i) FROM m PARTITION BY tbname INTERVAL(1h)"]
    span = 4000 * 10_000
    starts = rng.integers(0, span, size=12)
    for s in starts:
        for width in (30_000, 300_000, 900_000, 200_000, 30_000, 2_500_000, 6_000_000, 300_000):
            lo, hi = T0 + int(s), T0 + int(s) + width
            r = f"ts >= {lo} AND ts <= {hi}"
            out.append(
                f"SELECT _wstart, tbname, count(*), count(v), sum(v), min(f), max(i), spread(b), "
                f"avg(i) FROM m WHERE {r} PARTITION BY tbname INTERVAL(1m)"
            )
            pair = "(tbname = 'd1' OR tbname = 'd4')"
            out.append(f"SELECT ts, tbname, v, f, i, b FROM m WHERE {r} AND {pair}")
            out.append(f"SELECT site, count(i), max(v) FROM m WHERE {r} AND v > 55 GROUP BY site")
    return out


def _answers(path, share, monkeypatch, threads=1, parallel_from=None, steps=True):
    monkeypatch.setattr(blocks, "PART_SHARE", share)
    if parallel_from is not None:
        monkeypatch.setattr(blocks, "MIN_PARALLEL_OWN_DECODES", parallel_from)
        monkeypatch.setattr(windowagg, "MIN_PARALLEL_OWN_DECODES", parallel_from)
    c = _connection(path, threads)
    if not steps:  # as segments written before the index named steps: found by decoding
        for reader in c.engine.readers.values():
            for metas in reader.tables.values():
                for b in metas:
                    b.step = None
    got, c.kinds_kept = [], set()
    for sql in _queries(np.random.default_rng(9)):
        got.append(c.execute(sql).fetchall())
        c.kinds_kept |= _kept_kinds(c)
    return got, c


def _same(a, b) -> bool:
    def cell(x):
        return "NaN" if isinstance(x, float) and x != x else x

    return [[tuple(map(cell, r)) for r in q] for q in a] == [
        [tuple(map(cell, r)) for r in q] for q in b
    ]


@pytest.mark.parametrize(("steps", "together"), [(True, True), (False, True), (True, False)])
def test_cut_pieces_answer_exactly_as_whole_blocks_do(stored, monkeypatch, steps, together):
    whole, c1 = _answers(stored, 10**9, monkeypatch)  # never keeps a part: the old path
    kinds_whole = c1.kinds_kept
    c1.close()
    groups = []
    batch = blocks._decode_floats_together
    monkeypatch.setattr(
        blocks, "_decode_floats_together", lambda g, *a: groups.append(len(g)) or batch(g, *a)
    )
    monkeypatch.setattr(blocks, "BATCH_MIN_DECODES", 8 if together else 10**9)
    cut, c2 = _answers(stored, PART, monkeypatch, steps=steps)
    assert (max(groups, default=0) > 1) == together  # blocks decoded together, or one by one
    kinds_cut = c2.kinds_kept
    _check_cache(c2)
    c2.close()
    assert sum(len(q) for q in whole) > 1000
    assert _same(cut, whole)
    assert "part" not in kinds_whole
    # Both kinds of entries along the way: parts for the short ranges, whole blocks for the
    # long ones.
    assert {"part", "np"} <= kinds_cut


def test_the_thread_pool_decodes_cut_pieces_to_the_same_answers(stored, monkeypatch):
    one, c1 = _answers(stored, 10**9, monkeypatch)
    c1.close()
    pooled = []
    executor = parallel._executor
    monkeypatch.setattr(parallel, "_executor", lambda n: pooled.append(n) or executor(n))
    many, c2 = _answers(stored, PART, monkeypatch, threads=4, parallel_from=2)
    assert pooled  # the pool decoded
    _check_cache(c2)
    c2.close()
    assert _same(many, one)


def test_a_short_range_keeps_only_its_rows_and_decodes_no_further(stored, monkeypatch):
    stops = []
    as_numpy = segment.SegmentReader.read_values

    def spy(self, block, col_id, dtype, stop=None, out=None, start=0):
        stops.append((block.rows, start, stop))
        return as_numpy(self, block, col_id, dtype, stop, out, start)

    monkeypatch.setattr(segment.SegmentReader, "read_values", spy)
    c = _connection(stored)
    lo = T0 + 10_000 * 20  # rows 20..29 of a regular table's first block
    sql = f"SELECT count(*), sum(v), max(b) FROM d0 WHERE ts >= {lo} AND ts < {lo + 100_000}"
    got = c.execute(sql).fetchall()
    assert got[0][0] == 10
    assert stops == [(ROWS, 20, 30), (ROWS, 20, 30)]  # v and b: rows 20 to 30 only
    entries = [e for key, e in c.engine.cache._tables.items() if key[1] != "arena"]
    parts = {k: v for e in entries for k, v in e.items()}
    assert all(k[2] == "part" for k in parts)  # no whole block kept
    ts_part = next(v for k, v in parts.items() if k[1] == segment.TS)
    np.testing.assert_array_equal(ts_part[3], lo + 10_000 * np.arange(10))  # by arithmetic
    assert all(v[1].size == 10 for k, v in parts.items() if k[1] != segment.TS)
    stops.clear()
    assert _same([c.execute(sql).fetchall()], [got]) and not stops  # same range: no decoding
    _check_cache(c)
    c.close()


def _kept_kinds(c) -> set:
    return {
        k[2]
        for key, e in c.engine.cache._tables.items()
        if key[1] != "arena"
        for k in e
        if len(k) == 3
    }


def _check_cache(c) -> None:
    """The cache counts the bytes of the arrays it keeps per table exactly, and nothing it
    keeps is (a view of) this thread's scratch memory."""
    cache = c.engine.cache
    work = blocks.scratch(1)
    checked = 0
    for key, entry in cache._tables.items():
        if key[1] == "arena":
            continue
        size, exact = 0, True
        for value in entry.values():
            for a in value if isinstance(value, tuple) else (value,):
                if isinstance(a, np.ndarray):
                    assert not np.shares_memory(a, work)
                    size += a.nbytes
                elif isinstance(a, pa.Array):
                    # Fixed-width ones may be uncounted views of the numpy arrays kept.
                    exact = False
        if exact:
            assert cache._sizes[key] == size, key
            checked += 1
    assert checked


def _resident_bytes(path) -> int:
    """Resident bytes of this process's maps of the file ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a map's first line
                inside = len(head) >= 6 and head[5] == str(path)
            elif inside and head[0] == "Rss:":
                total += int(head[1]) * 1024
    return total


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MAP_POPULATE"), reason="Linux only")
def test_segment_maps_have_their_pages_mapped_within_the_cache_budget(stored, tmp_path):
    seg = next(stored.glob("s/*/*.seg"))
    size = seg.stat().st_size
    got = {}
    for budget in (size, size - 1):  # the file fits the block cache's budget, or not
        c = tsdb.connect(stored, block_cache_bytes=budget, populate_maps=True)
        e = c.engine
        assert _resident_bytes(seg) >= (size // 4096 * 4096 if budget >= size else 0)
        assert e._populated == (size if budget >= size else 0)
        c.execute("USE s")
        got[budget] = c.execute("SELECT count(*), sum(b), max(f) FROM m").fetchall()
        c.close()
        assert e._populated == 0
    assert got[size] == got[size - 1]


def test_compaction_gives_back_what_the_replaced_maps_counted(tmp_path):
    c = tsdb.connect(tmp_path / "db", max_segments=2, populate_maps=True)
    c.execute("CREATE DATABASE s KEEP 36500")
    c.execute("USE s")
    c.execute("CREATE TABLE t (ts TIMESTAMP, v DOUBLE)")
    for k in range(5):  # flushes past max_segments: compactions replace segments
        c.execute(f"INSERT INTO t VALUES ({T0 + k * 1000}, {k}.5)")
        c.flush()
    e = c.engine
    files = {n: (tmp_path / "db" / n).stat().st_size for n in e.readers}
    assert 0 < len(files) <= 2  # compacted
    assert e._populated == sum(files.values()) and set(e._populated_sizes) == set(files)
    assert c.execute("SELECT count(*), sum(v) FROM t").fetchall() == [(5, 12.5)]
    c.close()
