"""Fixtures of the engine tests."""
from __future__ import annotations

import importlib
import os

import pytest


@pytest.fixture(scope="module")
def core():
    """hdqnn._core_cpu; skipped when not built, unless HDQNN_REQUIRE_BACKENDS names cpp (test_cuda.py
    has its own ``core``: the CUDA module)."""
    try:
        return importlib.import_module("hdqnn._core_cpu")
    except ImportError as exc:
        if "cpp" in os.environ.get("HDQNN_REQUIRE_BACKENDS", "").split(","):
            pytest.fail(f"the C++ engine is required but does not import: {exc}")
        pytest.skip(f"the C++ engine is not built: {exc}")
