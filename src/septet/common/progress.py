"""Progress bars for long work: shown on a terminal, silent in pipes, CI, tests and ``--quiet``.

Bars go to stderr so that stdout stays clean for results.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or allow again) every progress bar in this process; ``--quiet`` calls this."""
    global _quiet
    _quiet = quiet


def progress_enabled() -> bool:
    """True when a bar would be seen: stdout and stderr are terminals and nobody asked for quiet."""
    if _quiet or os.environ.get("SEPTET_QUIET", "") not in ("", "0"):
        return False
    return sys.stdout.isatty() and sys.stderr.isatty()


class ProgressBar:
    """A handle on one bar: ``advance`` after each unit of work, ``describe`` to relabel it."""

    def __init__(self, progress=None, task_id=None):
        self._progress = progress
        self._task_id = task_id

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task_id, amount)

    def describe(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task_id, description=description)


@contextlib.contextmanager
def progress_bar(total: float | None, description: str = "") -> Iterator[ProgressBar]:
    """A bar for work counted by hand (steps, bytes, rows); a silent handle when disabled."""
    if not progress_enabled():
        yield ProgressBar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield ProgressBar(progress, progress.add_task(description, total=total))


def track(iterable: Iterable[T], total: float | None = None, description: str = "") -> Iterator[T]:
    """Iterate ``iterable`` while advancing a bar (``total`` defaults to ``len(iterable)``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress_bar(total, description) as bar:
        for item in iterable:
            yield item
            bar.advance()
