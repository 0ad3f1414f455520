"""Multi-seed comparison of runs: the statistics the paper's reviewers asked for.

Runs are grouped by (environment, label); the label is ``Args.tag`` or the algorithm. Per group:
final and best evaluation return (mean over seeds with a 95% percentile-bootstrap confidence
interval), the interquartile mean (IQM) of all final evaluation episodes of all seeds, training
speed, wall time and circuit executions; and learning curves with bootstrap bands.

Only runs that are samples of one experiment are pooled. Runs of one label whose configurations
differ (any ``run.json`` field but those in ``NOT_CONFIG``) get one row per configuration, the
differing values added to the label; runs whose last evaluation is at different steps (budgets)
get one row per step count; a seed repeated within a row is counted once. Each split or dropped
repeat is reported in the row's ``warnings`` (printed under the table), naming the run folders, and
so are damaged lines of a run's log, which are skipped.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .metrics import METRICS_FILE, RUN_FILE, SUMMARY_FILE, read_metrics
from .plots import plot_comparison

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
IQM_TRIM = 0.25
#: run.json fields that do not change what a run computes (or, for the budget, are compared apart):
#: runs differing only in these are seeds of one configuration.
NOT_CONFIG = frozenset({"seed", "out_dir", "tag", "total_timesteps", "progress", "tensorboard", "threads",
                        "checkpoint_freq", "save_buffer", "log_freq", "extensions"})
#: Damaged log lines named in a warning.
MAX_LISTED = 10


@dataclass
class Run:
    """One run folder: its arguments, evaluations [(step, mean, returns)], summary (None while
    running), log records and the numbers of the log's damaged lines (skipped)."""

    path: Path
    args: dict[str, Any]
    evals: list[tuple[int, float, list[float]]]
    summary: dict[str, Any] | None
    records: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[int] = field(default_factory=list)

    @property
    def group(self) -> tuple[str, str]:
        return self.args["env_id"], self.args.get("tag") or self.args["algo"]

    @property
    def config(self) -> dict[str, Any]:
        """The arguments that make its configuration (JSON values: tuples are lists)."""
        return {k: v for k, v in sorted(self.args.items()) if k not in NOT_CONFIG}

    @property
    def steps(self) -> int | None:
        """The step of its last evaluation (the "final" return's budget); None before the first."""
        return self.evals[-1][0] if self.evals else None


@dataclass
class Group:
    """Runs pooled into one row: seeds of one configuration, each once, last evaluated at one step."""

    env_id: str
    label: str
    """the runs' label, plus the values that tell its configuration from the label's others"""
    name: str
    """the label, plus the step count where the label has rows at other step counts (curve legends)"""
    steps: int | None
    runs: list[Run]
    repeats: list[Run]
    """runs left out: their seed is already in ``runs``"""
    warnings: list[str]


def load_run(path: str | os.PathLike) -> Run:
    path = Path(path)
    args = json.loads((path / RUN_FILE).read_text())
    damaged: list[int] = []
    records = list(read_metrics(path, skipped=damaged))
    evals = [(r["step"], r["eval/mean_return"], r.get("eval/returns", [r["eval/mean_return"]]))
             for r in records if r.get("eval/mean_return") is not None]
    summary_path = path / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return Run(path, args, evals, summary, records, damaged)


def find_runs(paths: Sequence[str | os.PathLike]) -> list[Run]:
    """Every run folder at or below ``paths`` (a folder with ``run.json``); ValueError if none."""
    folders: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise ValueError(f"{str(p)!r} is not a folder")
        found = [p] if (p / RUN_FILE).exists() else sorted(f.parent for f in p.rglob(RUN_FILE))
        if not found:
            raise ValueError(f"no runs (folders with {RUN_FILE}) under {str(p)!r}")
        folders += found
    return [load_run(f) for f in dict.fromkeys(folders)]


def bootstrap_ci(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (as ``scipy.stats.trim_mean(x, 0.25)``)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(IQM_TRIM * x.size)
    return float(x[cut:x.size - cut].mean())


def _mean_of(summaries: list[dict[str, Any] | None], key: str) -> float | None:
    values = [s[key] for s in summaries if s is not None and s.get(key) is not None]
    return float(np.mean(values)) if values else None


def _mean_timings(summaries: list[dict[str, Any] | None]) -> dict[str, float]:
    """Mean over finished seeds of each step part's milliseconds per env step."""
    timings = [s["time_ms_per_step"] for s in summaries if s is not None and "time_ms_per_step" in s]
    parts = sorted({p for t in timings for p in t})
    return {p: float(np.mean([t.get(p, 0.0) for t in timings])) for p in parts}


def _split(runs: Sequence[Run], key: Callable[[Run], Any]) -> dict[Any, list[Run]]:
    """``runs`` by ``key``, in order."""
    parts: dict[Any, list[Run]] = {}
    for run in runs:
        parts.setdefault(key(run), []).append(run)
    return parts


def _config_key(run: Run) -> str:
    return json.dumps(run.config, sort_keys=True)


def _differing(configs: list[dict[str, Any]]) -> list[str]:
    """The fields whose values are not the same in all of ``configs``."""
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]


def _paths(runs: Sequence[Run]) -> str:
    return ", ".join(str(r.path) for r in runs)


def _steps_text(steps: int | None) -> str:
    return "no evaluation" if steps is None else f"{steps:,} steps"


def _steps_order(steps: int | None) -> tuple[bool, int]:
    """Sort key of step counts: unevaluated runs first."""
    return steps is not None, steps or 0


def _by_steps(runs: Sequence[Run]) -> list[tuple[int | None, list[Run]]]:
    """``runs`` by the step of their last evaluation, in step order."""
    return sorted(_split(runs, lambda r: r.steps).items(), key=lambda item: _steps_order(item[0]))


def _without_repeats(runs: list[Run], where: str) -> tuple[list[Run], list[Run], list[str]]:
    """The runs with each seed once (its first run), the others, and a warning per repeated seed."""
    by_seed = _split(runs, lambda r: r.args.get("seed"))
    warnings = [f"{where}: {_paths(same)} repeat seed {seed} (the same configuration and seed twice is one "
                f"sample, not two): only {same[0].path} is counted" for seed, same in by_seed.items() if len(same) > 1]
    return [same[0] for same in by_seed.values()], [r for same in by_seed.values() for r in same[1:]], warnings


def _damage_warning(run: Run) -> str:
    lines = ", ".join(map(str, run.damaged[:MAX_LISTED])) + (", ..." if len(run.damaged) > MAX_LISTED else "")
    return (f"{run.path / METRICS_FILE}: {len(run.damaged)} damaged lines skipped (line {lines}); resuming an "
            "unfinished run repairs its log")


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Rows of ``runs`` (see the module's doc), sorted by env, label and steps, with the warnings
    that say which runs were split or left out and why."""
    groups = []
    for (env_id, label), same_label in sorted(_split(runs, lambda r: r.group).items()):
        by_config = _split(same_label, _config_key)
        differing = _differing([r.config for r in same_label])
        labels = {key: label + (" (" + ", ".join(f"{k}={same[0].config.get(k)}" for k in differing) + ")"
                                if differing else "") for key, same in by_config.items()}
        split = [f"{label} on {env_id}: the runs differ in {', '.join(differing)}, so each configuration has its "
                 "own row: " + "; ".join(f"{labels[key]}: {_paths(same)}" for key, same in by_config.items())
                 ] if len(by_config) > 1 else []
        for key, same_config in by_config.items():
            by_steps = _by_steps(same_config)
            budgets = [f"{labels[key]} on {env_id}: the runs' last evaluations are at different steps (final "
                       "returns of different budgets are not comparable), so each has its own row: "
                       + "; ".join(f"{_steps_text(steps)}: {_paths(same)}" for steps, same in by_steps)
                       ] if len(by_steps) > 1 else []
            for steps, same_steps in by_steps:
                name = labels[key] + (f" @ {_steps_text(steps)}" if len(by_steps) > 1 else "")
                counted, repeats, repeated = _without_repeats(
                    same_steps, f"{labels[key]} on {env_id} at {_steps_text(steps)}")
                damaged = [_damage_warning(run) for run in same_steps if run.damaged]
                groups.append(Group(env_id, labels[key], name, steps, counted, repeats,
                                    split + budgets + repeated + damaged))
    return sorted(groups, key=lambda g: (g.env_id, g.label, _steps_order(g.steps)))


def _row(group: Group) -> dict[str, Any]:
    runs = group.runs
    evaluated = [r for r in runs if r.evals]
    final = [r.evals[-1][1] for r in evaluated]
    best = [max(e[1] for e in r.evals) for r in evaluated]
    episodes = [x for r in evaluated for x in r.evals[-1][2]]
    summaries = [r.summary for r in runs]
    return {
        "env_id": group.env_id, "label": group.label, "seeds": len(runs), "evaluated": len(evaluated),
        "finished": sum(s is not None for s in summaries),
        "steps": group.steps,
        "final_mean": float(np.mean(final)) if final else None,
        "final_ci": bootstrap_ci(final) if final else None,
        "best_mean": float(np.mean(best)) if best else None,
        "best_ci": bootstrap_ci(best) if best else None,
        "final_iqm": iqm(episodes) if episodes else None,
        "sps": _mean_of(summaries, "sps"),
        "sps_learning": _mean_of(summaries, "sps_learning"),
        "wall_seconds": _mean_of(summaries, "wall_seconds"),
        "circuit_executions": _mean_of(summaries, "circuit_executions"),
        "grad_cosine": _mean_of(summaries, "grad_cosine_mean"),
        "time_ms_per_step": _mean_timings(summaries),
        "config": runs[0].config,
        "runs": [str(r.path) for r in runs],
        "repeats": [str(r.path) for r in group.repeats],
        "warnings": group.warnings,
    }


def compare_runs(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """One row per group (see ``group_runs``) of the runs found under ``paths``, sorted by env,
    label and steps."""
    return [_row(group) for group in group_runs(find_runs(paths))]


def learning_curves(paths: Sequence[str | os.PathLike],
                    key: str = "eval/mean_return") -> dict[str, dict[str, dict[str, Any]]]:
    """env -> group name -> {steps, mean, low, high, n}: ``key`` averaged over a group's seeds,
    with a 95% bootstrap band, at the steps every seed of the group logged it."""
    return _curves(group_runs(find_runs(paths)), key)


def _curves(groups: list[Group], key: str) -> dict[str, dict[str, dict[str, Any]]]:
    curves: dict[str, dict[str, dict[str, Any]]] = {}
    for group in groups:
        by_run = [{r["step"]: r[key] for r in run.records if r.get(key) is not None} for run in group.runs]
        by_run = [series for series in by_run if series]
        steps = sorted(set.intersection(*(set(d) for d in by_run))) if by_run else []
        if not steps:
            continue
        values = np.array([[d[s] for d in by_run] for s in steps])  # [T, seeds]
        bands = np.array([bootstrap_ci(v) for v in values])
        curves.setdefault(group.env_id, {})[group.name] = {
            "steps": np.array(steps), "mean": values.mean(axis=1), "low": bands[:, 0], "high": bands[:, 1],
            "n": len(by_run)}
    return curves


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _fmt_ci(mean: float | None, ci: tuple[float, float] | None) -> str:
    if mean is None:
        return "-"
    return f"{_fmt(mean)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _render(header: list[str], lines: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
            "| " + " | ".join(line) + " |" for line in lines]
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    return (["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
            + ["  ".join(x.ljust(w) for x, w in zip(line, widths)) for line in lines])


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """Plain-text (or Markdown) table of ``compare_runs`` rows, with a note on the statistics."""
    header = ["env", "config", "seeds", "steps", "final return [95% CI]", "best return [95% CI]",
              "IQM final", "SPS", "wall s", "circuit execs", "grad cos"]
    lines = [[r["env_id"], r["label"], f"{r['evaluated']}/{r['seeds']}", _fmt(r["steps"], 0),
              _fmt_ci(r["final_mean"], r["final_ci"]), _fmt_ci(r["best_mean"], r["best_ci"]),
              _fmt(r["final_iqm"]), _fmt(r["sps"], 0), _fmt(r["wall_seconds"], 0),
              _fmt(r["circuit_executions"], 0), _fmt(r["grad_cosine"], 3)] for r in rows]
    notes = ("seeds: evaluated/counted; a row pools the seeds of one configuration whose last evaluation is at "
             "one step count (a repeated seed counts once). final/best: mean over seeds of the last/best evaluation; "
             "IQM over all final evaluation episodes of all seeds; SPS, wall time and circuit "
             "executions: means over finished seeds; grad cos: mean qtDNN-vs-adjoint cosine.")
    warnings = "".join(f"\nwarning: {w}" for w in dict.fromkeys(w for r in rows for w in r["warnings"]))
    return "\n".join(_render(header, lines, markdown)) + "\n\n" + notes + ("\n" + warnings if warnings else "")


def format_timings(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """Milliseconds per env step of each part (mean over finished seeds), one row per config."""
    parts = sorted({p for r in rows for p in r["time_ms_per_step"]})
    header = ["env", "config", "SPS", "SPS learning"] + [f"{p} ms" for p in parts]
    lines = [[r["env_id"], r["label"], _fmt(r["sps"], 1), _fmt(r["sps_learning"], 1)]
             + [_fmt(r["time_ms_per_step"].get(p), 2) for p in parts] for r in rows]
    notes = ("SPS learning: env steps per second once updates run (warm-up excluded). ms per env step, "
             "averaged over the whole run (updates start after learning_starts). pqc_forward: "
             "circuit time in acting, targets and the actor update; actor_forward contains the online "
             "PQC forward and qtdnn_fit; fidelity: the gradient-cosine telemetry.")
    return "\n".join(_render(header, lines, markdown)) + "\n\n" + notes


def compare(paths: Sequence[str | os.PathLike], plot: str | os.PathLike | None = None,
            json_path: str | os.PathLike | None = None, markdown: bool = False,
            timings: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """Table text (plus the step-time table with ``timings``; the grouping warnings under it) and
    rows; also writes the curve plot and the rows as JSON where asked."""
    groups = group_runs(find_runs(paths))
    rows = [_row(group) for group in groups]
    if plot is not None:
        curves = _curves(groups, "eval/mean_return")
        if curves:
            Path(plot).parent.mkdir(parents=True, exist_ok=True)
            plot_comparison(curves, plot, _curves(groups, "qtdnn/grad_cosine"))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(rows, indent=2) + "\n")
    text = format_table(rows, markdown)
    if timings:
        text += "\n\n" + format_timings(rows, markdown)
    return text, rows
