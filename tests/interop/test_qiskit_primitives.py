"""hdqnn.interop.qiskit.Estimator / Sampler against Qiskit's StatevectorEstimator / StatevectorSampler:
PUB broadcasting and result shapes, observables in Qiskit's qubit order, registers and bit order,
and one engine call per circuit."""
from __future__ import annotations

import numpy as np
import pytest

TOL = 1e-10


def feature_map_circuit(n_qubits=3):
    from qiskit.circuit.library import real_amplitudes, zz_feature_map

    return zz_feature_map(n_qubits, reps=1).compose(real_amplitudes(n_qubits, reps=1))


def engine_calls(monkeypatch, name):
    """Count the engine calls the primitives module makes through ``name`` (expval or sample)."""
    from hdqnn.interop import qiskit as hq

    calls = []
    real = getattr(hq, name)

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(hq, name, counting)
    return calls


def test_estimator_broadcasts_pubs_like_statevector_estimator(monkeypatch):
    from qiskit.primitives import StatevectorEstimator
    from qiskit.quantum_info import SparsePauliOp

    from hdqnn.interop.qiskit import Estimator

    qc = feature_map_circuit()
    other = feature_map_circuit(2)
    rng = np.random.default_rng(0)
    P = qc.num_parameters
    obs_31 = [[SparsePauliOp(["XZI", "IIY", "III"], [0.5, -1.0, 0.25])], ["ZZZ"], [{"YXI": 2.0, "IZZ": -1.0}]]
    pubs = [
        (qc, obs_31, rng.uniform(-1, 1, (4, P))),             # (3, 1) x (4,) -> (3, 4)
        (qc, "XXY", rng.uniform(-1, 1, P)),                   # () x () -> ()
        (qc, ["ZII", "IZI", "IIZ"], rng.uniform(-1, 1, (2, 1, P))),  # (3,) x (2, 1) -> (2, 3)
        (other, [["XY"], ["ZI"]], rng.uniform(-1, 1, (2, 5, other.num_parameters))),  # (2, 1) x (2, 5)
        (qc, "IIX", {tuple(qc.parameters): rng.uniform(-1, 1, (2, P))}),  # a BindingsArray mapping
    ]
    calls = engine_calls(monkeypatch, "expval")
    ours = Estimator().run(pubs, precision=0.015625).result()
    ref = StatevectorEstimator().run(pubs).result()
    assert len(calls) == 2  # one engine call per circuit: qc's 4 PUBs (4 + 1 + 2 + 2 rows) together
    assert sorted(rows for rows, _ in calls) == [9, 10]
    for a, b in zip(ours, ref):
        assert a.data.evs.shape == b.data.evs.shape == a.data.shape
        np.testing.assert_allclose(a.data.evs, b.data.evs, atol=TOL)
        np.testing.assert_array_equal(a.data.stds, np.zeros(a.data.shape))
        assert a.metadata == {"target_precision": 0.015625, "circuit_metadata": {}}
    assert ours.metadata == {"version": 2}


def test_estimator_runs_each_distinct_parameter_row_once(monkeypatch):
    """qiskit-ml's forward: one PUB per observable, all on the same parameter rows."""
    from qiskit.primitives import StatevectorEstimator

    from hdqnn.interop.qiskit import Estimator

    qc = feature_map_circuit()
    rng = np.random.default_rng(2)
    values = rng.uniform(-1, 1, (5, qc.num_parameters))
    values[3] = values[1]  # a repeated row inside a PUB too
    pubs = [(qc, obs, values) for obs in ("ZII", "IXI", "IIY", "ZZZ")] + [(qc, "XXX", values[:2] + 1.0)]
    calls = engine_calls(monkeypatch, "expval")
    ours = Estimator().run(pubs).result()
    ref = StatevectorEstimator().run(pubs).result()
    assert [rows for rows, _ in calls] == [6]  # 4 distinct rows of the first four PUBs, 2 of the last
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.data.evs, b.data.evs, atol=TOL)


def test_distinct_rows_in_order_of_first_appearance():
    from hdqnn.interop.qiskit import distinct_rows

    rng = np.random.default_rng(3)
    base = rng.normal(size=(4, 3))
    values = base[[2, 0, 2, 3, 0, 1, 1]]
    distinct, index = distinct_rows(values)
    np.testing.assert_array_equal(distinct, base[[2, 0, 3, 1]])
    np.testing.assert_array_equal(index, [0, 1, 0, 2, 1, 3, 3])
    np.testing.assert_array_equal(distinct[index], values)
    empty, none = distinct_rows(np.zeros((0, 3)))
    assert empty.shape == (0, 3) and none.shape == (0,)


def test_estimator_is_exact_by_default_and_emulates_precision_on_request():
    """EstimatorQNN passes precision=0.015625: identical rows must still give identical values."""
    from hdqnn.interop.qiskit import Estimator

    qc = feature_map_circuit()
    rows = np.tile(np.linspace(-1, 1, qc.num_parameters), (200, 1))
    exact = Estimator().run([(qc, "ZZI", rows)], precision=0.015625).result()[0].data.evs
    assert np.ptp(exact) == 0
    noisy = Estimator(emulate_precision=True, seed=1).run([(qc, "ZZI", rows)], precision=0.1).result()[0]
    np.testing.assert_allclose(np.std(noisy.data.evs - exact), 0.1, rtol=0.2)
    np.testing.assert_array_equal(noisy.data.stds, np.full(200, 0.1))


def test_estimator_without_parameters_and_identity_observables():
    from qiskit import QuantumCircuit
    from qiskit.primitives import StatevectorEstimator

    from hdqnn.interop.qiskit import Estimator

    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    pubs = [(qc, ["XX", "II", "ZI", "YY"]), (qc, "II")]
    ours, ref = Estimator().run(pubs).result(), StatevectorEstimator().run(pubs).result()
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.data.evs, b.data.evs, atol=TOL)


def test_estimator_qubit_order_of_observables():
    """Qiskit labels put qubit 0 rightmost: "IZ" reads qubit 0, which X flipped."""
    from qiskit import QuantumCircuit

    from hdqnn.interop.qiskit import Estimator

    qc = QuantumCircuit(2)
    qc.x(0)
    evs = Estimator().run([(qc, ["IZ", "ZI"])]).result()[0].data.evs
    np.testing.assert_allclose(evs, [-1.0, 1.0])


def test_estimator_expands_projector_letters():
    """Qiskit 2.x observables may hold projectors ('+', '0', 'r', ...); StatevectorEstimator cannot
    read them, so the oracle here is Statevector with the observable's Pauli expansion."""
    from qiskit.quantum_info import SparseObservable, SparsePauliOp, Statevector

    from hdqnn.interop.qiskit import Estimator

    qc = feature_map_circuit()
    values = np.random.default_rng(1).uniform(-1, 1, (3, qc.num_parameters))
    label = "+0r"
    paulis = SparseObservable(label).as_paulis().to_sparse_list()
    op = SparsePauliOp.from_sparse_list(paulis, 3)
    expected = [Statevector(qc.assign_parameters(v)).expectation_value(op).real for v in values]
    evs = Estimator().run([(qc, label, values)]).result()[0].data.evs
    np.testing.assert_allclose(evs, expected, atol=TOL)


def exact_probabilities(qc, values):
    from qiskit.quantum_info import Statevector

    body = qc.remove_final_measurements(inplace=False)
    return [Statevector(body.assign_parameters(v)).probabilities_dict() for v in values]


def test_sampler_distribution_shapes_and_single_engine_call(monkeypatch):
    from qiskit.primitives import StatevectorSampler

    from hdqnn.interop.qiskit import Sampler

    qc = feature_map_circuit()
    qc.measure_all()
    rng = np.random.default_rng(2)
    values = rng.uniform(-1, 1, (2, 3, qc.num_parameters))
    shots = 4000
    calls = engine_calls(monkeypatch, "sample")
    ours = Sampler(seed=5).run([(qc, values), (qc, values[0, 0])], shots=shots).result()
    ref = StatevectorSampler(seed=5).run([(qc, values), (qc, values[0, 0])], shots=shots).result()
    assert len(calls) == 1 and calls[0][0] == 7
    for a, b in zip(ours, ref):
        assert a.data.meas.shape == b.data.meas.shape
        assert (a.data.meas.num_shots, a.data.meas.num_bits) == (b.data.meas.num_shots, b.data.meas.num_bits)
        assert a.metadata == b.metadata
    probs = exact_probabilities(qc, values.reshape(-1, qc.num_parameters))
    for r, (idx, p) in enumerate(zip(np.ndindex(2, 3), probs)):
        counts = ours[0].data.meas.get_counts(idx)
        for key in set(p) | set(counts):
            expected = shots * p.get(key, 0.0)
            # 5 standard deviations of a binomial count, plus one count of slack
            assert abs(counts.get(key, 0) - expected) <= 5 * np.sqrt(expected * (1 - p.get(key, 0.0))) + 1, (r, key)


def test_sampler_registers_and_bit_order_match_statevector_sampler():
    """Deterministic outcomes: register names, sizes, unmeasured bits (0) and clbit 0 rightmost."""
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
    from qiskit.primitives import StatevectorSampler

    from hdqnn.interop.qiskit import Sampler

    qc = QuantumCircuit(QuantumRegister(4), ClassicalRegister(3, "alpha"), ClassicalRegister(2, "beta"))
    qc.x(0)
    qc.x(3)
    qc.measure(0, qc.clbits[0])  # alpha = 0b?01 with alpha[1] <- qubit 1 (0), alpha[2] unmeasured
    qc.measure(1, qc.clbits[1])
    qc.measure(3, qc.clbits[4])  # beta[1] <- qubit 3 (1)
    pubs = [(qc,), (qc, None, 10)]
    ours, ref = Sampler().run(pubs, shots=7).result(), StatevectorSampler().run(pubs, shots=7).result()
    for a, b in zip(ours, ref):
        for name in ("alpha", "beta"):
            assert a.data[name].get_counts() == b.data[name].get_counts()
            assert a.data[name].num_bits == b.data[name].num_bits
        assert a.join_data().get_counts() == b.join_data().get_counts()
    assert ours[0].data.alpha.get_counts() == {"001": 7}
    assert ours[1].data.beta.get_counts() == {"10": 10}


def test_empty_parameter_arrays_give_empty_results():
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    from hdqnn.interop.qiskit import Estimator, Sampler

    qc = QuantumCircuit(2)
    qc.rx(Parameter("p"), 0)
    qc.measure_all()
    assert Estimator().run([(qc, "ZZ", np.zeros((0, 1)))]).result()[0].data.evs.shape == (0,)
    meas = Sampler().run([(qc, np.zeros((0, 1)))]).result()[0].data.meas
    assert (meas.shape, meas.num_bits) == ((0,), 2)


def test_sampler_rejects_mid_circuit_measurement():
    from qiskit import QuantumCircuit

    from hdqnn.interop.qiskit import Sampler

    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    qc.h(0)
    with pytest.raises(ValueError, match="mid-circuit measurement"):
        Sampler().run([qc]).result()
