"""The agent of a run, chosen by its algorithm: TD3, SAC or PPO, each with any actor variant."""
from __future__ import annotations

import gymnasium as gym

from .args import Args, base_algo
from .offpolicy import OffPolicyAgent
from .ppo import PPO
from .sac import SAC
from .td3 import TD3

#: ``base_algo(args.algo)`` -> the agent class that trains it.
AGENTS: dict[str, type[OffPolicyAgent] | type[PPO]] = {"td3": TD3, "sac": SAC, "ppo": PPO}


def make_agent(args: Args, obs_dim: int, action_space: gym.spaces.Box) -> OffPolicyAgent | PPO:
    """The agent of ``args.algo`` (``hdqnn-sac`` -> SAC with the hybrid actor, ``hdqnn-ppo`` -> PPO with it)."""
    return AGENTS[base_algo(args.algo)](args, obs_dim, action_space)
