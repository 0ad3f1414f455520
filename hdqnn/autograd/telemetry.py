"""Cost counters and gradient-fidelity metrics of a QuantumLayer.

A *circuit execution* is one circuit run for one sample: a forward of B samples costs B, an
adjoint backward costs B (one adjoint sweep per sample, about 2-3 forward costs on the engine),
parameter-shift costs 2 x (shifted angle slots) x B and the qtDNN backward costs 0 (its price is
the surrogate fit, reported in seconds, plus 2 executions per Sobolev probe when the surrogate
fits measured directional derivatives: ``circuit_executions_fit``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

#: Norms below this are treated as zero when forming cosines and relative errors.
TINY_NORM = 1e-30


@dataclass
class LayerStats:
    """Running counters of one layer; ``as_dict`` adds totals and the surrogate's fit figures."""

    forward_calls: int = 0
    backward_calls: int = 0
    circuit_executions_forward: int = 0
    circuit_executions_grad: int = 0
    circuit_executions_fit: int = 0
    last_forward_executions: int = 0
    last_grad_executions: int = 0
    last_fit_executions: int = 0
    fit_probe_seconds_total: float = 0.0
    forward_seconds_total: float = 0.0
    grad_seconds_total: float = 0.0
    last_forward_seconds: float = 0.0
    last_grad_seconds: float = 0.0
    fidelity_checks: int = 0
    last_fidelity_cosine: float | None = None
    last_fidelity_rel_error: float | None = None

    def record_forward(self, executions: int, seconds: float) -> None:
        self.forward_calls += 1
        self.circuit_executions_forward += executions
        self.last_forward_executions = executions
        self.forward_seconds_total += seconds
        self.last_forward_seconds = seconds

    def record_grad(self, executions: int, seconds: float) -> None:
        self.backward_calls += 1
        self.circuit_executions_grad += executions
        self.last_grad_executions = executions
        self.grad_seconds_total += seconds
        self.last_grad_seconds = seconds

    def record_fit(self, executions: int, seconds: float) -> None:
        """Circuit runs a surrogate fit needed (the Sobolev probes' shifted circuits)."""
        self.circuit_executions_fit += executions
        self.last_fit_executions = executions
        self.fit_probe_seconds_total += seconds

    def state(self) -> dict:
        return asdict(self)

    def load(self, state: dict) -> None:
        """Counters saved before a field existed keep its zero default."""
        for f in fields(self):
            setattr(self, f.name, state.get(f.name, f.default))


def compare_gradients(approx: list[np.ndarray], exact: list[np.ndarray]) -> dict[str, float]:
    """Cosine similarity and relative error ||approx - exact|| / ||exact|| of flattened gradients."""
    a = np.concatenate([np.ravel(g).astype(np.float64) for g in approx])
    e = np.concatenate([np.ravel(g).astype(np.float64) for g in exact])
    na, ne = float(np.linalg.norm(a)), float(np.linalg.norm(e))
    if ne < TINY_NORM:
        return {"cosine": float("nan"), "rel_error": float("nan") if na >= TINY_NORM else 0.0}
    cosine = float(a @ e) / (na * ne) if na >= TINY_NORM else 0.0
    return {"cosine": cosine, "rel_error": float(np.linalg.norm(a - e)) / ne}
