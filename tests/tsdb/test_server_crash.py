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


def test_kill_9_during_concurrent_ingest_loses_no_acknowledged_row(tmp_path):
    data = tmp_path / "data"
    proc, url = _start(data, free_port())
    try:
        r = httpx.post(f"{url}/rest/sql", auth=ROOT, content="CREATE DATABASE k PRECISION 'ms'; "
                       "CREATE STABLE k.m (ts TIMESTAMP, v BIGINT) TAGS (w INT)")  # fmt: skip
        assert r.json()["code"] == 0
        acked: list[list[int]] = [[] for _ in range(4)]
        stop = threading.Event()

        def writer(w: int) -> None:
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
                        acked[w].extend(vals)
                    i += 20

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        deadline = time.time() + 30
        while sum(map(len, acked)) < 2000 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sum(map(len, acked)) >= 2000
    with tsdb.connect(data) as con:
        for w in range(4):
            got = {v for (v,) in con.execute(f"SELECT v FROM k.w{w}").fetchall()}
            assert set(acked[w]) <= got, f"writer {w} lost {len(set(acked[w]) - got)} rows"


def test_kill_9_during_background_flushes_and_split_parsing_loses_no_acknowledged_row(tmp_path):
    """Line-protocol bodies large enough to be parsed half in the parser process, into a
    2 MiB memtable, so that the flush process is often at work when the server dies."""
    data = tmp_path / "data"
    proc, url = _start(data, free_port(), "--memtable-mb", "2")
    acked: list[list[int]] = [[] for _ in range(2)]
    try:
        stop = threading.Event()

        def writer(w: int) -> None:
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
                        acked[w].extend(range(i, i + 6000))
                    i += 6000

        r = httpx.post(f"{url}/rest/sql", auth=ROOT, content="CREATE DATABASE k PRECISION 'ms'")
        assert r.json()["code"] == 0
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while sum(map(len, acked)) < 300_000 and time.time() < deadline:
            time.sleep(0.05)
        segments_before_kill = list(data.glob("k/p*/*.seg"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sum(map(len, acked)) >= 300_000
    assert segments_before_kill, "no flush happened before the kill"
    with tsdb.connect(data) as con:
        for w in range(2):
            stamps = {v for (v,) in con.execute(f"SELECT v FROM k.m WHERE w = '{w}'").fetchall()}
            assert set(acked[w]) <= stamps, f"writer {w} lost {len(set(acked[w]) - stamps)} rows"
