"""COUNT/SUM/AVG/MIN/MAX/SPREAD per (partition, time window), piece by piece.

The general aggregation path gathers every row into one array per column, assigns each row
a group and sorts; this one never copies a column. Each table's pieces (blocks, see
blocks.py) are cut at the window edges with a binary search over their sorted timestamps,
and each column is reduced in place with ``np.<ufunc>.reduceat`` into partial aggregates
(non-NULL count, sum, min, max) per (partition, window). A whole block inside one window
takes its partials from the block statistics and is not decoded at all. Partials of the
same (partition, window), from windows that straddle two blocks or from several tables in
one partition, are then combined (sum the counts and sums, min of mins, max of maxs).
Tables are spread over a thread pool: the reductions release the GIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from septet.tsdb.blocks import Piece
from septet.tsdb.parallel import map_chunks

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
    rows: np.ndarray
    count: dict[int, np.ndarray] = field(default_factory=dict)
    sum: dict[int, np.ndarray] = field(default_factory=dict)
    min: dict[int, np.ndarray] = field(default_factory=dict)
    max: dict[int, np.ndarray] = field(default_factory=dict)


class _Acc:
    """Partials of many pieces, as lists to concatenate once."""

    def __init__(self, needs: dict[int, ColumnNeeds]):
        self.needs = needs
        self.pid: list[np.ndarray] = []
        self.wid: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.count: dict[int, list] = {c: [] for c in needs}
        self.sum: dict[int, list] = {c: [] for c in needs if needs[c].sum}
        self.min: dict[int, list] = {c: [] for c in needs if needs[c].extremes}
        self.max: dict[int, list] = {c: [] for c in needs if needs[c].extremes}


def _wrap_int64(v: int) -> int:
    return ((v + (1 << 63)) % (1 << 64)) - (1 << 63)


def _from_stats(piece: Piece, pid: int, w: int, acc: _Acc) -> bool:
    """Partials of a whole block inside one window from its statistics; False if unusable."""
    stats = {}
    for cid in acc.needs:
        st = piece.stats(cid)
        if st is None:
            return False
        stats[cid] = st
    acc.pid.append(np.array([pid], np.int64))
    acc.wid.append(np.array([w], np.int64))
    acc.rows.append(np.array([piece.rows], np.int64))
    for cid, need in acc.needs.items():
        count, lo, hi, total = stats[cid]
        acc.count[cid].append(np.array([count], np.int64))
        if need.sum:
            if count == 0:
                total = 0
            elif need.acc.kind == "i":
                total = _wrap_int64(int(total))
            acc.sum[cid].append(np.array([total], need.acc))
        if need.extremes:
            never_min, never_max = need.sentinels()
            acc.min[cid].append(np.array([never_min if count == 0 else lo], need.dtype))
            acc.max[cid].append(np.array([never_max if count == 0 else hi], need.dtype))
    return True


def _from_rows(piece: Piece, pid: int, wins, acc: _Acc) -> None:
    ts = piece.ts()
    n = ts.size
    if n == 0:
        return
    if wins is None:
        w0 = w1 = 0
    else:
        w0 = (int(ts[0]) - wins.offset) // wins.interval
        w1 = (int(ts[-1]) - wins.offset) // wins.interval
    if w0 == w1:
        starts = np.zeros(1, np.int64)
        wid = np.array([w0], np.int64)
        rows = np.array([n], np.int64)
    else:
        # Rows on an edge open the next window: search the edges from the left.
        edges = np.arange(w0 + 1, w1 + 1, dtype=np.int64) * wins.interval + wins.offset
        cuts = np.searchsorted(ts, edges)
        bounds = np.empty(cuts.size + 2, np.int64)
        bounds[0], bounds[1:-1], bounds[-1] = 0, cuts, n
        sizes = np.diff(bounds)
        nonempty = sizes > 0
        starts = bounds[:-1][nonempty]
        wid = np.arange(w0, w1 + 1, dtype=np.int64)[nonempty]
        rows = sizes[nonempty]
    acc.pid.append(np.full(wid.size, pid, np.int64))
    acc.wid.append(wid)
    acc.rows.append(rows)
    for cid, need in acc.needs.items():
        if need.dtype is None:  # counted only: any type
            arr = piece.column(cid)
            if arr.null_count == 0:
                acc.count[cid].append(rows)
            else:
                valid = arr.is_valid().to_numpy(zero_copy_only=False)
                acc.count[cid].append(np.add.reduceat(valid.astype(np.int64), starts))
            continue
        x, valid = piece.values(cid)
        if valid is None:
            acc.count[cid].append(rows)
            if need.sum:
                wide = x if x.dtype == need.acc else x.astype(need.acc)
                acc.sum[cid].append(np.add.reduceat(wide, starts))
            if need.extremes:
                acc.min[cid].append(np.minimum.reduceat(x, starts))
                acc.max[cid].append(np.maximum.reduceat(x, starts))
            continue
        acc.count[cid].append(np.add.reduceat(valid.astype(np.int64), starts))
        if need.sum:
            wide = np.where(valid, x, 0).astype(need.acc, copy=False)
            acc.sum[cid].append(np.add.reduceat(wide, starts))
        if need.extremes:
            never_min, never_max = need.sentinels()
            lo = np.where(valid, x, np.array(never_min, x.dtype))
            hi = np.where(valid, x, np.array(never_max, x.dtype))
            acc.min[cid].append(np.minimum.reduceat(lo, starts))
            acc.max[cid].append(np.maximum.reduceat(hi, starts))


def _tables_partials(tables: Sequence[tuple[int, list[Piece]]], wins, needs) -> _Acc:
    acc = _Acc(needs)
    for pid, pieces in tables:
        for piece in pieces:
            if piece.whole:
                if wins is None:
                    w = 0
                else:
                    w = (piece.t0 - wins.offset) // wins.interval
                    if (piece.t1 - wins.offset) // wins.interval != w:
                        w = None
                if w is not None and _from_stats(piece, pid, w, acc):
                    continue
            _from_rows(piece, pid, wins, acc)
    return acc


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
    accs = map_chunks(lambda chunk: _tables_partials(chunk, wins, needs), tables, threads)

    def cat(get) -> np.ndarray:
        parts = [a for acc in accs for a in get(acc)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    pid = cat(lambda a: a.pid)
    wid = cat(lambda a: a.wid)
    out = Partials(pid, wid, cat(lambda a: a.rows))
    for cid, need in needs.items():
        out.count[cid] = cat(lambda a, c=cid: a.count[c])
        if need.sum:
            out.sum[cid] = cat(lambda a, c=cid: a.sum[c]).astype(need.acc, copy=False)
        if need.extremes:
            out.min[cid] = cat(lambda a, c=cid: a.min[c]).astype(need.dtype, copy=False)
            out.max[cid] = cat(lambda a, c=cid: a.max[c]).astype(need.dtype, copy=False)
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
    empty = count == 0
    if name == "SUM":
        return pa.array(p.sum[cid], mask=empty)
    if name == "AVG":
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = p.sum[cid].astype(np.float64) / np.maximum(count, 1)
        return pa.array(mean, mask=empty)
    if name == "SPREAD":
        spread = p.max[cid].astype(np.float64) - p.min[cid].astype(np.float64)
        return pa.array(spread, mask=empty)
    values = p.min[cid] if name == "MIN" else p.max[cid]
    return pa.array(values, type=typ, mask=empty)
