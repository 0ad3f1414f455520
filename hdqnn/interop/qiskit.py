"""Qiskit 2.x on hdqnn's engine: the ``Estimator`` and ``Sampler`` primitives, and converters.

``Estimator`` (a ``BaseEstimatorV2``) and ``Sampler`` (a ``BaseSamplerV2``) take PUBs exactly as
Qiskit defines them (Qiskit's own coercion, broadcasting and result containers) and run every PUB
that shares a circuit object (and, for the sampler, a shot count) in ONE engine call: all their
parameter rows stacked, every Pauli term of every observable read in the same pass. The estimator
is exact: ``precision`` is a bound an exact simulator always meets, so ``stds`` are 0 and identical
rows give identical values (Qiskit's ``StatevectorEstimator`` adds Gaussian noise of width
``precision`` instead, which qiskit-machine-learning's ``EstimatorQNN`` triggers by passing
``precision=0.015625``); ``emulate_precision=True`` restores that noise. ``Sampler`` returns
``BitArray`` s per classical register in Qiskit's bit order (clbit 0 is the least significant bit).

Circuits are converted by :func:`from_qiskit` (see :mod:`hdqnn.interop.qiskit_circuit`: bit order,
parameter expressions, measurements) and the conversion is cached per circuit object.
``EstimatorGradient`` and ``to_quantum_layer`` (qiskit-machine-learning) load on first use.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable

import numpy as np
from qiskit.primitives import (BaseEstimatorV2, BaseSamplerV2, BitArray, DataBin, PrimitiveResult, PubResult,
                               SamplerPubResult)
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.primitives.primitive_job import PrimitiveJob

from ..sim import expval, sample
from ..sim import statevector as engine_statevector
from .qiskit_circuit import QiskitSlots, cached_from_qiskit, from_qiskit, to_qiskit_order

# EstimatorGradient, EstimatorQNNLayer and to_quantum_layer load on first use (module __getattr__)
__all__ = ["Estimator", "Sampler", "from_qiskit", "statevector", "QiskitSlots", "to_qiskit_order"]

#: |imaginary part| an observable's combined coefficient may keep and still count as Hermitian.
COEFF_IMAG_TOL = 1e-10


def __getattr__(name: str):
    # qiskit-machine-learning is optional: its classes load on first use
    if name in ("EstimatorGradient", "EstimatorQNNLayer", "to_quantum_layer"):
        from . import qiskit_ml

        return getattr(qiskit_ml, name)
    raise AttributeError(f"module 'hdqnn.interop.qiskit' has no attribute {name!r}")


def parameter_rows(circuit: Any, bindings: Any) -> np.ndarray:
    """A PUB's ``BindingsArray`` as float64 [prod(shape), P] rows in ``circuit.parameters`` order."""
    n_rows = math.prod(bindings.shape)
    n_params = circuit.num_parameters
    if n_params == 0:
        return np.zeros((n_rows, 0), dtype=np.float64)
    return np.asarray(bindings.as_array(circuit.parameters), dtype=np.float64).reshape(n_rows, n_params)


def statevector(circuit: Any, parameter_values: Any = None, *, dtype: Any = np.complex128) -> np.ndarray:
    """Final states of a Qiskit circuit, [N, 2**n] in Qiskit's index order (qubit 0 the least
    significant bit) with its global phase: row r equals ``Statevector(circuit.assign_parameters(
    parameter_values[r])).data``. ``parameter_values``: [N, P] or [P] in ``circuit.parameters`` order."""
    hd, slots = cached_from_qiskit(circuit)
    values = slots.check_values(np.zeros((1, 0)) if parameter_values is None else parameter_values)
    psi = engine_statevector(hd, slots.inputs(values), dtype=dtype)
    return to_qiskit_order(psi) * np.exp(1j * slots.phase(values))[:, None].astype(psi.dtype)


def distinct_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows of ``values`` [N, P] in order of first appearance, the index of each row's
    among them). qiskit-ml repeats every parameter row once per observable (its forward's PUBs
    share one value array; its backward tiles the rows K times), and each distinct row needs one
    forward only. Rows are compared by their bytes: a dict of 2,560 rows of 210 values takes ~3 ms,
    np.unique(axis=0)'s sort ~30 ms."""
    values = np.ascontiguousarray(values)
    first: dict[bytes, int] = {}
    index = np.fromiter((first.setdefault(row.tobytes(), len(first)) for row in values), dtype=np.int64,
                        count=len(values))
    _, first_row = np.unique(index, return_index=True)  # each distinct row's first occurrence
    return values[first_row], index


def _group_by_circuit(pubs: list, key) -> list[list[int]]:
    groups: dict[Any, list[int]] = {}
    for i, pub in enumerate(pubs):
        groups.setdefault(key(pub), []).append(i)
    return list(groups.values())


class PauliUnion:
    """The union of the Pauli terms of many observables, and each observable's coefficient row:
    ``<O_r> = coeffs[r] @ <terms> + constants[r]`` (identity terms are the constants)."""

    def __init__(self, observables: Iterable[Any]) -> None:
        self.terms: list[tuple[str, tuple[int, ...]]] = []
        index: dict[tuple[str, tuple[int, ...]], int] = {}
        entries: list[list[tuple[int, complex]]] = []
        constants: list[complex] = []
        for obs in observables:
            row, constant = [], 0j
            for letters, qubits, coeff in obs.as_paulis().to_sparse_list():
                if not letters:
                    constant += coeff
                    continue
                term = tuple(sorted(zip(qubits, letters)))
                key = ("".join(l for _, l in term), tuple(int(q) for q, _ in term))
                if key not in index:
                    index[key] = len(self.terms)
                    self.terms.append(key)
                row.append((index[key], coeff))
            entries.append(row)
            constants.append(constant)
        coeffs = np.zeros((len(entries), len(self.terms)), dtype=np.complex128)
        for r, row in enumerate(entries):
            for k, c in row:
                coeffs[r, k] += c
        self.coeffs = _real(coeffs)
        self.constants = _real(np.asarray(constants, dtype=np.complex128))


def _real(values: np.ndarray) -> np.ndarray:
    if np.abs(values.imag).max(initial=0.0) > COEFF_IMAG_TOL:
        raise ValueError("an observable has complex coefficients (it is not Hermitian), so its expectation "
                         "value is not real; the estimator takes Hermitian observables only")
    return values.real.copy()


class Estimator(BaseEstimatorV2):
    """Exact ``BaseEstimatorV2`` on hdqnn's engine; PUBs sharing a circuit run in one engine call.

    Args:
        default_precision: the precision a PUB gets when neither it nor ``run`` names one (reported
            in the metadata; the values are exact unless ``emulate_precision``).
        emulate_precision: add Gaussian noise of width ``precision`` to every value and report
            ``stds = precision``, as Qiskit's ``StatevectorEstimator`` does.
        seed: seed or ``np.random.Generator`` of that noise.
        dtype: the engine's complex dtype (complex128 by default).
        backend: an hdqnn backend name (None: the default engine).
    """

    def __init__(self, *, default_precision: float = 0.0, emulate_precision: bool = False,
                 seed: int | np.random.Generator | None = None, dtype: Any = np.complex128,
                 backend: Any = None) -> None:
        self._default_precision = default_precision
        self._emulate = bool(emulate_precision)
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._dtype = dtype
        self._backend = backend

    @property
    def default_precision(self) -> float:
        return self._default_precision

    def run(self, pubs: Iterable[Any], *, precision: float | None = None) -> PrimitiveJob:
        if precision is None:
            precision = self._default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub]) -> PrimitiveResult:
        results: list[PubResult | None] = [None] * len(pubs)
        for group in _group_by_circuit(pubs, lambda pub: id(pub.circuit)):
            for i, result in zip(group, self._run_group([pubs[i] for i in group])):
                results[i] = result
        return PrimitiveResult(results, metadata={"version": 2})

    def _run_group(self, pubs: list[EstimatorPub]) -> list[PubResult]:
        """Every PUB of one circuit: one expval call over all their rows and Pauli terms."""
        circuit = pubs[0].circuit
        hd, slots = cached_from_qiskit(circuit)
        rows = [parameter_rows(circuit, pub.parameter_values) for pub in pubs]
        flat_obs = [pub.observables.sparse_observables_array().ravel() for pub in pubs]
        union = PauliUnion(o for obs in flat_obs for o in obs)
        values = np.concatenate(rows)
        if union.terms and len(values):
            distinct, row_of = distinct_rows(values)
            ev = expval(hd, slots.inputs(distinct), observables=union.terms, dtype=self._dtype, backend=self._backend)
            ev = np.asarray(ev, dtype=np.float64)[row_of]
        else:  # identity observables only, or no rows
            ev = np.zeros((values.shape[0], len(union.terms)))
        results, row0, obs0 = [], 0, 0
        for pub, r, obs in zip(pubs, rows, flat_obs):
            block = ev[row0:row0 + len(r)]
            coeffs = union.coeffs[obs0:obs0 + len(obs)]
            constants = union.constants[obs0:obs0 + len(obs)]
            results.append(self._pub_result(pub, block, coeffs, constants))
            row0, obs0 = row0 + len(r), obs0 + len(obs)
        return results

    def _pub_result(self, pub: EstimatorPub, block: np.ndarray, coeffs: np.ndarray, constants: np.ndarray) -> PubResult:
        """Broadcast the PUB's parameter rows against its observables, as Qiskit defines it."""
        row_of = np.arange(block.shape[0]).reshape(pub.parameter_values.shape)
        obs_of = np.arange(coeffs.shape[0]).reshape(pub.observables.shape)
        row_of, obs_of = np.broadcast_arrays(row_of, obs_of)  # shape == pub.shape
        evs = np.einsum("ik,ik->i", block[row_of.ravel()], coeffs[obs_of.ravel()]) + constants[obs_of.ravel()]
        evs = evs.reshape(pub.shape)
        stds = np.zeros(pub.shape)
        if self._emulate and pub.precision > 0:
            evs = self._rng.normal(evs, pub.precision)
            stds = np.full(pub.shape, float(pub.precision))
        return PubResult(DataBin(evs=evs, stds=stds, shape=pub.shape),
                         metadata={"target_precision": pub.precision, "circuit_metadata": pub.circuit.metadata})


class Sampler(BaseSamplerV2):
    """``BaseSamplerV2`` on hdqnn's engine; PUBs sharing a circuit and a shot count run in one call.

    Results hold one ``BitArray`` per classical register of the circuit (named as in the circuit,
    ``meas`` after ``measure_all``), in Qiskit's bit order; bits that no final measurement writes
    read 0. Mid-circuit measurements, resets and control flow raise ValueError.

    Args:
        default_shots: shots of a PUB that names none, when ``run`` names none either.
        seed: seed or ``np.random.Generator`` of the shots.
        backend: an hdqnn backend name (None: the default engine).
    """

    def __init__(self, *, default_shots: int = 1024, seed: int | np.random.Generator | None = None,
                 backend: Any = None) -> None:
        self._default_shots = default_shots
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._backend = backend

    @property
    def default_shots(self) -> int:
        return self._default_shots

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> PrimitiveJob:
        if shots is None:
            shots = self._default_shots
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        if any(len(pub.circuit.cregs) == 0 for pub in coerced):
            warnings.warn("One of your circuits has no output classical registers and so the result will be "
                          "empty. Did you mean to add measurement instructions?", UserWarning, stacklevel=2)
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[SamplerPub]) -> PrimitiveResult:
        results: list[SamplerPubResult | None] = [None] * len(pubs)
        for group in _group_by_circuit(pubs, lambda pub: (id(pub.circuit), pub.shots)):
            for i, result in zip(group, self._run_group([pubs[i] for i in group])):
                results[i] = result
        return PrimitiveResult(results, metadata={"version": 2})

    def _run_group(self, pubs: list[SamplerPub]) -> list[SamplerPubResult]:
        circuit, shots = pubs[0].circuit, pubs[0].shots
        hd, slots = cached_from_qiskit(circuit)
        rows = [parameter_rows(circuit, pub.parameter_values) for pub in pubs]
        values = np.concatenate(rows)
        if slots.registers and len(values):
            bits = sample(hd, slots.inputs(values), shots=shots, seed=self._rng, backend=self._backend)
        else:  # nothing to measure, or no rows
            bits = np.zeros((len(values), shots, slots.n_qubits), dtype=np.uint8)
        results, row0 = [], 0
        for pub, r in zip(pubs, rows):
            block = bits[row0:row0 + len(r)]
            data = {name: _bit_array(block, qubits, pub.shape) for name, qubits in slots.registers.items()}
            results.append(SamplerPubResult(DataBin(**data, shape=pub.shape),
                                            metadata={"shots": shots, "circuit_metadata": circuit.metadata}))
            row0 += len(r)
        return results


def _bit_array(bits: np.ndarray, qubits: tuple, shape: tuple) -> BitArray:
    """One register's ``BitArray`` of ``shape`` from hdqnn bits [rows, shots, n] (column q = qubit q);
    register bit c reads qubit ``qubits[c]`` (None: 0)."""
    out = np.zeros((*bits.shape[:2], len(qubits)), dtype=bool)
    for c, q in enumerate(qubits):
        if q is not None:
            out[..., c] = bits[..., q]
    return BitArray.from_bool_array(out, order="little").reshape(shape)
