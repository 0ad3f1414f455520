"""load_policy / Policy: a trained run's actor as observations -> actions, its file, its export."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hdqnn.hardware import LocalSampler
from hdqnn.rl import ALGOS, CheckpointError, Policy, evaluate_run, load_policy, make_env
from hdqnn.rl.checkpoint import RunFolderLock, read_checksummed, write_checksummed
from hdqnn.rl.evaluate import EVAL_SEED_OFFSET
from hdqnn.rl.train import train

from .conftest import tiny_args

PENDULUM_OBS_DIM, PENDULUM_ACT_DIM = 3, 1
#: Runs besides one per algorithm: an hDQNN actor trained with shots, and one with the adjoint gradient.
VARIANTS = {
    "hdqnn-td3+shots": dict(algo="hdqnn-td3", shots=64),
    "hdqnn-td3+adjoint": dict(algo="hdqnn-td3", grad="adjoint"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> the folder of a tiny finished Pendulum run (past learning_starts: the actor was updated)."""
    root = tmp_path_factory.mktemp("policy_runs")
    folders = {}
    for name, settings in {**{algo: dict(algo=algo) for algo in ALGOS}, **VARIANTS}.items():
        args = tiny_args(root, name, total_timesteps=100, tensorboard=False, **settings)
        train(args)
        folders[name] = args.out_dir
    return folders


def observations(n: int, seed: int = 0) -> np.ndarray:
    """[n, 3] float32 Pendulum observations (cos, sin, angular velocity)."""
    rng = np.random.default_rng(seed)
    theta, velocity = rng.uniform(-np.pi, np.pi, n), rng.uniform(-8, 8, n)
    return np.stack([np.cos(theta), np.sin(theta), velocity], axis=1).astype(np.float32)


def episode_return(policy: Policy, seed: int) -> float:
    """The return of one episode acted by ``policy`` from ``env.reset(seed=seed)``."""
    env = make_env("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += float(reward)
        done = terminated or truncated
    env.close()
    return total


@pytest.mark.parametrize("algo", ALGOS + ("hdqnn-td3+shots",))
def test_policy_acts_exactly_as_hdqnn_eval(runs, algo):
    eval_returns, args = evaluate_run(runs[algo], episodes=2)
    policy = load_policy(runs[algo])
    # one policy for both episodes, as evaluate acts with one actor copy (rbg's bits, shots: one stream)
    ours = [episode_return(policy, args.seed + EVAL_SEED_OFFSET + episode) for episode in range(2)]
    assert ours == eval_returns.tolist()  # bit-identical actions over 400 steps


@pytest.mark.parametrize("algo", [a for a in ALGOS if not a.startswith("rbg-")])
def test_batched_and_single_observations(runs, algo):
    policy = load_policy(runs[algo])
    obs = observations(5)
    batch = policy(obs)
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float32 and batch.shape == (5, PENDULUM_ACT_DIM)
    single = np.stack([policy(o) for o in obs])
    assert policy(obs[0]).shape == (PENDULUM_ACT_DIM,)
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-6)  # one matmul vs five: rounding only
    assert np.all(batch >= -2.0) and np.all(batch <= 2.0)  # Pendulum's torque bounds

    tensor = policy(torch.from_numpy(obs))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    assert np.array_equal(tensor.numpy(), batch)
    assert policy(obs.astype(np.float64).tolist()).shape == (5, PENDULUM_ACT_DIM)  # lists and float64 too


@pytest.mark.parametrize("algo", ALGOS)
def test_saved_policy_loads_without_the_run_folder_bit_identical(runs, algo, tmp_path):
    run = shutil.copytree(runs[algo], tmp_path / "run")
    policy = load_policy(run)
    policy(observations(3))  # the file keeps the RNG states as they are when saved (rbg's bits)
    path = policy.save(tmp_path / "pendulum.policy")
    shutil.rmtree(run)
    loaded = Policy.load(path)
    assert loaded.args == policy.args and loaded.obs_dim == PENDULUM_OBS_DIM
    for seed in (1, 2):  # twice: the streams (rbg's random bits) continue alike
        obs = observations(4, seed)
        assert np.array_equal(loaded(obs), policy(obs))
        assert np.array_equal(loaded(obs[0]), policy(obs[0]))


def test_damaged_or_foreign_policy_files_are_refused(runs, tmp_path):
    path = load_policy(runs["td3"]).save(tmp_path / "td3.policy")
    data = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped.policy"
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="policy file .* checksum"):
        Policy.load(flipped)
    truncated = tmp_path / "truncated.policy"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="checksum"):
        Policy.load(truncated)
    plain = tmp_path / "plain.pt"
    torch.save({"actor": {}}, plain)  # a torch file without the header: not written by save
    with pytest.raises(CheckpointError, match="header"):
        Policy.load(plain)
    with pytest.raises(CheckpointError, match="not an hdqnn policy file"):
        Policy.load(f"{runs['td3']}/checkpoint.pt")
    with pytest.raises(CheckpointError, match="no policy file"):
        Policy.load(tmp_path / "missing.policy")
    with pytest.raises(CheckpointError, match=r"is a folder.*load_policy\(DIR\)"):
        Policy.load(runs["td3"])


def test_a_policy_file_whose_pqc_differs_is_refused(runs, tmp_path):
    path = load_policy(runs["hdqnn-td3"]).save(tmp_path / "q.policy")
    state = read_checksummed(path, "policy file")
    assert state["circuit"].startswith("OPENQASM 3.0;") and state["hdqnn_version"]
    state["circuit"] = state["circuit"].replace("ry(", "rx(", 1)  # as if another hdqnn built another ansatz
    write_checksummed(path, state)
    with pytest.raises(CheckpointError, match="PQC .* differs"):
        Policy.load(path)


def test_hybrid_policy_on_a_hardware_runner(runs, tmp_path):
    exact = load_policy(runs["hdqnn-td3"])
    runner = LocalSampler(seed=0)
    sampled = load_policy(runs["hdqnn-td3"], runner=runner, shots=20_000)
    obs = observations(6)
    actions = sampled(obs)
    assert actions.shape == (6, PENDULUM_ACT_DIM) and actions.dtype == np.float32
    # the batch is one job of 6 circuits on the runner, whose shot noise only perturbs the actions
    assert (runner.jobs_run, runner.circuits_run, runner.shots_used) == (1, 6, 6 * 20_000)
    np.testing.assert_allclose(actions, exact(obs), atol=0.05)
    assert not np.array_equal(actions, exact(obs))
    saved = Policy.load(sampled.save(tmp_path / "q.policy"), runner=LocalSampler(seed=1))
    assert saved.args.shots == 20_000 and saved(obs[0]).shape == (PENDULUM_ACT_DIM,)


def test_runner_and_shots_errors(runs):
    with pytest.raises(ValueError, match="needs shots"):  # the runner's own error: exact run, no shots=
        load_policy(runs["hdqnn-td3"], runner=LocalSampler(seed=0))(observations(1))
    with pytest.raises(ValueError, match="td3 policy has no PQC"):
        load_policy(runs["td3"], runner=LocalSampler(seed=0), shots=100)
    with pytest.raises(ValueError, match="shots must be a non-negative int"):
        load_policy(runs["hdqnn-td3"], shots=-1)
    with pytest.raises(TypeError, match="runner must have run"):
        load_policy(runs["hdqnn-td3"], runner=object(), shots=100)
    with pytest.raises(ValueError, match="grad='adjoint'.*cannot take shots or a hardware runner"):
        load_policy(runs["hdqnn-td3+adjoint"], runner=LocalSampler(seed=0), shots=100)
    assert load_policy(runs["hdqnn-td3+adjoint"])(observations(2)).shape == (2, PENDULUM_ACT_DIM)
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        load_policy(runs["td3"], device="gpu0")


def test_shots_override_the_runs_own(runs):
    obs = observations(4)
    exact = load_policy(runs["hdqnn-td3+shots"], shots=0)
    assert exact.args.shots == 0 and np.array_equal(exact(obs), exact(obs))  # exact: no shot noise
    sampled = load_policy(runs["hdqnn-td3"], shots=32)
    assert not np.array_equal(sampled(obs), sampled(obs))  # fresh shots on every call


@pytest.mark.parametrize("bad, error, message", [
    (np.zeros(4, np.float32), ValueError, r"shape \[3\] or \[B, 3\].*got shape \(4,\)"),
    (np.zeros((2, 2, 3), np.float32), ValueError, r"got shape \(2, 2, 3\)"),
    (np.zeros((0, 3), np.float32), ValueError, "B >= 1"),
    (torch.zeros(5, 2), ValueError, r"got shape \(5, 2\)"),
    (np.array([1.0, np.nan, 0.0]), ValueError, "NaN"),
    (np.array(["a", "b", "c"]), TypeError, "real numbers"),
    (torch.zeros(3, dtype=torch.complex64), TypeError, "real numbers"),
])
def test_bad_observations_are_named(runs, bad, error, message):
    with pytest.raises(error, match=message):
        load_policy(runs["hdqnn-td3"])(bad)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # torch 2.13 deprecates TorchScript
@pytest.mark.parametrize("algo", [a for a in ALGOS if not a.startswith(("hdqnn-", "rbg-"))])
def test_classical_policy_exports_to_torchscript(runs, algo, tmp_path):
    policy = load_policy(runs[algo])
    module = torch.jit.load(str(policy.export(tmp_path / "actor.pt")))
    obs = torch.from_numpy(observations(5))
    assert torch.equal(module(obs), policy(obs))
    assert torch.equal(module(obs[0]), policy(obs[0]))
    with pytest.raises(Exception, match="shape"):
        module(torch.zeros(5, 2))


@pytest.mark.parametrize("algo", [a for a in ALGOS if not a.startswith(("hdqnn-", "rbg-"))])
def test_classical_policy_exports_to_torch_export(runs, algo, tmp_path):
    policy = load_policy(runs[algo])
    module = torch.export.load(str(policy.export(tmp_path / "actor.pt2"))).module()
    for batch in (1, 2, 7):
        obs = torch.from_numpy(observations(batch))
        assert torch.equal(module(obs), policy(obs))
    with pytest.raises(Exception, match="size"):
        module(torch.zeros(5, 2))


@pytest.mark.parametrize("name", ["actor.pt", "actor.pt2"])
@pytest.mark.parametrize("algo", [a for a in ALGOS if a.startswith(("hdqnn-", "rbg-"))])
def test_hybrid_policies_refuse_export_and_point_to_save(runs, algo, name, tmp_path):
    reason = "not a torch op" if algo.startswith("hdqnn-") else "Generator"
    with pytest.raises(ValueError, match=f"{reason}.*policy.save"):
        load_policy(runs[algo]).export(tmp_path / name)
    assert not (tmp_path / name).exists()


def test_loading_a_run_does_not_take_its_write_lock(runs):
    with RunFolderLock() as lock:
        lock.acquire(runs["td3"])  # as a training that is still running holds it
        assert load_policy(runs["td3"])(observations(1)).shape == (1, PENDULUM_ACT_DIM)


def test_missing_run_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "nowhere")


def test_eval_saves_and_exports_the_policy_from_the_command_line(runs, tmp_path, capsys):
    from hdqnn.cli import main

    policy_file, program_file = tmp_path / "td3.policy", tmp_path / "td3.pt2"
    assert main(["eval", runs["td3"], "--episodes", "1", "--save-policy", str(policy_file),
                 "--export", str(program_file)]) == 0
    obs = observations(4)
    expected = load_policy(runs["td3"])(obs)
    np.testing.assert_array_equal(Policy.load(policy_file)(obs), expected)
    program = torch.export.load(str(program_file)).module()
    np.testing.assert_array_equal(program(torch.from_numpy(obs)).detach().numpy(), expected)
    out = capsys.readouterr().out
    assert str(policy_file) in out and "torch.export.load" in out
    # a hybrid actor cannot be exported: a message and rc 2, not a traceback
    assert main(["eval", runs["hdqnn-td3"], "--episodes", "1", "--export", str(tmp_path / "h.pt2")]) == 2
    assert "policy.save" in capsys.readouterr().err
