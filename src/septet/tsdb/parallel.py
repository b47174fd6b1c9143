"""A thread pool for query work: zstd and numpy's large kernels release the GIL, so blocks
decoded on different threads are decoded on several cores at once."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            _pool = ThreadPoolExecutor(size, thread_name_prefix="tsdb-query")
            _pool_size = size
        return _pool


def map_chunks(
    fn: Callable[[Sequence[T]], Any], items: Sequence[T], threads: int = 0, min_items: int = 8
) -> list[Any]:
    """``fn`` over contiguous chunks of ``items``, on up to ``threads`` threads (0: one per
    core); results in the order of the chunks. Few items run on the calling thread."""
    n_threads = threads if threads > 0 else cores()
    if (
        n_threads <= 1
        or len(items) < min_items
        or threading.current_thread().name.startswith("tsdb-query")
        or getattr(_draining, "active", False)
    ):
        return [fn(items)]  # also inside a chunk: no pool work from pool work
    # A few chunks per thread even out tables of different sizes.
    n_chunks = min(len(items), n_threads * 3)
    bounds = [len(items) * k // n_chunks for k in range(n_chunks + 1)]
    chunks = [items[bounds[k] : bounds[k + 1]] for k in range(n_chunks)]
    results: list[Any] = [None] * n_chunks
    taken = itertools.count()  # next() of a count is atomic: each chunk goes to one thread

    def drain() -> None:
        while (k := next(taken)) < n_chunks:
            results[k] = fn(chunks[k])

    # The calling thread takes chunks too, beside threads - 1 helpers: one thread fewer to
    # wake (a wake-up costs as much as decoding a block on a busy machine), and the caller
    # does not sit idle. An error is raised once every helper has stopped.
    helpers = [_executor(n_threads).submit(drain) for _ in range(n_threads - 1)]
    _draining.active = True
    try:
        drain()
    finally:
        _draining.active = False
        for h in helpers:
            h.exception()  # waits
    for h in helpers:
        h.result()  # a helper's error
    return results


_draining = threading.local()  # set while the calling thread works through chunks
