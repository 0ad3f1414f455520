"""Shared fixtures: engines by name (skipped with the reason when unavailable) and RNGs.

``HDQNN_REQUIRE_BACKENDS=cpp,numba`` turns a missing engine into a failure instead of a skip, so a
CI pass that built the C++ core cannot silently test only the reference.
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

import hdqnn
from hdqnn.backends import backend_status

ENGINES = ("cpp", "numba", "numpy")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")


def _required() -> set[str]:
    return {b for b in os.environ.get("HDQNN_REQUIRE_BACKENDS", "").split(",") if b}


def _engine_or_skip(name: str):
    status = backend_status()[name]
    if status != "ok":
        if name in _required():
            pytest.fail(f"backend {name!r} is required by HDQNN_REQUIRE_BACKENDS but unavailable: {status}")
        pytest.skip(f"backend {name!r} unavailable: {status}")
    return hdqnn.get_backend(name)


@pytest.fixture(params=ENGINES)
def engine(request):
    """Every engine, the reference included."""
    return _engine_or_skip(request.param)


@pytest.fixture(params=[e for e in ENGINES if e != "numpy"])
def fast_engine(request):
    """Every engine under test against the reference."""
    return _engine_or_skip(request.param)


@pytest.fixture
def reference():
    return hdqnn.get_backend("numpy")


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name so failures reproduce (crc32: str's
    hash() changes with every interpreter's PYTHONHASHSEED)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
