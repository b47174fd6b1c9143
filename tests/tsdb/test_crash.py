"""Crash safety: a writer is killed with SIGKILL at a random moment; on reopen every
acknowledged batch is there in full and nothing else (no partial batch, no garbage)."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import septet.tsdb as tsdb

WRITER = Path(__file__).with_name("crash_writer.py")
ROWS = 50


@pytest.mark.parametrize("fsync,seed", [("always", 1), ("off", 2), ("periodic", 3)])
def test_every_acknowledged_batch_survives_kill_9(tmp_path, fsync, seed):
    rng = random.Random(seed)
    base = (int(time.time()) - 3600) * 1000
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(tmp_path), fsync, str(base)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked = []
    target = rng.randint(10, 40)
    deadline = time.monotonic() + 60
    while len(acked) < target and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(int(line))
    time.sleep(rng.random() * 0.05)  # land the kill anywhere in the next write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    acked += [int(x) for x in proc.stdout.read().split()]  # printed before the kill landed
    assert len(acked) >= 10, "the writer did not get going"

    con = tsdb.connect(tmp_path, "db")
    got = con.execute("SELECT ts, v FROM m").fetch_arrow()
    ts = got.column("ts").cast("int64").to_pylist()
    v = got.column("v").to_pylist()
    batches: dict[int, set[int]] = {}
    for t, value in zip(ts, v, strict=True):
        offset = t - base
        batch, i = divmod(offset, ROWS)
        assert value == batch * 1000 + i, "a row with a value that was never written"
        batches.setdefault(batch, set()).add(i)
    for b in acked:
        assert batches.get(b) == set(range(ROWS)), f"acknowledged batch {b} is incomplete"
    for b, rows in batches.items():
        assert rows == set(range(ROWS)), f"batch {b} is torn"
        assert b <= max(acked) + 1  # at most the one batch in flight at the kill
    # The reopened database takes new writes after the recovered ones.
    con.execute(f"INSERT INTO d0 VALUES ({base - 1}, -1)")
    con.close()
    con = tsdb.connect(tmp_path, "db")
    assert con.execute("SELECT count(*) FROM m").fetchone()[0] == len(ts) + 1
