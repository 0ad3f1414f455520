"""hdqnn's own engine as a shot-based device: offline, free, the default adapter."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..circuits import Circuit
from ..noise import NoiseModel
from ..qasm import parse
from ..sim import counts as count_bitstrings
from ..sim import noisy, sample
from .base import ShotRunner


class LocalSampler(ShotRunner):
    """Samples shots from the engine's exact probabilities, or from a noisy device's.

    ``submit`` reads each OpenQASM program with :func:`hdqnn.qasm.parse` (so it checks what
    would be sent to a device); ``run`` skips the text and samples the circuit batch in one
    engine call per measurement basis. ``seed`` makes both reproducible.

    noise: an ``hdqnn.noise.NoiseModel`` (e.g. ``NoiseModel.from_backend(FakeManilaV2(),
    layout=[0, 1, 2])``): every shot comes from that noisy device, gate errors and readout error
    included, as ``hdqnn.sample(..., noise=model)`` draws them; the basis rotations ``run`` adds
    for X/Y observables are gates of the device too. ``method`` picks how the noise is simulated
    ("auto", "density_matrix", "trajectories": one trajectory per shot; see ``hdqnn.sim.noisy``).
    A circuit with fewer qubits than a wire the model names is refused before anything runs.
    """

    def __init__(self, seed: int | None = None, *, backend: Any = None, max_batch: int | None = None,
                 noise: NoiseModel | None = None, method: str | None = None) -> None:
        super().__init__(max_batch=max_batch, retries=0)
        if noise is not None:
            if not isinstance(noise, NoiseModel):
                raise TypeError(f"noise must be an hdqnn.noise.NoiseModel, got {type(noise).__name__}")
            if backend is not None:
                raise ValueError("backend= picks a statevector engine; a noisy LocalSampler samples the noisy "
                                 "engine, so leave backend at None with noise=")
        elif method is not None:
            raise ValueError("method= chooses how noise is simulated: pass noise=model")
        noisy.check_method(method, None)
        self.backend = backend
        self.noise = noise
        self.method = method
        self.rng = np.random.default_rng(seed)

    def _sample(self, circuit: Circuit, x: np.ndarray | None, w: np.ndarray | None, shots: int) -> np.ndarray:
        """uint8 [B, shots, n] from the exact (or noisy) device."""
        if self.noise is None:
            return sample(circuit, x, w, shots, seed=self.rng, backend=self.backend)
        noisy.check_model(self.noise, circuit.n_qubits)
        return sample(circuit, x, w, shots, seed=self.rng, noise=self.noise, method=self.method)

    def _run_job(self, programs: list[str], shots: int) -> list[dict[str, int]]:
        return [self._sample_program(p, shots) for p in programs]

    def _sample_program(self, text: str, shots: int) -> dict[str, int]:
        program = parse(text)
        if program.parameters:
            raise ValueError(f"submit needs bound programs; free parameters: {sorted(program.parameters)}")
        wires = self._sample(program.circuit, None, None, shots)[0]
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
            out.extend(count_bitstrings(self._sample(circuit, x, w, shots)))
        self._count_usage(len(circuits) * x.shape[0], shots, n_jobs=len(circuits))
        return out
