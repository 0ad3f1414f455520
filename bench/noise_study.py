"""Noise study (issue 12, item 6): qtDNN and parameter-shift gradients on a noisy device with shots.

The question a hardware user asks: when the PQC's outputs come from S shots of a noisy device, how
good is the gradient the hDQNN actor's PQC layer hands to its PreDNN? Measured against the exact
gradient of the NOISY expectation (the density matrix's adjoint VJP, readout error included:
``hdqnn.vjp(..., noise=model)``), which is what an ideal estimator on that device converges to.

Set-up. The circuit is the hDQNN-TD3 actor's PQC (``hdqnn.rl.networks.actor_circuit``: 5 qubits,
``LAYERS`` layers of RY/RZ rotations and a CNOT ring, RY angle encoding, rotation angles fixed at
random from the seed, <Z> per wire). The device is FakeManilaV2's calibration (5 qubits) as
``hdqnn train --noise fake_manila`` resolves it (``hdqnn.rl.device_noise``). The PQC inputs are
drawn like a real minibatch early in training: B = 256 observations of random-action Pendulum-v1
rollouts (the replay buffer before learning starts) through a PreDNN at its initialisation,
``tanh(mlp(obs))`` (per-input means -0.4..0.4, spreads 0.1..0.6 rad). Each update runs the layer's
forward (the device, with S shots, or exact) and, for qtDNN, re-fits the surrogate on those outputs
(warm start), as a training step does; after ``WARMUP`` updates, every ``MEASURE_EVERY``-th update
compares the layer's input-VJP along a random Gaussian output direction with the exact noisy VJP
(``QuantumLayer.gradient_fidelity``). Parameter-shift needs no fitting: it is measured on the same
minibatches with the same shots. Rows report the mean over seeds (each seed: another circuit,
PreDNN and minibatch stream) of the per-seed mean cosine and relative norm error, with the spread
over seeds, and what one gradient step costs in circuit executions (a forward of B samples is B;
parameter-shift adds 2 x 5 inputs x B) and shots.

    python bench/noise_study.py            # the study (~5-10 min of one core)
    python bench/noise_study.py --quick    # smoke run (seconds)

Writes bench/out/noise_study.jsonl, bench/noise_study.md and bench/noise_study.png.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numba
import numpy as np
import torch

import hdqnn
from hdqnn.autograd import QuantumLayer
from hdqnn.autograd.telemetry import compare_gradients
from hdqnn.rl import Args
from hdqnn.rl.device_noise import device_noise
from hdqnn.rl.networks import actor_circuit, mlp, qtdnn_config

N_QUBITS, LAYERS, BATCH = 5, 3, 256
DEVICE = "fake_manila"
ENV_ID = "Pendulum-v1"
#: Random-action observations the minibatches are drawn from (a replay buffer before learning).
BUFFER = 5000
SEEDS = (0, 1, 2)
UPDATES, WARMUP, MEASURE_EVERY = 30, 20, 2
QUICK_UPDATES, QUICK_WARMUP = 4, 2
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Setting:
    """One row: the device (noiseless or DEVICE), shots (None: exact) and the gradient method
    ("qtdnn" with a preset of ``hdqnn train``, "parameter-shift", or "noiseless-adjoint": the
    perfect simulator's exact gradient used as an estimate of the noisy device's)."""

    device: str
    shots: int | None
    method: str
    preset: str = "default"

    @property
    def name(self) -> str:
        grad = f"qtdnn ({self.preset})" if self.method == "qtdnn" else self.method
        return f"{grad}, {self.device}, {'exact' if self.shots is None else f'{self.shots} shots'}"


def settings(quick: bool) -> list[Setting]:
    if quick:
        return [Setting("noiseless", None, "qtdnn"), Setting(DEVICE, 100, "qtdnn"),
                Setting(DEVICE, 100, "parameter-shift")]
    # the first row is the reference: the surrogate on a perfect device with exact outputs
    out = [Setting(d, s, "qtdnn") for d in ("noiseless", DEVICE) for s in (None, 1000, 100)]
    out += [Setting(DEVICE, None, "noiseless-adjoint")]
    out += [Setting(DEVICE, s, "qtdnn", "normalized") for s in (1000, 100)]
    out += [Setting(DEVICE, s, "parameter-shift") for s in (1000, 100)]
    return out


def observations(seed: int) -> torch.Tensor:
    """BUFFER observations of random-action rollouts of ENV_ID, float32 [BUFFER, obs_dim]."""
    env = gym.make(ENV_ID)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(BUFFER):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        out.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return torch.as_tensor(np.array(out), dtype=torch.float32)


def minibatches(seed: int, updates: int):
    """PQC inputs [BATCH, N_QUBITS] float32: tanh(PreDNN(obs)) with the PreDNN at initialisation
    (the hDQNN actor's default widths), obs drawn uniformly from the random-action buffer."""
    obs = observations(seed)
    torch.manual_seed(seed)
    pre = mlp(obs.shape[1], Args().pre_hidden, N_QUBITS)
    rng = np.random.default_rng(seed)
    for _ in range(updates):
        with torch.no_grad():
            x = torch.tanh(pre(obs[rng.integers(0, len(obs), BATCH)]))
        yield x


def make_layer(s: Setting, seed: int, model) -> QuantumLayer:
    args = Args(qubits=N_QUBITS, layers=LAYERS, seed=seed, grad="qtdnn", qtdnn_preset=s.preset)
    noise = model if s.device == DEVICE else None
    grad = "parameter-shift" if s.method == "parameter-shift" else "qtdnn"
    qtdnn = qtdnn_config(args) if grad == "qtdnn" else None
    return QuantumLayer(actor_circuit(args), grad=grad, shots=s.shots, qtdnn=qtdnn, seed=seed, noise=noise)


def measure_seed(s: Setting, seed: int, model, updates: int, warmup: int) -> dict:
    """Mean cosine / relative error over the measured updates of one seed, and the costs."""
    layer = make_layer(s, seed, model)
    directions = np.random.default_rng(seed + 1000)
    cosines, rel_errors, fit_ms, grad_executions = [], [], [], []
    for step, x in enumerate(minibatches(seed, updates)):
        fits = s.method == "qtdnn"
        if fits:
            layer(x.requires_grad_(True))  # the device's outputs + the surrogate's re-fit, as in training
            fit_ms.append(1e3 * layer.stats["last_fit_seconds"])
        if step < warmup or (step - warmup) % MEASURE_EVERY:
            continue
        g = torch.as_tensor(directions.standard_normal((BATCH, N_QUBITS)))
        if s.method == "noiseless-adjoint":
            x64 = x.double().numpy()
            approx, _ = hdqnn.vjp(layer.circuit, x64, None, g.numpy())
            exact, _ = hdqnn.vjp(layer.circuit, x64, None, g.numpy(), noise=model)
            fid = compare_gradients([approx], [exact])
            fid = {"cosine_inputs": fid["cosine"], "rel_error_inputs": fid["rel_error"]}
        else:
            fid = layer.gradient_fidelity(x, g)
        cosines.append(fid["cosine_inputs"])
        rel_errors.append(fid["rel_error_inputs"])
        if s.method == "parameter-shift" and not grad_executions:  # one counted backward is enough
            layer.reset_stats()
            (layer(x.detach().requires_grad_(True)) * g.float()).sum().backward()
            grad_executions.append(layer.stats["circuit_executions_grad"])
    return {"cosine": statistics.fmean(cosines), "rel_error": statistics.fmean(rel_errors),
            "cosine_min": min(cosines), "fit_ms": min(fit_ms) if fit_ms else 0.0,
            "grad_executions": grad_executions[0] if grad_executions else 0}


def run_setting(s: Setting, model, updates: int, warmup: int, seeds) -> dict:
    per_seed = [measure_seed(s, seed, model, updates, warmup) for seed in seeds]
    cos = [r["cosine"] for r in per_seed]
    rel = [r["rel_error"] for r in per_seed]
    forward = 0 if s.method == "noiseless-adjoint" else BATCH
    executions = forward + (BATCH if s.method == "noiseless-adjoint" else per_seed[0]["grad_executions"])
    return {
        **asdict(s), "name": s.name, "seeds": len(per_seed),
        "cosine": statistics.fmean(cos), "cosine_sd": statistics.stdev(cos) if len(cos) > 1 else 0.0,
        "cosine_min": min(r["cosine_min"] for r in per_seed),
        "rel_error": statistics.fmean(rel), "rel_error_sd": statistics.stdev(rel) if len(rel) > 1 else 0.0,
        "executions_per_step": executions,
        "shots_per_step": None if s.shots is None else executions * s.shots,
        "fit_ms": statistics.fmean(r["fit_ms"] for r in per_seed),
    }


def format_table(rows: list[dict]) -> str:
    head = ("| gradient | device | shots | cosine (sd over seeds) | min cosine | rel. norm error (sd) | "
            "executions / step | shots / step | fit ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        grad = f"qtdnn ({r['preset']})" if r["method"] == "qtdnn" else r["method"]
        lines.append(
            f"| {grad} | {r['device']} | {'exact' if r['shots'] is None else r['shots']} | "
            f"{r['cosine']:.3f} ({r['cosine_sd']:.3f}) | {r['cosine_min']:.3f} | "
            f"{r['rel_error']:.3f} ({r['rel_error_sd']:.3f}) | {r['executions_per_step']} | "
            f"{'-' if r['shots_per_step'] is None else format(r['shots_per_step'], ',')} | {r['fit_ms']:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    levels = {None: 0, 1000: 1, 100: 2}
    series = [("qtdnn", "default", "noiseless", "qtDNN, noiseless device"),
              ("qtdnn", "default", DEVICE, f"qtDNN, {DEVICE}"),
              ("qtdnn", "normalized", DEVICE, f"qtDNN normalized, {DEVICE}"),
              ("parameter-shift", "default", DEVICE, f"parameter-shift, {DEVICE}")]
    for i, (method, preset, device, label) in enumerate(series):
        pts = sorted(((levels[r["shots"]], r) for r in rows
                      if (r["method"], r["preset"], r["device"]) == (method, preset, device)), key=lambda p: p[0])
        if not pts:
            continue
        xs = [p + 0.05 * (i - 1.5) for p, _ in pts]
        axes[0].errorbar(xs, [r["cosine"] for _, r in pts], yerr=[r["cosine_sd"] for _, r in pts], fmt="o-",
                         capsize=3, label=label)
        axes[1].errorbar(xs, [r["rel_error"] for _, r in pts], yerr=[r["rel_error_sd"] for _, r in pts],
                         fmt="o-", capsize=3, label=label)
    adj = [r for r in rows if r["method"] == "noiseless-adjoint"]
    if adj:
        axes[0].axhline(adj[0]["cosine"], color="grey", ls="--", label=f"noiseless exact gradient vs {DEVICE}'s")
        axes[1].axhline(adj[0]["rel_error"], color="grey", ls="--")
    for ax, ylabel in zip(axes, ("cosine vs the device's exact gradient", "relative norm error")):
        ax.set_xticks(list(levels.values()), ["exact", "1000 shots", "100 shots"])
        ax.set(ylabel=ylabel)
    axes[0].set_title(f"PQC input gradient, {N_QUBITS} qubits x {LAYERS} layers, B={BATCH}")
    axes[1].set_title(f"{DEVICE} calibration; mean (sd) over {len(SEEDS)} seeds")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def header(updates: int, warmup: int, seconds: float) -> str:
    load = os.getloadavg()[0]
    return (f"# Noise study (issue 12, item 6)\n\n"
            f"`python bench/noise_study.py`: {N_QUBITS} qubits x {LAYERS} layers (the hDQNN actor's PQC), "
            f"{DEVICE}'s calibration as `hdqnn train --noise {DEVICE}` resolves it, B = {BATCH} PQC inputs from a "
            f"PreDNN at init on random-action {ENV_ID} observations, {len(SEEDS)} seeds, {updates} updates "
            f"({warmup} warm-up), measured every {MEASURE_EVERY}; reference: the exact gradient of the noisy "
            f"expectation (density-matrix adjoint, readout included); noiseless rows against the noiseless "
            f"exact gradient; `noiseless-adjoint`: a perfect simulator's exact gradient taken for the device's "
            f"(simulator only). A forward of B samples is B executions; parameter-shift adds 2 x 5 inputs x B. "
            f"One thread; {seconds:.0f} s on a shared machine (load {load:.1f} when written). See the module docstring "
            f"for the set-up.\n\n")


def write_results(rows: list[dict], updates: int, warmup: int, seconds: float) -> None:
    (HERE / "noise_study.md").write_text(header(updates, warmup, seconds) + format_table(rows) + "\n")
    plot(rows, HERE / "noise_study.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three tiny settings (smoke run)")
    parser.add_argument("--replot", action="store_true",
                        help="rewrite the table and plot from bench/out/noise_study.jsonl without running")
    args = parser.parse_args()
    torch.set_num_threads(1)
    hdqnn.set_num_threads(1)
    # the noisy engine's Numba kernels keep Numba's own thread count (all cores) otherwise
    numba.set_num_threads(1)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    out_dir = HERE / "out"
    if args.replot:
        rows = [json.loads(line) for line in open(out_dir / "noise_study.jsonl")]
        write_results(rows, UPDATES, WARMUP, sum(r["seconds"] for r in rows))
        return
    updates = QUICK_UPDATES if args.quick else UPDATES
    warmup = QUICK_WARMUP if args.quick else WARMUP
    seeds = SEEDS[:1] if args.quick else SEEDS
    out_dir.mkdir(exist_ok=True)
    model = device_noise(DEVICE, N_QUBITS)
    rows, start = [], time.perf_counter()
    with open(out_dir / ("noise_study_quick.jsonl" if args.quick else "noise_study.jsonl"), "w") as log:
        for s in settings(args.quick):
            t0 = time.perf_counter()
            row = run_setting(s, model, updates, warmup, seeds)
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(f"{s.name:45s} cos {row['cosine']:.3f} ({row['cosine_sd']:.3f}) rel {row['rel_error']:.3f} "
                  f"exec/step {row['executions_per_step']} [{row['seconds']:.0f} s]", flush=True)
    seconds = time.perf_counter() - start
    print(format_table(rows))
    print(f"total {seconds:.0f} s")
    if not args.quick:
        write_results(rows, updates, warmup, seconds)


if __name__ == "__main__":
    main()
