"""A real server on a free loopback port, run in a thread of the test process: the HTTP
server of `septet tsdb serve` (http_server.py), or uvicorn running the same App over ASGI."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from septet.tsdb.http_server import HttpServer
from septet.tsdb.server import KEEP_ALIVE_S, create_app, uvicorn_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    def __init__(self, directory, asgi: bool = False, keep_alive_s: float = KEEP_ALIVE_S, **kw):
        self.directory = Path(directory)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if asgi:
            import uvicorn

            self.server = uvicorn.Server(uvicorn_config(directory, "127.0.0.1", self.port, **kw))
            self.app = self.server.config.app
            self.is_started = lambda: self.server.started
        else:  # the settings `septet tsdb serve` runs with (keep-alive and all)
            self.app = create_app(directory, **kw)
            self.server = HttpServer(self.app, "127.0.0.1", self.port, keep_alive_s)
            self.is_started = self.server.started.is_set
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.is_started():
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        if isinstance(self.server, HttpServer):
            self.server.stop()
        else:
            self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive(), "the server did not shut down"
