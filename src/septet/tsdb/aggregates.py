"""Grouped aggregate kernels over rows sorted by (group, timestamp), vectorised with numpy.

Every kernel gets the values in group order (``x``, with ``valid`` False for NULL), the
timestamps in the same order, and ``starts``: the first position of each group. NULLs are
ignored as in SQL; a group with no non-NULL value gives NULL (COUNT gives 0). FIRST and LAST
pick the first/last non-NULL value in time order; LAST_ROW the last row, NULL or not.
Each kernel returns (values, validity, row) where ``row`` is the position that a selector
function picked (for the other columns of a single-selector query) or None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from septet.tsdb.errors import TsdbError


@dataclass
class Groups:
    """Rows in group order: ``starts[g]`` .. ``ends[g]`` are group g's positions."""

    starts: np.ndarray
    ends: np.ndarray
    ts: np.ndarray  # int64, in group order, ascending within a group

    @property
    def count(self) -> int:
        return int(self.starts.size)

    def index(self) -> np.ndarray:
        """The group number of each position."""
        out = np.zeros(self.ts.size, dtype=np.int64)
        if self.starts.size > 1:
            out[self.starts[1:]] = 1
        return np.cumsum(out)


def _reduce(ufunc: np.ufunc, values: np.ndarray, g: Groups) -> np.ndarray:
    if values.size == 0:
        return np.zeros(0, dtype=values.dtype)
    return ufunc.reduceat(values, g.starts)


def _float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64, copy=False)


def agg_count(x: np.ndarray | None, valid: np.ndarray | None, g: Groups) -> np.ndarray:
    """Non-NULL values per group; ``valid`` None means no NULLs."""
    if valid is None:
        return (g.ends - g.starts).astype(np.int64)
    return _reduce(np.add, valid.astype(np.int64), g)


def agg_sum(x: np.ndarray, valid: np.ndarray | None, g: Groups) -> tuple[np.ndarray, np.ndarray]:
    n = agg_count(x, valid, g)
    if x.dtype.kind in "iub":
        acc = x.astype(np.int64) if valid is None else np.where(valid, x.astype(np.int64), 0)
    else:
        acc = _float(x) if valid is None else np.where(valid, _float(x), 0.0)
    return _reduce(np.add, acc, g), n > 0


def agg_avg(x: np.ndarray, valid: np.ndarray | None, g: Groups) -> tuple[np.ndarray, np.ndarray]:
    s, ok = agg_sum(x, valid, g)
    n = agg_count(x, valid, g)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _float(s) / np.maximum(n, 1), ok


def agg_extreme_fast(x: np.ndarray, g: Groups, biggest: bool) -> np.ndarray:
    """MIN/MAX of groups without NULLs when the selected row is not needed."""
    return _reduce(np.maximum if biggest else np.minimum, x, g)


def _extreme(x: np.ndarray, valid: np.ndarray, g: Groups, biggest: bool):
    if x.dtype.kind == "f":
        fill = -np.inf if biggest else np.inf
        v = np.where(valid, x, fill)
    elif x.dtype.kind == "b":
        v = np.where(valid, x.astype(np.int64), -1 if biggest else 2)
    else:
        info = np.iinfo(x.dtype)
        v = np.where(valid, x, info.min if biggest else info.max)
    out = _reduce(np.maximum if biggest else np.minimum, v, g)
    n = agg_count(x, valid, g)
    # The row that holds the extreme: the first in time order among equals.
    target = out[g.index()]
    hit = valid & (v == target)
    if x.dtype.kind == "f":
        hit |= valid & np.isnan(v) & np.isnan(target)
    pos = np.where(hit, np.arange(x.size), x.size)
    rows = _reduce(np.minimum, pos, g) if x.size else pos
    rows = np.minimum(rows, max(x.size - 1, 0))
    return out.astype(x.dtype, copy=False), n > 0, rows


def agg_min(x, valid, g):
    return _extreme(x, valid, g, biggest=False)


def agg_max(x, valid, g):
    return _extreme(x, valid, g, biggest=True)


def agg_spread(x, valid, g):
    hi, ok, _ = _extreme(x, valid, g, True)
    lo, _, _ = _extreme(x, valid, g, False)
    return _float(hi) - _float(lo), ok


def agg_stddev(x, valid, g):
    mean, ok = agg_avg(x, valid, g)
    n = agg_count(x, valid, g)
    gi = g.index()
    dev = np.where(valid, _float(x) - mean[gi], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(_reduce(np.add, dev * dev, g) / np.maximum(n, 1)), ok


def agg_first(x, valid, g):
    pos = np.where(valid, np.arange(x.size), x.size)
    rows = _reduce(np.minimum, pos, g)
    ok = rows < x.size
    rows = np.where(ok, rows, 0)
    return x[rows] if x.size else x, ok, rows


def agg_last(x, valid, g):
    pos = np.where(valid, np.arange(x.size), -1)
    rows = _reduce(np.maximum, pos, g)
    ok = rows >= 0
    rows = np.where(ok, rows, 0)
    return x[rows] if x.size else x, ok, rows


def agg_last_row(x, valid, g):
    rows = g.ends - 1
    return x[rows], valid[rows], rows


def agg_percentile(x, valid, g, p: float):
    """Exact percentile with linear interpolation between the closest ranks (as numpy)."""
    if not 0 <= p <= 100:
        raise TsdbError(f"PERCENTILE's second argument must be between 0 and 100, not {p:g}")
    gi = g.index()
    keep = valid
    xv, gv = _float(x)[keep], gi[keep]
    order = np.lexsort((xv, gv))
    xs, gs = xv[order], gv[order]
    n = np.bincount(gs, minlength=g.count)
    first = np.concatenate([[0], np.cumsum(n)[:-1]])
    ok = n > 0
    rank = (p / 100.0) * np.maximum(n - 1, 0)
    lo = np.floor(rank).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    frac = rank - lo
    if xs.size == 0:
        return np.full(g.count, np.nan), ok
    a = xs[np.minimum(first + lo, xs.size - 1)]
    b = xs[np.minimum(first + hi, xs.size - 1)]
    with np.errstate(invalid="ignore"):
        out = np.where(frac == 0, a, a + frac * (b - a))
    return out, ok


def agg_twa(x, valid, g):
    """Time-weighted average: the trapezoid area under the series over its time span.

    Points are the non-NULL values of the group (window); one point gives its value.
    """
    gi = g.index()
    xv, tv, gv = _float(x)[valid], g.ts[valid].astype(np.float64), gi[valid]
    n = np.bincount(gv, minlength=g.count)
    ok = n > 0
    area = np.zeros(g.count)
    span = np.zeros(g.count)
    if xv.size > 1:
        same = gv[1:] == gv[:-1]
        dt = np.diff(tv)
        seg = (xv[1:] + xv[:-1]) * 0.5 * dt
        np.add.at(area, gv[1:][same], seg[same])
        np.add.at(span, gv[1:][same], dt[same])
    single = np.zeros(g.count)
    if xv.size:
        firsts = np.concatenate([[True], gv[1:] != gv[:-1]])
        single[gv[firsts]] = xv[firsts]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(span > 0, area / np.where(span > 0, span, 1), single)
    return out, ok
