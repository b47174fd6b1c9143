"""The write-ahead log: every write is appended here, checksummed, before it is acknowledged.

File format (one file per generation, ``wal/<generation>.log``)::

    header  = b"SPTWAL01"
    record  = length:u32 | crc32(payload):u32 | payload[length]
    payload = seq:u64 | kind:u8 | body

Recovery reads records in order and stops at the first one that is short or fails its CRC:
that is a torn tail from a crash mid-append (or garbage after it). The file is truncated
there, so a torn record is never loaded and never followed by new records. Records before it
were fully written before their write was acknowledged, so nothing acknowledged is lost.

fsync policy (``fsync``):
- ``"always"``: fsync before acknowledging each write; survives power loss and kill -9.
- ``"periodic"``: fsync when the last one is older than ``fsync_period_ms``; every
  acknowledged write survives kill -9 (it is in the OS page cache), a power loss may lose the
  last period.
- ``"off"``: never fsync; survives kill -9, not power loss.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from septet.common.atomic import fsync_directory
from septet.tsdb.errors import TsdbError

MAGIC = b"SPTWAL01"
_RECORD = struct.Struct("<II")
_PAYLOAD = struct.Struct("<QB")
FSYNC_POLICIES = ("always", "periodic", "off")


class WriteAheadLog:
    """Append-only checksummed log of one generation; :meth:`replay` reads a directory back."""

    def __init__(
        self, directory: Path, generation: int, fsync: str = "always", fsync_period_ms: int = 1000
    ):
        if fsync not in FSYNC_POLICIES:
            raise TsdbError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, not {fsync!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.generation = generation
        self.fsync = fsync
        self.fsync_period = fsync_period_ms / 1000.0
        self.path = self.directory / f"{generation:012d}.log"
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if fresh:
            os.write(self._fd, MAGIC)
            os.fsync(self._fd)
            fsync_directory(self.directory)
        self._last_sync = time.monotonic()
        self.bytes_written = os.fstat(self._fd).st_size

    def append(self, seq: int, kind: int, body: bytes | memoryview) -> None:
        """Write one record (one write() call) and sync it according to the policy."""
        payload = _PAYLOAD.pack(seq, kind) + bytes(body)
        record = _RECORD.pack(len(payload), zlib.crc32(payload)) + payload
        view = memoryview(record)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.bytes_written += len(record)
        if self.fsync == "always":
            os.fsync(self._fd)
        elif self.fsync == "periodic":
            now = time.monotonic()
            if now - self._last_sync >= self.fsync_period:
                os.fsync(self._fd)
                self._last_sync = now

    def sync(self) -> None:
        os.fsync(self._fd)
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            if self.fsync != "off":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def read_records(path: Path, truncate: bool = True) -> Iterator[tuple[int, int, memoryview]]:
    """Yield (seq, kind, body) of every intact record; truncate the file at a torn tail."""
    data = path.read_bytes()
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        # A crash while creating the file: nothing in it was ever acknowledged.
        if truncate:
            with open(path, "wb") as f:
                f.write(MAGIC)
                os.fsync(f.fileno())
        return
    view = memoryview(data)
    pos = len(MAGIC)
    good = pos
    while pos + _RECORD.size <= len(data):
        length, crc = _RECORD.unpack_from(data, pos)
        end = pos + _RECORD.size + length
        if length < _PAYLOAD.size or end > len(data):
            break
        payload = view[pos + _RECORD.size : end]
        if zlib.crc32(payload) != crc:
            break
        seq, kind = _PAYLOAD.unpack_from(payload)
        yield seq, kind, payload[_PAYLOAD.size :]
        pos = good = end
    if good != len(data) and truncate:
        with open(path, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())


def generations(directory: Path) -> list[int]:
    """The WAL generations present in ``directory``, oldest first."""
    if not directory.exists():
        return []
    return sorted(int(p.stem) for p in directory.glob("*.log") if p.stem.isdigit())
