"""``septet tsdb bench``: taosBenchmark's default load, into a directory or a server over REST.

Super table ``meters(ts, current FLOAT, voltage INT, phase FLOAT) TAGS(groupid INT,
location VARCHAR(24))``, ``tables`` sub-tables ``d0..`` with ``rows`` rows each, 1 ms apart from
``start``, written ``batch`` rows per INSERT statement, then a summary (rows/s) and a check query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from septet.common.progress import track
from septet.tsdb.catalog import check_identifier
from septet.tsdb.errors import TsdbError

LOCATIONS = ["California.SanFrancisco", "California.LosAngeles", "California.SanDiego",
             "California.SanJose", "California.PaloAlto", "California.Campbell",
             "California.MountainView", "California.Sunnyvale", "California.SantaClara",
             "California.Cupertino"]  # fmt: skip
START = 1_700_000_000_000


@dataclass
class BenchSummary:
    tables: int
    rows: int
    seconds: float
    check_count: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)

    def line(self) -> str:
        per_table = self.rows // max(self.tables, 1)
        return (
            f"{self.tables} tables x {per_table} rows = {self.rows} rows "
            f"in {self.seconds:.2f} s: {self.rows_per_second:,.0f} rows/s; "
            f"SELECT count(*) FROM meters = {self.check_count}"
        )


def _statements(tables: int, rows: int, batch: int, database: str, seed: int):
    rng = np.random.default_rng(seed)
    for t in range(tables):
        loc = LOCATIONS[t % len(LOCATIONS)]
        for r0 in range(0, rows, batch):
            n = min(batch, rows - r0)
            cur = rng.uniform(8, 12, n)
            vol = rng.integers(215, 225, n)
            ph = rng.uniform(0.2, 0.4, n)
            values = " ".join(
                f"({START + r0 + i}, {cur[i]:.3f}, {vol[i]}, {ph[i]:.4f})" for i in range(n)
            )
            yield n, (f"INSERT INTO {database}.d{t} USING {database}.meters "
                      f"TAGS ({t % 10 + 1}, '{loc}') VALUES {values}")  # fmt: skip


def run_bench(
    target: Any,
    tables: int = 100,
    rows: int = 1000,
    batch: int = 1000,
    database: str = "test",
    seed: int = 0,
) -> BenchSummary:
    """Load ``tables`` x ``rows`` into ``target``: a Connection, or a function sql(text)->dict
    (a REST client). The INSERTs are generated here from numbers, never from user text."""
    if tables <= 0 or rows <= 0 or batch <= 0:
        raise TsdbError("--tables, --rows and --batch must be positive")
    database = check_identifier(database, "database")  # the only text put into the SQL
    if hasattr(target, "execute"):

        def sql(text: str) -> Any:
            cur = target.execute(text)
            return cur.fetchall() if cur.description else cur.rowcount
    else:
        sql = target
    sql(f"DROP DATABASE IF EXISTS {database}")
    sql(f"CREATE DATABASE {database} PRECISION 'ms' KEEP 36500")
    sql(f"CREATE STABLE {database}.meters (ts TIMESTAMP, current FLOAT, voltage INT, "
        "phase FLOAT) TAGS (groupid INT, location VARCHAR(24))")  # fmt: skip
    total = 0
    steps = tables * -(-rows // batch)
    t0 = time.perf_counter()
    for n, stmt in track(_statements(tables, rows, batch, database, seed), steps, "inserting"):
        sql(stmt)
        total += n
    seconds = time.perf_counter() - t0
    out = sql(f"SELECT count(*) FROM {database}.meters")
    count = out[0][0] if isinstance(out, list) else out["data"][0][0]
    return BenchSummary(tables, total, seconds, int(count))
