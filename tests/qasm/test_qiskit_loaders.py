"""Qiskit's own OpenQASM loaders read hdqnn's exports into the same state (bit order converted)."""
from __future__ import annotations

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit
from hdqnn.qasm import dumps
from tests.circuit_factory import random_circuit
from tests.qasm.optional import import_or_skip

TOL = 1e-10
ENGINE = "numpy"


def qiskit_state_in_hdqnn_order(qc) -> np.ndarray:
    """Qiskit's statevector has qubit 0 as the LEAST significant index bit; hdqnn the MOST."""
    from qiskit.quantum_info import Statevector

    n = qc.num_qubits
    return Statevector(qc).data.reshape((2,) * n).transpose(range(n - 1, -1, -1)).reshape(-1)


@pytest.fixture
def qasm2():
    return import_or_skip("qiskit.qasm2", "qiskit")


@pytest.fixture
def qasm3():
    import_or_skip("qiskit_qasm3_import", "qiskit")
    return import_or_skip("qiskit.qasm3", "qiskit")


def test_bit_order_conversion_on_a_basis_state(qasm2):
    c = Circuit(3).x(0)  # hdqnn index 0b100 = 4; Qiskit index 0b001 = 1
    qc = qasm2.loads(dumps(c, version="2.0", measure=False))
    from qiskit.quantum_info import Statevector

    assert abs(Statevector(qc).data[1]) == pytest.approx(1.0)
    assert abs(qiskit_state_in_hdqnn_order(qc)[4]) == pytest.approx(1.0)
    assert abs(hdqnn.statevector(c, backend=ENGINE)[0, 4]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(3))
def test_qiskit_qasm2_loader_matches_our_statevector(qasm2, seed):
    rng = np.random.default_rng(200 + seed)
    c = random_circuit(rng, 3)
    x, w = rng.normal(size=(1, c.n_inputs)), rng.normal(size=c.n_weights)
    qc = qasm2.loads(dumps(c, x, w, version="2.0", measure=False)[0])  # strict qelib1.inc
    np.testing.assert_allclose(qiskit_state_in_hdqnn_order(qc), hdqnn.statevector(c, x, w, backend=ENGINE)[0],
                               atol=TOL)


@pytest.mark.parametrize("seed", range(2))
def test_qiskit_qasm3_loader_matches_our_statevector(qasm3, seed):
    rng = np.random.default_rng(300 + seed)
    c = random_circuit(rng, 3)
    x, w = rng.normal(size=(1, c.n_inputs)), rng.normal(size=c.n_weights)
    qc = qasm3.loads(dumps(c, x, w, version="3.0", measure=False)[0])
    np.testing.assert_allclose(qiskit_state_in_hdqnn_order(qc), hdqnn.statevector(c, x, w, backend=ENGINE)[0],
                               atol=TOL)


def test_qiskit_qasm3_loader_reads_free_parameters(qasm3):
    rng = np.random.default_rng(400)
    c = random_circuit(rng, 2)
    qc = qasm3.loads(dumps(c, measure=False))
    x, w = rng.normal(size=c.n_inputs), rng.normal(size=c.n_weights)
    values = {"in": x, "w": w}
    bound = qc.assign_parameters({p: values[p.name.split("_")[0]][int(p.name.split("_")[1])]
                                  for p in qc.parameters})
    np.testing.assert_allclose(qiskit_state_in_hdqnn_order(bound),
                               hdqnn.statevector(c, x[None], w, backend=ENGINE)[0], atol=TOL)


def test_measurements_land_in_the_stated_bits(qasm2):
    qc = qasm2.loads(dumps(Circuit(3).x(0), version="2.0"))
    assert [(qc.find_bit(i.qubits[0]).index, qc.find_bit(i.clbits[0]).index)
            for i in qc.data if i.operation.name == "measure"] == [(0, 0), (1, 1), (2, 2)]
