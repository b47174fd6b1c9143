"""COUNT/SUM/AVG/MIN/MAX/SPREAD per (partition, time window), piece by piece.

The general aggregation path gathers every row into one array per column, assigns each row
a group and sorts; this one never copies a column. Each table's pieces (blocks, see
blocks.py) are cut at the window edges with a binary search over their sorted timestamps,
and each column is reduced in place with ``np.<ufunc>.reduceat`` into partial aggregates
(non-NULL count, sum, min, max) per (partition, window). A whole block inside one window
takes its partials from the block statistics and is not decoded at all. Partials of the
same (partition, window), from windows that straddle two blocks or from several tables in
one partition, are then combined (sum the counts and sums, min of mins, max of maxs).
Blocks that are not decoded yet are decoded on a thread pool first (blocks.prefetch).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from septet.tsdb.blocks import (
    _FIXED,
    MIN_PARALLEL_OWN_DECODES,
    BlockPiece,
    Piece,
    arena_runs,
    blocks_lock,
    decode_cut,
    prefetch,
    segment_arena,
)
from septet.tsdb.parallel import map_chunks
from septet.tsdb.segment import TS, from_numpy_valid

FUNCTIONS = ("COUNT", "SUM", "AVG", "MIN", "MAX", "SPREAD")
# A segment's pieces are reduced a run at a time (one numpy call per run of neighbouring
# blocks and column, see segment.Arena) when it has at least this many; fewer go one by one.
ARENA_MIN_PIECES = 32
# Rows between two pieces that are reduced and thrown away rather than starting a new run
# (a numpy call costs about as much as reducing some thousands of rows).
MAX_GAP_ROWS = 16384
# Fewer values to reduce (rows x columns) than this: not worth the thread pool.
MIN_PARALLEL_VALUES = 1 << 19


@dataclass
class ColumnNeeds:
    """Which partials one column needs, and its numpy dtype (None: only counted)."""

    dtype: np.dtype | None
    sum: bool = False
    low: bool = False  # the minimum (MIN, SPREAD)
    high: bool = False  # the maximum (MAX, SPREAD)

    @property
    def extremes(self) -> bool:
        return self.low or self.high

    @property
    def acc(self) -> np.dtype:
        """The accumulator of sums: float64 for floats, int64 (wrapping) for integers."""
        return np.dtype(np.float64) if self.dtype.kind == "f" else np.dtype(np.int64)

    def sentinels(self) -> tuple[object, object]:
        """(value that never wins a MIN, value that never wins a MAX)."""
        if self.dtype.kind == "f":
            return np.inf, -np.inf
        info = np.iinfo(self.dtype)
        return info.max, info.min


@dataclass
class Partials:
    """Per group (partition, window): rows, and per column count/sum/min/max."""

    pid: np.ndarray
    wid: np.ndarray
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    count: dict[int, np.ndarray] = field(default_factory=dict)
    sum: dict[int, np.ndarray] = field(default_factory=dict)
    min: dict[int, np.ndarray] = field(default_factory=dict)
    max: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class _Plan:
    """One column's work, resolved once per query."""

    cid: int
    need: ColumnNeeds
    counted_only: bool
    acc: np.dtype | None
    never_min: object = None
    never_max: object = None

    @staticmethod
    def of(cid: int, need: ColumnNeeds) -> _Plan:
        if need.dtype is None:
            return _Plan(cid, need, True, None)
        never_min, never_max = need.sentinels() if need.extremes else (None, None)
        return _Plan(cid, need, False, need.acc, never_min, never_max)


def _wrap_int64(v: int) -> int:
    return ((v + (1 << 63)) % (1 << 64)) - (1 << 63)


def _stats_window(piece: Piece, wins, plans: list[_Plan]) -> int | None:
    """The window of a whole block that lies inside one window and has statistics for every
    column the query needs, else None."""
    if not piece.whole:
        return None
    if wins is None:
        w = 0
    else:
        w = (piece.t0 - wins.offset) // wins.interval
        if (piece.t1 - wins.offset) // wins.interval != w:
            return None
    for plan in plans:
        if piece.stats(plan.cid) is None:
            return None
    return w


_ZERO = np.zeros(1, np.int64)


def _window_starts(ts: np.ndarray, wins) -> tuple[int, np.ndarray]:
    """(first window number, first position of every window from it to the last) of sorted
    ``ts``; windows in between that hold no row start where the next one does."""
    if wins is None:
        return 0, _ZERO
    w0 = (int(ts[0]) - wins.offset) // wins.interval
    w1 = (int(ts[-1]) - wins.offset) // wins.interval
    if w0 == w1:
        return w0, _ZERO
    # Rows on an edge open the next window: search the edges from the left. The last edge is
    # at or before the last row, so every start is a valid position.
    first_edge = (w0 + 1) * wins.interval + wins.offset
    edges = np.arange(first_edge, first_edge + (w1 - w0) * wins.interval, wins.interval)
    return w0, np.concatenate((_ZERO, ts.searchsorted(edges)))


def _tables_partials(tables: Sequence[tuple[int, list[Piece]]], wins, plans) -> Partials:
    """Uncombined partials of some tables: one entry per (piece, window)."""
    # First the windows of every piece, so that each column is then reduced straight into
    # its slice of one output array; what is per window is computed for all pieces at once.
    work: list[tuple[Piece, np.ndarray | None, int]] = []
    pids, first_w, counts, sizes, lengths = [], [], [], [], []
    at = 0
    for pid, pieces in tables:
        for piece in pieces:
            w = _stats_window(piece, wins, plans)
            if w is not None:
                work.append((piece, None, at))
                starts = None
                k, n = 1, piece.rows
            else:
                ts = piece.ts()
                n = ts.size
                if n == 0:
                    continue
                w, starts = _window_starts(ts, wins)
                k = starts.size
                work.append((piece, starts, at))
            pids.append(pid)
            first_w.append(w)
            counts.append(k)
            lengths.append(n)
            sizes.append(_ZERO if starts is None else starts)
            at += k
    if len(work) == 1:  # one piece (a small query's usual case): the same, in fewer steps
        k, starts_all = counts[0], sizes[0]
        ends_all = np.empty(k, np.int64)
        ends_all[:-1] = starts_all[1:]
        ends_all[-1] = lengths[0]
        wid = np.arange(first_w[0], first_w[0] + k, dtype=np.int64)
        out = Partials(np.full(k, pids[0], np.int64), wid, ends_all - starts_all)
    else:
        k_all = np.array(counts, np.int64)
        total = int(k_all.sum())
        local = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(k_all) - k_all, k_all)
        wid = np.repeat(np.array(first_w, np.int64), k_all) + local
        # Rows per window: the next window's start (or the piece's length) minus this start.
        starts_all = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
        ends_all = np.empty(total, np.int64)
        if total:
            ends_all[:-1] = starts_all[1:]
            ends_all[np.cumsum(k_all) - 1] = lengths
        out = Partials(np.repeat(np.array(pids, np.int64), k_all), wid, ends_all - starts_all)
    for plan in plans:
        _reduce_column(plan, work, out)
    empty = out.rows == 0  # windows a piece skips over; their reductions are meaningless
    if empty.any():
        _take(out, np.flatnonzero(~empty))
    return out


def _reduce_column(plan: _Plan, work, out: Partials) -> None:
    cid, need = plan.cid, plan.need
    count = out.rows.copy()
    total = mn = mx = None
    if need.sum:
        total = np.zeros(count.size, plan.acc)
    if need.low:
        mn = np.empty(count.size, need.dtype)
    if need.high:
        mx = np.empty(count.size, need.dtype)
    for piece, starts, at in work:
        if starts is None:  # from the block statistics
            c, lo, hi, sm = piece.stats(cid)
            count[at] = c
            if c and total is not None:
                total[at] = _wrap_int64(int(sm)) if plan.acc.kind == "i" else sm
            if mn is not None:
                mn[at] = lo if c else plan.never_min
            if mx is not None:
                mx[at] = hi if c else plan.never_max
            continue
        end = at + starts.size
        if plan.counted_only:
            arr = piece.column(cid)
            if arr.null_count:
                valid = arr.is_valid().to_numpy(zero_copy_only=False)
                count[at:end] = np.add.reduceat(valid.astype(np.int64), starts)
            continue
        x, valid = piece.values(cid)
        if valid is not None:
            count[at:end] = np.add.reduceat(valid.astype(np.int64), starts)
            if total is not None:
                x_sum = np.where(valid, x, 0)
            if mn is not None:
                x_min = np.where(valid, x, np.array(plan.never_min, x.dtype))
            if mx is not None:
                x_max = np.where(valid, x, np.array(plan.never_max, x.dtype))
        else:
            x_sum = x_min = x_max = x
        if total is not None:
            if x_sum.dtype != plan.acc:
                x_sum = x_sum.astype(plan.acc)
            np.add.reduceat(x_sum, starts, out=total[at:end])
        if mn is not None:
            np.minimum.reduceat(x_min, starts, out=mn[at:end])
        if mx is not None:
            np.maximum.reduceat(x_max, starts, out=mx[at:end])
    out.count[cid] = count
    if total is not None:
        out.sum[cid] = total
    if mn is not None:
        out.min[cid] = mn
    if mx is not None:
        out.max[cid] = mx


@dataclass
class _Run:
    """Neighbouring pieces of one segment: the arena rows [a, b) cut into groups (a window
    of a piece, or the rows between two pieces), and which groups are real."""

    memo: dict  # the query's arenas of the segment
    piece: BlockPiece  # one of them (to look arenas up)
    a: int
    b: int
    idx: np.ndarray  # group starts, relative to a
    real: np.ndarray  # bool per group
    rows: np.ndarray  # per real group


def _arena_windows(piece: BlockPiece, wins) -> np.ndarray:
    """Positions in a segment's arenas where the window of the timestamps changes, over the
    whole segment (a block not decoded holds zeros: one window, no change inside it),
    cached with the timestamps until more blocks are decoded."""
    arena = piece.arena(TS)
    key = (wins.interval, wins.offset)
    filled = arena.filled
    got = arena.windows.get(key)
    if got is not None and got[0] == filled:
        return got[1]
    w = (arena.values - wins.offset) // wins.interval
    starts = np.flatnonzero(w[1:] != w[:-1]) + 1
    arena.windows[key] = (filled, starts)
    grown = starts.nbytes - (0 if got is None else got[1].nbytes)
    with blocks_lock():
        piece.cache.arena_added(piece.reader, TS, arena.values.dtype, grown)
    return starts


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The positions lo[k] <= i < hi[k] of every k, concatenated (empty where hi <= lo)."""
    n = np.maximum(hi - lo, 0)
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    return np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(total, dtype=np.int64)


def _segment_runs(
    group: list[tuple[int, BlockPiece]], wins
) -> tuple[list[_Run], np.ndarray, np.ndarray]:
    """The runs of one segment's pieces, and the (partition, window) of every real group."""
    pieces = [p for _, p in group]
    order, s, e, bounds = arena_runs(pieces, MAX_GAP_ROWS)
    pid = np.fromiter((g for g, _ in group), np.int64, len(group))[order]
    runs: list[_Run] = []
    pids, wids = [], []
    if s.size == 0:
        return runs, np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = pieces[0]
    ts = first.arena(TS).values
    # Window starts: from the whole segment (cached) when the pieces cover much of it, else
    # from the pieces' own rows.
    wide = wins is not None and int((e - s).sum()) * 4 >= ts.size
    windows = _arena_windows(first, wins) if wide else None
    for i, j in itertools.pairwise(bounds):
        rs, re_ = s[i:j], e[i:j]
        a, b = int(rs[0]), int(re_[-1])
        parts = [rs, re_]
        if windows is not None:  # the window starts inside the pieces (not in the gaps)
            lo, hi = windows.searchsorted(rs, "right"), windows.searchsorted(re_)
            parts.append(windows[_ranges(lo, hi)])
        elif wins is not None:
            rows = _ranges(rs, re_)
            w = (ts[rows] - wins.offset) // wins.interval
            parts.append(rows[1:][w[1:] != w[:-1]])
        edges = np.sort(np.concatenate(parts))
        edges = edges[np.concatenate(([True], edges[1:] != edges[:-1]))]  # group starts, b
        starts = edges[:-1]
        k = rs.searchsorted(starts, "right") - 1
        real = starts < re_[k]
        runs.append(_Run(first.arenas, first, a, b, starts - a, real, np.diff(edges)[real]))
        real_starts = starts[real]
        pids.append(pid[i:j][k[real]])
        if wins is None:
            wids.append(np.zeros(real_starts.size, np.int64))
        else:
            wids.append((ts[real_starts] - wins.offset) // wins.interval)
    return runs, np.concatenate(pids), np.concatenate(wids)


def _reduce_runs(plan: _Plan, runs: list[_Run]) -> tuple:
    """(count, sum, min, max) of one column over every real group of ``runs`` (None where the
    plan does not need it)."""
    need = plan.need
    counts, sums, mins, maxs = [], [], [], []
    dtype = None if plan.counted_only else need.dtype
    for run in runs:
        arena = segment_arena(
            run.piece.reader, run.piece.cache, run.memo, plan.cid, run.piece.dtype_of(plan.cid)
        )
        a, b, idx, real = run.a, run.b, run.idx, run.real
        valid = arena.valid
        v = None if valid is None else valid[a:b]
        counts.append(run.rows if v is None else np.add.reduceat(v, idx, dtype=np.int64)[real])
        if dtype is None:
            continue
        x = arena.values[a:b]  # NULL slots hold zeros
        if need.sum:
            sums.append(np.add.reduceat(x, idx, dtype=plan.acc)[real])
        if need.low:
            lo = x if v is None else np.where(v, x, np.array(plan.never_min, x.dtype))
            mins.append(np.minimum.reduceat(lo, idx)[real])
        if need.high:
            hi = x if v is None else np.where(v, x, np.array(plan.never_max, x.dtype))
            maxs.append(np.maximum.reduceat(hi, idx)[real])
    return tuple(np.concatenate(parts) if parts else None for parts in (counts, sums, mins, maxs))


def _arena_partials(
    groups: list[list[tuple[int, BlockPiece]]], wins, plans: list[_Plan], threads: int
) -> Partials:
    """Partials of block pieces, a segment's pieces reduced a run at a time; the columns are
    reduced on the thread pool (long numpy calls release the GIL)."""
    runs: list[_Run] = []
    pids, wids = [], []
    for group in groups:
        r, pid, wid = _segment_runs(group, wins)
        runs += r
        pids.append(pid)
        wids.append(wid)
    rows = np.concatenate([r.rows for r in runs]) if runs else np.zeros(0, np.int64)
    out = Partials(np.concatenate(pids), np.concatenate(wids), rows)
    if not runs:
        return out
    values = sum(r.b - r.a for r in runs) * len(plans)

    def reduce(chunk: list[_Plan]) -> list[tuple]:
        with np.errstate(all="ignore"):  # rows between pieces may hold anything
            return [_reduce_runs(plan, runs) for plan in chunk]

    if values < MIN_PARALLEL_VALUES:
        results = reduce(plans)
    else:
        results = [r for part in map_chunks(reduce, plans, threads, min_items=2) for r in part]
    for plan, (count, total, mn, mx) in zip(plans, results, strict=True):
        out.count[plan.cid] = count
        if total is not None:
            out.sum[plan.cid] = total
        if mn is not None:
            out.min[plan.cid] = mn
        if mx is not None:
            out.max[plan.cid] = mx
    return out


def _concat(parts: list[Partials]) -> Partials:
    parts = [p for p in parts if p.pid.size] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    out = Partials(
        np.concatenate([p.pid for p in parts]),
        np.concatenate([p.wid for p in parts]),
        np.concatenate([p.rows for p in parts]),
    )
    for name in ("count", "sum", "min", "max"):
        target = getattr(out, name)
        for cid in getattr(parts[0], name):
            target[cid] = np.concatenate([getattr(p, name)[cid] for p in parts])
    return out


def aggregate(
    tables: list[tuple[int, list[Piece]]],
    wins,
    needs: dict[int, ColumnNeeds],
    threads: int = 0,
) -> Partials:
    """Partials per (partition, window) present in the data, sorted by partition then window.

    ``tables``: (partition id, pieces) per table; ``wins``: tumbling windows (``interval``,
    ``offset``) or None for one window over everything.
    """
    plans = [_Plan.of(cid, need) for cid, need in needs.items()]
    # Blocks not decoded yet are decoded on the thread pool first.
    rest: list[tuple[int, list[Piece]]] = []
    by_segment: dict[int, list[tuple[int, BlockPiece]]] = {}
    cut = []
    fixed: dict[int, bool] = {}  # per column types (of a super table): all needed are fixed
    for pid, pieces in tables:
        one = []
        for p in pieces:
            if p.whole and _stats_window(p, wins, plans) is not None:
                one.append(p)
                continue
            cut.append(p)
            if isinstance(p, BlockPiece):
                ok = fixed.get(id(p.types))
                if ok is None:
                    ok = fixed[id(p.types)] = all(p.types[c] in _FIXED for c in needs)
                if ok:
                    by_segment.setdefault(id(p.reader), []).append((pid, p))
                    continue
            one.append(p)
        rest.append((pid, one))
    # A segment's pieces are reduced together (see _arena_partials) where it has many; the
    # others, and pieces answered from their statistics, one by one.
    arena_groups = []
    for group in by_segment.values():
        if len(group) >= ARENA_MIN_PIECES:
            arena_groups.append(group)
        else:
            for pid, p in group:
                rest.append((pid, [p]))
    in_arenas = [p for group in arena_groups for _, p in group]
    prefetch(in_arenas, list(needs), threads, arenas=True)
    # Fewer block columns than the thread pool is worth are decoded as the pieces are read
    # (what prefetch would do on this thread anyway, without first finding which ones).
    if len(in_arenas) < len(cut) and len(cut) * (len(needs) + 1) >= MIN_PARALLEL_OWN_DECODES:
        chosen = {id(p) for p in in_arenas}
        prefetch([p for p in cut if id(p) not in chosen], list(needs), threads)
    # The blocks of the pieces read one by one that are not decoded yet, decoded together.
    if cut:
        alone = {id(p) for p in in_arenas}
        decode_cut([p for p in cut if id(p) not in alone], list(needs))
    parts = [_tables_partials(rest, wins, plans)]
    if arena_groups:
        parts.append(_arena_partials(arena_groups, wins, plans, threads))
    out = _concat(parts)
    pid, wid = out.pid, out.wid
    if pid.size < 2 or sum(len(p) for _, p in tables) == 1:
        return out  # one piece's windows are distinct and in order already
    dp, dw = np.diff(pid), np.diff(wid)
    if not ((dp > 0) | ((dp == 0) & (dw >= 0))).all():
        order = np.lexsort((wid, pid))
        _take(out, order)
        dp, dw = np.diff(out.pid), np.diff(out.wid)
    new = (dp != 0) | (dw != 0)
    if new.all():
        return out
    starts = np.concatenate([[0], np.flatnonzero(new) + 1])
    out.pid, out.wid = out.pid[starts], out.wid[starts]
    out.rows = np.add.reduceat(out.rows, starts)
    for d, ufunc in ((out.count, np.add), (out.sum, np.add), (out.min, np.minimum)):
        for cid in d:
            d[cid] = ufunc.reduceat(d[cid], starts)
    for cid in out.max:
        out.max[cid] = np.maximum.reduceat(out.max[cid], starts)
    return out


def _take(p: Partials, order: np.ndarray) -> None:
    p.pid, p.wid, p.rows = p.pid[order], p.wid[order], p.rows[order]
    for d in (p.count, p.sum, p.min, p.max):
        for cid in d:
            d[cid] = d[cid][order]


def finish(
    name: str, cid: int | None, p: Partials, need: ColumnNeeds | None, typ: pa.DataType
) -> pa.Array:
    """One aggregate's output column from combined partials (``cid`` None: COUNT(*))."""
    values, valid, type_ = finish_numpy(name, cid, p, typ)
    return pa.array(values, type_) if valid is None else from_numpy_valid(values, valid, type_)


def finish_numpy(
    name: str, cid: int | None, p: Partials, typ: pa.DataType
) -> tuple[np.ndarray, np.ndarray | None, pa.DataType]:
    """:func:`finish` as (values, validity or None when none is NULL, Arrow type)."""
    if cid is None:
        return p.rows, None, pa.int64()
    count = p.count[cid]
    if name == "COUNT":
        return count, None, pa.int64()
    valid = count > 0
    if name == "SUM":
        total = p.sum[cid]
        return total, valid, pa.float64() if total.dtype.kind == "f" else pa.int64()
    if name == "AVG":
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = p.sum[cid].astype(np.float64) / np.maximum(count, 1)
        return mean, valid, pa.float64()
    if name == "SPREAD":
        spread = p.max[cid].astype(np.float64) - p.min[cid].astype(np.float64)
        return spread, valid, pa.float64()
    return (p.min[cid] if name == "MIN" else p.max[cid]), valid, typ
