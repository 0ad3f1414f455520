"""The cost of each bridge into hdqnn, side by side in one process (issue #13).

One model, run four ways as a training step (forward + backward, inputs requiring grad, float64):
AngleEmbedding of 10 inputs, 10 layers of RY/RZ on each wire and a CNOT ring, Z read out on every
wire (10 qubits, K = 10, 200 weights).

- PennyLane ``qml.qnn.TorchLayer`` on ``hdqnn.qubit`` (adjoint VJP), ``lightning.qubit`` (adjoint)
  and ``default.qubit`` (backprop);
- the same model as a native ``hdqnn.QuantumLayer`` (grad="adjoint"), built by ``hdqnn.from_pennylane``;
- qiskit-machine-learning ``EstimatorQNN`` + ``TorchConnector`` with hdqnn's ``Estimator`` +
  ``EstimatorGradient``, with Qiskit's defaults (``StatevectorEstimator`` + ``ParamShiftEstimatorGradient``)
  and with Aer's ``EstimatorV2`` (+ ``ParamShiftEstimatorGradient``), all exact (``default_precision=0``).
  The parameter-shift peers send 2 x 210 circuits per sample, so they run at a small batch
  (``--peer-batch``) and are compared per sample; ``--quick`` leaves them out (30-60 s per sample on
  one thread).

Prints a table (ms per step, ms per sample, ratio to ``hdqnn.qubit`` per sample at the same batch) and
the PennyLane bridge's overhead (``hdqnn.qubit`` over the native layer) at each batch, and appends JSON
lines to ``bench/out/interop.jsonl``. ``--quick`` (one timed step each, smaller batches) runs in under a
minute. ``--batch 16,64,256`` times the fast cases at several batches; ``--only`` keeps the cases whose
names contain one of its comma-separated strings.

    OMP_NUM_THREADS=1 python bench/bench_interop.py [--quick]
    OMP_NUM_THREADS=1 python bench/bench_interop.py --batch 16,64,256 --only "pl hdqnn.qubit,native"
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from timing import median, warm_and_time

N_QUBITS = 10
N_LAYERS = 10
#: Parameter-shift peers: 30-60 s per sample on one thread, left out of --quick.
SLOW_PEERS = ("qiskit-ml StatevectorEstimator+ParamShift", "qiskit-ml Aer EstimatorV2+ParamShift")
OUT = Path(__file__).resolve().parent / "out" / "interop.jsonl"


# ----------------------------------------------------------------------------- PennyLane
def pennylane_layer(device_name: str, diff_method: str, weights: torch.Tensor):
    import pennylane as qml

    if device_name == "hdqnn.qubit":  # the class itself: works whether or not the entry point is installed
        from hdqnn.interop.pennylane import HdqnnQubit

        dev = HdqnnQubit(wires=N_QUBITS)
    else:
        dev = qml.device(device_name, wires=N_QUBITS)

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(N_QUBITS))
        for layer in range(N_LAYERS):
            for i in range(N_QUBITS):
                qml.RY(weights[layer, i, 0], wires=i)
                qml.RZ(weights[layer, i, 1], wires=i)
            for i in range(N_QUBITS):
                qml.CNOT(wires=[i, (i + 1) % N_QUBITS])
        return [qml.expval(qml.Z(i)) for i in range(N_QUBITS)]

    layer = qml.qnn.TorchLayer(circuit, {"weights": (N_LAYERS, N_QUBITS, 2)}).double()
    with torch.no_grad():
        layer.weights.copy_(weights)
    return layer, circuit


def native_layer(qnode, x: torch.Tensor, weights: torch.Tensor):
    """The same model as an hdqnn.QuantumLayer, converted from the QNode by hdqnn.from_pennylane."""
    import hdqnn

    circuit, slots = hdqnn.from_pennylane(qnode, x.detach(), weights)
    assert slots.n_inputs == N_QUBITS  # AngleEmbedding's columns, in order: x feeds the layer as is
    return hdqnn.QuantumLayer(circuit, grad="adjoint", weights_init=torch.as_tensor(slots.weights()))


# ----------------------------------------------------------------------------- Qiskit
def qiskit_qnn(weights: torch.Tensor, flavour: str):
    from qiskit.circuit import ParameterVector, QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    x, w = ParameterVector("x", N_QUBITS), ParameterVector("w", N_LAYERS * N_QUBITS * 2)
    qc = QuantumCircuit(N_QUBITS)
    for i in range(N_QUBITS):
        qc.rx(x[i], i)
    for layer in range(N_LAYERS):
        for i in range(N_QUBITS):
            qc.ry(w[(layer * N_QUBITS + i) * 2], i)
            qc.rz(w[(layer * N_QUBITS + i) * 2 + 1], i)
        for i in range(N_QUBITS):
            qc.cx(i, (i + 1) % N_QUBITS)
    observables = [SparsePauliOp.from_sparse_list([("Z", [i], 1.0)], N_QUBITS) for i in range(N_QUBITS)]
    if flavour == "hdqnn":
        from hdqnn.interop.qiskit import Estimator
        from hdqnn.interop.qiskit_ml import EstimatorGradient

        estimator, gradient = Estimator(), EstimatorGradient()
    else:
        from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient

        if flavour == "aer":
            from qiskit_aer.primitives import EstimatorV2

            estimator = EstimatorV2()
        else:
            from qiskit.primitives import StatevectorEstimator

            estimator = StatevectorEstimator()
        gradient = ParamShiftEstimatorGradient(estimator)
    qnn = EstimatorQNN(circuit=qc, observables=observables, input_params=list(x), weight_params=list(w),
                       estimator=estimator, gradient=gradient, input_gradients=True,
                       default_precision=0.0)  # exact: qiskit-ml's default 1/64 adds noise to Statevector
    return TorchConnector(qnn, initial_weights=weights.reshape(-1).numpy())


# ----------------------------------------------------------------------------- timing
def step(layer, x: torch.Tensor):
    def run():
        xg = x.clone().requires_grad_(True)
        out = layer(xg)
        out.double().sum().backward()
        return out.detach().double(), xg.grad.detach().double()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one timed step each, smaller batches (< 60 s)")
    parser.add_argument("--batch", default=None,
                        help="B for the fast cases, or a comma-separated list (default 256; quick 64)")
    parser.add_argument("--peer-batch", type=int, default=1, help="B for the parameter-shift Qiskit peers")
    parser.add_argument("--skip", default="", help="comma-separated case names to leave out")
    parser.add_argument("--only", default="", help="comma-separated strings: keep the cases whose names contain one")
    parser.add_argument("--repeat", type=int, default=5, help="timed steps per case (quick: 1)")
    args = parser.parse_args()
    batches = [int(b) for b in (args.batch or ("64" if args.quick else "256")).split(",")]
    peer_batch = args.peer_batch
    repeat, budget = (1, 0.0) if args.quick else (args.repeat, 10.0)
    skip = set(filter(None, args.skip.split(",")))
    only = [s for s in args.only.split(",") if s]
    if args.quick:
        skip.update(SLOW_PEERS)

    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform(-np.pi, np.pi, (max(batches), N_QUBITS)))
    weights = torch.as_tensor(rng.uniform(-np.pi, np.pi, (N_LAYERS, N_QUBITS, 2)))

    hd_layer, hd_qnode = pennylane_layer("hdqnn.qubit", "adjoint", weights)
    cases = {  # name -> (builder, batches)
        "pl hdqnn.qubit (adjoint)": (lambda: hd_layer, batches),
        "native hdqnn.QuantumLayer (adjoint)": (lambda: native_layer(hd_qnode, x, weights), batches),
        "pl lightning.qubit (adjoint)": (lambda: pennylane_layer("lightning.qubit", "adjoint", weights)[0], batches),
        "pl default.qubit (backprop)": (lambda: pennylane_layer("default.qubit", "backprop", weights)[0], batches),
        "qiskit-ml hdqnn Estimator+Gradient": (lambda: qiskit_qnn(weights, "hdqnn"), batches),
        SLOW_PEERS[0]: (lambda: qiskit_qnn(weights, "default"), [peer_batch]),
        SLOW_PEERS[1]: (lambda: qiskit_qnn(weights, "aer"), [peer_batch]),
    }
    reference = None
    rows = []
    for name, (build, case_batches) in cases.items():
        if name in skip or (only and not any(s in name for s in only)):
            continue
        layer = build()
        for b in sorted(case_batches, reverse=True):  # the first case's largest batch is the reference
            (out, gx), warm_s, times = warm_and_time(step(layer, x[:b]), repeat=repeat, budget_s=budget,
                                                     slow_call_s=20.0)
            if reference is None:
                reference = (out, gx)
            n = min(b, len(reference[0]))  # every bridge computes the same model: check it before timing means anything
            err = max((out[:n] - reference[0][:n]).abs().max().item(), (gx[:n] - reference[1][:n]).abs().max().item())
            if err > 1e-5:
                raise AssertionError(f"{name} disagrees with the first case by {err:.2e}")
            seconds = median(times) if times else warm_s
            rows.append({"case": name, "batch": b, "ms": seconds * 1e3, "ms_per_sample": seconds * 1e3 / b,
                         "timed_calls": len(times)})
    _report(rows, batches, args.quick)


def _report(rows: list[dict], batches: list[int], quick: bool) -> None:
    """Print the table and the PennyLane bridge's overhead; append the rows to bench/out/interop.jsonl."""
    per_sample = {r["batch"]: r["ms_per_sample"] for r in rows if r["case"] == "pl hdqnn.qubit (adjoint)"}
    native = {r["batch"]: r["ms"] for r in rows if r["case"] == "native hdqnn.QuantumLayer (adjoint)"}
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"interop training step (fwd+bwd, float64), {N_QUBITS} qubits, {N_LAYERS} layers, "
          f"OMP_NUM_THREADS={threads}, quick={quick}")
    print(f"{'case':44s} {'B':>4s} {'ms/step':>10s} {'ms/sample':>10s} {'x hdqnn.qubit':>14s}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with OUT.open("a") as f:
        for row in rows:  # a peer run at another batch is compared with hdqnn.qubit at the largest one
            base = per_sample.get(row["batch"], per_sample.get(max(batches)))
            row["ratio_vs_hdqnn_qubit"] = row["ms_per_sample"] / base if base else None
            ratio = f"{row['ratio_vs_hdqnn_qubit']:14.1f}" if base else f"{'-':>14s}"
            print(f"{row['case']:44s} {row['batch']:4d} {row['ms']:10.1f} {row['ms_per_sample']:10.3f} {ratio}")
            f.write(json.dumps({"bench": "interop", "time": stamp, "quick": quick, "omp_threads": threads,
                                "machine": platform.node(), **row}) + "\n")
    for b in batches:
        if b in per_sample and b in native:
            print(f"bridge overhead at B = {b}: hdqnn.qubit / native QuantumLayer = "
                  f"{per_sample[b] * b / native[b]:.2f}x")


if __name__ == "__main__":
    main()
