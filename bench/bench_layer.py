"""One training step (forward + backward) of a PQC layer: hdqnn's three modes against peers.

The circuit is the hDQNN ansatz (RY encoding, then per layer RY RZ on every wire and a CNOT ring;
<Z> per wire) at n=10, layers=10, B=256 by default. A step is ``y = layer(x)`` with inputs that
require grad (as when an upstream network feeds the PQC), then ``(y * g).sum().backward()``.

hdqnn rows: ``adjoint``, ``parameter-shift``, ``qtdnn`` with the default surrogate and with the
paper's preset (``QtDNN.paper``); the qtDNN rows break out the surrogate fit. Peers, imported
lazily and reported as 'not installed' otherwise (run with /work/benchvenv/bin/python to get them):
PennyLane ``TorchLayer`` (backprop on default.qubit, adjoint on lightning.qubit, parameter-shift
on default.qubit) and TorchQuantum (torch backprop). Every peer's forward is first checked
against hdqnn's on the same inputs and weights, so all rows run the same circuit.

    python bench/bench_layer.py                       # full size (minutes: parameter-shift rows)
    /work/benchvenv/bin/python bench/bench_layer.py   # the same with the peers installed there
    python bench/bench_layer.py --quick               # smoke run
    python bench/bench_layer.py --threads 2 --skip pl-parameter-shift

Prints a table (ms per step, ratio to hdqnn adjoint, circuit executions per step) and appends
JSON lines to bench/out/bench_layer.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import hdqnn
from hdqnn.autograd import QtDNN, QuantumLayer

HERE = Path(__file__).resolve().parent
SEED = 0
#: Largest |hdqnn - peer| forward difference accepted as "the same circuit" (float32 peers).
SAME_CIRCUIT_TOL = 1e-4
#: Steps timed per case after one warm-up step; slow cases (over SLOW_STEP_S) are timed once.
REPS = 3
SLOW_STEP_S = 5.0
#: PennyLane's parameter-shift runs 2 x angles tapes per sample (107,520 at the full size).
SHIFT_SUB_BATCH = 8


@dataclass
class Case:
    """A layer to time: ``make()`` -> (module taking x [B, n], hdqnn layer or None, executions)."""

    name: str
    make: Callable[[], tuple[torch.nn.Module, QuantumLayer | None]]
    executions: int
    note: str = ""
    peer: bool = False
    sub_batch: int | None = None  # time on this many samples and scale to B (per-sample peers)
    remote_weights: np.ndarray | None = None  # set: make() gives a bench/peers.py Built (other venv)
    result: dict = field(default_factory=dict)


def ansatz(n: int, layers: int) -> hdqnn.Circuit:
    return hdqnn.ansatz.hardware_efficient(n, layers)


# ---------------------------------------------------------------------- hdqnn cases
def hdqnn_cases(n: int, layers: int, batch: int, weights: np.ndarray) -> list[Case]:
    circuit = ansatz(n, layers)
    angles = n + circuit.n_weights

    def layer(grad: str, qtdnn=None) -> Callable:
        return lambda: (lambda m: (m, m))(QuantumLayer(circuit, grad=grad, weights_init=weights, qtdnn=qtdnn,
                                                      seed=SEED))

    paper = QtDNN.paper(n, n_inputs=n + circuit.n_weights, n_outputs=n, seed=SEED)
    return [
        Case("hdqnn-adjoint", layer("adjoint"), batch, "adjoint sweep from the kept final states"),
        Case("hdqnn-parameter-shift", layer("parameter-shift"), batch + 2 * angles * batch, "one engine call"),
        Case("hdqnn-qtdnn", layer("qtdnn"), batch, "default surrogate"),
        Case("hdqnn-qtdnn-paper", layer("qtdnn", paper), batch, f"paper preset, hidden {2 ** (n + 1)}"),
    ]


# ---------------------------------------------------------------------- PennyLane
def pennylane_case(name: str, device: str, diff_method: str, n: int, layers: int, batch: int,
                   weights: np.ndarray, executions: int, sub_batch: int | None = None) -> Case:
    def make():
        import pennylane as qml

        dev = qml.device(device, wires=n)

        qnode = qml.qnode(dev, interface="torch", diff_method=diff_method)

        def circuit(inputs, weights):
            for q in range(n):
                qml.RY(inputs[..., q], wires=q)
            for layer in range(layers):
                for q in range(n):
                    qml.RY(weights[layer, q, 0], wires=q)
                    qml.RZ(weights[layer, q, 1], wires=q)
                for a, b in ring(n):
                    qml.CNOT(wires=[a, b])
            return [qml.expval(qml.PauliZ(q)) for q in range(n)]

        node = qnode(circuit)
        if diff_method == "parameter-shift":
            # PennyLane cannot shift broadcast (batched) trainable inputs: one tape per sample.
            node = qml.transforms.broadcast_expand(node)
        module = qml.qnn.TorchLayer(node, {"weights": (layers, n, 2)})
        with torch.no_grad():
            module.weights.copy_(torch.as_tensor(weights).reshape(layers, n, 2))
        return _StackOutputs(module), None

    note = f"PennyLane {device} {diff_method}"
    if sub_batch is not None and sub_batch < batch:
        note += f" (timed on {sub_batch} samples, scaled to {batch})"
    return Case(name, make, executions, note, peer=True, sub_batch=sub_batch)


class _StackOutputs(torch.nn.Module):
    """TorchLayer returns [B, n] (or a tuple in some versions): always give a [B, n] tensor."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        return torch.stack(list(y), dim=-1) if isinstance(y, (tuple, list)) else y


def ring(n: int) -> list[tuple[int, int]]:
    """hdqnn's ring entangler: (i, i+1) for i < n-1, then (n-1, 0) when n > 2."""
    pairs = [(i, i + 1) for i in range(n - 1)]
    return pairs + [(n - 1, 0)] if n > 2 else pairs


# ---------------------------------------------------------------------- TorchQuantum
def torchquantum_case(n: int, layers: int, batch: int, weights: np.ndarray) -> Case:
    """TorchQuantum needs qiskit<1, so it runs in its own venv through bench/peers.py's worker,
    which times forward + torch-autograd VJP w.r.t. inputs and weights: the same training step."""

    def make():
        import peers

        problem, _ = peers.probe_torchquantum()
        if problem:
            raise ImportError(problem)
        return peers.build_torchquantum(n, layers, "complex64"), None

    return Case("torchquantum-backprop", make, batch, "TorchQuantum backprop (own venv, worker)", peer=True,
                remote_weights=weights)


# ---------------------------------------------------------------------- timing
def time_case(case: Case, x: torch.Tensor, g: torch.Tensor, reference: torch.Tensor, reps: int) -> dict:
    try:
        module, layer = case.make()
    except ImportError as exc:
        return {"status": f"not installed ({exc.name or exc})"}
    if case.remote_weights is not None:
        return time_remote(module, case.remote_weights, x, g, reference, reps)
    with torch.no_grad():
        y0 = module(x.detach().to(torch.float32))
    diff = float((y0.double() - reference).abs().max())
    if diff > SAME_CIRCUIT_TOL:
        return {"status": f"different circuit (max |dy| = {diff:.2e})"}
    times, fwd, grad, fit = [], [], [], []
    for rep in range(reps + 1):
        xi = x.detach().clone().requires_grad_(True)
        start = time.perf_counter()
        y = module(xi)
        (y * g.to(y.dtype)).sum().backward()
        elapsed = time.perf_counter() - start
        if layer is not None and rep > 0:
            s = layer.stats
            fwd.append(s["last_forward_seconds"])
            grad.append(s["last_grad_seconds"])
            fit.append(s["last_fit_seconds"] or 0.0)
        if rep > 0:
            times.append(elapsed)
        if rep == 0 and elapsed > SLOW_STEP_S:
            reps = 1  # time slow cases once after the warm-up
        if rep >= reps:
            break
    out = {"status": "ok", "ms_per_step": 1e3 * statistics.median(times), "steps_timed": len(times),
           "max_forward_diff": diff}
    if layer is not None:
        out.update(forward_ms=1e3 * statistics.median(fwd), grad_ms=1e3 * statistics.median(grad),
                   fit_ms=1e3 * statistics.median(fit))
    return out


def time_remote(built, weights: np.ndarray, x: torch.Tensor, g: torch.Tensor, reference: torch.Tensor,
                reps: int) -> dict:
    """A peer timed by bench/peers.py (warm-up, then up to ``reps`` calls of forward + VJP)."""
    (out, _, _), warmup_s, times = built.measure("fwd+vjp", x.numpy(), weights.astype(np.float32), g.numpy(), reps,
                                                  SLOW_STEP_S * reps, SLOW_STEP_S)
    diff = float(np.abs(np.asarray(out, dtype=np.float64) - reference.numpy()).max())
    if diff > SAME_CIRCUIT_TOL:
        return {"status": f"different circuit (max |dy| = {diff:.2e})"}
    seconds = statistics.median(times) if times else warmup_s
    return {"status": "ok", "ms_per_step": 1e3 * seconds, "steps_timed": len(times), "max_forward_diff": diff}


def run_case(case: Case, x: torch.Tensor, g: torch.Tensor, reference: torch.Tensor, reps: int) -> dict:
    """Time a case; a peer that fails is reported as a row (its library's limits are results too)."""
    if not case.peer:
        return time_case(case, x, g, reference, reps)
    if case.sub_batch is not None and case.sub_batch < x.shape[0]:
        sub = case.sub_batch
        result = run_case(replace(case, sub_batch=None), x[:sub], g[:sub], reference[:sub], reps)
        if result["status"] == "ok":
            result["ms_per_step"] *= x.shape[0] / sub  # independent per-sample tapes: linear in B
        return result
    try:
        return time_case(case, x, g, reference, reps)
    except Exception as exc:  # noqa: BLE001 - any peer failure becomes a reported status
        return {"status": f"failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", type=int, default=10)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="threads for hdqnn, torch and OpenMP peers")
    parser.add_argument("--reps", type=int, default=REPS)
    parser.add_argument("--quick", action="store_true", help="4 qubits, 2 layers, batch 16, one rep")
    parser.add_argument("--skip", nargs="*", default=[], help="case names to skip")
    parser.add_argument("--shift-sub-batch", type=int, default=SHIFT_SUB_BATCH,
                        help="samples PennyLane parameter-shift is timed on (it runs one tape per shifted "
                             "circuit per sample, so its time is scaled linearly to the batch)")
    args = parser.parse_args()
    if args.quick:
        args.qubits, args.layers, args.batch, args.reps = 4, 2, 16, 1
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # lightning reads it when first loaded
    torch.set_num_threads(args.threads)
    hdqnn.set_num_threads(args.threads)
    n, layers, batch = args.qubits, args.layers, args.batch

    rng = np.random.default_rng(SEED)
    circuit = ansatz(n, layers)
    weights = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    x = torch.tensor(rng.uniform(-np.pi / 2, np.pi / 2, (batch, n)), dtype=torch.float32)
    g = torch.tensor(rng.standard_normal((batch, n)), dtype=torch.float32)
    reference = hdqnn.expval(circuit, x.double(), torch.as_tensor(weights))
    angles = n + circuit.n_weights

    cases = hdqnn_cases(n, layers, batch, weights)
    cases += [
        pennylane_case("pl-backprop", "default.qubit", "backprop", n, layers, batch, weights, batch),
        pennylane_case("pl-adjoint", "lightning.qubit", "adjoint", n, layers, batch, weights, 2 * batch),
        pennylane_case("pl-parameter-shift", "default.qubit", "parameter-shift", n, layers, batch, weights,
                       batch + 2 * angles * batch, sub_batch=args.shift_sub_batch),
        torchquantum_case(n, layers, batch, weights),
    ]
    print(f"n={n} layers={layers} B={batch} threads={args.threads} hdqnn backend={hdqnn.get_backend().name} "
          f"({platform.processor() or platform.machine()})")
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    for case in cases:
        if case.name in args.skip:
            case.result = {"status": "skipped"}
            continue
        case.result = run_case(case, x, g, reference, args.reps)
        print(f"  {case.name:24s} {case.result['status']}"
              + (f"  {case.result['ms_per_step']:.1f} ms" if case.result["status"] == "ok" else ""), flush=True)

    base = next((c.result["ms_per_step"] for c in cases if c.name == "hdqnn-adjoint" and c.result["status"] == "ok"),
                None)
    print(f"\n{'case':24s} {'ms/step':>10s} {'x adjoint':>10s} {'executions':>11s} {'fwd ms':>8s} "
          f"{'grad ms':>8s} {'fit ms':>8s}  note")
    with open(out_dir / "bench_layer.jsonl", "a") as log:
        for case in cases:
            r = case.result
            record = {"case": case.name, "n_qubits": n, "layers": layers, "batch": batch, "threads": args.threads,
                      "executions_per_step": case.executions, "note": case.note, **r}
            log.write(json.dumps(record) + "\n")
            if r["status"] != "ok":
                print(f"{case.name:24s} {r['status']}")
                continue
            ratio = f"{r['ms_per_step'] / base:10.2f}" if base else f"{'-':>10s}"
            parts = [f"{r[k]:8.1f}" if k in r else f"{'-':>8s}" for k in ("forward_ms", "grad_ms", "fit_ms")]
            print(f"{case.name:24s} {r['ms_per_step']:10.1f} {ratio} {case.executions:11d} {' '.join(parts)}  "
                  f"{case.note}")
    if any(c.remote_weights is not None for c in cases):
        import peers

        peers.close_workers()


if __name__ == "__main__":
    main()
