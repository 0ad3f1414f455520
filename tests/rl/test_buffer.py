"""Replay buffer: storage growth, wrap-around, sampling, and exact state round trips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hdqnn.rl import ReplayBuffer
from hdqnn.rl.buffer import INITIAL_ROWS


def _fill(rb: ReplayBuffer, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        rb.add(np.full(3, i), np.full(3, i + 1), np.full(2, -i), float(i), i % 7 == 0)


def test_grows_past_initial_rows_and_wraps_at_capacity():
    capacity = INITIAL_ROWS + 100
    rb = ReplayBuffer(capacity, 3, 2, seed=0)
    _fill(rb, capacity + 5)
    assert len(rb) == capacity and rb.pos == 5
    stored = rb.state_dict()["data"]["rewards"].numpy()
    assert stored[0] == capacity and stored[4] == capacity + 4 and stored[5] == 5  # oldest overwritten


def test_sample_shapes_and_consistency():
    rb = ReplayBuffer(50, 3, 2, seed=1)
    _fill(rb, 20)
    batch = rb.sample(64)
    assert batch.observations.shape == (64, 3) and batch.actions.shape == (64, 2)
    assert batch.rewards.shape == (64,) and batch.observations.dtype == torch.float32
    torch.testing.assert_close(batch.next_observations[:, 0], batch.observations[:, 0] + 1)
    torch.testing.assert_close(batch.dones, (batch.rewards % 7 == 0).float())


def test_empty_buffer_cannot_sample():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(10, 1, 1, seed=0).sample(4)


@pytest.mark.parametrize("include_data", [True, False])
def test_state_round_trip_continues_identically(include_data):
    rb = ReplayBuffer(100, 3, 2, seed=2)
    _fill(rb, 30)
    rb.sample(8)
    state = rb.state_dict(include_data=include_data)
    other = ReplayBuffer(100, 3, 2, seed=99)
    other.load_state_dict(state)
    if include_data:
        _fill(rb, 10, start=30)
        _fill(other, 10, start=30)
        for a, b in zip(rb.sample(16), other.sample(16)):
            assert torch.equal(a, b)
    else:
        assert len(other) == 0
        assert np.array_equal(other.rng.integers(0, 1000, 5), rb.rng.integers(0, 1000, 5))
