"""The query thread pool: chunks of work on the calling thread and helpers."""

import threading

import pytest

from septet.tsdb import parallel


def test_every_chunk_runs_once_in_order_and_the_caller_takes_chunks_too():
    import time

    seen: list[tuple[str, tuple[int, ...]]] = []
    lock = threading.Lock()

    def work(chunk):
        time.sleep(0.005)  # long enough that every thread gets chunks
        with lock:
            seen.append((threading.current_thread().name, tuple(chunk)))
        return sum(chunk)

    items = list(range(100))
    results = parallel.map_chunks(work, items, threads=3, min_items=2)
    chunks = sorted(c for _, c in seen)
    assert len(results) == len(chunks) == len(set(chunks)) == 9  # three per thread, each once
    assert [x for c in chunks for x in c] == items
    assert results == [sum(c) for c in chunks]  # in the order of the chunks
    caller = threading.current_thread().name
    names = [n for n, _ in seen]
    assert caller in names  # the calling thread worked too
    assert all(n == caller or n.startswith("tsdb-query") for n in names)


def test_work_inside_a_chunk_does_not_go_to_the_pool_again():
    inner_threads = []

    def inner(chunk):
        inner_threads.append(threading.current_thread().name)
        return len(chunk)

    def outer(chunk):
        # Whichever thread runs this chunk (the caller or a helper) runs the inner work itself.
        me = threading.current_thread().name
        got = parallel.map_chunks(inner, list(range(20)), threads=3, min_items=2)
        assert got == [20] and inner_threads[-1] == me
        return me

    parallel.map_chunks(outer, list(range(12)), threads=3, min_items=2)
    assert len(inner_threads) == 9


def test_an_error_in_any_chunk_is_raised_after_every_thread_stopped():
    running = []

    def work(chunk):
        running.append(1)
        if 7 in chunk:
            raise ValueError("chunk with 7")
        running.pop()
        return chunk

    with pytest.raises(ValueError, match="chunk with 7"):
        parallel.map_chunks(work, list(range(30)), threads=2, min_items=2)
    assert len(running) == 1  # only the failed chunk did not finish
