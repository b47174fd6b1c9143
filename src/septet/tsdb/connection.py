"""The embedded API: ``septet.tsdb.connect(path)``, a PEP 249 (DB-API 2.0) connection.

    >>> import septet.tsdb as tsdb
    >>> con = tsdb.connect(":memory:")
    >>> cur = con.cursor()
    >>> cur.execute("CREATE DATABASE power")

A directory is a database server's whole state (any number of databases); ``":memory:"``
keeps everything in memory. Parameters use the ``qmark`` style (``?``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from septet.tsdb import sqlast as A
from septet.tsdb.engine import Engine
from septet.tsdb.errors import TsdbError
from septet.tsdb.executor import Result, Session
from septet.tsdb.expressions import walk
from septet.tsdb.parser import parse

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections
paramstyle = "qmark"

Error = TsdbError


def connect(
    path: str | os.PathLike[str] = ":memory:", database: str | None = None, **options: Any
) -> Connection:
    """Open (creating if needed) the database directory ``path``, or memory for ``":memory:"``.

    ``options`` are EngineOptions: fsync ("always", "periodic", "off"), fsync_period_ms,
    memtable_bytes, max_segments, block_cache_bytes, query_threads.
    """
    target = None if str(path) == ":memory:" else path
    return Connection(Engine(target, **options), database)


class Connection:
    """One open database directory; cursors run SQL against it."""

    def __init__(self, engine: Engine, database: str | None = None):
        self.engine = engine
        self.session = Session(engine, None)
        _load_extensions(engine)
        if database is not None:
            self.execute(f"USE {database}")

    def cursor(self) -> Cursor:
        return Cursor(self)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        """Shortcut: a new cursor that has run ``sql``."""
        cur = self.cursor()
        cur.execute(sql, parameters)
        return cur

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]]) -> Cursor:
        cur = self.cursor()
        cur.executemany(sql, seq_of_parameters)
        return cur

    def insert_arrow(
        self, table: str, data: pa.Table | pa.RecordBatch, database: str | None = None
    ) -> int:
        """Bulk insert an Arrow table: columns by name; into a super table, a ``tbname``
        column picks each row's sub-table (created from the tag columns if missing)."""
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        return self.session.insert_arrow(table, data, database)

    def insert_df(self, table: str, df: Any, database: str | None = None) -> int:
        """Bulk insert a pandas DataFrame (see :meth:`insert_arrow`)."""
        return self.insert_arrow(table, pa.Table.from_pandas(df, preserve_index=False), database)

    def flush(self) -> None:
        """Write the memtable to segment files now."""
        self.engine.flush()

    def commit(self) -> None:
        """Writes are durable when acknowledged (see the WAL's fsync policy); nothing to do."""
        self.engine._check_open()

    def rollback(self) -> None:
        raise TsdbError("tsdb has no transactions: each statement is durable once acknowledged")

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def database(self) -> str | None:
        return self.session.database


class Cursor:
    """A PEP 249 cursor; results are also available as Arrow (``fetch_arrow``) and pandas."""

    arraysize = 1

    def __init__(self, connection: Connection):
        self.connection = connection
        self._result: pa.Table | None = None
        self._pos = 0
        self._rows: list[tuple] | None = None
        self.rowcount = -1

    @property
    def description(self) -> list[tuple] | None:
        if self._result is None:
            return None
        return [(f.name, str(f.type), None, None, None, None, True) for f in self._result.schema]

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        """Run one or more statements (';'-separated); the last one's rows can be fetched."""
        self.connection.engine._check_open()
        statements = parse(sql)
        needed = _param_count(sql)
        if needed != len(parameters):
            raise TsdbError(
                f"the statement has {needed} '?' parameters but {len(parameters)} values were given"
            )
        result = Result(None)
        for stmt in statements:
            result = self.connection.session.execute(stmt, tuple(parameters))
        self._set(result)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]]) -> Cursor:
        """Run ``sql`` for each parameter tuple; INSERTs go to the WAL as one batch."""
        statements = parse(sql)
        params = [tuple(p) for p in seq_of_parameters]
        if (
            len(statements) == 1
            and isinstance(statements[0], A.Insert)
            and params
            and not any(
                isinstance(x, A.Param)
                for t in statements[0].targets
                for v in t.tag_values
                for x in walk(v)
            )
        ):
            stmt = statements[0]
            merged = A.Insert(
                [
                    A.InsertTarget(t.table, t.using, t.tag_names, [], t.columns, [])
                    for t in stmt.targets
                ]
            )
            # Bind each parameter set into literal rows of one INSERT (tags are constants).
            for p in params:
                bound = _bind(stmt, p)
                for target, out in zip(bound.targets, merged.targets, strict=True):
                    out.rows += target.rows
                    out.tag_values = target.tag_values
            self._set(self.connection.session.execute(merged))
            return self
        total = 0
        for p in params:
            self.execute(sql, p)
            total += max(self.rowcount, 0)
        self.rowcount = total
        return self

    def _set(self, result: Result) -> None:
        self._result = result.table
        self._pos = 0
        self._rows = None
        self.rowcount = result.rowcount if result.table is None else result.table.num_rows

    def _all_rows(self) -> list[tuple]:
        if self._result is None:
            raise TsdbError("no result to fetch: the last statement returned no rows")
        if self._rows is None:
            cols = [c.to_pylist() for c in self._result.columns]
            self._rows = list(zip(*cols, strict=True)) if cols else []
        return self._rows

    def fetchone(self) -> tuple | None:
        rows = self._all_rows()
        if self._pos >= len(rows):
            return None
        self._pos += 1
        return rows[self._pos - 1]

    def fetchmany(self, size: int | None = None) -> list[tuple]:
        rows = self._all_rows()
        size = self.arraysize if size is None else size
        out = rows[self._pos : self._pos + size]
        self._pos += len(out)
        return out

    def fetchall(self) -> list[tuple]:
        rows = self._all_rows()
        out = rows[self._pos :]
        self._pos = len(rows)
        return out

    def fetch_arrow(self) -> pa.Table:
        """The whole result as an Arrow table (no per-row Python)."""
        if self._result is None:
            raise TsdbError("no result to fetch: the last statement returned no rows")
        return self._result

    def fetch_df(self) -> Any:
        """The whole result as a pandas DataFrame."""
        return self.fetch_arrow().to_pandas()

    def __iter__(self):
        while (row := self.fetchone()) is not None:
            yield row

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def close(self) -> None:
        self._result = None


def _load_extensions(engine: Engine) -> None:
    """Streams and topics saved in the directory start listening to writes again."""
    if engine.path is None:
        return
    if (engine.path / "streams.json").exists():
        from septet.tsdb.streams import streams_of

        streams_of(engine)
    if (engine.path / "topics").is_dir():
        from septet.tsdb.topics import topics_of

        topics_of(engine)


def _param_count(sql: str) -> int:
    if "?" not in sql:  # no '?' character at all: no parameter (saves a second tokenizing)
        return 0
    from septet.tsdb.tokenizer import tokenize

    return sum(1 for t in tokenize(sql) if t.kind == "OP" and t.text == "?")


def _bind(stmt: A.Insert, params: tuple) -> A.Insert:
    from septet.tsdb.expressions import replace

    def sub(e: A.Expr) -> A.Expr | None:
        if isinstance(e, A.Param):
            if e.index >= len(params):
                raise TsdbError(f"parameter {e.index + 1} is missing")
            return A.Literal(params[e.index])
        return None

    return A.Insert(
        [
            A.InsertTarget(
                t.table,
                t.using,
                t.tag_names,
                [replace(v, sub) for v in t.tag_values],
                t.columns,
                [[replace(v, sub) for v in row] for row in t.rows],
            )
            for t in stmt.targets
        ]
    )
