"""Plans of SELECT shapes seen before: INTERVAL aggregates of a few tables without parsing.

A server answers the same SELECT shapes over and over with other literals (host names, time
ranges): the dashboards' queries. For a shape whose statement cache template (see
statement_cache.py) is ``SELECT _wstart, agg(col), ... FROM t WHERE <tag conditions and
time bounds> INTERVAL(d)`` with nothing else (no FILL, HAVING, ordering, limits, offset or
sliding windows), the plan notes once which literal is which (a host name of ``tag IN
(...)``, the bound of ``ts >= ...``) and then answers each new text from its literals alone:
no tree substituted, classified or evaluated. It runs what the general path runs for such a
query (query._aggregate_pieces: the tag index, engine.pieces_many, windowagg.aggregate and
finish, and the columns that query._window_columns takes), so the answer is the same table;
anything else, and any text the plan is not sure of (more than MAX_TABLES tables, none, a
changed catalog), goes the general way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from septet.tsdb import sqlast as A
from septet.tsdb import windowagg
from septet.tsdb.engine import Engine
from septet.tsdb.errors import TsdbError
from septet.tsdb.expressions import Context, walk
from septet.tsdb.query import (
    _WSTART,
    _conjuncts,
    _output_names,
    _plain_windows,
    _resolve,
    _tag_index,
    _time_bound,
    _windows,
    aggregate_calls,
    equality_of_column,
    tag_positions,
    time_span,
)
from septet.tsdb.statement_cache import StatementCache

MAX_TABLES = 64  # more tables than this: the general path (its arena scans pay off there)
_MAX_PLANS = 1024


@dataclass
class WindowPlan:
    """A plain INTERVAL aggregate shape with its literals' roles."""

    version: int  # the engine's catalog version it was made for
    database: str | None  # the request's current database
    select: A.Select  # the template (literals are sentinels; items and source have none)
    times: list[tuple[str, int]]  # (comparison, literal number) of the timestamp bounds
    tags: list[tuple[str, list[int]]]  # (string tag or tbname, literal numbers) to look up
    calls: dict  # aggregate call -> (column id, Arrow type), as query.aggregate_calls gives
    needs: dict  # column id -> windowagg.ColumnNeeds (read only once made)
    # The answer's columns: (name, number of the call in ``calls``; None: _wstart), what
    # query._window_columns takes from the items each time.
    outputs: list[tuple[str, int | None]]

    def run(self, engine: Engine, values: list[Any]) -> list[tuple] | None:
        """The answer's columns for these literal values, (name, Arrow type, numpy values,
        validity or None) each, or None (then the general path runs)."""
        if engine.catalog_version != self.version:
            return None
        ctx = Context()
        with engine.lock:
            src = _resolve(engine, self.database, self.select, ctx)
            ctx.precision = src.db.options.precision  # type: ignore[union-attr]
            t0, t1 = time_span([(op, values[k]) for op, k in self.times])
            tables = src.tables
            if self.tags:
                shared = src.shared
                if shared is None or tables is not shared.tables:
                    return None
                keep: list[int] | None = None
                for name, slots in self.tags:
                    found = tag_positions(shared, name, [values[k] for k in slots], src)
                    if found is None:
                        return None
                    keep = found if keep is None else sorted(set(keep) & set(found))
                tables = [tables[i] for i in keep]  # type: ignore[union-attr]
            if not tables or len(tables) > MAX_TABLES:
                return None
            wins = _windows(self.select.interval, ctx)  # type: ignore[arg-type]
            pieces = engine.pieces_many([t.uid for t in tables], sorted(self.needs), t0, t1)
            partials = windowagg.aggregate(
                [(0, p) for p in pieces], wins, self.needs, engine.options.query_threads
            )
        columns = [
            windowagg.finish_numpy(f.name, cid, partials, typ)
            for f, (cid, typ) in self.calls.items()
        ]
        wstart = (partials.wid * wins.interval + wins.offset, None, pa.timestamp(ctx.precision))
        out = []
        for name, k in self.outputs:
            v, ok, t = wstart if k is None else columns[k]
            out.append((name, t, v, ok))
        return out


def make_plan(
    engine: Engine, database: str | None, trees: list[A.Statement], slots: dict
) -> WindowPlan | None:
    """The plan of a statement cache template, or None when it is not of the planned shape."""
    if len(trees) != 1 or not isinstance(trees[0], A.Select):
        return None
    q = trees[0]
    iv = q.interval
    if (
        not isinstance(q.source, A.TableName)
        or iv is None
        or iv.offset is not None
        or iv.sliding is not None
        or q.window is not None
        or q.partition_by
        or q.group_by
        or not _plain_windows(q)
    ):
        return None
    for e, _ in q.items:
        if e != _WSTART and not (
            isinstance(e, A.Func) and e.name in windowagg.FUNCTIONS and not e.distinct
        ):
            return None
        if any(isinstance(x, A.Literal) for x in walk(e)):
            return None
    ctx = Context()
    try:
        src = _resolve(engine, database, q, ctx)
    except TsdbError:
        return None
    if src.db is None or src.sub is not None:
        return None
    ctx.precision = src.db.options.precision
    found = aggregate_calls([e for e, _ in q.items], src)
    if found is None:
        return None

    def slot(e: A.Expr, kind: type) -> int | None:
        if isinstance(e, A.Literal) and type(e.value) is kind:
            return slots.get((kind, e.value))
        return None

    times: list[tuple[str, int]] = []
    tags: list[tuple[str, list[int]]] = []
    for c in _conjuncts(q.where):
        bound = _time_bound(c, src)
        if bound is not None:
            op, rhs = bound
            pairs = [(">=", rhs[0]), ("<=", rhs[1])] if op == "between" else [(op, rhs)]
            for o, e in pairs:
                k = slot(e, int)
                if k is None:
                    return None
                times.append((o, k))
            continue
        tag = _tag_slots(c, slot)
        if tag is None or src.shared is None or src.tables is not src.shared.tables:
            return None
        if _tag_index(src.shared, tag[0], src) is None:
            return None  # not a string tag
        tags.append(tag)
    calls, needs = found
    number = {f: k for k, f in enumerate(calls)}
    outputs = [
        (name, None if e == _WSTART else number[e])
        for (e, _), name in zip(q.items, _output_names(q.items), strict=True)
    ]
    return WindowPlan(engine.catalog_version, database, q, times, tags, calls, needs, outputs)


def _tag_slots(c: A.Expr, slot) -> tuple[str, list[int]] | None:
    """(tag, literal numbers) of ``tag = 'x'``, ``'x' = tag`` or ``tag IN ('x', ...)``."""
    found = equality_of_column(c)
    if found is None:
        return None
    name, values = found
    numbers = [slot(v, str) for v in values]
    if any(k is None for k in numbers):
        return None
    return name, numbers  # type: ignore[return-value]


class Plans:
    """The plans of a server's SELECT shapes, made after a shape's first general run."""

    def __init__(self, statements: StatementCache):
        self.statements = statements
        self._plans: dict[tuple[str, str | None], WindowPlan | None] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def run(self, engine: Engine, sql: str, database: str | None) -> tuple[list, str] | None:
        """(answer's columns, shape) of ``sql`` by its shape's plan (see WindowPlan.run), or
        None: run it the general way."""
        scanned = self.statements.scan(sql)
        if scanned is None:
            return None
        plan = self._plans.get((scanned[0], database))
        if plan is None:
            return None
        columns = plan.run(engine, scanned[1])
        if columns is None:
            return None
        self.hits += 1
        return columns, scanned[0]

    def learn(self, engine: Engine, shape: str, database: str | None) -> None:
        """Make the plan of a shape just run the general way (once per catalog version)."""
        key = (shape, database)
        known = self._plans.get(key, False)
        if known is None or (known and known.version == engine.catalog_version):
            return  # not plannable (until the catalog changes), or planned
        template = self.statements.template(shape)
        if template is None:
            return
        with engine.lock:
            plan = make_plan(engine, database, *template)
        with self._lock:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()  # bounded: shapes seen again are planned again
            self._plans[key] = plan
