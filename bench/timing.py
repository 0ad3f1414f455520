"""Timing policy shared by the benchmark harness and the out-of-process TorchQuantum worker.

One untimed warm-up call (JIT compilation, tape caches, first-touch of buffers) whose result is
returned for verification, then up to ``repeat`` timed calls that stop early once ``budget_s``
seconds are spent, so a slow peer costs a bounded time while a fast one gets many samples; a
warm-up slower than ``slow_call_s`` is the only call (the harness reports it as such).
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

MIN_TIMED_CALLS = 1  # a call slower than the whole budget is still timed once after its warm-up


def warm_and_time(
    fn: Callable[[], Any], repeat: int, budget_s: float, slow_call_s: float
) -> tuple[Any, float, list[float]]:
    """Call ``fn`` once untimed, then time it up to ``repeat`` times within ``budget_s`` seconds.

    A warm-up slower than ``slow_call_s`` is not repeated (no timed calls): a 60 s peer call
    would otherwise cost two minutes for one number. Returns (the warm-up call's result, the
    warm-up's seconds, wall-clock seconds of each timed call).
    """
    if repeat < MIN_TIMED_CALLS:
        raise ValueError(f"repeat must be >= {MIN_TIMED_CALLS}, got {repeat}")
    start = time.perf_counter()
    result = fn()
    warmup_s = time.perf_counter() - start
    times: list[float] = []
    if warmup_s >= slow_call_s:
        return result, warmup_s, times
    spent = 0.0
    while len(times) < repeat and (len(times) < MIN_TIMED_CALLS or spent < budget_s):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return result, warmup_s, times


def median(times: list[float]) -> float:
    """Median of the timed calls in seconds."""
    return statistics.median(times)
