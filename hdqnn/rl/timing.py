"""Wall-clock accounting of a training step's parts (env, critic update, PQC forward, ...)."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator


class StepTimer:
    """Accumulates wall-clock seconds per named part of a training step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - start

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] += seconds

    def reset(self) -> None:
        self.seconds.clear()


def per_step_ms(seconds: dict[str, float], steps: int) -> dict[str, float]:
    """``{"time/<part>_ms": milliseconds per env step}`` of ``seconds`` spent over ``steps`` steps."""
    return {f"time/{part}_ms": 1e3 * s / max(steps, 1) for part, s in sorted(seconds.items())}
