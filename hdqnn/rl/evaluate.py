"""Deterministic evaluation: the actor without exploration noise on seeded episodes."""
from __future__ import annotations

import copy
from typing import Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import nn

#: Evaluation episodes use seeds far from the training seed's so the two streams never coincide.
EVAL_SEED_OFFSET = 1_000_003


def evaluate(actor: nn.Module, env: gym.Env, n_episodes: int, seed: int) -> np.ndarray:
    """Returns [n_episodes] float64 of the deterministic policy's episodic returns.

    Runs on a copy of the actor in ``eval()`` mode, so evaluation never changes the training
    state (the PQC's shot RNG, the RBG generator): a run gives the same result whatever its
    evaluation schedule, and a resumed run matches an uninterrupted one.
    """
    policy = copy.deepcopy(actor).eval()
    returns = np.zeros(n_episodes)
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
        done = False
        while not done:
            with torch.no_grad():
                action = policy(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[episode] += float(reward)
            done = terminated or truncated
    return returns


def evaluate_run(run_dir: str, episodes: int = 10, seed: int | None = None,
                 perturb: Mapping[str, float] | None = None) -> tuple[np.ndarray, "Args"]:
    """Deterministic returns [episodes] of the actor in ``run_dir``'s checkpoint, and the run's Args;
    ``perturb``: perturbation name -> level (see ``hdqnn.rl.perturb``) applied to the env."""
    actor, args = load_run_actor(run_dir)
    return evaluate_actor(actor, args, episodes, seed, perturb), args


def load_run_actor(run_dir: str) -> tuple[nn.Module, "Args"]:
    """The actor of ``run_dir``'s latest checkpoint and the run's Args (``load_policy``'s)."""
    from .policy import load_policy

    policy = load_policy(run_dir)
    return policy.actor, policy.args


def evaluate_actor(actor: nn.Module, args: "Args", episodes: int = 10, seed: int | None = None,
                   perturb: Mapping[str, float] | None = None) -> np.ndarray:
    """Deterministic returns [episodes] of ``actor`` in a fresh env of the run's (``args.env_id``)
    with ``perturb`` applied; the episode seeds depend on ``seed`` (default: the run's) only, so
    perturbed and unperturbed evaluations start from the same states."""
    from .envs import make_env
    from .perturb import apply_perturbations

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(args.env_id)
    try:
        env = apply_perturbations(env, perturb or {})
        return evaluate(actor, env, episodes, args.seed if seed is None else seed)
    finally:
        env.close()
