"""The tsdb demo: TSBS-style cpu readings of 20 hosts for 6 hours into a database directory,
then TDengine-style queries over the super table; results are written as CSV files."""

from __future__ import annotations

import time
from pathlib import Path

from septet.common.demo import DemoReport

QUERIES = {
    "hourly_avg_per_host": "SELECT _wstart, hostname, avg(usage_user), max(usage_system) "
    "FROM cpu PARTITION BY hostname INTERVAL(1h)",
    "busiest_region": "SELECT region, avg(usage_user) AS busy FROM cpu GROUP BY region "
    "ORDER BY busy DESC",
    "lastpoint": "SELECT hostname, last_row(ts), last_row(usage_user) FROM cpu "
    "PARTITION BY hostname",
    "ten_minute_windows_sliding": "SELECT _wstart, max(usage_user), twa(usage_user) FROM cpu "
    "WHERE hostname = 'host_3' INTERVAL(10m) SLIDING(5m) LIMIT 6",
    "top_readings": "SELECT ts, hostname, top(usage_user, 3) FROM cpu PARTITION BY hostname "
    "SLIMIT 2",
}


def run_demo(out_dir: Path) -> DemoReport:
    """Ingest, reopen, query; returns ingest speed, bytes per metric and query answers."""
    import septet.tsdb as tsdb
    from septet.tsdb.tsbs import CPU_FIELDS, TAG_NAMES, CpuOnly

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    db_dir = out_dir / "tsdb-data"
    if db_dir.exists():
        import shutil

        shutil.rmtree(db_dir)
    gen = CpuOnly(hosts=20, seed=7)
    end = gen.start_ms + 6 * 3_600_000
    batches = list(gen.batches(end))
    tags = gen.tags()
    con = tsdb.connect(db_dir)
    con.execute("CREATE DATABASE demo KEEP 36500 DURATION 1 PRECISION 'ms'")
    con.execute("USE demo")
    fields = ", ".join(f"{f} DOUBLE" for f in CPU_FIELDS)
    tag_defs = ", ".join(f"{t} VARCHAR(32)" for t in TAG_NAMES)
    con.execute(f"CREATE STABLE cpu (ts TIMESTAMP, {fields}) TAGS ({tag_defs})")
    start = time.perf_counter()
    rows = 0
    for batch in batches:
        # Each row carries its host's tags; unknown sub-tables are created from them.
        rows_with_tags = batch.join(tags, "hostname")
        rows += con.insert_arrow(
            "cpu", rows_with_tags.append_column("tbname", rows_with_tags.column("hostname"))
        )
    con.close()
    elapsed = time.perf_counter() - start
    size = sum(p.stat().st_size for p in db_dir.rglob("*") if p.is_file())
    metrics = rows * len(CPU_FIELDS)

    con = tsdb.connect(db_dir, "demo")
    outputs = []
    timings = {}
    for name, sql in QUERIES.items():
        t = time.perf_counter()
        df = con.execute(sql).fetch_df()
        timings[name] = (time.perf_counter() - t) * 1000
        path = out_dir / f"{name}.csv"
        df.to_csv(path, index=False)
        outputs.append(path)
    busiest = con.execute(QUERIES["busiest_region"]).fetchone()
    con.close()
    summary = (
        f"ingested {rows:,} rows ({metrics:,} metrics) at {metrics / elapsed / 1e6:.2f} M "
        f"metrics/s, {size / metrics:.2f} bytes/metric on disk; lastpoint of 20 hosts in "
        f"{timings['lastpoint']:.1f} ms; busiest region {busiest[0]} ({busiest[1]:.1f}% user)"
    )
    return DemoReport(summary, outputs)
