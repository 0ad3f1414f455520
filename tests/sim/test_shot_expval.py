"""Shot estimates from multinomial counts (``hdqnn.sim.sampling.shot_expval``): the distribution of
estimates from single-shot bitstrings, at O(B 2**n) cost."""
from __future__ import annotations

import numpy as np
import pytest

import hdqnn
from hdqnn.circuits import compile_observables
from hdqnn.sim import noisy
from hdqnn.sim.sampling import shot_expval, z_signs
from tests.circuit_factory import random_circuit
from tests.noise.factory import random_noise_model

original = noisy.sample
OBSERVABLES = ["ZIZ", "IZI", "ZZZ", "III"]


def _problem(seed: int):
    rng = np.random.default_rng(seed)
    circuit = random_circuit(rng, 3, n_inputs=2, n_weights=3)
    return rng, circuit, rng.uniform(-1, 1, (4, 2)), rng.uniform(-1, 1, 3)


def test_z_signs_match_the_parity_of_sampled_bits():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (1, 64, 3), dtype=np.uint8)
    paulis = compile_observables(OBSERVABLES, 3)
    index = (bits[0].astype(np.int64) << np.array([2, 1, 0])).sum(axis=1)
    np.testing.assert_array_equal(z_signs(paulis)[:, index].T.mean(axis=0),
                                  hdqnn.expval_from_samples(bits, OBSERVABLES)[0])


@pytest.mark.parametrize("noisy", [False, True])
def test_estimates_are_unbiased_with_the_binomial_spread(noisy):
    rng, circuit, x, w = _problem(1)
    model = random_noise_model(rng, 3) if noisy else None
    exact = hdqnn.expval(circuit, x, w, OBSERVABLES, noise=model)
    shots, draws = 200, 400
    gen = np.random.default_rng(2)
    estimates = np.stack([shot_expval(circuit, x, w, OBSERVABLES, shots, gen, noise=model) for _ in range(draws)])
    sd = np.sqrt(np.clip(1.0 - exact**2, 0.0, None) / shots)
    # the mean of `draws` estimates within 5 standard errors; their spread that of `shots` single shots
    assert np.all(np.abs(estimates.mean(axis=0) - exact) <= 5 * sd / np.sqrt(draws) + 1e-12)
    measured_sd = estimates.std(axis=0, ddof=1)
    np.testing.assert_allclose(measured_sd[:, :3], sd[:, :3], rtol=0.2)
    np.testing.assert_array_equal(estimates[:, :, 3], 1.0)  # the identity is measured exactly


def test_noisy_estimates_include_readout_error():
    rng, circuit, x, w = _problem(3)
    model = hdqnn.noise.NoiseModel().add_readout(hdqnn.noise.ReadoutError(0.3, 0.0))
    flipped = hdqnn.expval(circuit, x, w, ["ZII"], noise=model)
    assert not np.allclose(flipped, hdqnn.expval(circuit, x, w, ["ZII"]))
    mean = np.mean([shot_expval(circuit, x, w, ["ZII"], 2000, np.random.default_rng(s), noise=model)
                    for s in range(50)], axis=0)
    np.testing.assert_allclose(mean, flipped, atol=5 / np.sqrt(2000 * 50))


def test_the_same_generator_state_gives_the_same_estimates():
    _, circuit, x, w = _problem(4)
    a = shot_expval(circuit, x, w, OBSERVABLES, 100, np.random.default_rng(7))
    b = shot_expval(circuit, x, w, OBSERVABLES, 100, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad, message", [(["XII"], "diagonal"), (["ZZ"], "has 2 letters")])
def test_bad_observables_are_refused(bad, message):
    _, circuit, x, w = _problem(5)
    with pytest.raises(ValueError, match=message):
        shot_expval(circuit, x, w, bad, 10)


def test_bad_shots_are_refused():
    _, circuit, x, w = _problem(6)
    with pytest.raises(ValueError, match="shots must be a positive int"):
        shot_expval(circuit, x, w, OBSERVABLES, 0)


def test_registers_beyond_the_density_matrix_take_one_trajectory_per_shot(monkeypatch):
    rng, circuit, x, w = _problem(8)
    model = random_noise_model(rng, 3)
    monkeypatch.setattr(noisy, "choose_method", lambda *args, **kwargs: "trajectories")
    calls = []
    monkeypatch.setattr(noisy, "sample", lambda *args: calls.append(args) or original(*args))
    shots = 4000
    estimates = shot_expval(circuit, x, w, OBSERVABLES, shots, np.random.default_rng(9), noise=model)
    assert len(calls) == 1 and calls[0][2] is model  # drawn by the trajectory sampler
    exact = hdqnn.expval(circuit, x, w, OBSERVABLES, noise=model, method="density_matrix")
    assert np.all(np.abs(estimates - exact) <= 5 * np.sqrt(np.clip(1 - exact**2, 0, None) / shots) + 1e-12)
