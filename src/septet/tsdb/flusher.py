"""The flush process: segment files encoded beside the engine, not in its process.

Encoding a memtable into a segment (per table and column: codecs, statistics, zstd) is
mostly Python work on small arrays, so on a thread it would hold the GIL and stall the
writes it should run beside. A server's engine (``EngineOptions.background_flush``) instead
stages each partition's rows as one Arrow IPC file and has a process of its own encode them,
while it goes on taking writes into a fresh memtable and reading the frozen one. The engine
commits the segments (manifest, WAL checkpoint) when the process is done, or, should the
process fail, encodes them itself from the rows it still holds.

The process is ``python -m septet.tsdb.flusher``, one JSON line of jobs in, one line of
answer out: unlike multiprocessing's spawn, it never re-runs the parent's main module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from septet.common.atomic import atomic_write_bytes
from septet.tsdb.segment import SegmentWriter

STAGING = "flushing"  # the data directory's folder of staged rows (left over: a crash)


@dataclass(frozen=True)
class SegmentJob:
    """Rows staged at ``staged`` (Engine._flush_in_background) to become segment ``target``."""

    staged: str
    target: str
    compressor: str
    level: int
    block_rows: int


def write_segments(jobs: list[SegmentJob]) -> None:
    """Every staged file becomes its segment file (atomically); the staged file goes."""
    from septet.tsdb.engine import decode_tables

    for job in jobs:
        data = Path(job.staged).read_bytes()
        writer = SegmentWriter(job.compressor, job.level, job.block_rows)
        for uid, rows in sorted(decode_tables(memoryview(data)), key=lambda t: t[0]):
            writer.add_table(uid, rows)
        atomic_write_bytes(Path(job.target), writer.finish())
        os.unlink(job.staged)


class Flusher:
    """The flush process, started on first use, and a thread that waits for its answers."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None

    def _process(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ)
            # The child imports septet from where this process did, installed or not.
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "septet.tsdb.flusher"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        return self._proc

    def submit(self, jobs: list[SegmentJob], done: Callable[[Exception | None], None]) -> None:
        """Start ``jobs``; ``done`` is called on another thread with None or the failure."""
        proc = self._process()

        def wait() -> None:
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(json.dumps([asdict(j) for j in jobs]).encode() + b"\n")
                proc.stdin.flush()
                answer = proc.stdout.readline()
                if not answer:
                    raise RuntimeError(f"the flush process exited ({proc.wait()})")
                error = json.loads(answer).get("error")
                failure = None if error is None else RuntimeError(error)
            except Exception as e:  # a broken pipe: the process is gone
                failure = e
            done(failure)

        threading.Thread(target=wait, name="tsdb-flush-wait", daemon=True).start()

    def close(self) -> None:
        """End the process (after the job it may be running)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()


def _serve() -> None:
    """The flush process: a JSON line of jobs in, ``{"error": null|"..."}`` out, until EOF."""
    # Ctrl-C reaches the whole process group: the server decides when flushing stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for line in sys.stdin.buffer:
        try:
            write_segments([SegmentJob(**j) for j in json.loads(line)])
            error = None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        sys.stdout.buffer.write(json.dumps({"error": error}).encode() + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    _serve()


__all__ = ["STAGING", "Flusher", "SegmentJob", "write_segments"]
