"""Progress of a sweep: one live line per running trial, and a line per event.

On a terminal the block of running trials is redrawn in place; elsewhere (CI logs, files) events
print as they happen and the block is printed every ``plain_interval_s`` seconds.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import contract

TTY_REFRESH_S = 1.0
PLAIN_INTERVAL_S = 30.0
#: Redraw: move the cursor up N lines and clear to the end of the screen.
_UP_AND_CLEAR = "\x1b[{n}F\x1b[J"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@dataclass
class _Running:
    """A running trial: where it logs, its step budget and the first (time, step) seen (for the ETA)."""

    run_dir: Path
    total_steps: int | None
    attempt: int
    first_seen: tuple[float, int] | None = None
    line: str = ""


class ProgressBoard:
    """Prints a sweep's progress to ``stream``."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None,
                 plain_interval_s: float = PLAIN_INTERVAL_S):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.interval = TTY_REFRESH_S if self.live else plain_interval_s
        self._running: dict[str, _Running] = {}
        self._drawn = 0
        self._last_draw = time.monotonic()

    def event(self, text: str) -> None:
        """One line that stays (a trial started, finished, failed...)."""
        self._erase()
        print(text, file=self.stream, flush=True)
        self._draw()

    def started(self, name: str, run_dir: Path, total_steps: int | None, attempt: int) -> None:
        self._running[name] = _Running(Path(run_dir), total_steps, attempt)

    def ended(self, name: str) -> None:
        self._running.pop(name, None)

    def refresh(self, force: bool = False) -> None:
        """Re-read the running trials' logs and redraw (at most every ``interval`` seconds)."""
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        for name, trial in self._running.items():
            trial.line = self._line(name, trial, now)
        if self.live:
            self._erase()
            self._draw()
        elif self._running:
            print("\n".join(t.line for t in self._running.values()), file=self.stream, flush=True)

    def _line(self, name: str, trial: _Running, now: float) -> str:
        progress = contract.read_progress(trial.run_dir)
        step = progress.step
        eta = None
        if step is not None:
            if trial.first_seen is None:
                trial.first_seen = (now, step)
            t0, s0 = trial.first_seen
            if step > s0 and trial.total_steps:
                eta = (trial.total_steps - step) * (now - t0) / (step - s0)
        total = "?" if trial.total_steps is None else str(trial.total_steps)
        attempt = f"  (attempt {trial.attempt})" if trial.attempt > 1 else ""
        return (f"  {name}  step {'-' if step is None else step}/{total}  return {_fmt(progress.episodic_return)}"
                f"  eval {_fmt(progress.eval_return)}  ETA {format_duration(eta)}{attempt}")

    def _draw(self) -> None:
        if not self.live:
            return
        lines = [t.line for t in self._running.values() if t.line]
        if lines:
            print("\n".join(lines), file=self.stream, flush=True)
        self._drawn = len(lines)

    def _erase(self) -> None:
        if self.live and self._drawn:
            self.stream.write(_UP_AND_CLEAR.format(n=self._drawn))
            self._drawn = 0


__all__ = ["ProgressBoard", "format_duration"]
