"""The ``hdqnn`` command: info, train, eval, compare, resume, and clear errors instead of tracebacks."""
from __future__ import annotations

import dataclasses
import json
import runpy
import sys
import warnings

import pytest

from hdqnn.cli import main, train_parser
from hdqnn.rl import PRESETS, TD3, Args, make_env

#: A tiny hDQNN-TD3 run: seconds, not minutes.
TINY_FLAGS = ["--steps", "120", "--learning-starts", "40", "--batch-size", "8", "--hidden-sizes", "8",
              "--pre-hidden", "4", "--post-hidden", "4", "--qubits", "2", "--layers", "1", "--qtdnn-hidden", "8",
              "--qtdnn-fit-steps", "1", "--eval-freq", "120", "--eval-episodes", "1", "--log-freq", "40",
              "--no-progress"]


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hdqnn ") and "torch " in out and "threads" in out and "numpy" in out


def test_python_dash_m_runs_the_command(monkeypatch, capsys):
    """``python -m hdqnn info`` (run in this interpreter: a new one would re-import torch)."""
    monkeypatch.setattr(sys, "argv", ["hdqnn", "info"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("hdqnn", run_name="__main__", alter_sys=True)
    assert exc.value.code == 0
    assert "simulator backends" in capsys.readouterr().out


def test_every_training_argument_has_a_documented_flag_with_its_default():
    parser = train_parser()
    flags = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(Args):
        assert f.name in flags, f.name
        assert len(flags[f.name].help) > 20, f.name
        assert parser.get_default(f.name) == f.default, f.name
    parsed = parser.parse_args(["--steps", "5", "--hidden-sizes", "3", "4", "--no-progress"])
    assert (parsed.total_timesteps, parsed.hidden_sizes, parsed.progress, parsed.algo) == (5, [3, 4], False, "hdqnn-td3")


def test_train_eval_compare_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY_FLAGS, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "hdqnn-td3 on Pendulum-v1 (seed 1): 120 steps" in out and "circuit executions" in out
    assert "ms per env step" in out and "qtdnn_fit" in out

    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert "1 deterministic episodes" in capsys.readouterr().out

    assert main(["train", "--resume", str(run), "--steps", "160", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["total_timesteps"] == 160
    capsys.readouterr()

    assert main(["compare", str(tmp_path), "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert "hdqnn-td3" in out and "95% CI" in out
    assert (tmp_path / "compare.png").exists() and (tmp_path / "rows.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--env", "CartPole-v1"], "continuous"),
    (["train", "--env", "NoSuchEnv-v3"], "unknown Gymnasium environment id"),
    (["train", "--resume", "{tmp}"], "no checkpoint"),
    (["train", "--resume", "{tmp}", "--seed", "3"], "keeps its arguments"),
    (["eval", "{tmp}/nowhere"], "does not exist"),
    (["compare", "{tmp}"], "no runs"),
    (["train", "--batch-size", "0"], "batch_size must be a positive integer"),
])
def test_errors_are_messages_not_tracebacks(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + (["--out", str(tmp_path / "r")] if
                                                                 argv[0] == "train" and "--resume" not in argv else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_algorithm_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--algo", "ppo"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_paper_preset_builds_its_agent():
    args = Args(**PRESETS["paper"])
    assert (args.qubits, args.layers, args.qtdnn_preset, args.learning_starts) == (10, 10, "paper", 25_000)
    assert args.batch_size == 256 and args.learning_rate == 3e-4 and args.total_timesteps == 1_000_000
    pytest.importorskip("mujoco", reason="Humanoid-v4 needs the mujoco package")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Humanoid-v4 is out of date (v5 exists)
        env = make_env(args.env_id)
    agent = TD3(args, env.observation_space.shape[0], env.action_space)
    layer = agent.actor.quantum_layer
    assert layer.circuit.n_qubits == 10 and layer.qtdnn.config.hidden == 2 ** 11
    env.close()
