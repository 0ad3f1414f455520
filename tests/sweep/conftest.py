"""Fixtures of the sweep tests: train's interface on the fake train, a tiny sweep config."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hdqnn.sweep import TrainCommand, parse_config
from hdqnn.sweep.train_cli import gymnasium_env_id
from tests.sweep.fake_train import build_parser

FAKE_TRAIN = Path(__file__).with_name("fake_train.py")


@pytest.fixture
def fake_train() -> TrainCommand:
    """The sweep's view of the fake train: same flag spellings, same run-folder contract."""
    return TrainCommand(build_parser(), command=[sys.executable, str(FAKE_TRAIN)], resolve_env=gymnasium_env_id)


@pytest.fixture
def tiny(tmp_path, fake_train):
    """A 2 algorithms x 2 seeds sweep of the fake train under ``tmp_path/sweep``; ``tiny(**base)``
    lays extra options over its base."""
    def make(parallel: int = 2, max_retries: int = 2, **base):
        raw = {"out": str(tmp_path / "sweep"), "parallel": parallel, "max_retries": max_retries,
               "base": {"env": "Pendulum-v1", "steps": 60, **base},
               "grid": {"algo": ["td3", "hdqnn-td3"], "seed": [0, 1]}}
        return parse_config(raw, fake_train.resolve, source="tiny.yaml")
    return make
