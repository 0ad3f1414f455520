"""Reinforcement learning: TD3, hDQNN-TD3 (a PQC in the actor) and its FC and RBG ablations.

``train(Args(...))`` runs one training (``hdqnn train``), ``compare_runs`` aggregates several
(``hdqnn compare``); ``evaluate`` runs a deterministic policy.

Names load on first use: the sweep imports ``hdqnn.rl.args`` (the train flags) and must not pay
for, or depend on, torch and Gymnasium, which the other modules import.
"""
from __future__ import annotations

import importlib

#: public name -> the module of this package that defines it
_EXPORTS = {
    "Args": "args", "ALGOS": "args", "PRESETS": "args",
    "Batch": "buffer", "ReplayBuffer": "buffer",
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint",
    "compare_runs": "compare",
    "make_env": "envs",
    "evaluate": "evaluate", "evaluate_run": "evaluate",
    "Actor": "networks", "HybridActor": "networks", "QNetwork": "networks", "make_actor": "networks",
    "TD3": "td3", "polyak_update": "td3",
    "train": "train",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'hdqnn.rl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
