"""Noisy simulation behind ``hdqnn.expval / probabilities / sample / vjp(..., noise=model)``.

Two methods (``hdqnn.backends.density``):
  - ``"density_matrix"``: exact, batched density matrices (4**n entries per sample in flight: real
    Pauli coefficients in the compiled engine, complex amplitudes in the Numba twin),
    with the exact VJP of the noisy expectations (Heisenberg picture);
  - ``"trajectories"``: Monte-Carlo unravelling, ``trajectories=T`` statevectors per sample;
    unbiased estimates, and with ``return_stderr=True`` their standard errors.
  - ``"auto"`` (the default) takes the density matrix up to AUTO_DENSITY_MAX_QUBITS qubits when its
    memory fits, else trajectories; :func:`choose_method` says which, and the choice is logged
    (logger ``hdqnn.sim``, level INFO).
Trajectory draws come from a counter-based generator keyed on (seed, sample): sample b's
trajectory t reads the same uniforms whatever the batch size, trajectory count or threads, so a
seed reproduces a result exactly.

Readout errors apply to what is measured (probabilities, samples, and each Pauli string measured
as a device measures it); ``readout=False`` gives the pre-measurement values.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from ..backends import density as engine
from ..noise.compiled import CompiledNoise, check_model, compile_noise, readout_terms
from .arrays import Prepared
from .memory import MEMORY_FRACTION, available_memory, check_memory
from .sampling import MAX_SAMPLE_BYTES, sample_bits

METHODS = ("auto", "density_matrix", "trajectories")
#: Largest register ``method="auto"`` simulates as a density matrix (4**10 amplitudes = 16 MiB per
#: sample in flight, ~0.1-1 s per sample for a few hundred gates); beyond it, trajectories.
AUTO_DENSITY_MAX_QUBITS = 10
#: Trajectories per sample when ``trajectories`` is not given (``sample``: one per shot).
DEFAULT_TRAJECTORIES = 1000
_FLOAT = np.dtype(np.float64).itemsize

log = logging.getLogger("hdqnn.sim")

_compiled: dict[tuple[int, int], tuple[Any, Any, CompiledNoise]] = {}
#: id(tables) -> (tables, program, whether the VJP can run as the inverse sweep): _invertible.
_invertibles: dict[int, tuple[CompiledNoise, Any, bool]] = {}


def _workers() -> int:
    """Samples a trajectory call simulates at once (each worker holds two statevectors)."""
    if engine.trajectory_engine() == "cpp":
        return engine._compiled().get_num_threads()
    import numba

    return numba.get_num_threads()


def check_method(method: Any, trajectories: Any) -> tuple[str, Optional[int]]:
    """(method, trajectories) validated: a known method, and T a positive int or None."""
    method = "auto" if method is None else method
    if method not in METHODS:
        raise ValueError(f"unknown noisy simulation method {method!r}; choose one of {', '.join(METHODS)}")
    if trajectories is not None:
        if isinstance(trajectories, bool) or not isinstance(trajectories, (int, np.integer)) or trajectories < 1:
            raise ValueError(f"trajectories must be a positive int, got {trajectories!r}")
        trajectories = int(trajectories)
        if method == "density_matrix":
            raise ValueError("trajectories= is for method='trajectories' (or 'auto'), not 'density_matrix'")
    return method, trajectories


def density_need(task: str, p: Prepared, n_terms: int = 0, invertible: bool = False) -> dict[str, int]:
    """Peak bytes of a density-matrix call: 4**n entries per sample in flight (the VJP keeps
    ~2 sqrt(G) of them for its checkpoints, or two where its program is ``invertible``:
    ``engine.density_invertible``), plus the results."""
    n, (gates, stored) = p.program.n_qubits, engine.block_counts(p.program)
    out = p.batch * (n_terms if task != "probabilities" else 1 << n) * _FLOAT
    return {"result": out, "density matrices": engine.density_workspace_bytes(task, n, gates, p.batch,
                                                                              n_stored=stored, invertible=invertible)}


def trajectory_need(p: Prepared, trajectories: int, n_noisy: int, n_terms: int) -> dict[str, int]:
    """Peak bytes of a trajectory call: the uniforms and per-trajectory outputs, two statevectors
    per worker."""
    dim = 1 << p.program.n_qubits
    rows = p.batch * trajectories
    return {"draws": rows * (n_noisy + 1) * _FLOAT, "per-trajectory results": rows * (n_terms + 1) * _FLOAT,
            "states": 2 * min(p.batch, _workers()) * dim * 16 + p.batch * dim * _FLOAT}


def choose_method(n_qubits: int, batch: int = 1, task: str = "expval", n_gates: int = 0,
                  n_stored: Optional[int] = None, invertible: bool = False) -> str:
    """What ``method="auto"`` runs: "density_matrix" up to AUTO_DENSITY_MAX_QUBITS qubits when the
    density matrices of the call fit in memory, else "trajectories" (``n_gates``: the program's
    fused blocks, ``n_stored`` those with angles, which size the VJP's checkpoints unless the
    program is ``invertible``)."""
    if n_qubits > AUTO_DENSITY_MAX_QUBITS:
        return "trajectories"
    need = engine.density_workspace_bytes(task, n_qubits, n_gates, batch, n_stored=n_stored, invertible=invertible)
    return "density_matrix" if need <= MEMORY_FRACTION * available_memory() else "trajectories"


def _resolve(method: str, p: Prepared, task: str) -> str:
    if method != "auto":
        return method
    chosen = choose_method(p.program.n_qubits, p.batch, task, *engine.block_counts(p.program))
    log.info("noisy %s on %d qubits: method='auto' chose %r", task, p.program.n_qubits, chosen)
    return chosen


def _compiled_noise(p: Prepared, noise: Any) -> CompiledNoise:
    """The model compiled for this program, cached per (program, model) (both are immutable once used)."""
    check_model(noise, p.program.n_qubits)
    key = (id(p.program), id(noise))
    hit = _compiled.get(key)
    if hit is not None and hit[0] is p.program and hit[1] is noise:
        return hit[2]
    tables = compile_noise(p.program, noise)
    if len(_compiled) > 64:
        _compiled.clear()
    _compiled[key] = (p.program, noise, tables)
    return tables


def _invertible(p: Prepared, tables: CompiledNoise) -> bool:
    """engine.density_invertible for this program and its compiled model, asked once per pair (the
    check inverts each channel: ~50 us a call, 7% of a small VJP)."""
    hit = _invertibles.get(id(tables))
    if hit is None or hit[0] is not tables or hit[1] is not p.program:
        hit = (tables, p.program, engine.density_invertible(p.program, tables.channel_index, tables.superops))
        if len(_invertibles) > 64:
            _invertibles.clear()
        _invertibles[id(tables)] = hit
    return hit[2]


def _confusion(tables: CompiledNoise, readout: bool) -> Optional[np.ndarray]:
    return tables.confusion if readout and tables.has_readout else None


def read_out(probs: np.ndarray, confusion: Optional[np.ndarray]) -> np.ndarray:
    """Each wire's confusion matrix applied to probabilities [B, 2**n] (wire 0 the top bit)."""
    if confusion is None:
        return probs
    b, n = probs.shape[0], confusion.shape[0]
    t = probs.reshape((b,) + (2,) * n)
    for wire in range(n):
        t = np.moveaxis(np.tensordot(confusion[wire], t, axes=([1], [1 + wire])), 0, 1 + wire)
    return np.ascontiguousarray(t.reshape(b, -1))


def _generator_seed(seed: Any) -> int:
    """A 64-bit key from ``seed``: an int, a NumPy Generator (one draw) or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63))
    if seed is None:
        return int(np.random.SeedSequence().entropy) & (2**64 - 1)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), a numpy Generator or None, got {seed!r}")
    return int(seed)


def sample_streams(seed: int, batch: int) -> list[np.random.Generator]:
    """One counter-based (Philox) generator per sample, keyed on (seed, sample)."""
    return [np.random.Generator(np.random.Philox(key=np.array([seed, b], dtype=np.uint64))) for b in range(batch)]


def _run_trajectories(p: Prepared, tables: CompiledNoise, paulis: np.ndarray, trajectories: int,
                      streams: list[np.random.Generator]):
    n_noisy = int(np.count_nonzero(tables.channel_index >= 0))
    check_memory("noisy trajectories", trajectory_need(p, trajectories, n_noisy, len(paulis)))
    uniforms = np.stack([s.random((trajectories, n_noisy + 1)) for s in streams])
    return engine.trajectories(p.program, p.inputs, p.weights, tables.channel_index, tables.kraus,
                               tables.kraus_count, paulis, uniforms)


# ---------------------------------------------------------------------- the public calls' noisy paths
def expval(p: Prepared, paulis: np.ndarray, noise: Any, method: str, trajectories: Optional[int], seed: Any,
           readout: bool) -> tuple[np.ndarray, np.ndarray]:
    """(expectations [B, K], standard errors [B, K]; zeros for the exact density matrix)."""
    tables = _compiled_noise(p, noise)
    terms, coeffs = readout_terms(paulis, _confusion(tables, readout))
    if _resolve(method, p, "expval") == "density_matrix":
        check_memory("noisy expval", density_need("expval", p, len(terms)))
        values = engine.density_expval(p.program, p.inputs, p.weights, tables.channel_index, tables.superops,
                                       terms) @ coeffs.T
        return values.astype(p.real_dtype), np.zeros_like(values, dtype=p.real_dtype)
    t = trajectories or DEFAULT_TRAJECTORIES
    per_traj, _, _ = _run_trajectories(p, tables, terms, t, sample_streams(_generator_seed(seed), p.batch))
    per_traj = per_traj @ coeffs.T  # [B, T, K]
    mean = per_traj.mean(axis=1)
    stderr = per_traj.std(axis=1, ddof=1) / np.sqrt(t) if t > 1 else np.full_like(mean, np.nan)
    return mean.astype(p.real_dtype), stderr.astype(p.real_dtype)


def _exact_probabilities(p: Prepared, tables: CompiledNoise, confusion: Optional[np.ndarray], what: str) -> np.ndarray:
    """The density matrix's probabilities [B, 2**n] float64, read out through ``confusion``."""
    check_memory(what, density_need("probabilities", p))
    probs = engine.density_probabilities(p.program, p.inputs, p.weights, tables.channel_index, tables.superops)
    return read_out(probs, confusion)


def probabilities(p: Prepared, noise: Any, method: str, trajectories: Optional[int], seed: Any,
                  readout: bool) -> np.ndarray:
    """Probabilities [B, 2**n] (readout applied unless ``readout=False``)."""
    tables = _compiled_noise(p, noise)
    confusion = _confusion(tables, readout)
    if _resolve(method, p, "probabilities") == "density_matrix":
        return _exact_probabilities(p, tables, confusion, "noisy probabilities").astype(p.real_dtype)
    t = trajectories or DEFAULT_TRAJECTORIES
    streams = sample_streams(_generator_seed(seed), p.batch)
    _, probs, _ = _run_trajectories(p, tables, np.zeros((0, p.program.n_qubits), dtype=np.int8), t, streams)
    return read_out(probs, confusion).astype(p.real_dtype)


def vjp(p: Prepared, paulis: np.ndarray, grad_output: np.ndarray, noise: Any, method: str,
        readout: bool) -> tuple[np.ndarray, np.ndarray]:
    """Exact VJP of the noisy expectations (density matrix only)."""
    if method == "trajectories":
        raise ValueError("the exact noisy VJP runs on the density matrix: use method='density_matrix' (or "
                         "'auto'); for trajectories estimate gradients by parameter shift")
    tables = _compiled_noise(p, noise)
    invertible = _invertible(p, tables)
    if method == "auto" and choose_method(p.program.n_qubits, p.batch, "vjp", *engine.block_counts(p.program),
                                          invertible=invertible) != "density_matrix":
        raise ValueError(f"the exact noisy VJP runs on the density matrix, which method='auto' does not pick for "
                         f"{p.program.n_qubits} qubits (over {AUTO_DENSITY_MAX_QUBITS}, or short of memory); pass "
                         "method='density_matrix' to force it")
    terms, coeffs = readout_terms(paulis, _confusion(tables, readout))
    check_memory("noisy vjp", density_need("vjp", p, len(terms), invertible))
    gi, gw = engine.density_vjp(p.program, p.inputs, p.weights, tables.channel_index, tables.superops, terms,
                                grad_output.astype(np.float64) @ coeffs)
    return gi.astype(p.real_dtype), gw.astype(p.real_dtype)


def _flip_readout(bits: np.ndarray, confusion: Optional[np.ndarray], streams: list[np.random.Generator]) -> None:
    """Misread each bit in place: 0 -> 1 with p(1|0), 1 -> 0 with p(0|1) of its wire."""
    if confusion is None:
        return
    flip = np.stack([confusion[:, 1, 0], confusion[:, 0, 1]], axis=1)  # [n, prepared bit]
    wires = np.arange(bits.shape[2])
    for b, stream in enumerate(streams):
        u = stream.random(bits.shape[1:])
        bits[b] ^= (u < flip[wires, bits[b]]).astype(np.uint8)


def sample(p: Prepared, shots: int, noise: Any, method: str, trajectories: Optional[int], seed: Any,
           readout: bool) -> np.ndarray:
    """uint8 [B, shots, n]. With trajectories each shot comes from its own trajectory (as on a device)."""
    n = p.program.n_qubits
    if p.batch * shots * n > MAX_SAMPLE_BYTES:
        raise ValueError(f"{p.batch} x {shots} shots x {n} bits exceeds {MAX_SAMPLE_BYTES} bytes")
    tables = _compiled_noise(p, noise)
    confusion = _confusion(tables, readout)
    key = _generator_seed(seed)
    if _resolve(method, p, "probabilities") == "density_matrix":
        probs = _exact_probabilities(p, tables, confusion, "noisy sample")
        return sample_bits(probs, shots, n, np.random.Generator(np.random.Philox(key=key)))
    if trajectories is not None and trajectories != shots:
        raise ValueError(f"noisy sample with trajectories draws one shot per trajectory: leave trajectories at "
                         f"None or equal to shots ({shots}), got {trajectories}")
    streams = sample_streams(key, p.batch)
    _, _, outcomes = _run_trajectories(p, tables, np.zeros((0, n), dtype=np.int8), shots, streams)
    bits = ((outcomes[:, :, None] >> (n - 1 - np.arange(n))) & 1).astype(np.uint8)
    _flip_readout(bits, confusion, streams)
    return bits


def density_probabilities(p: Prepared, noise: Any, readout: bool = True) -> Optional[np.ndarray]:
    """The exact noisy probabilities [B, 2**n] float64 (readout applied) when ``method="auto"`` runs the
    density matrix for this call, else None (the register needs trajectories, whose shots must each
    come from their own trajectory: see ``sample``)."""
    if _resolve("auto", p, "probabilities") != "density_matrix":
        return None
    tables = _compiled_noise(p, noise)
    return _exact_probabilities(p, tables, _confusion(tables, readout), "noisy probabilities")
