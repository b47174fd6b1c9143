"""Line protocol parsed in processes of their own beside a server's request threads.

The columnar parser (line_batch.parse_rows) is numpy and Arrow calls strung together by
Python, so two threads parsing at once still mostly take turns on the GIL: a server on two
cores ingested no faster with two clients than with one. A ParsePool keeps parser processes
(one per core but one); a request that finds one idle sends it the second half of its body
and parses the first half itself, so a batch is parsed on two cores at once. The halves'
Rows come back pickled, their tag sets as the heads' text (see Rows.__getstate__).

A parser process is ``python -m septet.tsdb.parse_pool`` (see subprocesses.py):
length-prefixed frames over its stdin and stdout.
"""

from __future__ import annotations

import pickle
import signal
import struct
import sys
import threading
from typing import Any

from septet.tsdb.line_batch import Fallback, Rows, parse_rows
from septet.tsdb.line_protocol import LineProtocolError
from septet.tsdb.subprocesses import start_module

_FRAME = struct.Struct("<QQ")  # payload length, first line number (requests) / 0 (answers)
# Smaller bodies are parsed whole: the hand-over costs ~1 ms.
SPLIT_BYTES = 256 << 10


class _Parser:
    """One parser process; used by one request at a time."""

    def __init__(self) -> None:
        self.proc = start_module("septet.tsdb.parse_pool")

    def send(self, body: bytes, first_line: int) -> threading.Thread:
        """Write a request on a thread of its own (the pipe takes 64 KiB at a time; the
        caller parses its half meanwhile)."""

        def write() -> None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(_FRAME.pack(len(body), first_line))
                self.proc.stdin.write(body)
                self.proc.stdin.flush()
            except OSError:
                pass  # the process is gone: receive() says so

        t = threading.Thread(target=write, name="tsdb-parse-send", daemon=True)
        t.start()
        return t

    def receive(self) -> Any:
        assert self.proc.stdout is not None
        head = self.proc.stdout.read(_FRAME.size)
        if len(head) < _FRAME.size:
            raise RuntimeError(f"the parser process exited ({self.proc.wait()})")
        size, _ = _FRAME.unpack(head)
        return pickle.loads(self.proc.stdout.read(size))

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait()


class ParsePool:
    """Parser processes a server shares between its request threads."""

    def __init__(self, processes: int, start: bool = False):
        self._idle: list[_Parser] = []
        self._all: list[_Parser] = []
        self._lock = threading.Lock()
        self._wanted = processes
        if start:  # now, as a server starts: the first requests need not wait for imports
            for _ in range(processes):
                parser = _Parser()
                self._all.append(parser)
                self._idle.append(parser)

    def _take(self) -> _Parser | None:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if len(self._all) < self._wanted:
                parser = _Parser()
                self._all.append(parser)
                return parser
            return None

    def _give_back(self, parser: _Parser) -> None:
        with self._lock:
            if parser.proc.poll() is None:
                self._idle.append(parser)
            else:  # dead: a new one is started when next needed
                self._all.remove(parser)

    def parse(self, body: bytes) -> list[Rows]:
        """parse_rows(body), the second half in a parser process when one is idle."""
        cut = body.find(b"\n", len(body) // 2) + 1
        if len(body) < SPLIT_BYTES or not 0 < cut < len(body):
            return parse_rows(body)
        parser = self._take()
        if parser is None:  # every one busy with other requests: this core parses it all
            return parse_rows(body)
        try:
            sending = parser.send(body[cut:], body.count(b"\n", 0, cut))
            try:
                first = parse_rows(body[:cut])
            finally:  # the answer is read either way, so the next request gets its own
                sending.join()
                answer = parser.receive()
        except RuntimeError:  # the process died: parse here, and start another next time
            self._give_back(parser)
            return parse_rows(body)
        self._give_back(parser)
        kind, value = answer
        if kind == "rows":
            return first + value
        if kind == "fallback":
            raise Fallback(value)
        if kind == "error":
            raise LineProtocolError(*value)  # the first half's error, had it one, came first
        return parse_rows(body)  # "retry": whatever went wrong there is raised here

    def close(self) -> None:
        with self._lock:
            parsers, self._all, self._idle = self._all, [], []
        for p in parsers:
            p.close()


def _serve() -> None:
    """A parser process: a framed body in, its pickled Rows (or error) out, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when to stop
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return
        size, first_line = _FRAME.unpack(head)
        body = stdin.read(size)
        try:
            answer: tuple = ("rows", parse_rows(body, first_line))
        except Fallback as e:
            answer = ("fallback", str(e))
        except LineProtocolError as e:
            answer = ("error", (str(e).split(": ", 1)[1], e.line, e.column))
        except Exception as e:  # anything else: the server parses the body itself
            answer = ("retry", f"{type(e).__name__}: {e}")
        data = pickle.dumps(answer, protocol=5)
        stdout.write(_FRAME.pack(len(data), 0))
        stdout.write(data)
        stdout.flush()


if __name__ == "__main__":
    _serve()


__all__ = ["SPLIT_BYTES", "ParsePool"]
