"""The tiny sweep of examples/sweep_tiny.yaml with the real ``hdqnn train``: 2 algorithms x 2 seeds,
300 steps of Pendulum-v1, in local processes (the no-Ray fallback) and on a local Ray instance
with a trial's worker killed mid-run, which must end with exactly the same results."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from hdqnn.rl import checkpoint as rl_checkpoint
from hdqnn.rl import metrics as rl_metrics
from hdqnn.rl.train import STOP_SIGNALS
from hdqnn.sweep import contract
from hdqnn.sweep.cli import add_sweep_subparser, config_from_args, load_train_command, run_sweep_from_args
from tests.sweep.helpers import finals, run_quietly, run_with_a_kill

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sweep_tiny.yaml"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_sweep_subparser(parser.add_subparsers())
    return parser.parse_args(["sweep", *argv])


@pytest.fixture(scope="module")
def train():
    return load_train_command()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, train):
    """The tiny sweep run in local processes: (config, report, printed text)."""
    config = config_from_args(_args(str(EXAMPLE), "--out", str(tmp_path_factory.mktemp("local") / "sweep")), train)
    report, text = run_quietly(config, train, runner="local", compare=True)
    return config, report, text


def test_contract_matches_train():
    assert contract.CHECKPOINT_FILE == rl_checkpoint.CHECKPOINT_FILE
    assert (contract.RUN_FILE, contract.METRICS_FILE, contract.SUMMARY_FILE) == (
        rl_metrics.RUN_FILE, rl_metrics.METRICS_FILE, rl_metrics.SUMMARY_FILE)
    assert contract.STOPPED_BY_SIGNAL == {128 + s: s.name for s in STOP_SIGNALS}


def test_fallback_runs_the_tiny_sweep(uninterrupted):
    config, report, text = uninterrupted
    assert [o.state for o in report.outcomes] == ["finished"] * 4, text
    assert all(isinstance(v, float) for v in finals(report).values())
    rows = json.loads((config.out / "compare.json").read_text())
    assert sorted(r["label"].split("__")[0] for r in rows) == ["hdqnn-td3", "td3"]
    assert all(r["seeds"] == 2 and r["finished"] == 2 for r in rows)
    assert (config.out / "compare.png").is_file() and "final return" in report.table


def test_ray_sweep_with_a_killed_worker_matches_the_uninterrupted_one(uninterrupted, train):
    pytest.importorskip("ray", reason="Ray is not installed (pip install hdqnn[ray])")
    config, reference, _ = uninterrupted
    config.out = config.out.with_name("ray")
    report = run_with_a_kill(config, train, "ray", "worker_pid")
    assert report.runner.startswith("a local Ray instance")
    assert finals(report) == finals(reference)  # exact: one thread per trial, seeded, CPU


def test_a_trial_failing_on_its_config_is_reported_once(tmp_path, capsys):
    """CartPole has discrete actions: train exits with its error, the sweep does not retry it."""
    code = run_sweep_from_args(_args("--out", str(tmp_path), "--env", "CartPole-v1", "--algo", "td3",
                                     "--steps", "10", "--runner", "local", "--no-compare"))
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("FAILED") == 1 and "retry" not in out and "discrete" in out


def test_bad_env_id_is_a_config_error(tmp_path, capsys):
    assert run_sweep_from_args(_args("--out", str(tmp_path), "--env", "Pendulum-v9", "--runner", "local")) == 2
    err = capsys.readouterr().err
    assert "field '--env'" in err and "unknown Gymnasium environment id 'Pendulum-v9'" in err, err
    assert not (tmp_path / "sweep.json").exists()


def test_options_train_would_refuse_are_config_errors(tmp_path, capsys):
    code = run_sweep_from_args(_args("--out", str(tmp_path), "--set", "shots=100", "--set", "grad=adjoint",
                                     "--runner", "local"))
    assert code == 2
    assert "grad='adjoint' is exact and cannot be used with shots" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()
