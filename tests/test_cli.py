"""The ``hdqnn`` command: info, train, eval, compare, resume, and clear errors instead of tracebacks."""
from __future__ import annotations

import dataclasses
import json
import os
import runpy
import shlex
import signal
import subprocess
import sys
import time
import warnings

import pytest

from hdqnn.cli import main
from hdqnn.rl import PRESETS, TD3, Args, load_checkpoint, make_env
from hdqnn.rl.args import train_parser

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
    command = ["train", *TINY_FLAGS, "--env", "Pendulum", "--out", str(run)]
    assert main(command) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:2] == ["--env Pendulum -> Pendulum-v1", f"run folder: {run}"] and lines[-1] == lines[1]
    assert "hdqnn-td3 on Pendulum-v1 (seed 1): 120 steps" in out and "circuit executions" in out
    assert "ms per env step" in out and "qtdnn_fit" in out
    assert json.loads((run / "run.json").read_text())["env_id"] == "Pendulum-v1"

    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert "1 deterministic episodes" in capsys.readouterr().out

    # the same command with --resume appended: every flag repeats the run's value, and it is complete
    assert main([*command, "--resume", str(run)]) == 0
    assert f"the run in {run} is already complete (120 steps)" in capsys.readouterr().out
    extend = [*command, "--resume", str(run), "--steps", "160"]
    assert main(extend) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"run folder: {run} (resuming)"
    assert json.loads((run / "summary.json").read_text())["total_timesteps"] == 160
    recorded = json.loads((run / "run.json").read_text())
    assert recorded["total_timesteps"] == 160
    assert [(e["from_steps"], e["to_steps"], e["command"]) for e in recorded["extensions"]] == [
        (120, 160, shlex.join(["hdqnn", *extend]))]

    assert main(["compare", str(tmp_path), "--out", str(tmp_path), "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert "hdqnn-td3" in out and "95% CI" in out
    assert (tmp_path / "compare.png").exists() and (tmp_path / "rows.json").exists()


def test_resume_names_the_flags_that_differ_as_typed(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY_FLAGS, "--algo", "td3", "--steps", "60", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--algo", "td3", "--env-id", "MountainCarContinuous-v0",
                 "--seed", "3", "--batch-size", "8", "--no-tensorboard", "--steps", "80"]) == 2
    err = capsys.readouterr().err
    assert "--env-id MountainCarContinuous-v0 (the run has Pendulum-v1), --seed 3 (the run has 1)" in err
    for unchanged_or_resumable in ("--algo", "--batch-size", "tensorboard", "--steps", "env_id"):
        assert unchanged_or_resumable not in err.split("differ:")[1].split(";")[0], err
    assert main(["train", "--resume", str(run), "--preset", "paper"]) == 2
    assert "--preset paper sets --qubits 10 (the run has 2)" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--preset", "quick", *TINY_FLAGS, "--algo", "td3", "--steps", "60"]) == 0
    assert "already complete (60 steps)" in capsys.readouterr().out


def _wait_for_a_logged_step(run, process, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "train logged nothing"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_saves_a_checkpoint_that_resumes(tmp_path, capsys, signum):
    """Ctrl-C (or kill) long before the first periodic checkpoint (step 5000) loses nothing."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "hdqnn", "train", *TINY_FLAGS, "--algo", "td3", "--steps", "1000000",
            "--log-freq", "10", "--eval-freq", "100000", "--out", str(run)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout.readline() == f"run folder: {run}\n"
        _wait_for_a_logged_step(run, process)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum, err
    step = load_checkpoint(run)["global_step"]
    assert f"stopped by {signum.name} at step {step}; checkpoint saved in {run}\n" in err
    assert f"continue with: hdqnn train --resume {run}\n" in err and "Traceback" not in err
    assert 10 <= step < 5000
    assert main(["train", "--resume", str(run), "--steps", str(step + 20)]) == 0
    assert f"{step + 20} steps" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--env", "CartPole-v1"], "continuous"),
    (["train", "--env", "NoSuchEnv-v3"], "unknown Gymnasium environment id"),
    (["train", "--resume", "{tmp}"], "no checkpoint"),
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
        main(["train", "--algo", "a2c"])
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
