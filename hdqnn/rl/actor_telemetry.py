"""What every agent with a (possibly hybrid) actor shares, whatever its algorithm: the actor's forward
with the qtDNN gradient probe, circuit counting, per-part timers, and the ``qtdnn/`` log keys.

TD3 and SAC (``offpolicy.OffPolicyAgent``) and PPO (``ppo.PPO``) inherit it; a subclass sets
``self.actor`` and defines ``modules()`` (every module whose quantum layers count).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .args import QUANTUM_ALGOS, Args
from .networks import HybridActor
from .timing import StepTimer

#: The PQC's input and output in one actor forward, kept to compare the qtDNN's gradient with the exact one.
Probe = tuple[torch.Tensor, torch.Tensor]


def fidelity_metrics(fidelity: dict[str, Any]) -> dict[str, float]:
    """Log keys of ``QuantumLayer.gradient_fidelity``: ``qtdnn/grad_cosine`` and ``grad_rel_error``
    cover every gradient the layer gives (its inputs', i.e. what reaches the PreDNN, and its
    weights' when the PQC's angles are trained); the ``_inputs``/``_weights`` parts separately."""
    keys = {"cosine": "grad_cosine", "rel_error": "grad_rel_error", "cosine_inputs": "grad_cosine_inputs",
            "cosine_weights": "grad_cosine_weights"}
    return {f"qtdnn/{name}": float(fidelity[key]) for key, name in keys.items() if fidelity.get(key) is not None}


def trust_metrics(stats: dict[str, Any]) -> dict[str, float]:
    """The surrogate's hardware-side trust figures, when its options measure them (issue 15):
    ``qtdnn/holdout_error`` (``holdout``), ``qtdnn/tangent_cosine`` and ``qtdnn/tangent_rel_error``
    (``sobolev_samples``: its directional derivatives against the circuit's, before the fit); a
    NaN (the circuit's derivatives all zero) is left out like a missing figure."""
    values = {key: stats.get(f"last_{key}") for key in ("holdout_error", "tangent_cosine", "tangent_rel_error")}
    return {f"qtdnn/{key}": float(v) for key, v in values.items() if v is not None and np.isfinite(v)}


class ActorTelemetry:
    """The actor's probed forward, circuit executions and timers of an agent (see the module doc)."""

    actor: nn.Module

    def _init_telemetry(self, args: Args) -> None:
        self.fidelity_freq = args.fidelity_freq
        self.has_surrogate = args.algo in QUANTUM_ALGOS and args.grad == "qtdnn"
        self.timer = StepTimer()
        self._seen_quantum_seconds = (0.0, 0.0)  # freshly built layers have run nothing yet

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _actor_output(self, obs: torch.Tensor, measure: bool) -> tuple[torch.Tensor, Probe | None]:
        """The online actor's output [B, out_dim] (timed as ``actor_forward``), and with ``measure``
        the PQC's input and output, kept to compare the surrogate's gradient with the exact one."""
        with self.timer("actor_forward"):
            if not measure:
                return self.actor.raw(obs), None
            pqc_in = self.actor.encode(obs)
            pqc_out = self.actor.middle(pqc_in)
            pqc_out.retain_grad()
            return self.actor.post(pqc_out), (pqc_in, pqc_out)

    def _measures(self, actor_step: int) -> bool:
        """Whether actor step ``actor_step`` (counted from 0) probes the qtDNN's gradient."""
        return self.has_surrogate and actor_step % self.fidelity_freq == 0

    @property
    def quantum_layer(self) -> nn.Module | None:
        """The online actor's QuantumLayer (None for the classical actor and the ablations)."""
        return self.actor.quantum_layer if isinstance(self.actor, HybridActor) else None

    def _quantum_layers(self) -> list[nn.Module]:
        return [m.quantum_layer for m in self.modules().values()
                if isinstance(m, HybridActor) and m.quantum_layer is not None]

    def circuit_executions(self) -> int:
        """Circuit executions of the actors' PQCs (restored with a checkpoint)."""
        return sum(int(layer.stats["circuit_executions_total"]) for layer in self._quantum_layers())

    def _quantum_seconds(self) -> tuple[float, float]:
        """Cumulative (PQC forward, qtDNN fit) seconds of the actors' layers."""
        stats = [layer.stats for layer in self._quantum_layers()]
        return (sum(s["forward_seconds_total"] for s in stats), sum(s["fit_seconds_total"] for s in stats))

    def take_timings(self) -> dict[str, float]:
        """Seconds spent in each part since the last call (then restarts the count).

        Parts: ``act``/``env`` (timed by the trainer), the agent's update parts (TD3/SAC:
        ``critic_update``, ``actor_backward``, ``target_update``, ``alpha_update``), ``actor_forward``
        (which contains the online PQC forward and the ``qtdnn_fit``), ``fidelity`` (telemetry), and
        ``pqc_forward``: circuit time in acting, targets and the actor.
        """
        pqc, fit = self._quantum_seconds()
        if self._quantum_layers():
            self.timer.add("pqc_forward", pqc - self._seen_quantum_seconds[0])
            self.timer.add("qtdnn_fit", fit - self._seen_quantum_seconds[1])
        self._seen_quantum_seconds = (pqc, fit)
        seconds = dict(self.timer.seconds)
        self.timer.reset()
        return seconds
