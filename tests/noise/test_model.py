"""NoiseModel: rule resolution, freezing, value semantics, printing, JSON, bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hdqnn import noise
from hdqnn.noise import NoiseModel, ReadoutError, kraus
from tests.noise.factory import random_kraus

DEP = noise.depolarizing(0.01)
AMP = noise.amplitude_damping(0.1)
PHASE = noise.phase_damping(0.2)
DEP2 = noise.depolarizing(0.05, n_qubits=2)


def full_model(rng) -> NoiseModel:
    """Every channel kind, all-wire and wire-specific rules, readout of both kinds."""
    return (NoiseModel()
            .add(DEP, ["ry", "rz"])
            .add(noise.pauli_channel(0.01, 0.02, 0.03), "h")
            .add(AMP, "ry", wires=[0, 2])
            .add(noise.thermal_relaxation(math.inf, 1e-4, 3.5e-8), "sx", wires=1)
            .add(noise.thermal_relaxation(1.1e-4, 2e-4, 3.5e-8), "x")
            .add(kraus(random_kraus(rng, 1)), "u")
            .add(kraus(random_kraus(rng, 2)), ["cx", "cz"], wires=[(0, 1), (2, 1)])
            .add(DEP2, "cx")
            .add_readout(ReadoutError(0.02, 0.05))
            .add_readout(ReadoutError(0.1, 0.0), wires=[1, 3]))


def test_rules_resolve_as_in_aer():
    model = (NoiseModel().add(DEP, ["ry", "rz"]).add(AMP, "ry").add(PHASE, "ry", wires=[1])
             .add(DEP, "ry", wires=1).add(DEP2, "cx", wires=(0, 1)))
    assert model.channels_after("ry", (0,)) == (DEP, AMP)  # all-wire rules, in the order added
    assert model.channels_after("ry", (1,)) == (PHASE, DEP)  # wire-specific rules replace them
    assert model.channels_after("rz", (1,)) == (DEP,)
    assert model.channels_after("cx", (0, 1)) == (DEP2,)
    assert model.channels_after("cx", (1, 0)) == ()  # pairs are ordered: control first
    assert model.channels_after("h", (0,)) == ()


def test_readout_resolution():
    model = NoiseModel().add_readout(ReadoutError(0.1, 0.2), wires=[2]).add_readout(ReadoutError(0.01, 0.02))
    assert model.readout_error(2) == ReadoutError(0.1, 0.2)
    assert model.readout_error(0) == ReadoutError(0.01, 0.02)
    assert NoiseModel().add_readout(ReadoutError(0.1, 0.2), wires=0).readout_error(1) is None


def test_model_freezes_on_use_and_then_refuses_mutation():
    used = NoiseModel().add(DEP, "ry")
    used.channels_after("ry", (0,))
    hashed = NoiseModel().add(DEP, "ry")
    hash(hashed)
    explicit = NoiseModel().add(DEP, "ry").freeze()
    for model in (used, hashed, explicit):
        assert model.frozen
        with pytest.raises(RuntimeError, match="frozen"):
            model.add(AMP, "rz")
        with pytest.raises(RuntimeError, match="frozen"):
            model.add_readout(ReadoutError(0.1, 0.1))
    copy = explicit.copy().add(AMP, "rz")  # a copy is mutable again, the original untouched
    assert len(copy.rules) == 2 and len(explicit.rules) == 1
    assert not NoiseModel().add(DEP, "ry").frozen


def test_equality_hash_and_printing(rng):
    a, b = full_model(np.random.default_rng(3)), full_model(np.random.default_rng(3))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != full_model(np.random.default_rng(4))
    assert NoiseModel().add(DEP, ["ry", "rz"]) != NoiseModel().add(DEP, ["rz", "ry"])
    text = str(a)
    assert text.splitlines()[0] == repr(a) == "NoiseModel(rules=8, readout=2, frozen=True)"
    assert "depolarizing(p=0.01, n_qubits=1) after ry, rz on all wires" in text
    assert "amplitude_damping(gamma=0.1) after ry on wires 0, 2" in text
    assert "after cx, cz on wires (0, 1), (2, 1)" in text
    assert "readout ReadoutError(p_meas1_given0=0.1, p_meas0_given1=0.0) on wires 1, 3" in text


def test_json_round_trip_is_exact(rng):
    model = full_model(rng)
    text = model.to_json()
    back = NoiseModel.from_json(text)
    assert back == model and back.to_json() == text
    for ours, theirs in zip(model.rules, back.rules):
        assert np.array_equal(ours.channel.kraus_ops, theirs.channel.kraus_ops)  # bit for bit
    assert not back.frozen
    # named channels travel as their parameters, not as matrices
    rule = json.loads(text)["rules"][0]
    assert rule == {"channel": {"kind": "depolarizing", "p": 0.01, "n_qubits": 1}, "gates": ["ry", "rz"], "wires": None}
    assert NoiseModel.from_json(NoiseModel().to_json()) == NoiseModel()


@pytest.mark.parametrize("text, message", [
    ("{not json", "malformed"),
    ('{"format": "other", "rules": []}', "not an hdqnn noise model"),
    ('{"format": "hdqnn.noise/1", "rules": [], "extra": 1}', "unknown noise model fields"),
    ('{"format": "hdqnn.noise/1", "rules": [{"channel": {"kind": "nope"}, "gates": ["x"], "wires": null}]}',
     "unknown channel kind 'nope'"),
    ('{"format": "hdqnn.noise/1", "rules": [{"channel": {"kind": "depolarizing", "q": 1}, "gates": ["x"], '
     '"wires": null}]}', "bad fields for channel 'depolarizing'"),
    ('{"format": "hdqnn.noise/1", "rules": [{"channel": {"kind": "amplitude_damping", "gamma": 2}, '
     '"gates": ["x"], "wires": null}]}', "gamma must be in"),
    ('{"format": "hdqnn.noise/1", "rules": [{"channel": {"kind": "kraus", "real": [[[1, 0], [0, 1]]], '
     '"imag": [[[0, 0], [0, 0.5]]]}, "gates": ["x"], "wires": null}]}', "not trace preserving"),
    ('{"format": "hdqnn.noise/1", "rules": [{"gates": ["x"]}]}', "bad rule"),
    ('{"format": "hdqnn.noise/1", "readout": [{"error": {"p_meas1_given0": 0.1}, "wires": null}]}',
     "needs exactly p_meas1_given0 and p_meas0_given1"),
])
def test_bad_json_raises_value_error(text, message):
    with pytest.raises(ValueError, match=message):
        NoiseModel.from_json(text)


@pytest.mark.parametrize("build, error, message", [
    (lambda m: m.add(DEP, ["ry", "rzx"]), ValueError, "unknown gate 'rzx' in a noise rule"),
    (lambda m: m.add(DEP, "cx"), ValueError, "a 1-qubit channel cannot follow gate 'cx'"),
    (lambda m: m.add(DEP2, ["ry"]), ValueError, "a 2-qubit channel cannot follow gate 'ry'"),
    (lambda m: m.add(DEP, []), ValueError, "at least one gate name"),
    (lambda m: m.add(DEP, ["ry", "ry"]), ValueError, "names a gate twice"),
    (lambda m: m.add(DEP, "ry", wires=[-1]), ValueError, "wire must be >= 0"),
    (lambda m: m.add(DEP, "ry", wires=[]), ValueError, "at least one wire"),
    (lambda m: m.add(DEP, "ry", wires=[1, 1]), ValueError, "same wires twice"),
    (lambda m: m.add(DEP2, "cx", wires=[0, 1, 2]), ValueError, "must be pairs like"),
    (lambda m: m.add(DEP2, "cx", wires=[(1, 1)]), ValueError, "repeats wire 1"),
    (lambda m: m.add(DEP, "ry", wires=[0.5]), TypeError, "must be an int"),
    (lambda m: m.add("depolarizing", "ry"), TypeError, "must be an hdqnn.noise channel"),
    (lambda m: m.add_readout(ReadoutError(0.1, 0.1)).add_readout(ReadoutError(0.2, 0.2)), ValueError,
     "already has an all-wire readout error"),
    (lambda m: m.add_readout(ReadoutError(0.1, 0.1), [0, 1]).add_readout(ReadoutError(0.2, 0.2), 1), ValueError,
     "wire 1 would get two readout errors"),
    (lambda m: m.add_readout(ReadoutError(0.1, 0.1), [2, 2]), ValueError, "wire 2 would get two"),
    (lambda m: m.add_readout((0.1, 0.1)), TypeError, "must be an hdqnn.noise.ReadoutError"),
])
def test_bad_rules_raise(build, error, message):
    with pytest.raises(error, match=message):
        build(NoiseModel())
