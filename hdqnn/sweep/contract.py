"""What the sweep relies on from ``hdqnn train``: its run folder's files and its flags.

The run folder (see ``hdqnn/rl/train.py``): ``run.json`` (arguments, written at a fresh start),
``metrics.jsonl`` (JSON lines with ``step``), ``checkpoint.pt`` (atomic: temp file + rename) and,
once finished, ``summary.json``. A trial is finished when ``summary.json`` exists; it resumes with
``train --resume DIR`` when ``checkpoint.pt`` exists; otherwise it starts fresh with ``--out DIR``.
The names are repeated here so the sweep's driver does not import torch; a test checks that they
match ``hdqnn.rl``'s.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"
STEP_KEY = "step"
RETURN_KEY = "charts/episodic_return"
EVAL_KEY = "eval/mean_return"
#: train's exit statuses after SIGINT/SIGTERM (128 + the signal): it stopped after a step and
#: saved a checkpoint, so a retry resumes, as after a kill.
STOPPED_BY_SIGNAL = {130: "SIGINT", 143: "SIGTERM"}
#: Bytes read from the end of ``metrics.jsonl`` for a progress line.
PROGRESS_TAIL_BYTES = 65_536


@dataclass(frozen=True)
class RunState:
    """finished: train wrote its summary; has_checkpoint: it can resume from its checkpoint."""

    finished: bool
    has_checkpoint: bool


@dataclass(frozen=True)
class Progress:
    """The latest state a running trial logged (None: not logged yet)."""

    step: int | None = None
    episodic_return: float | None = None
    eval_return: float | None = None


def run_state(run_dir: str | os.PathLike) -> RunState:
    run_dir = Path(run_dir)
    return RunState((run_dir / SUMMARY_FILE).is_file(), (run_dir / CHECKPOINT_FILE).is_file())


def _tail_records(path: Path, size: int) -> list[dict[str, Any]]:
    """Complete JSON records in the last ``size`` bytes of a JSON-lines file, oldest first."""
    try:
        with open(path, "rb") as f:
            start = max(f.seek(0, os.SEEK_END) - size, 0)
            f.seek(start)
            lines = f.read().split(b"\n")
    except OSError:
        return []
    if start > 0:
        lines = lines[1:]  # the first line may be cut
    records = []
    for line in lines[:-1]:  # the last element is empty or a line still being written
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_progress(run_dir: str | os.PathLike, size: int = PROGRESS_TAIL_BYTES) -> Progress:
    """Latest step, training episode return and evaluation return of a run (cheap: reads a tail)."""
    step = episodic = evaluation = None
    for record in _tail_records(Path(run_dir) / METRICS_FILE, size):
        step = record.get(STEP_KEY, step)
        episodic = record.get(RETURN_KEY, episodic)
        evaluation = record.get(EVAL_KEY, evaluation)
    return Progress(step, episodic, evaluation)


def read_summary(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """train's ``summary.json`` of a finished run (None if absent or unreadable)."""
    try:
        return json.loads((Path(run_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


__all__ = ["RunState", "Progress", "run_state", "read_progress", "read_summary",
           "RUN_FILE", "METRICS_FILE", "CHECKPOINT_FILE", "SUMMARY_FILE"]
