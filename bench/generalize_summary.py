"""The generalization sweep condensed: one line per configuration, and each quantum variant against
its classical twin (issue 14, items 3 and 5).

Reads the per-run tables ``hdqnn generalize`` writes (``CONFIG/seedN/generalization.json`` under
each ROOT). A seed's *drop* at one perturbation level is (unperturbed - perturbed) / |unperturbed|
of its mean deterministic return (positive = worse); per seed this script averages the drops over
the levels of each perturbation and over all levels, then reports the mean over seeds with a 95%
t-interval. ``--pairs Q:C`` compares configuration Q with C (Welch's test over seeds) on the
unperturbed return and on the mean drop over all levels: the paper's claim that hDQNNs generalize
better predicts a smaller drop for the quantum variant.

    python bench/generalize_summary.py bench/out/rl_paper --pairs hdqnn-td3-10x10:td3 hdqnn-sac-10x10:sac \
        --plot generalization.png
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sb3_compare import t_interval, welch_test

RUN_TABLE = "generalization.json"


def read_seed(path: Path) -> dict[str, Any]:
    """One run's unperturbed return and its drops per perturbation name: {name: [drop per level]}."""
    rows = json.loads(path.read_text())["rows"]
    base = next(r["mean_return"] for r in rows if r["perturbation"] == "none")
    drops: dict[str, list[float]] = {}
    for r in rows:
        if r["perturbation"] != "none" and r["drop"] is not None:
            drops.setdefault(r["perturbation"], []).append(float(r["drop"]))
    return {"run": str(path.parent), "return": float(base), "drops": drops}


def read_configs(roots: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """{configuration folder name: [seed records]} for every run table under the roots."""
    configs: dict[str, list[dict[str, Any]]] = {}
    for root in roots:
        for path in sorted(root.glob(f"*/seed*/{RUN_TABLE}")):
            configs.setdefault(path.parent.parent.name, []).append(read_seed(path))
    return configs


def all_levels_drop(seed: dict[str, Any]) -> float:
    return float(np.mean([d for drops in seed["drops"].values() for d in drops]))


def _mean_ci(values: Sequence[float]) -> str:
    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.1f}"
    lo, hi = t_interval(values)
    return f"{mean:.1f} [{lo:.1f}, {hi:.1f}]"


def _pct_ci(values: Sequence[float]) -> str:
    return _mean_ci([100.0 * v for v in values]) + "%" if values else "-"


def config_table(configs: dict[str, list[dict[str, Any]]]) -> str:
    names = list(dict.fromkeys(p for seeds in configs.values() for s in seeds for p in s["drops"]))  # sweep order
    head = ["config", "seeds", "unperturbed return", "mean drop, all levels"] + names
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config, seeds in sorted(configs.items()):
        per_family = [f"{100.0 * np.mean(family_drops(seeds, p)):.1f}%" if family_drops(seeds, p) else "-"
                      for p in names]
        lines.append("| " + " | ".join([config, str(len(seeds)), _mean_ci([s["return"] for s in seeds]),
                                        _pct_ci([all_levels_drop(s) for s in seeds])] + per_family) + " |")
    return "\n".join(lines)


def _diff(a: Sequence[float], b: Sequence[float], scale: float = 1.0, unit: str = "") -> str:
    if len(a) < 2 or len(b) < 2:
        return f"{scale * (np.mean(a) - np.mean(b)):.1f}{unit} (too few seeds for a test)"
    w = welch_test([scale * v for v in a], [scale * v for v in b])
    p = "nan" if math.isnan(w.p_value) else "< 0.01" if w.p_value < 0.005 else f"= {w.p_value:.2f}"
    return f"{w.difference:.1f}{unit} [{w.ci[0]:.1f}, {w.ci[1]:.1f}], p {p}"


def pair_table(configs: dict[str, list[dict[str, Any]]], pairs: Sequence[tuple[str, str]]) -> str:
    lines = ["| quantum | classical | return difference [95% CI], Welch p | mean drop difference [95% CI], Welch p |",
             "|---|---|---|---|"]
    for q, c in pairs:
        for name in (q, c):
            if name not in configs:
                raise SystemExit(f"no generalization tables for {name!r} (found: {', '.join(sorted(configs))})")
        qs, cs = configs[q], configs[c]
        lines.append(f"| {q} | {c} | {_diff([s['return'] for s in qs], [s['return'] for s in cs])} | "
                     f"{_diff([all_levels_drop(s) for s in qs], [all_levels_drop(s) for s in cs], 100.0, ' pp')} |")
    return "\n".join(lines)


def family_drops(seeds: list[dict[str, Any]], name: str) -> list[float]:
    """Per seed, the mean drop over the levels of perturbation ``name`` (seeds that swept it)."""
    return [float(np.mean(s["drops"][name])) for s in seeds if name in s["drops"]]


def plot(configs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Grouped bars: per perturbation, each configuration's mean drop with its 95% interval over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(p for seeds in configs.values() for s in seeds for p in s["drops"])) + ["all levels"]
    width = 0.8 / len(configs)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.3 * len(names)), 4.5))
    for k, (config, seeds) in enumerate(sorted(configs.items())):
        means, errors = [], []
        for name in names:
            values = [all_levels_drop(s) for s in seeds] if name == "all levels" else family_drops(seeds, name)
            values = [100.0 * v for v in values]
            means.append(float(np.mean(values)) if values else np.nan)
            half = (t_interval(values)[1] - means[-1]) if len(values) > 1 else 0.0
            errors.append(half)
        ax.bar(np.arange(len(names)) + (k - (len(configs) - 1) / 2) * width, means, width, yerr=errors,
               capsize=2, label=config)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("return drop vs unperturbed, % (positive = worse)")
    ax.set_title("Mean relative drop over each perturbation's levels (95% t-interval over seeds)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pair(text: str) -> tuple[str, str]:
    q, sep, c = text.partition(":")
    if not sep or not q or not c:
        raise argparse.ArgumentTypeError(f"a pair is QUANTUM:CLASSICAL, got {text!r}")
    return q, c


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding CONFIG/seedN/generalization.json")
    parser.add_argument("--pairs", nargs="*", type=pair, default=[], metavar="Q:C",
                        help="quantum configuration : its classical twin")
    parser.add_argument("--plot", type=Path, help="write the per-perturbation drops as grouped bars (PNG)")
    args = parser.parse_args(argv)
    configs = read_configs(args.roots)
    if not configs:
        raise SystemExit(f"no {RUN_TABLE} under CONFIG/seedN/ in {', '.join(map(str, args.roots))}: "
                         "run `hdqnn generalize` on the runs first")
    print(config_table(configs))
    if args.pairs:
        print()
        print(pair_table(configs, args.pairs))
    if args.plot:
        plot(configs, args.plot)
    print("\ndrop: (unperturbed - perturbed) / |unperturbed| of a seed's mean return, averaged over the levels "
          "(per column: over that perturbation's levels), then over seeds; positive = worse. Intervals: 95% t over "
          "seeds; differences: quantum - classical, Welch.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
