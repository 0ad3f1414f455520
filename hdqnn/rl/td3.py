"""TD3 (Fujimoto et al. 2018) for every actor variant: twin critics, clipped target policy noise,
delayed actor and target updates, Polyak averaging. Names follow Stable-Baselines3.

With a QuantumLayer in the actor, only the online actor's layer ever fits its qtDNN surrogate: acting
and the target computation run under ``torch.no_grad()`` and the target actor stays in ``eval()``.
The surrogate is not an ``nn.Module`` parameter set, so the actor's optimizer and the Polyak update
see only the policy's own parameters (the PQC's rotation angles included).
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .args import Args
from .buffer import Batch
from .networks import HybridActor, QNetwork, make_actor
from .timing import StepTimer


@torch.no_grad()
def polyak_update(params: Iterable[torch.Tensor], target_params: Iterable[torch.Tensor], tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, in place."""
    for param, target in zip(params, target_params, strict=True):
        target.mul_(1.0 - tau).add_(param, alpha=tau)


def _fidelity_metrics(fidelity: dict[str, Any]) -> dict[str, float]:
    """Log keys of ``QuantumLayer.gradient_fidelity``: ``qtdnn/grad_cosine`` and ``grad_rel_error``
    cover every gradient the layer gives (its inputs', i.e. what reaches the PreDNN, and its
    weights' when the PQC's angles are trained); the ``_inputs``/``_weights`` parts separately."""
    keys = {"cosine": "grad_cosine", "rel_error": "grad_rel_error", "cosine_inputs": "grad_cosine_inputs",
            "cosine_weights": "grad_cosine_weights"}
    return {f"qtdnn/{name}": float(fidelity[key]) for key, name in keys.items() if fidelity.get(key) is not None}


class TD3:
    """Actor, twin critics, their targets and optimizers; ``update()`` is the whole algorithm."""

    def __init__(self, args: Args, obs_dim: int, action_space: gym.spaces.Box):
        self.gamma = args.gamma
        self.tau = args.tau
        self.policy_delay = args.policy_delay
        self.target_policy_noise = args.target_policy_noise
        self.target_noise_clip = args.target_noise_clip
        self.exploration_noise = args.exploration_noise
        self.fidelity_freq = args.fidelity_freq
        self.has_surrogate = args.algo == "hdqnn-td3" and args.grad == "qtdnn"

        self.actor = make_actor(args, obs_dim, action_space)
        self.actor_target = copy.deepcopy(self.actor).eval()
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
        self.rng = np.random.default_rng(args.seed)
        self.n_updates = 0
        self.timer = StepTimer()
        self._seen_quantum_seconds = self._quantum_seconds()

    # ----------------------------------------------------------------------------- acting
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Action [act_dim] for one observation; Gaussian exploration noise when ``explore``."""
        with torch.no_grad():
            action = self.actor(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0]
        action = action.numpy().astype(np.float64)
        if explore:
            scale = self.actor.action_scale.numpy() * self.exploration_noise
            action = action + self.rng.normal(0.0, scale)
        return np.clip(action, self.action_low.numpy(), self.action_high.numpy()).astype(np.float32)

    # ----------------------------------------------------------------------------- learning
    def update(self, data: Batch) -> dict[str, float]:
        """One gradient step of the critics and, every ``policy_delay`` calls, of the actor and
        all targets. Returns the metrics of this step under their log keys."""
        with self.timer("critic_update"):
            with torch.no_grad():
                clipped_noise = (torch.randn_like(data.actions) * self.target_policy_noise).clamp(
                    -self.target_noise_clip, self.target_noise_clip) * self.actor_target.action_scale
                next_actions = (self.actor_target(data.next_observations) + clipped_noise).clamp(
                    self.action_low, self.action_high)
                qf1_next_target = self.qf1_target(data.next_observations, next_actions).view(-1)
                qf2_next_target = self.qf2_target(data.next_observations, next_actions).view(-1)
                min_qf_next_target = torch.min(qf1_next_target, qf2_next_target)
                next_q_value = data.rewards + (1.0 - data.dones) * self.gamma * min_qf_next_target

            qf1_a_values = self.qf1(data.observations, data.actions).view(-1)
            qf2_a_values = self.qf2(data.observations, data.actions).view(-1)
            qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
            qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
            qf_loss = qf1_loss + qf2_loss
            self.q_optimizer.zero_grad()
            qf_loss.backward()
            self.q_optimizer.step()
        self.n_updates += 1
        metrics = {"losses/qf1_loss": qf1_loss.item(), "losses/qf2_loss": qf2_loss.item(),
                   "losses/qf_loss": qf_loss.item() / 2.0, "losses/qf1_values": qf1_a_values.mean().item()}

        if self.n_updates % self.policy_delay == 0:
            measure = self.has_surrogate and (self.n_updates // self.policy_delay - 1) % self.fidelity_freq == 0
            with self.timer("actor_forward"):
                if measure:  # keep the PQC's input and output to compare its gradients afterwards
                    pqc_in = self.actor.encode(data.observations)
                    pqc_out = self.actor.middle(pqc_in)
                    pqc_out.retain_grad()
                    actions = self.actor.decode(pqc_out)
                else:
                    actions = self.actor(data.observations)
            layer = self.quantum_layer
            if self.has_surrogate:
                metrics["qtdnn/fit_loss"] = float(layer.stats["last_fit_loss"])
            with self.timer("actor_backward"):
                actor_loss = -self.qf1(data.observations, actions).mean()
                self.actor_optimizer.zero_grad()
                actor_loss.backward()
            if measure:  # before the step: the surrogate was fitted for the current weights
                with self.timer("fidelity"):
                    fidelity = layer.gradient_fidelity(pqc_in.detach(), pqc_out.grad)
                metrics.update(_fidelity_metrics(fidelity))
            with self.timer("actor_backward"):
                self.actor_optimizer.step()
            with self.timer("target_update"):
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                polyak_update(self.qf1.parameters(), self.qf1_target.parameters(), self.tau)
                polyak_update(self.qf2.parameters(), self.qf2_target.parameters(), self.tau)
            metrics["losses/actor_loss"] = actor_loss.item()
        return metrics

    # ----------------------------------------------------------------------------- telemetry
    @property
    def quantum_layer(self) -> nn.Module | None:
        """The online actor's QuantumLayer (None for the classical actor and the ablations)."""
        return self.actor.quantum_layer if isinstance(self.actor, HybridActor) else None

    def _quantum_layers(self) -> list[nn.Module]:
        return [a.quantum_layer for a in (self.actor, self.actor_target)
                if isinstance(a, HybridActor) and a.quantum_layer is not None]

    def circuit_executions(self) -> int:
        """Circuit executions of the online and target actors' PQCs (restored with a checkpoint)."""
        return sum(int(layer.stats["circuit_executions_total"]) for layer in self._quantum_layers())

    def _quantum_seconds(self) -> tuple[float, float]:
        """Cumulative (PQC forward, qtDNN fit) seconds of the online and target layers."""
        stats = [layer.stats for layer in self._quantum_layers()]
        return (sum(s["forward_seconds_total"] for s in stats), sum(s["fit_seconds_total"] for s in stats))

    def take_timings(self) -> dict[str, float]:
        """Seconds spent in each part since the last call (then restarts the count).

        Parts: ``act``/``env`` (timed by the trainer), ``critic_update``, ``actor_forward`` (which
        contains the online PQC forward and the ``qtdnn_fit``), ``actor_backward``, ``target_update``,
        ``fidelity`` (telemetry), and ``pqc_forward``: circuit time in acting, targets and the actor.
        """
        pqc, fit = self._quantum_seconds()
        if self._quantum_layers():
            self.timer.add("pqc_forward", pqc - self._seen_quantum_seconds[0])
            self.timer.add("qtdnn_fit", fit - self._seen_quantum_seconds[1])
        self._seen_quantum_seconds = (pqc, fit)
        seconds = dict(self.timer.seconds)
        self.timer.reset()
        return seconds

    # ----------------------------------------------------------------------------- state
    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "actor_target": self.actor_target, "qf1": self.qf1, "qf2": self.qf2,
                "qf1_target": self.qf1_target, "qf2_target": self.qf2_target}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (tensors and plain values only)."""
        state: dict[str, Any] = {name: m.state_dict() for name, m in self.modules().items()}
        state["actor_optimizer"] = self.actor_optimizer.state_dict()
        state["q_optimizer"] = self.q_optimizer.state_dict()
        state["n_updates"] = self.n_updates
        state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        self.n_updates = state["n_updates"]
        self.rng.bit_generator.state = state["rng"]
        self._seen_quantum_seconds = self._quantum_seconds()
