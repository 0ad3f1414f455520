"""PNG plots: one run's learning curve, and several configurations with confidence bands."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Training episodes averaged in the plotted running mean.
SMOOTHING_EPISODES = 10


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window from a training run
    import matplotlib.pyplot as plt

    return plt


def running_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (shorter at the start)."""
    values = np.asarray(values, dtype=np.float64)
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (cumsum[idx] - cumsum[start]) / (idx - start)


def plot_run(records: Sequence[dict[str, Any]], path: str | os.PathLike, title: str) -> Path:
    """Learning curve of one run: training episode returns (smoothed), evaluation returns and,
    when logged, the qtDNN gradient cosine against the exact adjoint."""
    plt = _pyplot()
    train = [(r["step"], r["charts/episodic_return"]) for r in records if "charts/episodic_return" in r]
    evals = [(r["step"], r["eval/mean_return"], r.get("eval/std_return", 0.0))
             for r in records if "eval/mean_return" in r]
    cosine = [(r["step"], r["qtdnn/grad_cosine"]) for r in records if "qtdnn/grad_cosine" in r]
    n_axes = 2 if cosine else 1
    fig, axes = plt.subplots(n_axes, 1, figsize=(7, 3.2 * n_axes), sharex=True, squeeze=False)
    ax = axes[0, 0]
    if train:
        steps, returns = zip(*train)
        ax.plot(steps, returns, ".", alpha=0.25, color="tab:blue", label="training episodes")
        ax.plot(steps, running_mean(returns, SMOOTHING_EPISODES), color="tab:blue",
                label=f"training (mean of {SMOOTHING_EPISODES})")
    if evals:
        steps, means, stds = (np.asarray(v) for v in zip(*evals))
        ax.plot(steps, means, "o-", color="tab:orange", label="evaluation (deterministic)")
        ax.fill_between(steps, means - stds, means + stds, color="tab:orange", alpha=0.2)
    ax.set_ylabel("episodic return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or evals:
        ax.legend(loc="lower right", fontsize=8)
    if cosine:
        ax = axes[1, 0]
        steps, values = zip(*cosine)
        ax.plot(steps, values, ".-", color="tab:green")
        ax.set_ylabel("qtDNN grad cosine\nvs exact adjoint")
        ax.set_ylim(-1.05, 1.05)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("environment steps")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_comparison(curves: dict[str, dict[str, dict[str, Any]]], path: str | os.PathLike,
                    cosine_curves: dict[str, dict[str, dict[str, Any]]] | None = None) -> Path:
    """One column per environment, one line per configuration with its 95% CI band: evaluation
    return on top and, where logged, the qtDNN gradient cosine against the exact adjoint below.

    curves, cosine_curves: env_id -> label -> {"steps": [T], "mean": [T], "low": [T], "high": [T], "n"}.
    """
    plt = _pyplot()
    envs = sorted(curves)
    rows = [("evaluation return", curves)]
    if cosine_curves and any(env in cosine_curves for env in envs):
        rows.append(("qtDNN grad cosine vs adjoint", cosine_curves))
    fig, axes = plt.subplots(len(rows), len(envs), figsize=(6 * len(envs), 3.6 * len(rows)), squeeze=False)
    colors = {label: f"C{i}" for i, label in enumerate(sorted({l for c in curves.values() for l in c}))}
    for row, (ylabel, data) in enumerate(rows):
        for ax, env_id in zip(axes[row], envs):
            for label, c in sorted(data.get(env_id, {}).items()):
                ax.plot(c["steps"], c["mean"], "o-", markersize=3, color=colors.get(label),
                        label=f"{label} (n={c['n']})")
                ax.fill_between(c["steps"], c["low"], c["high"], color=colors.get(label), alpha=0.2)
            ax.set_title(env_id if row == 0 else "", fontsize=10)
            ax.set_xlabel("environment steps")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if data.get(env_id):
                ax.legend(fontsize=8, loc="best")
    fig.suptitle("lines: mean over seeds; bands: 95% bootstrap confidence interval", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_generalization(curves: dict[str, dict[str, dict[str, Any]]], path: str | os.PathLike, title: str) -> Path:
    """One panel per perturbation: return against the perturbation's level, one line per
    configuration with its 95% CI band; the unperturbed return sits at the neutral level (scale 1,
    noise or delay 0), marked by a dotted line.

    curves: perturbation -> label -> {"levels": [L], "mean": [L], "low": [L], "high": [L], "n", "neutral",
    "xlabel"}.
    """
    plt = _pyplot()
    names = list(curves)
    cols = min(len(names), 4)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    colors = {label: f"C{i}" for i, label in enumerate(sorted({l for c in curves.values() for l in c}))}
    for ax, name in zip(axes.flat, names):
        for label, c in sorted(curves[name].items()):
            ax.plot(c["levels"], c["mean"], "o-", markersize=3, color=colors[label], label=f"{label} (n={c['n']})")
            ax.fill_between(c["levels"], c["low"], c["high"], color=colors[label], alpha=0.2)
        first = next(iter(curves[name].values()))
        ax.axvline(first["neutral"], color="gray", linestyle=":", linewidth=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(first["xlabel"])
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
