"""Shot sampling from the engine's probabilities, and estimators built on the shots."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..backends import get_backend
from ..circuits import Circuit, compile_observables
from . import device as gpu
from .arrays import Prepared, is_torch, prepare, warn_if_requires_grad, wrap
from .memory import engine_need, reserved

#: Largest number of bitstrings one call may return (B * shots * n bytes).
MAX_SAMPLE_BYTES = 1 << 31
#: Shots drawn per step: bounds the temporaries whatever B and shots are.
SHOT_CHUNK = 1 << 20
#: Resident bytes per shot of a step: float64 uniforms, int64 indices and an int64 bit plane, two
#: of them alive at once, plus the freed pages the allocator keeps (measured).
_STEP_BYTES_PER_SHOT = 32


def _check_shots(shots: Any) -> int:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be a positive int, got {shots!r}")
    return int(shots)


def _chunks(batch: int, shots: int) -> Iterator[tuple[int, int, int, int]]:
    """(row_lo, row_hi, shot_lo, shot_hi) steps of at most SHOT_CHUNK shots, in row-major order so
    the uniforms are drawn in the order of one ``rng.random((batch, shots))``."""
    if shots <= SHOT_CHUNK:
        rows = SHOT_CHUNK // shots
        for lo in range(0, batch, rows):
            yield lo, min(batch, lo + rows), 0, shots
        return
    for row in range(batch):
        for lo in range(0, shots, SHOT_CHUNK):
            yield row, row + 1, lo, min(shots, lo + SHOT_CHUNK)


def sample_bits(probs: np.ndarray, shots: int, n_qubits: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [B, shots, n] drawn from each row of ``probs`` [B, 2**n] float64 (inverse CDF); the
    uniforms are those of one ``rng.random((B, shots))``.

    ``probs`` is overwritten. Beyond the result, memory stays below SHOT_CHUNK shots' temporaries.
    """
    batch, dim = probs.shape
    cdf = np.cumsum(probs, axis=1, out=probs)
    cdf /= cdf[:, -1:]
    # One searchsorted over the concatenated CDFs: row r's values are offset by r.
    cdf += np.arange(batch, dtype=np.float64)[:, None]
    flat = cdf.ravel()
    bits = np.empty((batch, shots, n_qubits), dtype=np.uint8)
    for r0, r1, s0, s1 in _chunks(batch, shots):
        rows = np.arange(r0, r1)[:, None]
        u = rng.random((r1 - r0, s1 - s0))
        u += rows
        idx = np.searchsorted(flat, u.ravel(), side="right").reshape(u.shape)
        del u
        idx -= rows * dim
        np.clip(idx, 0, dim - 1, out=idx)
        plane = np.empty_like(idx)
        for q in range(n_qubits):  # wire 0 is the most significant index bit
            np.right_shift(idx, n_qubits - 1 - q, out=plane)
            np.bitwise_and(plane, 1, out=plane)
            bits[r0:r1, s0:s1, q] = plane
    return bits


def _sampling_need(p: Prepared, shots: int) -> dict[str, int]:
    """Bytes held while sampling: the probabilities, the bits and one step's temporaries."""
    float64 = np.dtype(np.float64).itemsize
    return {"probabilities": p.batch * (1 << p.program.n_qubits) * float64,
            "bits": p.batch * shots * p.program.n_qubits,
            "temporaries": _STEP_BYTES_PER_SHOT * min(p.batch * shots, SHOT_CHUNK)}


def sample(circuit: Circuit, inputs: Any = None, weights: Any = None, shots: int = 1000,
           seed: int | np.random.Generator | None = None, *, backend: Any = None, device: Any = None,
           noise: Any = None, method: str | None = None, trajectories: int | None = None, readout: bool = True):
    """Measure every wire ``shots`` times per sample: uint8 [B, shots, n], column q = wire q.

    The same ``seed`` gives the same bitstrings (on the GPU: its own counter-based stream).
    noise: sample the noisy device (``hdqnn.sim.noisy``); with method "trajectories" each shot
    comes from its own trajectory, as on a device; readout errors apply unless ``readout=False``.
    """
    shots = _check_shots(shots)
    warn_if_requires_grad("sample", inputs, weights)
    if noise is not None or method is not None or trajectories is not None:
        from . import noisy
        from .api import check_noise_args

        method, trajectories = check_noise_args(noise, method, trajectories, device, backend, inputs, weights)
        p = prepare(circuit, inputs, weights, np.complex128)
        return wrap(noisy.sample(p, shots, noise, method, trajectories, seed, readout), p.as_torch)
    if gpu.wants_gpu(device, inputs, weights):
        return gpu.sample(circuit, inputs, weights, shots, seed, backend=backend, device=device)
    p = prepare(circuit, inputs, weights, np.complex128)
    n = p.program.n_qubits
    if p.batch * shots * n > MAX_SAMPLE_BYTES:
        raise ValueError(f"{p.batch} x {shots} shots x {n} bits exceeds {MAX_SAMPLE_BYTES} bytes")
    engine = get_backend(backend)
    # the engine's peak and the sampling's come one after the other: the larger one must fit
    need = max(engine_need(engine, "probabilities", p), _sampling_need(p, shots), key=lambda d: sum(d.values()))
    with reserved("sample", need):
        probs = engine.probabilities(p.program, p.inputs, p.weights, p.dtype)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        bits = sample_bits(probs, shots, n, rng)
    return wrap(bits, p.as_torch)


def _as_bits(bitstrings: Any) -> np.ndarray:
    bits = bitstrings.numpy() if is_torch(bitstrings) else np.asarray(bitstrings)
    if bits.ndim != 3:
        raise ValueError(f"bitstrings must be [B, shots, n], got shape {bits.shape}")
    return bits


def counts(bitstrings: Any) -> list[dict[str, int]]:
    """Per sample, {'0110': count} with wire 0 as the leftmost character."""
    bits = _as_bits(bitstrings)
    out = []
    for row in bits:
        keys, freq = np.unique(row, axis=0, return_counts=True)
        out.append({"".join(map(str, k)): int(c) for k, c in zip(keys, freq)})
    return out


def marginals(bitstrings: Any):
    """Per-wire probability of measuring 1, [B, n] float64: the paper's PQC output."""
    bits = _as_bits(bitstrings)
    return wrap(bits.mean(axis=1, dtype=np.float64), is_torch(bitstrings))


def z_signs(paulis: np.ndarray) -> np.ndarray:
    """[K, 2**n] float64: the eigenvalue (+-1) of each diagonal Pauli string of ``paulis`` int8 [K, n]
    on each basis state (wire 0 the most significant index bit)."""
    n = paulis.shape[1]
    states = np.arange(1 << n, dtype=np.int64)
    bits = (states[None, :] >> (n - 1 - np.arange(n))[:, None]) & 1  # [n, 2**n]
    parity = ((paulis == 3).astype(np.int64) @ bits) & 1
    return 1.0 - 2.0 * parity


def shot_expval(circuit: Circuit, inputs: Any, weights: Any, observables: Any, shots: int,
                seed: int | np.random.Generator | None = None, *, backend: Any = None, noise: Any = None) -> np.ndarray:
    """Shot estimates [B, K] float64 of diagonal (I/Z-only) Pauli strings, as ``expval_from_samples(sample(...))``
    gives them in distribution, without the B x shots bitstrings: each row's outcome counts are one
    multinomial draw from its exact probabilities (noisy ones, readout included, with ``noise``), so
    the cost is O(B 2**n), not O(B shots n). Noisy registers too large for the density matrix sample
    their shots from trajectories, one per shot, as ``sample`` does."""
    shots = _check_shots(shots)
    p = prepare(circuit, inputs, weights, np.complex128)
    paulis = compile_observables(observables, p.program.n_qubits)
    if np.any((paulis == 1) | (paulis == 2)):
        raise ValueError("shot estimates need diagonal observables (I and Z only); X/Y need basis rotations")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if noise is None:
        engine = get_backend(backend)
        with reserved("shot_expval", engine_need(engine, "probabilities", p)):
            probs = engine.probabilities(p.program, p.inputs, p.weights, p.dtype)
    else:
        from . import noisy

        probs = noisy.density_probabilities(p, noise)
        if probs is None:
            return expval_from_samples(noisy.sample(p, shots, noise, "auto", None, rng, True), paulis)
    probs = np.clip(probs, 0.0, None)
    probs /= probs.sum(axis=1, keepdims=True)  # the multinomial refuses sums past 1 by rounding
    counts = rng.multinomial(shots, probs)
    return (counts @ z_signs(paulis).T) / shots


def expval_from_samples(bitstrings: Any, observables: Any = None):
    """Shot estimates of diagonal (I/Z-only) Pauli strings, [B, K] float64; unbiased."""
    bits = _as_bits(bitstrings)
    paulis = compile_observables(observables, bits.shape[2])
    if np.any((paulis == 1) | (paulis == 2)):
        raise ValueError("shot estimates need diagonal observables (I and Z only); X/Y need basis rotations")
    mask = (paulis == 3).astype(np.int64)  # [K, n]
    parity = (bits.astype(np.int64) @ mask.T) & 1  # [B, shots, K]
    return wrap((1.0 - 2.0 * parity).mean(axis=1), is_torch(bitstrings))
