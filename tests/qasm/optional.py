"""Optional SDKs for the qasm and hardware tests: skipped with the reason when missing, or a
failure when ``HDQNN_REQUIRE_EXTRAS`` (comma list of modules, or ``all``) says CI installed them."""
from __future__ import annotations

import importlib
import os

import pytest


def import_or_skip(module: str, extra: str):
    """The imported module, or a skip naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        required = {m for m in os.environ.get("HDQNN_REQUIRE_EXTRAS", "").split(",") if m}
        if module in required or "all" in required:
            pytest.fail(f"{module} is required by HDQNN_REQUIRE_EXTRAS but cannot be imported: {exc}")
        pytest.skip(f"{module} not installed (pip install 'hdqnn[{extra}]'): {exc}")
