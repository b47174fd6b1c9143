"""SELECT: from tables and super tables to an Arrow result.

The plan, in order: resolve the source (a table, a super table's sub-tables, or a subquery);
filter sub-tables by the tag conditions of WHERE; take the timestamp range out of WHERE so that
only the partitions and blocks in it are read; load the columns the query names; filter rows;
then one of four shapes: projection, aggregation (GROUP/PARTITION BY, INTERVAL windows with
SLIDING and FILL), TOP/BOTTOM selection, or DIFF. ORDER BY, SLIMIT and LIMIT come last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from septet.tsdb import aggregates as K
from septet.tsdb import sqlast as A
from septet.tsdb import windowagg
from septet.tsdb.arenascan import arena_ready, gather_filtered, piece_picks
from septet.tsdb.blocks import block_bounds, prefetch
from septet.tsdb.catalog import Column, Database, Table, arrow_type, is_numeric, numpy_dtype
from septet.tsdb.engine import Engine
from septet.tsdb.errors import TsdbError
from septet.tsdb.expressions import (
    AGGREGATES,
    MULTI_ROW,
    ROW_FUNCTIONS,
    SELECTORS,
    Context,
    Frame,
    evaluate,
    expr_name,
    mask_of,
    replace,
    to_array,
    walk,
)
from septet.tsdb.segment import (
    TS,
    BlockMeta,
    col_key,
    empty_numpy,
    from_numpy_valid,
    to_numpy_valid,
)

WINDOW_COLUMNS = ("_wstart", "_wend", "_wduration")
_TS_ALIASES = ("_rowts", "_c0")


@dataclass
class _SharedTables:
    """A super table's sub-tables sorted by name and their tag frame, for one catalog
    version (building the frame for thousands of sub-tables costs more than a query)."""

    version: int
    tables: list[Table]
    frame: Frame | None = None
    # Per string tag (and tbname): value -> positions in ``tables`` (built on first use).
    index: dict[str, dict[str, list[int]]] | None = None


@dataclass
class Source:
    """What a SELECT reads: the tables, their columns and tags."""

    db: Database | None
    tables: list[Table]
    columns: list[Column]  # data columns, timestamp first
    tags: list[Column]
    is_stable: bool
    sub: pa.Table | None = None  # a subquery's result
    tag_cache: tuple[list[Table], Frame] | None = None
    shared: _SharedTables | None = None  # the super table's sub-tables, across queries
    positions: np.ndarray | None = None  # of ``tables`` among ``shared.tables``

    @property
    def ts_name(self) -> str:
        return self.columns[0].name


def run_select(
    engine: Engine, current_db: str | None, q: A.Select, ctx: Context, narrow: bool = True
) -> pa.Table:
    """Execute one SELECT and return its rows."""
    if narrow:
        latest = _latest_windows(engine, current_db, q, ctx)
        if latest is not None:
            return latest
    src = _resolve(engine, current_db, q, ctx)
    if src.db is not None:
        ctx.precision = src.db.options.precision
    items = _expand_stars(q.items, src)
    conjuncts = _conjuncts(q.where)
    tag_conds, time_conds, row_conds = _classify(conjuncts, src)
    t0, t1 = _time_range(time_conds, src, ctx)
    if src.sub is None:
        src.tables = _filter_tables(src, tag_conds, ctx)
    else:
        row_conds = row_conds + tag_conds
    every = [e for e, _ in items] + q.partition_by + q.group_by + [o.expr for o in q.order_by]
    every += [q.having] if q.having is not None else []
    every += row_conds
    funcs = [x for e in every for x in walk(e) if isinstance(x, A.Func)]
    names = {x.name for x in funcs}
    if q.window is not None:
        if q.fill is not None:
            raise TsdbError("FILL applies to INTERVAL windows only")
        w = q.window
        every += [e for e in (w.expr, w.start, w.end) if e is not None]
    windowed = q.interval is not None or q.window is not None
    is_agg = bool(names & AGGREGATES) or windowed or bool(q.group_by)
    only_last_row = (
        is_agg
        and names & AGGREGATES == {"LAST_ROW"}
        and not windowed
        and not row_conds
        and t0 is None
        and t1 is None
        and src.sub is None
    )
    if is_agg and not row_conds and not names & (MULTI_ROW | ROW_FUNCTIONS) and src.tables:
        by_pieces = _aggregate_pieces(engine, q, items, src, ctx, t0, t1)
        if by_pieces is not None:
            return by_pieces
    cond = None
    for c in row_conds:
        cond = c if cond is None else A.Binary("AND", cond, c)
    # Conditions on data columns only are applied table by table as rows are read, so only
    # the rows that pass are ever concatenated.
    data_names = {c.name for c in src.columns} | set(_TS_ALIASES)
    early = (
        cond is not None
        and src.sub is None
        and _refs(cond) <= data_names
        and not any(isinstance(x, A.Func) and x.name in AGGREGATES for x in walk(cond))
    )
    frame = _load(
        engine, src, every, t0, t1, ctx, last_rows=only_last_row, row_cond=cond if early else None
    )
    if cond is not None and not early:
        frame = frame.filter(mask_of(evaluate(cond, frame, ctx), frame.length))
    if names & MULTI_ROW:
        if names & (AGGREGATES | ROW_FUNCTIONS) or windowed:
            raise TsdbError("TOP/BOTTOM cannot be mixed with aggregates, DIFF or INTERVAL")
        return _finish_rows(q, *_select_top(q, items, frame, src, ctx), ctx)
    if names & ROW_FUNCTIONS:
        if is_agg:
            raise TsdbError("DIFF cannot be mixed with aggregates or INTERVAL")
        return _finish_rows(q, *_diff(q, items, frame, src, ctx), ctx)
    if is_agg:
        return _aggregate(q, items, frame, src, ctx, t0, t1)
    keys = _partition_codes(q.partition_by, frame, src, ctx) if q.partition_by else None
    return _finish_rows(q, items, frame, keys, ctx)


def _latest_windows(
    engine: Engine, current_db: str | None, q: A.Select, ctx: Context
) -> pa.Table | None:
    """``INTERVAL ... ORDER BY _wstart DESC LIMIT k``: read only the newest stretch of time.

    Windows before the stretch's start would be partial, so the stretch widens (doubling)
    until the k newest windows all start inside it, or it covers all the data.
    """
    if not (
        q.interval is not None
        and q.limit is not None
        and len(q.order_by) == 1
        and q.order_by[0].desc
        and q.order_by[0].expr == A.ColumnRef("_wstart")
        and not q.partition_by
        and not q.group_by
        and q.fill is None
        and q.having is None
        and q.slimit is None
        and not isinstance(q.source, A.Select)
        and q.source is not None
        and any(e == A.ColumnRef("_wstart") and alias is None for e, alias in q.items)
    ):
        return None
    src = _resolve(engine, current_db, q, ctx)
    if src.db is None or not src.tables:
        return None
    ctx.precision = src.db.options.precision
    _, time_conds, _ = _classify(_conjuncts(q.where), src)
    t0, t1 = _time_range(time_conds, src, ctx)
    bounds = [b for b in (engine.time_bounds(t.uid) for t in src.tables) if b is not None]
    if not bounds:
        return None
    lo = max(min(b[0] for b in bounds), t0 if t0 is not None else -(2**62))
    hi = min(max(b[1] for b in bounds), t1 if t1 is not None else 2**62)
    wins = _windows(q.interval, ctx)
    need = q.limit + q.offset
    span = (need + wins.interval // wins.sliding + 1) * wins.sliding
    while True:
        start = (hi - span - wins.offset) // wins.sliding * wins.sliding + wins.offset
        if start <= lo:
            return None  # the whole range is needed anyway
        bound = A.Binary(">=", A.ColumnRef(src.ts_name), A.Literal(int(start)))
        where = bound if q.where is None else A.Binary("AND", q.where, bound)
        sub = A.Select(**{**q.__dict__, "where": where})
        result = run_select(engine, current_db, sub, ctx, narrow=False)
        ws = pc.cast(result.column("_wstart"), pa.int64()).to_numpy()
        if result.num_rows >= q.limit and (ws.size == 0 or ws.min() >= start):
            return result
        span *= 2


# ----------------------------------------------------------------------------- source
def _resolve(engine: Engine, current_db: str | None, q: A.Select, ctx: Context) -> Source:
    if q.source is None:
        return Source(None, [], [Column("_", "TIMESTAMP", -1)], [], False, pa.table({"_": [0]}))
    if isinstance(q.source, A.Select):
        sub = run_select(engine, current_db, q.source, Context(ctx.precision, ctx.params, ctx.now))
        ts_cols = [f.name for f in sub.schema if pa.types.is_timestamp(f.type)]
        order = [n for n in ("ts", "_wstart", *ts_cols) if n in sub.column_names]
        ts_name = order[0] if order else "__none"
        cols = [Column(ts_name, "TIMESTAMP", -1)] + [
            Column(n, "SUB", -1) for n in sub.column_names if n != ts_name
        ]
        return Source(None, [], cols, [], False, sub)
    db_name = q.source.db or current_db
    if db_name is None:
        raise TsdbError("no database selected: run USE <database> or write db.table")
    db = engine.database(db_name)
    name = q.source.name
    if name in db.stables:
        st = db.stables[name]
        key = ("children", db_name, name)
        shared = engine.query_cache.get(key)
        if shared is None or shared.version != engine.catalog_version:
            tables = sorted(db.children(name), key=lambda t: t.name)
            shared = engine.query_cache[key] = _SharedTables(engine.catalog_version, tables)
        src = Source(db, shared.tables, st.columns, st.tags, True)
        src.shared = shared
        return src
    table = db.tables.get(name)
    if table is None:
        raise TsdbError(f"table {name!r} does not exist in database {db_name!r}")
    if table.stable is not None:
        st = db.stables[table.stable]
        return Source(db, [table], st.columns, st.tags, False)
    return Source(db, [table], db.columns_of(table), [], False)


def _expand_stars(items: list[tuple[A.Expr, str | None]], src: Source):
    out: list[tuple[A.Expr, str | None]] = []
    data = [c.name for c in src.columns] if src.sub is None else src.sub.column_names
    for e, alias in items:
        if isinstance(e, A.Star):
            out += [(A.ColumnRef(n), None) for n in data]
            if src.is_stable:
                out += [(A.ColumnRef(t.name), None) for t in src.tags]
        elif (
            isinstance(e, A.Func)
            and len(e.args) == 1
            and isinstance(e.args[0], A.Star)
            and e.name != "COUNT"
        ):
            out += [(A.Func(e.name, (A.ColumnRef(n),)), None) for n in data]
        else:
            out.append((e, alias))
    return out


def _conjuncts(e: A.Expr | None) -> list[A.Expr]:
    if e is None:
        return []
    if isinstance(e, A.Binary) and e.op == "AND":
        return _conjuncts(e.left) + _conjuncts(e.right)
    return [e]


def _refs(e: A.Expr) -> set[str]:
    return {x.name for x in walk(e) if isinstance(x, A.ColumnRef)}


def _is_ts(name: str, src: Source) -> bool:
    return name == src.ts_name or name in _TS_ALIASES


def _classify(conjuncts: list[A.Expr], src: Source):
    tag_names = {t.name for t in src.tags} | {"tbname"}
    tags, times, rows = [], [], []
    for c in conjuncts:
        refs = _refs(c)
        has_func = any(isinstance(x, A.Func) for x in walk(c))
        if refs and refs <= tag_names and src.sub is None and not has_func:
            tags.append(c)
        elif _time_bound(c, src) is not None:
            times.append(c)
        else:
            rows.append(c)
    return tags, times, rows


def _time_bound(c: A.Expr, src: Source):
    """(op, constant expr) when ``c`` compares the timestamp column with a constant."""
    if (
        isinstance(c, A.Between)
        and not c.negated
        and isinstance(c.expr, A.ColumnRef)
        and _is_ts(c.expr.name, src)
        and not _refs(c.low)
        and not _refs(c.high)
    ):
        return ("between", (c.low, c.high))
    if isinstance(c, A.Binary) and c.op in ("=", "<", "<=", ">", ">="):
        flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}
        if (
            isinstance(c.left, A.ColumnRef)
            and _is_ts(c.left.name, src)
            and not _refs(c.right)
            and not any(isinstance(x, A.Func) for x in walk(c.right))
        ):
            return (c.op, c.right)
        if (
            isinstance(c.right, A.ColumnRef)
            and _is_ts(c.right.name, src)
            and not _refs(c.left)
            and not any(isinstance(x, A.Func) for x in walk(c.left))
        ):
            return (flip[c.op], c.left)
    return None


def _const_ts(e: A.Expr, ctx: Context) -> int:
    if isinstance(e, A.Literal) and type(e.value) is int:
        return e.value  # already in the database's units
    from septet.tsdb.expressions import _coerce_to

    ref = pa.scalar(0, pa.timestamp(ctx.precision))
    v = _coerce_to(ref, evaluate(e, Frame({}, 1), ctx), ctx)
    if isinstance(v, pa.Scalar) and pa.types.is_floating(v.type):
        return int(v.as_py())
    if not isinstance(v, pa.Scalar) or not pa.types.is_timestamp(v.type):
        raise TsdbError(f"{expr_name(e)} is not a timestamp")
    return pc.cast(v, pa.int64()).as_py()


def _time_range(conds: list[A.Expr], src: Source, ctx: Context):
    bounds = []
    for c in conds:
        op, rhs = _time_bound(c, src)  # type: ignore[misc]
        if op == "between":
            bounds += [(">=", _const_ts(rhs[0], ctx)), ("<=", _const_ts(rhs[1], ctx))]
        else:
            bounds.append((op, _const_ts(rhs, ctx)))
    return time_span(bounds)


def time_span(bounds: list[tuple[str, int]]) -> tuple[int | None, int | None]:
    """The inclusive [t0, t1] (None: open) that comparisons (op, timestamp) of the timestamp
    column leave."""
    t0 = t1 = None
    for o, v in bounds:
        if o in (">", ">="):
            v = v + 1 if o == ">" else v
            t0 = v if t0 is None else max(t0, v)
        if o in ("<", "<="):
            v = v - 1 if o == "<" else v
            t1 = v if t1 is None else min(t1, v)
        if o == "=":
            t0 = v if t0 is None else max(t0, v)
            t1 = v if t1 is None else min(t1, v)
    return t0, t1


def _tag_frame(src: Source) -> Frame:
    """One row per table of the source: tbname and the tags (built once per table list)."""
    cached = src.tag_cache
    if cached is not None and cached[0] is src.tables:
        return cached[1]
    shared = src.shared
    if shared is not None and (src.tables is shared.tables or src.positions is not None):
        if shared.frame is None:
            shared.frame = _build_tag_frame(src.tags, shared.tables, src.db)
        frame = shared.frame
        if src.tables is not shared.tables:
            frame = frame.take(src.positions)
    else:
        frame = _build_tag_frame(src.tags, src.tables, src.db)
    src.tag_cache = (src.tables, frame)
    return frame


def _build_tag_frame(tags: list[Column], tables: list[Table], db: Database | None) -> Frame:
    cols: dict[str, Any] = {"tbname": pa.array([t.name for t in tables], pa.string())}
    prec = db.options.precision if db else "ms"
    for tag in tags:
        typ = arrow_type(tag.type, prec)
        values = [t.tags.get(tag.name) for t in tables]
        cols[tag.name] = pa.array(values, typ)
    return Frame(cols, len(tables))


def _filter_tables(src: Source, conds: list[A.Expr], ctx: Context) -> list[Table]:
    if not conds or not src.tables:
        return src.tables
    shared = src.shared if src.shared is not None and src.tables is src.shared.tables else None
    mask = None
    rest = []
    for c in conds:
        found = _indexed(shared, c, src) if shared is not None else None
        if found is None:
            rest.append(c)
            continue
        keep = np.zeros(len(src.tables), dtype=bool)
        keep[found] = True
        mask = keep if mask is None else mask & keep
    if rest:
        frame = _tag_frame(src)
        if mask is None:
            mask = np.ones(len(src.tables), dtype=bool)
        for c in rest:
            mask &= mask_of(evaluate(c, frame, ctx), frame.length)
    positions = np.flatnonzero(mask)
    if shared is not None:
        src.positions = positions
    tables = src.tables
    return [tables[i] for i in positions.tolist()]


def _indexed(shared: _SharedTables, c: A.Expr, src: Source) -> list[int] | None:
    """The positions of the tables that ``c`` keeps, looked up in the super table's tag index,
    when ``c`` is ``tag = 'text'`` or ``tag IN ('text', ...)`` on a string tag or tbname
    (what evaluating it over the tag frame gives: exact string equality, a NULL tag never
    matches); None for any other condition (it is evaluated over the tag frame).

    Thousands of sub-tables: a dictionary lookup instead of comparing every table's tag."""
    found = equality_of_column(c)
    if found is None:
        return None
    name, values = found
    if not all(isinstance(v, A.Literal) and type(v.value) is str for v in values):
        return None
    return tag_positions(shared, name, [v.value for v in values], src)  # type: ignore[union-attr]


def equality_of_column(c: A.Expr) -> tuple[str, list[A.Expr]] | None:
    """(column, values) of ``col = v``, ``v = col`` or ``col IN (v, ...)``; None otherwise."""
    if isinstance(c, A.Binary) and c.op == "=":
        if isinstance(c.left, A.ColumnRef):
            return c.left.name, [c.right]
        if isinstance(c.right, A.ColumnRef):
            return c.right.name, [c.left]
        return None
    if isinstance(c, A.InList) and not c.negated and isinstance(c.expr, A.ColumnRef) and c.values:
        return c.expr.name, list(c.values)
    return None


def tag_positions(
    shared: _SharedTables, name: str, values: list[str], src: Source
) -> list[int] | None:
    """Ascending positions of the sub-tables whose string tag (or tbname) ``name`` is one of
    ``values``; None when ``name`` is not such a tag."""
    index = _tag_index(shared, name, src)
    if index is None:
        return None
    hits = [index[v] for v in values if v in index]
    if len(hits) == 1:
        return hits[0]
    return sorted({i for h in hits for i in h})  # a few lists: no numpy calls


def _tag_index(shared: _SharedTables, name: str, src: Source) -> dict[str, list[int]] | None:
    """value -> positions of one string tag (or tbname) of a super table's sub-tables."""
    if shared.index is None:
        shared.index = {}
    got = shared.index.get(name)
    if got is not None:
        return got
    if name == "tbname":
        values = [t.name for t in shared.tables]
    else:
        tag = next((t for t in src.tags if t.name == name), None)
        prec = src.db.options.precision if src.db else "ms"
        if tag is None or arrow_type(tag.type, prec) != pa.string():
            return None
        values = [t.tags.get(name) for t in shared.tables]
    lists: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        if v is not None:
            lists.setdefault(v, []).append(i)
    shared.index[name] = lists
    return lists


def _load(
    engine: Engine,
    src: Source,
    exprs: list[A.Expr],
    t0,
    t1,
    ctx: Context,
    last_rows: bool = False,
    row_cond: A.Expr | None = None,
) -> Frame:
    """The rows of the source in [t0, t1], with the columns that ``exprs`` name; with
    ``row_cond`` (on data columns only), just the rows of each table that satisfy it."""
    if src.sub is not None:
        sub = src.sub
        cols = {n: sub.column(n).combine_chunks() for n in sub.column_names}
        if src.ts_name in cols:
            ts = cols[src.ts_name]
            ts_np = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)
            mask = np.ones(len(ts_np), dtype=bool)
            if t0 is not None:
                mask &= ts_np >= t0
            if t1 is not None:
                mask &= ts_np <= t1
            cols["__ts"] = ts_np
            for alias in _TS_ALIASES:
                cols[alias] = ts
        else:
            mask = np.ones(sub.num_rows, dtype=bool)
            cols["__ts"] = np.arange(sub.num_rows, dtype=np.int64)
        cols["__tid"] = np.zeros(sub.num_rows, dtype=np.int64)
        return Frame(cols, sub.num_rows).filter(mask)
    wanted = set()
    for e in exprs:
        wanted |= _refs(e)
    data_cols = [c for c in src.columns[1:] if c.name in wanted]
    col_ids = [c.id for c in data_cols]
    prec = src.db.options.precision if src.db else ctx.precision
    if last_rows:
        parts, counts = [], []
        for table in src.tables:
            row = engine.last_row(table.uid)
            rows = None if row is None else row.select([TS] + [col_key(c) for c in col_ids])
            counts.append(0 if rows is None else rows.num_rows)
            if rows is not None and rows.num_rows:
                parts.append(rows)
        ts_np, columns = _gather_rows(parts, data_cols, prec)
    else:
        with engine.lock:  # the pieces read segment maps that a flush may replace
            ts_np, columns, counts = _gather_pieces(
                engine, [t.uid for t in src.tables], t0, t1, data_cols, prec, row_cond, src, ctx
            )
    n = int(ts_np.size)
    ts_arr = pa.array(ts_np, pa.int64()).view(pa.timestamp(prec))
    columns[src.ts_name] = ts_arr
    for alias in _TS_ALIASES:
        columns[alias] = ts_arr
    tid = np.repeat(np.arange(len(src.tables), dtype=np.int64), counts)
    columns["__ts"] = ts_np
    columns["__tid"] = tid
    tags = _tag_frame(src)
    rows_of: list[pa.Array] = []  # tid as Arrow int32 (Arrow takes strings ~2x faster)

    def tag_column(name: str) -> Any:
        if not rows_of:
            rows_of.append(pa.array(tid.astype(np.int32)))
        return tags.get(name).take(rows_of[0])

    lazy = {name: (lambda name=name: tag_column(name)) for name in tags.names()}
    return Frame(columns, n, lazy)


def _gather_rows(parts: list[pa.Table], data_cols: list[Column], prec: str):
    """(timestamps, columns by name) of tables of rows, concatenated."""
    if not parts:
        empty = {c.name: pa.array([], arrow_type(c.type, prec)) for c in data_cols}
        return np.zeros(0, dtype=np.int64), empty
    merged = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    columns = {c.name: merged.column(col_key(c.id)) for c in data_cols}
    return merged.column(TS).to_numpy(), columns


def _gather_pieces(
    engine: Engine,
    uids: list[int],
    t0: int | None,
    t1: int | None,
    data_cols: list[Column],
    prec: str,
    cond: A.Expr | None,
    src: Source,
    ctx: Context,
):
    """(timestamps, columns by name, rows per table) of every table's pieces, in table then
    time order; with ``cond`` (on data columns only), only the rows that satisfy it.

    Without a condition, columns stay chunked (one chunk per piece): nothing is copied until
    something needs it. A condition is first checked against each block's min/max, which
    skips the blocks where no row can satisfy it undecoded; then it is evaluated over the
    columns it names (plain comparisons with constants in numpy, piece by piece), and the
    other columns are decoded only for the pieces that kept rows, their passing rows gathered
    straight into one array per column.
    """
    types = {c.id: arrow_type(c.type, prec) for c in data_cols}
    bounds: list[tuple[int, str, Any]] = []
    all_simple = False
    skip = None
    if cond is not None:
        bounds, all_simple = _prunable(cond, data_cols, ctx)
        if bounds:
            dtypes = {c.id: numpy_dtype(c.type) for c in data_cols}
            floats = {cid for cid, d in dtypes.items() if d is not None and d.kind == "f"}
            skip = _BlockFilter(bounds, floats)
    col_ids = [c.id for c in data_cols]
    pieces = engine.pieces_many(uids, col_ids, t0, t1, skip=skip)
    flat = [p for ps in pieces for p in ps]
    threads = engine.options.query_threads
    if cond is None:
        counts = np.array([sum(p.rows for p in ps) for ps in pieces], dtype=np.int64)
        ts_np, columns = _piece_columns(flat, data_cols, types, threads)
        return ts_np, columns, counts
    table_of = np.repeat(np.arange(len(pieces)), [len(ps) for ps in pieces])
    if all_simple:
        # Plain comparisons with constants: evaluated on numpy values, a segment's pieces
        # together where their columns are fixed-width (arenascan.py), else piece by piece.
        ids = [cid for cid, _, _ in bounds]
        tests = [(_NUMPY_COMPARE[op], v) for _, op, v in bounds]
        wanted = [(c.id, c.name, numpy_dtype(c.type), types[c.id]) for c in data_cols]
        if all(w[2] is not None for w in wanted) and arena_ready(wanted, flat):
            ts_np, columns, hits = gather_filtered(flat, ids, tests, wanted, threads)
            counts = np.bincount(table_of, weights=hits, minlength=len(pieces)).astype(np.int64)
            return ts_np, columns, counts
        prefetch(flat, sorted(set(ids)), threads)
        picks = [piece_picks(p, ids, tests) for p in flat]
    else:
        refs = _refs(cond)
        by_name = {c.name: c for c in data_cols}
        cond_cols = [by_name[r] for r in sorted(refs) if r in by_name]
        ts_np, columns = _piece_columns(flat, cond_cols, types, threads)
        if refs & ({src.ts_name} | set(_TS_ALIASES)):
            ts_arr = pa.array(ts_np, pa.int64()).view(pa.timestamp(prec))
            for name in (src.ts_name, *_TS_ALIASES):
                columns[name] = ts_arr
        total = int(ts_np.size)
        mask = mask_of(evaluate(cond, Frame(columns, total), ctx), total)
        ends = np.cumsum([p.rows for p in flat], dtype=np.int64)
        picks = [np.flatnonzero(m) for m in np.split(mask, ends[:-1])] if flat else []
    hits = np.array([i.size for i in picks], dtype=np.int64)
    counts = np.bincount(table_of, weights=hits, minlength=len(pieces)).astype(np.int64)
    # Pieces without hits: their other columns are never decoded. Each kept piece's passing
    # rows are gathered straight into one array per column.
    kept = [(p, i) for p, i in zip(flat, picks, strict=True) if i.size]
    flat, picks = [p for p, _ in kept], [i for _, i in kept]
    total = int(hits.sum())
    prefetch(flat, [c.id for c in data_cols], threads)
    ts_np, columns = _gather_kept(flat, picks, data_cols, types, total)
    return ts_np, columns, counts


def _gather_kept(
    flat: list[Any],
    picks: list[np.ndarray],
    data_cols: list[Column],
    types: dict[int, pa.DataType],
    total: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(timestamps, columns by name) of the ``picks`` rows of each piece, concatenated.

    Fixed-width columns are gathered piece by piece, every column of a piece in one go
    (one Python step per piece instead of one per piece and column), straight into one
    preallocated array per column; a validity array is made only for a column that has
    NULLs in some piece. Strings are taken by Arrow.
    """
    fixed = [c for c in data_cols if numpy_dtype(c.type) is not None]
    ids = [c.id for c in fixed]
    ts_out = empty_numpy(total, np.int64)
    outs = [empty_numpy(total, numpy_dtype(c.type)) for c in fixed]
    valids: list[np.ndarray | None] = [None] * len(fixed)
    at = 0
    for p, i in zip(flat, picks, strict=True):
        hi = at + i.size
        # mode="clip": numpy writes straight into ``out`` ("raise" would buffer it).
        p.ts().take(i, None, ts_out[at:hi], "clip")
        for k, (x, v) in enumerate(p.values_many(ids)):
            x.take(i, None, outs[k][at:hi], "clip")
            if v is not None:
                if valids[k] is None:
                    valids[k] = empty_numpy(total, np.bool_)
                    valids[k].fill(True)  # the pieces before had no NULLs
                v.take(i, None, valids[k][at:hi], "clip")
        at = hi
    columns: dict[str, Any] = {}
    for c, values, valid in zip(fixed, outs, valids, strict=True):
        columns[c.name] = from_numpy_valid(values, valid, types[c.id])
    for c in data_cols:
        if c.name not in columns:  # strings
            taken = [p.column(c.id).take(pa.array(i)) for p, i in zip(flat, picks, strict=True)]
            columns[c.name] = pa.chunked_array(taken, types[c.id])
    return ts_out, {c.name: columns[c.name] for c in data_cols}


_NUMPY_COMPARE = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
    "=": np.equal,
}


def _piece_columns(
    flat: list[Any], cols: list[Column], types: dict[int, pa.DataType], threads: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Timestamps and chunked columns of pieces (blocks not cached yet are decoded on the
    thread pool)."""
    prefetch(flat, [c.id for c in cols], threads)
    got = [(p.ts(), [p.column(c.id) for c in cols]) for p in flat]
    ts_np = np.concatenate([t for t, _ in got]) if got else np.zeros(0, dtype=np.int64)
    columns: dict[str, Any] = {
        c.name: pa.chunked_array([arrays[j] for _, arrays in got], types[c.id])
        for j, c in enumerate(cols)
    }
    return ts_np, columns


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}


def _prunable(
    cond: A.Expr, data_cols: list[Column], ctx: Context
) -> tuple[list[tuple[int, str, Any]], bool]:
    """(column id, operator, constant) of the conjuncts like ``col > 90`` on numeric columns,
    and whether every conjunct is one of them on a float or signed integer column."""
    numeric = {c.name: c.id for c in data_cols if is_numeric(c.type)}
    plain = {c.id for c in data_cols if is_numeric(c.type) and numpy_dtype(c.type).kind in "fi"}
    out = []
    conjuncts = _conjuncts(cond)

    def const(e: A.Expr):
        if isinstance(e, A.Literal):
            v = e.value
            return v if isinstance(v, int | float) and not isinstance(v, bool) else None
        if _refs(e) or any(isinstance(x, A.Func) for x in walk(e)):
            return None
        v = evaluate(e, Frame({}, 1), ctx)
        v = v.as_py() if isinstance(v, pa.Scalar) else None
        return v if isinstance(v, int | float) and not isinstance(v, bool) else None

    converted = 0
    for c in conjuncts:
        before = len(out)
        if isinstance(c, A.Binary) and c.op in _FLIP:
            col, op, other = c.left, c.op, c.right
            if not isinstance(col, A.ColumnRef):
                col, op, other = c.right, _FLIP[c.op], c.left
            if isinstance(col, A.ColumnRef) and col.name in numeric:
                v = const(other)
                if v is not None:
                    out.append((numeric[col.name], op, v))
        elif (
            isinstance(c, A.Between)
            and not c.negated
            and isinstance(c.expr, A.ColumnRef)
            and c.expr.name in numeric
        ):
            lo, hi = const(c.low), const(c.high)
            if lo is not None and hi is not None:
                out += [(numeric[c.expr.name], ">=", lo), (numeric[c.expr.name], "<=", hi)]
        converted += len(out) > before
    all_simple = converted == len(conjuncts) and all(cid in plain for cid, _, _ in out)
    return out, all_simple


class _BlockFilter:
    """A filter's min/max test of segment blocks (see :func:`_excluded`), also over all the
    blocks of a segment at once (``many``) when every column it tests is a float column."""

    def __init__(self, bounds: list[tuple[int, str, Any]], floats: set[int]):
        self.bounds = bounds
        exact = all(abs(v) < 2**52 for _, _, v in bounds)  # as exact in float64 as in Python
        self.vectorised = exact and all(cid in floats for cid, _, _ in bounds)

    def __call__(self, block: BlockMeta) -> bool:
        return _excluded(block, self.bounds)

    def many(self, reader: Any) -> np.ndarray | None:
        """Per block of ``reader`` (file order), whether no row can pass; None: not
        vectorised (call the filter block by block)."""
        if not self.vectorised:
            return None
        out = None
        for cid, op, v in self.bounds:
            count, lo, hi = reader.block_bounds(cid)
            # Bounds that are NaN (or None: NaN here) compare False: never skipped by them.
            with np.errstate(invalid="ignore"):
                if op == ">":
                    ex = hi <= v
                elif op == ">=":
                    ex = hi < v
                elif op == "<":
                    ex = lo >= v
                elif op == "<=":
                    ex = lo > v
                else:
                    ex = (v < lo) | (v > hi)
            ex |= count == 0  # all NULL: a comparison is never true
            out = ex if out is None else out | ex
        return out


def _excluded(block: BlockMeta, bounds: list[tuple[int, str, Any]]) -> bool:
    """Whether no row of a segment block can satisfy every (column, operator, constant)."""
    for cid, op, v in bounds:
        count, lo, hi = block_bounds(block, cid)
        if count == 0:
            return True  # all NULL: a comparison is never true
        if lo is None or hi is None:
            continue
        # NaN bounds compare False everywhere: such a block is never skipped.
        if (
            (op == ">" and hi <= v)
            or (op == ">=" and hi < v)
            or (op == "<" and lo >= v)
            or (op == "<=" and lo > v)
            or (op == "=" and (v < lo or v > hi))
        ):
            return True
    return False


# ----------------------------------------------------------------------------- grouping
def _codes(e: A.Expr, frame: Frame, src: Source, ctx: Context) -> tuple[np.ndarray, int]:
    """Group codes (ordered like the values) of a key expression, and how many there are."""
    if isinstance(e, A.ColumnRef) and e.name == "tbname" and src.sub is None:
        return frame.get("__tid"), max(len(src.tables), 1)
    tag_names = {t.name for t in src.tags}
    if isinstance(e, A.ColumnRef) and e.name in tag_names and src.sub is None:
        tags = _tag_frame(src)
        per_table, k = _factorize(tags.get(e.name))
        return per_table[frame.get("__tid")], k
    return _factorize(to_array(evaluate(e, frame, ctx), frame.length))


def _factorize(arr: pa.Array) -> tuple[np.ndarray, int]:
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64), 1
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    dictionary = enc.dictionary
    order = pc.array_sort_indices(dictionary, null_placement="at_end").to_numpy()
    rank = np.empty(len(dictionary), dtype=np.int64)
    rank[order] = np.arange(len(dictionary))
    return rank[enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)], len(dictionary)


def _combine(codes: list[tuple[np.ndarray, int]], n: int) -> tuple[np.ndarray, int]:
    """One dense group id per row, ordered like the tuple of codes."""
    if not codes:
        return np.zeros(n, dtype=np.int64), 1
    gid = np.zeros(n, dtype=np.int64)
    size = 1
    for c, k in codes:
        if size * k > 2**62:
            _, gid = np.unique(np.stack([gid, c]), axis=1, return_inverse=True)
            size = int(gid.max()) + 1 if n else 1
        gid = gid * k + c
        size *= k
    if size <= max(4 * n, 1 << 16):
        present = np.zeros(size, dtype=bool)
        present[gid] = True
        remap = np.cumsum(present) - 1
        return remap[gid], int(present.sum())
    uniq, inv = np.unique(gid, return_inverse=True)
    return inv.astype(np.int64), int(uniq.size)


def _partition_codes(keys: list[A.Expr], frame: Frame, src: Source, ctx: Context):
    return _combine([_codes(k, frame, src, ctx) for k in keys], frame.length)


def _table_codes(keys: list[A.Expr], src: Source) -> tuple[np.ndarray, int] | None:
    """Combined per-table group codes when every key is tbname or a tag, else None."""
    tag_names = {t.name for t in src.tags} | {"tbname"}
    if src.sub is not None or not all(
        isinstance(k, A.ColumnRef) and k.name in tag_names for k in keys
    ):
        return None
    if not keys:
        return np.zeros(len(src.tables), dtype=np.int64), 1
    tags = _tag_frame(src)
    codes = [_factorize(tags.get(k.name)) for k in keys]  # type: ignore[union-attr]
    return _combine(codes, len(src.tables))


def _group_order(gid: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """Row order sorted by group, then time; None when the rows are in that order already."""
    if gid.size == 0:
        return None
    dg = np.diff(gid)
    if (dg >= 0).all() and (np.diff(ts)[dg == 0] > 0).all():
        return None
    return np.lexsort((ts, gid))


# ----------------------------------------------------------------------------- windows
@dataclass
class Windows:
    interval: int
    sliding: int
    offset: int

    def assign(self, ts: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(row, window start) for every window each row falls in (rows None: all, once)."""
        k = -(-self.interval // self.sliding)
        base = ts - self.offset  # in place from here: one allocation for millions of rows
        base //= self.sliding
        base *= self.sliding
        base += self.offset
        if k == 1:
            return None, base  # None: every row, in order, in exactly one window
        rows, starts = [], []
        for j in range(k):
            ws = base - j * self.sliding
            hit = np.flatnonzero(ts < ws + self.interval)
            rows.append(hit)
            starts.append(ws[hit])
        return np.concatenate(rows), np.concatenate(starts)

    def grid(self, lo: int, hi: int) -> np.ndarray:
        """Every window start from the first window holding ``lo`` to the last holding ``hi``."""
        last = (hi - self.offset) // self.sliding * self.sliding + self.offset
        first = (lo - self.offset) // self.sliding * self.sliding + self.offset
        while first - self.sliding + self.interval > lo:
            first -= self.sliding
        return np.arange(first, last + 1, self.sliding, dtype=np.int64)


def _data_windows(
    w: A.Window, frame: Frame, pid: np.ndarray, ts: np.ndarray, src: Source, ctx: Context
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, window id) of the rows inside STATE/SESSION/EVENT windows, in (partition, time)
    order; window ids ascend from 0. Windows never span partitions."""
    n = frame.length
    order = np.lexsort((ts, pid)) if n else np.zeros(0, np.int64)
    p = pid[order]
    if w.kind == "SESSION":
        if not (isinstance(w.expr, A.ColumnRef) and _is_ts(w.expr.name, src)):
            raise TsdbError("SESSION(column, gap) needs the timestamp column as its column")
        gap = ctx.duration_units(w.tolerance)
        t = ts[order]
        new = np.ones(n, bool)
        new[1:] = (p[1:] != p[:-1]) | (t[1:] - t[:-1] > gap)
        return order, np.cumsum(new) - 1
    if w.kind == "STATE":
        col = to_array(evaluate(w.expr, frame, ctx), n)
        if pa.types.is_floating(col.type):
            raise TsdbError("STATE_WINDOW needs an integer, bool or string state, not a float")
        codes, _ = _factorize(col)
        valid = col.is_valid().to_numpy(zero_copy_only=False) if col.null_count else None
        rows = order if valid is None else order[valid[order]]  # NULL states: in no window
        c, p = codes[rows], pid[rows]
        new = np.ones(rows.size, bool)
        new[1:] = (p[1:] != p[:-1]) | (c[1:] != c[:-1])
        return rows, np.cumsum(new) - 1
    # EVENT: a window opens at a row where START holds and closes at the first row from
    # there on where END holds (possibly the same row); a window never closed is left out.
    starts = np.flatnonzero(mask_of(evaluate(w.start, frame, ctx), n)[order])
    ends = np.flatnonzero(mask_of(evaluate(w.end, frame, ctx), n)[order])
    part_end = np.searchsorted(p, p, side="right")  # first position of the next partition
    spans = []
    i = 0
    while i < starts.size:
        a = int(starts[i])
        j = int(np.searchsorted(ends, a))
        if j == ends.size:
            break
        b = int(ends[j])
        nxt = b + 1
        if b >= part_end[a]:  # no end in a's partition: nothing more opens there
            nxt = int(part_end[a])
        else:
            spans.append((a, b))
        i = int(np.searchsorted(starts, nxt))
    if not spans:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo = np.array([a for a, _ in spans], np.int64)
    size = np.array([b - a + 1 for a, b in spans], np.int64)
    wid = np.repeat(np.arange(lo.size, dtype=np.int64), size)
    at = np.arange(int(size.sum()), dtype=np.int64) - np.repeat(np.cumsum(size) - size, size)
    return order[lo[wid] + at], wid


def _windows(iv: A.Interval, ctx: Context) -> Windows:
    interval = ctx.duration_units(iv.interval)
    sliding = ctx.duration_units(iv.sliding) if iv.sliding else interval
    offset = ctx.duration_units(iv.offset) if iv.offset else 0
    if sliding > interval:
        raise TsdbError("SLIDING must not be longer than INTERVAL")
    if offset >= interval:
        raise TsdbError("the INTERVAL offset must be shorter than the interval")
    if interval // sliding > 1000:
        raise TsdbError("INTERVAL/SLIDING must be at most 1000 windows per row")
    return Windows(interval, sliding, offset)


# ----------------------------------------------------------------------------- aggregation
def _aggregate(q: A.Select, items, frame: Frame, src: Source, ctx: Context, t0, t1) -> pa.Table:
    keys = q.partition_by + q.group_by
    n = frame.length
    ts = frame.get("__ts")
    wins = _windows(q.interval, ctx) if q.interval else None
    per_table = _table_codes(keys, src)
    in_order = False
    if per_table is not None:
        # Keys that are tags or tbname are constant per table: combine them per table, then
        # spread to rows. Rows come table by table in time order, so when each table is its
        # own partition (codes strictly ascend), rows are already in (partition, time) order.
        table_pid, n_part = per_table
        pid = table_pid[frame.get("__tid")] if n else np.zeros(0, dtype=np.int64)
        in_order = (
            bool((np.diff(table_pid) > 0).all())
            and src.sub is None
            and (wins is None or wins.sliding == wins.interval)
        )
    else:
        key_codes = [_codes(k, frame, src, ctx) for k in keys]
        pid, n_part = _combine(key_codes, n)
    # rows: the row of each (row, window) pair; None while that is simply every row once.
    rows: np.ndarray | None = None
    wstart = None
    if q.window is not None:
        # Windows that follow the data: rows in (partition, time) order, window ids ascending.
        rows, gid = _data_windows(q.window, frame, pid, ts, src, ctx)
        wstart = ts[rows]
        in_order = True
    elif wins is not None:
        rows, wstart = wins.assign(ts)
        wbase = int(wstart.min()) if wstart.size else 0
        widx = wstart - wbase
        widx //= wins.sliding
        n_win = int(widx.max()) + 1 if widx.size else 1
        prow = pid if rows is None else pid[rows]
        if n_part * n_win < 2**62:  # ordering and change points need no dense ids
            gid = prow * n_win
            gid += widx
        else:
            gid, _ = _combine([(prow, n_part), (widx, n_win)], prow.size)
    else:
        gid = pid
    order = None if in_order else _group_order(gid, ts if rows is None else ts[rows])
    # Positions in group order -> rows; None when they are the same (nothing to gather).
    identity = rows is None and order is None
    if identity:
        sorted_rows = None
        gid_sorted = gid
    else:
        base_rows = np.arange(n) if rows is None else rows
        sorted_rows = base_rows if order is None else base_rows[order]
        gid_sorted = gid if order is None else gid[order]
    total = gid_sorted.size
    if total:
        starts = np.flatnonzero(gid_sorted[1:] != gid_sorted[:-1]) + 1
        starts = np.concatenate([np.zeros(1, dtype=np.int64), starts])
    else:
        starts = np.zeros(0, dtype=np.int64)
    if not keys and wins is None and q.window is None and total == 0:
        starts = np.zeros(1, dtype=np.int64)  # an aggregate over no rows is one row of NULLs
    ends = np.concatenate([starts[1:], [total]]).astype(np.int64)
    groups = K.Groups(starts, ends, ts if identity else ts[sorted_rows])
    first = np.minimum(starts, max(total - 1, 0))
    if not total:
        rep = np.zeros(len(starts), dtype=np.int64)
    else:
        rep = first if identity else sorted_rows[first]
    empty_all = total == 0
    # Aggregate calls, computed once each; selector rows only when another column needs them.
    need_rows = any(_outside_refs(e, set(keys)) for e, _ in items)
    calls: dict[A.Func, str] = {}
    selector_rows: list[np.ndarray] = []
    out: dict[str, Any] = {}
    sources = [e for e, _ in items] + [o.expr for o in q.order_by]
    sources += [q.having] if q.having is not None else []
    for e in sources:
        for x in _top_aggregates(e):
            if x not in calls:
                calls[x] = f"__agg{len(calls)}"
    computed = [_compute(x, frame, sorted_rows, groups, ctx, empty_all, need_rows) for x in calls]
    for x, (values, sel) in zip(calls, computed, strict=True):
        out[calls[x]] = values
        if sel is not None and x.name in SELECTORS:
            selector_rows.append(sel)
    n_sel = len({c for c in calls if c.name in SELECTORS})
    if n_sel == 1 and selector_rows and not empty_all:
        pick = selector_rows[0] if identity else sorted_rows[selector_rows[0]]
    else:
        pick = rep
    result = Frame(out, len(starts))
    tag_names = {t.name for t in src.tags} | {"tbname"}
    for i, k in enumerate(keys):
        if not n:
            result.columns[f"__key{i}"] = pa.nulls(len(starts))
        elif isinstance(k, A.ColumnRef) and k.name in tag_names and src.sub is None:
            tid = frame.get("__tid")[rep]  # a tag's value comes from the table's tags
            result.columns[f"__key{i}"] = _tag_frame(src).get(k.name).take(pa.array(tid))
        else:
            result.columns[f"__key{i}"] = to_array(evaluate(k, frame, ctx), n).take(pa.array(rep))
    if wins is not None or q.window is not None:
        if not total:
            ws = np.zeros(0, np.int64)
            part_of = ws
        else:
            # The window and partition of each group's first (row, window) pair.
            pair = first if order is None else order[first]
            ws = wstart[pair]
            part_of = pid[pair] if rows is None else pid[rows[pair]]
        result.columns["__ws"] = ws
        result.columns["__part"] = part_of
        if q.window is not None:  # the window ends at its last row
            result.columns["__we"] = wstart[ends - 1] if total else ws
    key_index = {k: i for i, k in enumerate(keys)}
    tag_like = {t.name for t in src.tags} | {"tbname"}

    def subst(e: A.Expr) -> A.Expr | None:
        if e in calls:
            return A.ColumnRef(calls[e])
        if e in key_index:
            return A.ColumnRef(f"__key{key_index[e]}")
        if isinstance(e, A.ColumnRef) and e.name in WINDOW_COLUMNS:
            if wins is None and q.window is None:
                raise TsdbError(f"{e.name} needs a window (INTERVAL, STATE_WINDOW, ...)")
            return e
        if isinstance(e, A.ColumnRef):
            name = f"__ref_{e.name}"
            if not result.has(name):
                if n_sel != 1 and e.name not in tag_like:
                    raise TsdbError(
                        f"column {e.name!r} must be inside an aggregate function or listed in "
                        "PARTITION BY / GROUP BY"
                    )
                col = to_array(evaluate(e, frame, ctx), n)
                result.columns[name] = col.take(pa.array(pick)) if n else pa.nulls(len(starts))
            return A.ColumnRef(name)
        return None

    lo, hi = t0, t1
    if q.fill is not None and ts.size:
        lo = int(ts.min()) if lo is None else lo
        hi = int(ts.max()) if hi is None else hi
    return _finish_groups(q, items, result, subst, wins, ctx, lo, hi, keys)


def _finish_groups(
    q: A.Select, items, result: Frame, subst, wins, ctx: Context, lo, hi, keys
) -> pa.Table:
    """One row per group (``__ws``/``__part`` per window) -> FILL, window columns, output."""
    present = np.ones(result.length, dtype=bool)
    if wins is not None and q.fill is not None and q.fill.mode != "NONE":
        result, present = _fill_grid(result, wins, lo, hi, keys)
    windowed = wins is not None or q.window is not None
    if windowed:
        ws = result.get("__ws")
        we = ws + wins.interval if wins is not None else result.get("__we")
        prec = ctx.precision
        result.columns["_wstart"] = pa.array(ws, pa.int64()).view(pa.timestamp(prec))
        # Most queries name only _wstart: the others are made if an expression asks.
        result.lazy["_wend"] = lambda: pa.array(we, pa.int64()).view(pa.timestamp(prec))
        result.lazy["_wduration"] = lambda: pa.array(we - ws, pa.int64())
    part = result.get("__part") if windowed else None
    if part is None and q.partition_by:
        part = np.arange(result.length)  # one row per partition
    return _project_groups(
        q, items, result, subst, part, ctx, bool(q.partition_by) and windowed, present
    )


def _project_groups(
    q: A.Select,
    items,
    result: Frame,
    subst,
    part,
    ctx: Context,
    per_group_limit: bool,
    present: np.ndarray | None = None,
) -> pa.Table:
    """Select items over one row per group, then FILL, HAVING, ORDER BY and limits."""
    names = _output_names(items)
    outputs = {}
    fillable = []
    for (e, _), name in zip(items, names, strict=True):
        outputs[name] = to_array(evaluate(replace(e, subst), result, ctx), result.length)
        if _top_aggregates(e):
            fillable.append(name)
    if present is not None and not present.all():
        _apply_fill(outputs, fillable, present, result, q.fill, ctx)
    if q.having is not None:
        keep = mask_of(evaluate(replace(q.having, subst), result, ctx), result.length)
        outputs = {k: v.filter(pa.array(keep)) for k, v in outputs.items()}
        result = result.filter(keep)
        if part is not None:
            part = part[keep]
    return _order_limit(q, items, outputs, result, subst, part, ctx, per_group_limit)


def _aggregate_pieces(
    engine: Engine, q: A.Select, items, src: Source, ctx: Context, t0, t1
) -> pa.Table | None:
    """COUNT/SUM/AVG/MIN/MAX/SPREAD grouped by tags or tbname, over tumbling INTERVAL windows
    or none, computed block by block (windowagg.py) without gathering the rows.

    Whole blocks inside one window are answered from their statistics, undecoded. Returns
    None when the query is not of that shape (then the general path runs).
    """
    keys = q.partition_by + q.group_by
    if src.sub is not None or src.db is None or q.window is not None:
        return None
    per_table = _table_codes(keys, src)
    if per_table is None:
        return None
    wins = _windows(q.interval, ctx) if q.interval else None
    if wins is not None and wins.sliding != wins.interval:
        return None
    sources = [e for e, _ in items] + [o.expr for o in q.order_by]
    sources += [q.having] if q.having is not None else []
    if any(_outside_refs(e, set(keys)) for e in sources):
        return None
    if wins is None and any(
        isinstance(x, A.ColumnRef) and x.name in WINDOW_COLUMNS for e in sources for x in walk(e)
    ):
        return None  # the general path explains the error
    found = aggregate_calls(sources, src)
    if found is None:
        return None
    calls, needs = found
    table_pid, n_part = per_table
    col_ids = sorted(needs)
    with engine.lock:  # the pieces read segment maps that a flush may replace
        pieces = engine.pieces_many([t.uid for t in src.tables], col_ids, t0, t1)
        tables = list(zip(table_pid.tolist(), pieces, strict=True))
        partials = windowagg.aggregate(tables, wins, needs, engine.options.query_threads)
    n_groups = partials.pid.size
    if not keys and wins is None and n_groups == 0:
        # An aggregate over no rows is one row: COUNT 0, everything else NULL.
        zero = np.zeros(1, np.int64)
        partials = windowagg.Partials(zero, zero, zero)
        for cid, need in needs.items():
            partials.count[cid] = zero
            if need.sum:
                partials.sum[cid] = np.zeros(1, need.acc)
            if need.extremes:
                partials.min[cid] = partials.max[cid] = np.zeros(1, need.dtype)
        n_groups = 1
    result = Frame({}, n_groups)
    calls_map: dict[A.Func, str] = {}
    for k, (f, (cid, typ)) in enumerate(calls.items()):
        calls_map[f] = f"__agg{k}"
        need = needs.get(cid) if cid is not None else None
        result.columns[f"__agg{k}"] = windowagg.finish(f.name, cid, partials, need, typ)
    if keys:
        first_table = np.zeros(max(n_part, 1), np.int64)
        first_table[table_pid[::-1]] = np.arange(len(src.tables))[::-1]
        rep = pa.array(first_table[partials.pid])
        tags = _tag_frame(src)
        for i, k in enumerate(keys):
            result.columns[f"__key{i}"] = tags.get(k.name).take(rep)  # type: ignore[union-attr]
    if wins is not None:
        result.columns["__ws"] = partials.wid * wins.interval + wins.offset
        result.columns["__part"] = partials.pid
    key_index = {k: i for i, k in enumerate(keys)}

    def subst(e: A.Expr) -> A.Expr | None:
        if e in calls_map:
            return A.ColumnRef(calls_map[e])
        if e in key_index:
            return A.ColumnRef(f"__key{key_index[e]}")
        return None

    if wins is not None and not keys and _plain_windows(q):
        direct = _window_columns(items, calls_map, result, ctx)
        if direct is not None:
            return direct
    lo, hi = t0, t1
    if wins is not None and q.fill is not None and (lo is None or hi is None):
        spans = [(p.t0, p.t1) for _, pieces in tables for p in pieces]
        if spans:
            lo = min(s[0] for s in spans) if lo is None else lo
            hi = max(s[1] for s in spans) if hi is None else hi
    return _finish_groups(q, items, result, subst, wins, ctx, lo, hi, keys)


def _plain_windows(q: A.Select) -> bool:
    """Whether the windows of ``q`` are its rows as they are: no FILL, HAVING, ordering,
    limits or DISTINCT."""
    return (
        q.fill is None
        and q.having is None
        and not q.order_by
        and q.limit is None
        and not q.offset
        and q.slimit is None
        and not q.soffset
        and not q.distinct
    )


def _window_columns(items, calls_map: dict, result: Frame, ctx: Context) -> pa.Table | None:
    """The answer of plain windows (see _plain_windows) whose items are each ``_wstart`` or an
    aggregate call, taken straight from the partials' columns: what _finish_groups makes of
    them, without evaluating each item over the groups. None for any other item."""
    outputs = {}
    for (e, _), name in zip(items, _output_names(items), strict=True):
        column = calls_map.get(e)
        if column is not None:
            outputs[name] = result.columns[column]
        elif e == _WSTART:
            ws = pa.array(result.columns["__ws"], pa.int64())
            outputs[name] = ws.view(pa.timestamp(ctx.precision))
        else:
            return None
    return pa.table(outputs)


_WSTART = A.ColumnRef("_wstart")


def aggregate_calls(sources: list[A.Expr], src: Source):
    """The aggregate calls in ``sources`` as (call -> (column id or None for COUNT(*), its
    Arrow type), column id -> windowagg.ColumnNeeds), or None when a call is not one that
    windowagg computes (then the general path runs) or there is none."""
    by_name = {c.name: c for c in src.columns[1:]}
    prec = src.db.options.precision  # type: ignore[union-attr]
    calls: dict[A.Func, tuple[int | None, pa.DataType | None]] = {}
    needs: dict[int, windowagg.ColumnNeeds] = {}
    for e in sources:
        for f in _top_aggregates(e):
            if f in calls:
                continue
            if f.name not in windowagg.FUNCTIONS or f.distinct:
                return None
            if f.name == "COUNT" and (not f.args or isinstance(f.args[0], A.Star)):
                calls[f] = (None, None)
                continue
            if len(f.args) != 1 or not isinstance(f.args[0], A.ColumnRef):
                return None
            col = by_name.get(f.args[0].name)
            if col is None:
                return None
            dtype = numpy_dtype(col.type) if is_numeric(col.type) else None
            if f.name != "COUNT" and (dtype is None or dtype == np.uint64):
                return None  # the general path handles (or rejects) the rest
            need = needs.get(col.id)
            if need is None:
                need = needs[col.id] = windowagg.ColumnNeeds(None)
            if f.name != "COUNT":
                need.dtype = dtype
                need.sum |= f.name in ("SUM", "AVG")
                need.low |= f.name in ("MIN", "SPREAD")
                need.high |= f.name in ("MAX", "SPREAD")
            calls[f] = (col.id, arrow_type(col.type, prec))
    if not calls:
        return None
    return calls, needs


def _outside_refs(e: A.Expr, keys: set) -> bool:
    """Whether ``e`` names a column outside any aggregate (other than keys and windows)."""
    if e in keys or (isinstance(e, A.Func) and e.name in AGGREGATES):
        return False
    if isinstance(e, A.ColumnRef):
        return e.name not in WINDOW_COLUMNS
    from septet.tsdb.expressions import children

    return any(_outside_refs(c, keys) for c in children(e))


def _top_aggregates(e: A.Expr) -> list[A.Func]:
    """Aggregate calls in ``e`` that are not inside another aggregate."""
    if isinstance(e, A.Func) and e.name in AGGREGATES:
        return [e]
    from septet.tsdb.expressions import children

    out = []
    for c in children(e):
        out += _top_aggregates(c)
    return out


def _compute(
    f: A.Func,
    frame: Frame,
    rows: np.ndarray | None,
    g: K.Groups,
    ctx: Context,
    empty_all: bool,
    need_rows: bool = True,
):
    """One aggregate over the groups: (Arrow array, selected positions or None)."""
    name = f.name
    n_groups = g.count
    if name == "COUNT" and (not f.args or isinstance(f.args[0], A.Star)):
        return pa.array((g.ends - g.starts).astype(np.int64)), None
    if not f.args:
        raise TsdbError(f"{name}() needs a column")
    arg = f.args[0]
    if isinstance(arg, A.Star):
        raise TsdbError(f"{name}(*) is not allowed; name a column")
    for x in walk(arg):
        if isinstance(x, A.Func) and x.name in AGGREGATES:
            raise TsdbError(f"aggregate {x.name}() cannot be nested inside {name}()")
    col = to_array(evaluate(arg, frame, ctx), frame.length)
    if f.distinct:
        if name != "COUNT":
            raise TsdbError("DISTINCT is supported only in COUNT(DISTINCT ...)")
        codes, _ = _factorize(col)
        valid = (
            col.is_valid().to_numpy(zero_copy_only=False)
            if col.null_count
            else np.ones(len(col), bool)
        )
        if rows is not None:
            codes, valid = codes[rows], valid[rows]
        gi = g.index()
        pairs = np.unique(np.stack([gi[valid], codes[valid]]), axis=1)
        return pa.array(np.bincount(pairs[0], minlength=n_groups).astype(np.int64)), None
    sorted_col = col if rows is None else col.take(pa.array(rows)) if rows.size else col.slice(0, 0)
    typ = sorted_col.type
    if pa.types.is_string(typ) or pa.types.is_binary(typ):
        if name in ("FIRST", "LAST", "LAST_ROW", "COUNT"):
            valid = sorted_col.is_valid().to_numpy(zero_copy_only=False)
            dummy = np.zeros(len(sorted_col))
            if name == "COUNT":
                return pa.array(K.agg_count(dummy, valid, g)), None
            fn = {"FIRST": K.agg_first, "LAST": K.agg_last, "LAST_ROW": K.agg_last_row}[name]
            _, ok, sel = fn(dummy, valid, g)
            taken = sorted_col.take(pa.array(sel)) if len(sorted_col) else pa.nulls(n_groups, typ)
            return pc.if_else(pa.array(ok), taken, pa.scalar(None, typ)), sel
        raise TsdbError(f"{name}() needs a numeric column, not {expr_name(arg)} ({typ})")
    if pa.types.is_null(typ):
        sorted_col = sorted_col.cast(pa.float64())
        typ = pa.float64()
    x, valid_or_none = to_numpy_valid(sorted_col)
    if valid_or_none is None and not empty_all and x.size:
        if name == "COUNT":
            return pa.array(K.agg_count(x, None, g)), None
        if name in ("SUM", "AVG"):
            v, ok = (K.agg_sum if name == "SUM" else K.agg_avg)(x, None, g)
            return pa.array(v), None
        if name in ("MIN", "MAX") and not need_rows and x.dtype.kind in "iuf":
            v = K.agg_extreme_fast(x, g, name == "MAX")
            return pa.array(v, type=typ), None
    valid = np.ones(x.size, dtype=bool) if valid_or_none is None else valid_or_none
    if empty_all:
        x = np.zeros(0, dtype=x.dtype)
    if n_groups and x.size == 0:
        # Aggregates over no rows: COUNT 0, everything else NULL.
        if name == "COUNT":
            return pa.array(np.zeros(n_groups, np.int64)), None
        return pa.nulls(n_groups, typ if name in SELECTORS else pa.float64()), None
    if name == "COUNT":
        return pa.array(K.agg_count(x, valid, g)), None
    numeric_only = name not in ("FIRST", "LAST", "LAST_ROW", "MIN", "MAX")
    if numeric_only and not (
        pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)
    ):
        raise TsdbError(f"{name}() needs a numeric column, not {expr_name(arg)} ({typ})")
    if name in ("FIRST", "LAST", "LAST_ROW", "MIN", "MAX"):
        fn = {
            "FIRST": K.agg_first,
            "LAST": K.agg_last,
            "LAST_ROW": K.agg_last_row,
            "MIN": K.agg_min,
            "MAX": K.agg_max,
        }[name]
        _, ok, sel = fn(x, valid, g)
        taken = sorted_col.take(pa.array(sel))
        return pc.if_else(pa.array(ok), taken, pa.scalar(None, typ)), sel
    if name == "SUM":
        v, ok = K.agg_sum(x, valid, g)
        return pa.array(v, mask=~ok), None
    simple = {
        "AVG": K.agg_avg,
        "SPREAD": K.agg_spread,
        "STDDEV": K.agg_stddev,
        "STDDEV_POP": K.agg_stddev,
        "TWA": K.agg_twa,
    }
    if name in simple:
        v, ok = simple[name](x, valid, g)
        return pa.array(np.asarray(v, dtype=np.float64), mask=~ok), None
    if name in ("PERCENTILE", "APERCENTILE", "MEDIAN"):
        if name == "MEDIAN":
            p = 50.0
        else:
            if len(f.args) < 2:
                raise TsdbError(f"{name}(column, p) needs the percentile p (0-100)")
            pv = evaluate(f.args[1], Frame({}, 1), ctx)
            if not isinstance(pv, pa.Scalar) or not isinstance(pv.as_py(), int | float):
                raise TsdbError(f"{name}'s percentile must be a number")
            p = float(pv.as_py())
        v, ok = K.agg_percentile(x, valid, g, p)
        return pa.array(v, mask=~ok), None
    raise TsdbError(f"unknown aggregate function {name}()")


def _fill_grid(result: Frame, wins: Windows, lo, hi, keys: list[A.Expr]):
    """Expand the groups to every window of [lo, hi] (the query's time range, else the
    data's), for each partition."""
    ws = result.get("__ws")
    part = result.get("__part")
    if lo is None or hi is None or hi < lo:
        return result, np.ones(result.length, dtype=bool)
    grid = wins.grid(lo, hi)
    if grid.size > 10_000_000:
        raise TsdbError("FILL would produce more than 10 million windows; narrow the time range")
    parts = np.unique(part) if part.size else np.zeros(1 if not keys else 0, dtype=np.int64)
    if parts.size == 0:
        return result, np.ones(result.length, dtype=bool)
    pos_in_part = np.searchsorted(parts, part)
    w = (ws - grid[0]) // wins.sliding
    inside = (w >= 0) & (w < grid.size)
    target = pos_in_part * grid.size + w
    total = parts.size * grid.size
    src_index = np.full(total, -1, dtype=np.int64)
    src_index[target[inside]] = np.flatnonzero(inside)
    present = src_index >= 0
    # Key values of a partition: from any of its present groups.
    part_rep = np.zeros(parts.size, dtype=np.int64)
    part_rep[pos_in_part[::-1]] = np.arange(part.size)[::-1]
    fallback = np.repeat(part_rep, grid.size)
    take = np.where(present, src_index, fallback)
    cols: dict[str, Any] = {}
    for name in result.names():
        if name in ("__ws", "__part"):
            continue
        col = result.get(name)
        if name.startswith("__key") or name.startswith("__ref_"):
            cols[name] = col.take(pa.array(take)) if len(col) else pa.nulls(total)
        else:
            taken = col.take(pa.array(take)) if len(col) else pa.nulls(total, col.type)
            cols[name] = pc.if_else(pa.array(present), taken, pa.scalar(None, taken.type))
    cols["__ws"] = np.tile(grid, parts.size)
    cols["__part"] = np.repeat(parts, grid.size)
    return Frame(cols, total), present


def _apply_fill(
    outputs: dict[str, pa.Array],
    fillable: list[str],
    present: np.ndarray,
    result: Frame,
    fill: A.Fill,
    ctx: Context,
) -> None:
    missing = ~present
    part = result.get("__part")
    if fill.mode == "NULL":
        for name in fillable:
            outputs[name] = pc.if_else(
                pa.array(present), outputs[name], pa.scalar(None, outputs[name].type)
            )
        return
    if fill.mode == "VALUE":
        values = [evaluate(v, Frame({}, 1), ctx) for v in fill.values]
        if len(values) not in (1, len(fillable)):
            raise TsdbError(
                f"FILL(VALUE, ...) needs one value, or {len(fillable)}: one per aggregate column"
            )
        for i, name in enumerate(fillable):
            v = values[0] if len(values) == 1 else values[i]
            col = outputs[name]
            try:
                scalar = (
                    pa.scalar(v.as_py()).cast(col.type) if not pa.types.is_null(col.type) else v
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise TsdbError(f"FILL value {v.as_py()!r} does not fit column {name!r}") from exc
            outputs[name] = pc.if_else(pa.array(missing), scalar, col)
        return
    n = present.size
    idx = np.arange(n)
    new_part = np.concatenate([[True], part[1:] != part[:-1]]) if n else np.zeros(0, bool)
    part_start = np.maximum.accumulate(np.where(new_part, idx, 0)) if n else idx
    new_end = np.concatenate([part[1:] != part[:-1], [True]]) if n else np.zeros(0, bool)
    part_end = np.minimum.accumulate(np.where(new_end, idx, n)[::-1])[::-1] if n else idx
    ws = result.get("__ws").astype(np.float64)
    for name in fillable:
        col = outputs[name]
        # PREV/NEXT/LINEAR use the nearest windows of the same partition with a non-NULL value.
        known = present & col.is_valid().to_numpy(zero_copy_only=False)
        prev = np.maximum.accumulate(np.where(known, idx, -1)) if n else idx
        nxt = np.minimum.accumulate(np.where(known, idx, n)[::-1])[::-1] if n else idx
        has_prev = (prev >= part_start) & (prev >= 0)
        has_next = (nxt <= part_end) & (nxt < n)
        if fill.mode == "PREV":
            take, ok = np.where(has_prev, prev, 0), has_prev
        elif fill.mode == "NEXT":
            take, ok = np.where(has_next, nxt, 0), has_next
        else:  # LINEAR
            if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
                outputs[name] = pc.if_else(pa.array(present), col, pa.scalar(None, col.type))
                continue
            vals, _ = to_numpy_valid(col)
            vals = vals.astype(np.float64)
            ok = has_prev & has_next
            p, q_ = np.where(ok, prev, 0), np.where(ok, nxt, 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                span = ws[q_] - ws[p]
                lin = vals[p] + (vals[q_] - vals[p]) * np.where(span > 0, (ws - ws[p]) / span, 0)
            filled = pa.array(lin, mask=~ok)
            if pa.types.is_integer(col.type):
                filled = pc.cast(pc.trunc(filled), col.type, safe=False)
            else:
                filled = filled.cast(col.type)
            outputs[name] = pc.if_else(pa.array(missing), filled, col)
            continue
        taken = col.take(pa.array(take))
        filled = pc.if_else(pa.array(ok), taken, pa.scalar(None, col.type))
        outputs[name] = pc.if_else(pa.array(missing), filled, col)


# ----------------------------------------------------------------------------- rows
def _select_top(q: A.Select, items, frame: Frame, src: Source, ctx: Context):
    funcs = [x for e, _ in items for x in walk(e) if isinstance(x, A.Func) and x.name in MULTI_ROW]
    if len({f for f in funcs}) != 1:
        raise TsdbError("a query can have only one TOP or BOTTOM")
    f = funcs[0]
    if len(f.args) != 2:
        raise TsdbError(f"{f.name}(column, k) needs a column and a count k")
    kv = evaluate(f.args[1], Frame({}, 1), ctx)
    k = kv.as_py() if isinstance(kv, pa.Scalar) else None
    if not isinstance(k, int) or not 1 <= k <= 100:
        raise TsdbError(f"{f.name}'s count must be an integer between 1 and 100")
    col = to_array(evaluate(f.args[0], frame, ctx), frame.length)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise TsdbError(f"{f.name}() needs a numeric column")
    x, valid = to_numpy_valid(col)
    if valid is None:
        valid = np.ones(x.size, dtype=bool)
    keys = _partition_codes(q.partition_by + q.group_by, frame, src, ctx)
    gid = keys[0]
    ts = frame.get("__ts")
    live = np.flatnonzero(valid)
    xv = x[live].astype(np.float64)
    order = np.lexsort((ts[live], -xv if f.name == "TOP" else xv, gid[live]))
    ranked = live[order]
    g = gid[ranked]
    first = np.concatenate([[True], g[1:] != g[:-1]]) if g.size else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(g.size), 0)) if g.size else g
    chosen = ranked[(np.arange(g.size) - start) < k]
    chosen = chosen[np.lexsort((ts[chosen], gid[chosen]))]
    out = frame.take(chosen)
    out.columns["__sel"] = col.take(pa.array(chosen))
    sub = {f: A.ColumnRef("__sel")}
    return _rewrite_items(items, sub), out, (gid[chosen], keys[1])


def _diff(q: A.Select, items, frame: Frame, src: Source, ctx: Context):
    funcs = [x for e, _ in items for x in walk(e) if isinstance(x, A.Func) and x.name == "DIFF"]
    keys = _partition_codes(q.partition_by + q.group_by, frame, src, ctx)
    gid = keys[0]
    ts = frame.get("__ts")
    if src.is_stable and not q.partition_by and len(src.tables) > 1:
        raise TsdbError("DIFF over a super table needs PARTITION BY tbname (one series each)")
    order = _group_order(gid, ts)
    if order is None:
        order = np.arange(gid.size)
    g = gid[order]
    keep_mask = np.concatenate([[False], g[1:] == g[:-1]]) if g.size else np.zeros(0, bool)
    sub: dict[A.Expr, A.Expr] = {}
    diffs = {}
    ignore_negative = np.zeros(order.size, dtype=bool)
    for i, f in enumerate(dict.fromkeys(funcs)):
        if not f.args:
            raise TsdbError("DIFF(column) needs a column")
        col = to_array(evaluate(f.args[0], frame, ctx), frame.length).take(pa.array(order))
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise TsdbError("DIFF() needs a numeric column")
        x, valid = to_numpy_valid(col)
        valid = np.ones(x.size, bool) if valid is None else valid
        wide = x.astype(np.float64 if x.dtype.kind == "f" else np.int64)
        d = np.zeros_like(wide)
        d[1:] = wide[1:] - wide[:-1]
        ok = np.zeros(x.size, dtype=bool)
        ok[1:] = valid[1:] & valid[:-1]
        if len(f.args) > 1:
            flag = evaluate(f.args[1], Frame({}, 1), ctx).as_py()
            if flag not in (0, 1):
                raise TsdbError("DIFF's second argument (ignore_negative) must be 0 or 1")
            if flag == 1:
                ignore_negative |= ok & (d < 0)
        diffs[f"__diff{i}"] = pa.array(d, mask=~ok)
        sub[f] = A.ColumnRef(f"__diff{i}")
    keep = keep_mask & ~ignore_negative
    out = frame.take(order[keep])
    for name, arr in diffs.items():
        out.columns[name] = arr.filter(pa.array(keep))
    return _rewrite_items(items, sub), out, (g[keep], keys[1])


def _rewrite_items(items, sub: dict[A.Expr, A.Expr]):
    return [(replace(e, lambda x: sub.get(x)), alias or expr_name(e)) for e, alias in items]


def _output_names(items) -> list[str]:
    names, seen = [], {}
    for e, alias in items:
        name = alias or expr_name(e)
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        names.append(name)
    return names


def _finish_rows(q: A.Select, items, frame: Frame, keys, ctx: Context) -> pa.Table:
    """Projection of rows (plain, after TOP/BOTTOM or DIFF), then order and limits."""
    names = _output_names(items)
    outputs = {
        name: to_array(evaluate(e, frame, ctx), frame.length)
        for (e, _), name in zip(items, names, strict=True)
    }
    part = None
    if keys is not None:
        gid = keys[0]
        if q.partition_by or q.group_by:
            order = np.argsort(gid, kind="stable")
            if not (np.diff(gid) >= 0).all():
                outputs = {k: v.take(pa.array(order)) for k, v in outputs.items()}
                frame = frame.take(order)
                gid = gid[order]
            part = gid
    if q.distinct:
        table = pa.table(outputs)
        table = table.group_by(table.column_names, use_threads=False).aggregate([])
        outputs = {n: table.column(n).combine_chunks() for n in table.column_names}
        frame = Frame({}, table.num_rows)
        part = None
    return _order_limit(q, items, outputs, frame, None, part, ctx, per_group_limit=False)


def _order_limit(
    q: A.Select,
    items,
    outputs: dict[str, pa.Array],
    frame: Frame,
    subst,
    part: np.ndarray | None,
    ctx: Context,
    per_group_limit: bool,
) -> pa.Table:
    names = list(outputs)
    no_slimit = part is None or (q.slimit is None and not q.soffset)
    if no_slimit and not (q.order_by or q.limit is not None or q.offset):
        return pa.table(outputs) if outputs else pa.table({})  # the rows as they are
    n = len(next(iter(outputs.values()))) if outputs else frame.length
    index = np.arange(n)
    if q.order_by:
        sort_cols, sort_keys = [], []
        env = Frame({**frame.columns, **outputs}, n, frame.lazy)
        for i, o in enumerate(q.order_by):
            e = o.expr
            if (
                isinstance(e, A.Literal)
                and isinstance(e.value, int)
                and not isinstance(e.value, bool)
            ):
                if not 1 <= e.value <= len(names):
                    raise TsdbError(f"ORDER BY {e.value}: there are {len(names)} columns")
                col = outputs[names[e.value - 1]]
            elif isinstance(e, A.ColumnRef) and e.name in outputs:
                col = outputs[e.name]
            elif expr_name(e) in outputs:
                col = outputs[expr_name(e)]
            else:
                ex = replace(e, subst) if subst is not None else e
                col = to_array(evaluate(ex, env, ctx), n)
            sort_cols.append(col)
            placement = "at_start" if o.nulls_first else "at_end"
            sort_keys.append((f"k{i}", "descending" if o.desc else "ascending", placement))
        table = pa.table({f"k{i}": c for i, c in enumerate(sort_cols)})
        index = pc.sort_indices(table, sort_keys=sort_keys).to_numpy()
        if part is not None:
            part = part[index]
    if part is not None and (q.slimit is not None or q.soffset):
        uniq = list(dict.fromkeys(part.tolist())) if q.order_by else list(np.unique(part))
        chosen = set(uniq[q.soffset : None if q.slimit is None else q.soffset + q.slimit])
        keep = (
            np.array([p in chosen for p in part], dtype=bool)
            if len(chosen) < 64
            else np.isin(part, np.array(sorted(chosen)))
        )
        index, part = index[keep], part[keep]
    if q.limit is not None or q.offset:
        if per_group_limit and part is not None:
            first = np.concatenate([[True], part[1:] != part[:-1]]) if part.size else part
            start = (
                np.maximum.accumulate(np.where(first, np.arange(part.size), 0))
                if part.size
                else part
            )
            rank = np.arange(part.size) - start
            keep = rank >= q.offset
            if q.limit is not None:
                keep &= rank < q.offset + q.limit
            index = index[keep]
        else:
            end = None if q.limit is None else q.offset + q.limit
            index = index[q.offset : end]
    if index.size != n or (index.size and (np.diff(index) != 1).any()):
        idx = pa.array(index, pa.int64())
        outputs = {k: v.take(idx) for k, v in outputs.items()}
    return pa.table(outputs) if outputs else pa.table({})


def numeric_columns(columns: list[Column]) -> list[Column]:
    return [c for c in columns if is_numeric(c.type)]
