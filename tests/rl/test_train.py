"""Training runs end to end: smoke runs of every algorithm, logs, exact resume, checkpoint and env errors."""
from __future__ import annotations

import importlib
import json
import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hdqnn.rl import ALGOS, Args, CheckpointError, load_checkpoint, make_env, train
from hdqnn.rl.args import QUANTUM_ALGOS, base_algo, resolve_env_id
from hdqnn.rl.checkpoint import save_checkpoint
from hdqnn.rl.envs import EpisodeRecorder
from hdqnn.rl.metrics import read_metrics
from hdqnn.rl.tensorboard import read_records
from hdqnn.rl.train import ResumeConflict, RunAlreadyComplete, TrainingInterrupted, fresh_args

train_module = importlib.import_module("hdqnn.rl.train")  # `hdqnn.rl.train` the attribute is the function

STABLE_KEYS = ("charts/episodic_return", "charts/SPS", "losses/qf_loss", "losses/actor_loss",
               "quantum/circuit_executions", "eval/mean_return")
QUANTUM_KEYS = ("qtdnn/fit_loss", "qtdnn/grad_cosine")
SAC_KEYS = ("losses/alpha", "losses/alpha_loss")
#: The agents of this loop (PPO's runs are tested in test_ppo.py).
OFF_POLICY_ALGOS = tuple(a for a in ALGOS if base_algo(a) != "ppo")


def _keys(run_dir) -> set[str]:
    return {k for r in read_metrics(run_dir) for k in r}


@pytest.mark.parametrize("algo", OFF_POLICY_ALGOS)
def test_smoke_pendulum(make_args, algo):
    args = make_args(algo, algo=algo, total_timesteps=300, eval_freq=150)
    summary = train(args)
    assert summary["total_timesteps"] == 300 and summary["episodes"] == 1
    assert np.isfinite(summary["final_eval"]) and summary["best_eval"] >= summary["final_eval"]
    keys = _keys(args.out_dir)
    assert set(STABLE_KEYS) <= keys
    assert set(QUANTUM_KEYS) <= keys if algo in QUANTUM_ALGOS else not set(QUANTUM_KEYS) & keys
    assert set(SAC_KEYS) <= keys if algo.endswith("sac") else not set(SAC_KEYS) & keys
    assert (summary["circuit_executions"] > 0) == (algo in QUANTUM_ALGOS)
    evals = [r for r in read_metrics(args.out_dir) if "eval/mean_return" in r]
    assert [r["step"] for r in evals] == [150, 300]
    out = Path(args.out_dir)
    for name in ("run.json", "summary.json", "checkpoint.pt", "learning_curve.png"):
        assert (out / name).exists(), name
    assert json.loads((out / "run.json").read_text())["algo"] == algo


@pytest.mark.parametrize("algo", ["td3", "hdqnn-td3"])
def test_smoke_mujoco_hopper(make_args, algo):
    pytest.importorskip("mujoco", reason="MuJoCo environments need the mujoco package")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Hopper-v4 is out of date (v5 exists)
        summary = train(make_args(algo, algo=algo, env_id="Hopper-v4", total_timesteps=200, learning_starts=50))
    assert summary["total_timesteps"] == 200 and np.isfinite(summary["final_eval"])


def test_tensorboard_scalars_under_stable_keys(make_args):
    args = make_args(algo="hdqnn-td3", total_timesteps=250, eval_freq=250)
    train(args)
    (events,) = (Path(args.out_dir) / "tb").glob("events.out.tfevents.*")
    payload = b"".join(read_records(events))
    for key in STABLE_KEYS + QUANTUM_KEYS:
        assert key.encode() in payload, key


def _assert_same_state(a: dict, b: dict, path: str = "") -> None:
    """Every tensor and number of two checkpoint states is equal, bit for bit (wall-clock timings,
    the ``*seconds*`` counters, are measurements rather than state)."""
    if "seconds" in path.rsplit("/", 1)[-1]:
        return
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same_state(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


def _signal_at_step(monkeypatch, step: int, signum: int, *, during_save: int | None = None) -> None:
    """Send ``signum`` to this process during env step ``step`` (as Ctrl-C or ``kill`` would), and
    ``during_save`` in the middle of the next checkpoint write."""
    env_step, calls = EpisodeRecorder.step, {"steps": 0}

    def step_and_signal(self, env, action):
        calls["steps"] += 1
        if calls["steps"] == step:
            os.kill(os.getpid(), signum)
        return env_step(self, env, action)

    monkeypatch.setattr(EpisodeRecorder, "step", step_and_signal)
    if during_save is not None:
        real_save = train_module.save_checkpoint

        def signalled_save(run_dir, state):
            os.kill(os.getpid(), during_save)
            time.sleep(0.01)  # the handler runs here, mid-save
            return real_save(run_dir, state)

        monkeypatch.setattr(train_module, "save_checkpoint", signalled_save)


@pytest.mark.parametrize("algo, env_id, steps, stop, how", [
    ("hdqnn-td3", "Pendulum-v1", 260, 130, "steps"),   # stops mid-episode, after updates began
    ("rbg-td3", "Pendulum-v1", 260, 210, "steps"),     # across an episode boundary
    ("td3", "Hopper-v4", 200, 90, "steps"),            # MuJoCo state rebuilt by replaying the episode
    ("hdqnn-td3", "Pendulum-v1", 260, 130, "SIGINT"),  # Ctrl-C before the first periodic checkpoint
    ("rbg-td3", "Pendulum-v1", 260, 210, "SIGTERM"),
    ("sac", "Pendulum-v1", 260, 210, "steps"),         # the entropy coefficient and its optimizer
    ("hdqnn-sac", "Pendulum-v1", 260, 130, "SIGINT"),
])
def test_resume_equals_uninterrupted_run(make_args, monkeypatch, algo, env_id, steps, stop, how):
    if env_id.startswith("Hopper"):
        pytest.importorskip("mujoco", reason="MuJoCo environments need the mujoco package")
    common = dict(algo=algo, env_id=env_id, eval_freq=100, fidelity_freq=3)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("error", message="the environment did not replay")
        straight = train(make_args("straight", total_timesteps=steps, **common))
        if how == "steps":
            train(make_args("resumed", total_timesteps=stop, **common))
        else:
            with monkeypatch.context() as patch:
                _signal_at_step(patch, stop, signal.Signals[how])
                with pytest.raises(TrainingInterrupted) as stopped:
                    train(make_args("resumed", total_timesteps=steps, **common))
            assert stopped.value.step == stop and stopped.value.signum == signal.Signals[how]
            assert f"hdqnn train --resume {make_args('resumed').out_dir}" in str(stopped.value)
            assert load_checkpoint(make_args("resumed").out_dir)["global_step"] == stop
            assert not (Path(make_args("resumed").out_dir) / "summary.json").exists()
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
        resumed = train(resume=make_args("resumed").out_dir, total_timesteps=steps)
    a = load_checkpoint(make_args("straight").out_dir)
    b = load_checkpoint(make_args("resumed").out_dir)
    _assert_same_state(a["agent"], b["agent"])
    _assert_same_state(a["buffer"], b["buffer"])
    _assert_same_state(a["episode"], b["episode"])
    _assert_same_state(a["rng"], b["rng"])
    assert straight["final_eval"] == resumed["final_eval"]
    assert straight["circuit_executions"] == resumed["circuit_executions"]
    assert straight["episodes"] == resumed["episodes"]


def test_second_signal_while_saving_is_ignored(make_args, monkeypatch):
    args = make_args(algo="td3", total_timesteps=300)
    _signal_at_step(monkeypatch, 70, signal.SIGINT, during_save=signal.SIGINT)
    with pytest.raises(TrainingInterrupted):
        train(args)
    monkeypatch.undo()
    assert load_checkpoint(args.out_dir)["global_step"] == 70
    assert not list(Path(args.out_dir).glob("*.tmp"))
    assert train(resume=args.out_dir)["total_timesteps"] == 300


def test_resume_can_only_extend(make_args):
    args = make_args(algo="td3", total_timesteps=100)
    train(args)
    with pytest.raises(ValueError, match="already holds a run"):
        train(args)
    with pytest.raises(ValueError, match="past total_timesteps"):
        train(resume=args.out_dir, total_timesteps=50)
    with pytest.raises(ResumeConflict, match="keeps its arguments.*seed is 1 in the run, got 3") as conflict:
        train(resume=args.out_dir, seed=3, algo="td3", batch_size=args.batch_size)
    assert conflict.value.conflicts == {"seed": (1, 3)}  # repeated values are no conflict


def test_resume_accepts_its_own_arguments_and_says_when_complete(make_args):
    args = make_args(algo="td3", total_timesteps=100)
    train(args)
    same = {k: v for k, v in args.to_dict().items() if k != "total_timesteps"}
    with pytest.raises(RunAlreadyComplete, match="already complete \\(100 steps\\)"):
        train(resume=args.out_dir, **same)
    summary = train(resume=args.out_dir, **{**same, "hidden_sizes": list(args.hidden_sizes)}, total_timesteps=130,
                    command="hdqnn train --resume RUN --steps 130")
    assert summary["total_timesteps"] == 130
    run = json.loads((Path(args.out_dir) / "run.json").read_text())
    assert run["total_timesteps"] == 130
    (extension,) = run["extensions"]
    assert extension["from_steps"] == 100 and extension["to_steps"] == 130 and extension["at_step"] == 100
    assert extension["command"] == "hdqnn train --resume RUN --steps 130" and extension["time"]


def test_env_id_is_versioned_once(tmp_path):
    assert resolve_env_id("Pendulum") == resolve_env_id("Pendulum-v1") == "Pendulum-v1"
    with pytest.raises(ValueError, match="unknown Gymnasium environment id 'Pendulumm'"):
        resolve_env_id("Pendulumm")
    args = fresh_args(Args(env_id="Pendulum"))
    assert args.env_id == "Pendulum-v1" and args.out_dir.startswith("runs/Pendulum-v1__")


def test_sps_is_steps_per_second_of_training_time(make_args, monkeypatch):
    """charts/SPS and the summary's sps are one quantity: evaluations (slowed down here) are
    outside both, so the logged windows add up to the run's training seconds."""
    real_evaluate = train_module._evaluate

    def slow_evaluate(*args):
        time.sleep(0.3)
        real_evaluate(*args)

    monkeypatch.setattr(train_module, "_evaluate", slow_evaluate)
    args = make_args(algo="td3", total_timesteps=150, log_freq=50, eval_freq=50)
    summary = train(args)
    windows = [r["charts/SPS"] for r in read_metrics(args.out_dir) if "charts/SPS" in r]
    assert len(windows) == 3
    assert sum(50 / sps for sps in windows) == pytest.approx(summary["train_seconds"], rel=1e-9)
    assert summary["sps"] == pytest.approx(150 / summary["train_seconds"])


def test_progress_bar_shows_one_speed():
    bar = train_module._progress_bar(Args(total_timesteps=100, progress=True), 0)
    try:
        bar.set_postfix(SPS="42")
        bar.update(10)
        text = str(bar)
    finally:
        bar.close()
    assert "SPS=42" in text and "step/s" not in text and "/s" not in text.replace("SPS", "")


def test_resume_without_buffer_warns(make_args):
    args = make_args(algo="td3", total_timesteps=100, save_buffer=False)
    train(args)
    assert "data" not in load_checkpoint(args.out_dir)["buffer"]
    with pytest.warns(RuntimeWarning, match="no replay buffer"):
        summary = train(resume=args.out_dir, total_timesteps=120)
    assert summary["total_timesteps"] == 120


def test_missing_and_corrupted_checkpoints(make_args, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(resume=str(tmp_path / "empty"))
    args = make_args(algo="td3", total_timesteps=80)
    train(args)
    path = f"{args.out_dir}/checkpoint.pt"
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        train(resume=args.out_dir)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an hdqnn RL checkpoint"):
        load_checkpoint(args.out_dir)


def test_interrupted_checkpoint_write_keeps_the_previous_one(make_args, monkeypatch):
    args = make_args(algo="td3", total_timesteps=60)
    train(args)
    before = load_checkpoint(args.out_dir)["global_step"]

    def dying_save(obj, f):
        f.write(b"partial bytes of a checkpoint")
        raise KeyboardInterrupt  # the process is killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(args.out_dir, {"global_step": 999})
    monkeypatch.undo()
    assert load_checkpoint(args.out_dir)["global_step"] == before


def test_environment_errors():
    with pytest.raises(ValueError, match="unknown Gymnasium environment id 'NoSuchEnv-v0'"):
        make_env("NoSuchEnv-v0")
    with pytest.raises(ValueError, match="continuous .*Box"):
        make_env("CartPole-v1")


def test_bad_arguments_name_the_field(make_args):
    with pytest.raises(ValueError, match="algo must be one of"):
        make_args(algo="a2c")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make_args(batch_size=0)
    with pytest.raises(ValueError, match="adjoint"):
        make_args(algo="hdqnn-td3", grad="adjoint", shots=100)
