"""PPO (Schulman et al. 2017) for every actor variant, as CleanRL's ``ppo_continuous_action``.

The policy is a Gaussian over the action: its mean is the actor's output (an MLP, or PreDNN -> PQC ->
PostDNN for ``hdqnn-ppo``, with the FC and RBG ablations), its log-std the parameter ``actor_logstd``
(the same for every observation); sampled actions are clipped to the bounds by the env. A value
network (tanh MLP) is trained with it by one Adam optimizer on the loss

    policy_loss - ppo_ent_coef * entropy + vf_coef * value_loss

over ``update_epochs`` passes of ``num_minibatches`` shuffled minibatches of each rollout, with the
clipped surrogate, an optionally clipped value loss, per-minibatch advantage normalisation and a
clipped gradient norm. Names are CleanRL's; ``args.py`` gives SB3's beside them.

One departure from CleanRL, as SB3 does: a step that ends an episode by truncation (a time limit,
not a terminal state) is bootstrapped with the value of its final observation, where CleanRL treats
every episode end as terminal (``next_values`` and ``compute_gae``).

The rollout's observations are normalised by the environments (``onpolicy``); ``NormalizedActor``
is the frozen normalisation and the actor as one module, what evaluations and policies run.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .actor_telemetry import ActorTelemetry, fidelity_metrics, trust_metrics
from .args import Args
from .networks import HybridActor, make_actor, mlp

#: Adam's epsilon (CleanRL's and SB3's PPO).
ADAM_EPS = 1e-5
#: Keeps the advantage normalisation finite for a minibatch of equal advantages (CleanRL's).
ADVANTAGE_EPS = 1e-8
#: Normalised observations and rewards are clipped to +-this (CleanRL's and SB3's VecNormalize).
NORMALIZATION_CLIP = 10.0
#: Added to the running variance under the square root (gymnasium's normalisation wrappers).
NORMALIZATION_EPS = 1e-8
#: CleanRL's orthogonal initialisation gains: hidden layers, the actor's mean, the value.
HIDDEN_GAIN, MEAN_GAIN, VALUE_GAIN = float(np.sqrt(2.0)), 0.01, 1.0


# --------------------------------------------------------------------------------- networks
def orthogonal_init(net: nn.Sequential, last_gain: float) -> None:
    """CleanRL's ``layer_init`` on every Linear of ``net``: orthogonal weights (gain sqrt(2), the last
    layer ``last_gain``), zero biases."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for layer, gain in zip(linears, [HIDDEN_GAIN] * (len(linears) - 1) + [last_gain]):
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.constant_(layer.bias, 0.0)


class ValueNetwork(nn.Module):
    """The critic V(s): obs [B, obs_dim] -> [B] (tanh MLP, CleanRL's initialisation)."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, nn.Tanh)
        orthogonal_init(self.net, VALUE_GAIN)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).view(-1)


def normalize_observations(obs: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``(obs - mean) / sqrt(var + eps)`` in float64, as float32, clipped to +-NORMALIZATION_CLIP: the
    formula of gymnasium's NormalizeObservation followed by CleanRL's clip. obs [..., obs_dim]."""
    scaled = ((np.asarray(obs, dtype=np.float64) - mean) / np.sqrt(var + NORMALIZATION_EPS)).astype(np.float32)
    return np.clip(scaled, -NORMALIZATION_CLIP, NORMALIZATION_CLIP)


class ObservationNormalizer(nn.Module):
    """``normalize_observations`` with frozen statistics, in torch: float32 [B, obs_dim] -> float32,
    bit-identical to the NumPy form (the same float64 operations in the same order)."""

    def __init__(self, mean: torch.Tensor, var: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64).clone())
        self.register_buffer("var", torch.as_tensor(var, dtype=torch.float64).clone())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        scaled = ((obs.to(torch.float64) - self.mean) / torch.sqrt(self.var + NORMALIZATION_EPS)).to(torch.float32)
        return torch.clamp(scaled, -NORMALIZATION_CLIP, NORMALIZATION_CLIP)


class NormalizedActor(nn.Module):
    """A PPO actor that sees normalised observations, with the normalisation frozen: raw obs [B,
    obs_dim] -> the actor's deterministic actions [B, act_dim] (what evaluations and policies run)."""

    def __init__(self, normalizer: ObservationNormalizer, actor: nn.Module):
        super().__init__()
        self.normalizer = normalizer
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(obs))


# --------------------------------------------------------------------------------- the rollout
class RolloutBuffer:
    """One rollout: ``num_steps`` steps of ``num_envs`` environments, [T, N] tensors (CleanRL's storage).

    Step t holds the observation acted on, the action sampled (before the env clips it), its
    log-probability and value, the (normalised) reward, whether the step ended its episode
    (``dones``: terminated or truncated), and ``final_values``: V of the final observation where the
    episode was truncated, 0 where it ended otherwise.
    """

    FIELDS = ("obs", "actions", "logprobs", "values", "rewards", "dones", "final_values")

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, act_dim: int):
        self.num_steps, self.num_envs = num_steps, num_envs
        self.obs = torch.zeros(num_steps, num_envs, obs_dim)
        self.actions = torch.zeros(num_steps, num_envs, act_dim)
        self.logprobs, self.values, self.rewards, self.dones, self.final_values = (
            torch.zeros(num_steps, num_envs) for _ in range(5))
        self.pos = 0

    @property
    def full(self) -> bool:
        return self.pos == self.num_steps

    def add(self, **step: torch.Tensor) -> None:
        """Store one step (every field of ``FIELDS`` by name, each [N, ...])."""
        if self.full:
            raise RuntimeError("the rollout is full: learn from it and clear() it first")
        for name in self.FIELDS:
            getattr(self, name)[self.pos] = step[name]
        self.pos += 1

    def clear(self) -> None:
        self.pos = 0

    def state_dict(self) -> dict[str, Any]:
        return {"pos": self.pos, **{name: getattr(self, name).clone() for name in self.FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.FIELDS:
            getattr(self, name).copy_(state[name])
        self.pos = state["pos"]


def next_values(values: torch.Tensor, last_values: torch.Tensor, dones: torch.Tensor,
                final_values: torch.Tensor) -> torch.Tensor:
    """V of the state after each step [T, N]: the next step's value (``last_values`` [N], of the
    observation after the rollout, for the last step); where the step ended its episode, the
    rollout's ``final_values`` instead (V of the final observation if truncated, 0 if terminated)."""
    following = torch.cat([values[1:], last_values.unsqueeze(0)])
    return torch.where(dones.bool(), final_values, following)


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, dones: torch.Tensor,
                gamma: float, gae_lambda: float) -> torch.Tensor:
    """Generalized advantage estimates [T, N]: A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},
    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t), V(s_{t+1}) from ``next_values`` (so a truncated step
    bootstraps from its final observation and a terminated one does not), and A_T = 0."""
    advantages = torch.zeros_like(rewards)
    last_advantage = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] - values[t]
        advantages[t] = last_advantage = delta + gamma * gae_lambda * (1.0 - dones[t]) * last_advantage
    return advantages


def ppo_loss(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, entropy: torch.Tensor,
             new_values: torch.Tensor, old_values: torch.Tensor, advantages: torch.Tensor, returns: torch.Tensor, *,
             clip_coef: float, clip_vloss: bool, norm_adv: bool, ent_coef: float,
             vf_coef: float) -> tuple[torch.Tensor, dict[str, float]]:
    """CleanRL's PPO loss of one minibatch (every input [B]) and its statistics under their log keys:
    the clipped surrogate ``policy_loss``, the (clipped) ``value_loss`` (half the mean square error),
    the mean ``entropy``, the KL estimates ``old_approx_kl`` and ``approx_kl`` ((r - 1) - log r), and
    ``clipfrac`` (the fraction of ratios outside 1 +- clip_coef)."""
    logratio = new_logprobs - old_logprobs
    ratio = logratio.exp()
    with torch.no_grad():
        stats = {"losses/old_approx_kl": (-logratio).mean().item(),
                 "losses/approx_kl": ((ratio - 1.0) - logratio).mean().item(),
                 "losses/clipfrac": ((ratio - 1.0).abs() > clip_coef).float().mean().item()}
    if norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + ADVANTAGE_EPS)
    policy_loss = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)).mean()
    value_error = (new_values - returns) ** 2
    if clip_vloss:
        clipped = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
        value_error = torch.max(value_error, (clipped - returns) ** 2)
    value_loss = 0.5 * value_error.mean()
    entropy_loss = entropy.mean()
    loss = policy_loss - ent_coef * entropy_loss + vf_coef * value_loss
    stats.update({"losses/policy_loss": policy_loss.item(), "losses/value_loss": value_loss.item(),
                  "losses/entropy": entropy_loss.item()})
    return loss, stats


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var[target - predicted] / Var[target] (NaN where the target is constant), CleanRL's."""
    y_pred, y_true = predicted.numpy(), target.numpy()
    var_y = np.var(y_true)
    return float("nan") if var_y == 0 else float(1.0 - np.var(y_true - y_pred) / var_y)


def annealed_learning_rate(learning_rate: float, iteration: int, num_iterations: int) -> float:
    """CleanRL's linear decay: the rate of rollout ``iteration`` (from 1) of ``num_iterations``."""
    return (1.0 - (iteration - 1.0) / num_iterations) * learning_rate


# --------------------------------------------------------------------------------- the agent
class PPO(ActorTelemetry):
    """Actor (Gaussian mean and log-std), value network, their optimizer; ``act`` and ``update``."""

    def __init__(self, args: Args, obs_dim: int, action_space: gym.spaces.Box):
        self.gamma, self.gae_lambda = args.gamma, args.gae_lambda
        self.update_epochs, self.num_minibatches = args.update_epochs, args.num_minibatches
        self.target_kl, self.max_grad_norm = args.target_kl, args.max_grad_norm
        self.loss_settings = dict(clip_coef=args.clip_coef, clip_vloss=args.clip_vloss, norm_adv=args.norm_adv,
                                  ent_coef=args.ppo_ent_coef, vf_coef=args.vf_coef)
        self._init_telemetry(args)

        self.actor = make_actor(args, obs_dim, action_space)
        if not isinstance(self.actor, HybridActor):
            orthogonal_init(self.actor.net, MEAN_GAIN)
        self.critic = ValueNetwork(obs_dim, args.hidden_sizes)
        self.optimizer = torch.optim.Adam([*self.actor.parameters(), *self.critic.parameters()],
                                          lr=args.learning_rate, eps=ADAM_EPS)
        self.rng = np.random.default_rng(args.seed)  # the minibatches' shuffles
        self.n_updates = 0

    def _distribution(self, mean: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(mean, self.actor.actor_logstd.expand_as(mean).exp())

    # ----------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For observations [N, obs_dim] of N environments, in one actor call (one circuit call for
        hdqnn-ppo): sampled actions [N, act_dim] (before clipping), their log-probabilities [N] and
        the values [N]."""
        distribution = self._distribution(self.actor.raw(obs))
        actions = distribution.sample()
        return actions, distribution.log_prob(actions).sum(dim=1), self.critic(obs)

    @torch.no_grad()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(obs) [N] for observations [N, obs_dim]."""
        return self.critic(obs)

    # ----------------------------------------------------------------------------- learning
    def update(self, rollout: RolloutBuffer, last_values: torch.Tensor, learning_rate: float) -> dict[str, float]:
        """Learn from a full rollout (``last_values``: V of the observations after it, [N]) at
        ``learning_rate``; returns the metrics of the update under their log keys."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        with self.timer("gae"):
            following = next_values(rollout.values, last_values, rollout.dones, rollout.final_values)
            advantages = compute_gae(rollout.rewards, rollout.values, following, rollout.dones, self.gamma,
                                     self.gae_lambda)
            returns = advantages + rollout.values
        batch = {"obs": rollout.obs.flatten(0, 1), "actions": rollout.actions.flatten(0, 1),
                 "logprobs": rollout.logprobs.flatten(), "advantages": advantages.flatten(),
                 "returns": returns.flatten(), "values": rollout.values.flatten()}
        size = batch["logprobs"].shape[0]
        minibatch_size = size // self.num_minibatches
        clipfracs, metrics = [], {}
        for _ in range(self.update_epochs):
            order = torch.from_numpy(self.rng.permutation(size))
            for start in range(0, size, minibatch_size):
                indices = order[start:start + minibatch_size]
                # the last minibatch's figures (CleanRL's), the qtDNN's of the last one that measured them
                metrics.update(self._minibatch_step({name: value[indices] for name, value in batch.items()}))
                clipfracs.append(metrics["losses/clipfrac"])
            if self.target_kl and metrics["losses/approx_kl"] > self.target_kl:
                break
        metrics["losses/clipfrac"] = float(np.mean(clipfracs))
        metrics["losses/explained_variance"] = explained_variance(batch["values"], batch["returns"])
        metrics["charts/learning_rate"] = learning_rate
        return metrics

    def _minibatch_step(self, mb: dict[str, torch.Tensor]) -> dict[str, float]:
        """One Adam step on one minibatch; qtDNN telemetry in the metrics for hdqnn-ppo."""
        mean, probe = self._actor_output(mb["obs"], self._measures(self.n_updates))
        with self.timer("critic_forward"):
            new_values = self.critic(mb["obs"])
        with self.timer("backward"):
            distribution = self._distribution(mean)
            loss, metrics = ppo_loss(distribution.log_prob(mb["actions"]).sum(dim=1), mb["logprobs"],
                                     distribution.entropy().sum(dim=1), new_values, mb["values"], mb["advantages"],
                                     mb["returns"], **self.loss_settings)
            self.optimizer.zero_grad()
            loss.backward()
        layer = self.quantum_layer
        if self.has_surrogate:
            metrics["qtdnn/fit_loss"] = float(layer.stats["last_fit_loss"])
            metrics.update(trust_metrics(layer.stats))
        if probe is not None:  # before the step: the surrogate was fitted for the current weights
            pqc_in, pqc_out = probe
            with self.timer("fidelity"):
                metrics.update(fidelity_metrics(layer.gradient_fidelity(pqc_in.detach(), pqc_out.grad)))
        with self.timer("backward"):
            nn.utils.clip_grad_norm_([*self.actor.parameters(), *self.critic.parameters()], self.max_grad_norm)
            self.optimizer.step()
        self.n_updates += 1
        return metrics

    # ----------------------------------------------------------------------------- state
    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (tensors and plain values only)."""
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "optimizer": self.optimizer.state_dict(), "n_updates": self.n_updates,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.n_updates = state["n_updates"]
        self.rng.bit_generator.state = state["rng"]
        self._seen_quantum_seconds = self._quantum_seconds()
