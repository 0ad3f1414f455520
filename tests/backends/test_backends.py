"""Every engine against the NumPy reference, and against each other, on random circuits."""
from __future__ import annotations

import numpy as np
import pytest

from hdqnn.circuits import compile_observables
from tests.circuit_factory import random_circuit, random_paulis

TOL = {np.complex128: 1e-10, np.complex64: 1e-5}
REAL = {np.complex128: np.float64, np.complex64: np.float32}
SIZES = [(n, b) for n in range(1, 9) for b in (1, 3, 17)]


def _case(rng, n, b, dtype, per_sample_weights):
    circuit = random_circuit(rng, n)
    prog = circuit.compile()
    x = rng.uniform(-np.pi, np.pi, (b, prog.n_inputs)).astype(REAL[dtype])
    shape = (b, prog.n_weights) if per_sample_weights else (prog.n_weights,)
    w = rng.uniform(-np.pi, np.pi, shape).astype(REAL[dtype])
    paulis = compile_observables(random_paulis(rng, n) + [("Z", n - 1)], n)
    return prog, x, w, paulis


def _tol(dtype, scale=1.0):
    return dict(rtol=0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
@pytest.mark.parametrize("n,b", SIZES)
def test_forward_matches_reference(fast_engine, reference, rng, n, b, dtype):
    prog, x, w, paulis = _case(rng, n, b, dtype, per_sample_weights=bool(rng.integers(2)))
    psi = fast_engine.statevector(prog, x, w, dtype)
    assert psi.dtype == dtype and psi.shape == (b, 2**n)
    np.testing.assert_allclose(psi, reference.statevector(prog, x, w, dtype), **_tol(dtype))
    probs = fast_engine.probabilities(prog, x, w, dtype)
    assert probs.dtype == REAL[dtype]
    np.testing.assert_allclose(probs, reference.probabilities(prog, x, w, dtype), **_tol(dtype))
    ev = fast_engine.expval(prog, x, w, paulis, dtype)
    assert ev.dtype == REAL[dtype] and ev.shape == (b, paulis.shape[0])
    np.testing.assert_allclose(ev, reference.expval(prog, x, w, paulis, dtype), **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("n,b", [(1, 3), (2, 1), (3, 17), (5, 3), (8, 3)])
def test_vjp_matches_reference(fast_engine, reference, rng, n, b, dtype, per_sample):
    prog, x, w, paulis = _case(rng, n, b, dtype, per_sample)
    g = rng.normal(size=(b, paulis.shape[0])).astype(REAL[dtype])
    gi, gw = fast_engine.vjp(prog, x, w, paulis, g, dtype)
    ri, rw = reference.vjp(prog, x, w, paulis, g, dtype)
    assert gi.shape == x.shape and gw.shape == w.shape
    assert gi.dtype == REAL[dtype] and gw.dtype == REAL[dtype]
    # gradients sum many slot terms (and over the batch for shared weights)
    scale = 10 * max(1, prog.angle_src.shape[0] // 10) * (1 if per_sample else b)
    np.testing.assert_allclose(gi, ri, **_tol(dtype, scale))
    np.testing.assert_allclose(gw, rw, **_tol(dtype, scale))


def test_engines_agree_pairwise(engine, rng):
    """Every engine (reference included) against the C++ core, or the next best, at n = 6."""
    from hdqnn import get_backend
    from hdqnn.backends import backend_status

    others = [name for name, s in backend_status().items() if s == "ok" and name != engine.name]
    prog, x, w, paulis = _case(rng, 6, 5, np.complex128, per_sample_weights=False)
    g = rng.normal(size=(5, paulis.shape[0]))
    mine = engine.expval(prog, x, w, paulis, np.complex128), engine.vjp(prog, x, w, paulis, g, np.complex128)
    for name in others:
        other = get_backend(name)
        np.testing.assert_allclose(other.expval(prog, x, w, paulis, np.complex128), mine[0], atol=1e-10)
        for a, r in zip(other.vjp(prog, x, w, paulis, g, np.complex128), mine[1]):
            np.testing.assert_allclose(a, r, atol=1e-9)


@pytest.mark.parametrize("n,b", [(12, 3), (16, 2)])
def test_larger_registers_match_reference(fast_engine, reference, rng, n, b):
    prog, x, w, paulis = _case(rng, n, b, np.complex128, per_sample_weights=False)
    np.testing.assert_allclose(
        fast_engine.expval(prog, x, w, paulis, np.complex128),
        reference.expval(prog, x, w, paulis, np.complex128), atol=1e-10,
    )


@pytest.mark.slow
def test_twenty_qubits_normalised(fast_engine, rng):
    from hdqnn import ansatz

    prog = ansatz.hardware_efficient(20, 2).compile()
    x = rng.uniform(-1, 1, (2, 20))
    w = rng.uniform(-1, 1, prog.n_weights)
    probs = fast_engine.probabilities(prog, x, w, np.complex128)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-10)
