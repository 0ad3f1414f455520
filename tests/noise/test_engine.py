"""The noisy engines (hdqnn.backends.density) against the NumPy reference and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import hdqnn
from hdqnn.backends import density
from hdqnn.circuits import compile_observables
from hdqnn import Input, Weight
from hdqnn.noise import NoiseModel, ReadoutError, amplitude_damping, depolarizing, reference
from hdqnn.noise.compiled import compile_noise, readout_terms
from tests.circuit_factory import random_circuit, random_paulis
from tests.noise.factory import random_noise_model

ATOL = 1e-10
BATCH = 3
#: Bound on |trajectory estimate - exact| in standard errors (the issue's 5 sigma).
SIGMAS = 5.0


def _case(rng, n, per_sample_weights=False):
    circuit = random_circuit(rng, n)
    x = rng.uniform(-np.pi, np.pi, (BATCH, circuit.n_inputs))
    shape = (BATCH, circuit.n_weights) if per_sample_weights else circuit.n_weights
    w = rng.uniform(-np.pi, np.pi, shape)
    model = random_noise_model(rng, n)
    return circuit, x, w, model, compile_noise(circuit.compile(), model)


def _hea_case(rng, n=3, layers=2, batch=4):
    circuit = hdqnn.ansatz.hardware_efficient(n, layers)
    x = rng.uniform(-np.pi, np.pi, (batch, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    model = (NoiseModel().add(depolarizing(0.05), ["ry", "rz"]).add(amplitude_damping(0.1), ["ry", "rz"])
             .add(depolarizing(0.08, n_qubits=2), "cx").add_readout(ReadoutError(0.03, 0.08)))
    return circuit, x, w, model


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("engine", [None, "numba"])
def test_density_matrix_matches_reference_on_random_circuits_and_models(rng, n, engine):
    """Every gate, every channel kind (composed, wire-specific, asymmetric two-qubit), complex128;
    the engine calls run on (None: the compiled one where built), and the Numba twin."""
    circuit, x, w, model, tables = _case(rng, n)
    program = circuit.compile()
    ours = density.density_matrix(program, x, w, tables.channel_index, tables.superops, engine=engine)
    np.testing.assert_allclose(ours, reference.density_matrix(circuit, x, w, noise=model), atol=ATOL)
    probs = density.density_probabilities(program, x, w, tables.channel_index, tables.superops, engine=engine)
    np.testing.assert_allclose(probs, reference.probabilities(circuit, x, w, noise=model, readout=False), atol=ATOL)
    strings = random_paulis(rng, n, k=4)
    paulis = compile_observables(strings, n)
    for readout in (False, True):
        terms, coeffs = readout_terms(paulis, tables.confusion if readout else None)
        got = density.density_expval(program, x, w, tables.channel_index, tables.superops, terms,
                                     engine=engine) @ coeffs.T
        want = reference.expval(circuit, x, w, noise=model, observables=strings, readout=readout)
        np.testing.assert_allclose(got, want, atol=ATOL)


def test_readout_changes_expectations_only_when_on(rng):
    circuit, x, w, model = _hea_case(rng)
    on = hdqnn.expval(circuit, x, w, ["ZZI", "IIZ"], noise=model)
    off = hdqnn.expval(circuit, x, w, ["ZZI", "IIZ"], noise=model, readout=False)
    assert np.abs(on - off).max() > 1e-3
    np.testing.assert_allclose(off, reference.expval(circuit, x, w, noise=model, observables=["ZZI", "IIZ"],
                                                     readout=False), atol=ATOL)


def _finite_difference(f, values, eps=1e-6):
    grad = np.zeros_like(values)
    for i in np.ndindex(values.shape):
        up, down = values.copy(), values.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("readout", [False, True])
def test_vjp_matches_finite_differences_of_the_reference(rng, per_sample, readout):
    """The adjoint (Heisenberg) VJP through every gate and channel kind: exact to FD precision."""
    circuit, x, w, model, _ = _case(rng, 3, per_sample_weights=per_sample)
    strings = random_paulis(rng, 3, k=3)
    g = rng.normal(size=(BATCH, len(strings)))

    def loss(xx, ww):
        return float((reference.expval(circuit, xx, ww, noise=model, observables=strings, readout=readout) * g).sum())

    gi, gw = hdqnn.vjp(circuit, x, w, g, strings, noise=model, readout=readout)
    assert gw.shape == np.shape(w)
    np.testing.assert_allclose(gi, _finite_difference(lambda v: loss(v, w), x), atol=1e-7)
    np.testing.assert_allclose(gw, _finite_difference(lambda v: loss(x, v), w), atol=1e-7)


def test_vjp_checkpoint_segments_cover_long_circuits(rng, monkeypatch):
    """Several checkpoint segments (a short last one) of the Numba twin: the recomputed states line
    up with the sweep (the compiled engine's: test_density_cpp)."""
    monkeypatch.setenv("HDQNN_BACKEND", "numba")
    monkeypatch.setattr(density, "STORE_ALL_BYTES", 0)  # checkpoints even for this small register
    circuit, x, w, model = _hea_case(rng, n=2, layers=6, batch=2)
    n_blocks = density.block_counts(circuit.compile())[0]
    stride = density.checkpoint_stride(n_blocks, 2)
    assert 2 < stride < n_blocks and n_blocks % stride != 0
    g = rng.normal(size=(2, 2))
    gi, gw = hdqnn.vjp(circuit, x, w, g, noise=model)

    def loss(xx, ww):
        return float((reference.expval(circuit, xx, ww, noise=model) * g).sum())

    np.testing.assert_allclose(gw, _finite_difference(lambda v: loss(x, v), w), atol=1e-7)
    np.testing.assert_allclose(gi, _finite_difference(lambda v: loss(v, w), x), atol=1e-7)


def test_one_qubit_gates_join_the_run_open_on_their_wire(rng):
    """The engines run a program's gates in run order: a one-qubit gate joins its wire's run across
    gates on other wires, never across a two-qubit gate on its wire; the states are the reference's."""
    c = hdqnn.Circuit(3)
    c.ry(Input(0), 0).ry(Input(1), 1).rz(Weight(0), 0).cx(0, 1).rx(Weight(1), 0).ry(Weight(2), 2)
    c.cz(1, 2).rz(Weight(3), 1).ry(Weight(4), 0)
    program = c.compile()
    order = [0, 2, 1, 3, 4, 8, 5, 6, 7]  # rz(0) joins ry(0); ry(0) at the end joins rx(0) after cx
    chan_idx = np.arange(len(program.gates), dtype=np.int32)
    reordered, idx = density.grouped(program, chan_idx)
    np.testing.assert_array_equal(reordered.gates, program.gates[order])
    np.testing.assert_array_equal(idx, order)
    assert density.grouped(program, chan_idx)[0] is reordered  # kept per program
    assert density.block_counts(program) == (7, 5)  # runs {0, 2} {1} {4, 8} {5} {7}, and cx, cz
    ansatz = hdqnn.ansatz.hardware_efficient(4, 2).compile()
    assert density.block_counts(ansatz)[0] == len(density.blocks(ansatz)[0]) - 4  # encoding joins layer 1
    model = (NoiseModel().add(amplitude_damping(0.1), ["ry", "rz", "rx"]).add(depolarizing(0.05, n_qubits=2),
                                                                                ["cx", "cz"]))
    tables = compile_noise(program, model)
    x = rng.uniform(-np.pi, np.pi, (3, 2))
    w = rng.uniform(-np.pi, np.pi, 5)
    g = rng.normal(size=(3, 3))
    paulis = compile_observables(["ZII", "IZI", "IIZ"], 3)

    def loss(ww):
        return float((reference.expval(c, x, ww, noise=model) * g).sum())

    for engine in (None, "numba"):  # (None: the compiled one where built)
        got = density.density_expval(program, x, w, tables.channel_index, tables.superops, paulis, engine=engine)
        np.testing.assert_allclose(got, reference.expval(c, x, w, noise=model), atol=ATOL)
        gw = density.density_vjp(program, x, w, tables.channel_index, tables.superops, paulis, g, engine=engine)[1]
        np.testing.assert_allclose(gw, _finite_difference(loss, w), atol=1e-7)


def test_trajectories_agree_with_density_matrix_within_five_sigma(rng):
    circuit, x, w, model = _hea_case(rng)
    strings = ["ZII", "IZZ", "XIY"]
    exact = hdqnn.expval(circuit, x, w, strings, noise=model, method="density_matrix")
    mean, stderr = hdqnn.expval(circuit, x, w, strings, noise=model, method="trajectories", trajectories=800,
                                seed=11, return_stderr=True)
    assert np.all(stderr > 0)
    assert np.all(np.abs(mean - exact) <= SIGMAS * stderr), np.abs(mean - exact) / stderr


def test_trajectory_probabilities_agree_with_density_matrix(rng):
    circuit, x, w, model = _hea_case(rng, batch=2)
    t = 1000
    exact = hdqnn.probabilities(circuit, x, w, noise=model, readout=False)
    est = hdqnn.probabilities(circuit, x, w, noise=model, readout=False, method="trajectories", trajectories=t, seed=5)
    bound = SIGMAS * np.sqrt(exact * (1 - exact) / t) + 1e-12  # each trajectory's |psi|^2 lies in [0, 1]
    assert np.all(np.abs(est - exact) <= bound)
    np.testing.assert_allclose(est.sum(axis=1), 1.0, atol=1e-12)


def test_trajectories_are_reproducible_and_keyed_per_sample(rng):
    """Same seed: same numbers; sample b's draws are keyed on (seed, b), so they do not depend on the
    batch size (a prefix of the batch reproduces); another seed differs."""
    circuit, x, w, model = _hea_case(rng)
    kw = dict(noise=model, method="trajectories", seed=123)
    a = hdqnn.expval(circuit, x, w, trajectories=50, **kw)
    np.testing.assert_array_equal(a, hdqnn.expval(circuit, x, w, trajectories=50, **kw))
    np.testing.assert_array_equal(a[:2], hdqnn.expval(circuit, x[:2], w, trajectories=50, **kw))
    assert not np.array_equal(a, hdqnn.expval(circuit, x, w, trajectories=50, noise=model, method="trajectories",
                                              seed=124))


def test_trajectories_do_not_depend_on_thread_count(rng):
    numba = pytest.importorskip("numba")
    circuit, x, w, model = _hea_case(rng)
    kw = dict(noise=model, method="trajectories", trajectories=20, seed=9)
    before = numba.get_num_threads()
    a = hdqnn.expval(circuit, x, w, **kw)
    numba.set_num_threads(1)
    try:
        b = hdqnn.expval(circuit, x, w, **kw)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(a, b)


def test_noiseless_model_reduces_to_the_statevector_engine(rng):
    circuit = random_circuit(rng, 3)
    x = rng.uniform(-1, 1, (2, circuit.n_inputs))
    w = rng.uniform(-1, 1, circuit.n_weights)
    np.testing.assert_allclose(hdqnn.expval(circuit, x, w, noise=NoiseModel()), hdqnn.expval(circuit, x, w),
                               atol=ATOL)


def test_the_numba_twin_follows_hdqnn_set_num_threads(rng, monkeypatch):
    """Numba's team size is per calling thread and defaults to every core: a ``--threads 1`` run
    (``hdqnn.set_num_threads(1)``) must not spin a second worker in the noisy kernels."""
    import numba

    from hdqnn import backends

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba's pool has one thread")
    circuit, x, w, _, tables = _case(rng, 2)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        monkeypatch.setattr(backends, "_num_threads", 1)
        density.density_probabilities(circuit.compile(), x, w, tables.channel_index, tables.superops,
                                      engine="numba")
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(previous)
