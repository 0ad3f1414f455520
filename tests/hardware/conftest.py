"""Adapters under test, each skipped with the reason when its SDK is missing."""
from __future__ import annotations

import pytest

from hdqnn.hardware import BraketAdapter, LocalSampler, QiskitAdapter
from tests.qasm.optional import import_or_skip

SEED = 1234
#: The reference engine: exact, and no JIT warm-up in a short test run.
ENGINE = "numpy"
ADAPTERS = ("local", "aer-backend", "aer-sampler", "aer-qasm3", "braket-local")


def make_adapter(name: str):
    if name == "local":
        return LocalSampler(SEED, backend=ENGINE)
    if name == "braket-local":
        import_or_skip("braket.devices", "braket")
        return BraketAdapter()
    import_or_skip("qiskit_aer", "qiskit")
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import SamplerV2

    if name == "aer-backend":
        return QiskitAdapter(AerSimulator(seed_simulator=SEED))
    if name == "aer-sampler":
        return QiskitAdapter(SamplerV2(seed=SEED))
    import_or_skip("qiskit_qasm3_import", "qiskit")
    return QiskitAdapter(AerSimulator(seed_simulator=SEED), version="3.0")


@pytest.fixture(params=ADAPTERS)
def adapter(request):
    """Every adapter: hdqnn's sampler, Qiskit Aer (backend, sampler, OpenQASM 3), Braket's simulator."""
    return make_adapter(request.param)
