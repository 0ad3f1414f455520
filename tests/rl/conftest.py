"""Shared settings of the RL tests: tiny networks and budgets so a run takes seconds."""
from __future__ import annotations

import pytest

from hdqnn.rl import Args

#: Small enough for a few hundred steps in seconds on a loaded 2-core machine.
TINY = dict(
    learning_starts=64, batch_size=16, hidden_sizes=(16, 16), pre_hidden=(8,), post_hidden=(8,),
    qubits=2, layers=1, qtdnn_hidden=16, qtdnn_fit_steps=2, eval_freq=10_000, eval_episodes=1,
    log_freq=50, fidelity_freq=5, checkpoint_freq=10_000, progress=False,
)


def tiny_args(tmp_path, name: str = "run", **overrides) -> Args:
    """Args of a tiny run writing to ``tmp_path/name``."""
    return Args(**{**TINY, "out_dir": str(tmp_path / name), **overrides})


@pytest.fixture
def make_args(tmp_path):
    """``make_args(name, **overrides)`` -> tiny Args in this test's folder."""
    return lambda name="run", **overrides: tiny_args(tmp_path, name, **overrides)
