"""Filtered gathers over segment arenas: ``WHERE col > 90`` over many tables in a few numpy
calls.

The per-piece path tests each piece's rows and takes the passing ones column by column: one
numpy call per piece and column, which over a super table of 1,000 sub-tables is tens of
thousands of calls. Here the pieces of one segment are taken together: their rows lie side
by side in the segment's arenas (segment.Arena), so the condition is tested over a run of
neighbouring pieces at once, the passing positions outside every piece (rows of other tables
or outside the time range) are dropped, and each column is gathered with one ``take`` per
run. The rows land in the same places as the per-piece path puts them (table by table, in
time order), so both give the same result; the columns are gathered on the thread pool (a
long ``take`` releases the GIL).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from septet.tsdb.blocks import _FIXED, BlockPiece, Piece, arena_runs, prefetch, segment_arena
from septet.tsdb.parallel import map_chunks
from septet.tsdb.segment import TS, empty_numpy, from_numpy_valid

# A segment's pieces are tested together when it has at least this many; fewer one by one.
ARENA_MIN_PIECES = 32
# Rows between two pieces that are tested and dropped rather than starting a new run.
MAX_GAP_ROWS = 16384
# Fewer values to gather (rows x columns) than this: not worth the thread pool.
MIN_PARALLEL_VALUES = 1 << 17

Test = tuple[Callable[[np.ndarray, Any], np.ndarray], Any]


def piece_picks(piece: Piece, ids: list[int], tests: list[Test]) -> np.ndarray:
    """Positions in ``piece`` where every column ``ids[k]`` passes ``tests[k]`` (NULL never
    passes)."""
    mask = None
    for (compare, v), (x, valid) in zip(tests, piece.values_many(ids), strict=True):
        m = compare(x, v)
        if valid is not None:
            m &= valid
        mask = m if mask is None else mask & m
    return mask.nonzero()[0]  # type: ignore[union-attr]


class _Segment:
    """The passing rows of one segment's pieces: arena positions, ascending, and the index
    (into the flat list of pieces) of the piece each belongs to."""

    def __init__(self, first: BlockPiece, pos: np.ndarray, owner: np.ndarray):
        self.first, self.pos, self.owner = first, pos, owner

    def dest(self, out_at: np.ndarray) -> np.ndarray:
        """Where the rows go in the output, given where each piece's rows start there."""
        n = self.pos.size
        if n == 0:
            return np.zeros(0, np.int64)
        # A piece's rows are contiguous in ``pos`` (pieces do not overlap).
        first = np.flatnonzero(np.concatenate(([True], self.owner[1:] != self.owner[:-1])))
        shift = out_at[self.owner[first]] - first
        return np.arange(n, dtype=np.int64) + np.repeat(shift, np.diff([*first, n]))

    def gather(self, col: int | str, out: np.ndarray, valid_out: Any) -> np.ndarray | None:
        """Copy this segment's passing rows of a column into ``out`` (and its validity into
        ``valid_out``, made when first needed); returns ``valid_out``."""
        if self.pos.size == 0:
            return valid_out
        p = self.first
        arena = segment_arena(p.reader, p.cache, p.arenas, col, p.dtype_of(col))
        arena.values.take(self.pos, None, out, "clip")
        if arena.valid is not None:
            if valid_out is None:
                valid_out = np.ones(out.size, dtype=bool)
            arena.valid.take(self.pos, None, valid_out, "clip")
        return valid_out


def _segment_hits(
    pieces: list[BlockPiece], where: np.ndarray, ids: list[int], tests: list[Test]
) -> _Segment:
    """The passing rows of one segment's pieces (``where``: their places in the flat list)."""
    order, s, e, bounds = arena_runs(pieces, MAX_GAP_ROWS)
    owner_of = where[order]
    first = pieces[0]
    arenas = [
        segment_arena(first.reader, first.cache, first.arenas, c, first.dtype_of(c)) for c in ids
    ]
    found, owners = [], []
    for i, j in itertools.pairwise(bounds):
        rs, re_ = s[i:j], e[i:j]
        a, b = int(rs[0]), int(re_[-1])
        mask = None
        for (compare, v), arena in zip(tests, arenas, strict=True):
            m = compare(arena.values[a:b], v)
            if arena.valid is not None:
                m &= arena.valid[a:b]
            mask = m if mask is None else mask & m
        # Rows between two pieces (other tables, or outside the time range) never pass.
        for g0, g1 in zip(re_[:-1].tolist(), rs[1:].tolist(), strict=True):
            if g1 > g0:
                mask[g0 - a : g1 - a] = False  # type: ignore[index]
        pos = mask.nonzero()[0] + a  # type: ignore[union-attr]
        # Each piece's passing rows, counted by where its bounds fall among them.
        per_piece = pos.searchsorted(re_) - pos.searchsorted(rs)
        found.append(pos)
        owners.append(np.repeat(owner_of[i:j], per_piece))
    if not found:
        return _Segment(first, np.zeros(0, np.int64), np.zeros(0, np.int64))
    return _Segment(first, np.concatenate(found), np.concatenate(owners))


def gather_filtered(
    flat: Sequence[Piece],
    ids: list[int],
    tests: list[Test],
    columns: list[tuple[int, str, np.dtype, pa.DataType]],
    threads: int,
) -> tuple[np.ndarray, dict[str, pa.Array], np.ndarray]:
    """(timestamps, columns by name, passing rows per piece) of the rows of ``flat`` where
    every column ``ids[k]`` passes ``tests[k]``, piece after piece; ``columns``: (id, name,
    numpy dtype, Arrow type) of the fixed-width columns to gather."""
    by_segment: dict[int, list[int]] = {}
    for k, p in enumerate(flat):
        if isinstance(p, BlockPiece):
            by_segment.setdefault(id(p.reader), []).append(k)
    groups = [m for m in by_segment.values() if len(m) >= ARENA_MIN_PIECES]
    together = {k for m in groups for k in m}
    alone = set(range(len(flat))) - together
    prefetch([flat[k] for k in sorted(together)], sorted(set(ids)), threads, arenas=True)
    prefetch([flat[k] for k in sorted(alone)], sorted(set(ids)), threads)
    hits = np.zeros(len(flat), np.int64)
    segments: list[_Segment] = []
    for members in groups:
        where = np.array(members, np.int64)
        seg = _segment_hits([flat[k] for k in members], where, ids, tests)  # type: ignore[misc]
        hits += np.bincount(seg.owner, minlength=len(flat))
        segments.append(seg)
    singles = []
    for k in sorted(alone):
        picks = piece_picks(flat[k], ids, tests)
        hits[k] = picks.size
        if picks.size:
            singles.append((k, picks))
    out_at = np.cumsum(hits) - hits
    total = int(hits.sum())
    # Columns are decoded only for the pieces that kept rows.
    kept = np.flatnonzero(hits).tolist()
    cols = [c for c, *_ in columns]
    prefetch([flat[k] for k in kept if k in together], cols, threads, arenas=True)
    prefetch([flat[k] for k in kept if k in alone], cols, threads)
    # Rows are gathered segment by segment (then the pieces read one by one) into a stage,
    # and put in output order (table by table) by one ``take`` per column.
    where = [seg.dest(out_at) for seg in segments]
    where += [np.arange(out_at[k], out_at[k] + picks.size, dtype=np.int64) for k, picks in singles]
    stage_to_out = np.concatenate(where) if where else np.zeros(0, np.int64)
    order = None
    if stage_to_out.size and (np.diff(stage_to_out) != 1).any():
        order = np.empty(total, np.int64)
        order[stage_to_out] = np.arange(total, dtype=np.int64)
    spans = np.cumsum([0] + [w.size for w in where]).tolist()
    wanted: list[tuple[int | str, np.dtype]] = [(TS, np.dtype(np.int64))]
    wanted += [(cid, dtype) for cid, _, dtype, _ in columns]

    def gather(chunk: list[tuple[int | str, np.dtype]]) -> list[tuple[np.ndarray, Any]]:
        done = []
        for col, dtype in chunk:
            stage = empty_numpy(total, dtype)
            valid = None
            for j, seg in enumerate(segments):
                a, b = spans[j], spans[j + 1]
                got = seg.gather(col, stage[a:b], None if valid is None else valid[a:b])
                if got is not None and valid is None:  # the first validity: make it whole
                    valid = np.ones(total, dtype=bool)
                    valid[a:b] = got
            for j, (k, picks) in enumerate(singles, start=len(segments)):
                a, b = spans[j], spans[j + 1]
                if col == TS:
                    x, v = flat[k].ts(), None
                else:
                    x, v = flat[k].values(col)  # type: ignore[arg-type]
                x.take(picks, None, stage[a:b], "clip")
                if v is not None:
                    if valid is None:
                        valid = np.ones(total, dtype=bool)
                    v.take(picks, None, valid[a:b], "clip")
            if order is not None:
                out = empty_numpy(total, dtype)
                stage.take(order, None, out, "clip")
                stage = out
                if valid is not None:
                    valid = valid[order]
            done.append((stage, valid))
        return done

    if total * len(wanted) < MIN_PARALLEL_VALUES:
        got = gather(wanted)
    else:
        got = [g for part in map_chunks(gather, wanted, threads, min_items=2) for g in part]
    ts_np = got[0][0]
    out_cols = {
        name: from_numpy_valid(values, valid, typ)
        for (_, name, _, typ), (values, valid) in zip(columns, got[1:], strict=True)
    }
    return ts_np, out_cols, hits


def arena_ready(columns: list[tuple[int, str, np.dtype, pa.DataType]], flat: Sequence[Piece]):
    """Whether :func:`gather_filtered` is worth it: some segment holds enough of the pieces,
    and it can gather these columns (fixed-width ones only)."""
    per_segment: dict[int, int] = {}
    first = None
    for p in flat:
        if isinstance(p, BlockPiece):
            first = first or p
            key = id(p.reader)
            per_segment[key] = per_segment.get(key, 0) + 1
    if first is None or max(per_segment.values()) < ARENA_MIN_PIECES:
        return False
    return all(first.types[c] in _FIXED for c, *_ in columns)
