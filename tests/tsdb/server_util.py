"""A real server on a free loopback port, run by uvicorn in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from septet.tsdb.server import uvicorn_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    def __init__(self, directory, **kw):
        self.directory = Path(directory)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The settings `septet tsdb serve` runs with (keep-alive and all).
        self.server = uvicorn.Server(uvicorn_config(directory, "127.0.0.1", self.port, **kw))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(20)
