"""Generalization sweep (``hdqnn generalize``): trained policies under perturbed dynamics and sensing.

Each run's deterministic policy (its latest checkpoint) is evaluated unperturbed and under every
(perturbation, level) of the sweep (see ``hdqnn.rl.perturb``; by default every perturbation the
env supports at its default levels), on the same episode seeds throughout, so each level is
compared with the unperturbed return on the same initial states (and noise draws).

Reported per perturbation and level: the mean return with a 95% percentile-bootstrap confidence
interval, and the relative drop ``(unperturbed - perturbed) / |unperturbed|`` (positive = worse;
none where the unperturbed return is 0). For one run the interval is over its episodes; runs are
pooled as ``hdqnn compare`` pools them (``compare.group_runs``: seeds of one configuration and
budget), and then the return is the mean over seeds of each seed's mean, the drop the mean of each
seed's drop, and the intervals are over seeds.

Each run folder gets ``generalization.{json,txt,png}`` (its episodes' returns, its table, its
plot); the pooled table and plot go to ``OUT/generalization.{json,txt,png}``.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .checkpoint import CheckpointError
from .compare import Group, _fmt_ci, _render, bootstrap_ci, find_runs, group_runs
from .plots import plot_generalization

#: The result files' stem, in each run folder and in the output folder.
RESULT_STEM = "generalization"
#: The perturbation column of the unperturbed row.
UNPERTURBED = "none"
#: The plots' x-axis label of each kind of level.
LEVEL_AXES = {"scale": "scale (1 = unperturbed)", "std": "noise std", "steps": "delay (steps)"}


def sweep_points(env_supports: Sequence[str], levels: Mapping[str, Sequence[float]] | None,
                 env_id: str) -> list[tuple[str, float]]:
    """(perturbation, level) pairs of a sweep: ``levels`` (name -> levels), or every supported
    perturbation at its default levels; ValueError for a perturbation the env does not support."""
    from .perturb import PERTURBATIONS, check_level

    if levels is None:
        return [(name, level) for name in env_supports for level in PERTURBATIONS[name].levels]
    for name in levels:
        if name in PERTURBATIONS and name not in env_supports:
            raise ValueError(f"perturbation {name!r} does not apply to {env_id}; it supports: "
                             f"{', '.join(env_supports)}")
    return [(name, check_level(name, level)) for name, values in levels.items() for level in values]


def relative_drop(unperturbed: float, perturbed: float) -> float | None:
    """``(unperturbed - perturbed) / |unperturbed|``: 0.25 = a quarter of the return lost; None at 0."""
    return None if unperturbed == 0 else (unperturbed - perturbed) / abs(unperturbed)


def generalize_run(run_dir: str | os.PathLike, levels: Mapping[str, Sequence[float]] | None = None,
                   episodes: int = 10, seed: int | None = None) -> dict[str, Any]:
    """Episode returns of ``run_dir``'s policy, unperturbed and at every sweep point:
    ``{"run", "env_id", "label", "seed", "episodes", "eval_seed", "unperturbed": [returns],
    "points": [{"perturbation", "level", "returns"}]}``."""
    from .envs import make_env
    from .evaluate import evaluate_actor, load_run_actor
    from .perturb import supported

    actor, args = load_run_actor(str(run_dir))
    env = make_env(args.env_id)
    try:
        points = sweep_points(supported(env), levels, args.env_id)
    finally:
        env.close()
    unperturbed = evaluate_actor(actor, args, episodes, seed)
    return {"run": str(run_dir), "env_id": args.env_id, "label": args.tag or args.algo, "seed": args.seed,
            "episodes": episodes, "eval_seed": args.seed if seed is None else seed,
            "unperturbed": unperturbed.tolist(),
            "points": [{"perturbation": name, "level": level,
                        "returns": evaluate_actor(actor, args, episodes, seed, {name: level}).tolist()}
                       for name, level in points]}


def summarize(env_id: str, label: str, results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows of one run's or one group's ``generalize_run`` results: the unperturbed row, then
    one per sweep point (see the module doc for the statistics)."""
    settings = [(UNPERTURBED, None)] + [(p["perturbation"], p["level"]) for p in results[0]["points"]]
    baselines = [np.mean(r["unperturbed"]) for r in results]
    rows = []
    for index, (name, level) in enumerate(settings):
        per_run = [r["unperturbed"] if index == 0 else r["points"][index - 1]["returns"] for r in results]
        means = [float(np.mean(returns)) for returns in per_run]
        drops = [relative_drop(b, m) for b, m in zip(baselines, means)]
        drops = [d for d in drops if d is not None]
        over_seeds = len(results) > 1
        rows.append({
            "env_id": env_id, "label": label, "perturbation": name, "level": level, "seeds": len(results),
            "episodes": sum(len(returns) for returns in per_run),
            "mean_return": float(np.mean(means)),
            "ci": bootstrap_ci(means if over_seeds else per_run[0]),
            "ci_over": "seeds" if over_seeds else "episodes",
            "drop": float(np.mean(drops)) if drops and index else None,
            "drop_ci": bootstrap_ci(drops) if over_seeds and drops and index else None,
            "runs": [r["run"] for r in results],
        })
    return rows


def format_table(rows: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """The rows as a plain-text (or Markdown) table, with a note on the statistics."""
    header = ["env", "config", "perturbation", "level", "seeds", "return [95% CI]", "drop [95% CI]"]
    lines = [[r["env_id"], r["label"], r["perturbation"], "-" if r["level"] is None else f"{r['level']:g}",
              str(r["seeds"]), _fmt_ci(r["mean_return"], r["ci"]), _fmt_drop(r["drop"], r["drop_ci"])] for r in rows]
    note = ("return: mean over seeds of each seed's mean deterministic return (one seed: over its episodes), "
            "95% percentile-bootstrap CI over seeds (one seed: over episodes); drop: (unperturbed - perturbed) "
            "/ |unperturbed|, mean over seeds, positive = worse; the same episode seeds at every level.")
    return "\n".join(_render(header, lines, markdown)) + "\n\n" + note


def _fmt_drop(drop: float | None, ci: tuple[float, float] | None) -> str:
    if drop is None:
        return "-"
    return f"{100 * drop:.1f}%" + (f" [{100 * ci[0]:.1f}%, {100 * ci[1]:.1f}%]" if ci else "")


def level_curves(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """perturbation -> label -> {"levels", "mean", "low", "high", "n", "neutral", "xlabel"} for
    ``plot_generalization``, each curve with the unperturbed return at the neutral level."""
    from .perturb import PERTURBATIONS

    curves: dict[str, dict[str, dict[str, Any]]] = {}
    base = {(r["env_id"], r["label"]): r for r in rows if r["perturbation"] == UNPERTURBED}
    for r in rows:
        if r["perturbation"] == UNPERTURBED:
            continue
        key = r["label"] if len({env for env, _ in base}) == 1 else f"{r['label']} ({r['env_id']})"
        perturbation = PERTURBATIONS[r["perturbation"]]
        neutral = perturbation.neutral
        curve = curves.setdefault(r["perturbation"], {}).setdefault(
            key, {"points": {}, "n": r["seeds"], "neutral": neutral, "xlabel": LEVEL_AXES[perturbation.kind]})
        unperturbed = base[(r["env_id"], r["label"])]
        curve["points"][neutral] = (unperturbed["mean_return"], *unperturbed["ci"])
        curve["points"][r["level"]] = (r["mean_return"], *r["ci"])
    for by_label in curves.values():
        for curve in by_label.values():
            levels = sorted(curve.pop("points").items())
            curve["levels"] = np.array([level for level, _ in levels])
            curve["mean"], curve["low"], curve["high"] = (np.array(v) for v in zip(*(p for _, p in levels)))
    return curves


def write_results(folder: Path, rows: list[dict[str, Any]], title: str, markdown: bool,
                  extra: Mapping[str, Any]) -> str:
    """``folder/generalization.{json,txt,png}``; returns the table text."""
    text = format_table(rows, markdown)
    (folder / f"{RESULT_STEM}.txt").write_text(text + "\n")
    (folder / f"{RESULT_STEM}.json").write_text(json.dumps({**extra, "rows": rows}, indent=2) + "\n")
    curves = level_curves(rows)
    if curves:
        plot_generalization(curves, folder / f"{RESULT_STEM}.png", title)
    return text


def generalize(paths: Sequence[str | os.PathLike], levels: Mapping[str, Sequence[float]] | None = None,
               episodes: int = 10, seed: int | None = None, out: str | os.PathLike = ".",
               markdown: bool = False, log: Callable[[str], None] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The sweep over every run under ``paths`` (see the module doc): writes each run's and the
    pooled results, returns the pooled table (grouping warnings under it) and rows."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    groups = group_runs(find_runs(paths))
    total, done = sum(len(g.runs) for g in groups), itertools.count(1)

    def progress(path: Path) -> None:
        if log is not None:
            log(f"[{next(done)}/{total}] {path}")

    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for group in groups:
        results, failed = _sweep_group(group, levels, episodes, seed, markdown, progress)
        if results:
            rows += summarize(group.env_id, group.label, results)
        warnings += failed + group.warnings
    if not rows:
        raise ValueError("no run could be evaluated:" + "".join(f"\n  {w}" for w in warnings))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = write_results(out, rows, _title(groups), markdown,
                         {"episodes": episodes, "seed": seed, "warnings": warnings})
    warned = "".join(f"\nwarning: {w}" for w in dict.fromkeys(warnings))
    return text + ("\n" + warned if warned else ""), rows


def _sweep_group(group: Group, levels: Mapping[str, Sequence[float]] | None, episodes: int, seed: int | None,
                 markdown: bool, progress: Callable[[Path], None]) -> tuple[list[dict[str, Any]], list[str]]:
    """``generalize_run`` of each run of ``group``, written to its folder, and a warning for each run
    whose checkpoint could not be loaded (one unfinished or damaged run does not stop the sweep)."""
    results, warnings = [], []
    for run in group.runs:
        progress(run.path)
        try:
            result = generalize_run(run.path, levels, episodes, seed)
        except CheckpointError as exc:
            warnings.append(f"{run.path} not evaluated: {exc}")
            continue
        rows = summarize(result["env_id"], f"{group.label} seed {result['seed']}", [result])
        title = f"{result['label']} on {result['env_id']}, seed {result['seed']}: mean return, 95% CI over episodes"
        write_results(run.path, rows, title, markdown, {"result": result})
        results.append(result)
    return results, warnings


def _title(groups: Sequence[Group]) -> str:
    envs = sorted({g.env_id for g in groups})
    return f"generalization on {', '.join(envs)}: mean return over seeds, 95% CI"
