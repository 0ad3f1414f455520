"""Hybrid supervised learning: PreNet -> QuantumLayer -> PostNet with the three gradient modes.

Trains the same hybrid model on a made-up smooth regression task with ``grad="adjoint"``
(exact), ``"parameter-shift"`` (hardware-compatible) and ``"qtdnn"`` (the paper's surrogate),
then prints the loss curves side by side, the circuit executions each mode spent, and the
qtDNN's gradient fidelity against the exact adjoint (cosine similarity, relative error).

    python examples/hybrid_regression.py            # seconds with the compiled engine, one core
    python examples/hybrid_regression.py --steps 50 --qubits 3
"""
from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

import hdqnn

MODES = ("adjoint", "parameter-shift", "qtdnn")
N_FEATURES = 3
N_TRAIN = 512
#: Print the loss every this many steps.
LOG_EVERY = 25


def make_data(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x uniform in [-1, 1]^3, y = sin(2 x0) cos(x1) + 0.5 x2^2 (smooth, not linear)."""
    x = torch.rand(N_TRAIN, N_FEATURES, generator=gen) * 2 - 1
    y = torch.sin(2 * x[:, :1]) * torch.cos(x[:, 1:2]) + 0.5 * x[:, 2:3] ** 2
    return x, y


class HybridModel(nn.Module):
    """PreNet (features -> angles in [-pi/2, pi/2]) -> PQC -> PostNet (expectations -> target)."""

    def __init__(self, n_qubits: int, n_layers: int, grad: str, seed: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.Linear(N_FEATURES, 16), nn.Tanh(), nn.Linear(16, n_qubits), nn.Tanh())
        circuit = hdqnn.ansatz.hardware_efficient(n_qubits, n_layers, reupload=True)
        self.quantum = hdqnn.QuantumLayer(circuit, grad=grad, seed=seed)
        self.post = nn.Linear(n_qubits, 1)

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre(x) * (math.pi / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.quantum(self.angles(x)))


def train(mode: str, args: argparse.Namespace, data: tuple[torch.Tensor, torch.Tensor]) -> dict:
    torch.manual_seed(args.seed)
    model = HybridModel(args.qubits, args.layers, mode, args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    x_all, y_all = data
    gen = torch.Generator().manual_seed(args.seed)
    curve, cosines = [], []
    start = time.perf_counter()
    for step in range(args.steps + 1):
        if step % LOG_EVERY == 0:
            with torch.no_grad():
                curve.append(float(nn.functional.mse_loss(model(x_all), y_all)))
        if step == args.steps:
            break
        idx = torch.randint(0, N_TRAIN, (args.batch,), generator=gen)
        loss = nn.functional.mse_loss(model(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mode == "qtdnn" and step % LOG_EVERY == 0:
            with torch.no_grad():
                fid = model.quantum.gradient_fidelity(model.angles(x_all[idx]))
                cosines.append((fid["cosine_inputs"], fid["cosine_weights"]))
    stats = model.quantum.stats
    return {"curve": curve, "seconds": time.perf_counter() - start, "cosines": cosines,
            "executions": stats["circuit_executions_total"], "fit_seconds": stats["fit_seconds_total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and engine threads (tiny tensors: more threads only add barriers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hdqnn.set_num_threads(args.threads)

    data = make_data(torch.Generator().manual_seed(args.seed))
    print(f"backend: {hdqnn.get_backend().name}; {args.qubits} qubits, {args.layers} layers, "
          f"batch {args.batch}, {args.steps} steps")
    results = {mode: train(mode, args, data) for mode in args.modes}

    header = "step " + "".join(f"{m:>17}" for m in results)
    print("\nfull-data MSE\n" + header)
    for i in range(len(next(iter(results.values()))["curve"])):
        print(f"{i * LOG_EVERY:4d} " + "".join(f"{r['curve'][i]:17.4f}" for r in results.values()))
    print("\nmode               seconds   circuit executions   surrogate fit s")
    for mode, r in results.items():
        print(f"{mode:16s} {r['seconds']:9.1f} {r['executions']:20d} {r['fit_seconds']:17.2f}")
    if "qtdnn" in results:
        print("\nqtDNN gradient fidelity against the exact adjoint (cosine), every "
              f"{LOG_EVERY} steps:\n step   inputs  weights")
        for i, (ci, cw) in enumerate(results["qtdnn"]["cosines"]):
            print(f"{i * LOG_EVERY:5d} {ci:8.3f} {cw:8.3f}")


if __name__ == "__main__":
    main()
