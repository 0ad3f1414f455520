"""Engine registry: one interface (base.Backend), several engines, chosen in a fixed order.

CPU order: cpp (compiled C++/OpenMP), then numba, then the NumPy reference with a one-time
warning. ``HDQNN_BACKEND`` forces one by name; a forced or requested backend that cannot load
raises with the reason instead of falling back.
"""
from __future__ import annotations

import importlib
import os
import warnings

from .base import Backend

CPU_ORDER = ("cpp", "numba", "numpy")
#: name -> (module, class) of every engine hdqnn knows.
_ENGINES = {
    "cpp": ("hdqnn.backends.cpp", "CppBackend"),
    "numba": ("hdqnn.backends.numba_backend", "NumbaBackend"),
    "numpy": ("hdqnn.backends.numpy_ref", "NumpyBackend"),
    # GPU engines: never chosen automatically for CPU arrays (see hdqnn.sim.device)
    "cuda": ("hdqnn.backends.cuda", "CudaBackend"),
    "cupy": ("hdqnn.backends.cupy_backend", "CupyBackend"),
}
_loaded: dict[str, Backend] = {}
_failures: dict[str, str] = {}
_warned_reference = False
_num_threads: int | None = None


def _load(name: str) -> Backend:
    if name in _loaded:
        return _loaded[name]
    if name in _failures:
        raise RuntimeError(f"backend {name!r} is unavailable: {_failures[name]}")
    module_name, cls_name = _ENGINES[name]
    try:
        backend = getattr(importlib.import_module(module_name), cls_name)()
    except (ImportError, OSError, RuntimeError) as exc:
        _failures[name] = f"{type(exc).__name__}: {exc}"
        raise RuntimeError(f"backend {name!r} is unavailable: {_failures[name]}") from exc
    if _num_threads is not None:
        backend.set_num_threads(_num_threads)
    _loaded[name] = backend
    return backend


def register_backend(name: str, module: str, cls: str) -> None:
    """Make another engine selectable by name (e.g. the CUDA engines)."""
    _ENGINES[name] = (module, cls)


def get_backend(name: str | Backend | None = None) -> Backend:
    """The backend called ``name``, the one forced by ``HDQNN_BACKEND``, or the best on the CPU."""
    if name is not None and not isinstance(name, str):
        return name
    name = name or os.environ.get("HDQNN_BACKEND") or None
    if name is not None:
        if name not in _ENGINES:
            raise ValueError(f"unknown backend {name!r}; known: {', '.join(_ENGINES)}")
        return _load(name)
    for candidate in CPU_ORDER:
        try:
            backend = _load(candidate)
        except RuntimeError:
            continue
        if candidate == "numpy":
            _warn_reference_once()
        return backend
    raise RuntimeError("no backend could be loaded")  # unreachable: numpy always loads


def _warn_reference_once() -> None:
    global _warned_reference
    if not _warned_reference:
        _warned_reference = True
        reasons = "; ".join(f"{k}: {v}" for k, v in _failures.items())
        warnings.warn(
            f"hdqnn is using the slow NumPy reference engine ({reasons}). "
            "Build the C++ core (pip install -e .) or install numba.",
            RuntimeWarning,
            stacklevel=3,
        )


def backend_status() -> dict[str, str]:
    """name -> 'ok' or the reason it cannot load (tries to load every engine)."""
    status = {}
    for name in _ENGINES:
        try:
            _load(name)
            status[name] = "ok"
        except RuntimeError:
            status[name] = _failures.get(name, "unavailable")
    return status


def configured_threads() -> int | None:
    """The count of the last ``set_num_threads`` (None: each engine's default), for engines outside
    the registry (the noisy Numba kernels) to follow."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Threads every engine uses across samples (now and for engines loaded later)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be a positive int, got {n!r}")
    _num_threads = n
    for backend in _loaded.values():
        backend.set_num_threads(n)


__all__ = ["Backend", "get_backend", "backend_status", "configured_threads", "set_num_threads", "register_backend",
           "CPU_ORDER"]
