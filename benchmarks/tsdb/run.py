"""TSBS cpu-only, side by side: septet.tsdb against DuckDB, chDB and SQLite, embedded, on the
same generated data (a port of TSBS's generator, septet.tsdb.tsbs).

Measures bulk ingest (rows/s and metrics/s, including the final flush to disk), bytes on disk
per metric, and the median latency of each TSBS devops query type over several randomly
parameterised instances (the same instances for every system). Each query's results are
compared across systems (row count and a checksum), so a fast wrong answer shows.

    python benchmarks/tsdb/run.py                 # 100 hosts x 1 day
    python benchmarks/tsdb/run.py --hosts 1000    # 1,000 hosts x 1 day
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

import septet.tsdb as tsdb
from septet.common.report import write_benchmark_results
from septet.tsdb.tsbs import CPU_FIELDS, TAG_NAMES, CpuOnly

HOUR = 3_600_000
DAY = 24 * HOUR
QUERY_TYPES = (
    "single-groupby-1-1-1",
    "single-groupby-1-1-12",
    "single-groupby-1-8-1",
    "single-groupby-5-1-1",
    "single-groupby-5-1-12",
    "single-groupby-5-8-1",
    "cpu-max-all-1",
    "cpu-max-all-8",
    "double-groupby-1",
    "double-groupby-5",
    "double-groupby-all",
    "high-cpu-1",
    "high-cpu-all",
    "lastpoint",
    "groupby-orderby-limit",
)


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- queries
def make_queries(gen: CpuOnly, end_ms: int, instances: int, seed: int) -> dict[str, list[dict]]:
    """TSBS devops query parameters: random hosts, metrics and start times (seeded)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict]] = {}

    def hosts(n):
        return [f"host_{i}" for i in rng.choice(gen.hosts, size=min(n, gen.hosts), replace=False)]

    def start(span):
        lo, hi = gen.start_ms, max(end_ms - span, gen.start_ms)
        return int(lo + rng.integers(0, (hi - lo) // 60_000 + 1) * 60_000)

    for qt in QUERY_TYPES:
        items = []
        for _ in range(instances):
            p: dict = {"type": qt}
            if qt.startswith("single-groupby"):
                m, h, t = (int(x) for x in qt.split("-")[2:])
                p.update(
                    metrics=list(CPU_FIELDS[:m]),
                    hosts=hosts(h),
                    t0=start(t * HOUR),
                    span=t * HOUR,
                    bucket="minute",
                )
            elif qt.startswith("cpu-max-all"):
                n = int(qt.rsplit("-", 1)[1])
                p.update(
                    metrics=list(CPU_FIELDS),
                    hosts=hosts(n),
                    t0=start(8 * HOUR),
                    span=8 * HOUR,
                    bucket="hour",
                )
            elif qt.startswith("double-groupby"):
                tail = qt.rsplit("-", 1)[1]
                m = len(CPU_FIELDS) if tail == "all" else int(tail)
                p.update(metrics=list(CPU_FIELDS[:m]), t0=start(12 * HOUR), span=12 * HOUR)
            elif qt.startswith("high-cpu"):
                p.update(
                    hosts=hosts(1) if qt.endswith("-1") else None,
                    t0=start(12 * HOUR),
                    span=12 * HOUR,
                )
            elif qt == "groupby-orderby-limit":
                p.update(t1=start(0))
            items.append(p)
        out[qt] = items
    return out


def ts_literal(ms: int) -> str:
    return str(ms)


def sql_septet(p: dict) -> str:
    t = p["type"]
    if t.startswith(("single-groupby", "cpu-max-all")):
        aggs = ", ".join(f"max({m})" for m in p["metrics"])
        hosts = ", ".join(f"'{h}'" for h in p["hosts"])
        unit = "1m" if p["bucket"] == "minute" else "1h"
        return (
            f"SELECT _wstart, {aggs} FROM cpu WHERE hostname IN ({hosts}) AND "
            f"ts >= {p['t0']} AND ts < {p['t0'] + p['span']} INTERVAL({unit})"
        )
    if t.startswith("double-groupby"):
        aggs = ", ".join(f"avg({m})" for m in p["metrics"])
        return (
            f"SELECT _wstart, hostname, {aggs} FROM cpu WHERE ts >= {p['t0']} AND "
            f"ts < {p['t0'] + p['span']} PARTITION BY hostname INTERVAL(1h)"
        )
    if t.startswith("high-cpu"):
        host = f" AND hostname = '{p['hosts'][0]}'" if p["hosts"] else ""
        cols = ", ".join(CPU_FIELDS)
        return (
            f"SELECT ts, hostname, {cols} FROM cpu WHERE usage_user > 90.0 AND "
            f"ts >= {p['t0']} AND ts < {p['t0'] + p['span']}{host}"
        )
    if t == "lastpoint":
        cols = ", ".join(f"last_row({c})" for c in ("ts", *CPU_FIELDS))
        return f"SELECT hostname, {cols} FROM cpu PARTITION BY hostname"
    return (
        f"SELECT _wstart, max(usage_user) FROM cpu WHERE ts < {p['t1']} INTERVAL(1m) "
        "ORDER BY _wstart DESC LIMIT 5"
    )


def sql_duckdb(p: dict) -> str:
    t = p["type"]
    if t.startswith(("single-groupby", "cpu-max-all")):
        aggs = ", ".join(f"max({m})" for m in p["metrics"])
        hosts = ", ".join(f"'{h}'" for h in p["hosts"])
        return (
            f"SELECT time_bucket(INTERVAL 1 {p['bucket']}, time) AS b, {aggs} FROM cpu "
            f"WHERE hostname IN ({hosts}) AND time >= epoch_ms({p['t0']}) AND "
            f"time < epoch_ms({p['t0'] + p['span']}) GROUP BY b ORDER BY b"
        )
    if t.startswith("double-groupby"):
        aggs = ", ".join(f"avg({m})" for m in p["metrics"])
        return (
            f"SELECT time_bucket(INTERVAL 1 hour, time) AS b, hostname, {aggs} FROM cpu "
            f"WHERE time >= epoch_ms({p['t0']}) AND time < epoch_ms({p['t0'] + p['span']}) "
            "GROUP BY b, hostname ORDER BY hostname, b"
        )
    if t.startswith("high-cpu"):
        host = f" AND hostname = '{p['hosts'][0]}'" if p["hosts"] else ""
        cols = ", ".join(CPU_FIELDS)
        return (
            f"SELECT time, hostname, {cols} FROM cpu WHERE usage_user > 90.0 AND "
            f"time >= epoch_ms({p['t0']}) AND time < epoch_ms({p['t0'] + p['span']}){host}"
        )
    if t == "lastpoint":
        cols = ", ".join(("time", *CPU_FIELDS))
        return (
            f"SELECT DISTINCT ON (hostname) hostname, {cols} FROM cpu ORDER BY hostname, time DESC"
        )
    return (
        f"SELECT time_bucket(INTERVAL 1 minute, time) AS b, max(usage_user) FROM cpu "
        f"WHERE time < epoch_ms({p['t1']}) GROUP BY b ORDER BY b DESC LIMIT 5"
    )


def sql_sqlite(p: dict) -> str:
    t = p["type"]
    if t.startswith(("single-groupby", "cpu-max-all")):
        aggs = ", ".join(f"max({m})" for m in p["metrics"])
        hosts = ", ".join(f"'{h}'" for h in p["hosts"])
        b = 60_000 if p["bucket"] == "minute" else HOUR
        return (
            f"SELECT time / {b} * {b} AS b, {aggs} FROM cpu WHERE hostname IN ({hosts}) "
            f"AND time >= {p['t0']} AND time < {p['t0'] + p['span']} GROUP BY b ORDER BY b"
        )
    if t.startswith("double-groupby"):
        aggs = ", ".join(f"avg({m})" for m in p["metrics"])
        return (
            f"SELECT time / {HOUR} * {HOUR} AS b, hostname, {aggs} FROM cpu WHERE "
            f"time >= {p['t0']} AND time < {p['t0'] + p['span']} GROUP BY b, hostname"
        )
    if t.startswith("high-cpu"):
        host = f" AND hostname = '{p['hosts'][0]}'" if p["hosts"] else ""
        cols = ", ".join(CPU_FIELDS)
        return (
            f"SELECT time, hostname, {cols} FROM cpu WHERE usage_user > 90.0 AND "
            f"time >= {p['t0']} AND time < {p['t0'] + p['span']}{host}"
        )
    if t == "lastpoint":
        cols = ", ".join(f"c.{c}" for c in ("time", *CPU_FIELDS))
        return (
            f"SELECT c.hostname, {cols} FROM cpu c JOIN (SELECT hostname, max(time) AS t "
            "FROM cpu GROUP BY hostname) m ON c.hostname = m.hostname AND c.time = m.t"
        )
    return (
        f"SELECT time / 60000 * 60000 AS b, max(usage_user) FROM cpu WHERE "
        f"time < {p['t1']} GROUP BY b ORDER BY b DESC LIMIT 5"
    )


def sql_chdb(p: dict) -> str:
    t = p["type"]
    if t.startswith(("single-groupby", "cpu-max-all")):
        aggs = ", ".join(f"max({m})" for m in p["metrics"])
        hosts = ", ".join(f"'{h}'" for h in p["hosts"])
        fn = "toStartOfMinute" if p["bucket"] == "minute" else "toStartOfHour"
        return (
            f"SELECT {fn}(time) AS b, {aggs} FROM b.cpu WHERE hostname IN ({hosts}) AND "
            f"time >= fromUnixTimestamp64Milli({p['t0']}) AND "
            f"time < fromUnixTimestamp64Milli({p['t0'] + p['span']}) GROUP BY b ORDER BY b"
        )
    if t.startswith("double-groupby"):
        aggs = ", ".join(f"avg({m})" for m in p["metrics"])
        return (
            f"SELECT toStartOfHour(time) AS b, hostname, {aggs} FROM b.cpu WHERE "
            f"time >= fromUnixTimestamp64Milli({p['t0']}) AND "
            f"time < fromUnixTimestamp64Milli({p['t0'] + p['span']}) "
            "GROUP BY b, hostname ORDER BY hostname, b"
        )
    if t.startswith("high-cpu"):
        host = f" AND hostname = '{p['hosts'][0]}'" if p["hosts"] else ""
        cols = ", ".join(CPU_FIELDS)
        return (
            f"SELECT time, hostname, {cols} FROM b.cpu WHERE usage_user > 90.0 AND "
            f"time >= fromUnixTimestamp64Milli({p['t0']}) AND "
            f"time < fromUnixTimestamp64Milli({p['t0'] + p['span']}){host}"
        )
    if t == "lastpoint":
        cols = ", ".join(("time", *CPU_FIELDS))
        return (
            f"SELECT hostname, {cols} FROM b.cpu ORDER BY hostname, time DESC LIMIT 1 BY hostname"
        )
    return (
        f"SELECT toStartOfMinute(time) AS b, max(usage_user) FROM b.cpu WHERE "
        f"time < fromUnixTimestamp64Milli({p['t1']}) GROUP BY b ORDER BY b DESC LIMIT 5"
    )


def checksum(table: pa.Table) -> tuple[int, float]:
    """Rows and the sum of every floating-point column: equal results agree to ~1e-6."""
    total = 0.0
    for col in table.columns:
        if pa.types.is_floating(col.type):
            total += float(np.nansum(col.to_numpy(zero_copy_only=False)))
    return table.num_rows, total


# ----------------------------------------------------------------------------- systems
class Septet:
    name = "septet.tsdb"

    def __init__(self, path: Path, tags: pa.Table):
        self.path = path
        # A 2 GiB block cache, as DuckDB also keeps the data it read in memory (80% of RAM).
        self.con = tsdb.connect(path, fsync="always", block_cache_bytes=2 << 30)
        self.con.execute("CREATE DATABASE bench KEEP 36500 DURATION 10 PRECISION 'ms'")
        self.con.execute("USE bench")
        fields = ", ".join(f"{f} DOUBLE" for f in CPU_FIELDS)
        tag_defs = ", ".join(f"{t} VARCHAR(32)" for t in TAG_NAMES)
        self.con.execute(f"CREATE STABLE cpu (ts TIMESTAMP, {fields}) TAGS ({tag_defs})")
        # One sub-table per host, named by its hostname, with its tags (TSBS's layout).
        specs = [(row["hostname"], "cpu", row) for row in tags.to_pylist()]
        self.con.engine.create_child_tables("bench", specs, False)
        self.tag_of = tags

    def insert(self, batch: pa.Table) -> None:
        self.con.insert_arrow("cpu", batch.rename_columns(["ts", "tbname", *CPU_FIELDS]))

    def finish(self) -> None:
        # The memtable into segments (as DuckDB's CHECKPOINT); no system is reopened.
        self.con.flush()

    def query(self, p: dict) -> pa.Table:
        return self.con.execute(sql_septet(p)).fetch_arrow()

    def disk_bytes(self) -> int:
        return dir_size(self.path)

    def close(self) -> None:
        self.con.close()


class DuckDB:
    name = "DuckDB"

    def __init__(self, path: Path, tags: pa.Table):
        import duckdb

        self.path = path / "cpu.duckdb"
        path.mkdir(parents=True, exist_ok=True)
        self.db = duckdb.connect(str(self.path))
        fields = ", ".join(f"{f} DOUBLE" for f in CPU_FIELDS)
        self.db.execute(f"CREATE TABLE cpu (time TIMESTAMP, hostname VARCHAR, {fields})")
        self.db.register("tags_arrow", tags)
        self.db.execute("CREATE TABLE tags AS SELECT * FROM tags_arrow")

    def insert(self, batch: pa.Table) -> None:
        b = batch.set_column(0, "time", batch.column("ts").cast(pa.timestamp("ms")))
        self.db.register("batch", b)
        self.db.execute("INSERT INTO cpu SELECT * FROM batch")
        self.db.unregister("batch")

    def finish(self) -> None:
        self.db.execute("CHECKPOINT")

    def query(self, p: dict) -> pa.Table:
        return self.db.sql(sql_duckdb(p)).to_arrow_table()

    def disk_bytes(self) -> int:
        return dir_size(self.path)

    def close(self) -> None:
        self.db.close()


class SQLite:
    name = "SQLite"

    def __init__(self, path: Path, tags: pa.Table):
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "cpu.sqlite"
        self.db = sqlite3.connect(self.path)
        fields = ", ".join(f"{f} REAL" for f in CPU_FIELDS)
        self.db.execute(f"CREATE TABLE cpu (time INTEGER, hostname TEXT, {fields})")
        self.db.execute("CREATE INDEX cpu_host_time ON cpu (hostname, time)")
        self.db.execute("CREATE INDEX cpu_time ON cpu (time)")
        cols = ", ".join(f"{t} TEXT" for t in TAG_NAMES)
        self.db.execute(f"CREATE TABLE tags ({cols})")
        self.db.executemany(
            f"INSERT INTO tags VALUES ({', '.join('?' * len(TAG_NAMES))})",
            [tuple(r.values()) for r in tags.to_pylist()],
        )
        self.db.commit()

    def insert(self, batch: pa.Table) -> None:
        columns = [c.to_numpy(zero_copy_only=False).tolist() for c in batch.columns]
        marks = ", ".join("?" * batch.num_columns)
        with self.db:
            self.db.executemany(f"INSERT INTO cpu VALUES ({marks})", zip(*columns, strict=True))

    def finish(self) -> None:
        self.db.commit()

    def query(self, p: dict) -> pa.Table:
        cur = self.db.execute(sql_sqlite(p))
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})

    def disk_bytes(self) -> int:
        return dir_size(self.path)

    def close(self) -> None:
        self.db.close()


class ChDB:
    name = "chDB"

    def __init__(self, path: Path, tags: pa.Table):
        from chdb import session

        self.path = path
        self.s = session.Session(str(path))
        self.s.query("CREATE DATABASE IF NOT EXISTS b")
        fields = ", ".join(f"{f} Float64" for f in CPU_FIELDS)
        self.s.query(
            f"CREATE TABLE b.cpu (time DateTime64(3), hostname LowCardinality(String), "
            f"{fields}) ENGINE = MergeTree ORDER BY (hostname, time)"
        )

    def insert(self, batch: pa.Table) -> None:
        b = batch.set_column(0, "time", batch.column("ts").cast(pa.timestamp("ms")))  # noqa: F841
        self.s.query("INSERT INTO b.cpu SELECT * FROM Python(b)")

    def finish(self) -> None:
        self.s.query("OPTIMIZE TABLE b.cpu FINAL")

    def query(self, p: dict) -> pa.Table:
        return self.s.query(sql_chdb(p), "ArrowTable")

    def disk_bytes(self) -> int:
        # The table's active parts only: the session folder also holds ClickHouse's own logs.
        res = self.s.query(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'b' "
            "AND table = 'cpu' AND active",
            "CSV",
        )
        return int(str(res).strip())

    def close(self) -> None:
        self.s.close()


# ----------------------------------------------------------------------------- main
def rotate(items: list, k: int) -> list:
    """``items`` starting at position k (mod its length)."""
    k %= max(len(items), 1)
    return items[k:] + items[:k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--instances", type=int, default=5, help="query instances per type")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--systems", default="septet,duckdb,chdb,sqlite")
    ap.add_argument("--name", default=None, help="results file name [tsdb_<hosts>hosts]")
    ap.add_argument(
        "--queries", default=None, help="comma-separated query types to run [all of them]"
    )
    ap.add_argument("--no-save", action="store_true", help="print only; write no results files")
    args = ap.parse_args()
    query_types = QUERY_TYPES if args.queries is None else tuple(args.queries.split(","))
    unknown = sorted(set(query_types) - set(QUERY_TYPES))
    if unknown:
        ap.error(f"unknown query types {unknown}; choose from {', '.join(QUERY_TYPES)}")

    load_before = os.getloadavg()  # the machine is shared: say how busy it was
    started = time.strftime("%H:%M", time.gmtime())
    gen = CpuOnly(hosts=args.hosts, seed=args.seed)
    end = gen.start_ms + args.hours * HOUR
    tags = gen.tags()
    batches = list(gen.batches(end))  # generated once, outside every timing
    n_rows = sum(b.num_rows for b in batches)
    n_metrics = n_rows * len(CPU_FIELDS)
    queries = make_queries(gen, end, args.instances, args.seed)
    queries = {qt: queries[qt] for qt in query_types}
    classes = {"septet": Septet, "duckdb": DuckDB, "chdb": ChDB, "sqlite": SQLite}
    work = Path(tempfile.mkdtemp(prefix="tsdb-bench-"))
    ingest_rows, query_rows, results = [], [], {}
    answers: dict[str, dict[str, list]] = {}
    # The systems run side by side, interleaved batch by batch and query by query (in a
    # rotating order), so that the load of a shared machine weighs on all of them alike.
    systems = []
    try:
        for key in args.systems.split(","):
            cls = classes[key]
            try:
                systems.append(cls(work / key, tags))
            except ImportError as exc:
                print(f"skipping {cls.name}: {exc}")
        spent = {s.name: 0.0 for s in systems}
        for i, b in enumerate(batches):
            for system in rotate(systems, i):
                t = time.perf_counter()
                system.insert(b)
                spent[system.name] += time.perf_counter() - t
        for system in systems:
            t = time.perf_counter()
            system.finish()
            spent[system.name] += time.perf_counter() - t
            size = system.disk_bytes()
            elapsed = spent[system.name]
            ingest_rows.append(
                {
                    "system": system.name,
                    "rows": n_rows,
                    "seconds": elapsed,
                    "rows/s": n_rows / elapsed,
                    "metrics/s": n_metrics / elapsed,
                    "bytes on disk": size,
                    "bytes/metric": size / n_metrics,
                }
            )
            print(ingest_rows[-1], flush=True)
            answers[system.name] = {}
            results[system.name] = {"ingest": ingest_rows[-1], "latency_s": {}, "cpu_s": {}}
        for qt, items in queries.items():
            times: dict[str, list[float]] = {s.name: [] for s in systems}
            cpu: dict[str, list[float]] = {s.name: [] for s in systems}
            for system in systems:
                system.query(items[0])  # warm-up: first touch of files and caches
                answers[system.name][qt] = []
            for i, p in enumerate(items):
                for system in rotate(systems, i):
                    t, c = time.perf_counter(), time.process_time()
                    out = system.query(p)
                    times[system.name].append(time.perf_counter() - t)
                    # CPU time of the whole process (every thread of the system), which a
                    # shared machine's load does not inflate as it does wall time.
                    cpu[system.name].append(time.process_time() - c)
                    answers[system.name][qt].append(checksum(out))
            for system in systems:
                results[system.name]["latency_s"][qt] = statistics.median(times[system.name])
                results[system.name]["cpu_s"][qt] = statistics.median(cpu[system.name])
            print(
                qt, {k: round(statistics.median(v) * 1000, 2) for k, v in times.items()}, flush=True
            )
    finally:
        for system in systems:
            system.close()
        shutil.rmtree(work, ignore_errors=True)

    load_after = os.getloadavg()
    base = answers.get("DuckDB")
    for qt in query_types:
        row = {"query": qt}
        for name, res in results.items():
            row[f"{name} ms"] = res["latency_s"][qt] * 1000
        if "septet.tsdb" in results and "DuckDB" in results:
            ours, duck = results["septet.tsdb"], results["DuckDB"]
            row["septet/DuckDB"] = ours["latency_s"][qt] / duck["latency_s"][qt]
            row["septet CPU ms"] = ours["cpu_s"][qt] * 1000
            row["DuckDB CPU ms"] = duck["cpu_s"][qt] * 1000
            row["septet/DuckDB CPU"] = ours["cpu_s"][qt] / duck["cpu_s"][qt]
        if base is not None:
            agree = []
            for name in answers:
                same = all(
                    a[0] == b[0] and math.isclose(a[1], b[1], rel_tol=1e-6, abs_tol=1e-6)
                    for a, b in zip(answers[name][qt], base[qt], strict=True)
                )
                agree.append(f"{name}:{'ok' if same else 'DIFF'}")
            row["same answers as DuckDB"] = " ".join(agree)
        query_rows.append(row)
        print(row, flush=True)
    if args.no_save:
        return
    name = args.name or f"tsdb_{args.hosts}hosts"
    write_benchmark_results(
        name,
        {
            "hosts": args.hosts,
            "hours": args.hours,
            "rows": n_rows,
            "metrics": n_metrics,
            "instances_per_query": args.instances,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "systems": results,
        },
        {
            "Ingest (bulk, in time order, 360 timestamps x all hosts per batch)": ingest_rows,
            "Median query latency (TSBS devops)": query_rows,
        },
        notes=(
            f"TSBS cpu-only port, {args.hosts} hosts x {args.hours} h at 10 s "
            f"({n_rows:,} rows, {n_metrics:,} metrics), seed {args.seed}. The systems run "
            "in one process, interleaved batch by batch and query by query in a rotating "
            "order, so a shared machine's load falls on all alike. Ingest time includes "
            "the final flush/checkpoint to disk; septet.tsdb's WAL fsyncs every batch and "
            "it has a 2 GiB block cache (DuckDB's default memory limit is 80% of RAM); no "
            "system is reopened after ingest, so each keeps what it wrote in memory (septet's "
            "flush leaves the rows it wrote in its block cache). "
            "Latency: median of the query instances after one warm-up instance, the same "
            "instances for every system; CPU ms: the median CPU time of the process during "
            "a query (all of a system's threads), which a shared machine's load inflates "
            "less than wall time. chDB: MergeTree ORDER BY (hostname, time), default "
            "codecs, size of its active parts after OPTIMIZE FINAL. SQLite: indexes on "
            "(hostname, time) and (time), counted in its size. Run from "
            f"{started} to {time.strftime('%H:%M', time.gmtime())} UTC; load average "
            f"(1/5/15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, after "
            f"{', '.join(f'{x:.2f}' for x in load_after)} (2 cores, shared with other jobs)."
        ),
    )


if __name__ == "__main__":
    os.environ.setdefault("SEPTET_QUIET", "1")
    main()
