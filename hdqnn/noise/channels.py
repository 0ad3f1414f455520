"""Quantum channels on one or two qubits, and classical readout errors (NumPy only).

A :class:`Channel` is an immutable value: the constructor that made it (``kind`` and its
parameters, kept for printing and JSON) and its Kraus operators, from which the superoperator and
the Pauli transfer matrix follow. Conventions, shared with the gate table:
  - a two-qubit operator is indexed by ``2 * bit(wire0) + bit(wire1)`` (the first wire is the most
    significant bit), as hdqnn's 4x4 gate matrices are;
  - the superoperator acts on the row-major (C order) flattening of the density matrix,
    ``vec(E(rho)) = S @ rho.reshape(-1)``, so ``S = sum_k K_k (x) conj(K_k)`` (Qiskit's ``SuperOp``
    stacks columns and orders qubits the other way; the importers convert);
  - the Pauli transfer matrix is ``R[i, j] = Tr(P_i E(P_j)) / d`` with Paulis ordered I, X, Y, Z
    (hdqnn's Pauli codes 0-3) and, for two qubits, ``i = 4 * letter(wire0) + letter(wire1)``.
Named channels follow Qiskit Aer's definitions of the same names, so a model imported from Aer
and one written by hand agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Iterable

import numpy as np

#: Largest channel: a gate's noise acts on the gate's wires, and gates act on at most two.
MAX_CHANNEL_QUBITS = 2
#: Default tolerance of the trace-preservation check of user Kraus sets (Qiskit's default).
KRAUS_TP_ATOL = 1e-8
#: Choi eigenvalues below this fraction of the largest are rounding noise of a rank-deficient
#: channel and give no Kraus operator; one below minus this is not completely positive.
CHOI_CUTOFF = 1e-14
#: Probability sums above 1 by at most this are rounding (e.g. 0.1 + 0.2 + 0.7), not an error.
PROBABILITY_SLACK = 1e-12

_PAULIS = (
    np.eye(2, dtype=np.complex128),
    np.array([[0, 1], [1, 0]], dtype=np.complex128),
    np.array([[0, -1j], [1j, 0]], dtype=np.complex128),
    np.diag([1.0, -1.0]).astype(np.complex128),
)


def pauli_basis(n_qubits: int) -> np.ndarray:
    """Every n-qubit Pauli string as a matrix, [4**n, 2**n, 2**n]; index = letters base 4, wire 0 first."""
    mats = []
    for letters in product(range(4), repeat=n_qubits):
        m = np.ones((1, 1), dtype=np.complex128)
        for letter in letters:
            m = np.kron(m, _PAULIS[letter])
        mats.append(m)
    return np.stack(mats)


def _probability(value: object, name: str, upper: float = 1.0) -> float:
    """``value`` as a float in [0, upper], or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value <= upper:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, {upper:g}], got {value}")
    return value


def _positive_time(value: object, name: str, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def _drop_zero_ops(ops: Iterable[np.ndarray]) -> np.ndarray:
    """Kraus operators without the exactly-zero ones (a p = 0 term adds nothing, and costs a
    trajectory branch later); at least one operator is always kept."""
    ops = [np.asarray(k, dtype=np.complex128) for k in ops]
    kept = [k for k in ops if np.any(k != 0)]
    return np.stack(kept or ops[:1])


@dataclass(frozen=True, eq=False)
class Channel:
    """A completely positive, trace-preserving map on ``n_qubits`` (1 or 2) qubits.

    Build one with :func:`depolarizing`, :func:`pauli_channel`, :func:`amplitude_damping`,
    :func:`phase_damping`, :func:`thermal_relaxation` or :func:`kraus`. Two channels are equal when
    they were built the same way (same kind, parameters and Kraus operators); compare
    ``superop`` to ask whether two differently built channels are the same map.
    """

    kind: str
    #: the constructor's arguments by name, in its order (empty for ``kraus``)
    params: tuple[tuple[str, float], ...]
    #: [K, d, d] complex128, read-only
    kraus_ops: np.ndarray

    @property
    def n_qubits(self) -> int:
        return int(self.kraus_ops.shape[-1]).bit_length() - 1

    @property
    def dim(self) -> int:
        return int(self.kraus_ops.shape[-1])

    @property
    def superop(self) -> np.ndarray:
        """[d**2, d**2] complex128 acting on ``rho.reshape(-1)`` (row-major)."""
        return sum(np.kron(k, k.conj()) for k in self.kraus_ops)

    @property
    def ptm(self) -> np.ndarray:
        """Pauli transfer matrix [4**n, 4**n] float64 (real for every CPTP map)."""
        basis = pauli_basis(self.n_qubits)
        images = np.stack([self.apply(p) for p in basis])  # E(P_j)
        return np.einsum("iab,jba->ij", basis, images).real / self.dim

    def apply(self, rho: np.ndarray) -> np.ndarray:
        """E(rho) for one density matrix [d, d]."""
        return sum(k @ rho @ k.conj().T for k in self.kraus_ops)

    def compose(self, other: "Channel") -> "Channel":
        """This channel, then ``other`` on the same qubits, as one Kraus channel."""
        _check_same_width(self, other, "compose")
        ops = _drop_zero_ops(b @ a for a in self.kraus_ops for b in other.kraus_ops)
        if len(ops) > self.dim**2:  # no channel needs more than d**2 operators: the Choi rank
            return kraus_from_superop(other.superop @ self.superop)
        return kraus(ops)

    def tensor(self, other: "Channel") -> "Channel":
        """This one-qubit channel on the first wire and ``other`` on the second, as one two-qubit channel."""
        if self.n_qubits != 1 or other.n_qubits != 1:
            raise ValueError(
                f"tensor takes two one-qubit channels, got {self.n_qubits} and {other.n_qubits} qubits"
            )
        return kraus([np.kron(a, b) for a in self.kraus_ops for b in other.kraus_ops])

    # ------------------------------------------------------------------ identity and display
    def _key(self) -> tuple:
        return (self.kind, self.params, self.kraus_ops.shape, self.kraus_ops.tobytes())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Channel) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        if self.kind == "kraus":
            return f"kraus(<{len(self.kraus_ops)} operator(s) on {self.n_qubits} qubit(s)>)"
        return f"{self.kind}(" + ", ".join(f"{k}={v!r}" for k, v in self.params) + ")"

    # ------------------------------------------------------------------ JSON form
    def to_dict(self) -> dict:
        """A JSON-ready dict; floats survive ``json`` exactly (shortest round-trip repr)."""
        if self.kind == "kraus":
            ops = self.kraus_ops
            return {"kind": "kraus", "real": ops.real.tolist(), "imag": ops.imag.tolist()}
        return {"kind": self.kind, **dict(self.params)}

    @staticmethod
    def from_dict(data: dict) -> "Channel":
        """Inverse of :meth:`to_dict`; every value is checked by the channel's constructor."""
        if not isinstance(data, dict) or "kind" not in data:
            raise ValueError(f"a channel must be a dict with a 'kind', got {data!r}")
        fields = dict(data)
        kind = fields.pop("kind")
        if kind == "kraus":
            if set(fields) != {"real", "imag"}:
                raise ValueError(f"a kraus channel needs exactly 'real' and 'imag', got {sorted(fields)}")
            real, imag = np.asarray(fields["real"], dtype=np.float64), np.asarray(fields["imag"], dtype=np.float64)
            if real.shape != imag.shape:
                raise ValueError(f"kraus 'real' and 'imag' differ in shape: {real.shape} vs {imag.shape}")
            return kraus(real + 1j * imag)
        constructor = _CONSTRUCTORS.get(kind)
        if constructor is None:
            raise ValueError(f"unknown channel kind {kind!r}; known: {sorted(_CONSTRUCTORS) + ['kraus']}")
        try:
            return constructor(**fields)
        except TypeError as exc:  # missing or unexpected field names
            raise ValueError(f"bad fields for channel {kind!r}: {exc}") from None


def _check_same_width(a: Channel, b: Channel, what: str) -> None:
    if a.n_qubits != b.n_qubits:
        raise ValueError(f"cannot {what} a {a.n_qubits}-qubit channel with a {b.n_qubits}-qubit one")


# ---------------------------------------------------------------------- constructors
def depolarizing(p: float, n_qubits: int = 1) -> Channel:
    """``E(rho) = (1 - p) rho + p Tr(rho) I / 2**n``, as ``qiskit_aer.noise.depolarizing_error(p, n)``.

    ``p`` in [0, 1] is the probability of replacing the state by the maximally mixed one; as in
    Aer, ``p`` may go up to ``4**n / (4**n - 1)``, the uniform mixture of the non-identity Paulis.
    """
    if isinstance(n_qubits, bool) or n_qubits not in (1, 2):
        raise ValueError(f"depolarizing acts on 1 or 2 qubits, got n_qubits={n_qubits!r}")
    n_paulis = 4**n_qubits
    p = _probability(p, "depolarizing p", upper=n_paulis / (n_paulis - 1))
    basis = pauli_basis(n_qubits)
    weights = np.full(n_paulis, p / n_paulis)
    weights[0] = max(0.0, 1.0 - p * (n_paulis - 1) / n_paulis)
    ops = _drop_zero_ops(np.sqrt(w) * m for w, m in zip(weights, basis))
    return Channel("depolarizing", (("p", p), ("n_qubits", int(n_qubits))), _frozen(ops))


def pauli_channel(px: float, py: float, pz: float) -> Channel:
    """``rho -> (1 - px - py - pz) rho + px X rho X + py Y rho Y + pz Z rho Z`` on one qubit."""
    probs = [_probability(v, name) for v, name in ((px, "px"), (py, "py"), (pz, "pz"))]
    total = sum(probs)
    if total > 1.0 + PROBABILITY_SLACK:
        raise ValueError(f"pauli_channel probabilities px + py + pz must be <= 1, got {total}")
    weights = [max(0.0, 1.0 - total)] + probs
    ops = _drop_zero_ops(np.sqrt(w) * m for w, m in zip(weights, _PAULIS))
    return Channel("pauli_channel", (("px", probs[0]), ("py", probs[1]), ("pz", probs[2])), _frozen(ops))


def _damping_ops(gamma: float, lam: float) -> np.ndarray:
    """Amplitude damping (gamma) and phase damping (lam) together, as Aer's
    ``phase_amplitude_damping_error(gamma, lam)`` at zero temperature (the two commute)."""
    return _drop_zero_ops([
        np.diag([1.0, math.sqrt((1.0 - gamma) * (1.0 - lam))]),
        np.array([[0.0, math.sqrt(gamma)], [0.0, 0.0]]),
        np.diag([0.0, math.sqrt(lam * (1.0 - gamma))]),
    ])


def amplitude_damping(gamma: float) -> Channel:
    """Energy loss |1> -> |0> with probability ``gamma``, as Aer's ``amplitude_damping_error(gamma)``."""
    gamma = _probability(gamma, "amplitude_damping gamma")
    return Channel("amplitude_damping", (("gamma", gamma),), _frozen(_damping_ops(gamma, 0.0)))


def phase_damping(lam: float) -> Channel:
    """Coherence loss: off-diagonals times ``sqrt(1 - lam)``, as Aer's ``phase_damping_error(lam)``."""
    lam = _probability(lam, "phase_damping lam")
    return Channel("phase_damping", (("lam", lam),), _frozen(_damping_ops(0.0, lam)))


def thermal_relaxation(t1: float, t2: float, time: float) -> Channel:
    """T1/T2 relaxation for ``time`` at zero temperature, as Aer's ``thermal_relaxation_error(t1, t2, time)``.

    Populations relax to |0> with probability ``1 - exp(-time/t1)`` and coherences decay by
    ``exp(-time/t2)``; physical only for ``t2 <= 2 * t1``. ``t1``/``t2`` may be ``inf`` (no decay).
    Any unit, as long as the three agree.
    """
    t1 = _positive_time(t1, "thermal_relaxation t1", allow_zero=False)
    t2 = _positive_time(t2, "thermal_relaxation t2", allow_zero=False)
    time = _positive_time(time, "thermal_relaxation time", allow_zero=True)
    if t2 - 2 * t1 > 0:  # Aer's test, written the same way so the same inputs pass
        raise ValueError(f"thermal_relaxation needs t2 <= 2 * t1, got t1={t1}, t2={t2}")
    if math.isinf(time):
        raise ValueError("thermal_relaxation time must be finite")
    gamma = -math.expm1(-time / t1)  # 1 - exp(-time/t1), accurate for tiny time/t1
    # coherence: amplitude damping leaves sqrt(1 - gamma) = exp(-time/(2 t1)); phase damping
    # supplies the rest of exp(-time/t2), a factor sqrt(1 - lam) = exp(-time/t2 + time/(2 t1))
    lam = -math.expm1(-2 * time / t2 + time / t1)
    ops = _damping_ops(gamma, min(max(lam, 0.0), 1.0))
    return Channel("thermal_relaxation", (("t1", t1), ("t2", t2), ("time", time)), _frozen(ops))


def kraus(ops, atol: float = KRAUS_TP_ATOL) -> Channel:
    """A channel from its Kraus operators, [K, d, d] with d = 2 or 4 (hdqnn's wire order),
    checked for trace preservation: ``|sum_k K_k^dagger K_k - I| <= atol`` entrywise."""
    try:
        arr = np.array(ops, dtype=np.complex128)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"kraus operators must be a [K, d, d] array of numbers: {exc}") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] != arr.shape[2] or arr.shape[1] not in (2, 4):
        raise ValueError(
            f"kraus operators must be [K >= 1, d, d] with d = 2 (1 qubit) or 4 (2 qubits), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("kraus operators must be finite")
    gram = np.einsum("kji,kjl->il", arr.conj(), arr)
    deviation = float(np.max(np.abs(gram - np.eye(arr.shape[1]))))
    if deviation > atol:
        raise ValueError(
            f"kraus operators are not trace preserving: sum K^dagger K differs from I by {deviation:.3g} "
            f"(> atol={atol:g})"
        )
    return Channel("kraus", (), _frozen(arr))


def kraus_from_superop(superop: np.ndarray, atol: float = KRAUS_TP_ATOL) -> Channel:
    """The Kraus channel of a superoperator in this module's convention (row-major ``vec``).

    Kraus operators come from the eigenvectors of the Choi matrix ``C[(i,k),(j,l)] =
    E(|i><j|)[k,l]``; eigenvalues that are rounding noise are dropped, a clearly negative one
    means the map is not completely positive.
    """
    s = np.asarray(superop, dtype=np.complex128)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] not in (4, 16):
        raise ValueError(f"a superoperator must be [4, 4] or [16, 16], got shape {s.shape}")
    d = math.isqrt(s.shape[0])
    # S[(k,l),(i,j)] = E(|i><j|)[k,l]  ->  C[(i,k),(j,l)]
    choi = s.reshape(d, d, d, d).transpose(2, 0, 3, 1).reshape(d * d, d * d)
    evals, evecs = np.linalg.eigh((choi + choi.conj().T) / 2)
    cutoff = CHOI_CUTOFF * max(float(evals.max()), 1.0)
    if evals.min() < -max(atol, cutoff):
        raise ValueError(f"superoperator is not completely positive (Choi eigenvalue {evals.min():.3g})")
    keep = evals > cutoff
    # K[k, i] = sqrt(lambda) v[(i, k)]
    ops = [math.sqrt(lam) * v.reshape(d, d).T for lam, v in zip(evals[keep], evecs[:, keep].T)]
    return kraus(ops, atol=atol)


_CONSTRUCTORS = {
    "depolarizing": depolarizing,
    "pauli_channel": pauli_channel,
    "amplitude_damping": amplitude_damping,
    "phase_damping": phase_damping,
    "thermal_relaxation": thermal_relaxation,
}


@dataclass(frozen=True)
class ReadoutError:
    """Classical misreading of one measured qubit: it reports 1 for a prepared 0 with probability
    ``p_meas1_given0`` and 0 for a prepared 1 with probability ``p_meas0_given1``."""

    p_meas1_given0: float
    p_meas0_given1: float

    def __post_init__(self) -> None:
        for name in ("p_meas1_given0", "p_meas0_given1"):
            object.__setattr__(self, name, _probability(getattr(self, name), f"ReadoutError {name}"))

    @property
    def confusion(self) -> np.ndarray:
        """[2, 2] float64 ``A[measured, prepared]``: columns sum to 1, ``p_measured = A @ p_prepared``."""
        p10, p01 = self.p_meas1_given0, self.p_meas0_given1
        return np.array([[1.0 - p10, p01], [p10, 1.0 - p01]])

    def to_dict(self) -> dict:
        return {"p_meas1_given0": self.p_meas1_given0, "p_meas0_given1": self.p_meas0_given1}

    @staticmethod
    def from_dict(data: dict) -> "ReadoutError":
        if not isinstance(data, dict) or set(data) != {"p_meas1_given0", "p_meas0_given1"}:
            raise ValueError(f"a readout error needs exactly p_meas1_given0 and p_meas0_given1, got {data!r}")
        return ReadoutError(data["p_meas1_given0"], data["p_meas0_given1"])
