"""TSBS cpu-only as InfluxDB line protocol over HTTP on loopback, side by side: `septet tsdb
serve` against InfluxDB 1.6 (Debian `influxdb`) and VictoriaMetrics (Debian `victoria-metrics`),
each started here on a free port with an empty data directory.

The same payloads (batches of 10,000 lines, nanosecond timestamps) go to each server with 1 and
2 client workers; we report rows/s and metrics/s (10 metrics a row), counting until the last
batch is acknowledged, and bytes on disk per metric after a clean shutdown. The query half of
issue 6's benchmark (devops queries over HTTP, PostgreSQL) is not here yet.

    python benchmarks/tsdb/serve_ingest.py --hosts 100 --hours 24
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from septet.common.report import write_benchmark_results
from septet.tsdb.tsbs import CPU_FIELDS, CpuOnly

HOUR = 3_600_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def payloads(hosts: int, hours: float, batch: int) -> tuple[list[bytes], int]:
    """The TSBS readings as line-protocol bodies of ``batch`` lines each; and the row count."""
    gen = CpuOnly(hosts=hosts)
    tags = gen.tags().to_pylist()
    tag_text = {t["hostname"]: ",".join(f"{k}={v}" for k, v in t.items()) for t in tags}
    lines: list[str] = []
    for b in gen.batches(gen.start_ms + int(hours * HOUR)):
        cols = {name: b.column(name).to_numpy() for name in CPU_FIELDS}
        ts = b.column("ts").to_numpy()
        hn = b.column("hostname").to_pylist()
        for i in range(b.num_rows):
            fields = ",".join(f"{name}={cols[name][i]:.4f}" for name in CPU_FIELDS)
            lines.append(f"cpu,{tag_text[hn[i]]} {fields} {int(ts[i]) * 1_000_000}")
    bodies = ["\n".join(lines[i : i + batch]).encode() for i in range(0, len(lines), batch)]
    return bodies, len(lines)


class Septet:
    name = "septet tsdb serve"

    def start(self, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-c", "from septet.cli import main; main()", "tsdb", "serve",
               "--data", str(data), "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        self.auth = ("root", "taosdata")
        wait(self.url + "/health", self.auth)
        r = httpx.post(self.url + "/rest/sql", content="CREATE DATABASE bench PRECISION 'ms' "
                       "KEEP 36500", auth=self.auth)  # fmt: skip
        assert r.json()["code"] == 0, r.text
        self.write_url = self.url + "/influxdb/v1/write?db=bench&precision=ns"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # graceful: flushes the memtable
        self.proc.wait(120)


class Influx:
    name = "InfluxDB 1.6"

    def start(self, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = data / "influxdb.conf"
        data.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{free_port()}"\n'
            f'[meta]\n  dir = "{data}/meta"\n[data]\n  dir = "{data}/data"\n'
            f'  wal-dir = "{data}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
        )
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.proc = subprocess.Popen(["influxd", "-config", str(conf)], **quiet)
        self.auth = None
        wait(self.url + "/ping", None)
        httpx.post(self.url + "/query", data={"q": "CREATE DATABASE bench"})
        self.write_url = self.url + "/write?db=bench&precision=ns"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


class Victoria:
    name = "VictoriaMetrics"

    def start(self, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            ["victoria-metrics", f"-storageDataPath={data}", "-retentionPeriod=100y",
             f"-httpListenAddr=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        self.auth = None
        wait(self.url + "/health", None)
        self.write_url = self.url + "/write?db=bench"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # flushes in-memory parts
        self.proc.wait(120)


def wait(url: str, auth) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(url, auth=auth, timeout=1).status_code in (200, 204):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no answer from {url}")


def ingest(server, bodies: list[bytes], workers: int) -> float:
    def send(chunk: list[bytes]) -> None:
        with httpx.Client(auth=server.auth, timeout=600) as client:
            for body in chunk:
                r = client.post(server.write_url, content=body)
                if r.status_code not in (200, 204):
                    raise RuntimeError(f"{server.name}: HTTP {r.status_code} {r.text[:200]}")

    chunks = [bodies[i::workers] for i in range(workers)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(send, chunks))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    bodies, rows = payloads(args.hosts, args.hours, args.batch)
    print(f"{rows} rows in {len(bodies)} bodies of {args.batch} lines", flush=True)
    systems = [Septet(), Influx(), Victoria()]
    missing = [n for n in ("influxd", "victoria-metrics") if shutil.which(n) is None]
    if missing:
        sys.exit(f"missing servers {missing}: run scripts/install-system-packages.sh as root")
    table, results = [], {}
    for workers in [int(w) for w in args.workers.split(",")]:
        for system in systems:
            with tempfile.TemporaryDirectory(prefix="tsdb-serve-bench-") as tmp:
                data = Path(tmp) / "data"
                system.start(data)
                try:
                    seconds = ingest(system, bodies, workers)
                finally:
                    system.stop()
                disk = dir_size(data)
            row = {
                "system": system.name,
                "workers": workers,
                "rows/s": round(rows / seconds),
                "metrics/s": round(rows * len(CPU_FIELDS) / seconds),
                "seconds": round(seconds, 2),
                "disk bytes/metric": round(disk / (rows * len(CPU_FIELDS)), 2),
            }
            print(row, flush=True)
            table.append(row)
            results[f"{system.name} x{workers}"] = row
    write_benchmark_results(
        f"tsdb_serve_ingest_{args.hosts}hosts",
        {
            "hosts": args.hosts,
            "hours": args.hours,
            "rows": rows,
            "batch": args.batch,
            "runs": results,
        },
        {f"TSBS cpu-only line protocol over HTTP, {args.hosts} hosts x {args.hours:g} h": table},
        notes="Each server starts empty on loopback; the same bodies go to each; seconds until "
        "the last batch is acknowledged. septet fsyncs its WAL on every request (--fsync "
        "always); InfluxDB fsyncs its WAL per write; VictoriaMetrics buffers in memory.",
    )


if __name__ == "__main__":
    main()
