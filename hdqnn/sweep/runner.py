"""The sweep's driver: plan the trials, run them on an executor, retry the dead, report, compare.

Layout of a sweep folder (the same for every executor)::

    sweep.json                   the manifest: the checked configuration and every trial's options
    runs/<env>__<label>/seed<s>/ each trial's train run folder (run.json, metrics.jsonl, checkpoint.pt,
                                 summary.json once finished)
    logs/<trial>.log             train's output, every attempt appended
    status/<trial>.json          the trial's state (running: pid, worker pid, host; finished; failed: why)
    locks/<trial>.lock           held while an attempt runs
    summary.json                 the outcome of the last sweep run; compare.{txt,json,png}: the comparison

Retry policy: a trial whose process was killed (a signal, the OOM killer) or whose Ray worker or
node died is restarted, up to ``max_retries`` times, and resumes from its last checkpoint. A train
process that exits by itself with an error has told its reason (a bad env id, a wrong option): that
is reported once and not retried. Re-running a sweep skips finished trials and resumes the others.
"""
from __future__ import annotations

import os
import signal
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from . import contract
from .config import SweepConfig, SweepConfigError
from .executors import LocalExecutor, RayExecutor, ray_available
from .progress import PLAIN_INTERVAL_S, ProgressBoard, format_duration
from .train_cli import ALGO, ENV, PROGRESS, SEED, STEPS, TAG, THREADS, TrainCommand
from .trials import Trial, expand
from .worker import LOG_DIR, MANIFEST_FILE, STATUS_DIR, AttemptResult, AttemptSpec, write_json_atomic

RUNNERS = ("auto", "ray", "local")
SUMMARY_FILE = "summary.json"
COMPARE_TEXT, COMPARE_JSON, COMPARE_PLOT = "compare.txt", "compare.json", "compare.png"
#: Lines of a failed trial's log quoted in its failure message.
ERROR_LINES = 3


@dataclass
class TrialOutcome:
    """How a trial ended in this sweep run: ``finished``, ``skipped`` (finished before) or ``failed``."""

    name: str
    label: str
    run_dir: str
    state: str
    attempts: int = 0
    wall_s: float = 0.0
    message: str = ""
    final_eval: float | None = None


@dataclass
class SweepReport:
    """The outcome of a sweep run: one TrialOutcome per trial, the runner, the comparison table."""

    outcomes: list[TrialOutcome]
    runner: str
    wall_s: float
    table: str | None = None

    @property
    def failed(self) -> list[TrialOutcome]:
        return [o for o in self.outcomes if o.state == "failed"]


def plan(config: SweepConfig, train: TrainCommand) -> list[Trial]:
    """Every trial of ``config``, with algo, env and seed written out (train's defaults or preset);
    SweepConfigError naming the trial if train would refuse its options."""
    trials = expand(config, train.implied, ALGO, ENV, SEED)
    if train.check_run is not None:
        for trial in trials:
            try:
                train.check_run(trial.options)
            except ValueError as exc:
                shown = ", ".join(f"{k}={v!r}" for k, v in trial.options.items())
                raise SweepConfigError(f"trial {trial.name} ({shown}): {exc}") from None
    return trials


def attempt_spec(trial: Trial, config: SweepConfig, train: TrainCommand, attempt: int) -> AttemptSpec:
    """The attempt's arguments: the trial's options plus, unless set, its compare label (tag), one
    thread per CPU of the trial and no progress bar (it would fill the log)."""
    options = dict(trial.options)
    for dest, value in ((TAG, trial.label), (THREADS, config.cpus_per_trial), (PROGRESS, False)):
        if train.has(dest):
            options.setdefault(dest, value)
    run_dir = str(trial.run_dir(config.out))
    return AttemptSpec(name=trial.name, slug=trial.slug, root=str(config.out), run_dir=run_dir,
                       fresh_args=train.fresh_args(options, run_dir), resume_args=train.resume_args(run_dir),
                       attempt=attempt, cpus=config.cpus_per_trial, command=train.command)


def _last_lines(text: str, n: int = ERROR_LINES) -> str:
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return " | ".join(lines[-n:])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def decide(result: AttemptResult, attempts: int, max_retries: int) -> tuple[str, str]:
    """(``finished`` | ``retry`` | ``failed``, why) for an attempt that ended."""
    if result.finished:
        return "finished", ""
    if result.error is not None:
        return "failed", result.error
    stopped = contract.STOPPED_BY_SIGNAL.get(result.returncode)
    killed = result.crashed or stopped or (result.returncode is not None and result.returncode < 0)
    if killed:
        why = result.crashed or (f"stopped by {stopped}" if stopped
                                 else f"killed by {_signal_name(-result.returncode)}")
        if attempts <= max_retries:
            return "retry", why
        return "failed", f"{why} ({attempts} attempts; max_retries={max_retries})"
    if result.returncode == 0:
        return "failed", f"train exited without finishing (no {contract.SUMMARY_FILE})"
    return "failed", f"train exited with status {result.returncode}: {_last_lines(result.log_tail)}"


def write_manifest(config: SweepConfig, trials: list[Trial]) -> None:
    config_data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    write_json_atomic(config.out / MANIFEST_FILE, {
        "config": config_data,
        "trials": [{"name": t.name, "label": t.label, "seed": t.seed, "options": t.options,
                    "run_dir": str(t.run_dir(config.out).relative_to(config.out))} for t in trials]})


def make_executor(runner: str, config: SweepConfig, board: ProgressBoard) -> LocalExecutor | RayExecutor:
    """The executor for ``runner``: ``auto`` is Ray when it is installed, else local processes."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {', '.join(RUNNERS)}; got {runner!r}")
    if runner == "auto":
        runner = "ray" if ray_available() else "local"
        if runner == "local":
            board.event("hdqnn sweep: Ray is not installed, running trials in local processes "
                        "(`pip install hdqnn[ray]` to run them on Ray)")
    if runner == "local":
        if config.address is not None:
            raise SweepConfigError(f"a Ray address ({config.address}) needs the Ray runner, not local processes")
        return LocalExecutor(config.parallel or max(1, (os.cpu_count() or 1) // config.cpus_per_trial))
    return RayExecutor(config.parallel, config.cpus_per_trial, config.address)


def _write_status(config: SweepConfig, trial: Trial, data: dict[str, Any]) -> None:
    write_json_atomic(config.out / STATUS_DIR / f"{trial.slug}.json", {"name": trial.name, **data})


def _finished_outcome(config: SweepConfig, trial: Trial, state: str, attempts: int, wall_s: float) -> TrialOutcome:
    run_dir = trial.run_dir(config.out)
    summary = contract.read_summary(run_dir) or {}
    return TrialOutcome(trial.name, trial.label, str(run_dir), state, attempts, wall_s,
                        final_eval=summary.get("final_eval"))


class _SweepRun:
    """The state of one sweep run: the queue, the attempts in flight and the outcomes so far."""

    def __init__(self, config: SweepConfig, train: TrainCommand, trials: list[Trial], board: ProgressBoard):
        self.config, self.train, self.board = config, train, board
        self.outcomes: dict[str, TrialOutcome] = {}
        self.pending: deque[Trial] = deque()
        for trial in trials:
            if contract.run_state(trial.run_dir(config.out)).finished:
                self.outcomes[trial.name] = _finished_outcome(config, trial, "skipped", 0, 0.0)
            else:
                self.pending.append(trial)
        self.attempts = {t.name: 0 for t in trials}
        self.first_start: dict[str, float] = {}
        self.in_flight: dict[str, Trial] = {}

    def run(self, executor: LocalExecutor | RayExecutor) -> None:
        """Until every trial has an outcome: fill the free slots, then collect what ended."""
        while self.pending or self.in_flight:
            while self.pending and len(self.in_flight) < executor.slots:
                self._launch(executor, self.pending.popleft())
            for result in executor.wait(timeout=min(self.board.interval, 1.0)):
                self._collect(result)
            self.board.refresh()

    def _launch(self, executor: LocalExecutor | RayExecutor, trial: Trial) -> None:
        self.attempts[trial.name] += 1
        self.first_start.setdefault(trial.name, time.monotonic())
        executor.submit(attempt_spec(trial, self.config, self.train, self.attempts[trial.name]))
        self.in_flight[trial.name] = trial
        steps = {**self.train.implied(trial.options, (STEPS,)), **trial.options}.get(STEPS)
        self.board.started(trial.name, trial.run_dir(self.config.out), steps, self.attempts[trial.name])

    def _collect(self, result: AttemptResult) -> None:
        """Retry (first in the queue), or record the trial's outcome."""
        trial = self.in_flight.pop(result.name)
        self.board.ended(trial.name)
        attempts = self.attempts[trial.name]
        state, why = decide(result, attempts, self.config.max_retries)
        wall = time.monotonic() - self.first_start[trial.name]
        if state == "retry":
            self.pending.appendleft(trial)
            self.board.event(f"retry  {trial.name}: {why}; attempt {attempts + 1} resumes from its last checkpoint")
            _write_status(self.config, trial, {"state": "retrying", "attempt": attempts, "why": why})
            return
        if state == "finished":
            outcome = _finished_outcome(self.config, trial, state, attempts, wall)
            self.board.event(f"done   {trial.name} in {format_duration(wall)}: final eval return "
                             f"{_fmt(outcome.final_eval)}" + (f" ({attempts} attempts)" if attempts > 1 else ""))
        else:
            outcome = TrialOutcome(trial.name, trial.label, str(trial.run_dir(self.config.out)), state, attempts,
                                   wall, why)
            log = self.config.out / LOG_DIR / f"{trial.slug}.log"
            self.board.event(f"FAILED {trial.name}: {why} (log: {log})")
        self.outcomes[trial.name] = outcome
        _write_status(self.config, trial, {"state": state, "attempts": attempts, "why": why, "wall_s": wall})


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def run_sweep(config: SweepConfig, train: TrainCommand, runner: str = "auto", stream: TextIO | None = None,
              live: bool | None = None, compare: bool = True,
              progress_interval_s: float = PLAIN_INTERVAL_S) -> SweepReport:
    """Run every unfinished trial of ``config``; see the module docstring for the policy.

    runner: ``auto`` | ``ray`` | ``local``; stream/live/progress_interval_s: where and how progress
    is printed; compare: finish with ``hdqnn compare`` over the sweep's runs.
    """
    start = time.monotonic()
    board = ProgressBoard(stream, live, progress_interval_s)
    trials = plan(config, train)
    config.out.mkdir(parents=True, exist_ok=True)
    write_manifest(config, trials)
    sweep = _SweepRun(config, train, trials, board)
    executor = make_executor(runner, config, board)
    board.event(f"hdqnn sweep: {len(trials)} trials in {config.out}: {len(sweep.outcomes)} finished before, "
                f"{len(sweep.pending)} to run on {executor.description}, {executor.slots} at a time")
    try:
        sweep.run(executor)
    except BaseException:  # Ctrl-C included: stop the trainings, keep their checkpoints
        executor.stop()
        board.event("hdqnn sweep: stopped; run the same command again to resume the unfinished trials")
        raise
    finally:
        executor.close()
    report = SweepReport([sweep.outcomes[t.name] for t in trials], executor.description, time.monotonic() - start)
    _report(config, trials, report, board)
    if compare:
        report.table = compare_sweep(config.out, trials)
        if report.table is not None:
            board.event(report.table + "\n" + legend(trials))
    return report


def _report(config: SweepConfig, trials: list[Trial], report: SweepReport, board: ProgressBoard) -> None:
    counts = {s: sum(o.state == s for o in report.outcomes) for s in ("finished", "skipped", "failed")}
    board.event(f"hdqnn sweep: {len(trials)} trials in {format_duration(report.wall_s)}: {counts['finished']} "
                f"finished, {counts['skipped']} skipped (finished before), {counts['failed']} failed")
    for outcome in report.failed:
        board.event(f"  failed {outcome.name}: {outcome.message}")
    write_json_atomic(config.out / SUMMARY_FILE, {"runner": report.runner, "wall_s": report.wall_s,
                                                  "trials": [asdict(o) for o in report.outcomes]})


def compare_sweep(root: Path, trials: list[Trial]) -> str | None:
    """``hdqnn compare`` over the sweep's runs: the table (also in compare.txt), compare.json and
    the curves in compare.png. None when no trial has started."""
    from ..rl.compare import compare  # torch comes with it: only here, at the end

    dirs = [t.run_dir(root) for t in trials if (t.run_dir(root) / contract.RUN_FILE).is_file()]
    if not dirs:
        return None
    table, _ = compare(dirs, plot=root / COMPARE_PLOT, json_path=root / COMPARE_JSON)
    (root / COMPARE_TEXT).write_text(table + "\n", encoding="utf-8")
    return table


def legend(trials: list[Trial]) -> str:
    """Each configuration label with the options that tell it apart from the sweep's others."""
    configs = {t.label: {k: v for k, v in t.options.items() if k not in (SEED, ENV)} for t in trials}
    keys = sorted({k for c in configs.values() for k in c})
    varying = [k for k in keys if len({repr(c.get(k)) for c in configs.values()}) > 1]
    lines = ["configurations:"]
    for label, options in configs.items():
        shown = ", ".join(f"{k}={options[k]}" for k in varying if k in options) or "(the only one)"
        lines.append(f"  {label}: {shown}")
    return "\n".join(lines)


__all__ = ["run_sweep", "plan", "decide", "attempt_spec", "compare_sweep", "legend", "SweepReport",
           "TrialOutcome", "RUNNERS"]
