"""Pauli-string observables, compiled to an int8 table [K, n_qubits] (0=I, 1=X, 2=Y, 3=Z)."""
from __future__ import annotations

from typing import Iterable, Sequence, Union

import numpy as np

PAULI_CODES = {"I": 0, "X": 1, "Y": 2, "Z": 3}

ObservableSpec = Union[str, tuple, dict]


def z_on_each_wire(n_qubits: int) -> np.ndarray:
    """Pauli-Z on every wire: the default readout, [n, n] int8."""
    table = np.zeros((n_qubits, n_qubits), dtype=np.int8)
    np.fill_diagonal(table, PAULI_CODES["Z"])
    return table


def _parse_letters(letters: str) -> list[int]:
    if not isinstance(letters, str) or not letters:
        raise ValueError(f"a Pauli string must be a non-empty str, got {letters!r}")
    codes = []
    for pos, ch in enumerate(letters):
        # ASCII first: str.upper() folds other letters onto these (dotless 'ı' -> 'I')
        code = PAULI_CODES.get(ch.upper()) if ch.isascii() else None
        if code is None:
            raise ValueError(
                f"unknown Pauli letter {ch!r} at position {pos} of {letters!r}; use I, X, Y, Z"
            )
        codes.append(code)
    return codes


def _is_wire(w: object) -> bool:
    return isinstance(w, (int, np.integer)) and not isinstance(w, bool)


def _term_wires(letters: str, wires: object) -> tuple:
    """The wires of a sparse term as a tuple: an int, or a sequence of ints (never a str)."""
    if _is_wire(wires):
        return (wires,)
    if isinstance(wires, str):
        raise TypeError(
            f"the wires of Pauli term {letters!r} must be ints, got the string {wires!r}: a tuple is read "
            f"as one sparse term (letters, wires); put several Pauli strings in a list: [{letters!r}, {wires!r}]"
        )
    if not isinstance(wires, (Sequence, np.ndarray)):
        raise TypeError(
            f"the wires of Pauli term {letters!r} must be an int or a sequence of ints, got {wires!r}"
        )
    for w in wires:
        if not _is_wire(w):
            raise TypeError(f"wire {w!r} of Pauli term {letters!r} must be an int, got {type(w).__name__}")
    return tuple(wires)


def _sparse_term(letters: str, wires: Union[int, Sequence[int]], n_qubits: int) -> np.ndarray:
    codes = _parse_letters(letters)
    wires = _term_wires(letters, wires)
    if len(wires) != len(codes):
        raise ValueError(f"Pauli term {letters!r} has {len(codes)} letters but {len(wires)} wires")
    if len(set(wires)) != len(wires):
        raise ValueError(f"Pauli term {letters!r} repeats a wire: {wires}")
    row = np.zeros(n_qubits, dtype=np.int8)
    for code, w in zip(codes, wires):
        if not 0 <= w < n_qubits:
            raise ValueError(f"wire {w!r} of Pauli term {letters!r} is out of range for {n_qubits} qubit(s)")
        row[w] = code
    return row


def _dense_term(letters: str, n_qubits: int) -> np.ndarray:
    codes = _parse_letters(letters)
    if len(codes) != n_qubits:
        raise ValueError(
            f"Pauli string {letters!r} has {len(codes)} letters; the circuit has {n_qubits} qubits "
            "(use a (letters, wires) pair or {letters: wires} for a sparse term)"
        )
    return np.asarray(codes, dtype=np.int8)


def _checked_table(table: np.ndarray, n_qubits: int) -> np.ndarray:
    """A compiled table passed back in (a layer's, every call): validated, not re-parsed."""
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] != n_qubits:
        raise ValueError(f"a compiled observable table must be [K >= 1, {n_qubits}], got shape {table.shape}")
    if not np.issubdtype(table.dtype, np.integer):
        raise TypeError(f"a compiled observable table must hold integer Pauli codes, got dtype {table.dtype}")
    if table.min() < 0 or table.max() > 3:
        raise ValueError("a compiled observable table holds codes 0-3 (I, X, Y, Z); got "
                         f"values in [{table.min()}, {table.max()}]")
    if table.dtype == np.int8 and not table.flags.writeable:
        return table
    table = table.astype(np.int8)
    table.setflags(write=False)
    return table


def compile_observables(observables: Union[None, ObservableSpec, Iterable], n_qubits: int) -> np.ndarray:
    """Turn a user observable spec into the engine's int8 [K, n_qubits] table.

    Accepts ``None`` (Z on each wire), a dense string ``"XZIY"`` (wire 0 first), a sparse
    ``("ZZ", (0, 3))`` pair, a dict ``{"ZZ": (0, 3), "X": 1}``, a list mixing these, or an
    already compiled integer table [K, n_qubits] of codes 0-3 (checked, returned as int8).
    """
    if observables is None:
        return z_on_each_wire(n_qubits)
    if isinstance(observables, np.ndarray):
        return _checked_table(observables, n_qubits)
    if isinstance(observables, (str, tuple, dict)):
        observables = [observables]
    rows: list[np.ndarray] = []
    for item in observables:
        if isinstance(item, str):
            rows.append(_dense_term(item, n_qubits))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            rows.append(_sparse_term(item[0], item[1], n_qubits))
        elif isinstance(item, dict):
            rows.extend(_sparse_term(k, v, n_qubits) for k, v in item.items())
        else:
            raise TypeError(
                f"cannot read observable {item!r}: use 'XZIY', ('ZZ', (0, 3)) or {{'ZZ': (0, 3)}}"
            )
    if not rows:
        raise ValueError("observables must name at least one Pauli string")
    table = np.stack(rows).astype(np.int8)
    table.setflags(write=False)
    return table
