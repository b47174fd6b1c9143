"""Shared fixtures: a small super table with irregular, out-of-order, partly NULL data, and
the same rows in DuckDB as the reference to check query results against."""

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import septet.tsdb as tsdb

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC, in ms
MINUTE = 60_000


def _raw_rows(seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    parts = []
    for i, (site, grp) in enumerate([("north", 1), ("north", 2), ("south", 1), ("east", 3)]):
        n = 300
        # Irregular steps of 5..55 s, with a 25-minute hole in the middle for FILL to see.
        steps = rng.integers(5, 56, size=n) * 1000
        ts = T0 + np.cumsum(steps) + i * 1000
        ts[n // 2 :] += 25 * MINUTE
        v = np.round(rng.normal(50, 10, size=n), 3)
        nn = rng.integers(-100, 100, size=n)
        v_valid = rng.random(n) > 0.1
        n_valid = rng.random(n) > 0.1
        parts.append(
            pa.table(
                {
                    "tbname": [f"d{i}"] * n,
                    "site": [site] * n,
                    "grp": pa.array([grp] * n, pa.int32()),
                    "ts": pa.array(ts, pa.int64()),
                    "v": pa.array(v, mask=~v_valid),
                    "n": pa.array(nn, pa.int32(), mask=~n_valid),
                }
            )
        )
    return pa.concat_tables(parts)


@pytest.fixture(scope="session")
def raw() -> pa.Table:
    return _raw_rows()


@pytest.fixture(scope="session")
def con(raw):
    """A database with super table m(ts, v DOUBLE, n INT) TAGS(site, grp), sub-tables d0..d3."""
    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE db PRECISION 'ms' KEEP 36500")
    c.execute("USE db")
    c.execute("CREATE STABLE m (ts TIMESTAMP, v DOUBLE, n INT) TAGS (site VARCHAR(16), grp INT)")
    # Half flushed into segments, then the rest inserted out of order into the memtable.
    order = np.random.default_rng(3).permutation(raw.num_rows)
    first, second = order[: raw.num_rows // 2], order[raw.num_rows // 2 :]
    c.insert_arrow("m", raw.take(pa.array(np.sort(first))))
    c.flush()
    c.insert_arrow("m", raw.take(pa.array(second)))
    return c


@pytest.fixture(scope="session")
def duck(raw):
    d = duckdb.connect()
    d.register("raw_arrow", raw)
    d.execute("CREATE TABLE raw AS SELECT * FROM raw_arrow")
    return d
