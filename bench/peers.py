"""Adapters that run hdqnn's hardware-efficient ansatz on each peer simulator, one per peer.

Every adapter has the same shape, ``build(n, layers, dtype) -> Built``:
  forward(x, w)         -> out [B, n] float: <Z_q> for every wire q
  forward_grad(x, w, g) -> (out, gx [B, n] or None, gw [P] or None): out as above and the
                           gradients of sum(g * out) w.r.t. the inputs and the weights
  x: [B, n] float64 for complex128 runs, float32 for complex64 runs; w: [P] same dtype; g: [B, n].
The circuit is read from ``hdqnn.circuits.ansatz.hardware_efficient`` (a single source of truth):
encoding RY(x[b, q]) on every wire, then per layer RY(w[2(l n + q)]), RZ(w[2(l n + q) + 1]) on every
wire and a CNOT ring. Peers are imported inside their builder, so a missing peer costs nothing
and is reported by the harness as "not installed". Wires are mapped by label (hdqnn wire q is
qubit q of the peer) and the readout is a per-wire Pauli-Z, so no amplitude-order conversion is
needed (Qiskit and qsim order amplitudes the other way round). The harness checks every adapter's
outputs and gradients against hdqnn's on the same x, w, so no peer is timed computing a different
function (an angle-sign convention that leaves every output unchanged, like Qulacs' rotations,
gives the same function).

Thread settings: the harness sets OMP_NUM_THREADS=1 and friends before any import; the adapters
also pass each peer's own one-thread option (noted per adapter).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np

from hdqnn.circuits import Input, Weight, ansatz
from timing import warm_and_time

SUPPORTED_GATES = ("ry", "rz", "cx")
C128, C64 = "complex128", "complex64"
BOTH_DTYPES = frozenset({C128, C64})
REAL_DTYPE = {C128: np.float64, C64: np.float32}
QSIM_MAX_FUSED_GATE_SIZE = 4  # qubits per fused gate; 2, 3 and 4 are within 5% here at 12-20 qubits
TQ_VENV_PYTHON = os.environ.get("HDQNN_TQ_PYTHON", "/work/tqvenv/bin/python")
TQ_WORKER = Path(__file__).resolve().parent / "tq_worker.py"
REPO_ROOT = Path(__file__).resolve().parent.parent

ForwardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
GradFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple]


class Gate(NamedTuple):
    """One ansatz gate: ``name`` in SUPPORTED_GATES, its wires, the angle's source and index."""

    name: str
    wires: tuple[int, ...]
    source: Optional[str]  # "x" (per-sample input), "w" (shared weight) or None (no angle)
    index: int


def ansatz_gates(n: int, layers: int) -> list[Gate]:
    """hdqnn's hardware_efficient(n, layers) as a flat gate list every adapter translates."""
    gates = []
    for op in ansatz.hardware_efficient(n, layers).operations:
        if op.name not in SUPPORTED_GATES:
            raise ValueError(f"the peer adapters translate {SUPPORTED_GATES} only, got {op.name!r}")
        if not op.angles:
            gates.append(Gate(op.name, op.wires, None, -1))
            continue
        angle = op.angles[0]
        if not isinstance(angle, (Input, Weight)) or angle.scale != 1.0:
            raise ValueError(f"expected an unscaled Input or Weight angle, got {angle!r}")
        gates.append(Gate(op.name, op.wires, "x" if isinstance(angle, Input) else "w", angle.index))
    return gates


def n_weights(n: int, layers: int) -> int:
    """P of hardware_efficient(n, layers) with its default (RY, RZ) rotations."""
    return ansatz.hardware_efficient(n, layers).n_weights


@dataclass
class Built:
    """A peer's circuit ready to run; ``forward_grad`` is None where the peer has no gradient."""

    forward: ForwardFn
    forward_grad: Optional[GradFn]

    def measure(self, mode: str, x: np.ndarray, w: np.ndarray, g: np.ndarray, repeat: int,
                budget_s: float, slow_call_s: float) -> tuple[tuple, float, list[float]]:
        """Warm up, then time ``mode`` ("fwd" or "fwd+vjp") in this process (timing.warm_and_time).

        Returns ((out, gx, gw), warm-up seconds, seconds per timed call); gx, gw are None for "fwd".
        """
        if mode == "fwd":
            out, warmup_s, times = warm_and_time(lambda: self.forward(x, w), repeat, budget_s, slow_call_s)
            return (np.asarray(out), None, None), warmup_s, times
        result, warmup_s, times = warm_and_time(lambda: self.forward_grad(x, w, g), repeat, budget_s, slow_call_s)
        return tuple(None if r is None else np.asarray(r) for r in result), warmup_s, times


@dataclass(frozen=True)
class PeerSpec:
    """How to find, describe and build one peer."""

    name: str
    modules: tuple[str, ...]          # import names that must be present
    distributions: tuple[str, ...]    # pip names whose versions the harness records
    dtypes: frozenset                 # precisions the peer can run
    grad: Optional[str]               # what its fwd+vjp computes, None if it has no gradient
    build: Callable[[int, int, str], Built]
    tape_memory: bool = False         # backprop keeps every intermediate state: B x gates x 2^n
    note: str = ""
    python: Optional[str] = field(default=None)  # another interpreter (separate venv), if any


# ---------------------------------------------------------------- hdqnn and the NumPy oracle


def build_hdqnn(n: int, layers: int, dtype: str) -> Built:
    """hdqnn's public API; fwd+vjp = expval keeping its final states, then the vjp from them (two
    calls, as a QuantumLayer training step in adjoint mode makes them)."""
    import hdqnn

    circuit = ansatz.hardware_efficient(n, layers)

    def forward(x, w):
        return hdqnn.expval(circuit, x, w)

    def forward_grad(x, w, g):
        out, states = hdqnn.expval(circuit, x, w, return_state=True)
        gx, gw = hdqnn.vjp(circuit, x, w, g, final_state=states)
        return out, gx, gw

    return Built(forward, forward_grad)


def hdqnn_engine_missing() -> Optional[str]:
    """None when hdqnn's public expval/vjp/set_num_threads exist, else why not."""
    import hdqnn

    missing = [f for f in ("expval", "vjp", "set_num_threads") if not hasattr(hdqnn, f)]
    return f"hdqnn has no {', '.join(missing)} yet" if missing else None


def build_numpy_oracle(n: int, layers: int, dtype: str) -> Built:
    """hdqnn.backends.numpy_ref: the semantics oracle (slow; gradients by derivative gates)."""
    from hdqnn.backends.numpy_ref import NumpyBackend
    from hdqnn.circuits import compile_observables

    program = ansatz.hardware_efficient(n, layers).compile()
    paulis = compile_observables(None, n)
    backend, cdtype = NumpyBackend(), np.dtype(dtype)

    def forward(x, w):
        return backend.expval(program, x, w, paulis, cdtype)

    def forward_grad(x, w, g):
        gx, gw = backend.vjp(program, x, w, paulis, g, cdtype)
        return forward(x, w), gx, gw

    return Built(forward, forward_grad)


# ---------------------------------------------------------------- PennyLane


def _pennylane_qnode(n: int, layers: int, device, diff_method: str, **qnode_options):
    """A torch-interface QNode over the whole batch: x[:, q] is a broadcast parameter."""
    import pennylane as qml

    rotations = {"ry": qml.RY, "rz": qml.RZ}
    gates = ansatz_gates(n, layers)

    @qml.qnode(device, interface="torch", diff_method=diff_method, **qnode_options)
    def circuit(x, w):
        for gate in gates:
            if gate.name == "cx":
                qml.CNOT(wires=list(gate.wires))
            else:
                angle = x[:, gate.index] if gate.source == "x" else w[gate.index]
                rotations[gate.name](angle, wires=gate.wires[0])
        return [qml.expval(qml.PauliZ(q)) for q in range(n)]

    return circuit


@contextmanager
def _torch_default_dtype(real: np.dtype):
    """PennyLane 0.45 rebuilds broadcast torch parameters in torch's default dtype on the
    lightning path (float32: a 2e-8 error in complex128 runs, caught by the verification), so
    each call runs with the default matching its precision."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if real == np.float64 else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _torch_qnode_built(circuit) -> Built:
    """forward under no_grad; forward_grad = forward + backward of sum(g * out) w.r.t. x and w."""
    import torch

    torch.set_num_threads(1)

    def forward(x, w):
        with torch.no_grad(), _torch_default_dtype(x.dtype):
            out = circuit(torch.from_numpy(x), torch.from_numpy(w))
        return torch.stack(list(out), dim=-1).numpy()

    def forward_grad(x, w, g):
        xt = torch.from_numpy(x).requires_grad_(True)
        wt = torch.from_numpy(w).requires_grad_(True)
        with _torch_default_dtype(x.dtype):
            out = torch.stack(list(circuit(xt, wt)), dim=-1)
            (out * torch.from_numpy(g)).sum().backward()
        return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()

    return Built(forward, forward_grad)


def build_pennylane_default(n: int, layers: int, dtype: str) -> Built:
    """default.qubit, parameter broadcasting over the batch, torch backprop. complex128 only:
    default.qubit builds a complex128 state whatever the angles' dtype."""
    import pennylane as qml

    return _torch_qnode_built(_pennylane_qnode(n, layers, qml.device("default.qubit", wires=n), "backprop"))


def build_pennylane_lightning(n: int, layers: int, dtype: str) -> Built:
    """lightning.qubit, adjoint VJP computed by the device (device_vjp); PennyLane splits the
    broadcast batch into one tape per sample. OpenMP threads: OMP_NUM_THREADS=1."""
    import pennylane as qml

    device = qml.device("lightning.qubit", wires=n, c_dtype=np.dtype(dtype).type)
    return _torch_qnode_built(_pennylane_qnode(n, layers, device, "adjoint", device_vjp=True))


# ---------------------------------------------------------------- Qulacs

# Qulacs' parametric RY/RZ(t) are exp(+i t P / 2), the opposite sign (read from get_matrix()). The
# check against hdqnn cannot see this: flipping every angle leaves <Z_q> of this ansatz unchanged.
QULACS_ANGLE_SIGN = -1.0


def qulacs_z_observables(n: int) -> list:
    """Qulacs Observables <Z_q> for q = 0..n-1 (wire q is hdqnn's wire q, as in the adapters here)."""
    from qulacs import Observable

    observables = []
    for q in range(n):
        obs = Observable(n)
        obs.add_operator(1.0, f"Z {q}")
        observables.append(obs)
    return observables


def build_qulacs(n: int, layers: int, dtype: str) -> Built:
    """ParametricQuantumCircuit per sample (Python loop over the batch); gradients by
    ParametricQuantumCircuit.backprop with the observable sum_q g[b, q] Z_q, after the forward
    that produces the outputs. Threads: QULACS_NUM_THREADS=1."""
    from qulacs import Observable, ParametricQuantumCircuit, QuantumState

    circuit = ParametricQuantumCircuit(n)
    slots = []  # (source, index) of each parametric gate, in qulacs' parameter order
    for gate in ansatz_gates(n, layers):
        if gate.name == "cx":
            circuit.add_CNOT_gate(*gate.wires)
            continue
        add = circuit.add_parametric_RY_gate if gate.name == "ry" else circuit.add_parametric_RZ_gate
        add(gate.wires[0], 0.0)
        slots.append((gate.source, gate.index))
    z_observables = qulacs_z_observables(n)
    state = QuantumState(n)

    def load(xb, w):
        for k, (source, index) in enumerate(slots):
            value = xb[index] if source == "x" else w[index]
            circuit.set_parameter(k, QULACS_ANGLE_SIGN * float(value))

    def run_sample(xb, w):
        load(xb, w)
        state.set_zero_state()
        circuit.update_quantum_state(state)
        return [obs.get_expectation_value(state) for obs in z_observables]

    def forward(x, w):
        return np.array([run_sample(xb, w) for xb in x])

    def forward_grad(x, w, g):
        out = np.empty(x.shape)
        gx, gw = np.zeros(x.shape), np.zeros(w.shape)
        for b in range(x.shape[0]):
            out[b] = run_sample(x[b], w)
            weighted = Observable(n)
            for q in range(n):
                weighted.add_operator(float(g[b, q]), f"Z {q}")
            for (source, index), d in zip(slots, circuit.backprop(weighted)):
                if source == "x":
                    gx[b, index] += QULACS_ANGLE_SIGN * d
                else:
                    gw[index] += QULACS_ANGLE_SIGN * d
        return out, gx, gw

    return Built(forward, forward_grad)


# ---------------------------------------------------------------- Qiskit Aer


def build_qiskit_aer(n: int, layers: int, dtype: str) -> Built:
    """qiskit_aer.primitives.EstimatorV2 (exact expectations, default_precision=0): one PUB with
    the [B, n + P] parameter bindings and an (n, 1) observables array broadcast to (n, B).
    Threads: AerSimulator max_parallel_threads/experiments/shots = 1. No gradient API."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_aer.primitives import EstimatorV2

    xs, ws = ParameterVector("x", n), ParameterVector("w", n_weights(n, layers))
    qc = QuantumCircuit(n)
    for gate in ansatz_gates(n, layers):
        if gate.name == "cx":
            qc.cx(*gate.wires)
        else:
            param = xs[gate.index] if gate.source == "x" else ws[gate.index]
            getattr(qc, gate.name)(param, gate.wires[0])
    # from_sparse_list names qubits by index, so hdqnn wire q -> Qiskit qubit q with no string reversal
    observables = [[SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], num_qubits=n)] for q in range(n)]
    column = {p: i for i, p in enumerate(list(xs) + list(ws))}
    order = [column[p] for p in qc.parameters]
    estimator = EstimatorV2(options={
        "default_precision": 0.0,
        "backend_options": {
            "method": "statevector",
            "precision": "single" if dtype == C64 else "double",
            "max_parallel_threads": 1,
            "max_parallel_experiments": 1,
            "max_parallel_shots": 1,
        },
    })

    def forward(x, w):
        values = np.hstack([x, np.broadcast_to(w, (x.shape[0], w.shape[0]))])[:, order]
        evs = estimator.run([(qc, observables, values)]).result()[0].data.evs  # (n, B)
        return np.ascontiguousarray(evs.T)

    return Built(forward, None)


# ---------------------------------------------------------------- TensorCircuit-NG (JAX)


def build_tensorcircuit(n: int, layers: int, dtype: str) -> Built:
    """TensorCircuit-NG on JAX: one sample's circuit, jax.vmap over the batch, jax.jit; fwd+vjp =
    jax.vjp of the vmapped function w.r.t. (x, w), jitted. XLA threads: XLA_FLAGS one thread."""
    import jax
    import jax.numpy as jnp
    import tensorcircuit as tc

    jax.config.update("jax_enable_x64", True)  # float64 inputs stay float64 in complex128 runs
    gates = ansatz_gates(n, layers)

    def select_backend():
        # set_dtype is global and read at trace time: set it before every call
        tc.set_backend("jax")
        tc.set_dtype(dtype)

    def one_sample(xb, w):
        c = tc.Circuit(n)
        for gate in gates:
            if gate.name == "cx":
                c.cnot(*gate.wires)
            else:
                angle = xb[gate.index] if gate.source == "x" else w[gate.index]
                getattr(c, gate.name)(gate.wires[0], theta=angle)
        return jnp.real(jnp.stack([c.expectation_ps(z=[q]) for q in range(n)]))

    batched = jax.vmap(one_sample, in_axes=(0, None))
    forward_jit = jax.jit(batched)

    @jax.jit
    def grad_jit(x, w, g):
        out, pullback = jax.vjp(batched, x, w)
        gx, gw = pullback(g.astype(out.dtype))
        return out, gx, gw

    def forward(x, w):
        select_backend()
        return np.asarray(forward_jit(x, w))

    def forward_grad(x, w, g):
        select_backend()
        return tuple(np.asarray(a) for a in grad_jit(x, w, g))

    return Built(forward, forward_grad)


# ---------------------------------------------------------------- qsim (qsimcirq)


def build_qsim(n: int, layers: int, dtype: str) -> Built:
    """qsimcirq.QSimSimulator.simulate_expectation_values_sweep over B parameter resolvers, gate
    fusion up to QSIM_MAX_FUSED_GATE_SIZE qubits, cpu_threads=1. qsim is single precision only
    and has no gradient."""
    import cirq
    import qsimcirq
    import sympy

    qubits = cirq.LineQubit.range(n)
    x_symbols = sympy.symbols(f"x0:{n}")
    w_symbols = sympy.symbols(f"w0:{n_weights(n, layers)}")
    ops = []
    for gate in ansatz_gates(n, layers):
        if gate.name == "cx":
            ops.append(cirq.CNOT(qubits[gate.wires[0]], qubits[gate.wires[1]]))
        else:
            symbol = x_symbols[gate.index] if gate.source == "x" else w_symbols[gate.index]
            ops.append(getattr(cirq, gate.name)(symbol).on(qubits[gate.wires[0]]))
    circuit = cirq.Circuit(ops)
    observables = [cirq.Z(q) for q in qubits]
    simulator = qsimcirq.QSimSimulator(
        qsimcirq.QSimOptions(cpu_threads=1, max_fused_gate_size=QSIM_MAX_FUSED_GATE_SIZE)
    )

    def forward(x, w):
        shared = dict(zip(w_symbols, w.tolist()))
        resolvers = [cirq.ParamResolver({**dict(zip(x_symbols, row)), **shared}) for row in x.tolist()]
        values = simulator.simulate_expectation_values_sweep(circuit, observables, resolvers)
        return np.real(np.array(values))

    return Built(forward, None)


# ---------------------------------------------------------------- TorchQuantum (separate venv)


class RemoteBuilt(Built):
    """TorchQuantum runs in its own venv (it needs qiskit<1): a worker process builds, warms up
    and times there, with the same timing policy; only the results cross the process boundary."""

    def __init__(self, worker: "TorchQuantumWorker", n: int, layers: int, dtype: str):
        super().__init__(forward=self._unsupported, forward_grad=self._unsupported)
        self.worker, self.n, self.layers, self.dtype = worker, n, layers, dtype

    @staticmethod
    def _unsupported(*args):
        raise RuntimeError("TorchQuantum runs out of process: use measure()")

    def measure(self, mode, x, w, g, repeat, budget_s, slow_call_s):
        return self.worker.measure(self.n, self.layers, self.dtype, mode, x, w, g, repeat, budget_s, slow_call_s)


class TorchQuantumWorker:
    """One long-lived ``tq_worker.py`` under the TorchQuantum venv, spoken to in JSON lines."""

    def __init__(self, python: str):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(TQ_WORKER.parent)]))
        self.process = subprocess.Popen(
            [python, str(TQ_WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self.scratch = tempfile.TemporaryDirectory(prefix="hdqnn_tq_")

    def measure(self, n, layers, dtype, mode, x, w, g, repeat, budget_s, slow_call_s):
        request_path = Path(self.scratch.name) / "request.npz"
        result_path = Path(self.scratch.name) / "result.npz"
        np.savez(request_path, x=x, w=w, g=g)
        request = dict(n=n, layers=layers, dtype=dtype, mode=mode, repeat=repeat, budget_s=budget_s,
                       slow_call_s=slow_call_s, request=str(request_path), result=str(result_path))
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the TorchQuantum worker exited (code {self.process.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"TorchQuantum worker: {reply['error']}")
        with np.load(result_path) as data:
            out = data["out"]
            gx = data["gx"] if "gx" in data else None
            gw = data["gw"] if "gw" in data else None
        return (out, gx, gw), reply["warmup_s"], reply["times"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        self.scratch.cleanup()


_TQ_WORKERS: dict[str, TorchQuantumWorker] = {}


def build_torchquantum(n: int, layers: int, dtype: str) -> Built:
    """tq.QuantumDevice(bsz=B) with functional gates, tq.measurement.expval; fwd+vjp by torch
    autograd w.r.t. x and w. complex64 only (TorchQuantum's state dtype is fixed); torch threads 1."""
    if TQ_VENV_PYTHON not in _TQ_WORKERS:
        _TQ_WORKERS[TQ_VENV_PYTHON] = TorchQuantumWorker(TQ_VENV_PYTHON)
    return RemoteBuilt(_TQ_WORKERS[TQ_VENV_PYTHON], n, layers, dtype)


def close_workers() -> None:
    """Stop the out-of-process workers this module started."""
    for worker in _TQ_WORKERS.values():
        worker.close()
    _TQ_WORKERS.clear()


TQ_PROBE = (
    "import json, importlib.metadata as m, torchquantum; "
    "print(json.dumps({d: m.version(d) for d in ('torchquantum', 'torch', 'qiskit')}))"
)


def probe_torchquantum() -> tuple[Optional[str], dict[str, str]]:
    """(None, versions) when the TorchQuantum interpreter imports torchquantum, else (why not, {})."""
    if not Path(TQ_VENV_PYTHON).exists():
        return f"no TorchQuantum venv at {TQ_VENV_PYTHON} (set HDQNN_TQ_PYTHON)", {}
    probe = subprocess.run([TQ_VENV_PYTHON, "-c", TQ_PROBE], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"torchquantum does not import: {probe.stderr.strip().splitlines()[-1]}", {}
    return None, json.loads(probe.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- registry

PEERS = (
    PeerSpec("pl-default", ("pennylane", "torch"), ("pennylane", "torch"), frozenset({C128}),
             "x and w (torch backprop)", build_pennylane_default, tape_memory=True,
             note="default.qubit, broadcasting, backprop; its state is complex128 even for float32 angles"),
    PeerSpec("pl-lightning", ("pennylane", "pennylane_lightning", "torch"), ("pennylane-lightning",),
             BOTH_DTYPES, "x and w (adjoint, device VJP)", build_pennylane_lightning,
             note="lightning.qubit, adjoint, one tape per sample"),
    PeerSpec("qulacs", ("qulacs",), ("qulacs",), frozenset({C128}), "x and w (backprop)", build_qulacs,
             note="per-sample loop; double precision only"),
    PeerSpec("qiskit-aer", ("qiskit", "qiskit_aer"), ("qiskit", "qiskit-aer"), BOTH_DTYPES, None,
             build_qiskit_aer, note="EstimatorV2; no gradient"),
    PeerSpec("tc-jax", ("tensorcircuit", "jax"), ("tensorcircuit-ng", "jax", "jaxlib"), BOTH_DTYPES,
             "x and w (jax.vjp)", build_tensorcircuit, tape_memory=True, note="vmap + jit"),
    PeerSpec("qsim", ("qsimcirq", "cirq"), ("qsimcirq", "cirq-core"), frozenset({C64}), None, build_qsim,
             note="gate fusion; single precision only; no gradient"),
    PeerSpec("torchquantum", (), ("torchquantum",), frozenset({C64}), "x and w (torch backprop)",
             build_torchquantum, tape_memory=True, note="separate venv (qiskit<1)", python=TQ_VENV_PYTHON),
)
PEER_NAMES = tuple(p.name for p in PEERS)
HDQNN = PeerSpec("hdqnn", ("hdqnn",), (), BOTH_DTYPES, "x and w (adjoint)", build_hdqnn,
                 note="public API: expval keeping its states, then vjp from them for fwd+vjp")
NUMPY_ORACLE = PeerSpec("numpy-ref", ("hdqnn",), (), BOTH_DTYPES, "x and w", build_numpy_oracle)


def availability(spec: PeerSpec) -> tuple[Optional[str], dict[str, str]]:
    """(None, versions) when the peer can be built here, else (a short reason for the table, {})."""
    import importlib.util
    from importlib.metadata import version

    if spec.python is not None:
        return probe_torchquantum()
    absent = [m for m in spec.modules if importlib.util.find_spec(m) is None]
    if absent:
        return f"not installed ({', '.join(absent)})", {}
    return None, {dist: version(dist) for dist in spec.distributions}


def real_dtype(dtype: str):
    """float64 for complex128, float32 for complex64."""
    return REAL_DTYPE[dtype]


__all__ = ["PEERS", "PEER_NAMES", "HDQNN", "NUMPY_ORACLE", "Built", "PeerSpec", "ansatz_gates",
           "n_weights", "availability", "close_workers", "hdqnn_engine_missing", "real_dtype"]
