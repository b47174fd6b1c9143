"""Executing parsed statements against the engine: DDL, INSERT, DELETE, SHOW, DESCRIBE, SELECT.

A ``Session`` is one connection's state (the current database); every statement returns a
``Result``: an Arrow table for statements that produce rows, else the affected row count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from septet.tsdb import sqlast as A
from septet.tsdb.catalog import DatabaseOptions, type_length
from septet.tsdb.engine import Engine, TableRuns
from septet.tsdb.errors import TsdbError
from septet.tsdb.expressions import Context, Frame, evaluate, walk
from septet.tsdb.query import (
    _classify,
    _conjuncts,
    _filter_tables,
    _resolve,
    _time_range,
    run_select,
)
from septet.tsdb.values import coerce_scalar, conform_arrow, rows_to_table


@dataclass
class Result:
    table: pa.Table | None
    rowcount: int = -1


class Session:
    """A connection's view of the engine: which database is current."""

    def __init__(self, engine: Engine, database: str | None = None):
        self.engine = engine
        self.database = database

    def db_name(self, explicit: str | None) -> str:
        name = explicit or self.database
        if name is None:
            raise TsdbError("no database selected: run USE <database> or write db.table")
        return name

    def execute(self, stmt: A.Statement, params: tuple[Any, ...] = ()) -> Result:
        """Run one statement with its ``?`` parameters."""
        ctx = Context(params=tuple(params))
        handler = getattr(self, f"_{type(stmt).__name__}", None)
        if handler is None:
            raise TsdbError(f"{type(stmt).__name__} is not supported")
        return handler(stmt, ctx)

    # ------------------------------------------------------------------ DDL
    def _CreateDatabase(self, s: A.CreateDatabase, ctx: Context) -> Result:
        opts = DatabaseOptions()
        for key, value in s.options.items():
            if key == "KEEP":
                opts.keep_days = _days(value, key)
            elif key == "DURATION":
                opts.duration_days = _days(value, key)
            elif key == "PRECISION":
                opts.precision = str(value).lower()
            elif key == "CACHEMODEL":
                opts.cachemodel = str(value).lower()
            elif key in ("COMP", "COMPRESSION"):
                opts.compression = {0: "none", 1: "lz4", 2: "zstd"}.get(value, str(value).lower())  # type: ignore[call-overload]
            elif key == "MAXROWS":
                opts.block_rows = int(value)  # type: ignore[call-overload]
        self.engine.create_database(s.name, opts, s.if_not_exists)
        return Result(None, 0)

    def _DropDatabase(self, s: A.DropDatabase, ctx: Context) -> Result:
        self.engine.drop_database(s.name, s.if_exists)
        if self.database == s.name:
            self.database = None
        return Result(None, 0)

    def _UseDatabase(self, s: A.UseDatabase, ctx: Context) -> Result:
        self.engine.database(s.name)
        self.database = s.name
        return Result(None, 0)

    def _CreateStable(self, s: A.CreateStable, ctx: Context) -> Result:
        self.engine.create_stable(
            self.db_name(s.table.db),
            s.table.name,
            [(c.name, c.type) for c in s.columns],
            [(c.name, c.type) for c in s.tags],
            s.if_not_exists,
        )
        return Result(None, 0)

    def _CreateTable(self, s: A.CreateTable, ctx: Context) -> Result:
        self.engine.create_table(
            self.db_name(s.table.db),
            s.table.name,
            [(c.name, c.type) for c in s.columns],
            s.if_not_exists,
        )
        return Result(None, 0)

    def _CreateChildTables(self, s: A.CreateChildTables, ctx: Context) -> Result:
        by_db: dict[str, list] = {}
        for child in s.children:
            db = self.db_name(child.table.db or child.stable.db)
            by_db.setdefault(db, []).append(
                (child.table.name, child.stable.name, self._tags(db, child, ctx))
            )
        for db, specs in by_db.items():
            self.engine.create_child_tables(db, specs, s.if_not_exists)
        return Result(None, 0)

    def _tags(self, db_name: str, child: A.ChildSpec | A.InsertTarget, ctx: Context) -> dict:
        db = self.engine.database(db_name)
        stable = child.stable.name if isinstance(child, A.ChildSpec) else child.using.name  # type: ignore[union-attr]
        st = db.stables.get(stable)
        if st is None:
            raise TsdbError(f"super table {stable!r} does not exist in database {db_name!r}")
        names = child.tag_names or [t.name for t in st.tags]
        if len(names) != len(child.tag_values):
            raise TsdbError(
                f"{len(child.tag_values)} tag values given for {len(names)} tags "
                f"({', '.join(names)})"
            )
        ctx.precision = db.options.precision
        out = {}
        for name, expr in zip(names, child.tag_values, strict=True):
            tag = st.tag(name)
            if tag is None:
                raise TsdbError(f"super table {stable!r} has no tag {name!r}")
            out[name] = coerce_scalar(_constant(expr, ctx), tag.type, name, db.options.precision)
        return out

    def _DropTables(self, s: A.DropTables, ctx: Context) -> Result:
        for t in s.tables:
            if s.stable:
                self.engine.drop_stable(self.db_name(t.db), t.name, s.if_exists)
            else:
                db = self.engine.database(self.db_name(t.db))
                if t.name in db.stables:
                    self.engine.drop_stable(db.name, t.name, s.if_exists)
                else:
                    self.engine.drop_table(db.name, t.name, s.if_exists)
        return Result(None, 0)

    def _AlterTable(self, s: A.AlterTable, ctx: Context) -> Result:
        db = self.db_name(s.table.db)
        if s.action == "set_tag":
            precision = self.engine.database(db).options.precision
            ctx.precision = precision
            self.engine.set_tag(db, s.table.name, s.column, _constant(s.value, ctx))  # type: ignore[arg-type]
        else:
            self.engine.alter_columns(db, s.table.name, s.action, s.column, s.type, s.is_tag)
        return Result(None, 0)

    def _CreateStream(self, s: A.CreateStream, ctx: Context) -> Result:
        from septet.tsdb.streams import streams_of

        streams_of(self.engine).create(s, self.database)
        return Result(None, 0)

    def _CreateTopic(self, s: A.CreateTopic, ctx: Context) -> Result:
        from septet.tsdb.topics import topics_of

        topics_of(self.engine).create(s, self.database)
        return Result(None, 0)

    def _DropObject(self, s: A.DropObject, ctx: Context) -> Result:
        if s.kind == "STREAM":
            from septet.tsdb.streams import streams_of

            streams_of(self.engine).drop(s.name, s.if_exists)
        else:
            from septet.tsdb.topics import topics_of

            topics_of(self.engine).drop(s.name, s.if_exists)
        return Result(None, 0)

    def _Flush(self, s: A.Flush, ctx: Context) -> Result:
        self.engine.database(self.db_name(s.db))
        self.engine.flush()
        return Result(None, 0)

    # ------------------------------------------------------------------ SHOW / DESCRIBE
    def _Show(self, s: A.Show, ctx: Context) -> Result:
        import fnmatch

        eng = self.engine
        if s.what == "DATABASES":
            dbs = sorted(eng.dbs.values(), key=lambda d: d.name)
            return Result(
                pa.table(
                    {
                        "name": [d.name for d in dbs],
                        "ntables": pa.array([len(d.tables) for d in dbs], pa.int64()),
                        "keep": [f"{d.options.keep_days:g}d" for d in dbs],
                        "duration": [f"{d.options.duration_days:g}d" for d in dbs],
                        "precision": [d.options.precision for d in dbs],
                        "cachemodel": [d.options.cachemodel for d in dbs],
                        "compression": [d.options.compression for d in dbs],
                    }
                )
            )
        if s.what == "STREAMS":
            from septet.tsdb.streams import streams_of

            return Result(streams_of(eng).table())
        if s.what == "TOPICS":
            from septet.tsdb.topics import topics_of

            return Result(topics_of(eng).table())
        if s.what in ("USERS", "CONNECTIONS"):
            raise TsdbError(
                f"SHOW {s.what} needs the server (septet tsdb serve): users and "
                "connections belong to it, not to the embedded engine"
            )
        db = eng.database(self.db_name(s.db))

        def like(name: str) -> bool:
            if s.like is None:
                return True
            return fnmatch.fnmatchcase(name, s.like.replace("%", "*").replace("_", "?"))

        if s.what == "STABLES":
            sts = [st for st in sorted(db.stables.values(), key=lambda x: x.name) if like(st.name)]
            return Result(
                pa.table(
                    {
                        "stable_name": [st.name for st in sts],
                        "columns": pa.array([len(st.columns) for st in sts], pa.int64()),
                        "tags": pa.array([len(st.tags) for st in sts], pa.int64()),
                        "tables": pa.array([len(db.children(st.name)) for st in sts], pa.int64()),
                    }
                )
            )
        tables = [t for t in sorted(db.tables.values(), key=lambda x: x.name) if like(t.name)]
        return Result(
            pa.table(
                {
                    "table_name": [t.name for t in tables],
                    "stable_name": pa.array([t.stable for t in tables], pa.string()),
                    "uid": pa.array([t.uid for t in tables], pa.int64()),
                }
            )
        )

    def _Describe(self, s: A.Describe, ctx: Context) -> Result:
        db = self.engine.database(self.db_name(s.table.db))
        name = s.table.name
        if name in db.stables:
            st = db.stables[name]
            cols, tags = st.columns, st.tags
        elif name in db.tables:
            t = db.tables[name]
            cols = db.columns_of(t)
            tags = db.stables[t.stable].tags if t.stable else []
        else:
            raise TsdbError(f"table {name!r} does not exist in database {db.name!r}")
        fields = cols + tags
        sizes = {
            "BOOL": 1,
            "TINYINT": 1,
            "SMALLINT": 2,
            "INT": 4,
            "BIGINT": 8,
            "FLOAT": 4,
            "DOUBLE": 8,
            "TIMESTAMP": 8,
        }
        return Result(
            pa.table(
                {
                    "field": [c.name for c in fields],
                    "type": [c.type.split("(")[0] for c in fields],
                    "length": pa.array(
                        [type_length(c.type) or sizes.get(c.type.split(" ")[0], 8) for c in fields],
                        pa.int64(),
                    ),
                    "note": ["" for _ in cols] + ["TAG" for _ in tags],
                }
            )
        )

    # ------------------------------------------------------------------ writes
    def _Insert(self, s: A.Insert, ctx: Context) -> Result:
        batches = []
        for target in s.targets:
            db_name = self.db_name(target.table.db)
            db = self.engine.database(db_name)
            ctx.precision = db.options.precision
            table = db.tables.get(target.table.name)
            if table is None and target.using is not None:
                tags = self._tags(db_name, target, ctx)
                table = self.engine.create_child_tables(
                    db_name, [(target.table.name, target.using.name, tags)], True
                )[0]
            if table is None:
                if target.table.name in db.stables:
                    raise TsdbError(
                        f"{target.table.name!r} is a super table: insert into a "
                        "sub-table, or use INSERT INTO t USING st TAGS (...)"
                    )
                raise TsdbError(f"table {target.table.name!r} does not exist in {db_name!r}")
            columns = db.columns_of(table)
            rows = [[_constant(v, ctx) for v in row] for row in target.rows]
            batches.append(
                (table.uid, rows_to_table(columns, target.columns, rows, db.options.precision))
            )
        return Result(None, self.engine.insert(batches))

    def insert_arrow(self, table: str, data: pa.Table, database: str | None = None) -> int:
        """Bulk insert: into a table, or into a super table with a ``tbname`` column (and tag
        columns, which create missing sub-tables)."""
        db = self.engine.database(self.db_name(database))
        name = table.lower()
        if name in db.stables:
            return self._insert_stable(db.name, name, data)
        t = db.tables.get(name)
        if t is None:
            raise TsdbError(f"table {table!r} does not exist in database {db.name!r}")
        rows = conform_arrow(db.columns_of(t), data, db.options.precision)
        return self.engine.insert([(t.uid, rows)])

    def _insert_stable(self, db_name: str, stable: str, data: pa.Table) -> int:
        return self.engine.insert(runs=[self.stable_runs(db_name, stable, data)])

    def stable_runs(self, db_name: str, stable: str, data: pa.Table) -> TableRuns:
        """Rows for a super table as the engine's runs of sub-table rows (creating missing
        sub-tables), not yet written: callers may write several in one WAL record."""
        db = self.engine.database(db_name)
        st = db.stables[stable]
        lower = {n.lower(): n for n in data.column_names}
        if "tbname" not in lower:
            raise TsdbError(
                f"rows for super table {stable!r} need a 'tbname' column naming "
                "each row's sub-table"
            )
        tag_names = [t.name for t in st.tags if t.name in lower]
        names = data.column(lower["tbname"]).combine_chunks()
        if names.null_count:
            row = int(np.flatnonzero(names.is_null().to_numpy(zero_copy_only=False))[0])
            raise TsdbError(f"'tbname' is NULL in row {row}: every row needs its sub-table's name")
        enc = names.dictionary_encode()
        codes = enc.indices.to_numpy(zero_copy_only=False)
        _, firsts = np.unique(codes, return_index=True)  # each name's first row
        existing = db.tables
        dictionary = enc.dictionary.to_pylist()
        tables: list = []  # per name (code)
        specs, new_at = [], []  # sub-tables to create, and where they go in ``tables``
        for code, row in enumerate(firsts.tolist()):
            tname = dictionary[code]
            known = existing.get(tname.lower()) if isinstance(tname, str) else None
            if known is not None and known.stable == stable:
                tables.append(known)  # exists: neither its tags nor the catalog are touched
                continue
            tags = {t: data.column(lower[t])[row].as_py() for t in tag_names}
            specs.append((tname, stable, tags))
            new_at.append(len(tables))
            tables.append(None)
        if specs:
            made = self.engine.create_child_tables(db_name, specs, True)
            for i, t in zip(new_at, made, strict=True):
                tables[i] = t
        for t in tables:
            if t.stable != stable:
                raise TsdbError(f"table {t.name!r} is not a sub-table of {stable!r}")
        # Rows grouped by table, in arrival order within each: names that differ in case
        # are one table, and its later rows must stay later (the newest write wins).
        row_uid = np.fromiter((t.uid for t in tables), np.int64, len(tables))[codes]
        order = np.argsort(row_uid, kind="stable")
        sorted_uid = row_uid[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_uid)) + 1]).astype(np.int64)
        value_cols = [lower[c.name] for c in st.columns if c.name in lower]
        body = conform_arrow(st.columns, data.select(value_cols), db.options.precision)
        body = body.take(pa.array(order))
        ends = np.concatenate([starts[1:], [len(order)]])
        # Each table's time range and order, for all tables at once.
        ts = body.column(0).to_numpy()
        lo = np.minimum.reduceat(ts, starts)
        hi = np.maximum.reduceat(ts, starts)
        step_back = np.zeros(ts.size, dtype=bool)
        step_back[1:] = ts[1:] <= ts[:-1]
        step_back[starts] = False
        unordered = np.logical_or.reduceat(step_back, starts)
        return TableRuns(body, sorted_uid[starts], ends - starts, lo, hi, ~unordered)

    def _Delete(self, s: A.Delete, ctx: Context) -> Result:
        q = A.Select([(A.Star(), None)], s.table, s.where)
        src = _resolve(self.engine, self.database, q, ctx)
        assert src.db is not None
        ctx.precision = src.db.options.precision
        tag_conds, time_conds, rest = _classify(_conjuncts(s.where), src)
        if rest:
            raise TsdbError("DELETE ... WHERE takes only conditions on the timestamp and tags")
        t0, t1 = _time_range(time_conds, src, ctx)
        tables = _filter_tables(src, tag_conds, ctx)
        lo = -(2**62) if t0 is None else t0
        hi = 2**62 if t1 is None else t1
        return Result(None, self.engine.delete(src.db.name, [t.uid for t in tables], lo, hi))

    def _Select(self, s: A.Select, ctx: Context) -> Result:
        table = run_select(self.engine, self.database, s, ctx)
        return Result(table, table.num_rows)


def _constant(e: A.Expr, ctx: Context) -> Any:
    """The value of a constant expression (a literal, now + 1s, a parameter)."""
    if any(isinstance(x, A.ColumnRef | A.Star) for x in walk(e)):
        raise TsdbError("values must be constants, not column references")
    v = evaluate(e, Frame({}, 1), ctx)
    if not isinstance(v, pa.Scalar):
        raise TsdbError("values must be constants")
    if pa.types.is_timestamp(v.type):
        return v.cast(pa.int64()).as_py()
    return v.as_py()


def _days(value: Any, key: str) -> float:
    if isinstance(value, A.Duration):
        per_day = {"d": 1.0, "h": 1 / 24, "m": 1 / 1440}.get(value.unit)
        if per_day is None:
            raise TsdbError(f"{key} takes days, hours or minutes, e.g. {key} 10d")
        return value.count * per_day
    if isinstance(value, int | float):
        return float(value)
    raise TsdbError(f"{key} must be a number of days, not {value!r}")
