"""Reinforcement learning: TD3, SAC and PPO, hDQNN-TD3, hDQNN-SAC and hDQNN-PPO (a PQC in the actor)
and their FC and RBG ablations.

``train(Args(...))`` runs one training (``hdqnn train``), ``compare_runs`` aggregates several
(``hdqnn compare``); ``evaluate`` runs a deterministic policy; ``load_policy(DIR)`` makes a run's
actor a callable ``Policy`` (observations -> actions) that saves to one self-contained file.

Names load on first use: the sweep imports ``hdqnn.rl.args`` (the train flags) and must not pay
for, or depend on, torch and Gymnasium, which the other modules import.
"""
from __future__ import annotations

import importlib
import sys
import types

#: public name -> the module of this package that defines it
_EXPORTS = {
    "Args": "args", "ALGOS": "args", "PRESETS": "args",
    "Batch": "buffer", "ReplayBuffer": "buffer",
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint",
    "compare_runs": "compare",
    "make_env": "envs",
    "evaluate": "evaluate", "evaluate_run": "evaluate",
    "apply_perturbations": "perturb", "PERTURBATIONS": "perturb",
    "Actor": "networks", "HybridActor": "networks", "QNetwork": "networks", "make_actor": "networks",
    "Policy": "policy", "load_policy": "policy",
    "OffPolicyAgent": "offpolicy", "polyak_update": "offpolicy", "TD3": "td3", "SAC": "sac", "PPO": "ppo",
    "make_agent": "agents",
    "train": "train",
}
__all__ = list(_EXPORTS)


class _Package(types.ModuleType):
    """This package, whose functions ``train`` and ``evaluate`` share their modules' names."""

    def __setattr__(self, name: str, value: object) -> None:
        # Importing the submodule ``train`` binds it here under its name; the function of that
        # name must stay what ``hdqnn.rl.train`` means (``__getattr__`` resolves it on demand).
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'hdqnn.rl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
