"""qtDNN options study (issue 15, item 2): which surrogate options buy gradient fidelity, at what cost.

The setting of ``bench/qtdnn_study.py`` (hDQNN ansatz with bound random weights, B = 256 minibatches
``centre + spread * N(0, 1)`` with a slowly drifting centre, warm-started re-fits) at 10 qubits x
10 layers and the spreads the RL's PreDNN produces (0.3-1.0 rad). For plain qtDNN (hdqnn's
defaults) and each ``QtDNNConfig`` option alone and combined, after the warm-up it compares the
surrogate's input-VJP with the exact adjoint VJP (``gradient_fidelity``) every other update, and
reports the mean cosine, the extra circuit executions per update (``circuit_executions_fit``;
the forward costs B = 256), the fit time (median per update, one torch thread) and the
hardware-side trust figures (held-out loss, directional-derivative cosine) beside the true cosine.

    OMP_NUM_THREADS=1 python bench/qtdnn_options.py            # the study (~10 min of one core)
    OMP_NUM_THREADS=1 python bench/qtdnn_options.py --quick    # smoke run (seconds)

Appends to bench/out/qtdnn_options.jsonl (not with --quick); a full run (or ``--table``) writes the table of every row
there to bench/qtdnn_options.md, so spreads can be run one invocation at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import hdqnn  # noqa: E402
from hdqnn.autograd import QtDNNConfig, QuantumLayer  # noqa: E402
from qtdnn_study import BATCH, bind_weights, minibatches, Setting  # noqa: E402

UPDATES, WARMUP, MEASURE_EVERY = 80, 50, 2
QUICK_UPDATES, QUICK_WARMUP = 8, 4
TABLE_START, TABLE_END = "<!-- table: bench/qtdnn_options.py -->", "<!-- end of table -->"
SPREADS = (0.3, 0.5, 1.0)
#: Per-wire spreads (10 wires) as the RL PreDNN makes them: "rl" measured on a replay minibatch of
#: hDQNN-TD3 10x10 on Hopper-v4 (bench/out/qtdnn_rl15k/qtdnn/seed1 at 15,000 steps); "rl-saturated"
#: the same with two wires' tanh saturated (std 0.02 and 1e-4, as in its Sobolev twin and in an
#: angle_scale 0.3 run), which a per-feature normalisation magnifies.
SPREAD_PROFILES = {
    "rl": (0.45, 0.53, 0.46, 0.35, 0.11, 0.12, 0.49, 0.125, 0.5, 0.45),
    "rl-saturated": (0.45, 0.53, 0.46, 0.35, 0.02, 0.12, 0.49, 0.125, 0.5, 1e-4),
}
#: Each option alone, then combinations; the dicts are QtDNNConfig overrides of hdqnn's defaults.
#: Sobolev probes: k x m x 2 <= 0.1 x B = 25 extra executions per update.
OPTIONS = {
    "plain": {},
    "steps 64": {"n_fit_steps": 64},
    "sobolev k12 m1": {"sobolev_samples": 12},
    "sobolev k6 m2": {"sobolev_samples": 6, "sobolev_directions": 2},
    "check only k12": {"sobolev_samples": 12, "sobolev_weight": 0.0},
    "adaptive 16-64": {"holdout": 0.1, "adaptive_max_steps": 64},
    "normalize": {"normalize": True},
    "normalize, steps 64": {"normalize": True, "n_fit_steps": 64},
    "sobolev k12 w4 + normalize": {"sobolev_samples": 12, "sobolev_weight": 4.0, "normalize": True},
    "sobolev k12 w4 + normalize, steps 64": {"sobolev_samples": 12, "sobolev_weight": 4.0, "normalize": True,
                                             "n_fit_steps": 64},
    "sobolev k12 w4 + normalize + adaptive 32-128": {"sobolev_samples": 12, "sobolev_weight": 4.0,
                                                     "normalize": True, "n_fit_steps": 32, "holdout": 0.1,
                                                     "adaptive_max_steps": 128},
}
#: Run only when named with --only (the shot-noise check: a central difference needs a larger step).
EXTRA_OPTIONS = {
    "sobolev k12 w4 h0.5 + normalize, steps 64": {"sobolev_samples": 12, "sobolev_weight": 4.0,
                                                  "sobolev_step": 0.5, "normalize": True, "n_fit_steps": 64},
}
QUICK_OPTIONS = ("plain", "sobolev k12 m1", "adaptive 16-64", "normalize")


def make_layer(config: QtDNNConfig, n_qubits: int, layers: int, rng: np.random.Generator,
               shots: int | None = None) -> QuantumLayer:
    circuit = hdqnn.ansatz.hardware_efficient(n_qubits, layers)
    circuit = bind_weights(circuit, rng.uniform(-np.pi, np.pi, circuit.n_weights))
    return QuantumLayer(circuit, grad="qtdnn", qtdnn=config, shots=shots, seed=int(rng.integers(2**31)))


def run(name: str, overrides: dict, spread: float | str, n_qubits: int, layers: int, updates: int, warmup: int,
        seed: int, shots: int | None = None) -> dict:
    rng = np.random.default_rng(seed)
    layer = make_layer(QtDNNConfig(**overrides), n_qubits, layers, rng, shots)
    stream = Setting("options", n_qubits=n_qubits, layers=layers, spread=_per_wire(spread, n_qubits))
    cosines, rel_errors, fit_seconds, steps, held, tangent = [], [], [], [], [], []
    for update, x in enumerate(minibatches(stream, rng, updates)):
        layer(x)
        stats = layer.stats
        fit_seconds.append(stats["last_fit_seconds"])
        steps.append(stats["last_fit_steps"])
        if update >= warmup and (update - warmup) % MEASURE_EVERY == 0:
            fid = layer.gradient_fidelity(x)
            cosines.append(fid["cosine_inputs"])
            rel_errors.append(fid["rel_error_inputs"])
            if stats["last_holdout_error"] is not None:
                held.append(stats["last_holdout_error"])
            if stats["last_tangent_cosine"] is not None:
                tangent.append(stats["last_tangent_cosine"])
    stats = layer.stats
    return {
        "option": name, "overrides": overrides, "spread": spread, "seed": seed, "shots": shots,
        "n_qubits": n_qubits,
        "layers": layers, "cosine": statistics.fmean(cosines), "cosine_min": min(cosines),
        "rel_error": statistics.fmean(rel_errors),
        "extra_executions": stats["circuit_executions_fit"] / updates,
        "forward_executions": stats["circuit_executions_forward"] / updates,
        "fit_ms": 1e3 * statistics.median(fit_seconds),
        "fit_steps": statistics.fmean(steps[warmup:]),
        "holdout_error": statistics.fmean(held) if held else None,
        "tangent_cosine": statistics.fmean(tangent) if tangent else None,
        # how well the hardware-side proxy tracks the truth, update by update
        "tangent_vs_true_corr": _correlation(tangent, cosines),
    }


def _per_wire(spread: float | str, n_qubits: int) -> float | tuple[float, ...]:
    """A numeric spread as it is, a profile's name as its per-wire spreads."""
    if not isinstance(spread, str):
        return spread
    profile = SPREAD_PROFILES[spread]
    if len(profile) != n_qubits:
        raise ValueError(f"spread profile {spread!r} has {len(profile)} wires, the circuit {n_qubits}")
    return profile


def _spread(text: str) -> float | str:
    """A --spreads item: a number or a SPREAD_PROFILES name."""
    if text in SPREAD_PROFILES:
        return text
    try:
        return float(text)
    except ValueError:
        raise SystemExit(f"--spreads: {text!r} is neither a number nor one of {', '.join(SPREAD_PROFILES)}")


def time_fits(names: list[str], spread: float | str, n_qubits: int, layers: int, updates: int) -> list[dict]:
    """Fit and forward time per update of each option, the options' updates interleaved on one
    minibatch stream, so that load on a shared machine hits them alike; min and median."""
    rng = np.random.default_rng(0)
    layers_by_name = {name: make_layer(QtDNNConfig(**OPTIONS[name]), n_qubits, layers, np.random.default_rng(0))
                      for name in names}
    fit = {name: [] for name in names}
    forward = {name: [] for name in names}
    stream = Setting("timing", n_qubits=n_qubits, layers=layers, spread=_per_wire(spread, n_qubits))
    for x in minibatches(stream, rng, updates):
        for name, layer in layers_by_name.items():
            layer(x)
            fit[name].append(layer.stats["last_fit_seconds"])
            forward[name].append(layer.stats["last_forward_seconds"])
    return [{"option": name, "fit_ms_min": 1e3 * min(fit[name]), "fit_ms_median": 1e3 * statistics.median(fit[name]),
             "forward_ms_min": 1e3 * min(forward[name]),
             "extra_executions": layers_by_name[name].stats["circuit_executions_fit"] / updates}
            for name in names]


def _correlation(a: list[float], b: list[float]) -> float | None:
    if len(a) != len(b) or len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
    """One line per (option, spread), the seeds averaged."""
    head = ("| option | shots | spread | cosine (mean over seeds) | min cos | rel err | extra runs/update | "
            "fit ms | fit steps | held-out loss | tangent cos (pre-fit) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    order = list(OPTIONS) + list(EXTRA_OPTIONS)
    keys = list(dict.fromkeys((r["option"], r.get("shots"), r["spread"]) for r in rows))
    spread_order = [*SPREADS, *SPREAD_PROFILES]

    def position(key: tuple) -> tuple:
        option, shots, spread = key
        rank = spread_order.index(spread) if spread in spread_order else len(spread_order)
        return shots or 0, rank, str(spread), order.index(option)

    for option, shots, spread in sorted(keys, key=position):
        group = [r for r in rows if (r["option"], r.get("shots"), r["spread"]) == (option, shots, spread)]

        def mean(key: str) -> float | None:
            values = [r[key] for r in group if r[key] is not None]
            return statistics.fmean(values) if values else None

        lowest = min(r["cosine_min"] for r in group)
        lines.append(f"| {option} | {shots or 'exact'} | {spread} | {mean('cosine'):.3f} | {lowest:.3f} | "
                     f"{mean('rel_error'):.3f} | {mean('extra_executions'):.0f} | {mean('fit_ms'):.1f} | "
                     f"{mean('fit_steps'):.1f} | {_fmt(mean('holdout_error'), '.2e')} | "
                     f"{_fmt(mean('tangent_cosine'), '.3f')} |")
    return "\n".join(lines)


def write_table(rows: list[dict]) -> None:
    """The table into bench/qtdnn_options.md between its TABLE_START / TABLE_END markers (the
    prose around it stays), or as the whole file when it has no markers."""
    path = HERE / "qtdnn_options.md"
    table = format_table(rows)
    text = path.read_text() if path.exists() else ""
    if TABLE_START in text and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        table = head + TABLE_START + "\n" + table + "\n" + TABLE_END + rest.split(TABLE_END, 1)[1]
    else:
        table += "\n"
    path.write_text(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 qubits x 2 layers, few updates (smoke run)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only", default=None, help="option names separated by ';'")
    parser.add_argument("--spreads", default=None,
                        help=f"comma-separated spreads, numbers or per-wire profiles ({', '.join(SPREAD_PROFILES)}; "
                             "10 qubits); default 0.3,0.5,1.0")
    parser.add_argument("--shots", type=int, default=None, help="shots per sample (default: exact)")
    parser.add_argument("--table", action="store_true", help="only rewrite the table from the .jsonl")
    parser.add_argument("--timing", action="store_true",
                        help="interleaved fit timing of the --only options (default: all) at the first spread")
    args = parser.parse_args()
    log_path = HERE / "out" / "qtdnn_options.jsonl"
    if args.table:
        write_table([json.loads(line) for line in open(log_path)])
        return
    torch.set_num_threads(1)
    hdqnn.set_num_threads(1)
    n_qubits, layers = (4, 2) if args.quick else (10, 10)
    updates, warmup = (QUICK_UPDATES, QUICK_WARMUP) if args.quick else (UPDATES, WARMUP)
    names = args.only.split(";") if args.only else list(QUICK_OPTIONS if args.quick else OPTIONS)
    spreads = [_spread(s) for s in args.spreads.split(",")] if args.spreads else list(SPREADS)
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    if args.timing:
        print("| option | fit ms (min) | fit ms (median) | forward ms (min) | extra runs/update |")
        print("|---|---|---|---|---|")
        for r in time_fits(names, spreads[0], n_qubits, layers, updates):
            print(f"| {r['option']} | {r['fit_ms_min']:.1f} | {r['fit_ms_median']:.1f} | {r['forward_ms_min']:.1f} | "
                  f"{r['extra_executions']:.0f} |", flush=True)
        return
    print(f"{n_qubits} qubits x {layers} layers, B {BATCH}, {updates} updates ({warmup} warm-up), "
          f"seeds {args.seeds}, backend {hdqnn.get_backend().name}", flush=True)
    rows, start = [], time.perf_counter()
    with open(os.devnull if args.quick else log_path, "a") as log:
        for spread in spreads:
            for name in names:
                for seed in range(args.seeds):
                    row = run(name, {**OPTIONS, **EXTRA_OPTIONS}[name], spread, n_qubits, layers, updates, warmup,
                              seed, args.shots)
                    rows.append(row)
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    print(f"{name:44s} spread {spread}: cos {row['cosine']:.3f} extra {row['extra_executions']:.0f} "
                          f"fit {row['fit_ms']:.1f} ms steps {row['fit_steps']:.1f} "
                          f"tangent {_fmt(row['tangent_cosine'], '.3f')}", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    print(format_table(rows))
    if not args.quick:
        write_table([json.loads(line) for line in open(log_path)])


if __name__ == "__main__":
    main()
