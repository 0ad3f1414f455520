"""The generalization sweep condensed: one line per configuration, and each quantum variant against
its classical twin (issue 14, items 3 and 5).

Reads the per-run tables ``hdqnn generalize`` writes (``CONFIG/seedN/generalization.json`` under
each ROOT). A seed's *drop* at one perturbation level is (unperturbed - perturbed) / |unperturbed|
of its mean deterministic return (positive = worse); per seed this script averages the drops over
the levels of each perturbation and over all levels, then reports the mean over seeds with a 95%
t-interval. ``--pairs Q:C`` compares configuration Q with C (Welch's test over seeds) on the
unperturbed return and on the mean drop over all levels: the paper's claim that hDQNNs generalize
better predicts a smaller drop for the quantum variant.

    python bench/generalize_summary.py bench/out/rl_paper --pairs hdqnn-td3-10x10:td3 hdqnn-sac-10x10:sac
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
        per_family = [f"{100.0 * np.mean([np.mean(s['drops'][p]) for s in seeds if p in s['drops']]):.1f}%"
                      if any(p in s["drops"] for s in seeds) else "-" for p in names]
        lines.append("| " + " | ".join([config, str(len(seeds)), _mean_ci([s["return"] for s in seeds]),
                                        _pct_ci([all_levels_drop(s) for s in seeds])] + per_family) + " |")
    return "\n".join(lines)


def _diff(a: Sequence[float], b: Sequence[float], scale: float = 1.0, unit: str = "") -> str:
    if len(a) < 2 or len(b) < 2:
        return f"{scale * (np.mean(a) - np.mean(b)):.1f}{unit} (too few seeds for a test)"
    w = welch_test([scale * v for v in a], [scale * v for v in b])
    p = "nan" if math.isnan(w.p_value) else f"{w.p_value:.2f}"
    return f"{w.difference:.1f}{unit} [{w.ci[0]:.1f}, {w.ci[1]:.1f}], p = {p}"


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
    args = parser.parse_args(argv)
    configs = read_configs(args.roots)
    if not configs:
        raise SystemExit(f"no {RUN_TABLE} under CONFIG/seedN/ in {', '.join(map(str, args.roots))}: "
                         "run `hdqnn generalize` on the runs first")
    print(config_table(configs))
    if args.pairs:
        print()
        print(pair_table(configs, args.pairs))
    print("\ndrop: (unperturbed - perturbed) / |unperturbed| of a seed's mean return, averaged over the levels "
          "(per column: over that perturbation's levels), then over seeds; positive = worse. Intervals: 95% t over "
          "seeds; differences: quantum - classical, Welch.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
