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

from septet.tsdb.segment import (
    TS,
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
# Fewer block columns than this to decode: not worth the thread pool (~40 us each).
MIN_PARALLEL_DECODES = 64
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
    """One segment block (or the part of it inside the query's time range)."""

    __slots__ = (
        "_cache_key",
        "_cached",
        "_ts",
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
    ):
        self.reader, self.block, self.index, self.cache = reader, block, index, cache
        self.types, self.compressor = types, compressor
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

    def ts(self) -> np.ndarray:
        if self._ts is not None:
            return self._ts
        entry = self._entry()
        ts = entry.get((self.index, TS))
        if ts is None:
            ts = entry[(self.index, TS)] = self.reader.read_ts(self.block)
            self._added(ts.nbytes)
        if not self.whole:
            # t1 + 1, searched from the left, is t1 searched from the right.
            lo, hi = ts.searchsorted(np.array([self.t0, self.t1 + 1], np.int64)).tolist()
            self.lo, self.hi = lo, hi
            ts = ts[lo:hi]
        self._ts = ts
        return ts

    @property
    def rows(self) -> int:
        return self.block.rows if self.whole else int(self.ts().size)

    def _whole_column(self, entry: dict, col_id: int) -> pa.Array:
        arr = entry.get((self.index, col_id))
        if arr is None:
            got = entry.get((self.index, col_id, "np"))
            if got is not None:  # decoded to numpy already: wrap it, no copy
                arr = from_numpy_valid(got[0], got[1], self.types[col_id])
                entry[(self.index, col_id)] = arr
                return arr
            arr = self.reader.read_column(self.block, col_id, self.types[col_id], self.compressor)
            entry[(self.index, col_id)] = arr
            self._added(arr.nbytes)
        return arr

    def column(self, col_id: int) -> pa.Array:
        cached = self._cached
        arr = None if cached is None else cached.get((self.index, col_id))
        if arr is None:
            arr = self._whole_column(self._entry(), col_id)
        if self.whole:
            return arr
        self.ts()  # finds lo/hi
        return arr.slice(self.lo, self.hi - self.lo)

    def values(self, col_id: int) -> tuple[np.ndarray, np.ndarray | None]:
        entry = self._cached
        if entry is None:
            entry = self._entry()
        key = (self.index, col_id, "np")  # numpy views of the cached Arrow block
        got = entry.get(key)
        if got is None:
            arr = entry.get((self.index, col_id))
            typ = self.types[col_id]
            if arr is not None or typ not in _FIXED:
                got = to_numpy_valid(self._whole_column(entry, col_id))
                extra = 0 if got[1] is None else got[0].nbytes + got[1].nbytes
            else:  # decoded straight to numpy: no Arrow array unless one is asked for
                got = self.reader.read_values(self.block, col_id, _FIXED[typ])
                extra = got[0].nbytes + (0 if got[1] is None else got[1].nbytes)
            entry[key] = got
            if extra:
                self._added(extra)
        if self.whole:
            return got
        self.ts()
        x, valid = got
        return x[self.lo : self.hi], None if valid is None else valid[self.lo : self.hi]

    def values_many(self, col_ids: list[int]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        # The gather of a filtered scan asks this once per piece: the lookups that
        # :meth:`values` repeats per column (cache entry, range) are done once here.
        entry = self._cached
        if entry is None:
            entry = self._entry()
        index = self.index
        out = [entry.get((index, c, "np")) for c in col_ids]
        for k, got in enumerate(out):
            if got is None:  # not decoded yet: values() decodes it into the cache entry
                self.values(col_ids[k])
                out[k] = entry[(index, col_ids[k], "np")]
        if self.whole:
            return out
        self.ts()
        lo, hi = self.lo, self.hi
        return [(x[lo:hi], None if v is None else v[lo:hi]) for x, v in out]

    def stats(self, col_id: int) -> list[Any] | None:
        if not self.whole:
            return None
        meta = self.block.cols.get(col_id)
        return [0, None, None, 0] if meta is None else meta[2:6]  # None: all NULL here

    def bounds(self, col_id: int) -> list[Any] | None:
        return block_bounds(self.block, col_id)


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


def prefetch(pieces: list[Piece], col_ids: list[int], threads: int = 0) -> None:
    """Decode, on the thread pool, the blocks of ``pieces`` (timestamps and ``col_ids``) that
    the block cache does not hold yet. Decoding (zstd, numpy's byte shuffles) releases the
    GIL, so it runs on several cores; what follows, many small numpy calls per block, does
    not, and runs on the calling thread with every block already decoded."""
    todo = []
    for p in pieces:
        if not isinstance(p, BlockPiece):
            continue
        entry = p._entry()
        need = [c for c in col_ids if (p.index, c, "np") not in entry and (p.index, c) not in entry]
        if need or (p.index, TS) not in entry:
            todo.append((p, need))
    # Handing work to the pool costs thread wake-ups and GIL hand-overs (milliseconds on a
    # busy machine): a few blocks are left to be decoded on the calling thread as it reads.
    if sum(len(need) + 1 for _, need in todo) < MIN_PARALLEL_DECODES:
        return

    def decode(chunk: list[tuple[BlockPiece, list[int]]]) -> None:
        for p, need in chunk:
            p.ts()
            for c in need:
                if p.types[c] in _FIXED:
                    p.values(c)
                else:
                    p.column(c)

    from septet.tsdb.parallel import map_chunks

    map_chunks(decode, todo, threads, min_items=2)
