"""Shot sampling from the engine's probabilities, and estimators built on the shots."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..circuits import Circuit, compile_observables
from .arrays import is_torch, wrap
from . import device as gpu
from .api import probabilities

#: Largest number of bitstrings one call may return (B * shots * n bytes).
MAX_SAMPLE_BYTES = 1 << 31


def _check_shots(shots: Any) -> int:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be a positive int, got {shots!r}")
    return int(shots)


def sample_indices(probs: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """Basis-state indices [B, shots] drawn from each row of ``probs`` [B, 2**n] (inverse CDF)."""
    b = probs.shape[0]
    cdf = np.cumsum(probs.astype(np.float64), axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random((b, shots))
    # One searchsorted over the concatenated CDFs: row r's values are offset by r.
    offsets = np.arange(b, dtype=np.float64)[:, None]
    flat = np.searchsorted((cdf + offsets).ravel(), (u + offsets).ravel(), side="right")
    idx = flat.reshape(b, shots) - np.arange(b)[:, None] * probs.shape[1]
    return np.clip(idx, 0, probs.shape[1] - 1)


def indices_to_bits(idx: np.ndarray, n_qubits: int) -> np.ndarray:
    """uint8 [..., n]: bit of wire q at position q (wire 0 = most significant index bit)."""
    shifts = np.arange(n_qubits - 1, -1, -1, dtype=np.int64)
    return ((idx[..., None] >> shifts) & 1).astype(np.uint8)


def sample(circuit: Circuit, inputs: Any = None, weights: Any = None, shots: int = 1000,
           seed: int | np.random.Generator | None = None, *, backend: Any = None, device: Any = None):
    """Measure every wire ``shots`` times per sample: uint8 [B, shots, n], column q = wire q.

    The same ``seed`` gives the same bitstrings (on the GPU: its own counter-based stream).
    """
    shots = _check_shots(shots)
    if gpu.wants_gpu(device, inputs, weights):
        return gpu.sample(circuit, inputs, weights, shots, seed, backend=backend, device=device)
    probs = probabilities(circuit, inputs, weights, dtype=np.complex128, backend=backend)
    as_torch = is_torch(probs)
    probs = probs.numpy() if as_torch else probs
    n = circuit.n_qubits
    if probs.shape[0] * shots * n > MAX_SAMPLE_BYTES:
        raise ValueError(f"{probs.shape[0]} x {shots} shots x {n} bits exceeds {MAX_SAMPLE_BYTES} bytes")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return wrap(indices_to_bits(sample_indices(probs, shots, rng), n), as_torch)


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


def expval_from_samples(bitstrings: Any, observables: Any = None):
    """Shot estimates of diagonal (I/Z-only) Pauli strings, [B, K] float64; unbiased."""
    bits = _as_bits(bitstrings)
    paulis = compile_observables(observables, bits.shape[2])
    if np.any((paulis == 1) | (paulis == 2)):
        raise ValueError("shot estimates need diagonal observables (I and Z only); X/Y need basis rotations")
    mask = (paulis == 3).astype(np.int64)  # [K, n]
    parity = (bits.astype(np.int64) @ mask.T) & 1  # [B, shots, K]
    return wrap((1.0 - 2.0 * parity).mean(axis=1), is_torch(bitstrings))
