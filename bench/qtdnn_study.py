"""qtDNN surrogate study (issue 3, item 6): gradient fidelity and fit cost per update.

For the hDQNN ansatz (RY encoding, layers of RY RZ rotations and a CNOT ring, <Z> per wire) at
4-10 qubits, a ``QuantumLayer(grad="qtdnn")`` sees a stream of minibatches whose inputs are
``centre + spread * N(0, 1)`` with the centre drifting slowly (``DRIFT`` rad per update), or
uniform over [-pi, pi] (spread "uniform"). Each update runs the real circuit and re-fits the
surrogate (warm start), exactly as a training step does; after ``--warmup`` updates the layer's
``gradient_fidelity`` compares the surrogate's input-VJP with the exact adjoint VJP on that same
minibatch. The table gives the mean cosine and relative error over the measured updates and the
surrogate fit time per update, one factor varied at a time around a base setting.

    python bench/qtdnn_study.py                # the reduced study (~10 min of one core)
    python bench/qtdnn_study.py --quick        # smoke run (seconds)

Writes bench/out/qtdnn_study.jsonl, bench/qtdnn_study.md (table) and bench/qtdnn_study.png.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

import hdqnn
from hdqnn import Circuit, Weight
from hdqnn.autograd import QtDNNConfig, QuantumLayer

BATCH = 256
#: Per-update random-walk step of the minibatch centre (rad, per input).
DRIFT = 0.02
UPDATES, WARMUP, MEASURE_EVERY = 60, 40, 2
QUICK_UPDATES, QUICK_WARMUP = 6, 3
SEED = 0
HERE = Path(__file__).resolve().parent
DEFAULTS = QtDNNConfig()


@dataclass(frozen=True)
class Setting:
    """One study point: circuit size, surrogate settings and the input distribution.

    The surrogate defaults are hdqnn's (``QtDNNConfig()``), so ``Setting("base")`` is the default.
    """

    group: str
    n_qubits: int = 10
    layers: int = 10
    hidden: int = DEFAULTS.hidden
    n_fit_steps: int = DEFAULTS.n_fit_steps
    fit_batch: int = DEFAULTS.fit_batch
    buffer_size: int = DEFAULTS.buffer_size
    buffer_mix: float = DEFAULTS.buffer_mix
    loss: str = DEFAULTS.loss
    activation: str = DEFAULTS.activation
    lr: float = DEFAULTS.lr
    center: bool = DEFAULTS.center
    spread: float | tuple[float, ...] | str = 0.1
    """std of the inputs around the drifting centre: one for every wire, one per wire, or uniform"""
    trainable_weights: bool = False

    def qtdnn(self) -> QtDNNConfig:
        return QtDNNConfig(hidden=self.hidden, n_fit_steps=self.n_fit_steps, fit_batch=self.fit_batch,
                           buffer_size=self.buffer_size, buffer_mix=self.buffer_mix, loss=self.loss,
                           activation=self.activation, lr=self.lr, center=self.center)


def bind_weights(circuit: Circuit, values: np.ndarray) -> Circuit:
    """The same circuit with every Weight(j) replaced by the constant scale * values[j] (the
    paper's PQC: fixed random layers, only the inputs vary)."""
    bound = Circuit(circuit.n_qubits)
    for op in circuit.operations:
        angles = [a.scale * float(values[a.index]) if isinstance(a, Weight) else a for a in op.angles]
        bound.append(op.name, op.wires, angles)
    return bound


def make_layer(s: Setting, rng: np.random.Generator) -> QuantumLayer:
    circuit = hdqnn.ansatz.hardware_efficient(s.n_qubits, s.layers)
    if not s.trainable_weights:
        circuit = bind_weights(circuit, rng.uniform(-math.pi, math.pi, circuit.n_weights))
    return QuantumLayer(circuit, grad="qtdnn", qtdnn=s.qtdnn(), seed=int(rng.integers(2**31)))


def minibatches(s: Setting, rng: np.random.Generator, updates: int):
    """The input stream: a slowly drifting centre with Gaussian spread (per wire if a tuple), or
    uniform angles."""
    centre = rng.uniform(-math.pi / 2, math.pi / 2, s.n_qubits)
    for _ in range(updates):
        if s.spread == "uniform":
            x = rng.uniform(-math.pi, math.pi, (BATCH, s.n_qubits))
        else:
            centre = centre + DRIFT * rng.standard_normal(s.n_qubits)
            x = centre + np.asarray(s.spread, dtype=float) * rng.standard_normal((BATCH, s.n_qubits))
        yield torch.tensor(x, dtype=torch.float32, requires_grad=True)


def run_setting(s: Setting, updates: int, warmup: int) -> dict:
    rng = np.random.default_rng(SEED)
    layer = make_layer(s, rng)
    cosines, rel_errors, cos_w, fit_seconds = [], [], [], []
    for step, x in enumerate(minibatches(s, rng, updates)):
        layer(x)  # real circuit + surrogate re-fit, as in a training step
        fit_seconds.append(layer.stats["last_fit_seconds"])
        if step >= warmup and (step - warmup) % MEASURE_EVERY == 0:
            fid = layer.gradient_fidelity(x)
            cosines.append(fid["cosine_inputs"])
            rel_errors.append(fid["rel_error_inputs"])
            if fid["cosine_weights"] is not None:
                cos_w.append(fid["cosine_weights"])
    return {
        **asdict(s),
        "cosine": statistics.fmean(cosines),
        "cosine_min": min(cosines),
        "rel_error": statistics.fmean(rel_errors),
        "cosine_weights": statistics.fmean(cos_w) if cos_w else None,
        # The fastest update: the machines are shared, and the minimum is the least disturbed figure.
        "fit_ms": 1e3 * min(fit_seconds),
        "fit_loss": layer.stats["last_fit_loss"],
        "forward_ms": 1e3 * layer.stats["forward_seconds_total"] / layer.stats["forward_calls"],
    }


def settings(quick: bool) -> list[Setting]:
    """One factor at a time around the defaults (10 qubits, 10 layers, spread 0.1), then a grid."""
    base = Setting("base")
    if quick:
        small = replace(base, n_qubits=4, layers=2, hidden=32)
        return [small, replace(small, group="spread", spread="uniform")]
    out = [base]
    out += [replace(base, group="width", hidden=h) for h in (64, 256, 512, 1024, 2048)]
    out += [replace(base, group="width@0.3", hidden=h, spread=0.3) for h in (64, 128, 256, 1024, 2048)]
    out += [replace(base, group="steps", n_fit_steps=k) for k in (4, 8, 32)]
    out += [replace(base, group="fit_batch", fit_batch=b) for b in (8, 16, 64)]
    out += [replace(base, group="buffer", buffer_size=n) for n in (0, 256, 4096)]
    out += [replace(base, group="buffer_mix", buffer_mix=m) for m in (0.0, 0.5)]
    out += [replace(base, group="spread", spread=sp) for sp in (0.05, 0.2, 0.3, 0.5, "uniform")]
    out += [replace(base, group="loss/act", loss="bce"), replace(base, group="loss/act", activation="tanh"),
            replace(base, group="loss/act", activation="relu")]
    out += [replace(base, group="center", center=False, spread=sp) for sp in (0.1, 0.3)]
    out += [replace(base, group="qubits", n_qubits=n, layers=n) for n in (4, 6, 8)]
    paper = dict(n_fit_steps=32, loss="bce", lr=1e-3, center=False)
    out += [replace(base, group="paper", n_qubits=n, layers=n, hidden=2 ** (n + 1), **paper) for n in (4, 6, 8, 10)]
    out += [replace(base, group="paper@0.3", hidden=2048, spread=0.3, **paper)]
    out += [replace(base, group="weights", trainable_weights=True, center=c) for c in (True, False)]
    out += [replace(base, group="grid", hidden=h, n_fit_steps=k, lr=lr, spread=sp)
            for sp in (0.1, 0.3) for lr in (1e-3, 3e-3) for h in (64, 128, 256) for k in (4, 8, 16, 32)]
    return out


def format_table(rows: list[dict]) -> str:
    head = ("| group | n | hidden | steps | fit batch | buffer | mix | loss | act | lr | center | spread | cosine | "
            "min cos | rel err | cos weights | fit ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['group']} | {r['n_qubits']} | {r['hidden']} | {r['n_fit_steps']} | {r['fit_batch']} | "
            f"{r['buffer_size']} | {r['buffer_mix']} | {r['loss']} | {r['activation']} | {r['lr']:g} | "
            f"{'yes' if r['center'] else 'no'} | "
            f"{r['spread']} | {r['cosine']:.3f} | {r['cosine_min']:.3f} | {r['rel_error']:.3f} | "
            f"{'-' if r['cosine_weights'] is None else format(r['cosine_weights'], '.3f')} | {r['fit_ms']:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    width = sorted((r for r in rows if r["group"] in ("base", "width")), key=lambda r: r["hidden"])
    width3 = sorted((r for r in rows if r["group"] == "width@0.3"), key=lambda r: r["hidden"])
    for series, label in ((width, "spread 0.1"), (width3, "spread 0.3")):
        axes[0].semilogx([r["hidden"] for r in series], [r["cosine"] for r in series], "o-", base=2, label=label)
    for r in rows:
        if r["group"] in ("paper", "paper@0.3") and r["n_qubits"] == 10:
            axes[0].plot(r["hidden"], r["cosine"], "*", ms=12, color="C0" if r["spread"] == 0.1 else "C1")
    axes[0].plot([], [], "*", color="grey", label="paper preset (32 steps, lr 1e-3)")
    axes[0].set(xlabel="hidden width", ylabel="mean cosine vs adjoint",
                title=f"width (10 qubits, {DEFAULTS.n_fit_steps} steps, lr {DEFAULTS.lr:g})")
    axes[0].axhline(0.9, color="grey", ls=":")
    axes[0].legend()
    ax = axes[1]
    ax.semilogx([r["hidden"] for r in width], [r["fit_ms"] for r in width], "o-", base=2, label=f"{DEFAULTS.n_fit_steps} steps")
    steps = sorted((r for r in rows if r["group"] in ("base", "steps")), key=lambda r: r["n_fit_steps"])
    ax2 = ax.twiny()
    ax2.plot([r["n_fit_steps"] for r in steps], [r["fit_ms"] for r in steps], "s--", color="C1", label=f"width {DEFAULTS.hidden}")
    ax2.set_xlabel("fit steps (squares)")
    ax.set(xlabel="hidden width (circles)", ylabel="fit ms per update", title="surrogate fit cost")
    spread = [r for r in rows if r["group"] in ("base", "spread")]
    numeric = sorted((r for r in spread if r["spread"] != "uniform"), key=lambda r: r["spread"])
    axes[2].plot([r["spread"] for r in numeric], [r["cosine"] for r in numeric], "o-", label=f"width {DEFAULTS.hidden}")
    uniform = [r for r in spread if r["spread"] == "uniform"]
    if uniform:
        axes[2].axhline(uniform[0]["cosine"], color="C3", ls="--", label="uniform [-pi, pi]")
    axes[2].axhline(0.9, color="grey", ls=":")
    axes[2].set(xlabel="minibatch input spread (rad)", ylabel="mean cosine vs adjoint",
                title="spread of the PQC inputs (10 qubits)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two tiny settings (CI smoke run)")
    parser.add_argument("--updates", type=int, default=None, help=f"updates per setting (default {UPDATES})")
    parser.add_argument("--warmup", type=int, default=None, help=f"updates before measuring (default {WARMUP})")
    parser.add_argument("--threads", type=int, default=1, help="engine and torch threads")
    parser.add_argument("--only", default=None, help="run only this group")
    parser.add_argument("--replot", action="store_true",
                        help="rewrite the table and plot from bench/out/qtdnn_study.jsonl without running")
    args = parser.parse_args()
    if args.replot:
        rows = [json.loads(line) for line in open(HERE / "out" / "qtdnn_study.jsonl")]
        (HERE / "qtdnn_study.md").write_text(format_table(rows) + "\n")
        plot(rows, HERE / "qtdnn_study.png")
        return
    updates = args.updates or (QUICK_UPDATES if args.quick else UPDATES)
    warmup = args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else WARMUP)
    torch.set_num_threads(args.threads)
    hdqnn.set_num_threads(args.threads)
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    print(f"backend {hdqnn.get_backend().name}, batch {BATCH}, {updates} updates ({warmup} warm-up), "
          f"drift {DRIFT} rad/update")
    rows = []
    start = time.perf_counter()
    with open(out_dir / "qtdnn_study.jsonl", "a" if args.only else "w") as log:
        for s in settings(args.quick):
            if args.only and s.group != args.only:
                continue
            row = run_setting(s, updates, warmup)
            rows.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            extra = "" if row["cosine_weights"] is None else f" cos_w {row['cosine_weights']:.3f}"
            print(f"{s.group:10s} n={s.n_qubits:2d} h={s.hidden:4d} steps={s.n_fit_steps:2d} "
                  f"b={s.fit_batch:3d} buf={s.buffer_size:4d}/{s.buffer_mix} {s.loss}/{s.activation} lr={s.lr:g} "
                  f"center={int(s.center)} "
                  f"spread={s.spread}: cos {row['cosine']:.3f} (min {row['cosine_min']:.3f}) "
                  f"rel {row['rel_error']:.3f} fit {row['fit_ms']:.1f} ms{extra}", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    if not args.quick and not args.only:
        (HERE / "qtdnn_study.md").write_text(format_table(rows) + "\n")
        plot(rows, HERE / "qtdnn_study.png")
    else:
        print(format_table(rows))


if __name__ == "__main__":
    main()
