"""Parameter-shift rule: equal to the adjoint VJP, one engine call per batch, clear refusals."""
from __future__ import annotations

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit, Input, Weight
from hdqnn.autograd import parameter_shift_vjp, slot_map
from hdqnn.circuits import SRC_INPUT, SRC_WEIGHT

from .helpers import CountingBackend, shiftable_circuit

TOL64 = 1e-10
TOL32 = 1e-5
FIVE_SIGMA = 5.0


@pytest.mark.parametrize("trial", range(4))
def test_parameter_shift_equals_adjoint_on_random_circuits(rng, trial):
    c = shiftable_circuit(rng, n_qubits=3, n_gates=10 + trial)
    b = 4
    x = rng.uniform(-2, 2, size=(b, c.n_inputs))
    w = rng.uniform(-2, 2, size=c.n_weights)
    obs = ["ZII", "XYZ", ("ZZ", (0, 2)), "IYI"]
    g = rng.normal(size=(b, len(obs)))
    gi_ref, gw_ref = hdqnn.vjp(c, x, w, g, obs)
    gi, gw = parameter_shift_vjp(c, x, w, g, obs)
    np.testing.assert_allclose(gi, gi_ref, atol=TOL64)
    np.testing.assert_allclose(gw, gw_ref, atol=TOL64)


def test_parameter_shift_per_sample_weights_and_float32(rng):
    c = shiftable_circuit(rng, n_qubits=2, n_gates=8)
    b = 3
    x = rng.uniform(-2, 2, size=(b, c.n_inputs))
    w = rng.uniform(-2, 2, size=(b, c.n_weights))
    g = rng.normal(size=(b, 2))
    gi_ref, gw_ref = hdqnn.vjp(c, x, w, g)
    gi, gw = parameter_shift_vjp(c, x, w, g)
    assert gw.shape == (b, c.n_weights)
    np.testing.assert_allclose(gi, gi_ref, atol=TOL64)
    np.testing.assert_allclose(gw, gw_ref, atol=TOL64)
    gi32, gw32 = parameter_shift_vjp(c, x.astype(np.float32), w.astype(np.float32), g)
    assert gi32.dtype == np.float32
    np.testing.assert_allclose(gi32, gi_ref, atol=TOL32 * 10)
    np.testing.assert_allclose(gw32, gw_ref, atol=TOL32 * 10)


def test_slot_map_separates_shared_angles():
    c = Circuit(2).ry(Input(0, 2.0), 0).rx(Input(0, -0.5), 1).rz(Weight(1), 0).cx(0, 1).rzz(Weight(1, 3.0), 0, 1).rx(0.3, 1)
    smap = slot_map(c)
    assert smap.n_slots == 4
    assert list(smap.source) == [SRC_INPUT, SRC_INPUT, SRC_WEIGHT, SRC_WEIGHT]
    assert list(smap.index) == [0, 0, 1, 1]
    np.testing.assert_array_equal(smap.scale, [2.0, -0.5, 1.0, 3.0])
    assert smap.circuit.n_inputs == 0 and smap.circuit.n_weights == 4
    x = np.array([[0.7]])
    w = np.array([0.0, 1.1])
    theta = smap.angles(x, w)
    np.testing.assert_allclose(theta, [[1.4, -0.35, 1.1, 3.3]])
    # The slot circuit at those angles is the original circuit.
    np.testing.assert_allclose(hdqnn.statevector(smap.circuit, None, theta), hdqnn.statevector(c, x, w), atol=TOL64)


def test_all_shifted_circuits_in_one_engine_call(rng):
    c = shiftable_circuit(rng, n_qubits=2, n_gates=6)
    backend = CountingBackend()
    b = 5
    x = rng.uniform(-1, 1, size=(b, c.n_inputs))
    w = rng.uniform(-1, 1, size=c.n_weights)
    parameter_shift_vjp(c, x, w, np.ones((b, 2)), backend=backend)
    assert backend.calls == {"expval": 1}
    assert backend.rows["expval"] == 2 * slot_map(c).n_slots * b


@pytest.mark.parametrize("gate", ["crx", "cry", "crz"])
def test_controlled_rotation_is_refused_with_a_clear_error(gate):
    c = Circuit(2).ry(Input(0), 0).append(gate, (0, 1), Weight(0))
    with pytest.raises(ValueError, match=gate):
        parameter_shift_vjp(c, np.zeros((1, 1)), np.zeros(1), np.ones((1, 2)))


def test_controlled_rotation_with_constant_angle_is_fine(rng):
    c = Circuit(2).ry(Input(0), 0).crx(0.4, 0, 1).rz(Weight(0), 1)
    x, w, g = rng.normal(size=(2, 1)), rng.normal(size=1), rng.normal(size=(2, 2))
    gi, gw = parameter_shift_vjp(c, x, w, g)
    gi_ref, gw_ref = hdqnn.vjp(c, x, w, g)
    np.testing.assert_allclose(gi, gi_ref, atol=TOL64)
    np.testing.assert_allclose(gw, gw_ref, atol=TOL64)


def test_shot_parameter_shift_is_unbiased():
    """RY(x) on one qubit: d<Z>/dx = -sin x; the shot estimate's mean over B rows is within 5 sigma."""
    c = Circuit(1).ry(Input(0), 0)
    b, shots, x0 = 400, 200, 0.8
    x = np.full((b, 1), x0)
    gi, _ = parameter_shift_vjp(c, x, None, np.ones((b, 1)), shots=shots, seed=1)
    # Var of (f+ - f-)/2 per row: (Var f+ + Var f-)/4, Var f = (1 - <Z>^2)/shots with <Z> = cos(x +- pi/2).
    var = (np.cos(x0) ** 2 + np.cos(x0) ** 2) / (4 * shots)
    assert abs(gi.mean() - (-np.sin(x0))) < FIVE_SIGMA * np.sqrt(var / b)
