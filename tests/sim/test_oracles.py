"""The engines against oracles we did not write (Qiskit) and against states known by hand."""
from __future__ import annotations

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit, Input
from hdqnn.circuits import GATES, gate_matrix, gate_matrix_derivative
from tests.circuit_factory import bind_angle, random_circuit

ENGINE_NAMES = ("cpp", "numba", "numpy")


def _to_qiskit(circuit: Circuit, x: np.ndarray, w: np.ndarray):
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(circuit.n_qubits)
    for op in circuit.operations:
        getattr(qc, op.name)(*[bind_angle(a, x, w) for a in op.angles], *op.wires)
    return qc


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_random_circuits_match_qiskit(engine, rng, n):
    qi = pytest.importorskip("qiskit.quantum_info")
    circuit = random_circuit(rng, n)
    x = rng.uniform(-np.pi, np.pi, (3, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    ours = hdqnn.statevector(circuit, x, w, backend=engine)
    for b in range(3):
        # Qiskit's qubit 0 is the least significant bit; ours is the most significant.
        theirs = qi.Statevector(_to_qiskit(circuit, x[b], w)).reverse_qargs().data
        np.testing.assert_allclose(ours[b], theirs, atol=1e-10)


def test_qiskit_bit_order_convention(engine):
    """X on wire 0 of 3 sets amplitude index 0b100 in ours and 0b001 in Qiskit's order."""
    qi = pytest.importorskip("qiskit.quantum_info")
    circuit = Circuit(3).x(0)
    ours = hdqnn.statevector(circuit, backend=engine)[0]
    assert ours[0b100] == pytest.approx(1.0)
    assert qi.Statevector(_to_qiskit(circuit, [], [])).data[0b001] == pytest.approx(1.0)


def test_bell_and_ghz_states(engine):
    bell = hdqnn.statevector(Circuit(2).h(0).cx(0, 1), backend=engine)[0]
    np.testing.assert_allclose(bell, np.array([1, 0, 0, 1]) / np.sqrt(2), atol=1e-12)
    ghz = Circuit(4).h(0).cx(0, 1).cx(1, 2).cx(2, 3)
    probs = hdqnn.probabilities(ghz, backend=engine)[0]
    expected = np.zeros(16)
    expected[[0, 15]] = 0.5
    np.testing.assert_allclose(probs, expected, atol=1e-12)
    ev = hdqnn.expval(ghz, observables=["ZZII", "XXXX", "YYXX", "ZIII", ("ZZ", (0, 3))], backend=engine)[0]
    np.testing.assert_allclose(ev, [1.0, 1.0, -1.0, 0.0, 1.0], atol=1e-12)


def test_single_qubit_rotation_expectations(engine, rng):
    theta = rng.uniform(-np.pi, np.pi, (7, 1))
    ry = Circuit(1).ry(Input(0), 0)
    np.testing.assert_allclose(hdqnn.expval(ry, theta, backend=engine), np.cos(theta), atol=1e-12)
    np.testing.assert_allclose(hdqnn.expval(ry, theta, observables="X", backend=engine), np.sin(theta), atol=1e-12)
    rx = Circuit(1).rx(Input(0, scale=0.5), 0)
    np.testing.assert_allclose(hdqnn.expval(rx, theta, observables="Y", backend=engine), -np.sin(theta / 2), atol=1e-12)


@pytest.mark.parametrize("name", [g for g in GATES if GATES[g].n_angles])
def test_gate_derivatives_match_finite_differences(name, rng):
    angles = tuple(rng.uniform(-np.pi, np.pi, GATES[name].n_angles))
    eps = 1e-6
    for j in range(len(angles)):
        up = list(angles); up[j] += eps
        dn = list(angles); dn[j] -= eps
        fd = (gate_matrix(name, *up) - gate_matrix(name, *dn)) / (2 * eps)
        np.testing.assert_allclose(gate_matrix_derivative(name, angles, j), fd, atol=1e-8)


@pytest.mark.parametrize("name", list(GATES))
def test_gate_matrices_match_qiskit(name, rng):
    pytest.importorskip("qiskit")
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Operator

    spec = GATES[name]
    angles = list(rng.uniform(-np.pi, np.pi, spec.n_angles))
    qc = QuantumCircuit(spec.n_wires)
    getattr(qc, name)(*angles, *range(spec.n_wires))
    # reverse_qargs puts Qiskit's qubit 0 (our wire0) on the most significant bit, as ours
    np.testing.assert_allclose(gate_matrix(name, *angles), Operator(qc).reverse_qargs().data, atol=1e-12)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("dtype", [np.float64])
def test_vjp_matches_central_differences(engine, rng, per_sample, dtype):
    circuit = random_circuit(rng, 4)
    b = 3
    x = rng.uniform(-np.pi, np.pi, (b, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, (b, circuit.n_weights) if per_sample else circuit.n_weights)
    obs = ["ZIXI", "YYZI", ("Z", 3)]
    g = rng.normal(size=(b, len(obs)))
    gi, gw = hdqnn.vjp(circuit, x, w, g, observables=obs, backend=engine)

    def loss(xx, ww):
        return float(np.sum(g * hdqnn.expval(circuit, xx, ww, observables=obs, backend=engine)))

    eps = 1e-6
    for arr, grad in ((x, gi), (w, gw)):
        fd = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            orig = arr[idx]
            arr[idx] = orig + eps
            up = loss(x, w)
            arr[idx] = orig - eps
            fd[idx] = (up - loss(x, w)) / (2 * eps)
            arr[idx] = orig
        np.testing.assert_allclose(grad, fd, atol=1e-7)
