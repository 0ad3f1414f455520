"""hdqnn's own engine as a shot-based device: offline, free, the default adapter."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..circuits import Circuit
from ..qasm import parse
from ..sim import counts as count_bitstrings
from ..sim import sample
from .base import ShotRunner


class LocalSampler(ShotRunner):
    """Samples shots from the engine's exact probabilities.

    ``submit`` reads each OpenQASM program with :func:`hdqnn.qasm.parse` (so it checks what
    would be sent to a device); ``run`` skips the text and samples the circuit batch in one
    engine call per measurement basis. ``seed`` makes both reproducible.
    """

    def __init__(self, seed: int | None = None, *, backend: Any = None, max_batch: int | None = None) -> None:
        super().__init__(max_batch=max_batch, retries=0)
        self.backend = backend
        self.rng = np.random.default_rng(seed)

    def _run_job(self, programs: list[str], shots: int) -> list[dict[str, int]]:
        return [self._sample_program(p, shots) for p in programs]

    def _sample_program(self, text: str, shots: int) -> dict[str, int]:
        program = parse(text)
        if program.parameters:
            raise ValueError(f"submit needs bound programs; free parameters: {sorted(program.parameters)}")
        wires = sample(program.circuit, None, None, shots, seed=self.rng, backend=self.backend)[0]
        if program.measurements:
            bits = np.zeros((shots, program.n_clbits), dtype=np.uint8)
            for clbit, wire in program.measurements:
                bits[:, clbit] = wires[:, wire]
        else:
            bits = wires
        return count_bitstrings(bits[None])[0]

    def _execute(self, circuits: list[Circuit], x: np.ndarray, w: np.ndarray | None,
                 shots: int) -> list[dict[str, int]]:
        out: list[dict[str, int]] = []
        for circuit in circuits:
            bits = sample(circuit, x, w, shots, seed=self.rng, backend=self.backend)
            out.extend(count_bitstrings(bits))
        self._count_usage(len(circuits) * x.shape[0], shots, n_jobs=len(circuits))
        return out
