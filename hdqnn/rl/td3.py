"""TD3 (Fujimoto et al. 2018) for every actor variant: twin critics, clipped target policy noise,
delayed actor and target updates, Polyak averaging. Names follow Stable-Baselines3; what TD3 shares
with SAC (critics, actor step, timers, state) is in ``offpolicy``.
"""
from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .args import Args
from .buffer import Batch
from .offpolicy import OffPolicyAgent, polyak_update


class TD3(OffPolicyAgent):
    """Actor and its target, twin critics, their targets and optimizers; ``update()`` is the whole algorithm."""

    def __init__(self, args: Args, obs_dim: int, action_space: gym.spaces.Box):
        super().__init__(args, obs_dim, action_space)
        self.target_policy_noise = args.target_policy_noise
        self.target_noise_clip = args.target_noise_clip
        self.exploration_noise = args.exploration_noise
        self.actor_target = copy.deepcopy(self.actor).eval()
        self.rng = np.random.default_rng(args.seed)

    # ----------------------------------------------------------------------------- acting
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Action [act_dim] for one observation; Gaussian exploration noise when ``explore``."""
        with torch.no_grad():
            action = self.actor(self._observation(obs))[0]
        action = action.numpy().astype(np.float64)
        if explore:
            scale = self.actor.action_scale.numpy() * self.exploration_noise
            action = action + self.rng.normal(0.0, scale)
        return self._clip(action)

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
            metrics = self._critic_step(data, next_q_value)

        if self.n_updates % self.policy_delay == 0:
            measure = self._measures(self.n_updates // self.policy_delay - 1)
            raw, probe = self._actor_output(data.observations, measure)
            with self.timer("actor_backward"):
                actor_loss = -self.qf1(data.observations, self.actor.deterministic(raw)).mean()
            self._actor_step(actor_loss, probe, metrics)
            with self.timer("target_update"):
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                self._update_critic_targets()
        return metrics

    # ----------------------------------------------------------------------------- state
    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "actor_target": self.actor_target, **super().modules()}

    def _extra_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
