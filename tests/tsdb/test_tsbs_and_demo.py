"""The TSBS cpu-only generator port and the demo."""

import numpy as np
import pyarrow as pa

from septet.tsdb.demo import run_demo
from septet.tsdb.tsbs import CPU_FIELDS, REGIONS, TAG_NAMES, CpuOnly


def test_generator_emits_tsbs_tags_fields_and_interval():
    gen = CpuOnly(hosts=7, seed=1)
    tags = gen.tags()
    assert tags.column_names == list(TAG_NAMES) and tags.num_rows == 7
    for region, dc in zip(
        tags.column("region").to_pylist(), tags.column("datacenter").to_pylist(), strict=True
    ):
        assert dc in REGIONS[region]
    batches = list(gen.batches(gen.start_ms + 3_600_000, rows_per_step=100))
    table = pa.concat_tables(batches)
    assert table.column_names == ["ts", "hostname", *CPU_FIELDS]
    assert table.num_rows == 360 * 7  # one reading per host every 10 s for an hour
    ts = np.unique(table.column("ts").to_numpy())
    assert (np.diff(ts) == 10_000).all() and ts[0] == gen.start_ms
    for field in CPU_FIELDS:
        v = table.column(field).to_numpy()
        assert v.min() >= 0.0 and v.max() <= 100.0  # TSBS's clamped random walk


def test_generator_is_seeded():
    a = next(CpuOnly(hosts=3, seed=5).batches(CpuOnly().start_ms + 60_000))
    b = next(CpuOnly(hosts=3, seed=5).batches(CpuOnly().start_ms + 60_000))
    assert a.equals(b)


def test_demo_ingests_queries_and_writes_csv(tmp_path):
    report = run_demo(tmp_path)
    assert "ingested 43,200 rows" in report.summary
    assert all(p.exists() and p.stat().st_size > 0 for p in report.outputs)
    lastpoint = (tmp_path / "lastpoint.csv").read_text().splitlines()
    assert len(lastpoint) == 21  # header + one row per host
