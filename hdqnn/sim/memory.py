"""The memory a call needs at its peak, checked against what is available before anything is allocated.

A call's peak is its results plus the engine's workspace (``Backend.workspace_bytes``: per-worker
states, several samples in flight per worker, and psi and lambda in the adjoint) plus the Python
temporaries around it (sampling). A call that would claim more than MEMORY_FRACTION of the
available memory is refused with a ValueError naming its need; a MemoryError the engine raises
anyway (the estimate is an upper bound of hdqnn's own allocations, not of other processes') is
re-raised with the same account instead of a bare ``std::bad_alloc``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from .arrays import Prepared

#: Fraction of currently available memory one call may claim before we refuse it.
MEMORY_FRACTION = 0.8
#: Calls that need less are not checked: reading the available memory (~35 us) would cost a small
#: call a fifth of its time, and a machine without 64 MiB to spare fails everything anyway.
UNCHECKED_BYTES = 64 << 20
#: Where Linux reports available memory, and the cgroup (v2) limit of a container.
_MEMINFO = "/proc/meminfo"
_CGROUP_MAX = "/sys/fs/cgroup/memory.max"
_CGROUP_CURRENT = "/sys/fs/cgroup/memory.current"

GiB = float(1 << 30)


def _meminfo_available() -> int | None:
    """MemAvailable (free memory plus what the kernel can reclaim), or None where unknown."""
    try:
        with open(_MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """memory.max - memory.current of this process's cgroup, or None without a limit."""
    try:
        with open(_CGROUP_MAX) as f:
            limit = f.read().strip()
        with open(_CGROUP_CURRENT) as f:
            current = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - current)


def available_memory() -> int:
    """Bytes of memory a call can currently get: the machine's MemAvailable, capped by a container's
    cgroup limit (sysconf's free pages where /proc is missing; large if nothing is known)."""
    have = _meminfo_available()
    if have is None:
        try:
            have = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            have = 1 << 62
    room = _cgroup_room()
    return have if room is None else min(have, room)


def result_bytes(task: str, p: Prepared, n_terms: int = 0) -> int:
    """Bytes of the arrays an engine call of ``task`` returns."""
    real = p.real_dtype.itemsize
    dim = 1 << p.program.n_qubits
    if task == "statevector":
        return p.batch * dim * p.dtype.itemsize
    if task == "probabilities":
        return p.batch * dim * real
    if task == "expval":
        return p.batch * n_terms * real
    return (p.inputs.size + p.weights.size) * real  # vjp: gradients shaped like inputs and weights


def engine_need(engine, task: str, p: Prepared, n_terms: int = 0) -> dict[str, int]:
    """The parts of an engine call's peak: ``result`` and the engine's ``workspace`` (bytes)."""
    workspace = getattr(engine, "workspace_bytes", None)
    return {
        "result": result_bytes(task, p, n_terms),
        "workspace": 0 if workspace is None else int(workspace(task, p.program, p.batch, n_terms, p.dtype)),
    }


def _account(what: str, need: dict[str, int]) -> str:
    parts = " + ".join(f"{name} {size / GiB:.2f}" for name, size in need.items())
    return f"{what} needs {sum(need.values()) / GiB:.2f} GiB at its peak ({parts} GiB)"


def check_memory(what: str, need: dict[str, int]) -> int | None:
    """Refuse, before allocating, a call whose peak ``need`` (named parts, bytes) would not fit;
    returns the available bytes it was checked against (None below UNCHECKED_BYTES)."""
    if sum(need.values()) < UNCHECKED_BYTES:
        return None
    have = available_memory()
    if sum(need.values()) > MEMORY_FRACTION * have:
        raise ValueError(
            f"too large for memory: {_account(what, need)}, but only {have / GiB:.2f} GiB is available "
            f"(a call may use {MEMORY_FRACTION:.0%} of it); use fewer qubits, a smaller batch or fewer shots"
        )
    return have


@contextmanager
def reserved(what: str, need: dict[str, int]) -> Iterator[None]:
    """Check ``need`` up front, and turn a MemoryError inside (the engine's ``std::bad_alloc``) into
    one that says what ran out and why."""
    have = check_memory(what, need)
    try:
        yield
    except MemoryError as exc:
        before = "" if have is None else f"; {have / GiB:.2f} GiB was available before the call"
        raise MemoryError(
            f"out of memory: {_account(what, need)}{before}, so other allocations took the rest"
        ) from exc


__all__ = ["MEMORY_FRACTION", "UNCHECKED_BYTES", "available_memory", "result_bytes", "engine_need",
           "check_memory", "reserved"]
