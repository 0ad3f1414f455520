"""Shot-based execution of OpenQASM programs: the adapter protocol and what every adapter shares.

An adapter does two things:

* ``submit(programs, shots) -> counts``: run bound OpenQASM programs, ``shots`` each, and return
  one ``{bitstring: count}`` dict per program. A bitstring has one character per classical
  bit, ``c[0]`` FIRST; in programs written by :func:`hdqnn.qasm.dumps` ``c[i]`` holds wire ``i``,
  so keys read like ``hdqnn.counts`` (wire 0 leftmost) whatever the SDK's own order.
* ``run(circuit, inputs, weights, shots, observables) -> [B, K]``: the
  ``hdqnn.autograd.CircuitRunner`` seam of ``QuantumLayer``; exports the batch, submits it and
  turns counts into unbiased Pauli expectation estimates (X/Y letters are measured by appending
  basis rotations; observables that agree wire by wire share one circuit).

Programs are grouped into as few jobs as ``max_batch`` allows; a failed or timed-out job is
retried ``retries`` times with exponential back-off. ``shots_used``, ``circuits_run`` and
``jobs_run`` count what was spent.
"""
from __future__ import annotations

import importlib
import time
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..circuits import Circuit, compile_observables
from ..qasm import QasmError, dumps

#: Programs per job when neither the caller nor the device sets a limit.
DEFAULT_MAX_BATCH = 100
#: Polling of a job with a timeout: first interval and cap, seconds.
POLL_START_S = 0.01
POLL_MAX_S = 2.0
#: Pauli codes of a compiled observable table.
PAULI_I, PAULI_X, PAULI_Y, PAULI_Z = 0, 1, 2, 3
#: Errors that no retry can cure: the program or the arguments are wrong.
NOT_RETRIED = (QasmError, ValueError, TypeError, ImportError)


@runtime_checkable
class HardwareBackend(Protocol):
    """Runs bound OpenQASM programs and returns counts (``c[0]`` first in every key)."""

    shots_used: int

    def submit(self, programs: Sequence[str], shots: int) -> list[dict[str, int]]:
        ...


def require(module: str, extra: str, what: str) -> Any:
    """Import optional dependency ``module`` or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what} needs the optional package {module.split('.')[0]!r}: "
                          f"pip install 'hdqnn[{extra}]'") from exc


def check_shots(shots: Any) -> int:
    if shots is None:
        raise ValueError("a shot-based device needs shots (a positive int); shots=None means exact "
                         "expectations, which only the simulator gives")
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be a positive int, got {shots!r}")
    return int(shots)


def measurement_groups(table: np.ndarray) -> list[tuple[str, list[int]]]:
    """Split Pauli strings [K, n] (0=I,1=X,2=Y,3=Z) into groups measurable by one circuit.

    Returns (basis, rows): ``basis`` is one letter per wire ('X', 'Y' or 'Z') and ``rows`` the
    observables it measures. Strings that agree on every wire both act on share a group.
    """
    groups: list[tuple[list[str], list[int]]] = []
    for k, row in enumerate(np.asarray(table)):
        letters = {q: "IXYZ"[int(c)] for q, c in enumerate(row) if c != PAULI_I}
        for basis, rows in groups:
            if all(basis[q] in ("", letter) for q, letter in letters.items()):
                break
        else:
            basis, rows = [""] * len(row), []
            groups.append((basis, rows))
        for q, letter in letters.items():
            basis[q] = letter
        rows.append(k)
    return [("".join(letter or "Z" for letter in basis), rows) for basis, rows in groups]


def with_measurement_basis(circuit: Circuit, basis: str) -> Circuit:
    """``circuit`` followed by the rotations that turn X/Y measurements into Z measurements."""
    if set(basis) <= {"Z"}:
        return circuit
    rotated = circuit.copy()
    for q, letter in enumerate(basis):
        if letter == "X":
            rotated.h(q)
        elif letter == "Y":  # H S^dagger maps Y's eigenbasis onto Z's
            rotated.sdg(q).h(q)
    return rotated


def expectations_from_counts(counts: dict[str, int], masks: np.ndarray) -> np.ndarray:
    """Estimates of Z-strings from one program's counts: [K] float64.

    masks: bool [K, n], True where the string has Z (after basis rotation); keys have ``c[i]``
    (= wire i) at position i. Each estimate is the mean of (-1)**parity over the shots.
    """
    if not counts:
        raise ValueError("a program returned no counts")
    keys = list(counts)
    width = masks.shape[1]
    bad = next((k for k in keys if len(k.replace(" ", "")) != width), None)
    if bad is not None:
        raise ValueError(f"count key {bad!r} has {len(bad)} bits, expected one per qubit ({width})")
    bits = np.array([[ch == "1" for ch in k.replace(" ", "")] for k in keys], dtype=np.int64)
    freq = np.array([counts[k] for k in keys], dtype=np.float64)
    parity = (bits @ masks.T.astype(np.int64)) & 1  # [M, K]
    return (freq @ (1.0 - 2.0 * parity)) / freq.sum()


def _as_float_array(values: Any) -> np.ndarray | None:
    if values is None:
        return None
    if hasattr(values, "detach"):  # torch tensor, read without importing torch
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def wait_for(job: Any, timeout: float | None) -> Any:
    """``job.result()`` within ``timeout`` seconds (None: wait); cancels the job and raises
    TimeoutError when it runs past. Works with any job exposing ``done()`` and ``result()``."""
    if timeout is None or not hasattr(job, "done"):
        return job.result()
    deadline = time.monotonic() + timeout
    interval = POLL_START_S
    while not job.done():
        if time.monotonic() >= deadline:
            if hasattr(job, "cancel"):
                job.cancel()
            raise TimeoutError(f"job did not finish within {timeout} s (cancelled)")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(2 * interval, POLL_MAX_S)
    return job.result()


class ShotRunner:
    """Base of the adapters: job batching, timeouts, retries, usage counters and ``run``.

    Subclasses set ``version``/``dialect`` (how circuits are exported) and implement
    ``_run_job(programs, shots) -> counts``; they may lower ``_device_batch_limit``.
    """

    version = "3.0"
    dialect = "standard"

    def __init__(self, *, max_batch: int | None = None, timeout: float | None = None,
                 retries: int = 2, retry_delay: float = 1.0) -> None:
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int)
                                      or max_batch < 1):
            raise ValueError(f"max_batch must be a positive int or None, got {max_batch!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not retry_delay >= 0:
            raise ValueError(f"retry_delay must be >= 0 seconds, got {retry_delay!r}")
        self.max_batch = max_batch
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.basis: list[str] | None = None
        self.shots_used = 0
        self.circuits_run = 0
        self.jobs_run = 0

    # ----------------------------------------------------------------- protocol
    def submit(self, programs: Sequence[str], shots: int) -> list[dict[str, int]]:
        """Counts of each bound program, in order; as few jobs as the batch limit allows."""
        shots = check_shots(shots)
        if isinstance(programs, str):
            raise TypeError("submit takes a sequence of programs; wrap a single program in a list")
        programs = list(programs)
        size = self._batch_size(shots)
        counts: list[dict[str, int]] = []
        for lo in range(0, len(programs), size):
            chunk = programs[lo: lo + size]
            counts.extend(self._with_retries(chunk, shots))
            self._count_usage(len(chunk), shots)
        return counts

    def run(self, circuit: Circuit, inputs: Any, weights: Any, shots: int | None,
            observables: Any = None) -> np.ndarray:
        """Shot estimates of Pauli expectations, [B, K] float64 (``CircuitRunner`` protocol).

        inputs [B, n_inputs] (or None), weights [n_weights] or [B, n_weights], observables an
        int8 table [K, n] or any spec ``hdqnn.expval`` accepts (None: Z on every wire).
        """
        shots = check_shots(shots)
        table = _observable_table(observables, circuit.n_qubits)
        x, w = _as_float_array(inputs), _as_float_array(weights)
        batch = _batch_of(x, w)
        x = np.zeros((batch, 0)) if x is None else x
        groups = measurement_groups(table)
        rotated = [with_measurement_basis(circuit, basis) for basis, _ in groups]
        counts = self._execute(rotated, x, w, shots)
        out = np.empty((batch, table.shape[0]), dtype=np.float64)
        for g, (_, rows) in enumerate(groups):
            masks = table[rows] != PAULI_I
            for b in range(batch):
                out[b, rows] = expectations_from_counts(counts[g * batch + b], masks)
        return out

    def export(self, circuit: Circuit, inputs: np.ndarray, weights: np.ndarray | None) -> list[str]:
        """One bound program per row of ``inputs`` [B, D], in this adapter's dialect."""
        return dumps(circuit, inputs, weights, version=self.version, dialect=self.dialect,
                     basis=self.basis)

    def _count_usage(self, n_programs: int, shots: int, n_jobs: int = 1) -> None:
        self.shots_used += shots * n_programs
        self.circuits_run += n_programs
        self.jobs_run += n_jobs

    def reset_usage(self) -> None:
        self.shots_used = self.circuits_run = self.jobs_run = 0

    # ----------------------------------------------------------------- hooks
    def _execute(self, circuits: list[Circuit], x: np.ndarray, w: np.ndarray | None,
                 shots: int) -> list[dict[str, int]]:
        """Counts of every (circuit, row) pair, circuit-major; one ``submit`` for all of them."""
        programs = [p for c in circuits for p in self.export(c, x, w)]
        return self.submit(programs, shots)

    def _device_batch_limit(self, shots: int) -> int | None:
        return None

    def _run_job(self, programs: list[str], shots: int) -> list[dict[str, int]]:
        raise NotImplementedError

    # ----------------------------------------------------------------- internals
    def _batch_size(self, shots: int) -> int:
        limits = [x for x in (self.max_batch, self._device_batch_limit(shots)) if x is not None]
        return max(1, min(limits)) if limits else DEFAULT_MAX_BATCH

    def _with_retries(self, programs: list[str], shots: int) -> list[dict[str, int]]:
        for attempt in range(self.retries + 1):
            try:
                counts = self._run_job(programs, shots)
            except NOT_RETRIED:
                raise
            except Exception as exc:  # noqa: BLE001 - device/network failures are retried, then re-raised
                if attempt == self.retries:
                    raise RuntimeError(
                        f"{type(self).__name__}: a job of {len(programs)} program(s) failed "
                        f"{attempt + 1} time(s); last error: {type(exc).__name__}: {exc}"
                    ) from exc
                time.sleep(self.retry_delay * 2**attempt)
            else:
                if len(counts) != len(programs):
                    raise RuntimeError(f"{type(self).__name__}: a job of {len(programs)} program(s) "
                                       f"returned {len(counts)} result(s)")
                return counts
        raise AssertionError("unreachable")


def _observable_table(observables: Any, n_qubits: int) -> np.ndarray:
    if isinstance(observables, np.ndarray) and observables.dtype == np.int8 and observables.ndim == 2:
        if observables.shape[1] != n_qubits:
            raise ValueError(f"observable table has {observables.shape[1]} columns for {n_qubits} qubits")
        return observables
    return compile_observables(observables, n_qubits)


def _batch_of(x: np.ndarray | None, w: np.ndarray | None) -> int:
    if x is not None and x.ndim != 2:
        raise ValueError(f"inputs must be [B, n_inputs], got shape {x.shape}")
    if w is not None and w.ndim not in (1, 2):
        raise ValueError(f"weights must be [n_weights] or [B, n_weights], got shape {w.shape}")
    sizes = {a.shape[0] for a in (x, w) if a is not None and a.ndim == 2}
    if len(sizes) > 1:
        raise ValueError(f"inputs and per-sample weights disagree on the batch size: {sorted(sizes)}")
    return sizes.pop() if sizes else 1
