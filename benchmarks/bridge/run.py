"""Bridge benchmark: what crossing between frameworks costs, zero-copy (DLPack) against a
numpy-copy path like tfpyth's, in all six directions, in one process.

1. Per-call overhead, small tensors (16 float32): a bridged call minus the same function called
   natively in the source framework; forward only, and forward + backward (each side's own
   vector-Jacobian product API).
2. Forward + backward of y = 2x for 1 MB to 256 MB of float32 through the bridge, with the
   conversions by DLPack (septet) and by numpy copies (tfpyth's way: .numpy() out of one
   framework, a new tensor from that array in the other), and natively in the source
   framework. Crossing time = the time spent inside the conversions themselves during those
   calls (input, output, cotangent and gradient), timed around each conversion; the end-to-end
   times are reported beside it. (Subtracting the native time from the bridged time is not a
   usable measure at large sizes: a 256 MB fwd+bwd takes 300-600 ms, and its run-to-run noise,
   tens of ms from page faults and other processes, is 100x the DLPack crossing.)

Run: make bench PART=bridge  (or python benchmarks/bridge/run.py [--quick])
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
import torch

from septet.bridge import transfer, wrap
from septet.common.report import write_benchmark_results

FRAMEWORKS = ("torch", "tensorflow", "jax")
DIRECTIONS = [(s, t) for s in FRAMEWORKS for t in FRAMEWORKS if s != t]


def double(x: Any) -> Any:
    return x * 2.0


def make(framework: str, n: int) -> Any:
    base = torch.linspace(-1.0, 1.0, n, dtype=torch.float32)
    return base if framework == "torch" else transfer.convert(base, "torch", framework)


def fwd_bwd(framework: str, fn: Callable[[Any], Any], ones: Any) -> Callable[[Any], Any]:
    """x -> (y, dL/dx for L = Σ y·ones) in ``framework``'s own reverse-mode API. ``ones`` is made
    once, outside the timings: allocating (and page-faulting) a fresh 256 MB cotangent costs more
    than the crossing being measured."""
    if framework == "torch":

        def run(x: Any) -> Any:
            leaf = x.detach().requires_grad_(True)
            y = fn(leaf)
            (grad,) = torch.autograd.grad(y, leaf, ones)
            return y, grad

        return run
    if framework == "tensorflow":

        def run(x: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x)
            return y, tape.gradient(y, x, output_gradients=ones)

        return run

    def run(x: Any) -> Any:
        y, vjp = jax.vjp(fn, x)
        return y, vjp(ones)[0]

    return run


def ones(framework: str, n: int) -> Any:
    base = torch.ones(n, dtype=torch.float32)
    return base if framework == "torch" else transfer.convert(base, "torch", framework)


def block(result: Any) -> None:
    """Wait for asynchronous work (JAX dispatch) so that timings are of finished work."""
    for x in result if isinstance(result, tuple) else (result,):
        if isinstance(x, jax.Array):
            x.block_until_ready()


def seconds(
    cases: list[tuple[Callable[[Any], Any], Any]], *, repeat: int, number: int, cpu: bool = False
) -> list[float] | list[tuple[float, float]]:
    """For each ``(fn, x)``: the median over ``repeat`` rounds of the mean time of ``number``
    calls ``fn(x)`` (with ``cpu``: a pair, wall time and this process's CPU time). The cases take
    turns within each round, so a burst of load from other processes lands on all of them alike
    and their ratios stay meaningful. CPU time leaves out the time spent waiting for a core,
    which on a shared machine is most of the wall time of a small call."""
    for fn, x in cases:
        block(fn(x))  # warm up: tracing, caches, allocator
    walls: list[list[float]] = [[] for _ in cases]
    cpus: list[list[float]] = [[] for _ in cases]
    for _ in range(repeat):
        for wall, cpu_times, (fn, x) in zip(walls, cpus, cases, strict=True):
            gc.disable()
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(number):
                block(fn(x))
            wall.append((time.perf_counter() - start) / number)
            cpu_times.append((time.process_time() - start_cpu) / number)
            gc.enable()
    if cpu:
        return [
            (statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus, strict=True)
        ]
    return [statistics.median(w) for w in walls]


# --- the numpy-copy path (tfpyth's) ---------------------------------------------------------


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    if isinstance(x, tf.Tensor):
        return x.numpy()
    return np.asarray(x)


FROM_NUMPY = {
    "torch": lambda a: torch.tensor(a),
    "tensorflow": lambda a: tf.constant(a),
    "jax": lambda a: jnp.array(a, copy=True),
}


class numpy_copies:
    """Within this block every crossing goes through numpy with a copy, as tfpyth's does."""

    def __enter__(self) -> None:
        self.saved = dict(transfer._CONVERTERS)
        for source, target in self.saved:
            transfer._CONVERTERS[(source, target)] = lambda x, t=target: FROM_NUMPY[t](to_numpy(x))

    def __exit__(self, *exc: object) -> None:
        transfer._CONVERTERS.update(self.saved)


class timed_conversions:
    """Within this block every conversion (whatever its path) adds its wall time to ``total``.
    A JAX input is waited for before the clock starts and a JAX result before it stops, so
    asynchronous copies count where they happen and the producer's compute does not."""

    def __init__(self) -> None:
        self.total = 0.0

    def __enter__(self) -> timed_conversions:
        self.saved = dict(transfer._CONVERTERS)
        for key, convert in self.saved.items():

            def timed(x: Any, convert: Callable[[Any], Any] = convert) -> Any:
                block(x)  # waiting for the producer's asynchronous work is not crossing time
                start = time.perf_counter()
                out = convert(x)
                block(out)
                self.total += time.perf_counter() - start
                return out

            transfer._CONVERTERS[key] = timed
        return self

    def __exit__(self, *exc: object) -> None:
        transfer._CONVERTERS.update(self.saved)


def crossing_seconds(fn: Callable[[Any], Any], x: Any, *, repeat: int, copies: bool) -> float:
    """Median over ``repeat`` calls of the time ``fn(x)`` spends inside conversions, with the
    bridge's own converters or (``copies``) tfpyth-style numpy copies."""
    totals = []
    for _ in range(repeat):
        gc.disable()
        with numpy_copies() if copies else contextlib.nullcontext(), timed_conversions() as timer:
            block(fn(x))
        gc.enable()
        totals.append(timer.total)
    return statistics.median(totals)


# --- the measurements -----------------------------------------------------------------------


def overhead_rows(quick: bool) -> list[dict[str, Any]]:
    number, repeat = (100, 5) if quick else (300, 9)
    rows = []
    for source, target in DIRECTIONS:
        bridged = wrap(double, source=source, target=target)
        xs, xt = make(source, 16), make(target, 16)
        (native_fwd, native_fwd_cpu), (bridged_fwd, bridged_fwd_cpu) = seconds(
            [(double, xs), (bridged, xt)], repeat=repeat, number=number, cpu=True
        )
        (native_fb, native_fb_cpu), (bridged_fb, bridged_fb_cpu) = seconds(
            [
                (fwd_bwd(source, double, ones(source, 16)), xs),
                (fwd_bwd(target, bridged, ones(target, 16)), xt),
            ],
            repeat=repeat,
            number=number // 2,
            cpu=True,
        )
        rows.append(
            {
                "direction": f"{source} → {target}",
                "native fwd µs": native_fwd * 1e6,
                "bridged fwd µs": bridged_fwd * 1e6,
                "overhead fwd µs": (bridged_fwd - native_fwd) * 1e6,
                "overhead fwd CPU µs": (bridged_fwd_cpu - native_fwd_cpu) * 1e6,
                "native fwd+bwd µs": native_fb * 1e6,
                "bridged fwd+bwd µs": bridged_fb * 1e6,
                "overhead fwd+bwd µs": (bridged_fb - native_fb) * 1e6,
                "overhead fwd+bwd CPU µs": (bridged_fb_cpu - native_fb_cpu) * 1e6,
            }
        )
        print(rows[-1], flush=True)
    return rows


def size_rows(sizes_mb: list[int], quick: bool) -> list[dict[str, Any]]:
    rows = []
    for source, target in DIRECTIONS:
        bridged_fn = wrap(double, source=source, target=target)

        for mb in sizes_mb:
            n = mb * 2**20 // 4
            repeat = 3 if quick or mb >= 64 else 5
            number = 1 if mb >= 16 else 4
            xs, xt = make(source, n), make(target, n)
            native = fwd_bwd(source, double, ones(source, n))
            bridged = fwd_bwd(target, bridged_fn, ones(target, n))

            def copying(x: Any, bridged: Callable[[Any], Any] = bridged) -> Any:
                with numpy_copies():
                    return bridged(x)

            t_native, t_dlpack, t_copy = seconds(
                [(native, xs), (bridged, xt), (copying, xt)], repeat=repeat, number=number
            )
            crossing_dlpack = crossing_seconds(bridged, xt, repeat=repeat + 2, copies=False)
            crossing_copy = crossing_seconds(bridged, xt, repeat=repeat + 2, copies=True)
            rows.append(
                {
                    "direction": f"{source} → {target}",
                    "MB": mb,
                    "native ms": t_native * 1e3,
                    "dlpack ms": t_dlpack * 1e3,
                    "numpy-copy ms": t_copy * 1e3,
                    "crossing dlpack ms": crossing_dlpack * 1e3,
                    "crossing numpy-copy ms": crossing_copy * 1e3,
                    "crossing ratio": crossing_copy / crossing_dlpack,
                }
            )
            print(rows[-1], flush=True)
            del xs, xt, native, bridged, copying
            gc.collect()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 1 and 16 MB, fewer rounds")
    args = parser.parse_args()
    sizes = [1, 16] if args.quick else [1, 4, 16, 64, 256]
    # One intra-op thread: on a shared 2-core machine torch's OpenMP workers spin against other
    # processes and a 1 MB multiply can take 100 ms; the ops here are memory-bound anyway.
    torch.set_num_threads(1)
    overheads = overhead_rows(args.quick)
    sizes_table = size_rows(sizes, args.quick)
    largest = [r for r in sizes_table if r["MB"] == max(sizes)]
    notes = (
        "Overhead = bridged call minus the same function called natively in the source "
        "framework (16 float32 values), in wall time and in this process's CPU time (the wall "
        "time includes waiting for a core on this shared machine). Crossing = bridged "
        "the time spent inside the conversions (input, output, cotangent, gradient) during a "
        "bridged forward+backward of y = 2x, timed around each conversion; the numpy-copy path "
        "replaces each DLPack hand-over by `.numpy()` and a new tensor built from it (tfpyth's "
        "way). The crossing ratio divides the numpy-copy crossing by the DLPack crossing. The "
        "end-to-end times (native, DLPack, numpy-copy) are beside it; their differences are not "
        "the crossing at large sizes, where run-to-run noise exceeds it. CPU only (no GPU on "
        "this machine); the CPU "
        "is shared with other jobs, so absolute times are noisy; cases are interleaved round "
        "by round so ratios hold better.\n"
    )
    summary = {
        "max_overhead_fwd_us": max(r["overhead fwd µs"] for r in overheads),
        "max_overhead_fwd_bwd_us": max(r["overhead fwd+bwd µs"] for r in overheads),
        "max_overhead_fwd_cpu_us": max(r["overhead fwd CPU µs"] for r in overheads),
        "max_overhead_fwd_bwd_cpu_us": max(r["overhead fwd+bwd CPU µs"] for r in overheads),
        "min_crossing_ratio_at_largest": min(r["crossing ratio"] for r in largest),
        "largest_mb": max(sizes),
        "load_average_1min_at_end": os.getloadavg()[0],
        "goal_overhead_us": 100,
        "goal_crossing_ratio": 100,
    }
    json_path, md_path = write_benchmark_results(
        "bridge" + ("-quick" if args.quick else ""),
        {"summary": summary, "overhead": overheads, "sizes": sizes_table},
        {
            "Per-call overhead, 16 float32": overheads,
            "Forward + backward by tensor size": sizes_table,
            "Summary": [summary],
        },
        notes=notes,
    )
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
