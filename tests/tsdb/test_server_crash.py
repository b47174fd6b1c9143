"""kill -9 of `septet tsdb serve` during concurrent HTTP ingest loses no acknowledged row."""

import os
import signal
import subprocess
import sys
import threading
import time

import httpx

import septet.tsdb as tsdb

from .server_util import free_port

ROOT = ("root", "taosdata")
T0 = 1_700_000_000_000


def _start(data, port, *options):
    cmd = [sys.executable, "-c", "from septet.cli import main; main()", "tsdb", "serve",
           "--data", str(data), "--port", str(port), *options]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", auth=ROOT, timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
    raise RuntimeError("server did not start")


def _write_until_killed(proc, writer, workers: int, enough: int, seconds: float, at_kill=None):
    """Runs ``writer(w, stop, acked)`` on ``workers`` threads; once ``enough`` rows are
    acknowledged (or ``seconds`` passed) notes ``at_kill()`` and kills the server with
    SIGKILL while they write. Returns each writer's acknowledged rows and the note."""
    acked: list[list[int]] = [[] for _ in range(workers)]
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(w, stop, acked[w])) for w in range(workers)]
    for t in threads:
        t.start()
    deadline = time.time() + seconds
    while sum(map(len, acked)) < enough and time.time() < deadline:
        time.sleep(0.05)
    noted = at_kill() if at_kill is not None else None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert sum(map(len, acked)) >= enough
    return acked, noted


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_kill_9_during_concurrent_ingest_loses_no_acknowledged_row(tmp_path):
    data = tmp_path / "data"
    proc, url = _start(data, free_port())

    def writer(w: int, stop: threading.Event, acked: list[int]) -> None:
        with httpx.Client(auth=ROOT, timeout=10) as client:
            i = 0
            while not stop.is_set():
                vals = [i + j for j in range(20)]
                rows = " ".join(f"({T0 + v}, {v})" for v in vals)
                sql = f"INSERT INTO k.w{w} USING k.m TAGS ({w}) VALUES {rows}"
                try:
                    ok = client.post(f"{url}/rest/sql", content=sql).json()["code"] == 0
                except (httpx.TransportError, ValueError):
                    return  # the server died mid-request: not acknowledged
                if ok:
                    acked.extend(vals)
                i += 20

    try:
        r = httpx.post(f"{url}/rest/sql", auth=ROOT, content="CREATE DATABASE k PRECISION 'ms'; "
                       "CREATE STABLE k.m (ts TIMESTAMP, v BIGINT) TAGS (w INT)")  # fmt: skip
        assert r.json()["code"] == 0
        acked, _ = _write_until_killed(proc, writer, 4, 2000, 30)
    finally:
        _stop(proc)
    with tsdb.connect(data) as con:
        for w in range(4):
            got = {v for (v,) in con.execute(f"SELECT v FROM k.w{w}").fetchall()}
            assert set(acked[w]) <= got, f"writer {w} lost {len(set(acked[w]) - got)} rows"


def test_kill_9_during_background_flushes_and_split_parsing_loses_no_acknowledged_row(tmp_path):
    """Line-protocol bodies large enough to be parsed half in the parser process, into a
    2 MiB memtable, so that the flush process is often at work when the server dies."""
    data = tmp_path / "data"
    proc, url = _start(data, free_port(), "--memtable-mb", "2")

    def writer(w: int, stop: threading.Event, acked: list[int]) -> None:
        with httpx.Client(auth=ROOT, timeout=30) as client:
            i = 0
            while not stop.is_set():
                lines = [
                    f"m,w={w},h=h{v % 50} v={v}i,x={v * 0.5},y={v % 7}i {T0 + v}"
                    for v in range(i, i + 6000)
                ]
                body = "\n".join(lines).encode()  # ~300 KB: split between processes
                try:
                    r = client.post(f"{url}/influxdb/v1/write?db=k&precision=ms", content=body)
                except httpx.TransportError:
                    return  # the server died mid-request: not acknowledged
                if r.status_code == 204:
                    acked.extend(range(i, i + 6000))
                i += 6000

    try:
        r = httpx.post(f"{url}/rest/sql", auth=ROOT, content="CREATE DATABASE k PRECISION 'ms'")
        assert r.json()["code"] == 0
        acked, segments = _write_until_killed(
            proc, writer, 2, 300_000, 60, at_kill=lambda: list(data.glob("k/p*/*.seg"))
        )
    finally:
        _stop(proc)
    assert segments, "no flush happened before the kill"
    with tsdb.connect(data) as con:
        for w in range(2):
            stamps = {v for (v,) in con.execute(f"SELECT v FROM k.m WHERE w = '{w}'").fetchall()}
            assert set(acked[w]) <= stamps, f"writer {w} lost {len(set(acked[w]) - stamps)} rows"
