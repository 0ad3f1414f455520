"""Run logs: JSON lines (``metrics.jsonl``, one record per log call) plus TensorBoard scalars.

Each JSON record is ``{"step": int, "wall_time": float, "<key>": value, ...}`` with the stable keys
``charts/episodic_return``, ``charts/SPS``, ``losses/qf_loss``, ``losses/actor_loss``,
``qtdnn/fit_loss``, ``qtdnn/grad_cosine``, ``quantum/circuit_executions``, ``eval/mean_return``, ...
Lists (e.g. ``eval/returns``) go to the JSON only.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

from .tensorboard import SummaryWriter

#: The run folder's layout.
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
PLOT_FILE = "learning_curve.png"
SUMMARY_FILE = "summary.json"


class MetricLogger:
    """Appends records to ``out_dir/metrics.jsonl`` (and TensorBoard under ``out_dir/tb``)."""

    def __init__(self, out_dir: str | os.PathLike, tensorboard: bool = True, truncate_to: int | None = None):
        """``truncate_to``: on resume, drop what an interrupted run wrote after its checkpoint."""
        self.path = Path(out_dir) / METRICS_FILE
        if truncate_to is not None and self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(truncate_to)
        self._file = open(self.path, "ab")
        self._tb = SummaryWriter(Path(out_dir) / TENSORBOARD_DIR) if tensorboard else None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        now = time.time()
        record = {"step": step, "wall_time": now, **{k: _finite_or_none(v) for k, v in metrics.items()}}
        line = json.dumps(record, default=_plain, allow_nan=False) + "\n"
        self._file.write(line.encode())
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step, now)

    def flush(self) -> int:
        """Flush both files; returns the JSON file's size (the resume truncation point)."""
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _finite_or_none(value: Any) -> Any:
    """NaN/inf become null: strict JSON, and a missing value rather than a fake number."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _plain(value: Any) -> Any:
    """JSON fallback for NumPy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot log value of type {type(value).__name__}")


def read_metrics(run_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` in order (a torn last line is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise ValueError(f"{path}: malformed record: {line[:80]!r}") from None
