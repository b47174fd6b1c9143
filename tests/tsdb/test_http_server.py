"""The HTTP/1.1 server of `septet tsdb serve` (http_server.py) at the byte level: what real
clients rely on besides the request-answer cycle that the other server tests exercise."""

from __future__ import annotations

import base64
import socket
import threading
import time

import httpx
import pytest

from septet.tsdb.errors import TsdbError
from septet.tsdb.http_server import MAX_HEAD_BYTES, HttpServer
from septet.tsdb.server import create_app

from .server_util import ThreadServer

ROOT = ("root", "taosdata")
AUTH = b"Authorization: Basic " + base64.b64encode(b"root:taosdata") + b"\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ThreadServer(tmp_path_factory.mktemp("http"), fsync="off") as s:
        r = httpx.post(
            f"{s.url}/rest/sql",
            content="CREATE DATABASE h; CREATE TABLE h.t (ts TIMESTAMP, v INT); "
            "INSERT INTO h.t VALUES (1700000000000, 1) (1700000001000, 2)",
            auth=ROOT,
        )
        assert r.json()["code"] == 0
        yield s


def post(path: str, body: bytes, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"POST %s HTTP/%s\r\nHost: x\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
        path.encode(),
        version,
        AUTH,
        extra,
        len(body),
        body,
    )


def read_answers(sock: socket.socket, n: int) -> list[tuple[int, dict, bytes]]:
    """n answers off the socket: (status, headers, body), parsed by Content-Length."""
    data, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(out)} answers: {data!r}"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        if status == 100:
            continue
        length = int(headers.get("content-length", "0"))
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, "closed in the middle of an answer"
            data += chunk
        out.append((status, headers, data[:length]))
        data = data[length:]
    return out


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_pipelined_requests_are_answered_in_order(server):
    """Requests sent back to back on one connection, quick SELECTs, statements run on the
    pool and errors mixed, get their answers in the order they were sent."""
    requests = [
        post("/rest/sql/h", b"SELECT count(*) FROM t"),
        post("/rest/sql/h", b"SHOW TABLES"),  # runs on the pool
        post("/nope", b""),
        post("/rest/sql/h", b"SELECT max(v) FROM t"),
        post("/rest/sql/h", b"SELEC oops"),
    ]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"".join(requests))
        answers = read_answers(sock, len(requests))
    assert [a[0] for a in answers] == [200, 200, 404, 200, 200]
    assert b'"data":[[2]]' in answers[0][2]
    assert b'"t"' in answers[1][2]
    assert b'"data":[[2]]' in answers[3][2]
    assert b'"code":0' not in answers[4][2] and b"desc" in answers[4][2]


def test_chunked_bodies_and_expect_100_continue(server):
    body = b"SELECT count(*) FROM t"
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:7], body[7:])) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /rest/sql/h HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n"
            b"\r\n" + chunked
        )
        [(status, _, answer)] = read_answers(sock, 1)
        assert status == 200 and b'"data":[[2]]' in answer
        # Expect: the server says 100 Continue before the client sends the body.
        sock.sendall(
            b"POST /rest/sql/h HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Expect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        [(status, _, answer)] = read_answers(sock, 1)
        assert status == 200 and b'"data":[[2]]' in answer


def test_connections_close_when_the_client_asks_or_speaks_http_1_0(server):
    for request in (
        post("/rest/sql/h", b"SELECT 1", extra=b"Connection: close\r\n"),
        post("/rest/sql/h", b"SELECT 1", version=b"1.0"),
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(request)
            [(status, headers, _)] = read_answers(sock, 1)
            assert status == 200 and headers["connection"] == "close"
            assert closed_by_server(sock)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(post("/rest/sql/h", b"SELECT 1", b"Connection: keep-alive\r\n", b"1.0"))
        sock.sendall(post("/rest/sql/h", b"SELECT 2", b"Connection: keep-alive\r\n", b"1.0"))
        assert [a[0] for a in read_answers(sock, 2)] == [200, 200]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /rest/sql HTTP/1.1\r\nHost x\r\n\r\n", 400),  # a header without a colon
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_get_an_error_and_the_connection_is_closed(
    server, request_bytes, status
):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(post("/rest/sql/h", b"SELECT 1") + request_bytes)
        answers = read_answers(sock, 2)
        assert answers[0][0] == 200  # what came before is answered
        assert answers[1][0] == status and b'"desc"' in answers[1][2]
        assert closed_by_server(sock)


def test_head_gets_the_head_of_the_get_answer(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"}"):
            data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    assert b"content-length: " in head and rest.startswith(b"HTTP/1.1 200")  # no body


def test_shutdown_answers_the_requests_in_flight_then_flushes(tmp_path):
    """stop() (what SIGTERM does) while a statement runs on the pool: its client gets the
    answer, later connections are refused, and the data written is in segments."""
    with ThreadServer(tmp_path, fsync="off") as s:
        s.app.server.run_sql(
            s.app.server.users.authenticate(*ROOT),
            "CREATE DATABASE g; CREATE TABLE g.t (ts TIMESTAMP, v INT)",
            None,
        )
        real = s.app.server.run_sql
        started = threading.Event()

        def slow(*args):
            started.set()
            time.sleep(0.5)
            return real(*args)

        s.app.server.run_sql = slow
        got = {}

        def client():
            r = httpx.post(
                f"{s.url}/rest/sql", content="INSERT INTO g.t VALUES (NOW, 7)", auth=ROOT
            )
            got["answer"] = r.json()

        t = threading.Thread(target=client)
        t.start()
        assert started.wait(10)
        s.server.stop()
        t.join(10)
        assert got["answer"]["code"] == 0, got
        s.thread.join(20)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{s.url}/health", auth=ROOT)
    assert list(tmp_path.glob("g/p*/*.seg"))


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http = HttpServer(create_app(tmp_path, fsync="off"), "127.0.0.1", port)
        with pytest.raises(TsdbError, match=f"port {port} .* in use.*--port"):
            http.run()


def test_the_app_serves_the_same_over_asgi_on_uvicorn(tmp_path):
    """create_app is an ASGI application too: the same answers under uvicorn."""
    with ThreadServer(tmp_path, asgi=True, fsync="off", max_body_bytes=1000) as s:
        assert httpx.get(f"{s.url}/health", auth=ROOT).json()["code"] == 0
        r = httpx.post(f"{s.url}/rest/sql", content="CREATE DATABASE a", auth=ROOT)
        assert r.json()["code"] == 0
        r = httpx.post(
            f"{s.url}/influxdb/v1/write?db=a&precision=ms", content="m v=1 1700000000000", auth=ROOT
        )
        assert r.status_code == 204
        r = httpx.post(f"{s.url}/rest/sql/a", content="SELECT v FROM m", auth=ROOT)
        assert r.json()["data"] == [[1.0]]
        assert httpx.post(f"{s.url}/rest/sql", content="x" * 2000, auth=ROOT).status_code == 413
        assert (
            httpx.post(f"{s.url}/rest/sql", content="SELECT 1", auth=("root", "no")).status_code
            == 401
        )


def test_large_answers_back_to_back_on_one_connection(server):
    """Answers larger than the socket buffer (written without a copy, paced by the
    transport's flow control) arrive whole and in order, pipelined or not."""
    import json

    values = " ".join(f"({1700000000000 + i}, {i})" for i in range(6000))
    r = httpx.post(
        f"{server.url}/rest/sql/h",
        content=f"CREATE TABLE big (ts TIMESTAMP, v INT); INSERT INTO big VALUES {values}",
        auth=ROOT,
    )
    assert r.json()["code"] == 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(post("/rest/sql/h", b"SELECT * FROM big") * 3)
        answers = read_answers(sock, 3)
    for status, _, body in answers:
        data = json.loads(body)
        assert status == 200 and len(body) > 65536
        assert data["rows"] == 6000 and data["data"][-1][1] == 5999


def test_idle_connections_are_closed_after_the_keep_alive_time(tmp_path):
    with (
        ThreadServer(tmp_path, fsync="off", keep_alive_s=1) as s,
        socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock,
    ):
        sock.sendall(post("/rest/sql", b"SELECT 1"))
        assert read_answers(sock, 1)[0][0] == 200
        started = time.monotonic()
        assert closed_by_server(sock)
        assert time.monotonic() - started > 0.5  # not at once: after the keep-alive time


@pytest.mark.parametrize("asgi", [False, True])
def test_answers_as_arrow_streams_on_request(tmp_path, asgi):
    """?format=arrow or Accept: application/vnd.apache.arrow.stream gets the answer as an
    Arrow IPC stream with the table's own types: the embedded engine's table for the same
    SELECT, also for a planned window aggregate; statements without rows answer
    affected_rows; errors stay JSON; an unknown format is a 400."""
    import pyarrow as pa

    from septet.tsdb.connection import connect

    with ThreadServer(tmp_path, asgi=asgi, fsync="off") as s:

        def sql(text, **kw):
            return httpx.post(f"{s.url}/rest/sql/a", content=text, auth=ROOT, **kw)

        httpx.post(f"{s.url}/rest/sql", content="CREATE DATABASE a", auth=ROOT)
        lines = "\n".join(
            f"m,host=h{i % 3} v={i * 0.5},n={i}i {1700000000000 + 10_000 * i}" for i in range(500)
        )
        w = httpx.post(f"{s.url}/influxdb/v1/write?db=a&precision=ms", content=lines, auth=ROOT)
        assert w.status_code == 204
        arrow = {"headers": {"Accept": "application/vnd.apache.arrow.stream"}}
        select = "SELECT _ts, host, v, n FROM m WHERE v > 10 ORDER BY _ts"
        window = "SELECT _wstart, max(v), count(*) FROM m WHERE host IN ('h1') INTERVAL(1m)"
        answers = {}
        for text in (select, window, window):  # the second window one runs planned
            r = sql(text, **arrow)
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/vnd.apache.arrow.stream", r.text
            answers.setdefault(text, []).append(pa.ipc.open_stream(r.content).read_all())
        assert s.app.server.plans.hits == 1  # the window aggregate's second run
        assert sql(select, params={"format": "arrow"}).content == sql(select, **arrow).content
        r = sql("INSERT INTO m_h9 USING m TAGS ('h9') VALUES (NOW, 1.0, 1)", **arrow)
        assert pa.ipc.open_stream(r.content).read_all().to_pylist() == [{"affected_rows": 1}]
        r = sql("SELEC oops", **arrow)
        assert r.headers["content-type"] == "application/json" and r.json()["code"] != 0
        r = sql(select, params={"format": "xml"})
        assert r.status_code == 400 and "json or arrow" in r.json()["desc"]
    with connect(tmp_path) as con:
        con.execute("USE a")
        for text, tables in answers.items():
            expected = con.execute(text).fetch_arrow()
            for got in tables:
                assert got.column_names == expected.column_names
                assert got.to_pylist() == expected.to_pylist()


def test_a_server_maps_segments_at_once_and_embedded_use_does_not(server, tmp_path):
    """populate_maps (reading segment files whole when mapped) is a long-lived server's
    choice: a one-off embedded query should not read every file first."""
    from septet.tsdb.connection import connect

    assert server.app.server.engine.options.populate_maps
    with connect(tmp_path) as con:
        assert not con.engine.options.populate_maps
