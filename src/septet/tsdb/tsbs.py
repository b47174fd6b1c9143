"""A port of TSBS's cpu-only data generator (github.com/timescale/tsbs, use case "cpu-only"),
vectorised with numpy, and its devops query parameters.

Each host has TSBS's 10 tags (hostname, region, datacenter, rack, os, arch, team, service,
service_version, service_environment) and emits TSBS's 10 cpu fields every interval (10 s
by default), all hosts at the same timestamps. Each field is TSBS's clamped random walk:
start uniformly in [0, 100), add a N(0, 1) step per reading, clamp to [0, 100].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

CPU_FIELDS = (
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
)
TAG_NAMES = (
    "hostname",
    "region",
    "datacenter",
    "rack",
    "os",
    "arch",
    "team",
    "service",
    "service_version",
    "service_environment",
)
# TSBS's regions and their datacenters.
REGIONS = {
    "us-east-1": ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"),
    "us-west-1": ("us-west-1a", "us-west-1b"),
    "us-west-2": ("us-west-2a", "us-west-2b", "us-west-2c"),
    "eu-west-1": ("eu-west-1a", "eu-west-1b", "eu-west-1c"),
    "eu-central-1": ("eu-central-1a", "eu-central-1b"),
    "ap-southeast-1": ("ap-southeast-1a", "ap-southeast-1b"),
    "ap-southeast-2": ("ap-southeast-2a", "ap-southeast-2b"),
    "ap-northeast-1": ("ap-northeast-1a", "ap-northeast-1c"),
    "sa-east-1": ("sa-east-1a", "sa-east-1b", "sa-east-1c"),
}
OS_CHOICES = ("Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10")
ARCH_CHOICES = ("x64", "x86")
TEAM_CHOICES = ("SF", "NYC", "LON", "CHI")
ENV_CHOICES = ("production", "staging", "test")
START_MS = 1_451_606_400_000  # 2016-01-01T00:00:00Z, TSBS's default start


@dataclass
class CpuOnly:
    """The generator's parameters (TSBS flags: --scale, --seed, --log-interval)."""

    hosts: int = 100
    seed: int = 123
    interval_ms: int = 10_000
    start_ms: int = START_MS

    def tags(self) -> pa.Table:
        """One row per host with its 10 tags."""
        rng = np.random.default_rng(self.seed)
        regions = list(REGIONS)
        region_idx = rng.integers(0, len(regions), self.hosts)
        region = [regions[i] for i in region_idx]
        dcs = [REGIONS[r][int(rng.integers(0, len(REGIONS[r])))] for r in region]
        return pa.table(
            {
                "hostname": [f"host_{i}" for i in range(self.hosts)],
                "region": region,
                "datacenter": dcs,
                "rack": [str(x) for x in rng.integers(0, 100, self.hosts)],
                "os": [OS_CHOICES[i] for i in rng.integers(0, 3, self.hosts)],
                "arch": [ARCH_CHOICES[i] for i in rng.integers(0, 2, self.hosts)],
                "team": [TEAM_CHOICES[i] for i in rng.integers(0, 4, self.hosts)],
                "service": [str(x) for x in rng.integers(0, 20, self.hosts)],
                "service_version": [str(x) for x in rng.integers(0, 2, self.hosts)],
                "service_environment": [ENV_CHOICES[i] for i in rng.integers(0, 3, self.hosts)],
            }
        )

    def batches(self, end_ms: int, rows_per_step: int = 360):
        """Readings from start to ``end_ms`` in time order, ``rows_per_step`` timestamps per
        Arrow batch (all hosts each): columns ts (ms), hostname, then the 10 fields."""
        rng = np.random.default_rng(self.seed + 1)
        n_fields = len(CPU_FIELDS)
        state = rng.random((self.hosts, n_fields)) * 100.0
        steps_total = (end_ms - self.start_ms) // self.interval_ms
        hostnames = np.array([f"host_{i}" for i in range(self.hosts)], dtype=object)
        for first in range(0, steps_total, rows_per_step):
            k = min(rows_per_step, steps_total - first)
            out = np.empty((k, self.hosts, n_fields))
            noise = rng.normal(0.0, 1.0, (k, self.hosts, n_fields))
            for j in range(k):  # the clamp makes each step depend on the last
                np.clip(state + noise[j], 0.0, 100.0, out=state)
                out[j] = state
            ts = self.start_ms + (first + np.arange(k)) * self.interval_ms
            cols = {
                "ts": pa.array(np.repeat(ts, self.hosts), pa.int64()),
                "hostname": pa.array(np.tile(hostnames, k), pa.string()),
            }
            flat = out.reshape(k * self.hosts, n_fields)
            for f, name in enumerate(CPU_FIELDS):
                cols[name] = pa.array(np.ascontiguousarray(flat[:, f]))
            yield pa.table(cols)
