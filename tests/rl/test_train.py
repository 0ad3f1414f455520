"""Training runs end to end: smoke runs of every algorithm, logs, exact resume, checkpoint and env errors."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hdqnn.rl import ALGOS, CheckpointError, load_checkpoint, make_env, train
from hdqnn.rl.checkpoint import save_checkpoint
from hdqnn.rl.metrics import read_metrics
from hdqnn.rl.tensorboard import read_records

STABLE_KEYS = ("charts/episodic_return", "charts/SPS", "losses/qf_loss", "losses/actor_loss",
               "quantum/circuit_executions", "eval/mean_return")
QUANTUM_KEYS = ("qtdnn/fit_loss", "qtdnn/grad_cosine")


def _keys(run_dir) -> set[str]:
    return {k for r in read_metrics(run_dir) for k in r}


@pytest.mark.parametrize("algo", ALGOS)
def test_smoke_pendulum(make_args, algo):
    args = make_args(algo, algo=algo, total_timesteps=300, eval_freq=150)
    summary = train(args)
    assert summary["total_timesteps"] == 300 and summary["episodes"] == 1
    assert np.isfinite(summary["final_eval"]) and summary["best_eval"] >= summary["final_eval"]
    keys = _keys(args.out_dir)
    assert set(STABLE_KEYS) <= keys
    assert set(QUANTUM_KEYS) <= keys if algo == "hdqnn-td3" else not set(QUANTUM_KEYS) & keys
    assert (summary["circuit_executions"] > 0) == (algo == "hdqnn-td3")
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


@pytest.mark.parametrize("algo, env_id, steps, stop", [
    ("hdqnn-td3", "Pendulum-v1", 260, 130),   # stops mid-episode, after updates began
    ("rbg-td3", "Pendulum-v1", 260, 210),     # across an episode boundary
    ("td3", "Hopper-v4", 200, 90),            # MuJoCo state rebuilt by replaying the episode
])
def test_resume_equals_uninterrupted_run(make_args, algo, env_id, steps, stop):
    if env_id.startswith("Hopper"):
        pytest.importorskip("mujoco", reason="MuJoCo environments need the mujoco package")
    common = dict(algo=algo, env_id=env_id, eval_freq=100, fidelity_freq=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("error", message="the environment did not replay")
        straight = train(make_args("straight", total_timesteps=steps, **common))
        train(make_args("resumed", total_timesteps=stop, **common))
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


def test_resume_can_only_extend(make_args):
    args = make_args(algo="td3", total_timesteps=100)
    train(args)
    with pytest.raises(ValueError, match="already holds a run"):
        train(args)
    with pytest.raises(ValueError, match="past total_timesteps"):
        train(resume=args.out_dir, total_timesteps=50)
    with pytest.raises(ValueError, match="keeps its arguments"):
        train(resume=args.out_dir, seed=3)


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
        make_args(algo="ppo")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make_args(batch_size=0)
    with pytest.raises(ValueError, match="adjoint"):
        make_args(algo="hdqnn-td3", grad="adjoint", shots=100)
