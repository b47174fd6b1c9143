"""Immutable segment files: the column blocks of many tables for one time partition.

Layout::

    b"SPTSEG01"
    block ...                      each column of each block encoded by septet.tsdb.codecs
    index                          zstd-compressed JSON: per table uid, its blocks in time order,
                                   per block: rows, min/max ts, and per column (by column id)
                                   offset, length, non-null count, min, max, sum
    index_length:u64 | crc32(index):u32 | b"SPTSEG01"

A segment is written whole to a temporary file and renamed into place before the manifest
names it, so a reader never sees half of one. Within a segment a table's blocks are sorted
by time and do not overlap; across segments of a partition the newer segment wins on
duplicate timestamps.
"""

from __future__ import annotations

import json
import mmap
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from septet.tsdb import codecs
from septet.tsdb.errors import CorruptionError

MAGIC = b"SPTSEG01"
_TRAILER = struct.Struct("<QI8s")

TS = "ts"
# Arrow type -> numpy dtype (pyarrow's own to_pandas_dtype() would import pandas).
_NUMPY_OF = {
    pa.bool_(): np.dtype(np.bool_),
    pa.int8(): np.dtype(np.int8),
    pa.int16(): np.dtype(np.int16),
    pa.int32(): np.dtype(np.int32),
    pa.int64(): np.dtype(np.int64),
    pa.uint8(): np.dtype(np.uint8),
    pa.uint16(): np.dtype(np.uint16),
    pa.uint32(): np.dtype(np.uint32),
    pa.uint64(): np.dtype(np.uint64),
    pa.float32(): np.dtype(np.float32),
    pa.float64(): np.dtype(np.float64),
}


def col_key(col_id: int) -> str:
    """The field name of a column in internal Arrow tables: ``c<id>``."""
    return f"c{col_id}"


def to_numpy_valid(arr: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Values (nulls as zero) and validity (None when there are no nulls) of a fixed-width array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    valid = None
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        arr = pc.fill_null(arr, False if pa.types.is_boolean(arr.type) else 0)
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64())
    return arr.to_numpy(zero_copy_only=False), valid


def empty_numpy(n: int, dtype: np.dtype) -> np.ndarray:
    """``np.empty(n, dtype)`` in memory from Arrow's pool. A query's result columns are
    megabytes each: numpy gets such blocks from the OS and hands them back when they are
    freed, so every query pays a page fault per 4 KiB again (~40% of a large filtered
    scan); Arrow's allocator keeps freed pages for the next allocation."""
    dtype = np.dtype(dtype)
    return np.frombuffer(pa.allocate_buffer(n * dtype.itemsize), dtype)


def from_numpy_valid(values: np.ndarray, valid: np.ndarray | None, type_: pa.DataType) -> pa.Array:
    """Inverse of :func:`to_numpy_valid`."""
    if valid is not None and valid.all():
        valid = None
    if (type_ in _NUMPY_OF and type_ != pa.bool_()) or pa.types.is_timestamp(type_):
        # Arrow's own conversion can copy, and its mask= path is an order of magnitude slower
        # on large arrays: hand it the values buffer (no copy) and a validity bitmap.
        dtype = np.dtype(np.int64) if pa.types.is_timestamp(type_) else _NUMPY_OF[type_]
        data = np.ascontiguousarray(values, dtype=dtype)
        if valid is None:
            return pa.Array.from_buffers(type_, data.size, [None, pa.py_buffer(data)], null_count=0)
        bits = pa.py_buffer(np.packbits(valid, bitorder="little"))
        nulls = int(data.size - np.count_nonzero(valid))
        return pa.Array.from_buffers(type_, data.size, [bits, pa.py_buffer(data)], null_count=nulls)
    if pa.types.is_timestamp(type_):
        mask = None if valid is None else ~valid
        return pa.array(values.astype(np.int64), mask=mask, type=pa.int64()).cast(type_)
    return pa.array(values, type=type_, mask=None if valid is None else ~valid)


def encode_array(arr: pa.Array, compressor: str, level: int) -> codecs.Encoded:
    """Encode any supported Arrow array as one column block."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        n = len(arr)
        valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
        bufs = arr.buffers()
        offsets = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
        start, end = int(offsets[0]), int(offsets[-1])
        data = bufs[2].to_pybytes()[start:end] if bufs[2] is not None else b""
        return codecs.Encoded(
            codecs.encode_strings(offsets - start, data, valid, compressor=compressor),
            n - arr.null_count,
            None,
            None,
            None,
        )
    values, valid = to_numpy_valid(arr)
    return codecs.encode_values(values, valid, compressor=compressor, level=level)


def decode_array(data: memoryview, type_: pa.DataType, compressor: str) -> pa.Array:
    """Inverse of :func:`encode_array`."""
    if pa.types.is_string(type_) or pa.types.is_binary(type_):
        offsets, body, valid = codecs.decode_strings(data, compressor)
        n = offsets.size - 1
        vbuf = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
        return pa.Array.from_buffers(type_, n, [vbuf, pa.py_buffer(offsets), pa.py_buffer(body)])
    dtype = np.dtype(np.int64) if pa.types.is_timestamp(type_) else _NUMPY_OF[type_]
    values, valid = codecs.decode_values(data, dtype)
    return from_numpy_valid(values, valid, type_)


@dataclass
class BlockMeta:
    rows: int
    t0: int
    t1: int
    ts: tuple[int, int]
    cols: dict[int, list[Any]]  # id -> [offset, length, count, min, max, sum]
    row0: int = 0  # position of the first row among all rows of the segment (file order)
    seq: int = 0  # the block's number in the segment (file order)
    step: int | None = None  # the timestamps are t0 + step * i (segments written since s5)


def _step(meta: dict[str, Any]) -> int | None:
    """The step of a block's regular timestamps from its index entry, if it names one that
    its first and last times and row count agree with."""
    step = meta.get("step")
    if step is None:
        return None
    if not (
        step > 0 and meta["rows"] >= 3 and meta["t0"] + step * (meta["rows"] - 1) == meta["t1"]
    ):
        raise CorruptionError("a block's timestamp step disagrees with its first and last times")
    return step


class SegmentWriter:
    """Builds one segment in memory: add tables' sorted, de-duplicated rows, then finish()."""

    def __init__(self, compressor: str = "zstd", level: int = 3, block_rows: int = 4096):
        self.compressor = compressor
        self.level = level
        self.block_rows = block_rows
        self._parts: list[bytes] = [MAGIC]
        self._pos = len(MAGIC)
        self._index: dict[str, list[dict[str, Any]]] = {}

    def _put(self, data: bytes) -> tuple[int, int]:
        at = self._pos
        self._parts.append(data)
        self._pos += len(data)
        return at, len(data)

    def add_table(self, uid: int, rows: pa.Table) -> None:
        """Append ``rows`` (field ``ts`` int64 sorted unique, then ``c<id>`` columns)."""
        blocks = self._index.setdefault(str(uid), [])
        ts_all = rows.column(TS).to_numpy()
        for start in range(0, rows.num_rows, self.block_rows):
            part = rows.slice(start, self.block_rows)
            ts = ts_all[start : start + self.block_rows]
            enc = codecs.encode_values(
                ts, None, timestamps=True, compressor=self.compressor, level=self.level
            )
            meta: dict[str, Any] = {
                "rows": int(ts.size),
                "t0": int(ts[0]),
                "t1": int(ts[-1]),
                "ts": self._put(enc.data),
                "cols": {},
            }
            if enc.step is not None:  # found without decoding (blocks.BlockPiece._cut_ts)
                meta["step"] = enc.step
            for name in part.column_names:
                if name == TS:
                    continue
                e = encode_array(part.column(name), self.compressor, self.level)
                meta["cols"][name[1:]] = [*self._put(e.data), e.count, e.min, e.max, e.sum]
            blocks.append(meta)

    def finish(self) -> bytes:
        """The whole segment file's bytes."""
        index = codecs.compress(json.dumps({"tables": self._index}).encode(), "zstd", 3)
        trailer = _TRAILER.pack(len(index), zlib.crc32(index), MAGIC)
        return b"".join([*self._parts, index, trailer])


class SegmentReader:
    """Reads one segment (bytes or an mmap of the file); decodes blocks on demand."""

    def __init__(self, name: str, data: bytes | mmap.mmap):
        self.name = name
        self.data = data
        self.size = len(data)
        if self.size < len(MAGIC) + _TRAILER.size or bytes(data[: len(MAGIC)]) != MAGIC:
            raise CorruptionError(f"segment {name} is not a tsdb segment file")
        length, crc, magic = _TRAILER.unpack_from(data, self.size - _TRAILER.size)
        start = self.size - _TRAILER.size - length
        index = bytes(data[start : self.size - _TRAILER.size])
        if magic != MAGIC or zlib.crc32(index) != crc:
            raise CorruptionError(f"segment {name} failed its checksum")
        raw = json.loads(codecs.decompress(index, "zstd"))
        self.tables: dict[int, list[BlockMeta]] = {
            int(uid): [
                BlockMeta(
                    b["rows"],
                    b["t0"],
                    b["t1"],
                    tuple(b["ts"]),
                    {int(k): v for k, v in b["cols"].items()},
                    step=_step(b),
                )
                for b in blocks
            ]
            for uid, blocks in raw["tables"].items()
        }
        # Every block's place in the segment's column arenas (see Arena): file order.
        at = seq = 0
        for blocks in self.tables.values():
            for b in blocks:
                b.row0, b.seq = at, seq
                at += b.rows
                seq += 1
        self.rows = at
        self.n_blocks = seq
        self._block_table: tuple | None = None
        self._bounds: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.view = memoryview(data)

    def block_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
        """Every block in file order, as arrays: (table uid, first ts, last ts), with the
        blocks and their index within their table (made once; segments never change)."""
        got = self._block_table
        if got is None:
            uids, t0s, t1s, metas, index = [], [], [], [], []
            for uid, blocks in self.tables.items():
                for i, b in enumerate(blocks):
                    uids.append(uid)
                    t0s.append(b.t0)
                    t1s.append(b.t1)
                    metas.append(b)
                    index.append(i)
            got = self._block_table = (
                np.array(uids, np.int64),
                np.array(t0s, np.int64),
                np.array(t1s, np.int64),
                metas,
                index,
            )
        return got

    def block_bounds(self, col_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(non-NULL count, min, max) of a numeric column in every block, file order, as
        arrays (min/max float64, NaN where unknown; made once per column)."""
        got = self._bounds.get(col_id)
        if got is None:
            metas = self.block_table()[3]
            count = np.zeros(len(metas), np.int64)
            lo = np.full(len(metas), np.nan)
            hi = np.full(len(metas), np.nan)
            for k, b in enumerate(metas):
                meta = b.cols.get(col_id)
                if meta is None:
                    continue  # the block predates the column: all NULL
                count[k] = meta[2]
                if meta[3] is not None and meta[4] is not None:
                    lo[k], hi[k] = meta[3], meta[4]
            got = self._bounds[col_id] = (count, lo, hi)
        return got

    def blocks(self, uid: int) -> list[BlockMeta]:
        return self.tables.get(uid, [])

    def read_ts(self, block: BlockMeta, stop: int | None = None, out=None) -> np.ndarray:
        """A block's timestamps (``stop``, ``out``: see codecs.decode_values)."""
        off, n = block.ts
        values, _ = codecs.decode_values(self.view[off : off + n], np.dtype(np.int64), stop, out)
        return values

    def frame(self, block: BlockMeta, col_id: int) -> tuple[tuple, memoryview] | None:
        """(header, compressed payload) of one column of one block (codecs.frame); None when
        the block predates the column."""
        meta = block.cols.get(col_id)
        if meta is None:
            return None
        return codecs.frame(self.view[meta[0] : meta[0] + meta[1]])

    def regular_ts(self, block: BlockMeta) -> tuple[int, int, int] | None:
        """(first, step, count) when a block's timestamps are one regular series, else None
        (see codecs.regular_timestamps): from the index when it says, else from the block."""
        if block.step is not None:
            return block.t0, block.step, block.rows
        off, n = block.ts
        return codecs.regular_timestamps(self.view[off : off + n])

    def read_column(
        self, block: BlockMeta, col_id: int, type_: pa.DataType, compressor: str
    ) -> pa.Array:
        """One column of one block; all-null when the block predates the column."""
        meta = block.cols.get(col_id)
        if meta is None:
            return pa.nulls(block.rows, type_)
        off, n = meta[0], meta[1]
        return decode_array(self.view[off : off + n], type_, compressor)

    def read_values(
        self,
        block: BlockMeta,
        col_id: int,
        dtype: np.dtype,
        stop: int | None = None,
        out=None,
        start: int = 0,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One fixed-width column of one block as numpy (values, validity or None), without
        building an Arrow array; all NULL when the block predates the column. ``stop``,
        ``out``, ``start``: see codecs.decode_values."""
        meta = block.cols.get(col_id)
        if meta is None:
            end = block.rows if stop is None else min(max(stop, 0), block.rows)
            rows = end - min(max(start, 0), end)
            return np.zeros(rows, dtype), np.zeros(rows, dtype=bool)
        off, n = meta[0], meta[1]
        return codecs.decode_values(self.view[off : off + n], dtype, stop, out, start)

    def close(self) -> None:
        self.view.release()
        if isinstance(self.data, mmap.mmap):
            self.data.close()


class Arena:
    """One fixed-width column (or the timestamps) of one segment, decoded into one array.

    Every block of every table has its slot, in file order (``BlockMeta.row0``); a block is
    decoded into its slot the first time a query over many tables needs it, and ``done``
    records which are. A block is still decoded alone, but the blocks of many tables then
    lie side by side in memory, so that a query over many tables reduces, compares or
    gathers them with one numpy call per run of neighbouring blocks instead of one per
    block (and such calls, long enough, release the GIL and run on several cores). Slots
    not decoded hold zeros, and so do NULL slots. ``valid`` exists once some decoded block
    holds a NULL. An arena is made only for queries over many blocks of a segment (the
    block cache counts all of it); queries that read a few blocks keep them as arrays of
    their own (BlockCache.table).
    """

    __slots__ = ("done", "filled", "lock", "valid", "values", "windows")

    def __init__(self, reader: SegmentReader, dtype: np.dtype):
        # Zeroed (and so backed by memory) at once: the OS hands out fresh pages one fault at
        # a time, and a fault costs ~5-10 us here, as much as decoding the block itself. From
        # Arrow's pool, which reuses freed memory and asks for no transparent huge pages:
        # numpy's large arrays do, and when memory is fragmented the kernel then compacts it
        # on the first touch (a 26 MB arena took 100s of ms in a full benchmark run).
        self.values = empty_numpy(reader.rows, dtype)
        self.values.fill(0)
        self.valid: np.ndarray | None = None
        self.done = np.zeros(reader.n_blocks, dtype=bool)
        self.lock = threading.Lock()
        self.filled = 0  # blocks decoded so far: what was derived from fewer is stale
        # (interval, offset) -> (filled, positions where a window starts), timestamps only
        self.windows: dict[tuple[int, int], tuple[int, np.ndarray]] = {}

    def fill(self, block: BlockMeta, values: np.ndarray, valid: np.ndarray | None) -> int:
        """Store one decoded block in its slot; the bytes this added."""
        return self.fill_span(block.row0, [block.seq], values, valid)

    def fill_span(
        self, lo: int, seqs: list[int], values: np.ndarray, valid: np.ndarray | None
    ) -> int:
        """Store neighbouring blocks (``seqs``, from position ``lo`` on) in their slots; the
        bytes this added."""
        hi = lo + values.size
        added = 0  # the values' slots were counted with the arena
        with self.lock:
            if self.done[seqs].all():
                return 0
            if valid is not None:
                if self.valid is None:
                    self.valid = empty_numpy(self.values.size, np.dtype(np.bool_))
                    self.valid.fill(True)
                    added += self.valid.nbytes
                self.valid[lo:hi] = valid
                values = np.where(valid, values, values.dtype.type(0))
            self.values[lo:hi] = values
            self.done[seqs] = True
            self.filled += len(seqs)
        return added

    def complete(self) -> bool:
        """Whether every block is decoded."""
        return bool(self.done.all())


class BlockCache:
    """LRU cache of decoded column blocks, bounded in bytes (LevelDB's block cache).

    Entries are per (segment, table) for columns kept as Arrow arrays (strings, booleans):
    one LRU step per table read, not one per block and column; a table's decoded blocks are
    evicted together. Fixed-width columns and timestamps live in per (segment, column)
    arenas (:class:`Arena`), evicted whole. Segments never change once written; a segment
    that a compaction, DELETE or retention replaces is evicted with all its entries.
    """

    def __init__(self, capacity_bytes: int = 512 << 20):
        self.capacity = capacity_bytes
        self.used = 0
        self._tables: OrderedDict[tuple[str, int], dict] = OrderedDict()
        self._sizes: dict[tuple[str, int], int] = {}

    def table(self, segment: str, uid: int) -> dict:
        """The decoded blocks of one table in one segment, keyed by (block, column)."""
        key = (segment, uid)
        entry = self._tables.get(key)
        if entry is None:
            entry = self._tables[key] = {}
            self._sizes[key] = 0
        else:
            self._tables.move_to_end(key)
        return entry

    def added(self, segment: str, uid: int | tuple, nbytes: int) -> None:
        """Account for a block just stored in ``table(segment, uid)``; evict old tables."""
        key = (segment, *uid) if isinstance(uid, tuple) else (segment, uid)
        if key not in self._sizes:
            return  # evicted meanwhile: its memory goes when its last reader drops it
        self._sizes[key] += nbytes
        self.used += nbytes
        while self.used > self.capacity and len(self._tables) > 1:
            old, _ = next(iter(self._tables.items()))
            if old == key:
                self._tables.move_to_end(key)
                continue
            self._tables.pop(old)
            self.used -= self._sizes.pop(old)

    def arena(self, reader: SegmentReader, column: int | str, dtype: np.dtype) -> Arena:
        """The arena of one column (``TS``: the timestamps) of a segment."""
        key = (reader.name, "arena", column, dtype.str)
        entry = self._tables.get(key)
        if entry is None:
            entry = self._tables[key] = Arena(reader, dtype)
            self._sizes[key] = 0
            self.added(reader.name, key[1:], entry.values.nbytes)
        else:
            self._tables.move_to_end(key)
        return entry

    def peek_arena(self, reader: SegmentReader, column: int | str, dtype: np.dtype) -> Arena | None:
        """The arena of a column of a segment if there is one (none is made)."""
        return self._tables.get((reader.name, "arena", column, dtype.str))

    def arena_added(self, reader: SegmentReader, column: int | str, dtype: np.dtype, n: int):
        """Account for ``n`` bytes just stored in an arena; evict old entries."""
        self.added(reader.name, ("arena", column, dtype.str), n)

    def clear(self) -> None:
        """Drop every entry (a cold cache, as after opening the database)."""
        self._tables.clear()
        self._sizes.clear()
        self.used = 0

    def evict_segment(self, segment: str) -> None:
        for key in [k for k in self._tables if k[0] == segment]:
            self._tables.pop(key)
            self.used -= self._sizes.pop(key)
