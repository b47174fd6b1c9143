"""The storage engine: catalog, write-ahead log, memtable, segments per time partition,
retention, the last-row cache and the merge of out-of-order and duplicate rows.

Durability contract (also in docs/tsdb.md):
1. A write (INSERT, insert_arrow) is acknowledged only after its WAL record is written whole
   (and fsync'ed under ``fsync="always"``). After a crash, recovery replays every intact WAL
   record newer than the manifest's checkpoint; a torn tail is truncated, never loaded.
2. DDL (CREATE/DROP/ALTER, auto-created tables) is acknowledged after the manifest, which
   holds the catalog, is atomically replaced (temp file, fsync, rename, fsync directory).
3. A flush writes the memtable into new segment files (atomically), then a manifest that
   names them and moves the WAL checkpoint, and only then deletes old WAL files and replaced
   segments. A crash anywhere leaves either the old manifest (WAL still there) or the new one.
   A background flush (servers) freezes the memtable and starts a new WAL generation; until
   its segments are committed the manifest names the frozen rows' generation, so recovery
   replays both; segment files the manifest does not name are removed on open.
4. DELETE flushes, then rewrites the affected partitions and commits them with the manifest.
5. A row's identity is (table, timestamp): a later write of the same timestamp replaces the
   whole row, in the memtable, across segments (newer segment wins) and in compaction.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import mmap
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from septet.common.atomic import atomic_write_bytes, atomic_write_json
from septet.tsdb.blocks import BlockPiece, Piece, RowsPiece, cache_written, clip
from septet.tsdb.catalog import (
    Column,
    Database,
    DatabaseOptions,
    SuperTable,
    Table,
    arrow_type,
    check_identifier,
)
from septet.tsdb.errors import TsdbError
from septet.tsdb.segment import (
    TS,
    BlockCache,
    BlockMeta,
    SegmentReader,
    SegmentWriter,
    col_key,
)
from septet.tsdb.wal import WriteAheadLog, generations, read_records

MANIFEST = "MANIFEST.json"
_log = logging.getLogger(__name__)
_INSERT = 1
_GROUP_HEADER = struct.Struct("<QQ")  # tables in the group, IPC stream length
_MAX_CHUNKS = 32  # memtable chunks per table before they are merged into one


def default_cache_bytes() -> int:
    """A quarter of the machine's memory, between 512 MiB and 8 GiB (DuckDB takes 80%): a
    fleet-wide query over a day of 1,000 hosts decodes ~1 GB of columns."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        total = 4 << 30
    return int(min(max(total // 4, 512 << 20), 8 << 30))


@dataclass
class EngineOptions:
    """How the engine trades durability and memory for speed."""

    fsync: str = "always"  # "always" | "periodic" | "off": see septet.tsdb.wal
    fsync_period_ms: int = 1000
    memtable_bytes: int = 256 << 20  # flush when the memtable holds this much
    max_segments: int = 4  # segments per partition before they are compacted into one
    block_cache_bytes: int = field(default_factory=default_cache_bytes)
    query_threads: int = 0  # threads that decode and aggregate a query's tables; 0: one per core
    # Encode flushed segments in a process of their own while writes go on (septet.tsdb.flusher):
    # what a server wants; embedded use keeps the simpler flush in the caller's thread.
    background_flush: bool = False
    # Map segment files with their pages mapped at once (MAP_POPULATE) while the mapped files
    # fit in block_cache_bytes: the first read of a block through a fresh map otherwise takes
    # a page fault (~4 us of a ~10 us block decode, what a restarted server pays on every
    # block its queries read first). Opening then reads the files not in the page cache whole:
    # worth it for a long-lived server, not for a one-off query (the server turns it on).
    populate_maps: bool = False

    @staticmethod
    def from_kwargs(kwargs: dict[str, Any]) -> EngineOptions:
        known = {f.name for f in fields(EngineOptions)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TsdbError(
                f"unknown option {unknown[0]!r}; the options are: {', '.join(sorted(known))}"
            )
        return EngineOptions(**kwargs)


class _MemTable:
    """The rows of one table not yet flushed: Arrow chunks in arrival order."""

    __slots__ = ("chunks", "nbytes", "ranges", "sorted")

    def __init__(self) -> None:
        self.chunks: list[pa.Table] = []
        self.ranges: list[tuple[int, int]] = []
        self.sorted: list[bool] = []
        self.nbytes = 0

    def add(self, rows: pa.Table, meta: RowsMeta | None = None) -> None:
        if meta is None:
            meta = RowsMeta.of(rows)
        self.chunks.append(rows)
        self.ranges.append((meta.lo, meta.hi))
        self.sorted.append(meta.increasing)
        self.nbytes += meta.nbytes

    def followed_by(self, later: _MemTable) -> _MemTable:
        """A memtable of this one's chunks, then ``later``'s (newer)."""
        both = _MemTable()
        both.chunks, both.ranges = self.chunks + later.chunks, self.ranges + later.ranges
        both.sorted, both.nbytes = self.sorted + later.sorted, self.nbytes + later.nbytes
        return both


@dataclass(frozen=True)
class RowsMeta:
    """What the memtable keeps about a batch of one table's rows (computed in bulk upstream)."""

    lo: int
    hi: int
    increasing: bool  # timestamps strictly increasing
    nbytes: int

    @staticmethod
    def of(rows: pa.Table) -> RowsMeta:
        ts = rows.column(TS).to_numpy()
        increasing = bool(ts.size < 2 or (np.diff(ts) > 0).all())
        return RowsMeta(int(ts.min()), int(ts.max()), increasing, rows.nbytes)


@dataclass
class TableRuns:
    """Rows of many tables of one database and one schema in a single Arrow table, each
    table's rows one run: what an insert into a super table's sub-tables hands the engine.

    The engine keeps such inserts whole until something reads the memtable, then splits
    them per table once for all of them (:meth:`Engine._settle`): a slice and a RowsMeta per
    table and insert cost ~15 ms per 10,000 lines at 1,000 hosts, more than the parsing."""

    rows: pa.Table
    uids: np.ndarray  # int64, one per run; the runs follow each other in row order
    counts: np.ndarray  # rows per run
    lo: np.ndarray  # each run's smallest and largest timestamp
    hi: np.ndarray
    increasing: np.ndarray  # bool: the run's timestamps strictly increase

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows

    @property
    def starts(self) -> np.ndarray:
        """Each run's first row."""
        return np.cumsum(self.counts) - self.counts

    def split(self) -> list[tuple[int, pa.Table]]:
        """One (uid, rows) per run."""
        return [
            (uid, self.rows.slice(a, n))
            for uid, a, n in zip(
                self.uids.tolist(), self.starts.tolist(), self.counts.tolist(), strict=True
            )
        ]


def merge_sources(sources: list[pa.Table], known_sorted: list[bool] | None = None) -> pa.Table:
    """Sources in age order (oldest first) -> one table sorted by ts, newest row per ts.

    ``known_sorted[i]`` says source i is already strictly increasing (segment blocks always
    are), which saves checking it.
    """
    flags = known_sorted or [False] * len(sources)
    pairs = [(s, f) for s, f in zip(sources, flags, strict=True) if s.num_rows]
    if not pairs:
        return None  # type: ignore[return-value]

    def increasing(s: pa.Table, known: bool) -> bool:
        if known:
            return True
        ts = s.column(TS).to_numpy()
        return bool(ts.size < 2 or (np.diff(ts) > 0).all())

    if len(pairs) == 1 and increasing(*pairs[0]):
        return pairs[0][0]
    if len(pairs) > 1 and all(increasing(s, f) for s, f in pairs):
        # Sorted, non-overlapping sources need no sort: order them by first timestamp.
        spans = []
        for s, _ in pairs:
            ts = s.column(TS)
            spans.append((ts[0].as_py(), ts[len(ts) - 1].as_py(), s))
        spans.sort(key=lambda x: x[0])
        if all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1)):
            return pa.concat_tables([s for _, _, s in spans], promote_options="permissive")
    table = pa.concat_tables([s for s, _ in pairs], promote_options="permissive")
    ts = table.column(TS).to_numpy()
    order = np.argsort(ts, kind="stable")
    ts_sorted = ts[order]
    keep = np.ones(ts_sorted.size, dtype=bool)
    keep[:-1] = ts_sorted[1:] != ts_sorted[:-1]  # the last of a run of equal ts is the newest
    return table.take(order[keep])


# Queries over at least this many tables find their blocks segment by segment with numpy.
BULK_PIECES_TABLES = 64


class Engine:
    """One database directory (or memory): every database, table and row in it."""

    def __init__(self, path: str | os.PathLike[str] | None, **options: Any):
        self.options = EngineOptions.from_kwargs(options)
        self.path = None if path is None else Path(path)
        self.lock = threading.RLock()
        self.dbs: dict[str, Database] = {}
        self.segments: dict[tuple[str, int], list[str]] = {}
        self._partitions: dict[str, list[tuple[int, list[str]]]] = {}  # db -> sorted segments
        self.readers: dict[str, SegmentReader] = {}
        self._populated_sizes: dict[str, int] = {}  # segment -> bytes mapped with MAP_POPULATE
        self.mem: dict[int, _MemTable] = {}
        self._pending: list[TableRuns] = []  # inserts not yet split into ``mem``: _settle
        self._pending_bytes = 0
        self.mem_bytes = 0  # of both
        # A background flush (septet.tsdb.flusher): the memtable it is writing, still read by
        # queries until its segments are committed, and the oldest WAL generation it needs.
        self._imm: dict[int, _MemTable] | None = None
        self._imm_pending: list[TableRuns] = []
        self._imm_gen: int | None = None
        self._background: tuple | None = None  # (segment names, last seq)
        self._flusher: Any = None
        self._idle = threading.Condition(self.lock)  # notified when a background flush ends
        self.uid_db: dict[int, str] = {}
        self.by_uid: dict[int, Table] = {}
        self.last_rows: dict[int, pa.Table | None] = {}
        self.cache = BlockCache(self.options.block_cache_bytes)
        self.next_uid = 1
        self.next_seq = 1
        self.next_segment = 1
        self.flushed_seq = 0
        self.wal_gen = 1
        self._mem_gen = 1  # the oldest WAL generation with rows in the memtable
        self.wal: WriteAheadLog | None = None
        self._memory_segments: dict[str, bytes] = {}
        self.closed = False
        # Called with each acknowledged insert's batches (under the lock): streams, topics.
        self.listeners: list[Any] = []
        self.extensions: dict[str, Any] = {}
        # Bumped by every catalog change: what queries derive from the catalog (a super
        # table's sorted sub-tables, their tags as Arrow columns) is kept per version.
        self.catalog_version = 0
        self.query_cache: dict[Any, Any] = {}
        if self.path is not None:
            self._open_directory()

    # ----------------------------------------------------------------- lifecycle
    def _open_directory(self) -> None:
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = self.path / MANIFEST
        if manifest.exists():
            m = json.loads(manifest.read_text())
            self.dbs = {k: Database.from_json(v) for k, v in m["databases"].items()}
            for key, names in m["segments"].items():
                db, pid = key.rsplit("/", 1)
                self.segments[(db, int(pid))] = names
            self.next_uid = m["next_uid"]
            self.next_seq = m["next_seq"]
            self.next_segment = m["next_segment"]
            self.flushed_seq = m["flushed_seq"]
            self.wal_gen = self._mem_gen = m["wal_generation"]
        for db in self.dbs.values():
            for t in db.tables.values():
                self.uid_db[t.uid] = db.name
                self.by_uid[t.uid] = t
        for names in self.segments.values():
            for name in names:
                self._open_segment(name)
        # Segment files the manifest does not name: written by a flush that a crash stopped
        # before its commit (the WAL still holds their rows) or replaced by one before the
        # old files were removed.
        named = {n for names in self.segments.values() for n in names}
        for db_name in self.dbs:
            for f in (self.path / db_name).glob("p*/*.seg"):
                if f"{db_name}/{f.parent.name}/{f.name}" not in named:
                    f.unlink(missing_ok=True)
        self._recover()
        self.wal = WriteAheadLog(
            self.path / "wal", self.wal_gen, self.options.fsync, self.options.fsync_period_ms
        )

    def _recover(self) -> None:
        """Replay every intact WAL record after the checkpoint into the memtable."""
        assert self.path is not None
        wal_dir = self.path / "wal"
        for gen in generations(wal_dir):
            if gen < self.wal_gen:
                continue
            for seq, kind, body in read_records(wal_dir / f"{gen:012d}.log"):
                if seq <= self.flushed_seq:
                    continue
                self.next_seq = max(self.next_seq, seq + 1)
                if kind == _INSERT:
                    for uid, rows in decode_tables(body):
                        if uid in self.uid_db:
                            self._mem_add(uid, self._conform(uid, rows))
            self.wal_gen = max(self.wal_gen, gen)

    def _conform(self, uid: int, rows: pa.Table) -> pa.Table:
        """Drop columns a later ALTER removed (their ids are gone from the schema)."""
        db = self.dbs[self.uid_db[uid]]
        ids = {col_key(c.id) for c in db.columns_of(self._table_by_uid(uid))[1:]}
        keep = [n for n in rows.column_names if n == TS or n in ids]
        return rows.select(keep) if len(keep) != rows.num_columns else rows

    def _table_by_uid(self, uid: int) -> Table:
        table = self.by_uid.get(uid)
        if table is None:
            raise TsdbError(f"no table with uid {uid}")
        return table

    def extension(self, name: str, make: Any) -> Any:
        """The engine's ``name`` extension (streams, topics), made by ``make(engine)`` on first
        use; one per engine even when several connections ask at once."""
        with self.lock:
            ext = self.extensions.get(name)
            if ext is None:
                ext = self.extensions[name] = make(self)
            return ext

    def close(self) -> None:
        """Flush the memtable and release files."""
        with self.lock:
            if self.closed:
                return
            if self.path is not None:
                self.flush()
                assert self.wal is not None
                self.wal.close()
            if self._flusher is not None:
                self._flusher.close()
                self._flusher = None
            for reader in self.readers.values():
                reader.close()
            self.readers.clear()
            self._populated_sizes = {}
            self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise TsdbError("the database connection is closed")

    # ----------------------------------------------------------------- manifest
    def _write_manifest(self) -> None:
        self._partitions.clear()  # every change of self.segments is followed by a manifest
        self.catalog_version += 1  # and every change of the catalog
        if self.path is None:
            return
        atomic_write_json(
            self.path / MANIFEST,
            {
                "version": 1,
                "databases": {k: v.to_json() for k, v in self.dbs.items()},
                "segments": {f"{db}/{pid}": names for (db, pid), names in self.segments.items()},
                "next_uid": self.next_uid,
                "next_seq": self.next_seq,
                "next_segment": self.next_segment,
                "flushed_seq": self.flushed_seq,
                # The oldest WAL generation still needed: a background flush's memtable lives
                # in the generation before the current one until its segments are committed.
                "wal_generation": self._oldest_needed_gen(),
            },
            indent=None,
        )

    # ----------------------------------------------------------------- catalog
    def database(self, name: str) -> Database:
        db = self.dbs.get(name)
        if db is None:
            raise TsdbError(f"database {name!r} does not exist; create it with CREATE DATABASE")
        return db

    def create_database(self, name: str, options: DatabaseOptions, if_not_exists: bool) -> None:
        with self.lock:
            self._check_open()
            name = check_identifier(name, "database")
            if name in self.dbs:
                if if_not_exists:
                    return
                raise TsdbError(f"database {name!r} already exists")
            options.check()
            self.dbs[name] = Database(name, options)
            self._write_manifest()

    def drop_database(self, name: str, if_exists: bool) -> None:
        with self.lock:
            self._wait_for_background()  # its folder goes: no segment may be on its way there
            if name not in self.dbs:
                if if_exists:
                    return
                raise TsdbError(f"database {name!r} does not exist")
            db = self.dbs.pop(name)
            for t in db.tables.values():
                self._forget_table(t.uid)
            dropped = [k for k in self.segments if k[0] == name]
            old = [n for k in dropped for n in self.segments.pop(k)]
            self._write_manifest()
            self._remove_segments(old)
            if self.path is not None:
                shutil.rmtree(self.path / name, ignore_errors=True)

    def _forget_table(self, uid: int) -> None:
        self._settle()
        if self._imm is not None:  # its rows may reach a segment: a uid nothing reads
            self._settle_imm()
            self._imm.pop(uid, None)
        mem = self.mem.pop(uid, None)
        if mem is not None:
            self.mem_bytes -= mem.nbytes
        self.uid_db.pop(uid, None)
        self.by_uid.pop(uid, None)
        self.last_rows.pop(uid, None)

    def create_stable(
        self,
        db_name: str,
        name: str,
        columns: list[tuple[str, str]],
        tags: list[tuple[str, str]],
        if_not_exists: bool,
    ) -> None:
        with self.lock:
            db = self.database(db_name)
            name = check_identifier(name, "super table")
            if name in db.stables or name in db.tables:
                if if_not_exists and name in db.stables:
                    return
                raise TsdbError(f"table {name!r} already exists in database {db_name!r}")
            cols = _make_columns(columns, first_timestamp=True)
            if not tags:
                raise TsdbError(f"super table {name!r} needs at least one tag: TAGS (...)")
            tag_cols = _make_columns(tags, first_timestamp=False, start=len(cols))
            _check_unique([c.name for c in cols + tag_cols], name)
            db.stables[name] = SuperTable(name, cols, tag_cols, len(cols) + len(tag_cols))
            self._write_manifest()

    def create_table(
        self,
        db_name: str,
        name: str,
        columns: list[tuple[str, str]] | None,
        if_not_exists: bool,
    ) -> None:
        """An ordinary table with its own columns."""
        with self.lock:
            db = self.database(db_name)
            name = check_identifier(name, "table")
            if name in db.tables or name in db.stables:
                if if_not_exists:
                    return
                raise TsdbError(f"table {name!r} already exists in database {db_name!r}")
            assert columns is not None
            cols = _make_columns(columns, first_timestamp=True)
            _check_unique([c.name for c in cols], name)
            db.tables[name] = Table(name, self.next_uid, None, {}, cols, len(cols))
            self.uid_db[self.next_uid] = db.name
            self.by_uid[self.next_uid] = db.tables[name]
            self.next_uid += 1
            self._write_manifest()

    def create_child_tables(
        self,
        db_name: str,
        specs: list[tuple[str, str, dict[str, Any]]],
        if_not_exists: bool,
    ) -> list[Table]:
        """Sub-tables (name, super table, tag values); one manifest write for all of them."""
        with self.lock:
            db = self.database(db_name)
            out = []
            changed = False
            for name, stable, tags in specs:
                name = check_identifier(name, "table")
                st = db.stables.get(stable)
                if st is None:
                    raise TsdbError(f"super table {stable!r} does not exist in {db_name!r}")
                existing = db.tables.get(name)
                if existing is not None:
                    if not if_not_exists or existing.stable != stable:
                        raise TsdbError(f"table {name!r} already exists in database {db_name!r}")
                    out.append(existing)
                    continue
                if name in db.stables:
                    raise TsdbError(f"{name!r} is a super table")
                unknown = set(tags) - {t.name for t in st.tags}
                if unknown:
                    raise TsdbError(f"super table {stable!r} has no tag {sorted(unknown)[0]!r}")
                values = {t.name: _tag_value(t, tags.get(t.name)) for t in st.tags}
                table = Table(name, self.next_uid, stable, values)
                db.tables[name] = table
                self.uid_db[table.uid] = db.name
                self.by_uid[table.uid] = table
                self.next_uid += 1
                out.append(table)
                changed = True
            if changed:
                self._write_manifest()
            return out

    def drop_table(self, db_name: str, name: str, if_exists: bool) -> None:
        with self.lock:
            db = self.database(db_name)
            t = db.tables.get(name)
            if t is None:
                if if_exists:
                    return
                raise TsdbError(f"table {name!r} does not exist in database {db_name!r}")
            del db.tables[name]
            self._forget_table(t.uid)
            self._write_manifest()

    def drop_stable(self, db_name: str, name: str, if_exists: bool) -> None:
        with self.lock:
            db = self.database(db_name)
            if name not in db.stables:
                if if_exists:
                    return
                raise TsdbError(f"super table {name!r} does not exist in database {db_name!r}")
            for t in db.children(name):
                del db.tables[t.name]
                self._forget_table(t.uid)
            del db.stables[name]
            self._write_manifest()

    def alter_columns(
        self, db_name: str, name: str, action: str, col: str, type_: str | None, is_tag: bool
    ) -> None:
        """ADD/DROP COLUMN or TAG on a super table (or COLUMN on an ordinary table)."""
        with self.lock:
            db = self.database(db_name)
            st = db.stables.get(name)
            table = db.tables.get(name)
            if st is None and (table is None or table.stable is not None):
                raise TsdbError(f"{name!r} is neither a super table nor an ordinary table")
            if is_tag and st is None:
                raise TsdbError(f"{name!r} is not a super table, so it has no tags")
            owner: Any = st if st is not None else table
            cols = owner.tags if is_tag else owner.columns
            col = col.lower()
            if action == "add":
                assert type_ is not None
                existing = [c.name for c in owner.columns] + (
                    [t.name for t in st.tags] if st else []
                )
                if col in existing:
                    raise TsdbError(f"column or tag {col!r} already exists in {name!r}")
                cols.append(Column(check_identifier(col, "column"), type_, owner.next_id))
                owner.next_id += 1
                if is_tag:
                    for t in db.children(name):
                        t.tags[col] = None
            else:
                victim = next((c for c in cols if c.name == col), None)
                if victim is None:
                    raise TsdbError(f"{name!r} has no {'tag' if is_tag else 'column'} {col!r}")
                if not is_tag and victim is cols[0]:
                    raise TsdbError("the first (timestamp) column cannot be dropped")
                if is_tag and len(cols) == 1:
                    raise TsdbError("a super table must keep at least one tag")
                cols.remove(victim)
                if is_tag:
                    for t in db.children(name):
                        t.tags.pop(col, None)
            for t in db.children(name) if st else [table]:
                self.last_rows.pop(t.uid, None)
            self._write_manifest()

    def set_tag(self, db_name: str, table: str, tag: str, value: Any) -> None:
        with self.lock:
            db = self.database(db_name)
            t = db.tables.get(table)
            if t is None or t.stable is None:
                raise TsdbError(f"{table!r} is not a sub-table of a super table")
            spec = db.stables[t.stable].tag(tag)
            if spec is None:
                raise TsdbError(f"super table {t.stable!r} has no tag {tag!r}")
            t.tags[tag] = _tag_value(spec, value)
            self._write_manifest()

    # ----------------------------------------------------------------- writes
    def partition_of(self, db: Database, ts: int) -> int:
        return ts // db.options.partition_span

    def insert(
        self,
        batches: list[tuple[int, pa.Table]] = (),  # type: ignore[assignment]
        metas: list[RowsMeta] | None = None,
        runs: list[TableRuns] = (),  # type: ignore[assignment]
    ) -> int:
        """Write rows (``ts`` int64 + ``c<id>`` columns) of tables by uid; returns rows written.

        ``batches`` hold one table's rows each, ``runs`` many tables' (a super table's
        sub-tables). One WAL record holds all of them: they are acknowledged (and recovered)
        together. ``metas`` (one per batch) saves recomputing each batch's time range and order.
        """
        with self.lock:
            self._check_open()
            if metas is None:
                metas = [RowsMeta.of(rows) if rows.num_rows else None for _, rows in batches]
            kept = [(b, m) for b, m in zip(batches, metas, strict=True) if b[1].num_rows]
            batches = [b for b, _ in kept]
            metas = [m for _, m in kept]
            runs = [r for r in runs if r.num_rows]
            if not batches and not runs:
                return 0
            now = int(time.time() * 1000)
            pairs = zip(batches, metas, strict=True)
            checks = [(uid, rows, meta.lo) for (uid, rows), meta in pairs]
            checks += [(int(r.uids[0]), r.rows, int(r.lo.min())) for r in runs]
            for uid, rows, oldest in checks:
                db = self.dbs[self.uid_db[uid]]
                if rows.column(TS).null_count:
                    raise TsdbError("the timestamp (first) column cannot be NULL")
                keep_ms = db.options.keep_days * 86_400_000
                units_per_ms = db.options.units_per_day // 86_400_000
                if oldest < (now - keep_ms) * units_per_ms:
                    raise TsdbError(
                        f"timestamp {oldest} is older than the database's KEEP "
                        f"({db.options.keep_days:g} days); such rows would be dropped at once"
                    )
            seq = self.next_seq
            self.next_seq += 1
            if self.wal is not None:
                self.wal.append(seq, _INSERT, _encode_insert(batches, runs))
            total = 0
            for (uid, rows), meta in zip(batches, metas, strict=True):
                self._mem_add(uid, rows, meta)
                total += rows.num_rows
            for r in runs:
                size = r.rows.nbytes
                self._pending.append(r)
                self._pending_bytes += size
                self.mem_bytes += size
                total += r.num_rows
            if self.mem_bytes >= self.options.memtable_bytes:
                # In memory there is no WAL for a flush process to read back from.
                background = self.options.background_flush and self.path is not None
                if not (background and self._flush_in_background()):
                    self.flush()
            if self.listeners:
                written = batches + [b for r in runs for b in r.split()]
                for listener in list(self.listeners):
                    listener(written)
            return total

    def _settle(self) -> None:
        """Split the inserts kept whole (``TableRuns``) into the per-table memtable: every
        read of the memtable calls this first. Each table gets one chunk for all of them."""
        if not self._pending:
            return
        with self.lock:
            self._settle_pending()

    def _settle_pending(self) -> None:
        pending, self._pending = self._pending, []
        self.mem_bytes -= self._pending_bytes
        self._pending_bytes = 0
        for uid, rows, meta in _split_runs(pending):
            self._mem_add(uid, rows, meta)

    def _settle_imm(self) -> None:
        """:meth:`_settle` for the memtable a background flush is writing."""
        pending, self._imm_pending = self._imm_pending, []
        assert self._imm is not None
        for uid, rows, meta in _split_runs(pending):
            if uid in self.uid_db:  # not dropped since
                self._imm.setdefault(uid, _MemTable()).add(rows, meta)

    def _mem_add(self, uid: int, rows: pa.Table, meta: RowsMeta | None = None) -> None:
        mem = self.mem.get(uid)
        if mem is None:
            mem = self.mem[uid] = _MemTable()
        before = mem.nbytes
        mem.add(rows, meta)
        if len(mem.chunks) > _MAX_CHUNKS:
            # One contiguous chunk: it no longer holds whole line-protocol batches' buffers
            # through slices, and its size is cheap to take (a table of 33 slices of other
            # tables took ~2 ms per nbytes: 1,000 sub-tables per batch at 1,000 hosts).
            r = mem.ranges
            if all(mem.sorted) and all(r[i][1] < r[i + 1][0] for i in range(len(r) - 1)):
                # The usual case, batches in time order: their ranges (known) need no merge.
                try:
                    merged = pa.concat_tables(mem.chunks)  # 20x faster than "permissive"
                except pa.ArrowInvalid:  # schemas differ (ALTER TABLE between the batches)
                    merged = pa.concat_tables(mem.chunks, promote_options="permissive")
            else:
                merged = merge_sources(mem.chunks, mem.sorted)
            merged = merged.combine_chunks()
            ts = merged.column(TS)  # strictly increasing either way
            # Fresh buffers: their total size is nbytes, without nbytes' per-slice accounting.
            size = merged.get_total_buffer_size()
            meta = RowsMeta(ts[0].as_py(), ts[-1].as_py(), True, size)
            mem.chunks, mem.ranges, mem.sorted, mem.nbytes = [], [], [], 0
            mem.add(merged, meta)
        self.mem_bytes += mem.nbytes - before
        cached = self.last_rows.get(uid)
        if cached is not None:  # else it is filled on first use, from the merged data
            newest = mem.ranges[-1][1]
            if newest >= cached.column(TS)[0].as_py():
                ts = rows.column(TS).to_numpy()
                i = int(np.flatnonzero(ts == newest)[-1])
                self.last_rows[uid] = rows.slice(i, 1)

    # ----------------------------------------------------------------- flush
    def flush(self) -> None:
        """Write the memtable into segments, commit the manifest, retire old WAL files."""
        with self.lock:
            self._check_open()
            self._wait_for_background()
            self._apply_retention()
            self._settle()
            if not self.mem:
                return
            by_partition = self._partition_tables(self.mem)
            retired: list[str] = []
            for key, tables in sorted(by_partition.items()):
                existing = self.segments.get(key, [])
                if len(existing) + 1 > self.options.max_segments:
                    retired += existing
                    self.segments[key] = [self._compact(key, existing, tables)]
                else:
                    name = self._write_segment(key, tables)
                    self.segments[key] = [*existing, name]
                    self._cache_written(key, name, tables)
            self.mem.clear()
            self.mem_bytes = 0
            self.flushed_seq = self.next_seq - 1
            self._next_wal()
            self._mem_gen = self.wal_gen
            self._write_manifest()
            self._retire_wal()
            self._remove_segments(retired)

    def _partition_tables(
        self, mem: dict[int, _MemTable]
    ) -> dict[tuple[str, int], dict[int, pa.Table]]:
        """The memtable's rows per (database, partition) and table, sorted, one per ts."""
        by_partition: dict[tuple[str, int], dict[int, pa.Table]] = {}
        for uid, m in mem.items():
            db = self.dbs[self.uid_db[uid]]
            rows = merge_sources(m.chunks, m.sorted)
            ts = rows.column(TS).to_numpy()
            pids = ts // db.options.partition_span
            cuts = np.flatnonzero(np.diff(pids)) + 1
            starts = np.concatenate([[0], cuts])
            ends = np.concatenate([cuts, [ts.size]])
            for s, e in zip(starts, ends, strict=True):
                key = (db.name, int(pids[s]))
                by_partition.setdefault(key, {})[uid] = rows.slice(int(s), int(e - s))
        return by_partition

    def _cache_written(self, key: tuple[str, int], name: str, tables: dict[int, pa.Table]) -> None:
        """Write-through: the rows just flushed are what queries read next, and they are in
        memory already; decoding them back would cost ~50 us a block."""
        reader = self.readers[name]
        db = self.dbs[key[0]]
        prec = db.options.precision
        types_of: dict[Any, dict[int, pa.DataType]] = {}
        made: dict = {}  # the arenas of the new segment
        for uid, rows in tables.items():
            table = self._table_by_uid(uid)
            tkey = table.stable if table.stable is not None else uid
            types = types_of.get(tkey)
            if types is None:
                cols = db.columns_of(table)
                types = types_of[tkey] = {c.id: arrow_type(c.type, prec) for c in cols}
            cache_written(self.cache, reader, uid, rows, types, made)

    def _next_wal(self) -> None:
        """Start a new WAL generation: later writes go there, the old file can be retired."""
        old_wal = self.wal
        if old_wal is not None:
            self.wal_gen += 1
            self.wal = WriteAheadLog(
                old_wal.directory, self.wal_gen, self.options.fsync, self.options.fsync_period_ms
            )
            old_wal.close()

    def _oldest_needed_gen(self) -> int:
        """The oldest WAL generation whose rows are not all in committed segments."""
        return self._mem_gen if self._imm_gen is None else self._imm_gen

    def _retire_wal(self) -> None:
        """Delete the WAL generations older than the manifest's (their rows are in segments)."""
        if self.wal is None:
            return
        needed = self._oldest_needed_gen()
        for gen in generations(self.wal.directory):
            if gen < needed:
                (self.wal.directory / f"{gen:012d}.log").unlink(missing_ok=True)

    # ------------------------------------------------------------ background flush
    def _flush_in_background(self) -> bool:
        """Freeze the memtable and have the flush process write its segments (flusher.py);
        False, having done nothing, where a partition is due for compaction (done in place).

        The process reads the frozen rows back from the WAL, which holds exactly them, so
        freezing copies nothing. One flush at a time: a memtable that fills while the last
        one is still being written waits for it, which keeps memory bounded."""
        from septet.tsdb.flusher import Flusher, FlushJob

        assert self.path is not None and self.wal is not None
        self._wait_for_background()
        self._apply_retention()
        if not self.mem and not self._pending:
            return True
        # The partitions the frozen rows fall in, from their timestamps.
        stamps: dict[str, list[np.ndarray]] = {}
        for r in self._pending:
            stamps.setdefault(self.uid_db[int(r.uids[0])], []).append(r.rows.column(TS))
        for uid, m in self.mem.items():
            stamps.setdefault(self.uid_db[uid], []).extend(c.column(TS) for c in m.chunks)
        keys = []
        for db_name, columns in stamps.items():
            span = self.dbs[db_name].options.partition_span
            ts = np.concatenate([c.to_numpy() for c in columns])
            keys += [(db_name, int(p)) for p in np.unique(ts // span)]
        if any(len(self.segments.get(k, [])) + 1 > self.options.max_segments for k in keys):
            return False
        names = {}
        for key in sorted(keys):
            names[key] = f"{key[0]}/p{key[1]}/{self.next_segment:010d}.seg"
            self.next_segment += 1
        uids = set(self.mem)
        for r in self._pending:
            uids.update(np.unique(r.uids).tolist())
        columns_of: dict[Any, list[str]] = {}
        tables = {}
        for uid in uids:
            t = self._table_by_uid(uid)
            db = self.dbs[self.uid_db[uid]]
            k = (db.name, t.stable) if t.stable is not None else uid
            if k not in columns_of:
                columns_of[k] = [col_key(c.id) for c in db.columns_of(t)[1:]]
            tables[uid] = (db.name, columns_of[k])
            self.last_rows.pop(uid, None)  # rebuilt from the frozen rows when next asked
        dbs = {
            n: (d.options.partition_span, d.options.compression,
                d.options.compression_level, d.options.block_rows)
            for n, d in self.dbs.items() if n in stamps
        }  # fmt: skip
        seq = self.next_seq - 1
        job = FlushJob(
            str(self.wal.directory), list(range(self._mem_gen, self.wal_gen + 1)),
            self.flushed_seq, seq, tables, dbs,
            {f"{db}/{pid}": str(self.path / name) for (db, pid), name in names.items()},
        )  # fmt: skip
        self._imm, self._imm_pending = self.mem, self._pending
        self.mem, self._pending = {}, []
        self.mem_bytes = self._pending_bytes = 0
        self._imm_gen = self._mem_gen
        self._next_wal()  # closes the frozen rows' generation whole
        self._mem_gen = self.wal_gen
        if self._flusher is None:
            self._flusher = Flusher()
        self._background = (names, seq)
        self._flusher.submit(job, self._finish_background)
        return True

    def _finish_background(self, failed: Exception | None, written: list[str]) -> None:
        """Commit the segments of a background flush: the flush process's files, or, if it
        failed (died, or raised), the same segments written here from the rows in memory.
        Should that fail too, the frozen rows go back into the memtable (the WAL still has
        them) and the next flush tries again."""
        with self.lock:
            if self._background is None:
                return
            names, seq = self._background
            opened: list[tuple[tuple[str, int], str]] = []
            try:
                if failed is not None:
                    _log.warning("the flush process failed (%s); flushing in the engine", failed)
                    written = self._write_frozen(names)
                for key, name in names.items():
                    # Not written: no row left (its tables dropped), or its database dropped.
                    if f"{key[0]}/{key[1]}" in written and key[0] in self.dbs:
                        self._open_segment(name)
                        opened.append((key, name))
            except Exception:
                _log.exception("a background flush failed; its rows stay in the memtable")
                for _, name in opened:
                    self.readers.pop(name).close()
                    self._populated_sizes.pop(name, None)
                if self.path is not None:
                    for name in names.values():
                        (self.path / name).unlink(missing_ok=True)
                self._unfreeze()
                return
            finally:
                self._idle.notify_all()
            for key, name in opened:
                self.segments[key] = [*self.segments.get(key, []), name]
            self.flushed_seq = max(self.flushed_seq, seq)
            self._imm = self._imm_gen = self._background = None
            self._imm_pending = []
            self._write_manifest()
            self._retire_wal()

    def _write_frozen(self, names: dict[tuple[str, int], str]) -> list[str]:
        """The frozen memtable's segments written here; the "database/partition" keys."""
        assert self.path is not None and self._imm is not None
        self._settle_imm()
        written = []
        for key, tables in self._partition_tables(self._imm).items():
            name = names.get(key)
            if name is None:  # not foreseen: cannot happen, but a name is cheap
                name = names[key] = f"{key[0]}/p{key[1]}/{self.next_segment:010d}.seg"
                self.next_segment += 1
            atomic_write_bytes(self.path / name, self._encode_segment(key, tables))
            written.append(f"{key[0]}/{key[1]}")
        return written

    def _unfreeze(self) -> None:
        """Put a failed background flush's rows back in front of the memtable's (older)."""
        assert self._imm is not None and self._imm_gen is not None
        self._settle_imm()
        for uid, old in self._imm.items():
            mem = self.mem.get(uid)
            self.mem[uid] = old if mem is None else old.followed_by(mem)
            self.mem_bytes += old.nbytes
        self._mem_gen = self._imm_gen  # the frozen rows' WAL generation is needed again
        self._imm = self._imm_gen = self._background = None
        self._imm_pending = []

    @property
    def flushing(self) -> bool:
        """Whether a background flush is running (its process busy on a core)."""
        return self._background is not None

    def _wait_for_background(self) -> None:
        while self._background is not None:
            self._idle.wait()

    def _mem_of(self, uid: int) -> _MemTable | None:
        """A table's unflushed rows: the memtable's, after those of a background flush."""
        mem = self.mem.get(uid)
        if self._imm is None:
            return mem
        if self._imm_pending:
            self._settle_imm()
        old = self._imm.get(uid)
        if old is None or mem is None:
            return old if mem is None else mem
        return old.followed_by(mem)

    def _encode_segment(self, key: tuple[str, int], tables: dict[int, pa.Table]) -> bytes:
        db = self.dbs[key[0]]
        writer = SegmentWriter(
            db.options.compression, db.options.compression_level, db.options.block_rows
        )
        for uid in sorted(tables):
            writer.add_table(uid, tables[uid])
        return writer.finish()

    def _write_segment(self, key: tuple[str, int], tables: dict[int, pa.Table]) -> str:
        data = self._encode_segment(key, tables)
        name = f"{key[0]}/p{key[1]}/{self.next_segment:010d}.seg"
        self.next_segment += 1
        if self.path is None:
            self._memory_segments[name] = data
        else:
            atomic_write_bytes(self.path / name, data)
        self._open_segment(name)
        return name

    @property
    def _populated(self) -> int:
        """Bytes of the segment files mapped with MAP_POPULATE (see populate_maps)."""
        return sum(self._populated_sizes.values())

    def _open_segment(self, name: str) -> None:
        if self.path is None:
            self.readers[name] = SegmentReader(name, self._memory_segments[name])
            return
        with open(self.path / name, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            populate = getattr(mmap, "MAP_POPULATE", 0) if self.options.populate_maps else 0
            if populate and self._populated + size <= self.options.block_cache_bytes:
                flags = mmap.MAP_SHARED | populate
                data = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
                self._populated_sizes[name] = size
            else:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.readers[name] = SegmentReader(name, data)

    def _remove_segments(self, names: list[str]) -> None:
        for name in names:
            reader = self.readers.pop(name, None)
            self._populated_sizes.pop(name, None)
            if reader is not None:
                self.cache.evict_segment(name)
                # BufferError: an Arrow array still views the map; the GC unmaps it later.
                with contextlib.suppress(BufferError):
                    reader.close()
            self._memory_segments.pop(name, None)
            if self.path is not None:
                (self.path / name).unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # a partition folder left empty goes too
                    (self.path / name).parent.rmdir()

    def _compact(
        self,
        key: tuple[str, int],
        names: list[str],
        extra: dict[int, pa.Table],
        drop: tuple[set[int], int, int] | None = None,
    ) -> str:
        """Merge segments (plus new rows) of one partition into one; apply a deletion."""
        db = self.dbs[key[0]]
        uids = set(extra)
        for name in names:
            uids |= set(self.readers[name].tables)
        tables: dict[int, pa.Table] = {}
        for uid in sorted(uids):
            if uid not in self.uid_db:
                continue  # a dropped table: its rows are garbage-collected here
            col_ids = [c.id for c in db.columns_of(self._table_by_uid(uid))[1:]]
            sources = [self._read_segment_rows(n, uid, col_ids, None, None) for n in names]
            sources = [s for s in sources if s is not None]
            known = [True] * len(sources)
            if uid in extra:
                sources.append(extra[uid])
                known.append(True)  # flushed rows were merged (sorted, unique) already
            rows = merge_sources(sources, known)
            if rows is None:
                continue
            if drop is not None and uid in drop[0]:
                ts = rows.column(TS).to_numpy()
                rows = rows.filter(pa.array((ts < drop[1]) | (ts > drop[2])))
            if rows.num_rows:
                tables[uid] = rows
        return self._write_segment(key, tables)

    def _apply_retention(self) -> None:
        now_ms = int(time.time() * 1000)
        doomed = []
        for db_name, pid in list(self.segments):
            db = self.dbs[db_name]
            units_per_ms = db.options.units_per_day // 86_400_000
            cutoff = (now_ms - int(db.options.keep_days * 86_400_000)) * units_per_ms
            if (pid + 1) * db.options.partition_span <= cutoff:
                doomed += self.segments.pop((db_name, pid))
        if doomed:
            self._write_manifest()
            self._remove_segments(doomed)

    def delete(self, db_name: str, uids: list[int], t0: int, t1: int) -> int:
        """Delete rows with t0 <= ts <= t1 from tables; returns how many rows went."""
        with self.lock:
            self.flush()
            db = self.database(db_name)
            span = db.options.partition_span
            removed = 0
            retired: list[str] = []
            for key in sorted(self.segments):
                if key[0] != db_name or (key[1] + 1) * span <= t0 or key[1] * span > t1:
                    continue
                names = self.segments[key]
                before = sum(self.count_rows(u, t0, t1, names) for u in uids)
                if before == 0:
                    continue
                removed += before
                retired += names
                self.segments[key] = [self._compact(key, names, {}, (set(uids), t0, t1))]
            for uid in uids:
                self.last_rows.pop(uid, None)
            if retired:
                self._write_manifest()
                self._remove_segments(retired)
            return removed

    def count_rows(self, uid: int, t0: int, t1: int, names: list[str]) -> int:
        sources = [self._read_segment_rows(n, uid, [], t0, t1) for n in names]
        merged = merge_sources([s for s in sources if s is not None])
        return 0 if merged is None else merged.num_rows

    # ----------------------------------------------------------------- reads
    def _read_segment_rows(
        self,
        name: str,
        uid: int,
        col_ids: list[int],
        t0: int | None,
        t1: int | None,
        skip: set[int] | None = None,
    ) -> pa.Table | None:
        reader = self.readers[name]
        blocks = reader.blocks(uid)
        if not blocks:
            return None
        db = self.dbs[self.uid_db[uid]]
        cols = {c.id: c for c in db.columns_of(self._table_by_uid(uid))}
        columns: list[list[Any]] = [[] for _ in range(len(col_ids) + 1)]
        cache = self.cache.table(name, uid)
        for i, b in enumerate(blocks):
            if (t0 is not None and b.t1 < t0) or (t1 is not None and b.t0 > t1):
                continue
            if skip is not None and i in skip:
                continue
            ts = cache.get((i, TS))
            if ts is None:
                ts = cache[(i, TS)] = reader.read_ts(b)
                self.cache.added(name, uid, ts.nbytes)
            lo = 0 if t0 is None or b.t0 >= t0 else int(np.searchsorted(ts, t0, "left"))
            hi = ts.size if t1 is None or b.t1 <= t1 else int(np.searchsorted(ts, t1, "right"))
            if hi <= lo:
                continue
            whole = lo == 0 and hi == ts.size
            columns[0].append(ts if whole else ts[lo:hi])
            for j, cid in enumerate(col_ids):
                arr = cache.get((i, cid))
                if arr is None:
                    col = cols[cid]
                    arr = cache[(i, cid)] = reader.read_column(
                        b,
                        cid,
                        arrow_type(col.type, db.options.precision),
                        db.options.compression,
                    )
                    self.cache.added(name, uid, arr.nbytes)
                columns[j + 1].append(arr if whole else arr.slice(lo, hi - lo))
        if not columns[0]:
            return None
        ts_all = columns[0][0] if len(columns[0]) == 1 else np.concatenate(columns[0])
        arrays = [pa.array(ts_all, pa.int64())] + [
            c[0] if len(c) == 1 else pa.chunked_array(c) for c in columns[1:]
        ]
        return pa.Table.from_arrays(arrays, names=[TS] + [col_key(c) for c in col_ids])

    def _segment_names(self, db: Database, t0: int | None, t1: int | None) -> list[str]:
        parts = self._partitions.get(db.name)
        if parts is None:
            parts = sorted(
                (pid, names) for (name, pid), names in self.segments.items() if name == db.name
            )
            self._partitions[db.name] = parts
        span = db.options.partition_span
        out: list[str] = []
        for pid, names in parts:
            if (t0 is not None and (pid + 1) * span <= t0) or (t1 is not None and pid * span > t1):
                continue
            out += names
        return out

    def scan(
        self,
        uid: int,
        col_ids: list[int],
        t0: int | None = None,
        t1: int | None = None,
        stats_col: int | None = None,
    ) -> tuple[pa.Table | None, list[list[Any]]]:
        """Rows of one table with t0 <= ts <= t1, sorted, one per timestamp: (table, stats).

        With ``stats_col``, blocks that lie wholly inside the range and overlap no other data
        are not decoded: their [count, min, max, sum, rows] of that column come back in
        ``stats`` (count: non-NULL values; rows: all rows of the block).
        """
        with self.lock:
            self._settle()
            db = self.dbs[self.uid_db[uid]]
            names = self._segment_names(db, t0, t1)
            mem = self._mem_of(uid)
            stats: list[list[Any]] = []
            skips: dict[str, set[int]] = {}
            if stats_col is not None:
                spans = []  # every source's time span, to find blocks nothing else overlaps
                for name in names:
                    for i, b in enumerate(self.readers[name].blocks(uid)):
                        spans.append((b.t0, b.t1, name, i))
                if mem is not None:
                    spans += [(lo, hi, None, -1) for lo, hi in mem.ranges]
                spans.sort(key=lambda s: s[0])
                reach = None  # the latest end among the spans before this one
                for j, (lo, hi, name, i) in enumerate(spans):
                    prev_reach = reach
                    reach = hi if reach is None else max(reach, hi)
                    if name is None or (t0 is not None and lo < t0) or (t1 is not None and hi > t1):
                        continue
                    # Sorted by start: a later span overlaps iff the next one starts in time.
                    next_lo = spans[j + 1][0] if j + 1 < len(spans) else None
                    if (prev_reach is not None and prev_reach >= lo) or (
                        next_lo is not None and next_lo <= hi
                    ):
                        continue
                    meta = self.readers[name].tables[uid][i].cols.get(stats_col)
                    if meta is None:
                        continue
                    block = self.readers[name].tables[uid][i]
                    stats.append([*meta[2:6], block.rows])
                    skips.setdefault(name, set()).add(i)
            sources, known = [], []
            for name in names:
                rows = self._read_segment_rows(name, uid, col_ids, t0, t1, skips.get(name))
                if rows is not None:
                    sources.append(rows)
                    known.append(True)
            if mem is not None:
                wanted = [TS] + [col_key(c) for c in col_ids]
                for chunk, (lo, hi) in zip(mem.chunks, mem.ranges, strict=True):
                    if (t0 is not None and hi < t0) or (t1 is not None and lo > t1):
                        continue
                    if t0 is not None or t1 is not None:
                        ts = chunk.column(TS).to_numpy()
                        mask = np.ones(ts.size, dtype=bool)
                        if t0 is not None:
                            mask &= ts >= t0
                        if t1 is not None:
                            mask &= ts <= t1
                        if not mask.all():
                            chunk = chunk.filter(pa.array(mask))
                    sources.append(_select(chunk, wanted, db, uid, self))
                    known.append(False)
            return merge_sources(sources, known), stats

    def pieces(
        self, uid: int, col_ids: list[int], t0: int | None = None, t1: int | None = None
    ) -> list[Piece]:
        """One table's rows with t0 <= ts <= t1 as pieces in time order (see blocks.py).

        Blocks and memtable chunks that overlap nothing else stay as they are (a block keeps
        its statistics, nothing is decoded yet); sources that overlap are merged into one
        piece, the newest write of a timestamp winning. Hold ``self.lock`` while the pieces
        are used: they read segment maps that a flush or compaction may close.
        """
        return self.pieces_many([uid], col_ids, t0, t1)[0]

    def pieces_many(
        self,
        uids: list[int],
        col_ids: list[int],
        t0: int | None = None,
        t1: int | None = None,
        skip: Callable[[BlockMeta], bool] | None = None,
    ) -> list[list[Piece]]:
        """:meth:`pieces` of many tables (what they share is looked up once); with ``skip``,
        no piece for a segment block that overlaps no other data and that ``skip`` rules
        out by its metadata (a filter's min/max test), so none is made for it at all."""
        self._settle()
        wanted = [TS] + [col_key(c) for c in col_ids]
        names_of: dict[str, list[SegmentReader]] = {}
        types_of: dict[Any, dict[int, pa.DataType]] = {}
        arenas: dict[str, dict] = {}  # per segment: the arenas its pieces looked up
        if len(uids) >= BULK_PIECES_TABLES:
            bulk = self._pieces_bulk(uids, col_ids, t0, t1, skip, arenas)
            if bulk is not None:
                return bulk
        out = []
        for uid in uids:
            db = self.dbs[self.uid_db[uid]]
            readers = names_of.get(db.name)
            if readers is None:
                names = self._segment_names(db, t0, t1)
                readers = names_of[db.name] = [self.readers[n] for n in names]
            table = self._table_by_uid(uid)
            key = (db.name, table.stable) if table.stable is not None else uid
            types = types_of.get(key)
            if types is None:
                prec = db.options.precision
                types = {c.id: arrow_type(c.type, prec) for c in db.columns_of(table)}
                types_of[key] = types
            out.append(self._pieces(uid, db, readers, types, wanted, col_ids, t0, t1, skip, arenas))
        return out

    def _pieces_bulk(
        self,
        uids: list[int],
        col_ids: list[int],
        t0: int | None,
        t1: int | None,
        skip: Callable[[BlockMeta], bool] | None,
        arenas: dict[str, dict],
    ) -> list[list[Piece]] | None:
        """:meth:`pieces_many` of many sub-tables of one super table, their blocks found with
        numpy over each segment's block list instead of table by table; a table with rows in
        the memtable or with overlapping blocks goes through :meth:`_pieces`. None when the
        tables are not all sub-tables of one super table."""
        self._settle()
        first = self._table_by_uid(uids[0])
        db = self.dbs[self.uid_db[uids[0]]]
        if first.stable is None:
            return None
        for uid in uids:
            if self.uid_db[uid] != db.name or self._table_by_uid(uid).stable != first.stable:
                return None
        prec = db.options.precision
        types = {c.id: arrow_type(c.type, prec) for c in db.columns_of(first)}
        readers = [self.readers[n] for n in self._segment_names(db, t0, t1)]
        n = len(uids)
        if not readers or len(set(uids)) != n:
            return None
        uid_arr = np.array(uids, np.int64)
        top = int(uid_arr.max())
        for reader in readers:
            if reader.tables:
                top = max(top, max(reader.tables))
        position = np.full(top + 1, -1, np.int64)
        position[uid_arr] = np.arange(n)
        found = []  # per segment: (segment number, block numbers, table positions, t0s, t1s)
        for r, reader in enumerate(readers):
            b_uid, b_t0, b_t1, _, _ = reader.block_table()
            keep = position[b_uid] >= 0
            if t0 is not None:
                keep &= b_t1 >= t0
            if t1 is not None:
                keep &= b_t0 <= t1
            k = np.flatnonzero(keep)
            # A filter's min/max test of every block of the segment at once, where it can.
            many = getattr(skip, "many", None)
            ruled_out = None if many is None else many(reader)
            out_k = np.zeros(k.size, bool) if ruled_out is None else ruled_out[k]
            tested = np.full(k.size, ruled_out is not None)
            found.append(
                (np.full(k.size, r), k, position[b_uid[k]], b_t0[k], b_t1[k], out_k, tested)
            )
        seg, blk, pos, lo, hi, gone, tested = (
            np.concatenate([f[j] for f in found]) for j in range(7)
        )
        order = np.lexsort((lo, pos))
        seg, blk, pos, lo, hi = seg[order], blk[order], pos[order], lo[order], hi[order]
        gone, tested = gone[order], tested[order]
        # Tables whose blocks overlap, or with rows in the memtable, are merged as usual.
        same = pos[1:] == pos[:-1]
        slow = set(pos[1:][same & (hi[:-1] >= lo[1:])].tolist())
        slow.update(k for k, uid in enumerate(uids) if self._mem_of(uid) is not None)
        out: list[list[Piece]] = [[] for _ in range(n)]
        cache, compressor = self.cache, db.options.compression
        tables = [r.block_table() for r in readers]
        memos = [arenas.setdefault(r.name, {}) for r in readers]
        rows = zip(
            seg.tolist(), blk.tolist(), pos.tolist(), gone.tolist(), tested.tolist(), strict=True
        )
        for r, b, k, ruled_out, known in rows:
            if k in slow or ruled_out:
                continue
            _, _, _, metas, index = tables[r]
            block = metas[b]
            if known or skip is None or not skip(block):
                out[k].append(
                    BlockPiece(
                        readers[r], block, index[b], cache, uids[k], types, compressor, t0, t1,
                        memos[r],
                    )
                )  # fmt: skip
        wanted = [TS] + [col_key(c) for c in col_ids]
        for k in sorted(slow):
            out[k] = self._pieces(
                uids[k], db, readers, types, wanted, col_ids, t0, t1, skip, arenas
            )
        return out

    def _pieces(
        self,
        uid: int,
        db: Database,
        readers: list[SegmentReader],
        types: dict[int, pa.DataType],
        wanted: list[str],
        col_ids: list[int],
        t0: int | None,
        t1: int | None,
        skip: Callable[[BlockMeta], bool] | None = None,
        arenas: dict[str, dict] | None = None,
    ) -> list[Piece]:
        spans: list[tuple[int, int, int, Any, int]] = []  # lo, hi, age, reader|None, index
        for age, reader in enumerate(readers):
            for i, b in enumerate(reader.tables.get(uid, ())):
                if (t0 is not None and b.t1 < t0) or (t1 is not None and b.t0 > t1):
                    continue
                spans.append((b.t0, b.t1, age, reader, i))
        mem = self._mem_of(uid)
        if mem is not None:
            for k, (lo, hi) in enumerate(mem.ranges):
                if (t0 is not None and hi < t0) or (t1 is not None and lo > t1):
                    continue
                spans.append((lo, hi, len(readers) + k, None, k))
        if not spans:
            return []
        if len(spans) > 1:
            spans.sort(key=lambda s: (s[0], s[2]))
        compressor = db.options.compression
        out: list[Piece] = []
        if mem is None and all(spans[k][1] < spans[k + 1][0] for k in range(len(spans) - 1)):
            # Segment blocks only, none overlapping another (the common case): a piece each.
            for _, _, _, reader, i in spans:
                block = reader.tables[uid][i]
                if skip is None or not skip(block):
                    memo = None if arenas is None else arenas.setdefault(reader.name, {})
                    out.append(
                        BlockPiece(
                            reader, block, i, self.cache, uid, types, compressor, t0, t1, memo
                        )
                    )
            return out

        def block_piece(reader: SegmentReader, i: int) -> BlockPiece:
            block = reader.tables[uid][i]
            memo = None if arenas is None else arenas.setdefault(reader.name, {})
            return BlockPiece(reader, block, i, self.cache, uid, types, compressor, t0, t1, memo)

        def emit(cluster: list[tuple[int, int, int, Any, int]]) -> None:
            if len(cluster) == 1:
                _, _, _, reader, i = cluster[0]
                if reader is not None:
                    # Only a block that overlaps nothing may be skipped: in a cluster, a
                    # newer block's rows replace older ones even where they fail a filter.
                    if skip is None or not skip(reader.tables[uid][i]):
                        out.append(block_piece(reader, i))
                    return
                if mem.sorted[i]:
                    rows = clip(_select(mem.chunks[i], wanted, db, uid, self), t0, t1)
                    if rows.num_rows:
                        out.append(RowsPiece(rows))
                    return
            sources = []
            ordered = sorted(cluster, key=lambda s: s[2])  # oldest first: the newest wins
            for _, _, _, reader, i in ordered:
                if reader is None:
                    sources.append(clip(_select(mem.chunks[i], wanted, db, uid, self), t0, t1))
                else:
                    piece = block_piece(reader, i)
                    arrays = [pa.array(piece.ts(), pa.int64())]
                    arrays += [piece.column(c) for c in col_ids]
                    sources.append(pa.Table.from_arrays(arrays, names=wanted))
            merged = merge_sources(sources, [s[3] is not None for s in ordered])
            if merged is not None and merged.num_rows:
                out.append(RowsPiece(merged))

        cluster = [spans[0]]
        reach = spans[0][1]
        for s in spans[1:]:
            if s[0] <= reach:
                cluster.append(s)
                reach = max(reach, s[1])
            else:
                emit(cluster)
                cluster, reach = [s], s[1]
        emit(cluster)
        return out

    def last_row(self, uid: int) -> pa.Table | None:
        """The newest row of a table (all current columns), from the last-row cache."""
        with self.lock:
            self._settle()
            if uid in self.last_rows and self.last_rows[uid] is not None:
                return _select(self.last_rows[uid], None, self.dbs[self.uid_db[uid]], uid, self)
            db = self.dbs[self.uid_db[uid]]
            newest = None
            for name in self._segment_names(db, None, None):
                for b in self.readers[name].blocks(uid):
                    newest = b.t1 if newest is None else max(newest, b.t1)
            mem = self._mem_of(uid)
            if mem is not None:
                hi = max(h for _, h in mem.ranges)
                newest = hi if newest is None else max(newest, hi)
            if newest is None:
                return None
            col_ids = [c.id for c in db.columns_of(self._table_by_uid(uid))[1:]]
            rows, _ = self.scan(uid, col_ids, newest, newest)
            if db.options.cachemodel in ("last_row", "both"):
                self.last_rows[uid] = rows
            return rows

    def time_bounds(self, uid: int) -> tuple[int, int] | None:
        """Smallest and largest timestamp stored for a table, from block indexes only."""
        with self.lock:  # a background flush may commit (segments, frozen rows) meanwhile
            self._settle()
            db = self.dbs[self.uid_db[uid]]
            lo = hi = None
            for name in self._segment_names(db, None, None):
                for b in self.readers[name].blocks(uid):
                    lo = b.t0 if lo is None else min(lo, b.t0)
                    hi = b.t1 if hi is None else max(hi, b.t1)
            mem = self._mem_of(uid)
            if mem is not None:
                for a, b in mem.ranges:
                    lo = a if lo is None else min(lo, a)
                    hi = b if hi is None else max(hi, b)
            return None if lo is None else (lo, hi)


def _select(
    chunk: pa.Table, wanted: list[str] | None, db: Database, uid: int, eng: Engine
) -> pa.Table:
    """Columns ``wanted`` of a memtable chunk; columns it predates come back as nulls."""
    if wanted is None:
        cols = db.columns_of(eng._table_by_uid(uid))
        wanted = [TS] + [col_key(c.id) for c in cols[1:]]
    have = set(chunk.column_names)
    if all(w in have for w in wanted) and len(wanted) == len(have):
        return chunk.select(wanted)
    types = {
        col_key(c.id): arrow_type(c.type, db.options.precision)
        for c in db.columns_of(eng._table_by_uid(uid))
    }
    arrays = [chunk.column(w) if w in have else pa.nulls(chunk.num_rows, types[w]) for w in wanted]
    return pa.Table.from_arrays(arrays, names=wanted)


def _make_columns(
    specs: list[tuple[str, str]], *, first_timestamp: bool, start: int = 0
) -> list[Column]:
    if first_timestamp and (not specs or specs[0][1] != "TIMESTAMP"):
        raise TsdbError("the first column must be of type TIMESTAMP")
    if len(specs) > 4096:
        raise TsdbError("a table has at most 4096 columns")
    return [Column(check_identifier(n, "column"), t, start + i) for i, (n, t) in enumerate(specs)]


def _check_unique(names: list[str], table: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise TsdbError(f"duplicate column or tag name {n!r} in {table!r}")
        seen.add(n)


def _tag_value(tag: Column, value: Any) -> Any:
    """Check and convert a tag value to JSON-storable Python."""
    from septet.tsdb.values import coerce_scalar

    return coerce_scalar(value, tag.type, tag.name)


def _encode_insert(batches: list[tuple[int, pa.Table]], runs: list[TableRuns] = ()) -> bytes:  # type: ignore[assignment]
    """One WAL body for many tables, in groups: the rows of a group as one Arrow IPC stream and
    the (uid, row count) of each table's run in it. Each TableRuns is a group; ``batches``
    (one table's rows each) are grouped by schema."""
    groups = [(r.rows, r.uids, r.counts) for r in runs]
    by_schema: dict[str, list[tuple[int, pa.Table]]] = {}
    key, last = "", None
    for uid, rows in batches:
        schema = rows.schema
        if last is None or not schema.equals(last, check_metadata=True):  # a run: no new text
            key, last = schema.to_string(), schema
        by_schema.setdefault(key, []).append((uid, rows))
    for members in by_schema.values():
        # One record batch, not one per table (1,000 sub-tables per line-protocol batch):
        # half the time to write, and far less to read back after a crash.
        groups.append((
            pa.concat_tables([rows for _, rows in members]),
            np.array([uid for uid, _ in members], np.int64),
            np.array([rows.num_rows for _, rows in members], np.int64),
        ))  # fmt: skip
    out = io.BytesIO()
    for rows, uids, counts in groups:
        sink = pa.BufferOutputStream()
        rows = rows.combine_chunks()
        with pa.ipc.new_stream(sink, rows.schema) as writer:
            writer.write_table(rows)
        buf = sink.getvalue()
        out.write(_GROUP_HEADER.pack(uids.size, buf.size))
        out.write(np.column_stack((uids, counts)).astype("<u8").tobytes())
        out.write(buf)
    return out.getvalue()


def _split_runs(pending: list[TableRuns]) -> Iterator[tuple[int, pa.Table, RowsMeta]]:
    """Inserts kept whole, split per table: one (uid, rows, meta) per table for all of them,
    each table's rows in arrival order."""
    groups: list[list[TableRuns]] = []
    for r in pending:  # consecutive inserts of one schema are split together
        if groups and groups[-1][0].rows.schema.equals(r.rows.schema):
            groups[-1].append(r)
        else:
            groups.append([r])
    for group in groups:
        try:
            rows = pa.concat_tables([r.rows for r in group])
        except pa.ArrowInvalid:  # equal schemas but for metadata
            rows = pa.concat_tables([r.rows for r in group], promote_options="permissive")
        offsets = np.cumsum([0] + [r.num_rows for r in group[:-1]])
        uids = np.concatenate([r.uids for r in group])
        starts = np.concatenate([r.starts + o for r, o in zip(group, offsets, strict=True)])
        counts = np.concatenate([r.counts for r in group])
        lo = np.concatenate([r.lo for r in group])
        hi = np.concatenate([r.hi for r in group])
        increasing = np.concatenate([r.increasing for r in group])
        order = np.argsort(uids, kind="stable")  # each table's runs, oldest first
        uids, starts, counts = uids[order], starts[order], counts[order]
        lo, hi, increasing = lo[order], hi[order], increasing[order]
        # The rows of the runs in that order: one take for every table.
        run_of_row = np.repeat(np.arange(uids.size), counts)
        first_row = np.cumsum(counts) - counts
        perm = starts[run_of_row] + (np.arange(run_of_row.size) - first_row[run_of_row])
        rows = rows.take(pa.array(perm))
        cuts = np.flatnonzero(np.diff(uids)) + 1
        heads = np.concatenate([[0], cuts])
        row_heads = first_row[heads]
        row_counts = np.diff(np.append(row_heads, run_of_row.size))
        # A table's rows are increasing if each run is and each starts after the last.
        follows = np.ones(uids.size, bool)
        follows[1:] = lo[1:] > hi[:-1]
        ok = increasing & follows
        ok[heads] = increasing[heads]
        t_lo, t_hi = np.minimum.reduceat(lo, heads), np.maximum.reduceat(hi, heads)
        t_inc = np.logical_and.reduceat(ok, heads)
        per_row = rows.nbytes / max(rows.num_rows, 1)
        for uid, a, n, low, high, inc in zip(
            uids[heads].tolist(), row_heads.tolist(), row_counts.tolist(),
            t_lo.tolist(), t_hi.tolist(), t_inc.tolist(), strict=True,
        ):  # fmt: skip
            yield uid, rows.slice(a, n), RowsMeta(low, high, inc, int(per_row * n))


def decode_groups(body: memoryview) -> Iterator[tuple[pa.Table, np.ndarray, np.ndarray]]:
    """Each group of a body that _encode_insert wrote: its rows, and the uid
    and row count of each table's run in them."""
    pos = 0
    while pos < len(body):
        count, size = _GROUP_HEADER.unpack_from(body, pos)
        pos += _GROUP_HEADER.size
        index = np.frombuffer(body, "<u8", 2 * count, pos).astype(np.int64).reshape(count, 2)
        pos += 16 * count
        table = pa.ipc.open_stream(pa.py_buffer(body[pos : pos + size])).read_all()
        pos += size
        yield table, index[:, 0], index[:, 1]


def decode_tables(body: memoryview) -> list[tuple[int, pa.Table]]:
    """(uid, rows) of each table in a body that _encode_insert wrote."""
    out = []
    for table, uids, counts in decode_groups(body):
        start = 0
        for uid, n in zip(uids.tolist(), counts.tolist(), strict=True):
            out.append((uid, table.slice(start, n)))
            start += n
    return out


def options_dict(options: DatabaseOptions) -> dict[str, Any]:
    return asdict(options)
