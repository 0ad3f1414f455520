"""Noise through the public API: hdqnn.expval / probabilities / sample / vjp and QuantumLayer."""
from __future__ import annotations

import logging

import numpy as np
import pytest

import hdqnn
from hdqnn.noise import NoiseModel, ReadoutError, amplitude_damping, depolarizing, reference
from hdqnn.sim import memory, noisy

ATOL = 1e-10


@pytest.fixture
def case(rng):
    circuit = hdqnn.ansatz.hardware_efficient(3, 1)
    x = rng.uniform(-np.pi, np.pi, (4, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    model = (NoiseModel().add(depolarizing(0.05), ["ry", "rz"]).add(amplitude_damping(0.15), "ry")
             .add(depolarizing(0.1, n_qubits=2), "cx").add_readout(ReadoutError(0.04, 0.1)))
    return circuit, x, w, model


def test_expval_and_probabilities_match_the_reference(case):
    circuit, x, w, model = case
    np.testing.assert_allclose(hdqnn.expval(circuit, x, w, noise=model), reference.expval(circuit, x, w, noise=model),
                               atol=ATOL)
    for readout in (True, False):
        np.testing.assert_allclose(hdqnn.probabilities(circuit, x, w, noise=model, readout=readout),
                                   reference.probabilities(circuit, x, w, noise=model, readout=readout), atol=ATOL)


def test_density_matrix_stderr_is_zero_and_dtype_follows_inputs(case):
    circuit, x, w, model = case
    mean, stderr = hdqnn.expval(circuit, x.astype(np.float32), w.astype(np.float32), noise=model,
                                method="density_matrix", return_stderr=True)
    assert mean.dtype == np.float32 and not stderr.any()
    np.testing.assert_allclose(mean, reference.expval(circuit, x, w, noise=model), atol=1e-5)


def test_torch_in_torch_out(case):
    torch = pytest.importorskip("torch")
    circuit, x, w, model = case
    out = hdqnn.expval(circuit, torch.from_numpy(x), torch.from_numpy(w), noise=model)
    assert isinstance(out, torch.Tensor)
    gi, gw = hdqnn.vjp(circuit, torch.from_numpy(x), torch.from_numpy(w), torch.ones(4, 3, dtype=torch.float64),
                       noise=model)
    assert isinstance(gi, torch.Tensor) and gw.shape == (circuit.n_weights,)


@pytest.mark.parametrize("method", ["density_matrix", "trajectories"])
def test_sample_marginals_match_noisy_probabilities(case, method):
    circuit, x, w, model = case
    shots = 4000
    bits = hdqnn.sample(circuit, x, w, shots=shots, noise=model, method=method, seed=3)
    assert bits.shape == (4, shots, 3) and bits.dtype == np.uint8
    probs = reference.probabilities(circuit, x, w, noise=model).reshape(4, 2, 2, 2)
    p1 = np.stack([probs.sum(axis=(2, 3))[:, 1], probs.sum(axis=(1, 3))[:, 1], probs.sum(axis=(1, 2))[:, 1]], axis=1)
    bound = 5 * np.sqrt(p1 * (1 - p1) / shots) + 1e-9
    assert np.all(np.abs(hdqnn.marginals(bits) - p1) <= bound)
    np.testing.assert_array_equal(bits, hdqnn.sample(circuit, x, w, shots=shots, noise=model, method=method, seed=3))


def test_sample_readout_off_misreads_nothing(rng):
    """A circuit that prepares |1> exactly, a strong readout error: off, every shot reads 1."""
    circuit = hdqnn.Circuit(1).x(0)
    model = NoiseModel().add_readout(ReadoutError(0.0, 0.5))
    on = hdqnn.sample(circuit, shots=400, noise=model, seed=1)
    off = hdqnn.sample(circuit, shots=400, noise=model, seed=1, readout=False)
    assert off.all() and 0.3 < on.mean() < 0.7


def test_a_circuit_without_gates_is_only_misread(rng):
    """No gates: the state stays |00>, the readout error alone shapes what is measured."""
    model = NoiseModel().add(depolarizing(0.2), "ry").add_readout(ReadoutError(0.1, 0.0))
    circuit = hdqnn.Circuit(2)
    np.testing.assert_allclose(hdqnn.probabilities(circuit, noise=model), [[0.81, 0.09, 0.09, 0.01]], atol=ATOL)
    np.testing.assert_allclose(hdqnn.expval(circuit, noise=model), [[0.8, 0.8]], atol=ATOL)
    gi, gw = hdqnn.vjp(circuit, None, None, np.ones((1, 2)), noise=model)
    assert gi.shape == (1, 0) and gw.shape == (0,)


def test_auto_says_which_method_it_chose(case, caplog, monkeypatch):
    circuit, x, w, model = case
    with caplog.at_level(logging.INFO, logger="hdqnn.sim"):
        hdqnn.expval(circuit, x, w, noise=model)
    assert "chose 'density_matrix'" in caplog.text
    assert noisy.choose_method(3) == "density_matrix"
    assert noisy.choose_method(noisy.AUTO_DENSITY_MAX_QUBITS + 1) == "trajectories"
    monkeypatch.setattr(noisy, "available_memory", lambda: 1 << 18)  # 256 KiB: 8 qubits' state (512 KiB) does not fit
    assert noisy.choose_method(8) == "trajectories"


def test_density_memory_is_checked_before_allocating(case, monkeypatch):
    """4**n entries per sample in flight are charged (float64 Pauli coefficients in the compiled
    engine, complex128 in the Numba twin), and a call that cannot fit is refused."""
    circuit = hdqnn.ansatz.hardware_efficient(12, 1)
    x, w = np.zeros((2, 12)), np.zeros(circuit.n_weights)
    model = NoiseModel().add(depolarizing(0.01), "ry")
    # one 12-qubit state (128 MiB) is past memory.UNCHECKED_BYTES on any thread count, and past this
    monkeypatch.setattr(memory, "available_memory", lambda: 64 << 20)
    with pytest.raises(ValueError, match="too large for memory"):
        hdqnn.expval(circuit, x, w, noise=model, method="density_matrix")
    p = hdqnn.sim.arrays.prepare(circuit, x, w)
    assert sum(noisy.density_need("expval", p, 12).values()) >= 4**12 * 8


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="exact"), "unknown noisy simulation method"),
    (dict(method="trajectories", trajectories=0), "trajectories must be a positive int"),
    (dict(method="trajectories", trajectories=2.5), "trajectories must be a positive int"),
    (dict(method="density_matrix", trajectories=10), "trajectories= is for"),
    (dict(backend="numpy"), "leave backend at None"),
    (dict(device="cuda"), "noisy simulation runs on the CPU"),
    (dict(seed=-1, method="trajectories"), "seed must be"),
])
def test_bad_noise_arguments_raise_clear_errors(case, kwargs, match):
    circuit, x, w, model = case
    with pytest.raises(ValueError, match=match):
        hdqnn.expval(circuit, x, w, noise=model, **kwargs)


def test_noise_on_a_wire_the_circuit_lacks_is_refused(case):
    circuit, x, w, _ = case
    model = NoiseModel().add(depolarizing(0.1), "ry", wires=[5])
    with pytest.raises(ValueError, match="names wire 5 but the circuit has 3"):
        hdqnn.expval(circuit, x, w, noise=model)
    with pytest.raises(TypeError, match="noise must be an hdqnn.noise.NoiseModel"):
        hdqnn.probabilities(circuit, x, w, noise="fake_manila")


def test_method_without_noise_and_trajectory_vjp_are_refused(case):
    circuit, x, w, model = case
    with pytest.raises(ValueError, match="pass noise=model"):
        hdqnn.expval(circuit, x, w, method="trajectories")
    with pytest.raises(ValueError, match="exact noisy VJP runs on the density matrix"):
        hdqnn.vjp(circuit, x, w, np.ones((4, 3)), noise=model, method="trajectories")


# ---------------------------------------------------------------------- QuantumLayer
@pytest.mark.parametrize("grad", ["adjoint", "parameter-shift", "qtdnn"])
def test_layer_runs_the_noisy_circuit_in_every_grad_mode(case, grad):
    torch = pytest.importorskip("torch")
    circuit, x, _, model = case
    layer = hdqnn.QuantumLayer(circuit, grad=grad, noise=model, seed=0).double()
    xt = torch.from_numpy(x).requires_grad_(True)
    y = layer(xt)
    w = layer.weight.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy(), reference.expval(circuit, x, w, noise=model), atol=ATOL)
    y.sum().backward()
    exact_i, exact_w = hdqnn.vjp(circuit, x, w, np.ones((4, 3)), noise=model)
    if grad != "qtdnn":  # the shift rule is exact for the noisy expectation too (noise is angle-free)
        np.testing.assert_allclose(xt.grad.numpy(), exact_i, atol=1e-9)
        np.testing.assert_allclose(layer.weight.grad.numpy(), exact_w, atol=1e-9)
    else:
        assert torch.isfinite(xt.grad).all()
    assert layer.gradient_fidelity(xt)["cosine"] > (0.999 if grad != "qtdnn" else -1.0)
    assert "noise=" in repr(layer)


def test_layer_with_noise_and_shots_gives_unbiased_estimates(case):
    torch = pytest.importorskip("torch")
    circuit, x, _, model = case
    shots = 2000
    layer = hdqnn.QuantumLayer(circuit, grad="parameter-shift", noise=model, shots=shots, seed=1).double()
    y = layer(torch.from_numpy(x)).detach().numpy()
    exact = reference.expval(circuit, x, layer.weight.detach().numpy(), noise=model)
    assert np.all(np.abs(y - exact) <= 5 * np.sqrt((1 - exact**2) / shots) + 1e-9)


def test_layer_refuses_noise_with_a_runner_or_a_bad_model(case):
    pytest.importorskip("torch")
    from hdqnn.autograd.runner import SimulatorRunner

    circuit, _, _, model = case
    with pytest.raises(ValueError, match="cannot be combined"):
        hdqnn.QuantumLayer(circuit, noise=model, runner=SimulatorRunner())
    with pytest.raises(ValueError, match="names wire 7"):
        hdqnn.QuantumLayer(circuit, noise=NoiseModel().add(depolarizing(0.1), "rz", wires=[7]))
