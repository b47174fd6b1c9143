"""``septet tsdb serve``: the engine over HTTP, with TDengine's REST API and schemaless writes.

Endpoints (all need HTTP Basic auth of a tsdb user; root/taosdata on a fresh directory):
``GET /health``, ``POST /rest/sql[/<db>]`` (TDengine's REST API), ``POST /influxdb/v1/write``
(InfluxDB line protocol), ``POST /opentsdb/v1/put/telnet/<db>``. One engine serves every
request; statements run under the engine's lock; the WAL makes each acknowledged write durable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pyarrow as pa

from septet.tsdb import sqlast as A
from septet.tsdb.connection import Connection
from septet.tsdb.engine import Engine
from septet.tsdb.errors import SqlError, TsdbError
from septet.tsdb.executor import Result, Session
from septet.tsdb.parallel import cores
from septet.tsdb.parse_pool import ParsePool
from septet.tsdb.prepared import Plans
from septet.tsdb.rest_format import (
    ARROW_STREAM,
    _dumps,
    columns_table,
    media_type,
    rest_arrow,
    rest_body,
    rest_json,
    rest_json_columns,
)
from septet.tsdb.statement_cache import StatementCache
from septet.tsdb.users import AuthError, PermissionDenied, User, Users

_log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024 * 1024
VERSION = "3.0.0.0-septet"
# TDengine's error codes for the classes of error we raise.
CODE_SYNTAX = 0x2600
CODE_ERROR = 0x2603
CODE_AUTH = 0x0357
CODE_DENIED = 0x0358
INLINE_MS = 5.0  # SELECT shapes whose last run took less run on the event loop (Server.quick)
_READ_STATEMENTS = (A.Select, A.Show, A.Describe, A.UseDatabase)


class Server:
    """The state one server process shares between requests: engine, users, counters."""

    def __init__(
        self,
        directory: str | Path,
        fsync: str = "always",
        parse_processes: int | None = None,
        **options: Any,
    ):
        self.directory = Path(directory)
        # A server flushes in the background (septet.tsdb.flusher): writes are not held up
        # for the seconds a large memtable takes to encode.
        options.setdefault("background_flush", True)
        options.setdefault("populate_maps", True)  # long-lived: worth reading segments at once
        self.engine = Engine(self.directory, fsync=fsync, **options)
        # Parser processes, one per core but the one this process works on (parse_pool.py).
        wanted = cores() - 1 if parse_processes is None else parse_processes
        self.parse_pool = ParsePool(wanted, start=True)
        self.connection = Connection(self.engine)
        self.users = Users(self.directory)
        self.started = time.time()
        self.requests = 0
        self._verified_headers: dict[str, User] = {}
        # Writes take turns (their parsing does not): two inserts at once only share the GIL,
        # handing it back and forth in their per-table Python loops. 1,000 hosts, two client
        # workers, alternating runs on a loaded machine: 154k-184k rows per server CPU s with
        # this lock around parse and write, 146k-160k with none. Queries do not wait for it.
        self._write_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._writing = 0  # line-protocol requests being parsed or written
        self.statements = StatementCache()  # SELECTs that differ only in literals: parsed once
        self.plans = Plans(self.statements)  # and some of them planned once (prepared.py)
        self._last_ms: dict[str, float] = {}  # a SELECT shape (template key) -> its last run

    def close(self) -> None:
        """Flush the memtable to segment files and close the WAL."""
        self.parse_pool.close()
        self.engine.close()

    def authenticate(self, header: str | None, query: Any = None) -> User:
        """The user of a request's Basic credentials (or InfluxDB's ?u=&p=); AuthError if none."""
        if not header and query is not None and "u" in query and "p" in query:
            return self.users.authenticate(query["u"], query["p"])  # InfluxDB 1.x's ?u=&p=
        # A header seen before maps to its user while that user's password hash is unchanged
        # (ALTER USER makes a new User, DROP USER removes it): no decoding or hashing at all.
        user = self._verified_headers.get(header) if header else None
        if user is not None and self.users.users.get(user.name) is user:
            return user
        user = self._authenticate_basic(header)
        if len(self._verified_headers) >= 1024:  # bounded: old entries go
            self._verified_headers.clear()
        self._verified_headers[header] = user
        return user

    def _authenticate_basic(self, header: str | None) -> User:
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

    def run_sql(self, user: User, sql: str, database: str | None, arrow: bool = False) -> bytes:
        """Run statements as ``user``; the REST body of the last one: JSON, or an Arrow IPC
        stream (``arrow``, see rest_format.rest_arrow)."""
        t0 = time.perf_counter()
        planned = self.plans.run(self.engine, sql, database)  # a SELECT any user may run
        if planned is not None:
            columns, shape = planned
            if arrow:
                body = rest_arrow(Result(columns_table(columns), 0))
            else:
                body = rest_json_columns(columns)
        else:
            session = Session(self.engine, database)
            result = Result(None, 0)
            statements, shape = self.statements.parse_with_shape(sql)
            for stmt in statements:
                result = self._statement(user, session, stmt)
            body = rest_arrow(result) if arrow else rest_json(result)
            if shape is not None:
                self.plans.learn(self.engine, shape, database)
        if shape is not None:
            if len(self._last_ms) >= 4096:
                self._last_ms.clear()  # bounded: shapes seen again are timed again
            self._last_ms[shape] = (time.perf_counter() - t0) * 1000
        return body

    def quick(self, auth: str | None, body: bytes) -> bool:
        """Whether a /rest/sql request may run on the event loop instead of a pool thread:
        its credentials were verified before (no scrypt), and it is a SELECT of a shape
        whose last run took under INLINE_MS.

        The hop to a pool thread and back wakes two threads; on this shared 2-core VM, side
        by side with 10 ms idle before each request (as in the benchmark, where every query
        follows other servers' queries), the small TSBS queries cost 0.2-0.5 ms less server
        CPU without it (of 2.1-6.8 ms). A long query on the event loop would hold up every
        other connection, so shapes not seen yet or seen to be slow keep the hop; a shape
        that turns slow holds the loop up once and is then sent to the pool."""
        user = self._verified_headers.get(auth) if auth else None
        if user is None or self.users.users.get(user.name) is not user:
            return False
        if len(body) > 16_384 or not body.isascii():
            return False
        shape = self.statements.shape(body.decode("ascii"))
        return shape is not None and self._last_ms.get(shape, INLINE_MS) < INLINE_MS

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
        from septet.tsdb.line_protocol import (
            parse_line_protocol,
            parse_opentsdb,
            write_parsed,
            write_points,
        )

        if user.read_only:
            raise PermissionDenied(f"user {user.name!r} is read-only")
        # Parsed outside the write lock: parsing touches no database, so one request is parsed
        # while another is written.
        if fmt == "influx":
            with self._count_lock:
                self._writing += 1
                alone = self._writing == 1
            try:
                # Half a batch goes to the parser process only when a core is free for it:
                # not while the flush process works, nor while another write request is
                # here (its parsing or writing takes the other core; measured at 100 hosts,
                # two clients: splitting then only added the hand-over's CPU).
                pool = self.parse_pool if alone and not self.engine.flushing else None
                parsed = parse_line_protocol(text, pool)
                with self._write_lock:
                    return write_parsed(self.connection, database, parsed, precision)
            finally:
                with self._count_lock:
                    self._writing -= 1
        points = parse_opentsdb(text)
        with self._write_lock:
            return write_points(self.connection, database, points, "ms")


_Reply = tuple[int, bytes | None]  # HTTP status and JSON body (None: no body)
_Work = Callable[["Server", User, Any], _Reply]


def _reply(status: int, value: Any) -> _Reply:
    return status, _dumps(value)


def _error(status: int, code: int, desc: str) -> _Reply:
    return _reply(status, {"code": code, "desc": desc})


class App:
    """The HTTP endpoints of one database directory: what each request gets, whichever server
    carries it. ``septet tsdb serve`` runs it on its own HTTP server (http_server.py); it is
    also an ASGI application, for uvicorn or any other ASGI server (create_app).

    A plain callable rather than a web framework's app: a small REST query is a few
    milliseconds, and a framework's routing, middleware stack and worker-thread machinery
    cost about as much CPU again as the query (measured: docs/tsdb.md, "Serving it").
    Each request is read, authenticated and answered here; its statements run on a thread
    of a pool so that the event loop keeps serving other clients while one query runs.
    """

    def __init__(
        self,
        directory: str | Path,
        fsync: str = "always",
        max_body_bytes: int = MAX_BODY_BYTES,
        **options: Any,
    ):
        self.directory, self.fsync, self.options = Path(directory), fsync, options
        self.max_body_bytes = max_body_bytes
        self.server: Server | None = None
        self.pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Open the database directory (replaying its WAL) and the request threads."""
        self.server = Server(self.directory, fsync=self.fsync, **self.options)
        self.pool = ThreadPoolExecutor(40, thread_name_prefix="tsdb-request")

    def stop(self) -> None:
        """Let the requests in flight finish, then flush and close the database."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.server is not None:
            self.server.close()  # graceful shutdown flushes the memtable
            self.server = None

    def request(
        self,
        method: str,
        path: str,
        query_string: bytes,
        auth: str | None,
        body: bytes,
        accept: str | None = None,
    ) -> _Reply | Callable[[], _Reply]:
        """The reply to a request when it is ready at once (an error, a quick SELECT), else
        the work that makes it, to run on the pool (it turns every error into a reply).
        ``accept``: the Accept header (an Arrow stream asked for there is ``format=arrow``)."""
        route = _route(method, path)
        if isinstance(route[0], int):
            return route  # type: ignore[return-value]
        make_work, decode, error_status = route  # type: ignore[misc]
        server = self.server
        if server is None:
            return _error(503, CODE_ERROR, "the server is starting or shutting down")
        server.requests += 1
        query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        if accept is not None and ARROW_STREAM in accept:
            query["format"] = "arrow"
        work = make_work(_parts(path), query)

        def run() -> _Reply:
            # On a pool thread unless quick (see Server.quick): authentication (scrypt, when a
            # password is first seen) and long statements must not hold up the event loop.
            try:
                return work(server, server.authenticate(auth, query), _text(body, decode))
            except AuthError as e:
                return _error(401, CODE_AUTH, str(e))
            except PermissionDenied as e:
                return _error(403, CODE_DENIED, str(e))
            except _BadRequest as e:
                return _error(400, CODE_ERROR, str(e))
            except SqlError as e:
                return _error(error_status, CODE_SYNTAX, str(e))
            except TsdbError as e:
                return _error(error_status, CODE_ERROR, str(e))
            except Exception as e:  # a bug: the client gets a 500 naming it, the log the trace
                _log.exception("request %s %s failed", method, path)
                return _error(500, CODE_ERROR, f"internal error: {type(e).__name__}: {e}")

        lock = server.engine.lock
        # A quick SELECT runs right here if the engine is free (a write holding it would
        # hold up the event loop too); everything else on a pool thread.
        if make_work is _sql_route and server.quick(auth, body) and lock.acquire(False):
            try:
                return run()
            finally:
                lock.release()
        return run

    # ASGI
    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.start()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict, receive: Callable, send: Callable) -> None:
        body = await self._body(receive)
        if body is None:
            return  # the client went away
        if isinstance(body, _TooLarge):
            status, body = self.too_large()
        else:
            auth = accept = None
            for key, value in scope["headers"]:
                if key == b"authorization":
                    auth = value.decode("latin-1")
                elif key == b"accept":
                    accept = value.decode("latin-1")
            got = self.request(
                scope["method"], scope["path"], scope["query_string"], auth, body, accept
            )
            if callable(got):
                got = await asyncio.get_running_loop().run_in_executor(self.pool, got)
            status, body = got
        headers = []
        if body:
            kind = media_type(body).encode()
            headers = [(b"content-type", kind), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body or b""})

    def too_large(self) -> _Reply:
        return _error(413, CODE_ERROR, f"request body larger than {self.max_body_bytes} bytes")

    async def _body(self, receive: Callable) -> bytes | _TooLarge | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return _TooLarge()  # no need to read the rest: the answer is an error
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def _text(body: bytes, decode: bool) -> str | bytes:
    if not decode and body.isascii():
        return body  # line protocol is parsed as bytes: no copy to str
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise TsdbError("the request body is not UTF-8 text") from None
    return text if decode else body


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _health_route(parts: list[str], query: dict) -> _Work:
    return lambda server, user, text: _reply(200, {"code": 0, "status": "ok", "version": VERSION})


def _sql_route(parts: list[str], query: dict) -> _Work:
    database = parts[2] if len(parts) == 3 else None  # /rest/sql or /rest/sql/<db>
    fmt = query.get("format", "json")

    def work(server: Server, user: User, text: Any) -> _Reply:
        if fmt not in ("json", "arrow"):
            raise _BadRequest(f"format={fmt} is not an answer format; use json or arrow")
        return 200, server.run_sql(user, text, database, fmt == "arrow")

    return work


def _influx_route(parts: list[str], query: dict) -> _Work:
    def work(server: Server, user: User, text: Any) -> _Reply:
        db = query.get("db")
        if not db:
            raise _BadRequest("the query parameter db=<database> is required")
        server.write_lines(user, db, text, query.get("precision", "ns"), "influx")
        return 204, None  # InfluxDB's answer to a successful write

    return work


def _opentsdb_route(parts: list[str], query: dict) -> _Work:
    db = parts[4]

    def work(server: Server, user: User, text: Any) -> _Reply:
        return _reply(200, {"code": 0, "rows": server.write_lines(user, db, text, "ms", "ot")})

    return work


def _tmq_route(parts: list[str], query: dict) -> _Work:
    """/tmq/<topic>/poll: rows from ``offset`` (default: the group's committed offset);
    /tmq/<topic>/commit?offset=n: the group's next offset to read."""
    topic, action = parts[1], parts[2]
    group = query.get("group", "default")

    def work(server: Server, user: User, text: Any) -> _Reply:
        from septet.tsdb.topics import topics_of

        t = topics_of(server.engine).get(topic)
        if action == "commit":
            if not query.get("offset", "").isdigit():
                raise _BadRequest("commit needs offset=<the next offset to read>")
            with server.engine.lock:
                t.commit(group, int(query["offset"]))
            return _reply(200, {"code": 0, "group": group, "offset": int(query["offset"])})
        try:
            offset = int(query["offset"]) if "offset" in query else None
            max_rows = min(int(query.get("max_rows", "10000")), 1_000_000)
        except ValueError:
            raise _BadRequest("offset and max_rows must be integers") from None
        with server.engine.lock:
            start = t.offsets.get(group, 0) if offset is None else offset
            rows, end = t.read(start, max_rows)
        body = rest_body(Result(rows if rows is not None else pa.table({}), 0))
        body.update(offset=start, next_offset=end)
        return _reply(200, body)

    return work


def _route(method: str, path: str) -> tuple[Callable, bool, int] | _Reply:
    """(work maker, decode the body as text, status of an SQL error) for an endpoint, or the
    error reply for an unknown one."""
    parts = _parts(path)
    found: tuple[str, tuple[Callable, bool, int]] | None = None
    if parts == ["health"]:
        found = "GET", (_health_route, True, 200)
    elif parts[:2] == ["rest", "sql"] and len(parts) <= 3:
        found = "POST", (_sql_route, True, 200)
    elif parts == ["influxdb", "v1", "write"]:
        found = "POST", (_influx_route, False, 400)  # InfluxDB clients expect 400 for errors
    elif parts[:4] == ["opentsdb", "v1", "put", "telnet"] and len(parts) == 5:
        found = "POST", (_opentsdb_route, True, 200)
    elif len(parts) == 3 and parts[0] == "tmq" and parts[2] in ("poll", "commit"):
        found = "POST", (_tmq_route, True, 200)
    if found is None:
        return _error(404, CODE_ERROR, f"no endpoint {path} (see docs/tsdb.md, Serving it)")
    if method != found[0] and not (method == "HEAD" and found[0] == "GET"):
        return _error(405, CODE_ERROR, f"{path} takes {found[0]}, not {method}")
    return found[1]


def create_app(
    directory: str | Path,
    fsync: str = "always",
    max_body_bytes: int = MAX_BODY_BYTES,
    **options: Any,
) -> App:
    """The ASGI application serving the database directory ``directory`` (for uvicorn)."""
    return App(directory, fsync=fsync, max_body_bytes=max_body_bytes, **options)


class _TooLarge(Exception):
    pass


class _BadRequest(TsdbError):
    """A request's parameters are missing or malformed (HTTP 400)."""


# How long an idle keep-alive connection stays open. uvicorn's default, 5 s, races with
# clients that pool connections for about as long (httpx: 5 s): a client that reuses a
# connection just as the server's timer closes it gets "server disconnected" without an
# answer. That is what ended a 1,000-host benchmark run during double-groupby-5, where the
# septet connection sat idle ~5 s while the other servers answered. Go's servers (InfluxDB,
# TDengine's taosAdapter) keep idle connections without a limit; this keeps them 10 minutes.
KEEP_ALIVE_S = 600


def uvicorn_config(
    directory: str | Path,
    host: str = "127.0.0.1",
    port: int = 6041,
    keep_alive_s: int = KEEP_ALIVE_S,
    **kw: Any,
):
    """uvicorn settings that serve the App as ``serve`` does, for those who run it on uvicorn."""
    import uvicorn

    # No proxy-header rewriting or access log: the app reads neither, and both cost per request.
    return uvicorn.Config(
        create_app(directory, **kw),
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=False,
        access_log=False,
        timeout_keep_alive=keep_alive_s,
    )


def serve(
    directory: str | Path,
    host: str = "127.0.0.1",
    port: int = 6041,
    keep_alive_s: int = KEEP_ALIVE_S,
    **kw: Any,
) -> None:
    """Serve until SIGINT/SIGTERM, then flush and exit (on http_server.HttpServer)."""
    from septet.tsdb.http_server import HttpServer

    HttpServer(create_app(directory, **kw), host, port, keep_alive_s).run()
