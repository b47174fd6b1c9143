"""The flush process: segment files encoded beside the engine, not in its process.

Encoding a memtable into a segment (per table and column: codecs, statistics, zstd) is
mostly Python work on small arrays, so on a thread it would hold the GIL and stall the
writes it should run beside. A server's engine (``EngineOptions.background_flush``) instead
freezes its memtable, starts a new WAL generation, and has a process of its own read the
frozen rows back from the WAL (which holds exactly them: nothing is copied to hand them
over) and encode them, while it goes on taking writes and reading the frozen memtable. The
engine commits the segments (manifest, WAL checkpoint) when the process is done, or, should
the process fail, encodes them itself from the rows it still holds.

The process is ``python -m septet.tsdb.flusher`` (see subprocesses.py), one JSON line per job
in, one line of answer out.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from septet.common.atomic import atomic_write_bytes
from septet.tsdb.segment import TS, SegmentWriter
from septet.tsdb.subprocesses import start_module


@dataclass(frozen=True)
class FlushJob:
    """What the flush process needs to turn frozen WAL records into segments."""

    wal_dir: str
    generations: list[int]  # the WAL files holding the frozen rows
    after_seq: int  # records with after_seq < seq <= upto_seq are the frozen rows
    upto_seq: int
    tables: dict[int, tuple[str, list[str]]]  # uid -> (database, its columns now)
    databases: dict[str, tuple[int, str, int, int]]  # span, compressor, level, block rows
    segments: dict[str, str]  # "database/partition" -> the segment file to write


def write_segments(job: FlushJob) -> list[str]:
    """The frozen rows as segment files (atomically), one per partition they fall in;
    returns the "database/partition" keys written. Rows of tables dropped since, and
    columns dropped since, are left out, as recovery leaves them out."""
    from septet.tsdb.engine import _INSERT, decode_groups
    from septet.tsdb.wal import read_records

    # Per uid (numpy lookups, not dicts per run): its database's number and the number of
    # its column list; -1 for a table dropped since (uids grow: it may be past every live one).
    names = sorted({db for db, _ in job.tables.values()})
    shapes: dict[tuple[str, ...], int] = {}
    top = max(job.tables, default=0)
    db_of = np.full(top + 1, -1, np.int64)
    shape_of = np.full(top + 1, -1, np.int64)
    for u, (db, cols) in job.tables.items():
        db_of[u] = names.index(db)
        shape_of[u] = shapes.setdefault(tuple(cols), len(shapes))
    columns_of = {k: list(cols) for cols, k in shapes.items()}

    def lookup(table: np.ndarray, uids: np.ndarray) -> np.ndarray:
        return np.where(uids <= top, table[np.minimum(uids, top)], -1)

    parts, part_uids = [], []
    for gen in job.generations:
        path = Path(job.wal_dir) / f"{gen:012d}.log"
        if not path.exists():
            continue
        for seq, kind, body in read_records(path, truncate=False):
            if kind != _INSERT or not job.after_seq < seq <= job.upto_seq:
                continue
            for rows, uids, counts in decode_groups(body):
                shape = lookup(shape_of, uids)
                live = np.unique(shape[shape >= 0])
                if live.size > 1:  # tables with different columns now: each its own
                    for k, a, n in zip(shape, np.cumsum(counts) - counts, counts, strict=True):
                        part = rows.slice(int(a), int(n))
                        parts.append(_live(part, columns_of.get(int(k))))
                    part_uids += [np.full(int(n), u) for u, n in zip(uids, counts, strict=True)]
                    continue
                parts.append(_live(rows, columns_of.get(int(live[0])) if live.size else None))
                part_uids.append(np.repeat(uids, counts))
    if not parts:
        return []
    try:
        rows = pa.concat_tables(parts)
    except pa.ArrowInvalid:  # a column added or dropped between the records
        rows = pa.concat_tables(parts, promote_options="permissive")
    uid = np.concatenate(part_uids)
    # Each row's segment: its table's database and the partition of its timestamp.
    db_index = lookup(db_of, uid)
    known = db_index >= 0
    db_index[~known] = 0
    spans = np.array([job.databases[n][0] for n in names] or [1], np.int64)
    ts = rows.column(TS).to_numpy()
    pid = ts // spans[db_index]
    # Sorted by segment, table and time; of rows with one (table, time) the last written.
    order = np.lexsort((np.arange(uid.size), ts, uid, pid, db_index))
    order = order[known[order]]
    u, t, p, d = uid[order], ts[order], pid[order], db_index[order]
    last = np.ones(order.size, bool)
    last[:-1] = (u[1:] != u[:-1]) | (t[1:] != t[:-1]) | (p[1:] != p[:-1])
    order, u, p, d = order[last], u[last], p[last], d[last]
    rows = rows.take(pa.array(order))
    written = []
    new_segment = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (d[1:] != d[:-1])])
    for a, b in zip(new_segment, np.r_[new_segment[1:], u.size], strict=True):
        db = names[int(d[a])]
        key = f"{db}/{int(p[a])}"
        _, compressor, level, block_rows = job.databases[db]
        writer = SegmentWriter(compressor, level, block_rows)
        cuts = a + np.flatnonzero(np.r_[True, u[a + 1 : b] != u[a : b - 1]])
        for x, y in zip(cuts.tolist(), np.r_[cuts[1:], b].tolist(), strict=True):
            writer.add_table(int(u[x]), rows.slice(x, y - x))
        atomic_write_bytes(Path(job.segments[key]), writer.finish())
        written.append(key)
    return written


def _live(rows: pa.Table, columns: list[str] | None) -> pa.Table:
    """``rows`` without the columns its table no longer has (None: a dropped table's)."""
    if columns is None:
        return rows
    keep = [TS, *(c for c in rows.column_names if c in columns)]
    return rows if len(keep) == rows.num_columns else rows.select(keep)


class Flusher:
    """The flush process, started on first use, and a thread that waits for its answers."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None

    def _process(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = start_module("septet.tsdb.flusher")
        return self._proc

    def submit(self, job: FlushJob, done: Callable[[Exception | None, list[str]], None]) -> None:
        """Start ``job``; ``done(failure or None, keys written)`` is called on another thread."""
        proc = self._process()

        def wait() -> None:
            written: list[str] = []
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(json.dumps(asdict(job)).encode() + b"\n")
                proc.stdin.flush()
                answer = proc.stdout.readline()
                if not answer:
                    raise RuntimeError(f"the flush process exited ({proc.wait()})")
                reply = json.loads(answer)
                failure = None if reply["error"] is None else RuntimeError(reply["error"])
                written = reply.get("written", [])
            except Exception as e:  # a broken pipe: the process is gone
                failure = e
            done(failure, written)

        threading.Thread(target=wait, name="tsdb-flush-wait", daemon=True).start()

    def close(self) -> None:
        """End the process (after the job it may be running)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()


def _serve() -> None:
    """The flush process: a JSON job per line in, ``{"error", "written"}`` out, until EOF."""
    # Ctrl-C reaches the whole process group: the server decides when flushing stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for line in sys.stdin.buffer:
        written: list[str] = []
        try:
            spec = json.loads(line)
            spec["tables"] = {int(k): tuple(v) for k, v in spec["tables"].items()}
            spec["databases"] = {k: tuple(v) for k, v in spec["databases"].items()}
            written = write_segments(FlushJob(**spec))
            error = None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        reply = {"error": error, "written": written}
        sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    _serve()


__all__ = ["FlushJob", "Flusher", "write_segments"]
