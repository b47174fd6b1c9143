"""Continuous queries: ``CREATE STREAM s INTO target AS SELECT _wstart, ... INTERVAL(...)``.

A stream is created with its whole history computed into ``target`` (an ordinary table whose
columns are the query's), then after every acknowledged write to its source the windows that
the new rows touch are computed again over the whole window and written over the old rows of
``target`` (a row with a timestamp that a table holds replaces it). So ``SELECT * FROM target``
equals the stream's query run by hand. Streams are kept in DIR/streams.json.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc

from septet.common.atomic import atomic_write_json
from septet.tsdb import sqlast as A
from septet.tsdb.engine import Engine
from septet.tsdb.errors import TsdbError
from septet.tsdb.expressions import Context

STREAMS_FILE = "streams.json"
_ARROW_TO_TYPE = {
    pa.bool_(): "BOOL", pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INT",
    pa.int64(): "BIGINT", pa.uint8(): "TINYINT UNSIGNED", pa.uint16(): "SMALLINT UNSIGNED",
    pa.uint32(): "INT UNSIGNED", pa.uint64(): "BIGINT UNSIGNED", pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
}  # fmt: skip


@dataclass
class StreamDef:
    name: str
    db: str  # the database of the source and the target
    source: str  # the source table or super table
    target: str
    sql: str


def column_name(name: str) -> str:
    """A result column's name as a table column: ``avg(v)`` -> ``avg_v``."""
    out = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower()
    return out if out[:1].isalpha() else "c_" + out


class Streams:
    """The streams of one engine; refreshes them from the engine's insert listener."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.path = None if engine.path is None else engine.path / STREAMS_FILE
        self.streams: dict[str, StreamDef] = {}
        if self.path is not None and self.path.exists():
            for d in json.loads(self.path.read_text())["streams"]:
                self.streams[d["name"]] = StreamDef(**d)
        self._busy = False
        engine.listeners.append(self._on_insert)

    def _save(self) -> None:
        if self.path is not None:
            atomic_write_json(self.path, {"streams": [asdict(s) for s in self.streams.values()]})

    def create(self, stmt: A.CreateStream, current_db: str | None) -> None:
        q = stmt.query
        if not isinstance(q.source, A.TableName) or q.interval is None:
            raise TsdbError("a stream's query must read one table and have an INTERVAL(...)")
        if q.partition_by or q.group_by or q.fill is not None or q.slimit is not None:
            raise TsdbError("streams with PARTITION BY, GROUP BY or FILL are not supported yet")
        if not q.items or q.items[0][0] != A.ColumnRef("_wstart"):
            raise TsdbError("a stream's query must select _wstart first (the target's timestamp)")
        db_name = q.source.db or stmt.target.db or current_db
        if db_name is None:
            raise TsdbError("no database selected: write db.table or USE a database first")
        with self.engine.lock:
            if stmt.name in self.streams:
                if stmt.if_not_exists:
                    return
                raise TsdbError(f"stream {stmt.name!r} already exists")
            db = self.engine.database(db_name)
            if q.source.name not in db.stables and q.source.name not in db.tables:
                raise TsdbError(f"table {q.source.name!r} does not exist in {db_name!r}")
            result = self._run(db_name, stmt.sql, None)
            columns = [("ts", "TIMESTAMP")]
            for f in list(result.schema)[1:]:
                string = pa.types.is_string(f.type)
                type_ = "VARCHAR(256)" if string else _ARROW_TO_TYPE.get(f.type)
                if type_ is None:
                    raise TsdbError(f"stream column {f.name!r} has a type ({f.type}) "
                                    "a table cannot hold")  # fmt: skip
                columns.append((column_name(f.name), type_))
            self.engine.create_table(db_name, stmt.target.name, columns, False)
            s = StreamDef(stmt.name, db_name, q.source.name, stmt.target.name.lower(), stmt.sql)
            self._write(s, result)
            self.streams[s.name] = s
            self._save()

    def drop(self, name: str, if_exists: bool) -> None:
        with self.engine.lock:
            if name not in self.streams:
                if if_exists:
                    return
                raise TsdbError(f"stream {name!r} does not exist (SHOW STREAMS lists them)")
            del self.streams[name]
            self._save()

    def table(self) -> pa.Table:
        ss = sorted(self.streams.values(), key=lambda s: s.name)
        return pa.table({
            "stream_name": [s.name for s in ss], "db_name": [s.db for s in ss],
            "source": [s.source for s in ss], "target_table": [s.target for s in ss],
            "sql": [s.sql for s in ss]})  # fmt: skip

    def _run(self, db_name: str, sql: str, time_range: tuple[int, int] | None) -> pa.Table:
        from septet.tsdb.parser import parse_one
        from septet.tsdb.query import run_select

        q = parse_one(sql)
        assert isinstance(q, A.Select)
        if time_range is not None:
            ts = self._ts_column(db_name, q.source.name)
            bounds = A.Binary(
                "AND",
                A.Binary(">=", A.ColumnRef(ts), A.Literal(time_range[0])),
                A.Binary("<", A.ColumnRef(ts), A.Literal(time_range[1])),
            )
            q.where = bounds if q.where is None else A.Binary("AND", q.where, bounds)
        db = self.engine.database(db_name)
        return run_select(self.engine, db_name, q, Context(precision=db.options.precision))

    def _ts_column(self, db_name: str, name: str) -> str:
        db = self.engine.database(db_name)
        if name in db.stables:
            return db.stables[name].columns[0].name
        return db.columns_of(db.tables[name])[0].name

    def _write(self, s: StreamDef, result: pa.Table) -> None:
        if result.num_rows == 0:
            return
        db = self.engine.database(s.db)
        target = db.tables[s.target]
        cols = db.columns_of(target)
        ts = result.column(0).cast(pa.timestamp(db.options.precision)).cast(pa.int64())
        arrays = [ts] + [result.column(i) for i in range(1, result.num_columns)]
        from septet.tsdb.values import conform_arrow

        table = pa.table(arrays, names=[c.name for c in cols])
        self.engine.insert([(target.uid, conform_arrow(cols, table, db.options.precision))])

    def _on_insert(self, batches: list[tuple[int, pa.Table]]) -> None:
        if self._busy or not self.streams:
            return
        self._busy = True  # the stream's own writes into its target do not trigger it again
        try:
            for s in list(self.streams.values()):
                self._refresh(s, batches)
        finally:
            self._busy = False

    def _refresh(self, s: StreamDef, batches: list[tuple[int, pa.Table]]) -> None:
        from septet.tsdb.parser import parse_one
        from septet.tsdb.query import _windows

        eng = self.engine
        lo = hi = None
        for uid, rows in batches:
            table = eng.by_uid.get(uid)
            if table is None or eng.uid_db.get(uid) != s.db:
                continue
            if s.source not in (table.name, table.stable):
                continue
            ts = rows.column(0)
            mn, mx = pc.min(ts).as_py(), pc.max(ts).as_py()
            mn = mn if isinstance(mn, int) else int(pa.scalar(mn).cast(pa.int64()).as_py())
            mx = mx if isinstance(mx, int) else int(pa.scalar(mx).cast(pa.int64()).as_py())
            lo = mn if lo is None else min(lo, mn)
            hi = mx if hi is None else max(hi, mx)
        if lo is None:
            return
        q = parse_one(s.sql)
        db = eng.database(s.db)
        w = _windows(q.interval, Context(precision=db.options.precision))
        # Every window that holds a new row: from the first window containing lo to the end of
        # the last containing hi, computed over the whole of each window.
        first_start = (lo - w.offset - w.interval + w.sliding) // w.sliding * w.sliding + w.offset
        last_start = (hi - w.offset) // w.sliding * w.sliding + w.offset
        t0, t1 = first_start, last_start + w.interval
        result = self._run(s.db, s.sql, (t0, t1))
        if result.num_rows:
            starts = result.column(0).cast(pa.timestamp(db.options.precision)).cast(pa.int64())
            keep = pc.and_(pc.greater_equal(starts, t0),
                           pc.less_equal(pc.add(starts, w.interval), t1))  # fmt: skip
            self._write(s, result.filter(keep))


def streams_of(engine: Engine) -> Streams:
    """The engine's stream manager, created (and its streams loaded) on first use."""
    return engine.extension("streams", Streams)
