"""Timing helper shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

import time

import jax


def best_time(fn, repeats):
    """Smallest wall time of `repeats` calls of `fn`, waiting for JAX results to be ready."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)
