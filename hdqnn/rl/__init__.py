"""Reinforcement learning: TD3, hDQNN-TD3 (a PQC in the actor) and its FC and RBG ablations.

``train(Args(...))`` runs one training (``hdqnn train``), ``compare_runs`` aggregates several
(``hdqnn compare``); ``evaluate`` runs a deterministic policy.
"""
from .args import ALGOS, PRESETS, Args
from .buffer import Batch, ReplayBuffer
from .checkpoint import CheckpointError, load_checkpoint
from .compare import compare_runs
from .envs import make_env
from .evaluate import evaluate, evaluate_run
from .networks import Actor, HybridActor, QNetwork, make_actor
from .td3 import TD3, polyak_update
from .train import train

__all__ = [
    "Args", "ALGOS", "PRESETS", "ReplayBuffer", "Batch", "TD3", "polyak_update", "Actor", "HybridActor",
    "QNetwork", "make_actor", "make_env", "evaluate", "evaluate_run", "train", "compare_runs", "CheckpointError",
    "load_checkpoint",
]
