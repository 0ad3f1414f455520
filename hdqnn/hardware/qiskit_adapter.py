"""Run hdqnn circuits through Qiskit: any ``BackendV2`` (Aer, an IBM backend) or ``SamplerV2``.

Programs travel as OpenQASM and are read by Qiskit's own loader (``qiskit.qasm2.loads`` for
2.0, the default, which needs nothing beyond qiskit; ``qiskit.qasm3.loads`` for 3.0, which
needs ``qiskit-qasm3-import``). Qiskit prints ``c[0]`` as the RIGHTMOST character of a count
key; the keys are reversed here so that ``c[0]`` (wire 0) comes first, as in hdqnn.
"""
from __future__ import annotations

from typing import Any

from .base import ShotRunner, require, wait_for

VERSIONS = ("2.0", "3.0")


def qiskit_key_to_hdqnn(key: str) -> str:
    """Qiskit count key (``c[0]`` rightmost, registers space-separated) -> ``c[0]`` first."""
    return key.replace(" ", "")[::-1]


class QiskitAdapter(ShotRunner):
    """A Qiskit ``BackendV2`` or ``SamplerV2`` as an hdqnn device.

    target:          e.g. ``qiskit_aer.AerSimulator()``, an IBM backend from
                     ``QiskitRuntimeService().backend(...)``, or a ``SamplerV2``.
    pass_manager:    transpiles the loaded circuits; defaults to Qiskit's preset pass manager at
                     ``optimization_level`` for a backend (none for a sampler: pass one built
                     for the sampler's backend when it needs ISA circuits, as IBM's does).
    version:         OpenQASM version the programs are written in ('2.0' or '3.0').
    max_batch:       circuits per job (default: the backend's ``max_circuits`` or 100).
    timeout, retries, retry_delay: per job, see :class:`ShotRunner`.
    """

    def __init__(self, target: Any, *, pass_manager: Any = None, optimization_level: int = 1,
                 version: str = "2.0", max_batch: int | None = None, timeout: float | None = None,
                 retries: int = 2, retry_delay: float = 1.0) -> None:
        super().__init__(max_batch=max_batch, timeout=timeout, retries=retries, retry_delay=retry_delay)
        require("qiskit", "qiskit", "QiskitAdapter")
        from qiskit.primitives import BaseSamplerV2
        from qiskit.providers import BackendV2

        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
        if version == "3.0":
            require("qiskit_qasm3_import", "qiskit", "OpenQASM 3 loading in Qiskit")
        if isinstance(target, BackendV2):
            self.backend, self.sampler = target, None
            if pass_manager is None:
                from qiskit.transpiler import generate_preset_pass_manager

                pass_manager = generate_preset_pass_manager(optimization_level=optimization_level,
                                                            backend=target)
        elif isinstance(target, BaseSamplerV2):
            self.backend, self.sampler = None, target
        else:
            raise TypeError(f"target must be a qiskit BackendV2 or SamplerV2, got {type(target).__name__}")
        self.version = version
        self.pass_manager = pass_manager

    def _device_batch_limit(self, shots: int) -> int | None:
        return getattr(self.backend, "max_circuits", None) if self.backend is not None else None

    def _load(self, program: str) -> Any:
        from qiskit import qasm2, qasm3

        return qasm2.loads(program) if self.version == "2.0" else qasm3.loads(program)

    def _run_job(self, programs: list[str], shots: int) -> list[dict[str, int]]:
        circuits = [self._load(p) for p in programs]
        if self.pass_manager is not None:
            circuits = self.pass_manager.run(circuits)
        if self.backend is not None:
            result = wait_for(self.backend.run(circuits, shots=shots), self.timeout)
            raw = [result.get_counts(i) for i in range(len(circuits))]
        else:
            result = wait_for(self.sampler.run([(c,) for c in circuits], shots=shots), self.timeout)
            raw = [r.join_data().get_counts() for r in result]
        return [{qiskit_key_to_hdqnn(k): int(v) for k, v in counts.items()} for counts in raw]
