"""Fixed tensors and hand-computed optimizer steps shared by the agent tests (TD3, SAC)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from hdqnn.rl import Batch

ADAM_EPS = 1e-8
#: A 1-D action in [-2, 2], Pendulum's.
ACTION_SPACE = gym.spaces.Box(low=np.array([-2.0], np.float32), high=np.array([2.0], np.float32))


def tiny_batch() -> Batch:
    """Three transitions of a 2-D observation, 1-D action task; the last one terminates."""
    return Batch(
        observations=torch.tensor([[0.1, -0.2], [0.5, 0.3], [-0.7, 0.9]]),
        next_observations=torch.tensor([[0.2, -0.1], [0.4, 0.1], [-0.6, 1.0]]),
        actions=torch.tensor([[0.5], [-1.5], [1.9]]),
        rewards=torch.tensor([1.0, -0.5, 2.0]),
        dones=torch.tensor([0.0, 0.0, 1.0]),
    )


def first_adam_step(param_before: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    """Adam's first step from zero moments: p - lr * g / (|g| + eps) (bias corrections cancel)."""
    return param_before - lr * grad / (grad.abs() + ADAM_EPS)
