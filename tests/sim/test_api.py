"""Public API: argument checking, dtypes, torch interop, sampling statistics, backend choice."""
from __future__ import annotations

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit, Input, Weight, ansatz
from hdqnn.sim import memory

SIGMAS = 5.0


@pytest.fixture
def circuit():
    return ansatz.hardware_efficient(3, 2)


def _xw(circuit, rng, b=4, dtype=np.float64):
    return (rng.uniform(-1, 1, (b, circuit.n_inputs)).astype(dtype),
            rng.uniform(-1, 1, circuit.n_weights).astype(dtype))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda x, w: (x[0], w), r"inputs must be 2-D \[B, n_inputs=3\]"),
        (lambda x, w: (x[:, :2], w), "inputs has 2 column"),
        (lambda x, w: (x[:0], w), "empty batch"),
        (lambda x, w: (np.where(np.eye(4, 3, dtype=bool), np.nan, x), w), r"inputs contains NaN.*\(0, 0\)"),
        (lambda x, w: (x, np.full_like(w, np.inf)), "weights contains NaN or infinite"),
        (lambda x, w: (x, w[:-1]), "weights has 11 entries"),
        (lambda x, w: (x, np.stack([w] * 3)), "per-sample weights have 3 rows"),
        (lambda x, w: (x, w[None, None]), "weights must be"),
        (lambda x, w: (None, w), "reads 3 input column"),
        (lambda x, w: (x, None), "reads 12 weight"),
    ],
)
def test_bad_arguments_name_the_problem(circuit, rng, mutate, match):
    x, w = mutate(*_xw(circuit, rng))
    for fn in (hdqnn.expval, hdqnn.statevector, hdqnn.probabilities):
        with pytest.raises(ValueError, match=match):
            fn(circuit, x, w)


def test_bad_types(circuit, rng):
    x, w = _xw(circuit, rng)
    with pytest.raises(TypeError, match="must be an hdqnn.Circuit"):
        hdqnn.expval("circuit", x, w)
    with pytest.raises(TypeError, match="complex dtype"):
        hdqnn.expval(circuit, x.astype(complex), w)
    with pytest.raises(TypeError, match="numeric array"):
        hdqnn.expval(circuit, np.array([["a"] * 3]), w)
    with pytest.raises(TypeError, match="complex64 or complex128"):
        hdqnn.expval(circuit, x, w, dtype=np.int32)


def test_bad_grad_output(circuit, rng):
    x, w = _xw(circuit, rng)
    with pytest.raises(ValueError, match=r"grad_output must have shape \(4, 3\)"):
        hdqnn.vjp(circuit, x, w, np.ones((4, 2)))
    with pytest.raises(ValueError, match="grad_output contains NaN"):
        hdqnn.vjp(circuit, x, w, np.full((4, 3), np.nan))


def test_state_too_large_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 2**30)
    big = Circuit(26).h(0)
    with pytest.raises(ValueError, match=r"too large for memory: statevector needs \d+\.\d\d GiB at its peak"):
        hdqnn.statevector(big, weights=np.zeros((4, 0)))
    with pytest.raises(ValueError, match="too large for memory: expval"):
        hdqnn.expval(Circuit(30).h(0))


def test_dtype_follows_inputs(circuit, rng):
    x, w = _xw(circuit, rng, dtype=np.float32)
    assert hdqnn.statevector(circuit, x, w).dtype == np.complex64
    assert hdqnn.expval(circuit, x, w).dtype == np.float32
    assert hdqnn.expval(circuit, x, w.astype(np.float64)).dtype == np.float64
    assert hdqnn.expval(circuit, x, w, dtype="complex128").dtype == np.float64
    ints = hdqnn.expval(Circuit(1).rx(Input(0), 0), np.array([[0], [1]]))
    np.testing.assert_allclose(ints[:, 0], np.cos([0.0, 1.0]), atol=1e-12)


def test_torch_in_torch_out(circuit, rng):
    torch = pytest.importorskip("torch")
    x, w = _xw(circuit, rng)
    tx = torch.tensor(x)
    out = hdqnn.expval(circuit, tx, torch.tensor(w))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), hdqnn.expval(circuit, x, w), atol=1e-12)
    gi, gw = hdqnn.vjp(circuit, tx.requires_grad_(), w, torch.ones(4, 3))  # vjp is the gradient: no warning
    assert isinstance(gi, torch.Tensor) and gw.shape == (circuit.n_weights,)
    assert hdqnn.statevector(circuit, tx.detach().float(), torch.tensor(w).float()).dtype == torch.complex64


def test_circuit_without_inputs_or_weights():
    assert hdqnn.statevector(Circuit(2).h(1)).shape == (1, 4)
    c = Circuit(1).rx(Weight(0), 0)
    np.testing.assert_allclose(hdqnn.expval(c, weights=np.array([[0.0], [np.pi]]))[:, 0], [1, -1], atol=1e-12)
    gi, gw = hdqnn.vjp(c, None, np.array([0.3]), np.ones((1, 1)))
    assert gi.shape == (1, 0)
    np.testing.assert_allclose(gw, [-np.sin(0.3)], atol=1e-12)


def test_sampling_is_reproducible_and_within_five_sigma(circuit, rng):
    x, w = _xw(circuit, rng, b=3)
    shots = 20_000
    a = hdqnn.sample(circuit, x, w, shots=shots, seed=7)
    assert a.shape == (3, shots, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, hdqnn.sample(circuit, x, w, shots=shots, seed=7))
    assert not np.array_equal(a, hdqnn.sample(circuit, x, w, shots=shots, seed=8))
    p1 = (1 - hdqnn.expval(circuit, x, w)) / 2  # exact P(wire = 1)
    bound = SIGMAS * np.sqrt(p1 * (1 - p1) / shots) + 1e-12
    assert np.all(np.abs(hdqnn.marginals(a) - p1) <= bound)
    est = hdqnn.expval_from_samples(a)
    assert np.all(np.abs(est - (1 - 2 * p1)) <= 2 * bound)


def test_counts_match_probabilities():
    probs = np.array([0.5, 0.0, 0.0, 0.5])
    bits = hdqnn.sample(Circuit(2).h(0).cx(0, 1), shots=4000, seed=1)
    (c,) = hdqnn.counts(bits)
    assert set(c) <= {"00", "11"} and sum(c.values()) == 4000
    bound = SIGMAS * np.sqrt(0.25 / 4000) * 4000
    assert abs(c["11"] - probs[3] * 4000) <= bound
    one = hdqnn.sample(Circuit(3).x(0), shots=5, seed=0)
    assert hdqnn.counts(one) == [{"100": 5}]  # wire 0 is the leftmost character


def test_bad_shots_and_observables_for_shots():
    with pytest.raises(ValueError, match="shots must be a positive int"):
        hdqnn.sample(Circuit(1), shots=0)
    bits = hdqnn.sample(Circuit(2), shots=3, seed=0)
    with pytest.raises(ValueError, match="diagonal observables"):
        hdqnn.expval_from_samples(bits, observables="XZ")


def test_backend_selection(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'gpu9'"):
        hdqnn.get_backend("gpu9")
    monkeypatch.setenv("HDQNN_BACKEND", "numpy")
    assert hdqnn.get_backend().name == "numpy"
    with pytest.raises(ValueError, match="positive int"):
        hdqnn.set_num_threads(0)
    assert set(hdqnn.backend_status()) >= {"cpp", "numba", "numpy"}


def test_cuda_request_without_a_gpu_fails_loudly(circuit, rng):
    if hdqnn.backend_status()["cuda"] == "ok" or hdqnn.backend_status()["cupy"] == "ok":
        pytest.skip("a GPU engine works here; the refusal path cannot be exercised")
    x, w = _xw(circuit, rng)
    with pytest.raises(RuntimeError, match="CUDA was requested but no GPU engine can run"):
        hdqnn.expval(circuit, x, w, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA was requested"):
        hdqnn.sample(circuit, x, w, shots=4, device="cuda:0")


@pytest.mark.parametrize("backend", ["cpp", "numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_expval_keeps_states_for_the_vjp(circuit, rng, backend, dtype):
    """expval(return_state=True) returns expval's values and statevector's states; vjp from them
    equals vjp (the compiled engine starts its sweep there; engines without that path recompute)."""
    if hdqnn.backend_status()[backend] != "ok":
        pytest.skip(f"{backend} engine unavailable: {hdqnn.backend_status()[backend]}")
    x, w = _xw(circuit, rng, b=5, dtype=dtype)
    g = rng.normal(size=(5, 2)).astype(dtype)
    obs = ["ZXI", ("Z", 2)]
    tol = 1e-10 if dtype == np.float64 else 1e-5
    out, states = hdqnn.expval(circuit, x, w, obs, backend=backend, return_state=True)
    np.testing.assert_allclose(out, hdqnn.expval(circuit, x, w, obs, backend=backend), atol=tol)
    np.testing.assert_allclose(states, hdqnn.statevector(circuit, x, w, backend=backend), atol=tol)
    want = hdqnn.vjp(circuit, x, w, g, obs, backend=backend)
    got = hdqnn.vjp(circuit, x, w, g, obs, backend=backend, final_state=states)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=20 * tol)


def test_which_engines_reuse_states():
    assert not hdqnn.sim.reuses_states("numpy")
    if hdqnn.backend_status()["cpp"] == "ok":
        assert hdqnn.sim.reuses_states("cpp")


def test_kept_states_with_torch(circuit, rng):
    import torch

    x, w = (torch.as_tensor(a) for a in _xw(circuit, rng))
    out, states = hdqnn.expval(circuit, x, w, return_state=True)
    assert isinstance(states, torch.Tensor) and states.dtype == torch.complex128 and states.shape == (4, 8)
    g = torch.ones_like(out)
    got, want = hdqnn.vjp(circuit, x, w, g, final_state=states), hdqnn.vjp(circuit, x, w, g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_kept_state_errors(circuit, rng):
    x, w = _xw(circuit, rng)
    g = np.ones((4, 3))
    _, states = hdqnn.expval(circuit, x, w, return_state=True)
    with pytest.raises(ValueError, match="final_state must have shape \\(4, 8\\)"):
        hdqnn.vjp(circuit, x, w, g, final_state=states[:3])
    with pytest.raises(TypeError, match="final_state must have dtype complex128"):
        hdqnn.vjp(circuit, x, w, g, final_state=states.astype(np.complex64))
    with pytest.raises(TypeError, match="final_state must have dtype complex64"):
        hdqnn.vjp(circuit, x.astype(np.float32), w.astype(np.float32), g.astype(np.float32), final_state=states)
    model = hdqnn.noise.NoiseModel().add(hdqnn.noise.depolarizing(0.01), gates=["ry"])
    with pytest.raises(ValueError, match="return_state=True gives the final pure states of a noiseless"):
        hdqnn.expval(circuit, x, w, noise=model, return_state=True)
    with pytest.raises(ValueError, match="leave noise= and return_stderr= out"):
        hdqnn.expval(circuit, x, w, return_stderr=True, return_state=True)
    with pytest.raises(ValueError, match="final_state= is for noiseless VJPs"):
        hdqnn.vjp(circuit, x, w, g, noise=model, final_state=states)
