"""A table's rows as pieces: runs of sorted, unique rows that overlap no other stored data.

Queries that aggregate or filter work piece by piece instead of on one merged copy of every
column. A piece that is a whole segment block carries that block's statistics (non-NULL
count, min, max and sum per column, written with the block), so that a window covering the
block is answered without decoding it, and a filter that no value in the block can satisfy
skips it: TDengine's block SMA. Columns are decoded on first use, through the block cache.
Only where sources overlap (out-of-order rows in the memtable, or a newer segment rewriting
older rows) are the overlapping sources merged, the newest write winning; a piece made that
way has no statistics.

Pieces read the engine's segment maps: use them while holding ``engine.lock``. Their methods
take no engine lock, so worker threads may decode pieces while the caller holds it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pyarrow as pa

from septet.tsdb import codecs
from septet.tsdb.segment import (
    TS,
    Arena,
    BlockCache,
    BlockMeta,
    SegmentReader,
    col_key,
    from_numpy_valid,
    to_numpy_valid,
)

# Arrow types whose blocks decode straight to numpy (timestamps as int64).
_FIXED = {
    t: np.dtype(d)
    for t, d in [
        (pa.int8(), np.int8), (pa.int16(), np.int16), (pa.int32(), np.int32),
        (pa.int64(), np.int64), (pa.uint8(), np.uint8), (pa.uint16(), np.uint16),
        (pa.uint32(), np.uint32), (pa.uint64(), np.uint64), (pa.float32(), np.float32),
        (pa.float64(), np.float64),
    ]
}  # fmt: skip
# Fewer block columns than this to decode into arenas: not worth the thread pool (~40 us
# each).
MIN_PARALLEL_DECODES = 64
# The same for blocks decoded as arrays of their own (queries over fewer tables, whose
# blocks are mostly cut by the query's range): on a 2-core machine the pool's hand-offs
# (thread wake-ups, the GIL passed back and forth around every zstd call and numpy copy)
# cost more than the second core gives (single-groupby-5-8-1 and cpu-max-all-8 at 1,000
# hosts ran 30-60% slower cold with the pool from 64 blocks on).
MIN_PARALLEL_OWN_DECODES = 1024
# A piece cut by the query's range that needs at most 1/PART_SHARE of its block's rows has
# the block decoded only up to its last row, into reused memory, and the block cache keeps
# only the rows it needs (BlockPiece._cut_ts, _cut_values): a block decoded whole lands in
# fresh pages, and on this kind of virtual machine faulting them in costs more than the
# decoding (an hour of 10 s rows is a tenth of a 4096-row block).
PART_SHARE = 4
_STATS_LOCK = threading.Lock()  # the block cache's accounting, shared by worker threads


class Piece:
    """Rows of one table: ``ts()`` and ``column(id)`` aligned, timestamps strictly rising."""

    __slots__ = ()
    t0: int  # no row is older (exact when the piece was not cut by the query's range)
    t1: int  # no row is newer
    whole: bool  # a whole segment block: ``stats`` describe exactly these rows

    def ts(self) -> np.ndarray:
        raise NotImplementedError

    def column(self, col_id: int) -> pa.Array:
        raise NotImplementedError

    @property
    def rows(self) -> int:
        return int(self.ts().size)

    def values(self, col_id: int) -> tuple[np.ndarray, np.ndarray | None]:
        """A fixed-width column as numpy: (values, validity or None); what a NULL slot holds
        in the values is unspecified."""
        return to_numpy_valid(self.column(col_id))

    def values_many(self, col_ids: list[int]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """:meth:`values` of several columns."""
        return [self.values(c) for c in col_ids]

    def stats(self, col_id: int) -> list[Any] | None:
        """[count, min, max, sum] of a column over exactly these rows, or None."""
        return None

    def bounds(self, col_id: int) -> list[Any] | None:
        """[count, min, max] of a column over rows that include these, or None."""
        return None


class BlockPiece(Piece):
    """One segment block (or the part of it inside the query's time range).

    Timestamps and fixed-width columns are read from the segment's arenas (segment.Arena:
    the block's slot of one array per segment and column); other columns are kept as Arrow
    arrays per (segment, table) in the block cache.
    """

    __slots__ = (
        "_cache_key",
        "_cached",
        "_ts",
        "arenas",
        "block",
        "cache",
        "compressor",
        "hi",
        "index",
        "lo",
        "reader",
        "t0",
        "t1",
        "types",
        "whole",
    )  # fmt: skip

    def __init__(
        self,
        reader: SegmentReader,
        block: BlockMeta,
        index: int,
        cache: BlockCache,
        uid: int,
        types: dict[int, pa.DataType],
        compressor: str,
        t0: int | None,
        t1: int | None,
        arenas: dict | None = None,
    ):
        self.reader, self.block, self.index, self.cache = reader, block, index, cache
        self.types, self.compressor = types, compressor
        # The arenas this query has looked up in this segment, shared by its pieces there.
        self.arenas: dict = {} if arenas is None else arenas
        self._cache_key = (reader.name, uid)
        cut_lo = t0 is not None and block.t0 < t0
        cut_hi = t1 is not None and block.t1 > t1
        self.whole = not (cut_lo or cut_hi)
        self.t0 = t0 if cut_lo else block.t0  # type: ignore[assignment]
        self.t1 = t1 if cut_hi else block.t1  # type: ignore[assignment]
        self.lo, self.hi = 0, block.rows  # found from the timestamps when cut
        self._ts: np.ndarray | None = None
        self._cached: dict | None = None

    def _entry(self) -> dict:
        if self._cached is None:
            with _STATS_LOCK:
                self._cached = self.cache.table(*self._cache_key)
        return self._cached

    def _added(self, nbytes: int) -> None:
        with _STATS_LOCK:
            self.cache.added(*self._cache_key, nbytes)

    def arena(self, col: int | str) -> Arena:
        """The arena of a column (``TS``: the timestamps) of this piece's segment, made if
        need be, with this block in it (copied from its own array when it has one)."""
        arena = segment_arena(self.reader, self.cache, self.arenas, col, self.dtype_of(col))
        if not arena.done[self.block.seq]:
            self._into_arena(arena, col)
        return arena

    def _into_arena(self, arena: Arena, col: int | str) -> None:
        """Put this block of a column into its arena: moved from its own arrays in the cache
        when it has them (they are dropped, the arena's copy serves from then on), else
        decoded."""
        entry = self._entry()
        own = entry.get((self.index, col, "np"))
        decode_into(self.reader, self.cache, arena, self.block, col, own)
        if own is not None and entry.pop((self.index, col, "np"), None) is not None:
            self._added(-(own[0].nbytes + (0 if own[1] is None else own[1].nbytes)))

    def _arena_if_done(self, col: int | str) -> Arena | None:
        """The arena of a column if there is one that holds this block."""
        arena = self.arenas.get(col)
        if arena is None:
            with _STATS_LOCK:
                arena = self.cache.peek_arena(self.reader, col, self.dtype_of(col))
            self.arenas[col] = arena if arena is not None else False
        if arena and arena.done[self.block.seq]:
            return arena
        return None

    def dtype_of(self, col: int | str) -> np.dtype:
        return _TS_DTYPE if col == TS else _FIXED[self.types[col]]  # type: ignore[index]

    def span(self) -> tuple[int, int]:
        """(first, end) positions of these rows in the segment's arenas."""
        if not self.whole:
            self.ts()
        return self.block.row0 + self.lo, self.block.row0 + self.hi

    def _own(self, col: int | str) -> tuple[np.ndarray, np.ndarray | None]:
        """The whole block's column as arrays of its own (decoded into the cache if need be)."""
        entry = self._entry()
        key = (self.index, col, "np")
        got = entry.get(key)
        if got is None:
            got = self._keep_own(col, *read_block(self.reader, self.block, col, self.dtype_of(col)))
        return got

    def _whole(self, col: int | str) -> tuple[np.ndarray, np.ndarray | None]:
        """The whole block's column: its own arrays if it has them, else its arena slot if
        decoded there, else its own arrays, decoded now."""
        held = self._held(col)
        return self._own(col) if held is None else held

    def _held(self, col: int | str) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The whole block's column if the cache holds it whole: its own arrays, or its
        arena slot; else None."""
        entry = self._cached
        own = None if entry is None else entry.get((self.index, col, "np"))
        if own is not None:
            return own
        arena = self._arena_if_done(col)
        if arena is None:
            return None
        r0 = self.block.row0
        x = arena.values[r0 : r0 + self.block.rows]
        if col == TS or arena.valid is None or not has_nulls(self.block, col):  # type: ignore[arg-type]
            return x, None
        return x, arena.valid[r0 : r0 + self.block.rows]

    def ts(self) -> np.ndarray:
        if self._ts is not None:
            return self._ts
        if self.whole:
            ts = self._whole(TS)[0]
        else:
            held = self._held(TS)
            ts = self._cut_ts() if held is None else self._locate(held[0], 0)
        self._ts = ts
        return ts

    def _locate(self, ts: np.ndarray, first: int) -> np.ndarray:
        """This piece's timestamps among ``ts``, the block's rows from ``first`` on (they
        hold all of the piece's); sets ``lo``, ``hi``."""
        # t1 + 1, searched from the left, is t1 searched from the right.
        a, b = ts.searchsorted(np.array([self.t0, self.t1 + 1], np.int64)).tolist()
        self.lo, self.hi = first + a, first + b
        return ts[a:b]

    def _cut_ts(self) -> np.ndarray:
        """The timestamps of a cut piece whose block the cache does not hold whole: from the
        rows kept for an earlier query when they cover this one's range, else decoded into
        scratch memory; the rows needed (with those kept before) are kept when they are a
        small share of the block (see PART_SHARE), else the whole block."""
        entry = self._entry()
        own = entry.get((self.index, TS, "np"))  # (_held looks only once the entry is known)
        if own is not None:
            return self._locate(own[0], 0)
        key = (self.index, TS, "part")
        part = entry.get(key)  # (from time, to time, first row, timestamps, None)
        if part is not None and part[0] <= self.t0 and self.t1 <= part[1]:
            return self._locate(part[3], part[2])
        rows = self.block.rows
        regular = self.reader.regular_ts(self.block)
        if regular is None:
            ts = self.reader.read_ts(self.block, None, scratch(rows * 8))
            a, b = ts.searchsorted(np.array([self.t0, self.t1 + 1], np.int64)).tolist()
        else:  # first + step * i: found, and made, by arithmetic
            first, step, _ = regular
            a = min(max(-((first - self.t0) // step), 0), rows)  # ceil((t0 - first) / step)
            b = min(max((self.t1 - first) // step + 1, a), rows)
        if part is not None:
            a, b = min(a, part[2]), max(b, part[2] + part[3].size)
        if (b - a) * PART_SHARE > rows:
            return self._locate(
                self._keep_own(TS, *read_block(self.reader, self.block, TS, _TS_DTYPE))[0], 0
            )
        if regular is None:
            kept = ts[a:b].copy()
            # The times whose rows all lie in [a, b): between the rows just outside it.
            t_from = int(ts[a - 1]) + 1 if a > 0 else self.block.t0
            t_to = int(ts[b]) - 1 if b < rows else self.block.t1
        else:
            kept = np.arange(a, b, dtype=np.int64)
            kept *= step
            kept += first
            t_from = first + step * (a - 1) + 1 if a > 0 else self.block.t0
            t_to = first + step * b - 1 if b < rows else self.block.t1
        self._keep_part(TS, (t_from, t_to, a, kept, None))  # (None: no validity, see _nbytes)
        return self._locate(kept, a)

    def _cut_values(self, col: int) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`values` of a cut piece (``ts()`` called) whose block the cache does not hold
        whole: from the rows kept for an earlier query when they cover this one's, else
        decoded no further than its last row into scratch memory, kept as in :meth:`_cut_ts`."""
        held = self._part_held(col)
        if held is not None:
            return held
        rows = self._part_rows(col)
        if rows is None:
            return _cut(*self._own(col), self.lo, self.hi)
        lo, hi = rows
        dtype = self.dtype_of(col)
        x, valid = self.reader.read_values(self.block, col, dtype, hi, scratch(hi * 8), lo)
        kept = self._keep_decoded(col, lo, x, valid)
        return _cut(kept[1], kept[2], self.lo - lo, self.hi - lo)

    def _part_held(self, col: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        """A cut piece's values from the block's own arrays or the rows kept of it, if
        those cover the piece."""
        entry = self._entry()
        own = entry.get((self.index, col, "np"))
        if own is not None:
            return _cut(*own, self.lo, self.hi)
        part = entry.get((self.index, col, "part"))  # (first row, values, validity or None)
        if part is not None:
            first, x, valid = part
            if first <= self.lo and self.hi <= first + x.size:
                return _cut(x, valid, self.lo - first, self.hi - first)
        return None

    def _part_rows(self, col: int) -> tuple[int, int] | None:
        """The block's rows to decode and keep for a cut piece that :meth:`_part_held` does
        not cover (with those kept before), or None: the whole block."""
        lo, hi = self.lo, self.hi
        part = self._entry().get((self.index, col, "part"))
        if part is not None:
            lo, hi = min(lo, part[0]), max(hi, part[0] + part[1].size)
        if (hi - lo) * PART_SHARE > self.block.rows:
            return None
        return lo, hi

    def _keep_decoded(self, col: int, lo: int, x: np.ndarray, valid: np.ndarray | None) -> tuple:
        """Keep rows decoded from ``lo`` on (copied: they may lie in scratch memory); the
        rows kept."""
        kept = (lo, x.copy(), None if valid is None else valid.copy())
        self._keep_part(col, kept)
        return kept

    def _keep_part(self, col: int | str, part: tuple) -> None:
        """Keep some rows of a column of this block (replacing those kept before), unless
        the whole block is kept."""
        entry = self._entry()
        key = (self.index, col, "part")
        with _STATS_LOCK:  # pool threads may keep rows of one block at once (ts() and values())
            if (self.index, col, "np") in entry:
                return
            old = entry.get(key)
            entry[key] = part
            self.cache.added(*self._cache_key, _nbytes(part) - (0 if old is None else _nbytes(old)))

    def _keep_own(
        self, col: int | str, values: np.ndarray, valid: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Keep the whole block's column as arrays of its own (rows kept before are dropped);
        what is kept (another thread's arrays if it kept them first)."""
        entry = self._entry()
        key = (self.index, col, "np")
        with _STATS_LOCK:
            got = entry.get(key)
            if got is not None:
                return got
            got = entry[key] = (values, valid)
            old = entry.pop((self.index, col, "part"), None)
            self.cache.added(*self._cache_key, _nbytes(got) - (0 if old is None else _nbytes(old)))
        return got

    @property
    def rows(self) -> int:
        return self.block.rows if self.whole else int(self.ts().size)

    def _whole_column(self, col_id: int) -> pa.Array:
        typ = self.types[col_id]
        entry = self._entry()
        arr = entry.get((self.index, col_id))
        if arr is None:
            if typ in _FIXED:  # an Arrow view of the numpy values, no copy
                if self._arena_if_done(col_id) is not None:
                    # Not kept: it would keep the arena's memory after the arena is evicted.
                    return from_numpy_valid(*self._whole(col_id), typ)
                arr = from_numpy_valid(*self._own(col_id), typ)
            else:
                arr = self.reader.read_column(self.block, col_id, typ, self.compressor)
                self._added(arr.nbytes)
            entry[(self.index, col_id)] = arr
        return arr

    def column(self, col_id: int) -> pa.Array:
        typ = self.types[col_id]
        if (
            not self.whole
            and typ in _FIXED
            and (self.index, col_id) not in self._entry()
            and self._held(col_id) is None
        ):
            self.ts()
            return from_numpy_valid(*self._cut_values(col_id), typ)
        arr = self._whole_column(col_id)
        if self.whole:
            return arr
        self.ts()  # finds lo/hi
        return arr.slice(self.lo, self.hi - self.lo)

    def values(self, col_id: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self.types[col_id] not in _FIXED:
            return to_numpy_valid(self.column(col_id))
        if self.whole:
            return self._whole(col_id)
        self.ts()
        held = self._held(col_id)
        if held is None:
            return self._cut_values(col_id)
        return _cut(*held, self.lo, self.hi)

    def stats(self, col_id: int) -> list[Any] | None:
        if not self.whole:
            return None
        meta = self.block.cols.get(col_id)
        return [0, None, None, 0] if meta is None else meta[2:6]  # None: all NULL here

    def bounds(self, col_id: int) -> list[Any] | None:
        return block_bounds(self.block, col_id)


_TS_DTYPE = np.dtype(np.int64)


def _cut(
    x: np.ndarray, valid: np.ndarray | None, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray | None]:
    return x[lo:hi], None if valid is None else valid[lo:hi]


def _nbytes(arrays: tuple) -> int:
    """Bytes of what the cache keeps of a block's column: a tuple that ends with values and
    validity or None (own arrays; rows kept: first row, values, validity; timestamps kept:
    times, first row, timestamps, None)."""
    values, valid = arrays[-2:]
    return values.nbytes + (0 if valid is None else valid.nbytes)


_scratch = threading.local()


def scratch(nbytes: int) -> np.ndarray:
    """This thread's scratch bytes (at least ``nbytes``), for a block decoded only to be cut:
    memory used again and again, so already backed by pages. What is decoded there is
    copied out before the next decode on the same thread."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < nbytes:
        buf = np.empty(max(nbytes, 1 << 16), np.uint8)
        buf.fill(0)  # touched now, once
        _scratch.buf = buf
    return buf


def blocks_lock() -> threading.Lock:
    """The lock that guards the block cache's accounting (worker threads share it)."""
    return _STATS_LOCK


def has_nulls(block: BlockMeta, col_id: int) -> bool:
    """Whether a column of a segment block holds a NULL (all of it does when the block
    predates the column)."""
    meta = block.cols.get(col_id)
    return meta is None or meta[2] < block.rows


def segment_arena(
    reader: SegmentReader, cache: BlockCache, memo: dict, col: int | str, dtype: np.dtype
) -> Arena:
    """A segment's arena of one column, looked up in the block cache once per query
    (``memo``: the query's arenas of this segment)."""
    arena = memo.get(col)
    if not arena:  # None, or False: there was none when a piece looked
        with _STATS_LOCK:
            arena = memo[col] = cache.arena(reader, col, dtype)
    return arena


def read_block(
    reader: SegmentReader, block: BlockMeta, col: int | str, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray | None]:
    """One block of a fixed-width column (``TS``: the timestamps), decoded."""
    if col == TS:
        return reader.read_ts(block), None
    return reader.read_values(block, col, dtype)  # type: ignore[arg-type]


def decode_into(
    reader: SegmentReader,
    cache: BlockCache,
    arena: Arena,
    block: BlockMeta,
    col: int | str,
    own: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> None:
    """Put one block of a column (``TS``: timestamps) into its arena slot: copied from the
    block's own arrays when it has them (``own``), else decoded."""
    dtype = arena.values.dtype
    values, valid = own if own is not None else read_block(reader, block, col, dtype)
    added = arena.fill(block, values, valid)
    if added:
        with _STATS_LOCK:
            cache.arena_added(reader, col, dtype, added)


def block_bounds(block: BlockMeta, col_id: int) -> list[Any]:
    """[count, min, max] of a column in a segment block (count 0: all NULL there)."""
    meta = block.cols.get(col_id)
    return [0, None, None] if meta is None else meta[2:5]


class RowsPiece(Piece):
    """Rows held in memory: a memtable chunk, or sources merged where they overlapped."""

    __slots__ = ("_ts", "t0", "t1", "table", "whole")

    def __init__(self, table: pa.Table):
        self.table = table
        self._ts = table.column(TS).to_numpy()
        self.t0, self.t1 = int(self._ts[0]), int(self._ts[-1])
        self.whole = False

    def ts(self) -> np.ndarray:
        return self._ts

    @property
    def rows(self) -> int:
        return int(self._ts.size)

    def column(self, col_id: int) -> pa.Array:
        col = self.table.column(col_key(col_id))
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def clip(table: pa.Table, t0: int | None, t1: int | None) -> pa.Table:
    """The rows of ``table`` with t0 <= ts <= t1 (any order)."""
    if t0 is None and t1 is None:
        return table
    ts = table.column(TS).to_numpy()
    mask = np.ones(ts.size, dtype=bool)
    if t0 is not None:
        mask &= ts >= t0
    if t1 is not None:
        mask &= ts <= t1
    return table if mask.all() else table.filter(pa.array(mask))


def prefetch(
    pieces: list[Piece], col_ids: list[int], threads: int = 0, arenas: bool = False
) -> None:
    """Decode, on the thread pool, the blocks of ``pieces`` (timestamps and ``col_ids``) that
    the block cache does not hold yet: into their segments' arenas (``arenas``, for queries
    that then read the pieces of a segment together) or as arrays of their own. Decoding
    (zstd, numpy's byte shuffles) releases the GIL, so it runs on several cores."""
    todo: list[tuple[BlockPiece, int | str, Arena | None]] = []
    by_reader: dict[int, list[BlockPiece]] = {}
    for p in pieces:
        if isinstance(p, BlockPiece):
            by_reader.setdefault(id(p.reader), []).append(p)
    for group in by_reader.values():
        first = group[0]
        seqs = np.fromiter((p.block.seq for p in group), np.int64, len(group))
        for col in [TS, *col_ids]:
            fixed = col == TS or first.types[col] in _FIXED
            if not fixed or not arenas:
                tail = (col, "np") if fixed else (col,)
                candidates = group
                if fixed:  # blocks already in an arena (a flush puts them there) are read there
                    with _STATS_LOCK:
                        held = first.cache.peek_arena(first.reader, col, first.dtype_of(col))
                    if held is not None:
                        left = np.flatnonzero(~held.done[seqs]).tolist()
                        candidates = [group[k] for k in left]
                todo += [(p, col, None) for p in candidates if (p.index, *tail) not in p._entry()]
                continue
            arena = segment_arena(first.reader, first.cache, first.arenas, col, first.dtype_of(col))
            missing = np.flatnonzero(~arena.done[seqs])
            todo += [(group[k], col, arena) for k in missing.tolist()]
    # Handing work to the pool costs thread wake-ups and GIL hand-overs (milliseconds on a
    # busy machine): a few blocks are decoded on the calling thread.
    if not todo:
        return
    if len(todo) < (MIN_PARALLEL_DECODES if arenas else MIN_PARALLEL_OWN_DECODES):
        decode(todo)
        return

    from septet.tsdb.parallel import map_chunks

    map_chunks(decode, todo, threads, min_items=2)


def decode(todo: list[tuple[BlockPiece, int | str, Arena | None]]) -> None:
    """Decode (piece, column, its arena or None: arrays of its own) blocks."""
    for p, col, arena in todo:
        if arena is not None:
            if not arena.done[p.block.seq]:
                p._into_arena(arena, col)
        elif not p.whole and (col == TS or p.types[col] in _FIXED):
            p.ts() if col == TS else p.values(col)  # type: ignore[arg-type]  # maybe a part
        elif col == TS or p.types[col] in _FIXED:
            p._own(col)
        else:
            p._whole_column(col)  # type: ignore[arg-type]


# Cut pieces' blocks not decoded yet are decoded together (decode_cut) from this many on.
BATCH_MIN_DECODES = 8


def decode_cut(pieces: list[Piece], col_ids: list[int]) -> None:
    """Decode the blocks of fixed-width columns that block pieces will read and the cache
    holds neither whole nor, for a cut piece, in part (what the pieces would do a block at a
    time as they are read): the rows a cut piece needs when they are a small share of the
    block (see PART_SHARE), else the whole block. Float blocks without NULLs that need as
    many rows (the same times of many tables) are un-split and un-XORed together: a numpy
    call per step for all of them instead of a dozen per block, kept as slices of one array."""
    todo = []
    for p in pieces:
        if not isinstance(p, BlockPiece):
            continue
        for col in col_ids:
            if p.types.get(col) not in _FIXED:
                continue
            p.ts()
            if p._held(col) is not None or (not p.whole and p._part_held(col) is not None):
                continue
            todo.append((p, col, None if p.whole else p._part_rows(col)))
    if len(todo) < BATCH_MIN_DECODES:
        return  # read one by one as the query reaches them
    together: dict[tuple, list] = {}
    for p, col, rows in todo:
        got = p.reader.frame(p.block, col)
        if got is None:  # the block predates the column: read as usual (all NULL)
            continue
        header, compressed = got
        comp, kind, width, nulls, n, _ = header
        raw = codecs.decompress(compressed, codecs.compressor_name(comp))
        dtype = p.dtype_of(col)
        lo, hi = (0, n) if rows is None else rows
        if (
            kind == codecs.FLOAT_ID
            and not nulls
            and dtype.itemsize == width
            and len(raw) >= n * width
        ):
            together.setdefault((dtype, hi - lo), []).append((p, col, lo, hi, raw, n, rows is None))
        elif rows is None:
            p._keep_own(col, *codecs.decode_raw(header, raw, dtype))
        else:
            x, valid = codecs.decode_raw(header, raw, dtype, hi, scratch(hi * 8), lo)
            p._keep_decoded(col, lo, x, valid)
    for (dtype, m), group in together.items():
        _decode_floats_together(group, dtype, m)


def _decode_floats_together(group: list, dtype: np.dtype, m: int) -> None:
    """Rows lo to hi (``m`` of them) of float blocks (codecs.xor_split_encode, decompressed:
    ``raw``, ``n`` values each), kept for their pieces: as the block's own arrays (``whole``)
    or as the rows kept of it."""
    width = dtype.itemsize
    utype = np.dtype(np.uint64 if width == 8 else np.uint32)
    x = np.empty((len(group), m), utype)
    as_bytes = x.view(np.uint8).reshape(len(group), m, width)
    seeds = np.zeros((len(group), width), np.uint8)
    for k, (_, _, lo, hi, raw, n, _) in enumerate(group):
        planes = np.frombuffer(raw, np.uint8, count=n * width).reshape(width, n)
        as_bytes[k].T[...] = planes[:, lo:hi]
        if lo:  # the XOR of every word before lo (see codecs.xor_split_decode)
            seeds[k] = np.bitwise_xor.reduce(planes[:, :lo], axis=1)
    np.bitwise_xor.accumulate(x, axis=1, out=x)
    x ^= seeds.view(utype)
    values = x.view(dtype)
    for k, (p, col, lo, _, _, _, whole) in enumerate(group):
        if whole:
            p._keep_own(col, values[k], None)
        else:
            p._keep_part(col, (lo, values[k], None))


def search_sorted_runs(ts: np.ndarray, lo: np.ndarray, hi: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per k, the first position in ``ts[lo[k]:hi[k]]`` (sorted) whose value is >= ``v[k]``
    (``hi[k]`` when none): ``searchsorted`` of many sorted runs of one array at once, a
    vectorised binary search (one numpy step per halving instead of one call per run)."""
    lo, hi = lo.astype(np.int64, copy=True), hi.astype(np.int64, copy=True)
    last = ts.size - 1
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) >> 1
        below = ts[np.minimum(mid, last)] < v
        lo = np.where(active & below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)


def arena_spans(pieces: list[BlockPiece]) -> tuple[np.ndarray, np.ndarray]:
    """(first, end) positions in their segment's arenas of block pieces of one segment whose
    timestamps are decoded; the cut ones are located all at once (see BlockPiece.span)."""
    n = len(pieces)
    r0 = np.fromiter((p.block.row0 for p in pieces), np.int64, n)
    rows = np.fromiter((p.block.rows for p in pieces), np.int64, n)
    s, e = r0.copy(), r0 + rows
    cut = [k for k, p in enumerate(pieces) if not p.whole]
    if cut:
        ts = pieces[0].arena(TS).values
        idx = np.array(cut, np.int64)
        t0 = np.fromiter((pieces[k].t0 for k in cut), np.int64, len(cut))
        t1 = np.fromiter((pieces[k].t1 for k in cut), np.int64, len(cut))
        lo = search_sorted_runs(ts, r0[idx], e[idx], t0)
        # t1 + 1, searched from the left, is t1 searched from the right.
        hi = search_sorted_runs(ts, lo, e[idx], t1 + 1)
        s[idx], e[idx] = lo, hi
        for k, a, b, base in zip(cut, lo.tolist(), hi.tolist(), r0[idx].tolist(), strict=True):
            p = pieces[k]
            p.lo, p.hi, p._ts = a - base, b - base, ts[a:b]
    return s, e


def arena_runs(
    pieces: list[BlockPiece], max_gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Block pieces of one segment in arena order, cut into runs of neighbours: (order of the
    non-empty pieces, their first positions, their end positions, run bounds into those).
    A run ends where more than ``max_gap`` rows that no piece holds follow."""
    s, e = arena_spans(pieces)
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    keep = e > s
    if not keep.all():
        order, s, e = order[keep], s[keep], e[keep]
    cuts = np.flatnonzero(s[1:] - e[:-1] > max_gap) + 1
    return order, s, e, [0, *cuts.tolist(), int(s.size)]


def cache_written(
    cache: BlockCache,
    reader: SegmentReader,
    uid: int,
    rows: pa.Table,
    types: dict[int, pa.DataType],
    arenas: dict,
) -> None:
    """Put the timestamps and fixed-width columns (``types``: the table's column types) of a
    table's rows just written to a segment into the segment's arenas (``arenas``: those this
    flush made), exactly what decoding its blocks gives, without decoding. A table's blocks
    are neighbours in the segment: one copy per column."""
    blocks = reader.blocks(uid)
    if not blocks:
        return
    columns: list[tuple[int | str, Any]] = [(TS, rows.column(TS))]
    for name in rows.column_names:
        if name == TS:
            continue
        col = int(name[1:])
        typ = types.get(col)
        if typ in _FIXED and rows.schema.field(name).type == typ:
            columns.append((col, rows.column(name)))
    seqs = [b.seq for b in blocks]
    for col, arr in columns:
        dtype = _TS_DTYPE if col == TS else _FIXED[types[col]]  # type: ignore[index]
        arena = segment_arena(reader, cache, arenas, col, dtype)
        values, valid = to_numpy_valid(arr)
        added = arena.fill_span(blocks[0].row0, seqs, values.astype(dtype, copy=False), valid)
        if added:
            with _STATS_LOCK:
                cache.arena_added(reader, col, dtype, added)
