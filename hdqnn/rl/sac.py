"""SAC (Haarnoja et al. 2018) for every actor variant, as CleanRL's ``sac_continuous_action``: twin
critics with Polyak-averaged targets (no target actor), a tanh-squashed Gaussian policy scaled to the
env's bounds, and automatic entropy tuning. Names follow Stable-Baselines3 (``ent_coef``); what SAC
shares with TD3 (critics, actor step, timers, state) is in ``offpolicy``.

Every ``policy_delay`` critic updates the actor makes that many steps on the same minibatch
(CleanRL's ``policy_frequency``), and the critic targets move every ``target_network_frequency``
updates. The entropy coefficient's loss reuses the log-probabilities of the actor step (as SB3 does)
rather than sampling the policy again: with a PQC in the actor that saves one circuit batch per step.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from .args import Args, parse_ent_coef
from .buffer import Batch
from .offpolicy import OffPolicyAgent


class SAC(OffPolicyAgent):
    """Gaussian actor, twin critics, their targets, the entropy coefficient; ``update()`` is the algorithm."""

    def __init__(self, args: Args, obs_dim: int, action_space: gym.spaces.Box):
        super().__init__(args, obs_dim, action_space)
        self.target_network_frequency = args.target_network_frequency
        self.autotune, initial_alpha = parse_ent_coef(args.ent_coef)
        self.target_entropy = -float(action_space.shape[0])
        self.log_alpha = torch.tensor([float(np.log(initial_alpha))], requires_grad=self.autotune)
        self.alpha_optimizer = (torch.optim.Adam([self.log_alpha], lr=args.learning_rate)
                                if self.autotune else None)

    @property
    def alpha(self) -> float:
        """The entropy coefficient now."""
        return float(self.log_alpha.exp().item())

    # ----------------------------------------------------------------------------- acting
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        """Action [act_dim] for one observation: a sample of the policy when ``explore``, else its
        squashed mean."""
        with torch.no_grad():
            raw = self.actor.raw(self._observation(obs))
            action = self.actor.sample(raw)[0] if explore else self.actor.deterministic(raw)
        return self._clip(action[0].numpy())

    # ----------------------------------------------------------------------------- learning
    def update(self, data: Batch) -> dict[str, float]:
        """One gradient step of the critics; every ``policy_delay`` calls, as many of the actor and
        of the entropy coefficient; every ``target_network_frequency`` calls, the Polyak update of
        the target critics. Returns the metrics of this step under their log keys."""
        alpha = self.alpha
        with self.timer("critic_update"):
            with torch.no_grad():
                next_actions, next_log_pi = self.actor.sample(self.actor.raw(data.next_observations))
                qf1_next_target = self.qf1_target(data.next_observations, next_actions).view(-1)
                qf2_next_target = self.qf2_target(data.next_observations, next_actions).view(-1)
                min_qf_next_target = torch.min(qf1_next_target, qf2_next_target) - alpha * next_log_pi
                next_q_value = data.rewards + (1.0 - data.dones) * self.gamma * min_qf_next_target
            metrics = self._critic_step(data, next_q_value)
        metrics["losses/alpha"] = alpha

        if self.n_updates % self.policy_delay == 0:
            first_step = (self.n_updates // self.policy_delay - 1) * self.policy_delay
            for step in range(first_step, first_step + self.policy_delay):
                self._policy_step(data, step, metrics)
        if self.n_updates % self.target_network_frequency == 0:
            with self.timer("target_update"):
                self._update_critic_targets()
        return metrics

    def _policy_step(self, data: Batch, actor_step: int, metrics: dict[str, float]) -> None:
        """One Adam step of the actor (loss alpha * log pi - min Q) and, when tuned, of log alpha."""
        raw, probe = self._actor_output(data.observations, self._measures(actor_step))
        with self.timer("actor_backward"):
            actions, log_pi = self.actor.sample(raw)
            min_qf_pi = torch.min(self.qf1(data.observations, actions), self.qf2(data.observations, actions)).view(-1)
            actor_loss = (self.alpha * log_pi - min_qf_pi).mean()
        self._actor_step(actor_loss, probe, metrics)
        if self.autotune:
            with self.timer("alpha_update"):
                alpha_loss = (-self.log_alpha.exp() * (log_pi.detach() + self.target_entropy)).mean()
                self.alpha_optimizer.zero_grad()
                alpha_loss.backward()
                self.alpha_optimizer.step()
            metrics["losses/alpha_loss"] = alpha_loss.item()
            metrics["losses/alpha"] = self.alpha

    # ----------------------------------------------------------------------------- state
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        extra = {"alpha_optimizer": self.alpha_optimizer} if self.autotune else {}
        return {**super().optimizers(), **extra}

    def _extra_state(self) -> dict[str, Any]:
        return {"log_alpha": self.log_alpha.detach().clone()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
