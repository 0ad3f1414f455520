"""EstimatorGradient and to_quantum_layer in qiskit-machine-learning's EstimatorQNN / TorchConnector,
against Qiskit's StatevectorEstimator + ParamShiftEstimatorGradient."""
from __future__ import annotations

import numpy as np
import pytest

from tests.qasm.optional import import_or_skip

TOL = 1e-10


@pytest.fixture(autouse=True)
def _qiskit_ml_installed():
    import_or_skip("qiskit_machine_learning", "qiskit-ml")


def feature_map_and_ansatz(n_qubits=3):
    from qiskit.circuit.library import real_amplitudes, zz_feature_map

    fm, ansatz = zz_feature_map(n_qubits, reps=1), real_amplitudes(n_qubits, reps=2)
    return fm, ansatz, fm.compose(ansatz)


def observables():
    from qiskit.quantum_info import SparsePauliOp

    return [SparsePauliOp(["ZZI", "IXY", "III"], [1.0, 0.5, 0.2]), SparsePauliOp("IIZ")]


def make_qnn(estimator, gradient, input_gradients=True, **kwargs):
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    fm, ansatz, qc = feature_map_and_ansatz()
    return EstimatorQNN(circuit=qc, observables=observables(), input_params=fm.parameters,
                        weight_params=ansatz.parameters, estimator=estimator, gradient=gradient,
                        input_gradients=input_gradients, **kwargs)


def reference_qnn(input_gradients=True):
    from qiskit.primitives import StatevectorEstimator
    from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient

    est = StatevectorEstimator()
    return make_qnn(est, ParamShiftEstimatorGradient(est), input_gradients, default_precision=0.0)


def count_vjp_calls(monkeypatch):
    from hdqnn.interop import qiskit_ml

    calls = []
    real = qiskit_ml.vjp

    def counting(*args, **kwargs):
        calls.append((args[1].shape[0], kwargs.get("final_state") is not None))
        return real(*args, **kwargs)

    monkeypatch.setattr(qiskit_ml, "vjp", counting)
    return calls


@pytest.mark.parametrize("states_bytes", [None, 0])
@pytest.mark.parametrize("input_gradients", [True, False])
def test_estimator_qnn_forward_and_backward_match_parameter_shift(input_gradients, states_bytes, monkeypatch):
    from hdqnn.interop.qiskit import Estimator, EstimatorGradient
    from hdqnn.sim import api

    if states_bytes is not None:  # no room for the rows' states: each VJP row runs its own forward
        monkeypatch.setattr(api, "KEPT_STATE_BYTES", states_bytes)
    ours = make_qnn(Estimator(), EstimatorGradient(), input_gradients)  # qnn's default precision 0.015625
    ref = reference_qnn(input_gradients)
    rng = np.random.default_rng(0)
    x, w = rng.uniform(-1, 1, (3, 3)), rng.uniform(-1, 1, ours.num_weights)
    np.testing.assert_allclose(ours.forward(x, w), ref.forward(x, w), atol=TOL)
    calls = count_vjp_calls(monkeypatch)
    (gi, gw), (ri, rw) = ours.backward(x, w), ref.backward(x, w)
    assert calls == [(3 * 2, states_bytes is None)]  # every (sample, observable) row in one VJP
    np.testing.assert_allclose(gw, rw, atol=TOL)
    if input_gradients:
        np.testing.assert_allclose(gi, ri, atol=TOL)
    else:
        assert gi is None and ri is None


def test_gradient_several_circuits_parameter_subsets_in_given_order():
    from qiskit.primitives import StatevectorEstimator
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient

    from hdqnn.interop.qiskit import EstimatorGradient

    _, _, qc = feature_map_and_ansatz()
    _, _, small = feature_map_and_ansatz(2)
    rng = np.random.default_rng(1)
    p = list(qc.parameters)
    circuits = [qc, small, qc, qc]
    obs = [SparsePauliOp("XYZ"), SparsePauliOp(["ZX", "YY"], [0.3, -2.0]), SparsePauliOp("ZZZ"), observables()[0]]
    values = [rng.uniform(-1, 1, c.num_parameters) for c in circuits]
    params = [[p[7], p[0], p[4]], None, p[::-1], [p[2]]]  # not circuit order
    ours = EstimatorGradient().run(circuits, obs, values, params).result()
    est = StatevectorEstimator()
    ref = ParamShiftEstimatorGradient(est).run(circuits, obs, values, params).result()
    for a, b in zip(ours.gradients, ref.gradients):
        np.testing.assert_allclose(a, b, atol=TOL)
    assert [m["parameters"] for m in ours.metadata] == [list(m["parameters"]) for m in ref.metadata]


def test_gradient_run_refuses_what_qiskit_ml_refuses_with_its_messages():
    """EstimatorGradient.run checks once per circuit what BaseEstimatorGradient checks per row."""
    from qiskit.circuit import Parameter, QuantumCircuit
    from qiskit.primitives import StatevectorEstimator
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient

    from hdqnn.interop.qiskit import EstimatorGradient

    _, _, qc = feature_map_and_ansatz()
    ok_values = np.zeros(qc.num_parameters)
    fixed = QuantumCircuit(3)
    fixed.h(0)
    cases = [
        ([qc, qc], [SparsePauliOp("ZZZ")] * 2, [ok_values], None),                   # values per circuit
        ([qc], [SparsePauliOp("ZZZ")], [ok_values[:-1]], None),                      # values per parameter
        ([fixed], [SparsePauliOp("ZZZ")], [[]], None),                               # not parameterised
        ([qc, qc], [SparsePauliOp("ZZZ")], [ok_values] * 2, None),                   # observables per circuit
        ([qc], [SparsePauliOp("ZZ")], [ok_values], None),                            # qubits
        ([qc, qc], [SparsePauliOp("ZZZ")] * 2, [ok_values] * 2, [None]),             # parameter lists
        ([qc, qc], [SparsePauliOp("ZZZ")] * 2, [ok_values] * 2, [None, [Parameter("foreign")]]),
    ]
    for circuits, obs, values, params in cases:
        with pytest.raises(ValueError) as theirs:
            ParamShiftEstimatorGradient(StatevectorEstimator()).run(circuits, obs, values, params)
        with pytest.raises(ValueError) as ours:
            EstimatorGradient().run(circuits, obs, values, params)
        assert str(ours.value) == str(theirs.value)


def test_gradient_rejects_non_hermitian_observables():
    from qiskit.quantum_info import SparsePauliOp

    from hdqnn.interop.qiskit import EstimatorGradient

    _, _, qc = feature_map_and_ansatz()
    job = EstimatorGradient().run([qc], [SparsePauliOp("XYZ", 1j)], [np.zeros(qc.num_parameters)])
    with pytest.raises(ValueError, match="not Hermitian"):
        job.result()


def test_to_quantum_layer_matches_torch_connector_and_the_exact_qnn():
    import torch
    from qiskit_machine_learning.connectors import TorchConnector

    from hdqnn.interop.qiskit import to_quantum_layer

    qnn = reference_qnn()
    rng = np.random.default_rng(2)
    w0 = rng.uniform(-1, 1, qnn.num_weights)
    x_np = rng.uniform(-1, 1, (5, 3))
    layer = to_quantum_layer(qnn, initial_weights=w0)
    connector = TorchConnector(qnn, initial_weights=w0)
    x = torch.tensor(x_np, requires_grad=True)
    x32 = torch.tensor(x_np, dtype=torch.float32, requires_grad=True)
    cot = torch.tensor(rng.normal(size=(5, 2)))
    y = layer(x)
    (y * cot).sum().backward()
    (connector(x32) * cot.float()).sum().backward()
    # TorchConnector computes in float32: compare at that precision ...
    np.testing.assert_allclose(layer.weight.grad.numpy(), connector.weight.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), x32.grad.numpy(), atol=1e-5)
    # ... and exactly (float64) against the QNN's own forward and Jacobians
    np.testing.assert_allclose(y.detach().numpy(), qnn.forward(x_np, w0), atol=TOL)
    gi, gw = qnn.backward(x_np, w0)
    np.testing.assert_allclose(layer.weight.grad.numpy(), np.einsum("bk,bkp->p", cot.numpy(), gw), atol=TOL)
    np.testing.assert_allclose(x.grad.numpy(), np.einsum("bk,bkp->bp", cot.numpy(), gi), atol=TOL)


def test_to_quantum_layer_checks_its_input_shape():
    import torch

    from hdqnn.interop.qiskit import to_quantum_layer

    layer = to_quantum_layer(reference_qnn())
    assert layer.weight.shape == (9,)
    with pytest.raises(ValueError, match=r"x must be \[B, 3\]"):
        layer(torch.zeros(2, 4, dtype=torch.float64))
