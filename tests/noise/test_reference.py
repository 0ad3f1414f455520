"""The NumPy noisy reference against Qiskit Aer's density-matrix simulator, and by hand."""
from __future__ import annotations

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit, Input, Weight
from hdqnn.noise import NoiseModel, ReadoutError, amplitude_damping, depolarizing, pauli_basis, reference
from tests.circuit_factory import random_circuit, random_paulis
from tests.noise.aer import aer_density_matrices, require_aer, to_aer_model, to_qiskit
from tests.noise.factory import random_noise_model

ATOL = 1e-10
BATCH = 2


def _case(rng, n):
    circuit = random_circuit(rng, n)
    x = rng.uniform(-np.pi, np.pi, (BATCH, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    return circuit, x, w, random_noise_model(rng, n)


def _pauli_matrix(letters: str) -> np.ndarray:
    index = int("".join(str("IXYZ".index(ch)) for ch in letters), 4)
    return pauli_basis(len(letters))[index]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_noisy_density_matrix_matches_aer(rng, n):
    """Every gate, every channel kind, all-wire and wire-specific rules, complex128 at 1e-10."""
    require_aer()
    circuit, x, w, model = _case(rng, n)
    ours = reference.density_matrix(circuit, x, w, noise=model)
    theirs = aer_density_matrices(circuit, x, w, to_aer_model(model))
    np.testing.assert_allclose(ours, theirs, atol=ATOL)
    assert np.abs(ours - aer_density_matrices(circuit, x, w, None)).max() > 1e-3  # the noise acted
    np.testing.assert_allclose(reference.probabilities(circuit, x, w, noise=model, readout=False),
                               np.einsum("bii->bi", theirs).real, atol=ATOL)
    strings = random_paulis(rng, n, k=4)
    expected = np.einsum("bij,kji->bk", theirs, np.stack([_pauli_matrix(s) for s in strings])).real
    np.testing.assert_allclose(reference.expval(circuit, x, w, noise=model, observables=strings, readout=False),
                               expected, atol=ATOL)


def _readout_channel(error: ReadoutError):
    """The readout error as an Aer channel before an ideal measurement (it moves populations only)."""
    from qiskit_aer.noise import kraus_error

    (a00, a01), (a10, a11) = error.confusion
    ops = [[[a00, 0], [0, 0]], [[0, 0], [a10, 0]], [[0, a01], [0, 0]], [[0, 0], [0, a11]]]
    return kraus_error(list(np.sqrt(np.array(ops, dtype=np.complex128)))).to_instruction()


def _basis_change(letter: str):
    """The unitary taking the letter's eigenbasis to Z's, labelled so that no noise rule names it."""
    from qiskit.circuit.library import UnitaryGate

    h = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
    return UnitaryGate(h if letter == "X" else h @ np.diag([1, -1j]), label=f"to_z_from_{letter}")


@pytest.mark.parametrize("n", [2, 3])
def test_readout_matches_aer_with_readout_as_a_channel(rng, n):
    """Probabilities and expectations, X/Y strings included (measured in their rotated bases)."""
    require_aer()
    circuit, x, w, model = _case(rng, n)
    aer_model = to_aer_model(model, readout=False)
    readout = [(_readout_channel(model.readout_error(q)), [q]) for q in range(n)]
    theirs = aer_density_matrices(circuit, x, w, aer_model, readout)
    np.testing.assert_allclose(reference.probabilities(circuit, x, w, noise=model),
                               np.einsum("bii->bi", theirs).real, atol=ATOL)
    strings = random_paulis(rng, n, k=3) + ["Y" * n, "X" + "Z" * (n - 1)]
    ours = reference.expval(circuit, x, w, noise=model, observables=strings)
    bits = (np.arange(2**n)[:, None] >> (n - 1 - np.arange(n))) & 1
    for k, letters in enumerate(strings):
        rotations = [(_basis_change(ch), [q]) for q, ch in enumerate(letters) if ch in "XY"]
        probs = np.einsum("bii->bi", aer_density_matrices(circuit, x, w, aer_model, rotations + readout)).real
        parity = (-1.0) ** bits[:, [ch != "I" for ch in letters]].sum(axis=1)
        np.testing.assert_allclose(ours[:, k], probs @ parity, atol=ATOL, err_msg=letters)


def test_readout_matches_aer_measurement_statistics(rng):
    """Aer's own ReadoutError (all-wire, overridden on wire 0) on sampled bits: within 5 sigma."""
    require_aer()
    from qiskit_aer import AerSimulator

    circuit = Circuit(3).ry(1.1, 0).ry(-0.6, 1).h(2).cx(0, 2)
    model = (NoiseModel().add(depolarizing(0.05), "ry")
             .add_readout(ReadoutError(0.08, 0.15)).add_readout(ReadoutError(0.25, 0.02), wires=[0]))
    ours = reference.probabilities(circuit, noise=model)[0]
    shots = 40_000
    qc = to_qiskit(circuit, [], [])
    qc.measure_all()
    counts = AerSimulator(noise_model=to_aer_model(model), seed_simulator=11).run(qc, shots=shots).result().get_counts()
    theirs = np.zeros(8)
    for key, c in counts.items():
        theirs[int(key[::-1], 2)] = c / shots  # Qiskit's keys put qubit 0 last
    sigma = np.sqrt(ours * (1 - ours) / shots)
    assert np.all(np.abs(theirs - ours) <= 5 * sigma + 1e-12), (ours, theirs)
    # and the readout really moved the distribution by much more than the bound
    assert np.abs(reference.probabilities(circuit, noise=model, readout=False)[0] - ours).max() > 0.02


def test_noiseless_reference_equals_the_statevector_engine(rng):
    circuit = random_circuit(rng, 3)
    x = rng.uniform(-1, 1, (3, circuit.n_inputs))
    w = rng.uniform(-1, 1, (3, circuit.n_weights))  # per-sample weights
    psi = hdqnn.statevector(circuit, x, w, backend="numpy")
    pure = np.einsum("bi,bj->bij", psi, psi.conj())
    for model in (None, NoiseModel(), NoiseModel().add_readout(ReadoutError(0.0, 0.0))):
        np.testing.assert_allclose(reference.density_matrix(circuit, x, w, noise=model), pure, atol=1e-12)
    obs = ["ZIX", ("YY", (0, 2))]
    np.testing.assert_allclose(reference.expval(circuit, x, w, observables=obs),
                               hdqnn.expval(circuit, x, w, observables=obs, backend="numpy"), atol=1e-12)


def test_wire_zero_is_the_most_significant_bit():
    """X on wire 0 of 2, amplitude damping on that wire only, readout flipping wire 1's zeros."""
    circuit = Circuit(2).x(0)
    model = NoiseModel().add(amplitude_damping(0.25), "x", wires=[0]).add_readout(ReadoutError(1.0, 0.0), wires=[1])
    np.testing.assert_allclose(reference.probabilities(circuit, noise=model, readout=False)[0], [0.25, 0, 0.75, 0])
    np.testing.assert_allclose(reference.probabilities(circuit, noise=model)[0], [0, 0.25, 0, 0.75])
    np.testing.assert_allclose(reference.expval(circuit, noise=model)[0], [-0.5, -1.0])
    np.testing.assert_allclose(reference.expval(circuit, noise=model, readout=False)[0], [-0.5, 1.0])
    assert model.frozen  # used by a simulation: immutable from now on


X2 = np.zeros((2, 1))
DM = reference.density_matrix


@pytest.mark.parametrize("call, error, message", [
    (lambda c, m: DM(c, X2, [0.1], noise=m.add(depolarizing(0.1), "ry", wires=[5])),
     ValueError, "names wire 5 but the circuit has 2 qubit"),
    (lambda c, m: reference.probabilities(c, X2, [0.1], noise=m.add_readout(ReadoutError(0, 0), wires=2)),
     ValueError, "names wire 2"),
    (lambda c, m: DM(c, np.zeros((2, 3)), [0.1]), ValueError, r"inputs must be \[B, 1\]"),
    (lambda c, m: DM(c, np.zeros(2), [0.1]), ValueError, r"inputs must be \[B, 1\]"),
    (lambda c, m: DM(c, X2, [0.1, 0.2]), ValueError, r"weights must be \[B, 1\] or \[P\]"),
    (lambda c, m: DM(c, X2, np.zeros((3, 1))), ValueError, "disagree on the batch size"),
    (lambda c, m: DM(c, [[np.nan]], [0.1]), ValueError, "inputs must be finite"),
    (lambda c, m: DM(c, None, [0.1]), ValueError, "pass inputs"),
    (lambda c, m: DM(c, [[0.1]], None), ValueError, "pass weights"),
    (lambda c, m: DM(c, [[0.1]], [0.1], noise="fake_manila"), TypeError, "must be an hdqnn.noise.NoiseModel"),
    (lambda c, m: DM("circuit", [[0.1]], [0.1]), TypeError, "must be an hdqnn.Circuit"),
    (lambda c, m: reference.expval(c, [[0.1]], [0.1], observables="XQ"), ValueError, "unknown Pauli letter"),
])
def test_bad_input_raises(call, error, message):
    circuit = Circuit(2).ry(Input(0), 0).rz(Weight(0), 1).cx(0, 1)
    with pytest.raises(error, match=message):
        call(circuit, NoiseModel())
