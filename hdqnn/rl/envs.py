"""Environment creation with clear errors, and an exact snapshot of a running episode.

Most Gymnasium environments cannot be pickled with their state (a MuJoCo env pickles as a fresh
one), so a checkpoint stores how the current episode began (the env RNG's state before its reset)
and the actions taken since; ``EpisodeRecorder.restore`` rebuilds the episode by replaying them.
This is exact for deterministic simulators (classic control, MuJoCo), and checked on restore.
"""
from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch


def make_env(env_id: str) -> gym.Env:
    """``gym.make(env_id)`` with episode statistics; ValueError for unknown ids or non-Box spaces."""
    try:
        env = gym.make(env_id)
    except gym.error.UnregisteredEnv as exc:
        raise ValueError(f"unknown Gymnasium environment id {env_id!r}: {exc}") from exc
    except gym.error.DependencyNotInstalled as exc:
        raise ValueError(f"environment {env_id!r} needs a missing dependency: {exc}") from exc
    try:
        check_spaces(env_id, env)
    except ValueError:
        env.close()
        raise
    return gym.wrappers.RecordEpisodeStatistics(env)


def check_spaces(env_id: str, env: gym.Env) -> None:
    """TD3, SAC and PPO act in a bounded continuous action space on flat observations."""
    act, obs = env.action_space, env.observation_space
    if not isinstance(act, gym.spaces.Box) or len(act.shape) != 1:
        raise ValueError(f"{env_id} has action space {act}: TD3, SAC and PPO need a continuous (Box) 1-D action space; "
                         "discrete-action environments are not supported")
    if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
        raise ValueError(f"{env_id} has an unbounded action space {act}: TD3, SAC and PPO need finite bounds")
    if not isinstance(obs, gym.spaces.Box):
        raise ValueError(f"{env_id} has observation space {obs}: TD3, SAC and PPO here need a Box observation space")


class EpisodeRecorder:
    """Remembers how the current episode started and its actions, to rebuild it after a restart."""

    def __init__(self, seed: int):
        self.seed = seed
        self.first_episode = True
        self.start_rng: dict[str, Any] | None = None
        self.actions: list[np.ndarray] = []

    def reset(self, env: gym.Env) -> np.ndarray:
        """Start an episode: seeded for the first, from the env's own RNG afterwards."""
        self.actions = []
        if self.first_episode:
            obs, _ = env.reset(seed=self.seed)
            self.first_episode = False
            self.start_rng = None
            return obs
        self.start_rng = env.unwrapped.np_random.bit_generator.state
        obs, _ = env.reset()
        return obs

    def step(self, env: gym.Env, action: np.ndarray):
        """``env.step(action)``, remembering the action."""
        self.actions.append(np.array(action, dtype=np.float32, copy=True))
        return env.step(action)

    def state_dict(self, obs: np.ndarray) -> dict[str, Any]:
        """Snapshot of the episode so far; ``obs`` is the current observation (checked on restore)."""
        actions = np.stack(self.actions) if self.actions else np.zeros((0, 0), np.float32)
        return {"seed": self.seed, "start_rng": self.start_rng, "actions": torch.from_numpy(actions),
                "obs": torch.from_numpy(np.asarray(obs, dtype=np.float64).copy())}

    def restore(self, env: gym.Env, state: dict[str, Any]) -> np.ndarray:
        """Rebuild the snapshot's episode in ``env`` (fresh from ``make_env``); returns its obs."""
        self.seed = state["seed"]
        self.first_episode = False
        obs, _ = env.reset(seed=self.seed)
        self.start_rng = state["start_rng"]
        if self.start_rng is not None:
            env.unwrapped.np_random.bit_generator.state = self.start_rng
            obs, _ = env.reset()
        self.actions = []
        for action in state["actions"].numpy():
            obs, *_ = self.step(env, action)
        if not np.array_equal(np.asarray(obs, dtype=np.float64), state["obs"].numpy()):
            warnings.warn("the environment did not replay to the checkpoint's observation (is it "
                          "deterministic?); the resumed run continues from the replayed state", RuntimeWarning,
                          stacklevel=2)
        return obs
