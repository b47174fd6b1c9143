"""Subscriptions: ``CREATE TOPIC t AS SELECT cols FROM [db.]table [WHERE ...]`` and consumers.

Every acknowledged write to a topic's source appends the matching rows (the query's columns,
plus ``tbname``) to the topic's log, DIR/topics/<topic>.log: numbered records of Arrow IPC, each
row numbered by its offset. A consumer (a group name) reads from its committed offset and
commits the offset it has processed (DIR/topics/<topic>.offsets.json), TDengine TMQ style; a
restarted consumer resumes at its last commit. Only rows written after CREATE TOPIC are in it.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from septet.common.atomic import atomic_write_json
from septet.tsdb import sqlast as A
from septet.tsdb.engine import Engine
from septet.tsdb.errors import TsdbError
from septet.tsdb.expressions import Context, Frame, evaluate
from septet.tsdb.segment import TS, col_key

_HEADER = struct.Struct("<QI")  # first offset, body length


class Topic:
    """One topic's definition, in-memory log index and consumer offsets."""

    def __init__(self, directory: Path | None, name: str, db: str, source: str, sql: str):
        self.name, self.db, self.source, self.sql = name, db, source, sql
        self.records: list[tuple[int, pa.Table]] = []  # (first offset, rows)
        self.end = 0
        self.offsets: dict[str, int] = {}
        self.log = None if directory is None else directory / f"{name}.log"
        self.offsets_path = None if directory is None else directory / f"{name}.offsets.json"
        if self.log is not None and self.log.exists():
            self._load()
        if self.offsets_path is not None and self.offsets_path.exists():
            self.offsets = json.loads(self.offsets_path.read_text())

    def _load(self) -> None:
        data = self.log.read_bytes()
        pos = 0
        while pos + _HEADER.size <= len(data):
            first, n = _HEADER.unpack_from(data, pos)
            body = data[pos + _HEADER.size : pos + _HEADER.size + n]
            if len(body) < n:
                break  # a torn last record: its write was never acknowledged
            rows = pa.ipc.open_stream(body).read_all()
            self.records.append((first, rows))
            self.end = first + rows.num_rows
            pos += _HEADER.size + n

    def append(self, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        if self.log is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, rows.schema) as w:
                w.write_table(rows)
            body = sink.getvalue().to_pybytes()
            with open(self.log, "ab") as f:
                f.write(_HEADER.pack(self.end, len(body)) + body)
                f.flush()
                os.fsync(f.fileno())
        self.records.append((self.end, rows))
        self.end += rows.num_rows

    def read(self, offset: int, max_rows: int) -> tuple[pa.Table | None, int]:
        """Rows from ``offset`` on (at most max_rows) and the offset after them."""
        parts = []
        got = 0
        for first, rows in self.records:
            if first + rows.num_rows <= offset:
                continue
            start = max(offset - first, 0)
            piece = rows.slice(start, max_rows - got)
            parts.append(piece)
            got += piece.num_rows
            if got >= max_rows:
                break
        if not parts:
            return None, offset
        return pa.concat_tables(parts, promote_options="default"), offset + got

    def commit(self, group: str, offset: int) -> None:
        if not 0 <= offset <= self.end:
            raise TsdbError(f"offset {offset} is outside topic {self.name!r} (0..{self.end})")
        self.offsets[group] = offset
        if self.offsets_path is not None:
            atomic_write_json(self.offsets_path, self.offsets)


class Topics:
    """The topics of one engine; fed by the engine's insert listener."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dir = None if engine.path is None else engine.path / "topics"
        self.topics: dict[str, Topic] = {}
        self.lock = threading.RLock()
        if self.dir is not None and (self.dir / "topics.json").exists():
            for d in json.loads((self.dir / "topics.json").read_text())["topics"]:
                self.topics[d["name"]] = Topic(self.dir, **d)
        engine.listeners.append(self._on_insert)

    def _save(self) -> None:
        if self.dir is not None:
            self.dir.mkdir(exist_ok=True)
            atomic_write_json(self.dir / "topics.json", {"topics": [
                {"name": t.name, "db": t.db, "source": t.source, "sql": t.sql}
                for t in self.topics.values()]})  # fmt: skip

    def create(self, stmt: A.CreateTopic, current_db: str | None) -> None:
        q = stmt.query
        if (not isinstance(q.source, A.TableName) or q.interval or q.group_by or q.partition_by
                or q.order_by or q.limit is not None or q.distinct):  # fmt: skip
            raise TsdbError("a topic's query is SELECT columns FROM one table [WHERE ...]")
        db_name = q.source.db or current_db
        if db_name is None:
            raise TsdbError("no database selected: write db.table or USE a database first")
        with self.engine.lock:
            db = self.engine.database(db_name)
            if q.source.name not in db.stables and q.source.name not in db.tables:
                raise TsdbError(f"table {q.source.name!r} does not exist in {db_name!r}")
            if stmt.name in self.topics:
                if stmt.if_not_exists:
                    return
                raise TsdbError(f"topic {stmt.name!r} already exists")
            if self.dir is not None:
                self.dir.mkdir(exist_ok=True)
            t = Topic(self.dir, stmt.name, db_name, q.source.name, stmt.sql)
            self.topics[stmt.name] = t
            self._save()

    def drop(self, name: str, if_exists: bool) -> None:
        with self.engine.lock:
            t = self.topics.pop(name, None)
            if t is None:
                if if_exists:
                    return
                raise TsdbError(f"topic {name!r} does not exist (SHOW TOPICS lists them)")
            for p in (t.log, t.offsets_path):
                if p is not None and p.exists():
                    p.unlink()
            self._save()

    def get(self, name: str) -> Topic:
        t = self.topics.get(name)
        if t is None:
            raise TsdbError(f"topic {name!r} does not exist (SHOW TOPICS lists them)")
        return t

    def table(self) -> pa.Table:
        ts = sorted(self.topics.values(), key=lambda t: t.name)
        return pa.table({"topic_name": [t.name for t in ts], "db_name": [t.db for t in ts],
                         "rows": pa.array([t.end for t in ts], pa.int64()),
                         "sql": [t.sql for t in ts]})  # fmt: skip

    def _on_insert(self, batches: list[tuple[int, pa.Table]]) -> None:
        if not self.topics:
            return
        eng = self.engine
        for t in list(self.topics.values()):
            parts = []
            for uid, rows in batches:
                table = eng.by_uid.get(uid)
                if table is None or eng.uid_db.get(uid) != t.db:
                    continue
                if t.source not in (table.name, table.stable):
                    continue
                parts.append(self._rows(t, table, rows))
            parts = [p for p in parts if p.num_rows]
            if parts:
                t.append(pa.concat_tables(parts, promote_options="default"))

    def _rows(self, t: Topic, table: Any, rows: pa.Table) -> pa.Table:
        from septet.tsdb.parser import parse_one

        db = self.engine.database(t.db)
        q = parse_one(t.sql)
        cols = db.columns_of(table)
        n = rows.num_rows
        named: dict[str, Any] = {}
        for c in cols:
            key = TS if c is cols[0] else col_key(c.id)
            arr = rows.column(key) if key in rows.column_names else pa.nulls(n)
            if c is cols[0]:
                arr = arr.cast(pa.timestamp(db.options.precision))
            named[c.name] = arr
        tags = db.stables[table.stable].tags if table.stable else []
        for tag in tags:
            named[tag.name] = pa.array([table.tags.get(tag.name)] * n)
        named["tbname"] = pa.array([table.name] * n, pa.string())
        frame = Frame(named, n)
        ctx = Context(precision=db.options.precision)
        if q.where is not None:
            mask = evaluate(q.where, frame, ctx)
            if isinstance(mask, pa.Scalar):
                mask = pa.array([mask.as_py()] * n, pa.bool_())
            keep = [i for i, m in enumerate(mask.to_pylist()) if m]
            frame = frame.take(np.array(keep, dtype=np.int64))
            n = len(keep)
        out: dict[str, Any] = {"tbname": frame.get("tbname")}
        for expr, alias in q.items:
            if isinstance(expr, A.Star):
                for c in cols:
                    out[c.name] = frame.get(c.name)
                continue
            v = evaluate(expr, frame, ctx)
            if isinstance(v, pa.Scalar):
                v = pa.array([v.as_py()] * n, v.type)
            name = alias or (expr.name if isinstance(expr, A.ColumnRef) else f"col{len(out)}")
            out[name] = v
        return pa.table(out)


def topics_of(engine: Engine) -> Topics:
    """The engine's topics, created (and loaded from the directory) on first use."""
    return engine.extension("topics", Topics)


class Consumer:
    """A consumer in group ``group`` of ``topic``: ``poll()`` new rows, ``commit()`` them."""

    def __init__(self, connection: Any, topic: str, group: str = "default"):
        self.topics = topics_of(connection.engine)
        self.topic = self.topics.get(topic)
        self.group = group
        self.position = self.topic.offsets.get(group, 0)

    @property
    def committed(self) -> int:
        return self.topic.offsets.get(self.group, 0)

    def poll(self, max_rows: int = 10_000) -> pa.Table | None:
        """The next rows after the current position (None when there are none yet)."""
        with self.topics.engine.lock:
            rows, self.position = self.topic.read(self.position, max_rows)
        return rows

    def seek(self, offset: int) -> None:
        self.position = offset

    def commit(self, offset: int | None = None) -> None:
        """Record ``offset`` (default: everything polled so far) as processed by the group."""
        with self.topics.engine.lock:
            self.topic.commit(self.group, self.position if offset is None else offset)
