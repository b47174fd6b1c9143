"""The HTTP/1.1 server of ``septet tsdb serve``: an asyncio protocol (on uvloop where it is
installed) around httptools' request parser, answering with server.App.

Why not uvicorn, which runs App as well (server.create_app): uvicorn makes an ASGI scope,
message dicts, a task and two ``send`` calls per request. Measured on loopback with
http.client, a minimal protocol of this kind answering a fixed 10-byte body took 0.12 ms a
round trip against uvicorn's 0.20 ms back to back, 0.39 against 0.59 ms after 10 ms idle (a
benchmark's case, where each server's query follows the others'); side by side on the same App
and data, TSBS's small single-groupby queries took 0.09-0.14 ms less here (of 1.3-2.0 ms on a
loaded machine). Here a quick SELECT (server.Server.quick) is answered inside
``data_received``: parsed, run and written without a task or a thread.

HTTP as clients expect it: keep-alive (HTTP/1.1, or 1.0 with the header), pipelined requests
answered in order, chunked request bodies, ``Expect: 100-continue``, a request body limit (413,
then the connection is closed), malformed requests (400, closed), idle connections closed
after ``keep_alive_s``, back-pressure (a client that does not read its answers is not read
from), and a graceful shutdown on SIGINT/SIGTERM: stop listening, answer the requests already
read, flush the database, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import gc
import logging
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import unquote

import httptools

from septet.tsdb.errors import TsdbError
from septet.tsdb.rest_format import media_type
from septet.tsdb.server import CODE_ERROR, App, _error, _Reply

_log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; more is refused (431)
SHUTDOWN_GRACE_S = 30.0  # how long a shutdown waits for answers in flight to be sent
_HEAD_TOO_LARGE = _error(431, CODE_ERROR, f"request line and headers over {MAX_HEAD_BYTES} bytes")
_REASONS = {
    100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    503: "Service Unavailable",
}  # fmt: skip


class _Request:
    __slots__ = (
        "accept", "auth", "body", "expect", "head", "keep_alive", "length", "method", "reply",
        "size", "url",
    )  # fmt: skip

    def __init__(self) -> None:
        self.url = b""
        self.head = 0  # bytes of request line and headers
        self.auth: str | None = None
        self.accept: str | None = None
        self.length = -1  # Content-Length (-1: none)
        self.expect = False  # Expect: 100-continue
        self.body: list[bytes] = []
        self.size = 0
        self.method = ""
        self.keep_alive = True
        self.reply: _Reply | None = None  # an answer known before the body is read (an error)


class _Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered one at a time in
    the order they came."""

    def __init__(self, http: HttpServer):
        self.http, self.app = http, http.app
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.request: _Request | None = None
        self.waiting: deque[_Request] = deque()  # read, not answered yet
        self.busy = False  # an answer is being made on the pool
        self.closing = False  # close once the answers owed are sent
        self.broken = False  # the stream cannot be parsed further: read nothing more
        self.write_paused = False
        self.last_active = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # An answer is one write, but Nagle's algorithm must never hold its tail back.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.http.connections.add(self)
        self.last_active = self.http.loop.time()
        self._arm_idle(self.http.keep_alive_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connections.discard(self)
        self.closing = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            reply = _error(400, CODE_ERROR, "protocol upgrades are not served")
            self._give_up(self.request or _Request(), reply)
        except httptools.HttpParserError as e:
            if not self.broken:  # else a callback stopped the parser, its answer queued
                reply = _error(400, CODE_ERROR, f"malformed HTTP request: {e}")
                self._give_up(self.request or _Request(), reply)
        if self.waiting and not self.busy:
            self._answer_waiting()

    def pause_writing(self) -> None:
        self.write_paused = True  # the client is not reading its answers: stop reading it
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.busy and not self.broken and not self.closing:
            self.transport.resume_reading()
        if self.waiting and not self.busy:
            self._answer_waiting()

    # httptools' callbacks
    def on_message_begin(self) -> None:
        self.request = _Request()

    def on_url(self, url: bytes) -> None:
        r = self.request
        r.url += url
        r.head += len(url)
        if r.head > MAX_HEAD_BYTES:
            self._stop_reading(r, _HEAD_TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        r = self.request
        r.head += len(name) + len(value)
        if r.head > MAX_HEAD_BYTES:
            self._stop_reading(r, _HEAD_TOO_LARGE)
        name = name.lower()
        if name == b"authorization":
            r.auth = value.decode("latin-1")
        elif name == b"accept":
            r.accept = value.decode("latin-1")
        elif name == b"content-length" and value.strip().isdigit():
            r.length = int(value)
        elif name == b"expect" and value.strip().lower() == b"100-continue":
            r.expect = True

    def on_headers_complete(self) -> None:
        r = self.request
        r.method = self.parser.get_method().decode("ascii", "replace")
        r.keep_alive = self.parser.should_keep_alive()
        if r.length > self.app.max_body_bytes:
            # Refused before it is sent: reading it only to throw it away could take long.
            self._stop_reading(r, self.app.too_large())
        if r.expect and not self.waiting and not self.busy:
            # The client waits for this before it sends the body. Not while an earlier
            # pipelined answer is owed (it would read as that one's): it then sends anyway.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        r = self.request
        r.size += len(chunk)
        if r.size > self.app.max_body_bytes:  # a chunked body that grew too large
            self._stop_reading(r, self.app.too_large())
        r.body.append(chunk)

    def on_message_complete(self) -> None:
        r, self.request = self.request, None
        self.waiting.append(r)
        self.last_active = self.http.loop.time()

    # answering
    def _answer_waiting(self) -> None:
        """Answer the requests read so far, in order; one that needs the pool is answered
        when its work is done, and the rest wait for it."""
        while self.waiting and not self.busy and not self.write_paused:
            r = self.waiting.popleft()
            if r.reply is not None:
                self._send(r, r.reply)
                continue
            try:
                url = httptools.parse_url(r.url)
            except httptools.HttpParserInvalidURLError:
                r.reply = _error(400, CODE_ERROR, f"malformed request target {r.url[:200]!r}")
                self._send(r, r.reply)
                continue
            path = unquote(url.path.decode("latin-1"))
            body = b"".join(r.body) if len(r.body) != 1 else r.body[0]
            got = self.app.request(r.method, path, url.query or b"", r.auth, body, r.accept)
            if not callable(got):
                self._send(r, got)
                continue
            self.busy = True
            self.transport.pause_reading()  # pipelined requests wait in the socket
            task = self.http.loop.create_task(self._answer_on_pool(r, got))
            self.http.in_flight.add(task)
            task.add_done_callback(self.http.in_flight.discard)

    async def _answer_on_pool(self, r: _Request, work: Callable[[], _Reply]) -> None:
        try:
            reply = await self.http.loop.run_in_executor(self.app.pool, work)
        except Exception as e:  # the pool was shut down under it, or a bug
            _log.exception("request %s failed", r.method)
            reply = _error(500, CODE_ERROR, f"internal error: {type(e).__name__}: {e}")
        self.busy = False
        self._send(r, reply)
        if not self.closing:
            if not self.broken and not self.write_paused:
                self.transport.resume_reading()
            self._answer_waiting()

    def _send(self, r: _Request, reply: _Reply) -> None:
        if self.transport.is_closing():
            return  # the client went away
        status, body = reply
        close = self.closing or not r.keep_alive or r.reply is not None
        length = len(body) if body else 0
        kind = media_type(body)
        if r.method == "HEAD":
            body = None  # the head of the answer a GET would get
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\ndate: {_date()}\r\n"]
        if length:
            head.append(f"content-type: {kind}\r\ncontent-length: {length}\r\n")
        elif status != 204:
            head.append("content-length: 0\r\n")
        head.append("connection: close\r\n\r\n" if close else "\r\n")
        head_bytes = "".join(head).encode("latin-1")
        if body and len(body) > 65536:
            self.transport.writelines([head_bytes, body])  # no copy of a large answer
        else:
            self.transport.write(head_bytes + body if body else head_bytes)
        self.last_active = self.http.loop.time()
        if close:
            self.closing = True
            self.waiting.clear()
            self.transport.close()  # after what is buffered is sent

    def _stop_reading(self, r: _Request, reply: _Reply) -> None:
        """From a parser callback: give up on the stream (see _give_up) and stop the parser."""
        self._give_up(r, reply)
        raise httptools.HttpParserCallbackError("the request was refused")

    def _give_up(self, r: _Request, reply: _Reply) -> None:
        """Send ``reply`` after the answers owed, then close: nothing more is read, as where
        the next request starts is unknown."""
        if self.broken:
            return
        r.reply = reply
        r.body = []
        self.broken = True
        self.transport.pause_reading()
        self.waiting.append(r)
        self.request = None

    def _arm_idle(self, delay: float) -> None:
        self.idle_timer = self.http.loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        if self.transport.is_closing():
            return
        idle = self.http.loop.time() - self.last_active
        if self.busy or self.waiting or idle < self.http.keep_alive_s:
            self._arm_idle(max(self.http.keep_alive_s - idle, 1.0))
        else:
            self.transport.close()

    def close_when_idle(self) -> None:
        """Shutdown: close now if no answer is owed, else after the last one is sent."""
        self.closing = True
        if not self.busy and not self.waiting:
            self.transport.close()


_date_cache: tuple[int, str] = (0, "")


def _date() -> str:
    """The Date header's text, made once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class HttpServer:
    """Serve an App on ``host:port``: ``run()`` blocks until SIGINT/SIGTERM or ``stop()``
    (from any thread), then shuts down gracefully."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 6041, keep_alive_s=600):
        self.app, self.host, self.port, self.keep_alive_s = app, host, port, keep_alive_s
        self.connections: set[_Connection] = set()
        self.in_flight: set[asyncio.Task] = set()
        self.started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            import uvloop

            factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
        except ImportError:  # Windows: asyncio's own loop
            factory = None
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self._serve())

    def stop(self) -> None:
        """Begin the graceful shutdown (thread-safe)."""
        if self.loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended: stopped already
                self.loop.call_soon_threadsafe(self._stopping.set)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await self.loop.create_server(
                lambda: _Connection(self), self.host, self.port, backlog=2048
            )
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise TsdbError(
                    f"port {self.port} on {self.host} is in use; stop what listens there or "
                    "choose another with --port"
                ) from None
            raise TsdbError(f"cannot listen on {self.host}:{self.port}: {e.strerror}") from None
        try:
            self.app.start()
        except BaseException:
            server.close()
            raise
        if threading.current_thread() is threading.main_thread():  # the server's process
            # What startup made (modules, the catalog, caches) lives as long as the process:
            # out of the collector's way, a full collection walks only what requests leave
            # (one took ~40 ms in 1,000 queries of five TSBS types, with ~80,000 startup objects).
            gc.collect()
            gc.freeze()
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(sig, self._stopping.set)
            where = f"http://{self.host}:{self.port}"
            print(f"septet tsdb: serving {self.app.directory} on {where}", file=sys.stderr)
        self.started.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()  # no new connections
            for connection in list(self.connections):
                connection.close_when_idle()
            if self.in_flight:
                await asyncio.wait(list(self.in_flight), timeout=SHUTDOWN_GRACE_S)
            deadline = self.loop.time() + SHUTDOWN_GRACE_S
            while self.connections and self.loop.time() < deadline:
                await asyncio.sleep(0.01)  # answers still being sent
            for connection in list(self.connections):
                connection.transport.abort()
            with contextlib.suppress(Exception):
                await server.wait_closed()
            self.app.stop()  # flushes the memtable
            self.started.clear()
