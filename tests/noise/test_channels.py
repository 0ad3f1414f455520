"""Channel algebra: CPTP, Kraus <-> superoperator <-> PTM, named channels' defining actions, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hdqnn import noise
from hdqnn.noise import ReadoutError, kraus, kraus_from_superop, pauli_basis
from tests.noise.aer import qiskit_ops, require_aer
from tests.noise.factory import random_density, random_kraus


def every_channel(rng: np.random.Generator):
    """One of each kind, one- and two-qubit."""
    return [
        noise.depolarizing(0.13), noise.depolarizing(0.21, n_qubits=2), noise.depolarizing(4 / 3),
        noise.pauli_channel(0.05, 0.1, 0.2), noise.amplitude_damping(0.3), noise.phase_damping(0.4),
        noise.thermal_relaxation(50.0, 70.0, 5.0), noise.thermal_relaxation(50.0, 20.0, 5.0),
        noise.thermal_relaxation(math.inf, math.inf, 1.0),
        kraus(random_kraus(rng, 1)), kraus(random_kraus(rng, 2, k=5)),
        noise.amplitude_damping(0.2).tensor(noise.phase_damping(0.7)),
    ]


def test_every_channel_is_cptp_and_its_forms_agree(rng):
    for channel in every_channel(rng):
        ops, d = channel.kraus_ops, channel.dim
        np.testing.assert_allclose(np.einsum("kji,kjl->il", ops.conj(), ops), np.eye(d), atol=1e-12)
        assert not ops.flags.writeable
        rho = random_density(rng, d)
        out = channel.apply(rho)
        # superoperator on the row-major vec, and the PTM on Pauli coordinates, give the same image
        np.testing.assert_allclose(channel.superop @ rho.reshape(-1), out.reshape(-1), atol=1e-12)
        basis = pauli_basis(channel.n_qubits)
        coords = np.einsum("iab,ba->i", basis, rho).real
        out_coords = np.einsum("iab,ba->i", basis, out).real
        np.testing.assert_allclose(channel.ptm @ coords, out_coords, atol=1e-12)
        # trace preserving: the PTM's first row is (1, 0, ..., 0); CP: the Choi matrix is PSD
        np.testing.assert_allclose(channel.ptm[0], np.eye(d * d)[0], atol=1e-12)
        np.testing.assert_allclose(np.trace(out), 1.0, atol=1e-12)
        np.testing.assert_allclose(kraus_from_superop(channel.superop).superop, channel.superop, atol=1e-12)


def test_depolarizing_limits_and_pauli_weights():
    np.testing.assert_allclose(noise.depolarizing(0.0).superop, np.eye(4), atol=0)
    np.testing.assert_allclose(noise.depolarizing(0.0, n_qubits=2).ptm, np.eye(16), atol=1e-15)
    assert noise.depolarizing(0.0).kraus_ops.shape == (1, 2, 2)  # zero-weight Paulis dropped
    full = noise.depolarizing(1.0, n_qubits=2)
    np.testing.assert_allclose(full.apply(np.diag([1.0, 0, 0, 0])), np.eye(4) / 4, atol=1e-15)
    # PTM of depolarizing(p): diag(1, 1 - p, 1 - p, 1 - p)
    np.testing.assert_allclose(noise.depolarizing(0.3).ptm, np.diag([1, 0.7, 0.7, 0.7]), atol=1e-15)
    np.testing.assert_allclose(noise.pauli_channel(0.1, 0.2, 0.3).ptm, np.diag([1, 0.0, 0.2, 0.4]), atol=1e-15)


def test_damping_channels_act_as_defined():
    rho = np.array([[0.25, 0.4], [0.4, 0.75]], dtype=np.complex128)
    out = noise.amplitude_damping(0.3).apply(rho)
    np.testing.assert_allclose(out, [[0.25 + 0.3 * 0.75, 0.4 * math.sqrt(0.7)], [0.4 * math.sqrt(0.7), 0.7 * 0.75]])
    out = noise.phase_damping(0.36).apply(rho)
    np.testing.assert_allclose(out, [[0.25, 0.4 * 0.8], [0.4 * 0.8, 0.75]])
    t1, t2, t = 40.0, 55.0, 7.0
    out = noise.thermal_relaxation(t1, t2, t).apply(rho)
    p1 = 0.75 * math.exp(-t / t1)
    np.testing.assert_allclose(out, [[1 - p1, 0.4 * math.exp(-t / t2)], [0.4 * math.exp(-t / t2), p1]], atol=1e-15)


def test_compose_and_tensor(rng):
    a, b = kraus(random_kraus(rng, 1)), noise.amplitude_damping(0.4)
    np.testing.assert_allclose(a.compose(b).superop, b.superop @ a.superop, atol=1e-12)
    two, other = noise.depolarizing(0.2, 2), kraus(random_kraus(rng, 2, k=6))
    composed = two.compose(other)  # 16 x 6 products -> at most 16 operators by the Choi rank
    assert len(composed.kraus_ops) <= 16
    np.testing.assert_allclose(composed.superop, other.superop @ two.superop, atol=1e-12)
    r0, r1 = random_density(rng, 2), random_density(rng, 2)
    np.testing.assert_allclose(a.tensor(b).apply(np.kron(r0, r1)), np.kron(a.apply(r0), b.apply(r1)), atol=1e-12)
    with pytest.raises(ValueError, match="cannot compose a 1-qubit channel with a 2-qubit"):
        a.compose(two)
    with pytest.raises(ValueError, match="tensor takes two one-qubit channels"):
        two.tensor(a)


def test_channels_are_hashable_values(rng):
    assert noise.depolarizing(0.1) == noise.depolarizing(0.1)
    assert hash(noise.amplitude_damping(0.2)) == hash(noise.amplitude_damping(0.2))
    assert noise.depolarizing(0.1) != noise.depolarizing(0.1, n_qubits=2)
    assert noise.phase_damping(0.2) != noise.amplitude_damping(0.2)
    ops = random_kraus(rng, 1)
    assert kraus(ops) == kraus(ops.copy()) and len({kraus(ops), kraus(ops)}) == 1
    assert repr(noise.depolarizing(0.1)) == "depolarizing(p=0.1, n_qubits=1)"
    assert repr(kraus(ops)) == "kraus(<3 operator(s) on 1 qubit(s)>)"
    with pytest.raises(AttributeError):
        noise.depolarizing(0.1).kind = "x"


def test_named_channels_equal_aers_of_the_same_name(rng):
    """Our Kraus sets define the same maps as Aer's standard errors (via its superoperators)."""
    require_aer()
    from qiskit.quantum_info import SuperOp
    from qiskit_aer.noise import (amplitude_damping_error, depolarizing_error, kraus_error, pauli_error,
                                  phase_damping_error, thermal_relaxation_error)

    pairs = [
        (noise.depolarizing(0.17), depolarizing_error(0.17, 1)),
        (noise.depolarizing(0.9, 2), depolarizing_error(0.9, 2)),
        (noise.pauli_channel(0.1, 0.02, 0.3), pauli_error([("X", 0.1), ("Y", 0.02), ("Z", 0.3), ("I", 0.58)])),
        (noise.amplitude_damping(0.23), amplitude_damping_error(0.23)),
        (noise.phase_damping(0.31), phase_damping_error(0.31)),
        (noise.thermal_relaxation(80e-6, 60e-6, 50e-9), thermal_relaxation_error(80e-6, 60e-6, 50e-9)),
        (noise.thermal_relaxation(80e-6, 150e-6, 2e-6), thermal_relaxation_error(80e-6, 150e-6, 2e-6)),
    ]
    two = kraus(random_kraus(rng, 2))
    pairs.append((two, kraus_error(qiskit_ops(two))))
    for ours, theirs in pairs:
        expected = _kraus_superop(qiskit_ops(ours))
        np.testing.assert_allclose(SuperOp(theirs.to_quantumchannel()).data, expected.data, atol=1e-12,
                                   err_msg=repr(ours))


def _kraus_superop(ops):
    from qiskit.quantum_info import Kraus, SuperOp

    return SuperOp(Kraus(list(ops)))


def test_readout_error_confusion():
    e = ReadoutError(0.1, 0.25)
    np.testing.assert_allclose(e.confusion, [[0.9, 0.25], [0.1, 0.75]])
    np.testing.assert_allclose(e.confusion @ [1.0, 0.0], [0.9, 0.1])
    assert e == ReadoutError(0.1, 0.25) and hash(e) == hash(ReadoutError(0.1, 0.25))


@pytest.mark.parametrize("build, message", [
    (lambda: noise.depolarizing(-0.1), r"depolarizing p must be in \[0, 1.33333\]"),
    (lambda: noise.depolarizing(1.4), r"depolarizing p must be in \[0, 1.33333\]"),
    (lambda: noise.depolarizing(float("nan")), "depolarizing p must be in"),
    (lambda: noise.depolarizing(0.1, n_qubits=3), "depolarizing acts on 1 or 2 qubits"),
    (lambda: noise.depolarizing(0.1, n_qubits=True), "depolarizing acts on 1 or 2 qubits"),
    (lambda: noise.pauli_channel(0.5, 0.4, 0.2), r"px \+ py \+ pz must be <= 1"),
    (lambda: noise.pauli_channel(0.1, -0.1, 0.2), r"py must be in \[0, 1\]"),
    (lambda: noise.amplitude_damping(1.5), r"amplitude_damping gamma must be in \[0, 1\]"),
    (lambda: noise.phase_damping(-1e-3), r"phase_damping lam must be in \[0, 1\]"),
    (lambda: noise.thermal_relaxation(10.0, 25.0, 1.0), r"t2 <= 2 \* t1"),
    (lambda: noise.thermal_relaxation(0.0, 1.0, 1.0), "t1 must be > 0"),
    (lambda: noise.thermal_relaxation(10.0, -1.0, 1.0), "t2 must be > 0"),
    (lambda: noise.thermal_relaxation(10.0, 10.0, -1.0), "time must be >= 0"),
    (lambda: noise.thermal_relaxation(10.0, 10.0, math.inf), "time must be finite"),
    (lambda: kraus([[1, 0], [0, 0.5]]), "not trace preserving"),
    (lambda: kraus(np.eye(8)), r"d = 2 \(1 qubit\) or 4 \(2 qubits\)"),
    (lambda: kraus(np.ones((2, 2, 3))), r"\[K >= 1, d, d\]"),
    (lambda: kraus([]), r"\[K >= 1, d, d\]"),
    (lambda: kraus([[np.nan, 0], [0, 1]]), "must be finite"),
    (lambda: kraus([["a", 0], [0, 1]]), "array of numbers"),
    # the transpose map: positive but not completely positive
    (lambda: kraus_from_superop(np.eye(4)[[0, 2, 1, 3]]), "not completely positive"),
    (lambda: kraus_from_superop(np.eye(3)), r"\[4, 4\] or \[16, 16\]"),
    (lambda: ReadoutError(0.1, 1.2), r"p_meas0_given1 must be in \[0, 1\]"),
])
def test_bad_channel_parameters_raise_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("build", [
    lambda: noise.depolarizing("0.1"), lambda: noise.amplitude_damping(None),
    lambda: noise.thermal_relaxation(1.0, 1.0, "1"), lambda: ReadoutError(True, 0.1),
])
def test_non_numeric_parameters_raise_type_error(build):
    with pytest.raises(TypeError, match="must be a real number"):
        build()
