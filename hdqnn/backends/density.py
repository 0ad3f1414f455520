"""Noisy engines: batched density matrices (exact, with an adjoint VJP) and Monte-Carlo trajectories.

They execute a circuit's compiled ``Program`` with noise compiled to flat tables
(``hdqnn.noise.compiled``): ``chan_idx`` int32 [G] (-1: noiseless gate), ``superops`` complex128
[C, 16, 16] and, for trajectories, ``kraus`` complex128 [C, R, 4, 4] with ``kraus_count`` int32
[C]. No noise object enters here. Every call is one kernel over the batch; the engines compute in
complex128 and return float64. The density matrix runs on the compiled engine
(``hdqnn._core_cpu.density``, csrc/cpu/density_kernels.cpp) where it is built, else on its Numba
twin (``_density_kernels``); ``HDQNN_BACKEND=numba`` (or ``numpy``) picks the twin, and every
density function takes ``engine="cpp" | "numba"`` to choose explicitly. Trajectories run the same
way (``hdqnn._core_cpu.trajectories``, csrc/cpu/density_kernels.cpp, else the Numba kernel); both
take the caller's pre-drawn uniforms, so they agree to rounding whatever the engine or thread count.

Readout errors are applied by the caller (``hdqnn.sim``): to probabilities through the confusion
matrices, and to expectations by measuring the Pauli strings ``readout_terms`` gives.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Optional

import numpy as np

from ..circuits import GATES_BY_CODE, SRC_CONST, Program, gate_matrix
from .base import sample_angles, scatter_angle_grads

#: Bytes of one complex128 amplitude.
_AMPLITUDE = np.dtype(np.complex128).itemsize
#: Programs whose constant-gate superoperators are kept (a training loop reuses one or two).
_FIXED_CACHE_SIZE = 16
_fixed_cache: dict[tuple[int, int], tuple] = {}
#: Per program (as _fixed_cache): which gates have only constant angles (the compiled engine's input),
#: and its block counts (the plan's input).
_constant_cache: dict[int, tuple] = {}
_block_count_cache: dict[int, tuple] = {}
#: Per program (as _fixed_cache): its gates in run order and that order (``grouped``).
_grouped_cache: dict[int, tuple] = {}
#: The Numba VJP keeps every block's input density matrix of a sample up to this size (no forward
#: is run twice; (8 qubits, 4 layers) needs 72 MiB), else ~2 sqrt(blocks) of them (checkpoints).
#: The compiled engine sizes its own (``_core_cpu.density_plan``).
STORE_ALL_BYTES = 128 << 20
#: Engines of the density-matrix method.
DENSITY_ENGINES = ("cpp", "numba")


def _kernels():
    """The Numba kernels, imported on first use (numba is an optional dependency of backends), with
    the calling thread's Numba team set to ``hdqnn.set_num_threads``' count: Numba's count is per
    thread and defaults to every core, so a ``--threads 1`` run would otherwise spin a second worker
    (measured 3.3x slower noisy updates on a shared 2-core machine)."""
    import numba

    from . import _density_kernels, configured_threads

    wanted = configured_threads()
    if wanted is not None:
        numba.set_num_threads(min(wanted, max(1, numba.config.NUMBA_NUM_THREADS)))
    return _density_kernels


def _compiled() -> Optional[Any]:
    """hdqnn._core_cpu when it loads (through the backend registry, so that hdqnn.set_num_threads
    reaches it) and has the density engine, else None."""
    from . import get_backend

    try:
        get_backend("cpp")
    except RuntimeError:
        return None
    from .. import _core_cpu

    return _core_cpu if hasattr(_core_cpu, "density") else None


def density_engine(engine: Optional[str] = None) -> str:
    """The density-matrix engine a call runs on: ``engine`` when given ("cpp" fails where the
    compiled module lacks it), else "numba" under HDQNN_BACKEND=numba|numpy, else "cpp" where it is
    built, else "numba"."""
    if engine is None:
        if os.environ.get("HDQNN_BACKEND") in ("numba", "numpy"):
            return "numba"
        return "cpp" if _compiled() is not None else "numba"
    if engine not in DENSITY_ENGINES:
        raise ValueError(f"unknown density engine {engine!r}; choose one of {', '.join(DENSITY_ENGINES)}")
    if engine == "cpp" and _compiled() is None:
        raise RuntimeError("the compiled density engine is unavailable: hdqnn._core_cpu is not built (or "
                           "predates it); build it with pip install -e . or use engine='numba'")
    return engine


def _per_program(cache: dict, program: Program, build):
    """build(program), kept per program (a training loop calls with one program again and again)."""
    hit = cache.get(id(program))
    if hit is not None and hit[0] is program:
        return hit[1]
    value = build(program)
    if len(cache) >= _FIXED_CACHE_SIZE:
        cache.clear()
    cache[id(program)] = (program, value)
    return value


def _run_order(program: Program) -> np.ndarray:
    """A gate order in which each one-qubit gate joins the one-qubit run still open on its wire (its
    gates since a two-qubit gate last touched the wire): only gates on other wires lie between, and
    those commute with it, its channel included. An ansatz's encoding rotations then join the
    layer's rotations after them: one block (one pass, and in the VJP one kept state and one Gram
    pass) instead of two per wire."""
    runs: list[list[int]] = []
    open_on: dict[int, int] = {}  # wire -> its open run's index in runs
    for g, (code, w0, w1, _) in enumerate(program.gates.tolist()):
        if GATES_BY_CODE[code].n_wires == 1:
            if w0 in open_on:
                runs[open_on[w0]].append(g)
                continue
            open_on[w0] = len(runs)
        else:
            open_on.pop(w0, None)
            open_on.pop(w1, None)
        runs.append([g])
    return np.array([g for run in runs for g in run], dtype=np.int64)


def _in_run_order(program: Program) -> tuple[np.ndarray, Program]:
    """(_run_order, the program with its gates in it: itself where nothing moves)."""
    order = _run_order(program)
    if np.array_equal(order, np.arange(len(order))):
        return order, program
    return order, dataclasses.replace(program, gates=np.ascontiguousarray(program.gates[order]))


def grouped(program: Program, chan_idx: np.ndarray) -> tuple[Program, np.ndarray]:
    """What the density engines run: ``program`` with its gates in run order (the same states, fewer
    blocks; kept per program) and the gates' channel rows ``chan_idx`` [G] in that order."""
    order, reordered = _per_program(_grouped_cache, program, _in_run_order)
    return reordered, np.asarray(chan_idx)[order]


def _constant_gates(program: Program) -> np.ndarray:
    """uint8 [G]: 1 for a gate whose angles are all constants (fused once per call)."""
    return _per_program(_constant_cache, program, lambda p: np.array(
        [_is_constant(p, g) for g in range(len(p.gates))], dtype=np.uint8))


def _run_compiled(task: str, program: Program, theta: np.ndarray, chan_idx: np.ndarray, superops: np.ndarray,
                  paulis: Optional[np.ndarray] = None, grad_terms: Optional[np.ndarray] = None) -> np.ndarray:
    """One call of the compiled engine over per-sample angles ``theta`` [B, A]."""
    idx, sup = _tables(chan_idx, superops)
    return _compiled().density(
        task, program.n_qubits, np.ascontiguousarray(program.gates, dtype=np.int32), _constant_gates(program), idx,
        sup, np.ascontiguousarray(theta, dtype=np.float64),
        None if paulis is None else np.ascontiguousarray(paulis, dtype=np.int8),
        None if grad_terms is None else np.ascontiguousarray(grad_terms, dtype=np.float64))


def _tables(chan_idx: np.ndarray, superops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel-ready channel tables: a model with no channel still passes one (unused) row."""
    if superops.shape[0] == 0:
        superops = np.zeros((1, 16, 16), dtype=np.complex128)
    return np.ascontiguousarray(chan_idx, dtype=np.int32), np.ascontiguousarray(superops, dtype=np.complex128)


def _gates(program: Program) -> np.ndarray:
    return np.ascontiguousarray(program.gates, dtype=np.int64)


def _is_constant(program: Program, g: int) -> bool:
    first, spec = int(program.gates[g, 3]), GATES_BY_CODE[int(program.gates[g, 0])]
    return first < 0 or bool(np.all(program.angle_src[first : first + spec.n_angles, 0] == SRC_CONST))


def _fixed_superops(program: Program, chan_idx: np.ndarray, superops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fixed_idx int32 [G], fixed complex128 [F, 16, 16]): the superoperator, channel fused, of
    every gate whose angles are constants, built once per (program, noise) instead of per sample.
    Noiseless two-qubit gates stay out: U on rows and conj(U) on columns is cheaper than 16x16."""
    key = (id(program), id(superops))
    hit = _fixed_cache.get(key)
    if hit is not None and hit[0] is program and hit[1] is superops:
        return hit[2], hit[3]
    fixed_idx = np.full(len(program.gates), -1, dtype=np.int32)
    fixed = [np.zeros((16, 16), dtype=np.complex128)]  # never empty: the kernels index it
    for g in range(len(program.gates)):
        spec = GATES_BY_CODE[int(program.gates[g, 0])]
        c = int(chan_idx[g])
        if not _is_constant(program, g) or (spec.n_wires == 2 and c < 0):
            continue
        first = int(program.gates[g, 3])
        u = gate_matrix(spec.name, *program.angle_val[first : first + spec.n_angles]) if spec.n_angles else \
            gate_matrix(spec.name)
        dim = 4**spec.n_wires
        s = np.kron(u, u.conj())
        if c >= 0:
            s = superops[c, :dim, :dim] @ s
        table = np.zeros((16, 16), dtype=np.complex128)
        table[:dim, :dim] = s
        fixed_idx[g] = len(fixed)
        fixed.append(table)
    result = (fixed_idx, np.stack(fixed))
    if len(_fixed_cache) >= _FIXED_CACHE_SIZE:
        _fixed_cache.clear()
    _fixed_cache[key] = (program, superops) + result
    return result


def blocks(program: Program) -> tuple[np.ndarray, np.ndarray]:
    """(first gate, last gate) int64 [NB] of each block the kernels apply as one superoperator: a
    run of consecutive one-qubit gates on one wire, or a single two-qubit gate."""
    gates = program.gates
    one = np.array([GATES_BY_CODE[int(c)].n_wires == 1 for c in gates[:, 0]], dtype=bool)
    same_next = np.zeros(len(gates), dtype=bool)
    same_next[:-1] = one[:-1] & one[1:] & (gates[:-1, 1] == gates[1:, 1])
    hi = np.flatnonzero(~same_next).astype(np.int64)
    lo = np.concatenate([[0], hi[:-1] + 1])[: len(hi)].astype(np.int64)  # no gates: no blocks
    return lo, hi


def checkpoint_stride(n_gates: int, n_qubits: int) -> int:
    """Blocks between the VJP's stored states (``n_gates``: the program's blocks, see :func:`blocks`).
    Every state when they fit in STORE_ALL_BYTES per sample (no forward is then run twice); else
    ~sqrt(G), which keeps both the checkpoints and one segment's recomputed states at ~sqrt(G)
    density matrices per sample."""
    n_gates = max(n_gates, 1)
    if n_gates * (1 << (2 * n_qubits)) * _AMPLITUDE <= STORE_ALL_BYTES:
        return n_gates
    return math.isqrt(n_gates - 1) + 1


def density_states_per_worker(task: str, n_qubits: int, n_gates: int) -> int:
    """Density matrices [4**n] one sample holds at once in the Numba engine (each worker runs one
    sample at a time)."""
    if task != "vjp":
        return 1
    stride = checkpoint_stride(n_gates, n_qubits)
    return 2 + stride + -(-max(n_gates, 1) // stride)


def block_counts(program: Program) -> tuple[int, int]:
    """(blocks, blocks with an angle that is not a constant) of ``program`` as the engines run it
    (``grouped``): the VJP keeps the latter's inputs."""
    def count(p: Program) -> tuple[int, int]:
        p = _per_program(_grouped_cache, p, _in_run_order)[1]
        lo, hi = blocks(p)
        constant = _constant_gates(p)
        return len(lo), sum(int(not constant[a : b + 1].all()) for a, b in zip(lo, hi))

    return _per_program(_block_count_cache, program, count)


def density_invertible(program: Program, chan_idx: np.ndarray, superops: np.ndarray,
                       engine: Optional[str] = None) -> bool:
    """Whether the compiled engine's VJP of ``program`` under these channels may run as the inverse
    sweep (no kept states; from 8 qubits): every angle on a one-qubit gate and channels it can undo
    within its rounding budget. False on the Numba engine, which keeps states."""
    if density_engine(engine) != "cpp":
        return False
    program, chan_idx = grouped(program, chan_idx)
    idx, sup = _tables(chan_idx, superops)
    return bool(_compiled().density_invertible(program.n_qubits, np.ascontiguousarray(program.gates, dtype=np.int32),
                                               _constant_gates(program), idx, sup))


def density_workspace_bytes(task: str, n_qubits: int, n_gates: int, batch: int, engine: Optional[str] = None,
                            n_stored: Optional[int] = None, invertible: bool = False) -> int:
    """Bytes the density-matrix engine allocates for ``task`` over ``batch`` samples (``n_gates``:
    the program's blocks, ``n_stored``: those with angles, all when None; see :func:`block_counts`).
    The compiled engine says its own plan: its workers hold several samples each (lanes), or one
    sample spread across the lanes from 7 qubits (VJP) or 9 (forward), and its VJP keeps the inputs
    of the ``n_stored`` blocks, or from 8 qubits, where the program is ``invertible``
    (:func:`density_invertible`), two states (the inverse sweep)."""
    if density_engine(engine) == "cpp":
        stored = n_gates if n_stored is None else n_stored
        plan = _compiled().density_plan(task, n_qubits, n_gates, stored, max(batch, 1), invertible=invertible)
        return int(plan["workspace_bytes"])
    import numba

    _kernels()  # this thread's Numba team, as the call will set it
    workers = min(batch, numba.get_num_threads())
    return workers * density_states_per_worker(task, n_qubits, n_gates) * (1 << (2 * n_qubits)) * _AMPLITUDE


def density_expval(program: Program, inputs: np.ndarray, weights: np.ndarray, chan_idx: np.ndarray,
                   superops: np.ndarray, paulis: np.ndarray, engine: Optional[str] = None) -> np.ndarray:
    """Tr(P_t rho_b) for each Pauli row t of ``paulis`` int8 [T, n]: [B, T] float64."""
    program, chan_idx = grouped(program, chan_idx)
    theta = sample_angles(program, inputs, weights)
    if density_engine(engine) == "cpp":
        return _run_compiled("expval", program, theta, chan_idx, superops, paulis)
    idx, sup = _tables(chan_idx, superops)
    out = np.zeros((theta.shape[0], paulis.shape[0]))
    _kernels().density_expval_kernel(program.n_qubits, _gates(program), theta, idx, sup,
                                     *_fixed_superops(program, chan_idx, superops), *blocks(program),
                                     np.ascontiguousarray(paulis, dtype=np.int64), out)
    return out


def density_probabilities(program: Program, inputs: np.ndarray, weights: np.ndarray, chan_idx: np.ndarray,
                          superops: np.ndarray, engine: Optional[str] = None) -> np.ndarray:
    """Diagonal of each rho (pre-measurement probabilities), [B, 2**n] float64."""
    program, chan_idx = grouped(program, chan_idx)
    theta = sample_angles(program, inputs, weights)
    if density_engine(engine) == "cpp":
        return _run_compiled("probabilities", program, theta, chan_idx, superops)
    idx, sup = _tables(chan_idx, superops)
    out = np.zeros((theta.shape[0], 1 << program.n_qubits))
    _kernels().density_probs_kernel(program.n_qubits, _gates(program), theta, idx, sup,
                                    *_fixed_superops(program, chan_idx, superops), *blocks(program), out)
    return out


def density_matrix(program: Program, inputs: np.ndarray, weights: np.ndarray, chan_idx: np.ndarray,
                   superops: np.ndarray, engine: Optional[str] = None) -> np.ndarray:
    """The noisy states, [B, 2**n, 2**n] complex128."""
    program, chan_idx = grouped(program, chan_idx)
    theta = sample_angles(program, inputs, weights)
    if density_engine(engine) == "cpp":
        return _run_compiled("state", program, theta, chan_idx, superops)
    idx, sup = _tables(chan_idx, superops)
    dim = 1 << program.n_qubits
    out = np.zeros((theta.shape[0], dim * dim), dtype=np.complex128)
    _kernels().density_state_kernel(program.n_qubits, _gates(program), theta, idx, sup,
                                    *_fixed_superops(program, chan_idx, superops), *blocks(program), out)
    return out.reshape(-1, dim, dim)


def density_vjp(program: Program, inputs: np.ndarray, weights: np.ndarray, chan_idx: np.ndarray,
                superops: np.ndarray, paulis: np.ndarray, grad_terms: np.ndarray,
                engine: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact VJP of ``density_expval``: (grad_inputs [B, D], grad_weights like ``weights``) of
    sum(grad_terms * expectations), grad_terms [B, T] float64."""
    program, chan_idx = grouped(program, chan_idx)
    theta = sample_angles(program, inputs, weights)
    if density_engine(engine) == "cpp":
        g_theta = _run_compiled("vjp", program, theta, chan_idx, superops, paulis, grad_terms)
        return scatter_angle_grads(program, g_theta, inputs, weights)
    idx, sup = _tables(chan_idx, superops)
    g_theta = np.zeros_like(theta)
    lo, hi = blocks(program)
    stride = checkpoint_stride(len(lo), program.n_qubits)
    max_run = int((hi - lo).max(initial=0)) + 1
    _kernels().density_vjp_kernel(program.n_qubits, _gates(program), theta, idx, sup,
                                  *_fixed_superops(program, chan_idx, superops), lo, hi, max_run,
                                  np.ascontiguousarray(paulis, dtype=np.int64),
                                  np.ascontiguousarray(grad_terms, dtype=np.float64), stride, g_theta)
    return scatter_angle_grads(program, g_theta, inputs, weights)


def trajectory_engine(engine: Optional[str] = None) -> str:
    """The engine a trajectory call runs on, chosen as ``density_engine`` chooses (a compiled module
    built before trajectories moved into it counts as absent)."""
    chosen = density_engine(engine)
    if chosen == "cpp" and not hasattr(_compiled(), "trajectories"):
        if engine == "cpp":
            raise RuntimeError("this build of hdqnn._core_cpu predates the compiled trajectories; rebuild it "
                               "with pip install -e . or use engine='numba'")
        return "numba"
    return chosen


def trajectories(program: Program, inputs: np.ndarray, weights: np.ndarray, chan_idx: np.ndarray,
                 kraus: np.ndarray, kraus_count: np.ndarray, paulis: np.ndarray,
                 uniforms: np.ndarray, engine: Optional[str] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monte-Carlo unravelling, one statevector per (sample, trajectory).

    uniforms: float64 [B, T, M + 1] in [0, 1), M = the number of noisy gates (one draw each) and
    one for the measured outcome. Returns (expectations [B, T, K] of ``paulis`` per trajectory,
    probabilities [B, 2**n] averaged over trajectories, outcomes int64 [B, T] basis states).
    """
    theta = sample_angles(program, inputs, weights)
    if kraus.shape[0] == 0:  # a placeholder row, never read: no gate has a channel
        kraus = np.zeros((1, 1, 4, 4), dtype=np.complex128)
        kraus_count = np.ones(1, dtype=np.int32)
    if trajectory_engine(engine) == "cpp":
        return _compiled().trajectories(
            program.n_qubits, np.ascontiguousarray(program.gates, dtype=np.int32),
            np.ascontiguousarray(theta, dtype=np.float64), np.ascontiguousarray(chan_idx, dtype=np.int32),
            np.ascontiguousarray(kraus, dtype=np.complex128), np.ascontiguousarray(kraus_count, dtype=np.int32),
            np.ascontiguousarray(paulis, dtype=np.int8), np.ascontiguousarray(uniforms, dtype=np.float64))
    b, t = uniforms.shape[:2]
    expvals = np.zeros((b, t, paulis.shape[0]))
    probs = np.zeros((b, 1 << program.n_qubits))
    outcomes = np.zeros((b, t), dtype=np.int64)
    _kernels().trajectory_kernel(program.n_qubits, _gates(program), theta,
                                 np.ascontiguousarray(chan_idx, dtype=np.int32),
                                 np.ascontiguousarray(kraus, dtype=np.complex128),
                                 np.ascontiguousarray(kraus_count, dtype=np.int32),
                                 np.ascontiguousarray(paulis, dtype=np.int64),
                                 np.ascontiguousarray(uniforms, dtype=np.float64), expvals, probs, outcomes)
    return expvals, probs, outcomes
