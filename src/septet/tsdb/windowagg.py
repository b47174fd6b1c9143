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

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from septet.tsdb.blocks import Piece, prefetch
from septet.tsdb.segment import from_numpy_valid

FUNCTIONS = ("COUNT", "SUM", "AVG", "MIN", "MAX", "SPREAD")


@dataclass
class ColumnNeeds:
    """Which partials one column needs, and its numpy dtype (None: only counted)."""

    dtype: np.dtype | None
    sum: bool = False
    extremes: bool = False

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
    if need.extremes:
        mn = np.empty(count.size, need.dtype)
        mx = np.empty(count.size, need.dtype)
    for piece, starts, at in work:
        if starts is None:  # from the block statistics
            c, lo, hi, sm = piece.stats(cid)
            count[at] = c
            if c and total is not None:
                total[at] = _wrap_int64(int(sm)) if plan.acc.kind == "i" else sm
            if mn is not None:
                mn[at] = lo if c else plan.never_min
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
                x_max = np.where(valid, x, np.array(plan.never_max, x.dtype))
        else:
            x_sum = x_min = x_max = x
        if total is not None:
            if x_sum.dtype != plan.acc:
                x_sum = x_sum.astype(plan.acc)
            np.add.reduceat(x_sum, starts, out=total[at:end])
        if mn is not None:
            np.minimum.reduceat(x_min, starts, out=mn[at:end])
            np.maximum.reduceat(x_max, starts, out=mx[at:end])
    out.count[cid] = count
    if total is not None:
        out.sum[cid] = total
    if mn is not None:
        out.min[cid] = mn
        out.max[cid] = mx


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
    # Blocks not decoded yet are decoded on the thread pool; the reductions, many small
    # numpy calls that hold the GIL, then run here.
    cut = [p for _, ps in tables for p in ps if _stats_window(p, wins, plans) is None]
    prefetch(cut, list(needs), threads)
    out = _tables_partials(tables, wins, plans)
    pid, wid = out.pid, out.wid
    if pid.size < 2:
        return out
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
    if cid is None:
        return pa.array(p.rows, pa.int64())
    count = p.count[cid]
    if name == "COUNT":
        return pa.array(count, pa.int64())
    valid = count > 0
    if name == "SUM":
        total = p.sum[cid]
        return from_numpy_valid(
            total, valid, pa.float64() if total.dtype.kind == "f" else pa.int64()
        )
    if name == "AVG":
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = p.sum[cid].astype(np.float64) / np.maximum(count, 1)
        return from_numpy_valid(mean, valid, pa.float64())
    if name == "SPREAD":
        spread = p.max[cid].astype(np.float64) - p.min[cid].astype(np.float64)
        return from_numpy_valid(spread, valid, pa.float64())
    values = p.min[cid] if name == "MIN" else p.max[cid]
    return from_numpy_valid(values, valid, typ)
