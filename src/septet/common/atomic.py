"""Atomic file writes: readers see the old file or the new one, never a mix.

The contract: the new content goes to a temporary file in the same directory, is flushed and
fsync'ed, then renamed over the target (``os.replace`` is atomic on POSIX within a file
system), and the directory is fsync'ed so the rename itself survives a power cut. If anything
fails before the rename, the temporary file is removed and the old file is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def fsync_directory(directory: Path) -> None:
    """Make a rename or creation inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` only if the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write opens files for writing only ('w' or 'wb'), not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if target.exists():
            # Keep the permissions a user gave the file they are replacing.
            os.chmod(temp, target.stat().st_mode & 0o7777)
        else:
            os.chmod(temp, 0o666 & ~_current_umask())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Serialise ``obj`` first, then replace ``path`` atomically: a value JSON cannot hold
    raises before anything is written."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    atomic_write_text(path, text + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a whole folder atomically: yields a fresh staging folder beside ``path``; when the
    block ends without error, the staging folder replaces ``path`` (the old folder is renamed
    aside first and removed only after the new one is in place), else it is removed. The
    caller fsyncs the files it writes; this fsyncs the parent directory after the swap."""
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(staging, target)
        fsync_directory(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
