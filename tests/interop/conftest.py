"""Every interop test needs Qiskit: skipped when missing, a failure under HDQNN_REQUIRE_EXTRAS."""
from __future__ import annotations

import pytest

from tests.qasm.optional import import_or_skip


@pytest.fixture(autouse=True)
def _qiskit_installed():
    import_or_skip("qiskit", "qiskit")
