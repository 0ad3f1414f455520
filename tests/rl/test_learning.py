"""Slow: TD3 and hDQNN-TD3 learn Pendulum-v1 within a fixed step budget (the default quick run)."""
from __future__ import annotations

import pytest

from hdqnn.rl import Args, train

#: Mean deterministic evaluation return that counts as "solved enough" (random: about -1,200).
RETURN_THRESHOLD = -400.0
EVAL_EPISODES = 10


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["td3", "hdqnn-td3"])
def test_pendulum_is_learned_within_the_default_budget(tmp_path, algo):
    """The defaults of ``hdqnn train`` (10,000 steps, 4 qubits x 2 layers for hDQNN-TD3)."""
    summary = train(Args(algo=algo, out_dir=str(tmp_path / algo), eval_episodes=EVAL_EPISODES, progress=False))
    assert summary["final_eval"] > RETURN_THRESHOLD, summary
