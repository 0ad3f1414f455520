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
import warnings
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
        """``truncate_to``: the log's size at the checkpoint a run resumes from (0: a fresh run). What
        an interrupted run wrote after it is dropped; a log that is shorter or damaged is repaired
        (see ``restore_log``)."""
        self.path = Path(out_dir) / METRICS_FILE
        if truncate_to is not None:
            restore_log(self.path, truncate_to)
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


def _parse_record(line: bytes) -> dict[str, Any] | None:
    """The record of one complete log line, or None if it is not one."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return record if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def restore_log(path: str | os.PathLike, size: int) -> str | None:
    """Make ``path`` the log a checkpoint expects: its first ``size`` bytes, records only.

    The usual case, a log at least ``size`` bytes long and whole up to there, is truncated to
    ``size`` (dropping what an interrupted run wrote after its checkpoint). A log that is shorter
    (records lost), torn mid-line or garbled is rewritten atomically with the records it still holds
    (NUL bytes, which no JSON text contains, are stripped; a line that still is not a record is
    dropped) plus a ``note`` record saying what was repaired. The note is also warned about and
    returned (None: nothing needed repair). A log is never extended with filler bytes.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(size)
    except FileNotFoundError:
        data = b""
    *lines, torn = data.split(b"\n")
    records = [_parse_record(line.replace(b"\0", b"")) for line in lines]
    if len(data) == size and not torn and b"\0" not in data and None not in records:
        with open(path, "ab") as f:  # "ab" creates a missing log (size 0)
            f.truncate(size)
        return None
    kept = [r for r in records if r is not None]
    problems = [f"{len(data)} of the {size} bytes its checkpoint expects"] if len(data) < size else []
    if b"\0" in data:
        problems.append("NUL bytes removed")
    dropped = len(records) - len(kept) + bool(torn.replace(b"\0", b""))
    if dropped:
        problems.append(f"{dropped} damaged or torn lines dropped")
    note = f"{path} was repaired on resume ({'; '.join(problems)}); {len(kept)} records kept"
    repaired = [*kept, {"step": kept[-1]["step"] if kept else 0, "wall_time": time.time(), "note": note}]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in repaired), encoding="utf-8")
    os.replace(tmp, path)
    warnings.warn(note, RuntimeWarning, stacklevel=3)
    return note


def read_metrics(run_dir: str | os.PathLike, skipped: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` in order (a torn last line is skipped). A damaged
    record is a ValueError naming the file and line, or, given a ``skipped`` list, is skipped and
    its line number appended to the list."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            record = _parse_record(line)
            if record is not None:
                yield record
            elif not line.endswith(b"\n"):
                continue
            elif skipped is None:
                raise ValueError(f"{path}, line {number}: malformed record: {line[:80]!r}")
            else:
                skipped.append(number)
