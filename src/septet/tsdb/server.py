"""``septet tsdb serve``: the engine over HTTP, with TDengine's REST API and schemaless writes.

Endpoints (all need HTTP Basic auth of a tsdb user; root/taosdata on a fresh directory):
``GET /health``, ``POST /rest/sql[/<db>]`` (TDengine's REST API), ``POST /influxdb/v1/write``
(InfluxDB line protocol), ``POST /opentsdb/v1/put/telnet/<db>``. One engine serves every
request; statements run under the engine's lock; the WAL makes each acknowledged write durable.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from septet.tsdb import sqlast as A
from septet.tsdb.connection import Connection
from septet.tsdb.engine import Engine
from septet.tsdb.errors import SqlError, TsdbError
from septet.tsdb.executor import Result, Session
from septet.tsdb.parser import parse
from septet.tsdb.users import AuthError, PermissionDenied, User, Users

MAX_BODY_BYTES = 64 * 1024 * 1024
VERSION = "3.0.0.0-septet"
# TDengine's error codes for the classes of error we raise.
CODE_SYNTAX = 0x2600
CODE_ERROR = 0x2603
CODE_AUTH = 0x0357
CODE_DENIED = 0x0358
_READ_STATEMENTS = (A.Select, A.Show, A.Describe, A.UseDatabase)
_TYPE_NAMES = [
    (pa.types.is_boolean, "BOOL", 1),
    (lambda t: t == pa.int8(), "TINYINT", 1),
    (lambda t: t == pa.int16(), "SMALLINT", 2),
    (lambda t: t == pa.int32(), "INT", 4),
    (lambda t: t == pa.int64(), "BIGINT", 8),
    (lambda t: t == pa.uint8(), "TINYINT UNSIGNED", 1),
    (lambda t: t == pa.uint16(), "SMALLINT UNSIGNED", 2),
    (lambda t: t == pa.uint32(), "INT UNSIGNED", 4),
    (lambda t: t == pa.uint64(), "BIGINT UNSIGNED", 8),
    (pa.types.is_float32, "FLOAT", 4),
    (pa.types.is_float64, "DOUBLE", 8),
    (pa.types.is_timestamp, "TIMESTAMP", 8),
]


class Server:
    """The state one server process shares between requests: engine, users, counters."""

    def __init__(self, directory: str | Path, fsync: str = "always", **options: Any):
        self.directory = Path(directory)
        self.engine = Engine(self.directory, fsync=fsync, **options)
        self.connection = Connection(self.engine)
        self.users = Users(self.directory)
        self.started = time.time()
        self.requests = 0

    def close(self) -> None:
        """Flush the memtable to segment files and close the WAL."""
        self.engine.close()

    def authenticate(self, header: str | None, query: Any = None) -> User:
        if not header and query is not None and "u" in query and "p" in query:
            return self.users.authenticate(query["u"], query["p"])  # InfluxDB 1.x's ?u=&p=
        if not header or not header.startswith("Basic "):
            raise AuthError("authentication required: send HTTP Basic credentials")
        try:
            name, sep, password = (
                base64.b64decode(header[6:], validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials") from None
        if not sep:
            raise AuthError("malformed Basic credentials")
        return self.users.authenticate(name, password)

    def run_sql(self, user: User, sql: str, database: str | None) -> Response:
        """Run statements as ``user``; the REST response of the last one."""
        session = Session(self.engine, database)
        result = Result(None, 0)
        for stmt in parse(sql):
            result = self._statement(user, session, stmt)
        return Response(rest_json(result), media_type="application/json")

    def _statement(self, user: User, session: Session, stmt: A.Statement) -> Result:
        users = self.users
        if isinstance(stmt, A.AlterUser) and stmt.name.lower() == user.name:
            users.set_password(user.name, stmt.password)  # anyone may change their own
            return Result(None, 0)
        if isinstance(stmt, A.CreateUser | A.DropUser | A.AlterUser | A.Grant):
            if not user.superuser:
                raise PermissionDenied(f"user {user.name!r} may not manage users")
            if isinstance(stmt, A.CreateUser):
                users.create(stmt.name, stmt.password, stmt.read_only)
            elif isinstance(stmt, A.DropUser):
                users.drop(stmt.name)
            elif isinstance(stmt, A.AlterUser):
                users.set_password(stmt.name, stmt.password)
            else:
                writes = stmt.privilege in ("WRITE", "ALL")
                if writes:
                    users.set_read_only(stmt.user, stmt.revoke)
                elif stmt.revoke:
                    raise TsdbError("REVOKE READ is not supported: DROP USER removes all access")
            return Result(None, 0)
        if isinstance(stmt, A.Show) and stmt.what == "USERS":
            us = sorted(users.users.values(), key=lambda u: u.name)
            return Result(
                pa.table(
                    {
                        "name": [u.name for u in us],
                        "super": pa.array([int(u.superuser) for u in us], pa.int8()),
                        "enable": pa.array([1 for _ in us], pa.int8()),
                        "read_only": pa.array([int(u.read_only) for u in us], pa.int8()),
                    }
                )
            )
        if isinstance(stmt, A.Show) and stmt.what == "CONNECTIONS":
            return Result(
                pa.table(
                    {
                        "requests": pa.array([self.requests], pa.int64()),
                        "uptime_s": pa.array([time.time() - self.started], pa.float64()),
                    }
                )
            )
        if user.read_only and not isinstance(stmt, _READ_STATEMENTS):
            raise PermissionDenied(f"user {user.name!r} is read-only: {type(stmt).__name__} denied")
        with self.engine.lock:
            return session.execute(stmt)

    def write_lines(
        self, user: User, database: str, text: str | bytes, precision: str, fmt: str
    ) -> int:
        from septet.tsdb.line_protocol import parse_opentsdb, write_line_protocol, write_points

        if user.read_only:
            raise PermissionDenied(f"user {user.name!r} is read-only")
        if fmt == "influx":
            return write_line_protocol(self.connection, database, text, precision)
        return write_points(self.connection, database, parse_opentsdb(text), "ms")


def _format_ts(value: Any, unit: str) -> str | None:
    """TDengine's REST timestamps: RFC 3339 in UTC with the database precision's digits."""
    if value is None:
        return None
    digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[unit]
    per_s = 10**digits
    seconds, frac = divmod(int(value), per_s)
    base = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)
    text = base.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{frac:0{digits}d}Z" if digits else text + "Z"


def rest_body(result: Result) -> dict[str, Any]:
    """A Result as TDengine's REST success body."""
    if result.table is None:
        n = max(result.rowcount, 0)
        return {"code": 0, "column_meta": [["affected_rows", "INT", 4]], "data": [[n]], "rows": 1}
    table = result.table
    meta, columns = [], []
    for field, col in zip(table.schema, table.columns, strict=True):
        t = field.type
        name, length = next(((n, w) for test, n, w in _TYPE_NAMES if test(t)), (None, 0))
        if name == "TIMESTAMP":
            values = [_format_ts(v, t.unit) for v in col.cast(pa.int64()).to_pylist()]
        elif name is None:
            values = [None if v is None else str(v) for v in col.to_pylist()]
            name = "VARCHAR"
            length = max((len(v.encode()) for v in values if v is not None), default=0)
        else:
            values = col.to_pylist()
            if name in ("FLOAT", "DOUBLE"):
                values = [None if v != v else v for v in values]  # JSON has no NaN
            if name == "FLOAT":  # the shortest text that reads back as the same float32
                values = [None if v is None else float(str(np.float32(v))) for v in values]
        meta.append([field.name, name, length])
        columns.append(values)
    data = [list(row) for row in zip(*columns, strict=True)] if columns else []
    return {"code": 0, "column_meta": meta, "data": data, "rows": len(data)}


def rest_json(result: Result) -> bytes:
    """rest_body's JSON text; a large table is formatted a column at a time by arrow, not
    value by value (high-cpu-all over REST: tens of thousands of rows)."""
    table = result.table
    if table is None or table.num_rows * table.num_columns < 2048:
        return _dumps(rest_body(result))
    meta, texts = [], []
    for field, col in zip(table.schema, table.columns, strict=True):
        col = col.combine_chunks()
        t = field.type
        if pa.types.is_dictionary(t):
            col, t = col.cast(t.value_type), t.value_type
        name, length = next(((n, w) for test, n, w in _TYPE_NAMES if test(t)), (None, 0))
        if name == "TIMESTAMP":
            text = _timestamps_json(col, t.unit)
        elif name == "BOOL":
            text = pc.if_else(col, "true", "false")
        elif name in ("FLOAT", "DOUBLE"):  # shortest text that reads back as the same value
            finite = pc.is_finite(col)
            text = pc.if_else(finite, pc.cast(col, pa.string()), pa.scalar(None, pa.string()))
        elif name is not None:
            text = pc.cast(col, pa.string())
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            enc = col.cast(pa.string()).dictionary_encode()
            words = enc.dictionary.to_pylist()
            text = pa.array([_dumps(w).decode() for w in words], pa.string()).take(enc.indices)
            name = "VARCHAR"
            length = max((len(w.encode()) for w in words), default=0)
        else:
            return _dumps(rest_body(result))
        meta.append([field.name, name, length])
        texts.append(pc.fill_null(text, "null"))
    # Each row as '[v,...],': the rows' text is then the string array's data buffer as is.
    rows = pc.binary_join_element_wise("[", pc.binary_join_element_wise(*texts, ","), "],", "")
    width = 8 if pa.types.is_large_string(rows.type) else 4
    offsets = np.frombuffer(rows.buffers()[1], f"i{width}", len(rows) + 1, rows.offset * width)
    data = rows.buffers()[2].to_pybytes()[int(offsets[0]) : int(offsets[-1]) - 1]
    head = _dumps({"code": 0, "column_meta": meta})[:-1]
    return b"".join((head, b',"data":[', data, b'],"rows":', str(table.num_rows).encode(), b"}"))


def _timestamps_json(col: pa.Array, unit: str) -> pa.Array:
    """_format_ts's text, quoted, for a whole column: dates per distinct day, times of day
    from a table of the 86,400 seconds, fractions from integer arithmetic."""
    digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[unit]
    per_s = 10**digits
    raw = pc.fill_null(col.cast(pa.int64()), 0).to_numpy()
    seconds, frac = np.divmod(raw, per_s)
    day, second = np.divmod(seconds, 86_400)
    days = pa.array(day).dictionary_encode()
    epoch = dt.date(1970, 1, 1)
    dates = [(epoch + dt.timedelta(days=d)).isoformat() for d in days.dictionary.to_pylist()]
    parts: list[Any] = ['"', pa.array(dates).take(days.indices), "T", _clock().take(second)]
    if digits:
        parts += [".", pc.utf8_slice_codeunits(pc.cast(pa.array(frac + per_s), pa.string()), 1)]
    text = pc.binary_join_element_wise(*parts, 'Z"', "")
    return pc.if_else(col.is_valid(), text, pa.scalar(None, pa.string()))


@functools.cache
def _clock() -> pa.Array:
    """'HH:MM:SS' for every second of a day."""
    h, rest = np.divmod(np.arange(86_400), 3600)
    m, s = np.divmod(rest, 60)
    return pa.array([f"{a:02d}:{b:02d}:{c:02d}" for a, b, c in zip(h, m, s, strict=True)])


def _dumps(value: Any) -> bytes:
    """JSON as starlette's JSONResponse writes it."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def create_app(
    directory: str | Path,
    fsync: str = "always",
    max_body_bytes: int = MAX_BODY_BYTES,
    **options: Any,
) -> Any:
    """The FastAPI application serving the database directory ``directory``."""
    state: dict[str, Server] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["server"] = Server(directory, fsync=fsync, **options)
        try:
            yield
        finally:
            state.pop("server").close()  # graceful shutdown flushes the memtable

    app = FastAPI(title="septet tsdb", version=VERSION, lifespan=lifespan)

    def error(status: int, code: int, desc: str) -> JSONResponse:
        return JSONResponse({"code": code, "desc": desc}, status_code=status)

    async def body_bytes(request: Request, decode: bool = True) -> str | bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise _TooLarge()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise _TooLarge()
            chunks.append(chunk)
        body = b"".join(chunks)
        if not decode and body.isascii():
            return body  # line protocol is parsed as bytes: no copy to str
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise TsdbError("the request body is not UTF-8 text") from None
        return text if decode else body

    async def handle(request: Request, work, decode: bool = True) -> JSONResponse:
        server = state["server"]
        server.requests += 1
        auth = request.headers.get("authorization")

        def authenticated_work(text: str | bytes) -> Any:
            # One thread hop per request (a hop costs more than a cached password check).
            return work(server, server.authenticate(auth, request.query_params), text)

        try:
            text = await body_bytes(request, decode)
            return await run_in_threadpool(authenticated_work, text)
        except AuthError as e:
            return error(401, CODE_AUTH, str(e))
        except PermissionDenied as e:
            return error(403, CODE_DENIED, str(e))
        except _TooLarge:
            return error(413, CODE_ERROR, f"request body larger than {max_body_bytes} bytes")
        except SqlError as e:
            return error(200, CODE_SYNTAX, str(e))
        except TsdbError as e:
            return error(200, CODE_ERROR, str(e))

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        def work(server: Server, user: User, text: str) -> JSONResponse:
            return JSONResponse({"code": 0, "status": "ok", "version": VERSION})

        return await handle(request, work)

    @app.post("/rest/sql")
    async def rest_sql(request: Request) -> JSONResponse:
        return await handle(request, lambda s, u, text: s.run_sql(u, text, None))

    @app.post("/rest/sql/{db}")
    async def rest_sql_db(db: str, request: Request) -> JSONResponse:
        return await handle(request, lambda s, u, text: s.run_sql(u, text, db))

    @app.post("/influxdb/v1/write")
    async def influx_write(request: Request) -> Any:
        db = request.query_params.get("db")
        precision = request.query_params.get("precision", "ns")
        if not db:
            return error(400, CODE_ERROR, "the query parameter db=<database> is required")

        def work(server: Server, user: User, text: str) -> Any:
            server.write_lines(user, db, text, precision, "influx")
            return Response(status_code=204)  # InfluxDB's answer to a successful write

        response = await handle(request, work, decode=False)
        if response.status_code == 200:  # an error body: InfluxDB clients expect 400
            response.status_code = 400
        return response

    @app.post("/opentsdb/v1/put/telnet/{db}")
    async def opentsdb_put(db: str, request: Request) -> JSONResponse:
        def work(server: Server, user: User, text: str) -> JSONResponse:
            n = server.write_lines(user, db, text, "ms", "opentsdb")
            return JSONResponse({"code": 0, "rows": n})

        return await handle(request, work)

    @app.post("/tmq/{topic}/poll")
    async def tmq_poll(topic: str, request: Request) -> JSONResponse:
        """Rows of ``topic`` from ``offset`` (default: the group's committed offset)."""
        qp = request.query_params
        group = qp.get("group", "default")
        try:
            offset = int(qp["offset"]) if "offset" in qp else None
            max_rows = min(int(qp.get("max_rows", "10000")), 1_000_000)
        except ValueError:
            return error(400, CODE_ERROR, "offset and max_rows must be integers")

        def work(server: Server, user: User, text: str) -> JSONResponse:
            from septet.tsdb.topics import topics_of

            t = topics_of(server.engine).get(topic)
            with server.engine.lock:
                start = t.offsets.get(group, 0) if offset is None else offset
                rows, end = t.read(start, max_rows)
            body = rest_body(Result(rows if rows is not None else pa.table({}), 0))
            body.update(offset=start, next_offset=end)
            return JSONResponse(body)

        return await handle(request, work)

    @app.post("/tmq/{topic}/commit")
    async def tmq_commit(topic: str, request: Request) -> JSONResponse:
        qp = request.query_params
        group = qp.get("group", "default")
        if not qp.get("offset", "").isdigit():
            return error(400, CODE_ERROR, "commit needs offset=<the next offset to read>")

        def work(server: Server, user: User, text: str) -> JSONResponse:
            from septet.tsdb.topics import topics_of

            t = topics_of(server.engine).get(topic)
            with server.engine.lock:
                t.commit(group, int(qp["offset"]))
            return JSONResponse({"code": 0, "group": group, "offset": int(qp["offset"])})

        return await handle(request, work)

    return app


class _TooLarge(Exception):
    pass


def serve(directory: str | Path, host: str = "127.0.0.1", port: int = 6041, **kw: Any) -> None:
    """Serve until SIGINT/SIGTERM, then flush and exit."""
    import uvicorn

    uvicorn.run(create_app(directory, **kw), host=host, port=port, log_level="warning")
