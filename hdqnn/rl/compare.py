"""Multi-seed comparison of runs: the statistics the paper's reviewers asked for.

Runs are grouped by (environment, label); the label is ``Args.tag`` or the algorithm. Per group:
final and best evaluation return (mean over seeds with a 95% percentile-bootstrap confidence
interval), the interquartile mean (IQM) of all final evaluation episodes of all seeds, training
speed, wall time and circuit executions; and learning curves with bootstrap bands.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .metrics import RUN_FILE, SUMMARY_FILE, read_metrics
from .plots import plot_comparison

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
IQM_TRIM = 0.25


@dataclass
class Run:
    """One run folder: its arguments, evaluations [(step, mean, returns)] and summary (None while running)."""

    path: Path
    args: dict[str, Any]
    evals: list[tuple[int, float, list[float]]]
    summary: dict[str, Any] | None

    @property
    def group(self) -> tuple[str, str]:
        return self.args["env_id"], self.args.get("tag") or self.args["algo"]


def load_run(path: str | os.PathLike) -> Run:
    path = Path(path)
    args = json.loads((path / RUN_FILE).read_text())
    evals = [(r["step"], r["eval/mean_return"], r.get("eval/returns", [r["eval/mean_return"]]))
             for r in read_metrics(path) if "eval/mean_return" in r]
    summary_path = path / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return Run(path, args, evals, summary)


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


def compare_runs(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """One row per (env, label) over the runs found under ``paths``, sorted by env then label."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in find_runs(paths):
        groups.setdefault(run.group, []).append(run)
    rows = []
    for (env_id, label), runs in sorted(groups.items()):
        evaluated = [r for r in runs if r.evals]
        final = [r.evals[-1][1] for r in evaluated]
        best = [max(e[1] for e in r.evals) for r in evaluated]
        episodes = [x for r in evaluated for x in r.evals[-1][2]]
        summaries = [r.summary for r in runs]
        row: dict[str, Any] = {
            "env_id": env_id, "label": label, "seeds": len(runs), "evaluated": len(evaluated),
            "finished": sum(s is not None for s in summaries),
            "steps": min((r.evals[-1][0] for r in evaluated), default=0),
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
            "runs": [str(r.path) for r in runs],
        }
        rows.append(row)
    return rows


def learning_curves(paths: Sequence[str | os.PathLike],
                    key: str = "eval/mean_return") -> dict[str, dict[str, dict[str, Any]]]:
    """env -> label -> {steps, mean, low, high, n}: ``key`` averaged over seeds, with a 95%
    bootstrap band, at the steps every seed of the group logged it."""
    groups: dict[tuple[str, str], list[dict[int, float]]] = {}
    for run in find_runs(paths):
        series = {r["step"]: r[key] for r in read_metrics(run.path) if r.get(key) is not None}
        if series:
            groups.setdefault(run.group, []).append(series)
    curves: dict[str, dict[str, dict[str, Any]]] = {}
    for (env_id, label), by_run in groups.items():
        steps = sorted(set.intersection(*(set(d) for d in by_run)))
        if not steps:
            continue
        values = np.array([[d[s] for d in by_run] for s in steps])  # [T, seeds]
        bands = np.array([bootstrap_ci(v) for v in values])
        curves.setdefault(env_id, {})[label] = {
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
    lines = [[r["env_id"], r["label"], f"{r['evaluated']}/{r['seeds']}", str(r["steps"]),
              _fmt_ci(r["final_mean"], r["final_ci"]), _fmt_ci(r["best_mean"], r["best_ci"]),
              _fmt(r["final_iqm"]), _fmt(r["sps"], 0), _fmt(r["wall_seconds"], 0),
              _fmt(r["circuit_executions"], 0), _fmt(r["grad_cosine"], 3)] for r in rows]
    notes = ("seeds: evaluated/found. final/best: mean over seeds of the last/best evaluation; "
             "IQM over all final evaluation episodes of all seeds; SPS, wall time and circuit "
             "executions: means over finished seeds; grad cos: mean qtDNN-vs-adjoint cosine.")
    return "\n".join(_render(header, lines, markdown)) + "\n\n" + notes


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
    """Table text (plus the step-time table with ``timings``) and rows; also writes the curve
    plot and the rows as JSON where asked."""
    rows = compare_runs(paths)
    if plot is not None:
        curves = learning_curves(paths)
        if curves:
            plot_comparison(curves, plot, learning_curves(paths, "qtdnn/grad_cosine"))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(rows, indent=2) + "\n")
    text = format_table(rows, markdown)
    if timings:
        text += "\n\n" + format_timings(rows, markdown)
    return text, rows
