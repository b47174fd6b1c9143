"""Evaluating SQL expressions over columns, vectorised with pyarrow.compute.

A ``Frame`` is a set of equal-length named columns; tag and tbname columns are built only
when an expression asks for them. Timestamps are Arrow timestamps in the database's
precision; a string or an integer compared with a timestamp is read as a timestamp.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from septet.tsdb import sqlast as A
from septet.tsdb.catalog import UNITS_PER_SECOND, arrow_type
from septet.tsdb.errors import SqlError, TsdbError
from septet.tsdb.tokenizer import DURATION_UNITS
from septet.tsdb.values import parse_timestamp

AGGREGATES = {
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "FIRST",
    "LAST",
    "LAST_ROW",
    "SPREAD",
    "STDDEV",
    "STDDEV_POP",
    "PERCENTILE",
    "APERCENTILE",
    "TWA",
    "MEDIAN",
}
SERVER_VERSION = "3.0.0.0 (septet.tsdb)"
_NO_ARGUMENT = {"SERVER_VERSION", "CLIENT_VERSION", "SERVER_STATUS"}
SELECTORS = {"MIN", "MAX", "FIRST", "LAST", "LAST_ROW", "TOP", "BOTTOM"}
MULTI_ROW = {"TOP", "BOTTOM"}
ROW_FUNCTIONS = {"DIFF"}


@dataclass
class Context:
    """What an expression needs besides columns: precision, parameters, the time of the query."""

    precision: str = "ms"
    params: tuple[Any, ...] = ()
    now: int = field(default_factory=lambda: time.time_ns())

    def now_units(self) -> int:
        return self.now // (1_000_000_000 // UNITS_PER_SECOND[self.precision])

    def duration_units(self, d: A.Duration) -> int:
        ns = DURATION_UNITS[d.unit]
        if ns < 0:
            raise TsdbError(
                f"calendar durations ({d.text}) are not supported here; use d or w units"
            )
        per_unit = 1_000_000_000 // UNITS_PER_SECOND[self.precision]
        total = d.count * ns
        if total % per_unit:
            raise TsdbError(
                f"duration {d.text} is finer than the database precision ({self.precision})"
            )
        return total // per_unit


class Frame:
    """Named equal-length columns; ``lazy`` columns are computed on first use."""

    def __init__(
        self, columns: dict[str, Any], length: int, lazy: dict[str, Callable[[], Any]] | None = None
    ):
        self.columns = dict(columns)
        self.lazy = dict(lazy or {})
        self.length = length

    def has(self, name: str) -> bool:
        return name in self.columns or name in self.lazy

    def get(self, name: str) -> Any:
        col = self.columns.get(name)
        if col is None:
            make = self.lazy.get(name)
            if make is None:
                raise KeyError(name)
            col = self.columns[name] = make()
        return col

    def names(self) -> list[str]:
        return list(self.columns) + [n for n in self.lazy if n not in self.columns]

    def take(self, indices: np.ndarray) -> Frame:
        idx = pa.array(indices)
        cols = {
            k: (v[indices] if isinstance(v, np.ndarray) else v.take(idx))
            for k, v in self.columns.items()
        }
        lazy = {
            k: (lambda k=k: _take(self.get(k), idx, indices))
            for k in self.lazy
            if k not in self.columns
        }
        return Frame(cols, len(indices), lazy)

    def filter(self, mask: np.ndarray) -> Frame:
        if mask.all():
            return self
        # Arrow filters chunk by chunk (a take on chunked columns would concatenate them).
        pmask = pa.array(mask)
        cols = {
            k: (v[mask] if isinstance(v, np.ndarray) else v.filter(pmask))
            for k, v in self.columns.items()
        }
        lazy = {
            k: (lambda k=k: _filtered(self.get(k), mask, pmask))
            for k in self.lazy
            if k not in self.columns
        }
        return Frame(cols, int(mask.sum()), lazy)


def _filtered(col: Any, mask: np.ndarray, pmask: pa.Array) -> Any:
    return col[mask] if isinstance(col, np.ndarray) else col.filter(pmask)


def _take(col: Any, idx: pa.Array, indices: np.ndarray) -> Any:
    return col[indices] if isinstance(col, np.ndarray) else col.take(idx)


def expr_name(e: A.Expr) -> str:
    """The column name TDengine shows for an expression: its text, lower-cased functions."""
    if isinstance(e, A.Literal):
        if e.value is None:
            return "null"
        if isinstance(e.value, bool):
            return "true" if e.value else "false"
        return f"'{e.value}'" if isinstance(e.value, str) else str(e.value)
    if isinstance(e, A.Duration):
        return e.text
    if isinstance(e, A.Now):
        return "today()" if e.today else "now()"
    if isinstance(e, A.Param):
        return "?"
    if isinstance(e, A.ColumnRef):
        return e.name if e.table is None else f"{e.table}.{e.name}"
    if isinstance(e, A.Star):
        return "*" if e.table is None else f"{e.table}.*"
    if isinstance(e, A.Unary):
        return f"not {expr_name(e.operand)}" if e.op == "NOT" else f"{e.op}{expr_name(e.operand)}"
    if isinstance(e, A.Binary):
        return f"{expr_name(e.left)} {e.op.lower()} {expr_name(e.right)}"
    if isinstance(e, A.Func):
        inner = ", ".join(expr_name(a) for a in e.args)
        return f"{e.name.lower()}({'distinct ' if e.distinct else ''}{inner})"
    if isinstance(e, A.Cast):
        return f"cast({expr_name(e.expr)} as {e.type.lower()})"
    if isinstance(e, A.Between):
        return f"{expr_name(e.expr)} between {expr_name(e.low)} and {expr_name(e.high)}"
    if isinstance(e, A.InList):
        return f"{expr_name(e.expr)} in ({', '.join(expr_name(v) for v in e.values)})"
    if isinstance(e, A.IsNull):
        return f"{expr_name(e.expr)} is {'not ' if e.negated else ''}null"
    return "case"


def walk(e: A.Expr) -> list[A.Expr]:
    """``e`` and every expression inside it."""
    out = [e]
    for child in children(e):
        out += walk(child)
    return out


def children(e: A.Expr) -> list[A.Expr]:
    if isinstance(e, A.Unary):
        return [e.operand]
    if isinstance(e, A.Binary):
        return [e.left, e.right]
    if isinstance(e, A.Func):
        return list(e.args)
    if isinstance(e, A.Cast):
        return [e.expr]
    if isinstance(e, A.Between):
        return [e.expr, e.low, e.high]
    if isinstance(e, A.InList):
        return [e.expr, *e.values]
    if isinstance(e, A.IsNull):
        return [e.expr]
    if isinstance(e, A.Case):
        out = [] if e.operand is None else [e.operand]
        for w, t in e.whens:
            out += [w, t]
        return out + ([] if e.default is None else [e.default])
    return []


def replace(e: A.Expr, fn: Callable[[A.Expr], A.Expr | None]) -> A.Expr:
    """Rebuild ``e`` bottom-up, substituting wherever ``fn`` returns a node."""
    hit = fn(e)
    if hit is not None:
        return hit
    if isinstance(e, A.Unary):
        return A.Unary(e.op, replace(e.operand, fn))
    if isinstance(e, A.Binary):
        return A.Binary(e.op, replace(e.left, fn), replace(e.right, fn))
    if isinstance(e, A.Func):
        return A.Func(e.name, tuple(replace(a, fn) for a in e.args), e.distinct)
    if isinstance(e, A.Cast):
        return A.Cast(replace(e.expr, fn), e.type)
    if isinstance(e, A.Between):
        return A.Between(replace(e.expr, fn), replace(e.low, fn), replace(e.high, fn), e.negated)
    if isinstance(e, A.InList):
        return A.InList(replace(e.expr, fn), tuple(replace(v, fn) for v in e.values), e.negated)
    if isinstance(e, A.IsNull):
        return A.IsNull(replace(e.expr, fn), e.negated)
    if isinstance(e, A.Case):
        return A.Case(
            None if e.operand is None else replace(e.operand, fn),
            tuple((replace(w, fn), replace(t, fn)) for w, t in e.whens),
            None if e.default is None else replace(e.default, fn),
        )
    return e


def is_constant(e: A.Expr) -> bool:
    return not any(isinstance(x, A.ColumnRef | A.Star | A.Func) for x in walk(e)) or (
        all(not isinstance(x, A.ColumnRef | A.Star) for x in walk(e))
        and all(
            x.name not in AGGREGATES | MULTI_ROW | ROW_FUNCTIONS
            for x in walk(e)
            if isinstance(x, A.Func)
        )
    )


# ----------------------------------------------------------------------------- evaluation
def evaluate(e: A.Expr, frame: Frame, ctx: Context) -> Any:
    """An Arrow array of ``frame.length`` values, or an Arrow scalar for a constant."""
    if isinstance(e, A.Literal):
        return pa.scalar(e.value)
    if isinstance(e, A.Param):
        if e.index >= len(ctx.params):
            raise TsdbError(
                f"the statement has a parameter ? number {e.index + 1} but only "
                f"{len(ctx.params)} parameters were given"
            )
        v = ctx.params[e.index]
        return pa.scalar(v)
    if isinstance(e, A.Now):
        now = ctx.now_units()
        if e.today:
            day = UNITS_PER_SECOND[ctx.precision] * 86_400
            now -= now % day
        return pa.scalar(now, pa.timestamp(ctx.precision))
    if isinstance(e, A.Duration):
        return pa.scalar(ctx.duration_units(e), pa.duration(ctx.precision))
    if isinstance(e, A.ColumnRef):
        for key in (e.name, f"{e.table}.{e.name}" if e.table else None):
            if key and frame.has(key):
                return frame.get(key)
        raise TsdbError(
            f"unknown column {e.name!r}; the columns here are "
            f"{', '.join(n for n in frame.names() if not n.startswith('__'))}"
        )
    if isinstance(e, A.Star):
        raise SqlError("'*' is allowed only as a whole select item or in COUNT(*)")
    if isinstance(e, A.Unary):
        v = evaluate(e.operand, frame, ctx)
        if e.op == "NOT":
            return pc.invert(_as_bool(v))
        if e.op == "-":
            return pc.negate(_numeric(v))
        return v
    if isinstance(e, A.Binary):
        return _binary(e, frame, ctx)
    if isinstance(e, A.Between):
        v = evaluate(e.expr, frame, ctx)
        lo = _coerce_to(v, evaluate(e.low, frame, ctx), ctx)
        hi = _coerce_to(v, evaluate(e.high, frame, ctx), ctx)
        out = pc.and_kleene(pc.greater_equal(v, lo), pc.less_equal(v, hi))
        return pc.invert(out) if e.negated else out
    if isinstance(e, A.InList):
        v = evaluate(e.expr, frame, ctx)
        values = [_coerce_to(v, evaluate(x, frame, ctx), ctx) for x in e.values]
        if any(not isinstance(x, pa.Scalar) for x in values):
            raise TsdbError("IN (...) takes constant values")
        vtype = v.type
        try:
            value_set = pa.array([x.as_py() for x in values], type=vtype)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            value_set = pa.array([x.as_py() for x in values])
        out = (
            pc.is_in(v, value_set=value_set)
            if isinstance(v, pa.Array | pa.ChunkedArray)
            else pa.scalar(v.as_py() in [x.as_py() for x in values])
        )
        if isinstance(v, pa.Array | pa.ChunkedArray) and v.null_count:
            out = pc.if_else(pc.is_null(v), pa.scalar(None, pa.bool_()), out)
        return pc.invert(out) if e.negated else out
    if isinstance(e, A.IsNull):
        v = evaluate(e.expr, frame, ctx)
        out = pc.is_null(v) if not isinstance(v, pa.Scalar) else pa.scalar(not v.is_valid)
        return pc.invert(out) if e.negated else out
    if isinstance(e, A.Cast):
        v = evaluate(e.expr, frame, ctx)
        target = arrow_type(e.type, ctx.precision)
        try:
            if (
                pa.types.is_timestamp(target)
                and isinstance(v, pa.Scalar)
                and pa.types.is_string(v.type)
            ):
                return pa.scalar(parse_timestamp(v.as_py(), ctx.precision), target)
            return pc.cast(v, target, safe=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise TsdbError(f"cannot cast {expr_name(e.expr)} to {e.type}: {exc}") from exc
    if isinstance(e, A.Case):
        return _case(e, frame, ctx)
    if isinstance(e, A.Func):
        return _scalar_function(e, frame, ctx)
    raise TsdbError(f"cannot evaluate {expr_name(e)}")


def _case(e: A.Case, frame: Frame, ctx: Context) -> Any:
    results = [evaluate(t, frame, ctx) for _, t in e.whens]
    default = evaluate(e.default, frame, ctx) if e.default is not None else pa.scalar(None)
    out = default
    for (w, _), r in zip(reversed(e.whens), reversed(results), strict=True):
        if e.operand is not None:
            cond = pc.equal(evaluate(e.operand, frame, ctx), evaluate(w, frame, ctx))
        else:
            cond = _as_bool(evaluate(w, frame, ctx))
        cond = pc.fill_null(cond, False)
        out = pc.if_else(cond, r, out)
    return out


def _as_bool(v: Any) -> Any:
    if pa.types.is_boolean(v.type):
        return v
    if pa.types.is_null(v.type):
        return pc.cast(v, pa.bool_())
    if pa.types.is_integer(v.type) or pa.types.is_floating(v.type):
        return pc.not_equal(v, 0)
    raise TsdbError(f"a condition must be true/false, not a value of type {v.type}")


def _numeric(v: Any) -> Any:
    t = v.type
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_null(t)
        or pa.types.is_duration(t)
    ):
        return v
    if pa.types.is_boolean(t):
        return pc.cast(v, pa.int64())
    if pa.types.is_timestamp(t):
        return pc.cast(v, pa.int64())
    if pa.types.is_string(t) and isinstance(v, pa.Scalar):
        try:
            return pa.scalar(float(v.as_py()))
        except ValueError:
            pass
    raise TsdbError(f"arithmetic needs numbers, not values of type {t}")


def _coerce_to(ref: Any, v: Any, ctx: Context) -> Any:
    """Read a literal as a timestamp when it is compared with one."""
    if isinstance(v, pa.Scalar) and pa.types.is_timestamp(ref.type) and v.is_valid:
        if pa.types.is_string(v.type) or pa.types.is_integer(v.type):
            return pa.scalar(parse_timestamp(v.as_py(), ctx.precision), ref.type)
        if pa.types.is_timestamp(v.type) and v.type != ref.type:
            return pc.cast(v, ref.type)
    return v


_COMPARE = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
_ARITH = {"+": pc.add, "-": pc.subtract, "*": pc.multiply}


def _binary(e: A.Binary, frame: Frame, ctx: Context) -> Any:
    if e.op in ("AND", "OR"):
        left = _as_bool(evaluate(e.left, frame, ctx))
        right = _as_bool(evaluate(e.right, frame, ctx))
        return (pc.and_kleene if e.op == "AND" else pc.or_kleene)(left, right)
    left = evaluate(e.left, frame, ctx)
    right = evaluate(e.right, frame, ctx)
    try:
        if e.op in _COMPARE:
            left = _coerce_to(right, left, ctx)
            right = _coerce_to(left, right, ctx)
            left, right = _comparable(left, right)
            return _COMPARE[e.op](left, right)
        if e.op in ("LIKE", "NOT LIKE"):
            if not isinstance(right, pa.Scalar) or not pa.types.is_string(right.type):
                raise TsdbError("LIKE needs a constant pattern string")
            out = pc.match_like(_text(left), right.as_py())
            return pc.invert(out) if e.op == "NOT LIKE" else out
        if e.op in ("MATCH", "NMATCH"):
            if not isinstance(right, pa.Scalar) or not pa.types.is_string(right.type):
                raise TsdbError("MATCH needs a constant regular expression string")
            out = pc.match_substring_regex(_text(left), right.as_py())
            return pc.invert(out) if e.op == "NMATCH" else out
        if e.op == "||":
            return pc.binary_join_element_wise(_text(left), _text(right), "")
        if e.op in ("+", "-") and (
            pa.types.is_timestamp(left.type) or pa.types.is_duration(right.type)
        ):
            return _time_arith(e.op, left, right, ctx)
        left, right = _numeric(left), _numeric(right)
        if e.op in _ARITH:
            if pa.types.is_duration(left.type) or pa.types.is_duration(right.type):
                left, right = pc.cast(left, pa.int64()), pc.cast(right, pa.int64())
            return _ARITH[e.op](_promote(left), _promote(right))
        if e.op == "/":
            return pc.divide(pc.cast(left, pa.float64()), pc.cast(right, pa.float64()))
        if e.op == "%":
            lf, rf = pc.cast(left, pa.float64()), pc.cast(right, pa.float64())
            q = pc.trunc(pc.divide(lf, rf))
            return pc.subtract(lf, pc.multiply(q, rf))
        if e.op in ("&", "|"):
            fn = pc.bit_wise_and if e.op == "&" else pc.bit_wise_or
            return fn(pc.cast(left, pa.int64()), pc.cast(right, pa.int64()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise TsdbError(f"cannot compute {expr_name(e)}: {exc}") from exc
    raise TsdbError(f"unknown operator {e.op}")


def _promote(v: Any) -> Any:
    """Integer arithmetic in int64 (TDengine's BIGINT), floats in float64."""
    if pa.types.is_integer(v.type):
        return pc.cast(v, pa.int64()) if v.type != pa.uint64() else v
    if pa.types.is_floating(v.type):
        return pc.cast(v, pa.float64())
    return v


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    lt, rt = left.type, right.type
    if pa.types.is_timestamp(lt) and pa.types.is_timestamp(rt) and lt != rt:
        return left, pc.cast(right, lt)
    if (
        (pa.types.is_integer(lt) or pa.types.is_floating(lt))
        and pa.types.is_string(rt)
        and isinstance(right, pa.Scalar)
    ):
        try:
            return left, pa.scalar(float(right.as_py()))
        except (TypeError, ValueError):
            raise TsdbError(f"cannot compare a number with {right.as_py()!r}") from None
    if pa.types.is_boolean(lt) and (pa.types.is_integer(rt)):
        return pc.cast(left, pa.int64()), right
    return left, right


def _text(v: Any) -> Any:
    if pa.types.is_string(v.type):
        return v
    if pa.types.is_binary(v.type):
        return pc.cast(v, pa.string())
    return pc.cast(v, pa.string())


def _time_arith(op: str, left: Any, right: Any, ctx: Context) -> Any:
    if isinstance(left, pa.Scalar) and pa.types.is_string(left.type):
        left = pa.scalar(parse_timestamp(left.as_py(), ctx.precision), pa.timestamp(ctx.precision))
    if pa.types.is_integer(left.type) and pa.types.is_duration(right.type):
        return (
            pc.add(left, pc.cast(right, pa.int64()))
            if op == "+"
            else pc.subtract(left, pc.cast(right, pa.int64()))
        )
    if pa.types.is_integer(right.type):
        right = pc.cast(right, pa.duration(ctx.precision))
    if pa.types.is_duration(left.type) and pa.types.is_timestamp(right.type) and op == "+":
        left, right = right, left
    return (pc.add if op == "+" else pc.subtract)(left, right)


def _unary_math(fn: Callable[[Any], Any]) -> Callable[[list[Any]], Any]:
    return lambda args: fn(pc.cast(_numeric(args[0]), pa.float64()))


_SCALAR_FUNCTIONS: dict[str, Callable[[list[Any]], Any]] = {
    "ABS": lambda a: pc.abs(_numeric(a[0])),
    "CEIL": lambda a: pc.ceil(_numeric(a[0])),
    "FLOOR": lambda a: pc.floor(_numeric(a[0])),
    "ROUND": lambda a: pc.round(_numeric(a[0]), int(a[1].as_py()) if len(a) > 1 else 0),
    "SQRT": _unary_math(pc.sqrt),
    "EXP": _unary_math(pc.exp),
    "LN": _unary_math(pc.ln),
    "SIN": _unary_math(pc.sin),
    "COS": _unary_math(pc.cos),
    "TAN": _unary_math(pc.tan),
    "ASIN": _unary_math(pc.asin),
    "ACOS": _unary_math(pc.acos),
    "ATAN": _unary_math(pc.atan),
    "POW": lambda a: pc.power(
        pc.cast(_numeric(a[0]), pa.float64()), pc.cast(_numeric(a[1]), pa.float64())
    ),
    "LOG": lambda a: (
        pc.ln(pc.cast(_numeric(a[0]), pa.float64()))
        if len(a) == 1
        else pc.divide(
            pc.ln(pc.cast(_numeric(a[0]), pa.float64())),
            pc.ln(pc.cast(_numeric(a[1]), pa.float64())),
        )
    ),
    # TDengine's system information functions (taosrest's server_info() asks for the version).
    "SERVER_VERSION": lambda a: pa.scalar(SERVER_VERSION),
    "CLIENT_VERSION": lambda a: pa.scalar(SERVER_VERSION),
    "SERVER_STATUS": lambda a: pa.scalar(1, pa.int32()),
    "LENGTH": lambda a: pc.binary_length(a[0]),
    "CHAR_LENGTH": lambda a: pc.utf8_length(_text(a[0])),
    "LOWER": lambda a: pc.utf8_lower(_text(a[0])),
    "UPPER": lambda a: pc.utf8_upper(_text(a[0])),
    "LTRIM": lambda a: pc.utf8_ltrim_whitespace(_text(a[0])),
    "RTRIM": lambda a: pc.utf8_rtrim_whitespace(_text(a[0])),
    "CONCAT": lambda a: pc.binary_join_element_wise(*[_text(x) for x in a], ""),
    "SUBSTR": lambda a: pc.utf8_slice_codeunits(
        _text(a[0]),
        int(a[1].as_py()) - 1,
        int(a[1].as_py()) - 1 + int(a[2].as_py()) if len(a) > 2 else None,
    ),
}


def _scalar_function(e: A.Func, frame: Frame, ctx: Context) -> Any:
    if e.name in AGGREGATES or e.name in MULTI_ROW or e.name in ROW_FUNCTIONS:
        raise TsdbError(
            f"{e.name}() is an aggregate or selection function and cannot be "
            "used here (inside WHERE, or nested in another aggregate)"
        )
    fn = _SCALAR_FUNCTIONS.get(e.name)
    if fn is None:
        raise TsdbError(f"unknown function {e.name}()")
    args = [evaluate(a, frame, ctx) for a in e.args]
    if not args and e.name not in _NO_ARGUMENT:
        raise TsdbError(f"{e.name}() needs an argument")
    try:
        return fn(args)
    except (
        pa.ArrowInvalid,
        pa.ArrowNotImplementedError,
        pa.ArrowTypeError,
        IndexError,
        TypeError,
        ValueError,
    ) as exc:
        raise TsdbError(f"cannot compute {expr_name(e)}: {exc}") from exc


def to_array(v: Any, length: int) -> pa.Array:
    """A result as an array of ``length`` rows (constants are repeated)."""
    if isinstance(v, pa.ChunkedArray):
        return v.combine_chunks()
    if isinstance(v, pa.Scalar):
        if pa.types.is_null(v.type):
            return pa.nulls(length)
        return pa.repeat(v, length)
    return v


def mask_of(v: Any, length: int) -> np.ndarray:
    """A WHERE/HAVING result as a numpy bool mask (NULL counts as false)."""
    v = _as_bool(v)
    if isinstance(v, pa.Scalar):
        return np.full(length, bool(v.as_py()), dtype=bool)
    if v.null_count:
        v = pc.fill_null(v, False)
    return v.to_numpy(zero_copy_only=False)


def isfinite_number(x: Any) -> bool:
    return isinstance(x, int | float) and not (isinstance(x, float) and math.isnan(x))
