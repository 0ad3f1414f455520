"""Atomic checkpoints of a training run and the global RNG states they carry.

A checkpoint is one ``torch.save`` file holding only tensors and plain values, so it loads with
``torch.load(weights_only=True)`` (no code runs from a checkpoint). It is written to a temporary file,
fsynced, and renamed over the previous one: a run killed at any moment leaves either the old or the
new checkpoint, never a torn one.
"""
from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "hdqnn-rl-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "args", "global_step", "agent", "rng")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not an hdqnn RL checkpoint."""


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


def save_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format tags) to ``run_dir/checkpoint.pt`` atomically."""
    path = checkpoint_path(run_dir)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint of ``run_dir``; CheckpointError naming the problem otherwise."""
    path = checkpoint_path(run_dir)
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run folder {str(run_dir)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {str(run_dir)!r} (expected {path.name}); was the run "
                              "started with a checkpoint frequency and did it reach its first checkpoint?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted or unreadable: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an hdqnn RL checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {state.get('version')}; "
                              f"this hdqnn reads version {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}")
    return state


def global_rng_state() -> dict[str, Any]:
    """Python's, NumPy's legacy and torch's global RNG states."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def set_global_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    legacy = state["numpy"]
    np.random.set_state((legacy["name"], legacy["keys"].numpy().astype(np.uint32), legacy["pos"],
                         legacy["has_gauss"], legacy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global RNG and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
