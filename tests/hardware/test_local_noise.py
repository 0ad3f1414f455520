"""LocalSampler(noise=model): shots from the noisy device, checked against the NumPy reference's
exact noisy probabilities (gate noise and readout error) within 5-sigma bounds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hdqnn
from hdqnn import Circuit, noise
from hdqnn.hardware import LocalSampler, with_measurement_basis
from hdqnn.noise import reference
from hdqnn.qasm import dumps
from tests.circuit_factory import random_circuit
from tests.hardware.test_adapters import SHOTS, SIGMAS, within_shot_bounds
from tests.noise.factory import random_noise_model

#: A readout error large enough that 2000 shots cannot miss it.
MISREAD = noise.ReadoutError(0.2, 0.1)


def expectation_bound(want: np.ndarray, shots: int) -> np.ndarray:
    """5 sigma of a mean of +-1 outcomes with expectation ``want``, plus one shot's worth."""
    return SIGMAS * np.sqrt((1 - want**2) / shots) + 1.0 / shots


@pytest.mark.parametrize("method", ["density_matrix", "trajectories"])
def test_run_counts_follow_the_noisy_probabilities(method):
    rng = np.random.default_rng(21)
    c = random_circuit(rng, 3)
    model = random_noise_model(rng, 3)
    x, w = rng.normal(size=(2, c.n_inputs)), rng.normal(size=c.n_weights)
    sampler = LocalSampler(7, noise=model, method=method)
    counts = sampler._execute([c], x, w, SHOTS)
    probs = reference.probabilities(c, x, w, noise=model)
    noiseless = hdqnn.probabilities(c, x, w, backend="numpy")
    assert np.abs(probs - noiseless).max() > 0.05  # the model matters at this shot count
    for row_counts, row_probs in zip(counts, probs):
        within_shot_bounds(row_counts, row_probs, SHOTS)
    assert (sampler.shots_used, sampler.circuits_run) == (2 * SHOTS, 2)


def test_submitted_programs_are_sampled_on_the_noisy_device():
    rng = np.random.default_rng(22)
    c = random_circuit(rng, 3)
    model = random_noise_model(rng, 3)
    x, w = rng.normal(size=(2, c.n_inputs)), rng.normal(size=c.n_weights)
    sampler = LocalSampler(8, noise=model)
    counts = sampler.submit(sampler.export(c, x, w), SHOTS)
    for row_counts, row_probs in zip(counts, reference.probabilities(c, x, w, noise=model)):
        within_shot_bounds(row_counts, row_probs, SHOTS)


def test_readout_error_shows_in_counts_and_estimates():
    c = Circuit(2).x(1)  # |01>: a perfect device always reads "01"
    model = noise.NoiseModel().add_readout(MISREAD)
    assert LocalSampler(1).submit([dumps(c)], SHOTS) == [{"01": SHOTS}]
    counts = LocalSampler(1, noise=model).submit([dumps(c)], SHOTS)[0]
    # wire 0 prepared 0 reads 1 with p(1|0) = 0.2; wire 1 prepared 1 reads 0 with p(0|1) = 0.1
    want = {"01": 0.8 * 0.9, "11": 0.2 * 0.9, "00": 0.8 * 0.1, "10": 0.2 * 0.1}
    within_shot_bounds(counts, np.array([want[f"{i:02b}"] for i in range(4)]), SHOTS)
    z = LocalSampler(2, noise=model).run(c, None, None, SHOTS)[0]
    want_z = np.array([1 - 2 * 0.2, -(1 - 2 * 0.1)])
    assert np.all(np.abs(z - want_z) <= expectation_bound(want_z, SHOTS)), (z, want_z)


def test_run_estimates_pauli_strings_of_the_noisy_device():
    rng = np.random.default_rng(23)
    c = hdqnn.ansatz.hardware_efficient(3, 1)
    model = random_noise_model(rng, 3)
    x, w = rng.normal(size=(2, 3)), rng.normal(size=c.n_weights)
    observables = ["ZII", "IZZ", "XIX", "IYI"]
    got = LocalSampler(9, noise=model).run(c, x, w, SHOTS, observables)
    # the basis rotations (H, Sdg H) are gates of the device, with the model's noise after them
    want = np.stack([reference.expval(with_measurement_basis(c, s.replace("I", "Z")), x, w, noise=model,
                                      observables=s.replace("X", "Z").replace("Y", "Z"))[:, 0]
                     for s in observables], axis=1)
    assert np.all(np.abs(got - want) <= expectation_bound(want, SHOTS)), np.abs(got - want)


def test_a_layer_on_the_noisy_sampler_estimates_the_noisy_expectations():
    rng = np.random.default_rng(24)
    c = hdqnn.ansatz.hardware_efficient(2, 1)
    model = (noise.NoiseModel().add(noise.depolarizing(0.1), ["ry", "rz"])
             .add(noise.depolarizing(0.2, 2), "cx").add_readout(MISREAD))
    layer = hdqnn.QuantumLayer(c, grad="parameter-shift", shots=SHOTS, runner=LocalSampler(3, noise=model), seed=0)
    x = torch.tensor(rng.normal(size=(3, 2)))
    got = layer(x).detach().numpy()
    want = hdqnn.expval(c, x.numpy(), layer.weight.detach().double().numpy(), noise=model)
    assert np.all(np.abs(got - want) <= expectation_bound(want, SHOTS))


def test_the_seed_reproduces_noisy_shots():
    rng = np.random.default_rng(25)
    c = random_circuit(rng, 2)
    model = random_noise_model(rng, 2)
    x, w = rng.normal(size=(2, c.n_inputs)), rng.normal(size=c.n_weights)
    runs = [LocalSampler(5, noise=model).run(c, x, w, 100) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_bad_noise_arguments_are_refused():
    with pytest.raises(TypeError, match="NoiseModel"):
        LocalSampler(noise="fake_manila")
    model = noise.NoiseModel().add(noise.depolarizing(0.1), "x", wires=[2])
    with pytest.raises(ValueError, match="backend"):
        LocalSampler(noise=model, backend="numpy")
    with pytest.raises(ValueError, match="pass noise=model"):
        LocalSampler(method="trajectories")
    with pytest.raises(ValueError, match="unknown noisy simulation method"):
        LocalSampler(noise=model, method="exact")
    sampler = LocalSampler(noise=model)
    with pytest.raises(ValueError, match="names wire 2 but the circuit has 2 qubit"):
        sampler.run(Circuit(2).x(0), None, None, 10)
    with pytest.raises(ValueError, match="names wire 2 but the circuit has 2 qubit"):
        sampler.submit([dumps(Circuit(2).x(0))], 10)
    assert sampler.shots_used == 0
