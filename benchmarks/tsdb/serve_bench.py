"""`septet tsdb serve` against real servers on loopback, TSBS cpu-only: ingest over HTTP and the
devops queries over each server's own query API.

Peers (Debian packages, started here on free ports with empty data directories):
InfluxDB 1.6 (`influxdb`; line protocol in, InfluxQL on /query), VictoriaMetrics
(`victoria-metrics`; line protocol in, PromQL/MetricsQL on /api/v1/query_range as TSBS sends
it) and PostgreSQL 15 (`postgresql`; COPY in, SQL on a plain table with time indexes, TSBS's
TimescaleDB queries with date_trunc instead of time_bucket). septet gets line protocol on
/influxdb/v1/write and SQL on /rest/sql (TDengine's REST API), into a super table created
first in TSBS's layout (its timestamp column is `ts`).

Ingest: the same bodies of --batch lines (nanosecond timestamps) to each server from 1 and 2
client workers; rows/s counts until the last batch is acknowledged; bytes on disk per metric
after a clean shutdown (PostgreSQL: its tables and indexes). Queries: the TSBS devops query
types with the parameters of benchmarks/tsdb/run.py (the same random instances for every
system), run one system after another in a rotating order, each instance once after a warm-up;
median and p99 latency per type, including the HTTP/wire round trip and reading the answer.

    python benchmarks/tsdb/serve_bench.py                          # 100 hosts x 24 h, all
    python benchmarks/tsdb/serve_bench.py --hosts 1000
    python benchmarks/tsdb/serve_bench.py --phases query --systems septet,postgres --hours 6
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import httptools
import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from septet.common.report import write_benchmark_results
from septet.tsdb.tsbs import CPU_FIELDS, TAG_NAMES, CpuOnly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import QUERY_TYPES, make_queries, sql_septet  # the engine benchmark's query set

HOUR = 3_600_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its reaped children (PostgreSQL's backends) and
    its live descendants (septet's flush and parser processes)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # just ended
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for p, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(p)  # fields[1]: the parent's pid
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += sum(int(x) for x in stats[p][11:15])
            todo += children.get(p, [])
    return total / os.sysconf("SC_CLK_TCK")


def threads_cpu_ns(pid: int) -> int:
    """CPU time of all of a process's threads, in ns (/proc/<pid>/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def wait(url: str, auth=None, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(url, auth=auth, timeout=1).status_code in (200, 204):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no answer from {url}")


class Http:
    """A keep-alive HTTP/1.1 client for the query phase: a socket and httptools' response
    parser (C), the same for the three HTTP servers; JSON answers decoded by orjson.

    The client's own cost counts in every HTTP server's latency but not in PostgreSQL's,
    whose client is libpq and psycopg's C extension. Measured on this machine against septet
    with single-groupby-5-1-1 (mean client CPU per request, back to back / after 10 ms idle,
    two rounds side by side): the standard library's http.client 0.21-0.23 / 0.35-0.44 ms,
    this 0.18-0.23 / 0.31-0.37 ms (httpx cost ~0.3 ms more than http.client); on a large
    answer the JSON decoder is what counts (high-cpu-all at 1,000 hosts: the standard
    library's ~1.8 s, orjson ~1 s, of 59 MB). A connection idle for longer than
    ``idle_s`` is replaced before use, as httpx does (keepalive_expiry 5 s), so that no
    server's idle timeout is raced; a server that closes a connection otherwise is an error,
    reported as such. Chunked answers (Go's servers send large ones so) are decoded by the
    parser."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, idle_s: float = 4.0):
        import base64
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.head = b"Host: %s:%d\r\n" % (parts.hostname.encode(), parts.port)
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode())
            self.head += b"Authorization: Basic %s\r\n" % token
        self.idle_s, self.sock, self.last = idle_s, None, 0.0

    def request(self, method: str, path: str, body: bytes | None = None, form: dict | None = None):
        """(status, body bytes) of one request."""
        extra = b""
        if form is not None:
            body = urlencode(form).encode()
            extra = b"Content-Type: application/x-www-form-urlencoded\r\n"
        body = body or b""
        if self.sock is None or time.monotonic() - self.last > self.idle_s:
            self.close()
            self.sock = socket.create_connection(self.address, timeout=600)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        message = b"%s %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n" % (
            method.encode(), path.encode(), self.head, extra, len(body)
        )  # fmt: skip
        try:
            self.sock.sendall(message + body)
            status, data, keep = self._answer()
        except Exception:
            self.close()
            raise
        if not keep:
            self.close()
        self.last = time.monotonic()
        return status, data

    def _answer(self) -> tuple[int, bytes, bool]:
        got = _Answer()
        parser = httptools.HttpResponseParser(got)
        while not got.complete:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the server closed the connection without an answer")
            parser.feed_data(data)
        return parser.get_status_code(), b"".join(got.chunks), parser.should_keep_alive()

    def json_of(self, method: str, path: str, **kw) -> dict:
        """The JSON answer, decoded by orjson (C), as psycopg decodes PostgreSQL's rows in C:
        the standard library's decoder took ~1.8 s of a 59 MB answer (high-cpu-all at 1,000
        hosts), more than the servers took to make it."""
        status, data = self.request(method, path, **kw)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
        return orjson.loads(data)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _Answer:
    """httptools' callbacks: the body's pieces, and whether the answer is whole."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.complete = False

    def on_body(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def on_message_complete(self) -> None:
        self.complete = True


# ----------------------------------------------------------------------------- payloads
class Payloads:
    """The TSBS readings as bodies of ``batch`` rows in two formats, kept in files (1,000
    hosts x 24 h is ~3.5 GB of line protocol): InfluxDB line protocol and PostgreSQL COPY text."""

    def __init__(self, gen: CpuOnly, end_ms: int, batch: int, work: Path):
        self.lp_path, self.copy_path = work / "bodies.lp", work / "bodies.copy"
        self.lp, self.copy = [], []  # (offset, length) per body
        tags = gen.tags()
        heads = pa.array(
            ["cpu," + ",".join(f"{k}={v}" for k, v in t.items()) for t in tags.to_pylist()]
        )
        pending: list[pa.Table] = []
        rows = 0
        with open(self.lp_path, "wb") as lp, open(self.copy_path, "wb") as cp:
            for b in gen.batches(end_ms):
                pending.append(b)
                rows += b.num_rows
                table = pa.concat_tables(pending)
                full = table.num_rows // batch * batch
                for i in range(0, full, batch):
                    self._write(table.slice(i, batch), heads, tags, lp, cp)
                pending = [table.slice(full)] if full < table.num_rows else []
            if pending:
                self._write(pa.concat_tables(pending), heads, tags, lp, cp)
        self.rows = rows

    def _write(self, t: pa.Table, heads: pa.Array, tags: pa.Table, lp, cp) -> None:
        host = pc.index_in(t.column("hostname"), value_set=tags.column("hostname"))
        values = [pc.cast(pc.round(t.column(f), 4), pa.string()) for f in CPU_FIELDS]
        fields = pc.binary_join_element_wise(
            *[
                pc.binary_join_element_wise(f"{f}=", v, "")
                for f, v in zip(CPU_FIELDS, values, strict=True)
            ],
            ",",
        )
        ts = t.column("ts")
        ns = pc.cast(pc.multiply(ts, 1_000_000), pa.string())
        lines = pc.binary_join_element_wise(heads.take(host), fields, ns, " ")
        stamp = pc.strftime(pc.cast(ts, pa.timestamp("ms", "UTC")), "%Y-%m-%d %H:%M:%S+00")
        rows = pc.binary_join_element_wise(stamp, t.column("hostname"), *values, "\t")
        for out, spans, column in ((lp, self.lp, lines), (cp, self.copy, rows)):
            body = ("\n".join(column.to_pylist()) + "\n").encode()
            spans.append((out.tell(), len(body)))
            out.write(body)

    def bodies(self, fmt: str, worker: int, workers: int):
        """This worker's share of the bodies, read as they are sent (from the page cache)."""
        path, spans = (self.lp_path, self.lp) if fmt == "lp" else (self.copy_path, self.copy)
        with open(path, "rb") as f:
            for offset, length in spans[worker::workers]:
                yield os.pread(f.fileno(), length, offset)


# ----------------------------------------------------------------------------- systems
class Septet:
    name, key = "septet tsdb serve", "septet"

    def start(self, data: Path, fresh: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-c", "from septet.cli import main; main()", "tsdb", "serve",
               "--data", str(data), "--port", str(self.port)]  # fmt: skip
        # The server's log is kept: a failure during a run is reported with its tail.
        self.log = data.parent / f"{self.key}-server.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        self.auth = ("root", "taosdata")
        self.client = Http(self.url, self.auth)
        wait(self.url + "/health", self.auth)
        if fresh:
            fields = ", ".join(f"{f} DOUBLE" for f in CPU_FIELDS)
            tags = ", ".join(f"{t} VARCHAR(32)" for t in TAG_NAMES)
            self.sql("CREATE DATABASE bench PRECISION 'ms' KEEP 36500")
            self.sql(f"CREATE STABLE bench.cpu (ts TIMESTAMP, {fields}) TAGS ({tags})")

    def pid(self) -> int:
        return self.proc.pid

    def diagnose(self) -> str:
        """Whether the server process is still alive, and the end of its log."""
        code = self.proc.poll()
        state = "running" if code is None else f"exited with {code}"
        tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
        return f"server {state}; log tail: {tail!r}"

    def sql(self, sql: str) -> dict:
        body = self.client.json_of("POST", "/rest/sql/bench", body=sql.encode())
        if body.get("code") != 0:
            raise RuntimeError(f"{self.name}: {body} for {sql[:200]}")
        return body

    def writer(self):
        client = httpx.Client(auth=self.auth, timeout=600)
        url = self.url + "/influxdb/v1/write?db=bench&precision=ns"
        return "lp", lambda body: check(client.post(url, content=body), self.name)

    def query(self, p: dict) -> int | None:
        return self.sql(sql_septet(p))["rows"]

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)  # graceful: flushes the memtable
        self.proc.wait(300)

    def disk_bytes(self, data: Path) -> int:
        return dir_size(data)


class Influx:
    name, key = "InfluxDB 1.6", "influx"

    def start(self, data: Path, fresh: bool) -> None:
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
        self.client = Http(self.url)
        wait(self.url + "/ping")
        if fresh:
            self.client.json_of("POST", "/query", form={"q": "CREATE DATABASE bench"})

    def pid(self) -> int:
        return self.proc.pid

    def writer(self):
        client = httpx.Client(timeout=600)
        url = self.url + "/write?db=bench&precision=ns"
        return "lp", lambda body: check(client.post(url, content=body), self.name)

    def query(self, p: dict) -> int | None:
        q = influxql(p)
        body = self.client.json_of("POST", "/query", form={"db": "bench", "q": q, "epoch": "ms"})
        rows = 0
        for result in body.get("results", []):
            if "error" in result:
                raise RuntimeError(f"{self.name}: {result['error']} for {q}")
            rows += sum(len(s.get("values", [])) for s in result.get("series", []))
        return rows

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(300)

    def disk_bytes(self, data: Path) -> int:
        return dir_size(data)


class Victoria:
    name, key = "VictoriaMetrics", "victoria"

    def start(self, data: Path, fresh: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            ["victoria-metrics", f"-storageDataPath={data}", "-retentionPeriod=100y",
             f"-httpListenAddr=127.0.0.1:{self.port}", "-search.latencyOffset=0s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        self.client = Http(self.url)
        wait(self.url + "/health")

    def pid(self) -> int:
        return self.proc.pid

    def writer(self):
        client = httpx.Client(timeout=600)
        url = self.url + "/write?db=bench"
        return "lp", lambda body: check(client.post(url, content=body), self.name)

    def query(self, p: dict) -> int | None:
        q = promql(p)
        if q is None:
            return None  # TSBS has no VictoriaMetrics form of this query type
        query, step = q
        params = {"query": query, "start": p["t0"] / 1000,
                  "end": (p["t0"] + p["span"]) / 1000 - 1, "step": step}  # fmt: skip
        body = self.client.json_of("GET", "/api/v1/query_range?" + urlencode(params))
        if body.get("status") != "success":
            raise RuntimeError(f"{self.name}: {body} for {query}")
        return sum(len(r["values"]) for r in body["data"]["result"])

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGINT)  # flushes in-memory parts
        self.proc.wait(300)

    def disk_bytes(self, data: Path) -> int:
        return dir_size(data)


class Postgres:
    name, key = "PostgreSQL 15", "postgres"

    def start(self, data: Path, fresh: bool) -> None:
        import psycopg

        self.port = free_port()
        bindir = Path(
            subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
            or "/usr/lib/postgresql/15/bin"
        )
        # PostgreSQL refuses to run as root: as root, run it as 'nobody'.
        as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        data.mkdir(parents=True, exist_ok=True)
        self.sock = data.parent / "pgsock"
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "nobody")
            shutil.chown(self.sock, "nobody")
        pgdata = self.pgdata = data / "pg"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if fresh:
            if os.geteuid() == 0:
                shutil.chown(data, "nobody")
            initdb = [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"]
            subprocess.run([*as_user, *initdb, "-E", "UTF8"], check=True, **quiet)
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c shared_buffers=1GB"
        self.pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(pgdata)]
        subprocess.run([*self.pg_ctl, "-o", opts, "-w", "start"], check=True, **quiet)
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        self.con = psycopg.connect(self.dsn, autocommit=True)
        self.backend = self.con.execute("SELECT pg_backend_pid()").fetchone()[0]
        if fresh:
            tags = ", ".join(f"{t} TEXT" for t in TAG_NAMES[1:])
            fields = ", ".join(f"{f} DOUBLE PRECISION" for f in CPU_FIELDS)
            self.con.execute(f"CREATE TABLE tags (hostname TEXT PRIMARY KEY, {tags})")
            self.con.execute(
                f"CREATE TABLE cpu (time TIMESTAMPTZ NOT NULL, hostname TEXT, {fields})"
            )
            # TSBS's TimescaleDB indexes, on a plain table.
            self.con.execute("CREATE INDEX ON cpu (hostname, time DESC)")
            self.con.execute("CREATE INDEX ON cpu (time DESC)")

    def pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def load_tags(self, tags: pa.Table) -> None:
        cols = ", ".join(TAG_NAMES)
        with self.con.cursor() as cur, cur.copy(f"COPY tags ({cols}) FROM STDIN") as cp:
            for row in tags.to_pylist():
                cp.write_row([row[t] for t in TAG_NAMES])

    def writer(self):
        import psycopg

        con = psycopg.connect(self.dsn)

        def write(body: bytes) -> None:
            with con.cursor() as cur, cur.copy("COPY cpu FROM STDIN") as cp:
                cp.write(body)
            con.commit()  # acknowledged when the commit (WAL fsync) returns

        write.close = con.close  # the backend exits: its CPU time goes to the postmaster
        return "copy", write

    def query_cpu_ns(self) -> int:
        """The query backend's CPU time plus reaped children's (parallel workers), in ns."""
        children = sum(int(x) for x in Path(f"/proc/{self.pid()}/stat").read_text().rsplit(
            ")", 1)[1].split()[13:15])  # fmt: skip
        return threads_cpu_ns(self.backend) + children * 10**9 // os.sysconf("SC_CLK_TCK")

    def query(self, p: dict) -> int | None:
        with self.con.cursor() as cur:
            cur.execute(sql_postgres(p))
            return len(cur.fetchall())

    def stop(self) -> None:
        self.con.execute("CHECKPOINT")
        self.con.close()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run([*self.pg_ctl, "-m", "fast", "-w", "stop"], check=True, **quiet)

    def disk_bytes(self, data: Path) -> int:
        # Tables and indexes (the cluster's catalogs and WAL are not the data's).
        self.start(data, fresh=False)
        try:
            q = "SELECT pg_total_relation_size('cpu') + pg_total_relation_size('tags')"
            return int(self.con.execute(q).fetchone()[0])
        finally:
            self.stop()


def check(r: httpx.Response, name: str) -> None:
    if r.status_code not in (200, 204):
        raise RuntimeError(f"{name}: HTTP {r.status_code} {r.text[:300]}")


# ----------------------------------------------------------------------------- queries
def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def influxql(p: dict) -> str:
    """TSBS's InfluxQL for a devops query instance."""
    t = p["type"]
    span = (
        f"time >= '{_iso(p['t0'])}' AND time < '{_iso(p['t0'] + p['span'])}'" if "t0" in p else ""
    )
    if t.startswith(("single-groupby", "cpu-max-all")):
        aggs = ", ".join(f"max({m})" for m in p["metrics"])
        hosts = " OR ".join(f"hostname = '{h}'" for h in p["hosts"])
        unit = "1m" if p["bucket"] == "minute" else "1h"
        return f"SELECT {aggs} FROM cpu WHERE ({hosts}) AND {span} GROUP BY time({unit})"
    if t.startswith("double-groupby"):
        aggs = ", ".join(f"mean({m})" for m in p["metrics"])
        return f"SELECT {aggs} FROM cpu WHERE {span} GROUP BY time(1h), hostname"
    if t.startswith("high-cpu"):
        host = f" AND hostname = '{p['hosts'][0]}'" if p["hosts"] else ""
        return f"SELECT * FROM cpu WHERE usage_user > 90.0 AND {span}{host}"
    if t == "lastpoint":
        return 'SELECT last(*) FROM cpu GROUP BY "hostname"'
    return (
        f"SELECT max(usage_user) FROM cpu WHERE time < '{_iso(p['t1'])}' "
        "GROUP BY time(1m) ORDER BY time DESC LIMIT 5"
    )


def promql(p: dict) -> tuple[str, int] | None:
    """TSBS's PromQL for VictoriaMetrics (it has none for high-cpu, lastpoint and
    groupby-orderby-limit) and the step in seconds."""
    t = p["type"]
    metrics = "|".join(p.get("metrics", []))
    if t.startswith(("single-groupby", "cpu-max-all")):
        hosts = "|".join(p["hosts"])
        window, step = ("1m", 60) if p["bucket"] == "minute" else ("1h", 3600)
        sel = f'{{__name__=~"cpu_({metrics})",hostname=~"{hosts}"}}'
        return f"max(max_over_time({sel}[{window}])) by (__name__)", step
    if t.startswith("double-groupby"):
        sel = f'{{__name__=~"cpu_({metrics})"}}'
        return f"avg(avg_over_time({sel}[1h])) by (__name__, hostname)", 3600
    return None


def sql_postgres(p: dict) -> str:
    """TSBS's TimescaleDB SQL, with date_trunc for time_bucket, on a plain table."""
    t = p["type"]
    span = (
        f"time >= '{_iso(p['t0'])}' AND time < '{_iso(p['t0'] + p['span'])}'" if "t0" in p else ""
    )
    if t.startswith(("single-groupby", "cpu-max-all")):
        aggs = ", ".join(f"max({m})" for m in p["metrics"])
        hosts = ", ".join(f"'{h}'" for h in p["hosts"])
        return (
            f"SELECT date_trunc('{p['bucket']}', time) AS b, {aggs} FROM cpu "
            f"WHERE hostname IN ({hosts}) AND {span} GROUP BY b ORDER BY b"
        )
    if t.startswith("double-groupby"):
        aggs = ", ".join(f"avg({m})" for m in p["metrics"])
        return (
            f"SELECT date_trunc('hour', time) AS b, hostname, {aggs} FROM cpu WHERE {span} "
            "GROUP BY b, hostname ORDER BY b, hostname"
        )
    if t.startswith("high-cpu"):
        host = f" AND hostname = '{p['hosts'][0]}'" if p["hosts"] else ""
        return f"SELECT * FROM cpu WHERE usage_user > 90.0 AND {span}{host}"
    if t == "lastpoint":
        return "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC"
    return (
        "SELECT date_trunc('minute', time) AS b, max(usage_user) FROM cpu "
        f"WHERE time < '{_iso(p['t1'])}' GROUP BY b ORDER BY b DESC LIMIT 5"
    )


# ----------------------------------------------------------------------------- phases
def ingest(system, payloads: Payloads, workers: int) -> tuple[float, float]:
    """Seconds until every body, sent by ``workers`` clients, is acknowledged; and the CPU
    seconds the server spent meanwhile (a fairer measure on a shared machine)."""
    senders = [system.writer() for _ in range(workers)]
    cpu0 = cpu_seconds(system.pid())

    def send(i: int) -> None:
        fmt, write = senders[i]
        for body in payloads.bodies(fmt, i, workers):
            write(body)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(send, range(workers)))
    seconds = time.perf_counter() - t0
    for _, write in senders:
        getattr(write, "close", lambda: None)()
    time.sleep(0.5)  # closed backends are reaped
    return seconds, cpu_seconds(system.pid()) - cpu0


def load(system, data: Path, payloads: Payloads, tags: pa.Table, workers: int):
    system.start(data, fresh=True)
    try:
        if isinstance(system, Postgres):
            system.load_tags(tags)
        return ingest(system, payloads, workers)
    finally:
        system.stop()


def query_cpu_ns(system) -> int:
    """The server's CPU time so far (ns): what a query costs it, whatever the machine's load."""
    if hasattr(system, "query_cpu_ns"):
        return system.query_cpu_ns()
    return threads_cpu_ns(system.pid())


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q, method="higher")) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--workers", default="1,2", help="client workers for the ingest phase")
    ap.add_argument("--systems", default="septet,influx,victoria,postgres")
    ap.add_argument(
        "--systems-multi",
        default=None,
        help="systems for the ingest runs with more than one worker [all of --systems]",
    )
    ap.add_argument("--phases", default="ingest,query")
    ap.add_argument("--instances", type=int, default=10, help="query instances per type (least)")
    ap.add_argument("--max-instances", type=int, default=40, help="query instances per type (most)")
    ap.add_argument(
        "--type-seconds",
        type=float,
        default=6.0,
        help="more instances than --instances while a type has taken less than this",
    )
    ap.add_argument("--queries", default=None, help="comma-separated query types [all]")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--no-save", action="store_true", help="print only; write no results")
    args = ap.parse_args()
    classes = {c.key: c for c in (Septet, Influx, Victoria, Postgres)}
    systems = [classes[k]() for k in args.systems.split(",")]
    phases = set(args.phases.split(","))
    need = {"influx": "influxd", "victoria": "victoria-metrics", "postgres": "pg_config"}
    missing = [need[s.key] for s in systems if s.key in need and not shutil.which(need[s.key])]
    if missing:
        sys.exit(f"missing {missing}: run scripts/install-system-packages.sh bench as root")
    query_types = QUERY_TYPES if args.queries is None else tuple(args.queries.split(","))
    gen = CpuOnly(hosts=args.hosts, seed=args.seed)
    end = gen.start_ms + int(args.hours * HOUR)
    work = Path(tempfile.mkdtemp(prefix="tsdb-serve-bench-"))
    os.chmod(work, 0o755)
    label = f"{args.hosts} hosts x {args.hours:g} h"
    try:
        t = time.perf_counter()
        payloads = Payloads(gen, end, args.batch, work)
        n_metrics = payloads.rows * len(CPU_FIELDS)
        print(
            f"{payloads.rows} rows in {len(payloads.lp)} bodies ({time.perf_counter() - t:.1f} s)"
        )
        config = {"hosts": args.hosts, "hours": args.hours, "rows": payloads.rows,
                  "batch": args.batch, "seed": args.seed}  # fmt: skip
        data = {s.key: work / s.key for s in systems}
        if "ingest" in phases:
            table, runs = [], {}
            multi = set((args.systems_multi or args.systems).split(","))
            for workers in [int(w) for w in args.workers.split(",")]:
                for s in systems:
                    if workers > 1 and s.key not in multi:
                        continue
                    shutil.rmtree(data[s.key], ignore_errors=True)
                    load0 = os.getloadavg()[0]
                    seconds, cpu = load(s, data[s.key], payloads, gen.tags(), workers)
                    load1 = os.getloadavg()[0]
                    disk = s.disk_bytes(data[s.key])
                    row = {"system": s.name, "workers": workers,
                           "rows/s": round(payloads.rows / seconds),
                           "metrics/s": round(n_metrics / seconds),
                           "seconds": round(seconds, 2),
                           "server CPU s": round(cpu, 2),
                           "rows per server CPU s": round(payloads.rows / max(cpu, 1e-9)),
                           "disk bytes/metric": round(disk / n_metrics, 2),
                           # The machine is shared: its 1-minute load average before/after.
                           "load avg": f"{load0:.1f}/{load1:.1f}"}  # fmt: skip
                    print(row, flush=True)
                    table.append(row)
                    runs[f"{s.key} x{workers}"] = row
            if not args.no_save:
                write_benchmark_results(
                    f"tsdb_serve_ingest_{args.hosts}hosts",
                    {**config, "runs": runs},
                    {f"TSBS cpu-only ingest on loopback, {label}": table},
                    notes=INGEST_NOTES,
                )
        if "query" in phases:
            for s in systems:
                if not (data[s.key]).exists():
                    load(s, data[s.key], payloads, gen.tags(), 1)
            most = max(args.instances, args.max_instances)
            queries = make_queries(gen, end, most + 1, args.seed)
            times: dict[str, dict[str, list[float]]] = {s.key: {} for s in systems}
            cpu: dict[str, dict[str, list[float]]] = {s.key: {} for s in systems}
            failed: dict[str, str] = {}
            answers: dict[str, dict[str, list]] = {s.key: {} for s in systems}
            for s in systems:
                s.start(data[s.key], fresh=False)
            loads = [os.getloadavg()[0]]  # the shared machine's 1-minute load average
            try:
                k = 0
                for qt in query_types:
                    type_started = time.perf_counter()
                    for i, p in enumerate(queries[qt]):
                        # The small types run more instances (their medians are noisier, and
                        # they are cheap); a type stops once it has its least and its time.
                        spent = time.perf_counter() - type_started
                        if i > args.instances and spent > args.type_seconds:
                            break
                        k += 1
                        for s in systems[k % len(systems) :] + systems[: k % len(systems)]:
                            if s.key in failed:
                                continue
                            try:
                                c0 = query_cpu_ns(s)
                                t = time.perf_counter()
                                n = s.query(p)
                                elapsed = time.perf_counter() - t
                                used = query_cpu_ns(s) - c0
                            except (httpx.HTTPError, RuntimeError, OSError) as e:
                                # A server that fails (or dies) is reported, not the run lost.
                                failed[s.key] = f"{qt}: {type(e).__name__}: {e}"[:300]
                                print(f"{s.name} failed: {failed[s.key]}", flush=True)
                                if hasattr(s, "diagnose"):
                                    print(s.diagnose(), flush=True)
                                continue
                            if n is None:
                                continue
                            answers[s.key].setdefault(qt, []).append(n)
                            if i > 0:  # the first instance warms up
                                times[s.key].setdefault(qt, []).append(elapsed * 1000)
                                cpu[s.key].setdefault(qt, []).append(used / 1e6)
                    medians = {s.key: round(statistics.median(times[s.key][qt]), 2)
                               for s in systems if times[s.key].get(qt)}  # fmt: skip
                    loads.append(os.getloadavg()[0])
                    print(qt, "median ms", medians, f"load {loads[-1]:.1f}", flush=True)
            finally:
                for s in systems:
                    with contextlib.suppress(Exception):  # a dead server has nothing to stop
                        s.stop()
            table, results = [], {}
            for qt in query_types:
                row = {"query": qt}
                for s in systems:
                    ms = times[s.key].get(qt)
                    row[f"{s.key} median ms"] = round(statistics.median(ms), 2) if ms else None
                    row[f"{s.key} p99 ms"] = round(percentile(ms, 99), 2) if ms else None
                    c = cpu[s.key].get(qt)
                    row[f"{s.key} CPU ms"] = round(statistics.median(c), 2) if c else None
                # Row counts of the SQL systems must agree (InfluxDB and VictoriaMetrics
                # answer in series, so theirs are not comparable one to one).
                sql = [s.key for s in systems if s.key in ("septet", "postgres")]
                if len(sql) == 2:
                    same = answers["septet"].get(qt) == answers["postgres"].get(qt)
                    row["septet rows = postgres rows"] = "yes" if same else "NO"
                table.append(row)
                results[qt] = row
                print(row)
            if not args.no_save:
                write_benchmark_results(
                    f"tsdb_serve_query_{args.hosts}hosts",
                    {
                        **config,
                        "instances": args.instances,
                        "max_instances": most,
                        "type_seconds": args.type_seconds,
                        "instances_run": {
                            qt: len(times[systems[0].key].get(qt, [])) for qt in query_types
                        },
                        "queries": results,
                        "answers": answers,
                        "failed": failed,
                        "load_averages": loads,
                    },
                    {f"TSBS devops queries over each server's API, {label}": table},
                    notes=QUERY_NOTES.format(n=args.instances, most=most, s=args.type_seconds)
                    + f" Load average (1 min) while querying: {min(loads):.1f}-{max(loads):.1f}."
                    + "".join(f" FAILED: {classes[k].name} at {why}." for k, why in failed.items()),
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


INGEST_NOTES = (
    "Each server starts empty on loopback; the same rows go to each in bodies of 10,000; "
    "seconds until the last body is acknowledged. septet, InfluxDB and VictoriaMetrics get "
    "line protocol over HTTP; PostgreSQL gets COPY text over its wire protocol, one transaction "
    "per body. septet fsyncs its WAL before acknowledging (--fsync always), InfluxDB fsyncs its "
    "WAL per write, PostgreSQL per commit (its defaults); VictoriaMetrics buffers in memory. "
    "Disk after a clean shutdown; PostgreSQL: pg_total_relation_size of its tables with indexes. "
    "septet serves from one process with two helpers: the flush process that encodes a full "
    "memtable into segments while writes go on, and a parser process that parses half of a "
    "large body while the request thread parses the other half. "
    "On a shared machine wall-clock rates are compressed by waiting for CPU; server CPU s "
    "(user + system time of the server and every process it started: PostgreSQL's backends, "
    "septet's flush and parser processes) is the fairer measure there."
)
QUERY_NOTES = (
    "TSBS devops query instances (benchmarks/tsdb/run.py's parameters, seed 123): {n} per type "
    "(up to {most} while the type has taken under {s:g} s: the small types) after one "
    "warm-up, the same for every system, systems in a rotating order. Latency is the "
    "client's: request, execution, reading and decoding the whole answer (HTTP: one "
    "keep-alive connection per server, renewed after 4 s idle, answers parsed by httptools "
    "and their JSON decoded by orjson, in C as psycopg's are). septet: TDengine SQL on "
    "/rest/sql; InfluxDB: InfluxQL on /query; VictoriaMetrics: TSBS's PromQL on "
    "/api/v1/query_range (TSBS has none for high-cpu, lastpoint and groupby-orderby-limit: "
    "blank); PostgreSQL: SQL over psycopg on a plain table with (hostname, time) and (time) "
    "indexes. Each server was restarted after loading, so nothing is in its memory but what "
    "it reads back. CPU ms: the median CPU time the server spent on a query (all its threads; "
    "PostgreSQL: the backend and its parallel workers), which a loaded machine does not inflate "
    "as it does wall-clock latency."
)

if __name__ == "__main__":
    main()
