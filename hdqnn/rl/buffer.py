"""Replay buffer: a circular store of transitions that grows as it fills, with its own seeded RNG.

Storage starts small and doubles up to ``capacity``, so a 1M-transition buffer on Humanoid costs
memory only for what it holds. ``state_dict`` holds only tensors and plain values (checkpoints load
with ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

INITIAL_ROWS = 4096
FIELDS = ("observations", "next_observations", "actions", "rewards", "dones")


class Batch(NamedTuple):
    """A minibatch, float32 tensors: observations/next_observations [B, obs_dim],
    actions [B, act_dim], rewards [B], dones [B] (1.0 where the episode terminated)."""

    observations: torch.Tensor
    next_observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor


class ReplayBuffer:
    """Transitions (obs, next_obs, action, reward, terminated), uniformly sampled.

    ``dones`` stores *termination* only: a time-limit truncation still bootstraps from next_obs.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, seed: int):
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.rng = np.random.default_rng(seed)
        self.pos = 0
        self.size = 0
        self._data = self._allocate(min(capacity, INITIAL_ROWS))

    def _allocate(self, rows: int) -> dict[str, np.ndarray]:
        widths = {"observations": self.obs_dim, "next_observations": self.obs_dim, "actions": self.act_dim}
        return {name: np.zeros((rows, widths[name]) if name in widths else (rows,), np.float32)
                for name in FIELDS}

    def _grow(self) -> None:
        rows = min(self.capacity, 2 * len(self._data["rewards"]))
        new = self._allocate(rows)
        for name in FIELDS:
            new[name][: self.size] = self._data[name][: self.size]
        self._data = new

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray, reward: float,
            terminated: bool) -> None:
        """Store one transition (obs [obs_dim], action [act_dim])."""
        if self.pos == len(self._data["rewards"]) and self.size < self.capacity:
            self._grow()
        row = self.pos
        self._data["observations"][row] = obs
        self._data["next_observations"][row] = next_obs
        self._data["actions"][row] = action
        self._data["rewards"][row] = reward
        self._data["dones"][row] = float(terminated)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self.size, size=batch_size)
        return Batch(*(torch.from_numpy(self._data[name][idx]) for name in FIELDS))

    def __len__(self) -> int:
        return self.size

    def state_dict(self, include_data: bool = True) -> dict[str, Any]:
        """Position, size and RNG state, plus the stored rows when ``include_data``."""
        state = {"capacity": self.capacity, "pos": self.pos, "size": self.size,
                 "rng": self.rng.bit_generator.state}
        if include_data:
            state["data"] = {name: torch.from_numpy(self._data[name][: self.size].copy()) for name in FIELDS}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``; without data the buffer restarts empty (RNG still restored)."""
        self.rng.bit_generator.state = state["rng"]
        if "data" not in state:
            self.pos = self.size = 0
            self._data = self._allocate(min(self.capacity, INITIAL_ROWS))
            return
        if state["capacity"] != self.capacity:
            raise ValueError(f"buffer capacity changed: checkpoint {state['capacity']}, now {self.capacity}")
        size = state["size"]
        self._data = self._allocate(min(self.capacity, max(size, INITIAL_ROWS)))
        for name in FIELDS:
            self._data[name][:size] = state["data"][name].numpy()
        self.pos, self.size = state["pos"], size
