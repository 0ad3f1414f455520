"""What TD3 and SAC share: the actor, twin critics with targets, the critic step, the actor step
(with the qtDNN gradient-fidelity probe), Polyak averaging, timers, circuit counting and state.

A subclass builds what is its own (TD3: the target actor and exploration noise; SAC: the entropy
coefficient) and writes ``update``. With a QuantumLayer in the actor, only the online actor's layer
ever fits its qtDNN surrogate: acting and target computations run under ``torch.no_grad()`` and a
target actor stays in ``eval()``. The surrogate is not an ``nn.Module`` parameter set, so the actor's
optimizer and the Polyak update see only the policy's own parameters (the PQC's angles included).
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .actor_telemetry import ActorTelemetry, Probe, fidelity_metrics, trust_metrics
from .args import Args
from .buffer import Batch
from .networks import QNetwork, make_actor


@torch.no_grad()
def polyak_update(params: Iterable[torch.Tensor], target_params: Iterable[torch.Tensor], tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, in place."""
    for param, target in zip(params, target_params, strict=True):
        target.mul_(1.0 - tau).add_(param, alpha=tau)


class OffPolicyAgent(ActorTelemetry):
    """Actor, twin critics, their targets and optimizers, timers; subclasses write ``update()``."""

    def __init__(self, args: Args, obs_dim: int, action_space: gym.spaces.Box):
        self.gamma = args.gamma
        self.tau = args.tau
        self.policy_delay = args.policy_delay
        self._init_telemetry(args)

        self.actor = make_actor(args, obs_dim, action_space)
        act_dim = action_space.shape[0]
        self.qf1 = QNetwork(obs_dim, act_dim, args.hidden_sizes)
        self.qf2 = QNetwork(obs_dim, act_dim, args.hidden_sizes)
        self.qf1_target = copy.deepcopy(self.qf1)
        self.qf2_target = copy.deepcopy(self.qf2)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.learning_rate)
        self.q_optimizer = torch.optim.Adam(
            list(self.qf1.parameters()) + list(self.qf2.parameters()), lr=args.learning_rate)

        self.action_low = torch.as_tensor(action_space.low, dtype=torch.float32)
        self.action_high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.n_updates = 0

    def _observation(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)

    def _clip(self, action: np.ndarray) -> np.ndarray:
        """``action`` in the env's bounds, as float32."""
        return np.clip(action, self.action_low.numpy(), self.action_high.numpy()).astype(np.float32)

    # ----------------------------------------------------------------------------- learning steps
    def _critic_step(self, data: Batch, next_q_value: torch.Tensor) -> dict[str, float]:
        """One Adam step of both critics towards ``next_q_value`` [B]; counts the update."""
        qf1_a_values = self.qf1(data.observations, data.actions).view(-1)
        qf2_a_values = self.qf2(data.observations, data.actions).view(-1)
        qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
        qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
        qf_loss = qf1_loss + qf2_loss
        self.q_optimizer.zero_grad()
        qf_loss.backward()
        self.q_optimizer.step()
        self.n_updates += 1
        return {"losses/qf1_loss": qf1_loss.item(), "losses/qf2_loss": qf2_loss.item(),
                "losses/qf_loss": qf_loss.item() / 2.0, "losses/qf1_values": qf1_a_values.mean().item()}

    def _actor_step(self, actor_loss: torch.Tensor, probe: Probe | None, metrics: dict[str, float]) -> None:
        """Backward and Adam step of the actor; qtDNN telemetry into ``metrics``."""
        layer = self.quantum_layer
        if self.has_surrogate:
            metrics["qtdnn/fit_loss"] = float(layer.stats["last_fit_loss"])
            metrics.update(trust_metrics(layer.stats))
        with self.timer("actor_backward"):
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
        if probe is not None:  # before the step: the surrogate was fitted for the current weights
            pqc_in, pqc_out = probe
            with self.timer("fidelity"):
                fidelity = layer.gradient_fidelity(pqc_in.detach(), pqc_out.grad)
            metrics.update(fidelity_metrics(fidelity))
        with self.timer("actor_backward"):
            self.actor_optimizer.step()
        metrics["losses/actor_loss"] = actor_loss.item()

    def _update_critic_targets(self) -> None:
        polyak_update(self.qf1.parameters(), self.qf1_target.parameters(), self.tau)
        polyak_update(self.qf2.parameters(), self.qf2_target.parameters(), self.tau)

    # ----------------------------------------------------------------------------- state
    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "qf1": self.qf1, "qf2": self.qf2,
                "qf1_target": self.qf1_target, "qf2_target": self.qf2_target}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor_optimizer": self.actor_optimizer, "q_optimizer": self.q_optimizer}

    def _extra_state(self) -> dict[str, Any]:
        """A subclass's own state (RNGs, the entropy coefficient)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``_extra_state`` saved."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (tensors and plain values only)."""
        state: dict[str, Any] = {name: m.state_dict() for name, m in self.modules().items()}
        state.update({name: opt.state_dict() for name, opt in self.optimizers().items()})
        state["n_updates"] = self.n_updates
        return {**state, **self._extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state[name])
        self.n_updates = state["n_updates"]
        self._load_extra_state(state)
        self._seen_quantum_seconds = self._quantum_seconds()
