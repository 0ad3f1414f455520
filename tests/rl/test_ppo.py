"""PPO: GAE and the loss against NumPy references, the batched act (one circuit call for N envs), the
normalisations and their restore, exact resume, policies of PPO runs, every variant end to end, args."""
from __future__ import annotations

import json
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hdqnn.autograd.runner import SimulatorRunner
from hdqnn.rl import Args, Policy, compare_runs, evaluate_run, load_checkpoint, load_policy, train
from hdqnn.rl.args import QUANTUM_ALGOS
from hdqnn.rl.generalize import generalize_run
from hdqnn.rl.metrics import read_metrics
from hdqnn.rl.onpolicy import make_vector_env
from hdqnn.rl.ppo import (PPO, NormalizedActor, compute_gae, next_values, normalize_observations, ppo_loss)
from hdqnn.rl.train import TrainingInterrupted

from .conftest import tiny_args
from .helpers import ACTION_SPACE
from .test_train import _assert_same_state, _signal_at_step

PPO_ALGOS = ("ppo", "hdqnn-ppo", "fc-ppo", "rbg-ppo")
#: A tiny PPO: rollouts of 2 envs x 40 steps, 4 minibatches of 20, 2 epochs.
TINY_PPO = dict(num_envs=2, num_steps=40, num_minibatches=4, update_epochs=2, hidden_sizes=(16, 16))
PPO_KEYS = ("charts/episodic_return", "charts/SPS", "charts/learning_rate", "losses/policy_loss",
            "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac",
            "losses/explained_variance", "quantum/circuit_executions", "eval/mean_return")
QUANTUM_KEYS = ("qtdnn/fit_loss", "qtdnn/grad_cosine")


def ppo_args(tmp_path, name: str = "run", **overrides) -> Args:
    return tiny_args(tmp_path, name, **{"algo": "ppo", "tensorboard": False, **TINY_PPO, **overrides})


# ------------------------------------------------------------------------------ GAE and the loss
def reference_advantages(rewards, values, last_values, terminated, truncated, final_values, gamma, lam):
    """A_t = sum_l (gamma lambda)^l delta_{t+l} over the rest of the episode within the rollout, summed
    forwards (the definition, not compute_gae's backward recursion); delta's next value is 0 after a
    termination, the final observation's value after a truncation, else the next state's."""
    steps, envs = rewards.shape
    delta = np.zeros((steps, envs))
    for t in range(steps):
        for i in range(envs):
            if terminated[t, i]:
                following = 0.0
            elif truncated[t, i]:
                following = final_values[t, i]
            else:
                following = values[t + 1, i] if t + 1 < steps else last_values[i]
            delta[t, i] = rewards[t, i] + gamma * following - values[t, i]
    advantages = np.zeros((steps, envs))
    for t in range(steps):
        for i in range(envs):
            weight, s = 1.0, t
            while s < steps:
                advantages[t, i] += weight * delta[s, i]
                if terminated[s, i] or truncated[s, i]:
                    break
                weight *= gamma * lam
                s += 1
    return advantages


def test_gae_matches_the_definition_with_terminations_and_truncations():
    rng = np.random.default_rng(3)
    steps, envs, gamma, lam = 7, 3, 0.9, 0.8
    rewards, values = rng.normal(size=(steps, envs)), rng.normal(size=(steps, envs))
    last_values, truncated_values = rng.normal(size=envs), rng.normal(size=(steps, envs))
    terminated = np.zeros((steps, envs), bool)
    truncated = np.zeros((steps, envs), bool)
    terminated[2, 0] = terminated[6, 0] = True  # env 0: two terminations, the second at the rollout's end
    truncated[3, 1] = truncated[6, 1] = True    # env 1: two time limits; env 2 never ends
    final_values = np.where(truncated, truncated_values, 0.0)  # as the loop stores them
    dones = terminated | truncated

    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    following = next_values(t(values), t(last_values), t(dones), t(final_values))
    ours = compute_gae(t(rewards), t(values), following, t(dones), gamma, lam).numpy()
    expected = reference_advantages(rewards, values, last_values, terminated, truncated, truncated_values, gamma, lam)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    # two entries by hand: a terminal step's advantage is r - V; a truncated one's bootstraps
    assert ours[6, 0] == pytest.approx(rewards[6, 0] - values[6, 0], abs=1e-12)
    assert ours[3, 1] == pytest.approx(rewards[3, 1] + gamma * truncated_values[3, 1] - values[3, 1], abs=1e-12)


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]])
    values = np.array([[0.5], [-1.0], [2.0], [0.25]])
    dones = np.array([[0.0], [1.0], [0.0], [0.0]])  # a truncation after step 1, bootstrapped from 10
    final_values = np.array([[0.0], [10.0], [0.0], [0.0]])
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    following = next_values(t(values), t(np.array([7.0])), t(dones), t(final_values))
    advantages = compute_gae(t(rewards), t(values), following, t(dones), 0.5, 1.0).numpy()[:, 0]
    returns = [1 + 0.5 * 2 + 0.25 * 10, 2 + 0.5 * 10, 3 + 0.5 * 4 + 0.25 * 7, 4 + 0.5 * 7]
    np.testing.assert_allclose(advantages + values[:, 0], returns, rtol=1e-12)


def test_ppo_loss_matches_hand_computed_values():
    new_lp = np.array([-1.0, -0.5, -2.0, -0.1])
    old_lp = np.array([-1.1, -1.0, -1.5, -0.1])  # ratios e^0.1, e^0.5 (clipped), e^-0.5 (clipped), 1
    advantages = np.array([1.0, 2.0, -1.0, 0.5])
    new_v, old_v = np.array([0.5, 1.0, -0.2, 3.0]), np.array([0.2, 1.1, 0.0, 2.0])
    returns = np.array([1.0, 0.0, 0.1, 2.5])
    entropy = np.array([1.2, 1.0, 0.8, 1.1])
    clip, ent_coef, vf_coef = 0.2, 0.01, 0.5
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    loss, stats = ppo_loss(t(new_lp), t(old_lp), t(entropy), t(new_v), t(old_v), t(advantages), t(returns),
                           clip_coef=clip, clip_vloss=True, norm_adv=True, ent_coef=ent_coef, vf_coef=vf_coef)

    ratio = np.exp(new_lp - old_lp)
    adv = (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-8)
    policy_loss = np.mean(np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip, 1 + clip)))
    clipped_v = old_v + np.clip(new_v - old_v, -clip, clip)
    value_loss = 0.5 * np.mean(np.maximum((new_v - returns) ** 2, (clipped_v - returns) ** 2))
    assert stats["losses/policy_loss"] == pytest.approx(policy_loss, rel=1e-12)
    assert stats["losses/value_loss"] == pytest.approx(value_loss, rel=1e-12)
    assert stats["losses/entropy"] == pytest.approx(1.025, rel=1e-12)
    assert stats["losses/clipfrac"] == 0.5
    assert stats["losses/approx_kl"] == pytest.approx(np.mean(ratio - 1 - np.log(ratio)), rel=1e-12)
    assert stats["losses/old_approx_kl"] == pytest.approx(np.mean(old_lp - new_lp), rel=1e-12)
    assert loss.item() == pytest.approx(policy_loss - ent_coef * 1.025 + vf_coef * value_loss, rel=1e-12)

    _, plain = ppo_loss(t(new_lp), t(old_lp), t(entropy), t(new_v), t(old_v), t(advantages), t(returns),
                        clip_coef=clip, clip_vloss=False, norm_adv=False, ent_coef=0.0, vf_coef=vf_coef)
    assert plain["losses/value_loss"] == pytest.approx(0.5 * np.mean((new_v - returns) ** 2), rel=1e-12)
    raw_policy = np.mean(np.maximum(-advantages * ratio, -advantages * np.clip(ratio, 1 - clip, 1 + clip)))
    assert plain["losses/policy_loss"] == pytest.approx(raw_policy, rel=1e-12)


# ------------------------------------------------------------------------------ acting
def test_acting_on_n_envs_is_one_circuit_call(tmp_path, monkeypatch):
    batches = []
    real_run = SimulatorRunner.run

    def counting_run(self, circuit, inputs, *rest, **kwargs):
        batches.append(inputs.shape[0])
        return real_run(self, circuit, inputs, *rest, **kwargs)

    monkeypatch.setattr(SimulatorRunner, "run", counting_run)
    agent = PPO(Args(algo="hdqnn-ppo", qubits=3, layers=1, pre_hidden=(8,), post_hidden=(8,), num_envs=4),
                obs_dim=2, action_space=ACTION_SPACE)
    actions, logprobs, values = agent.act(torch.randn(4, 2))
    assert batches == [4] and actions.shape == (4, 1) and logprobs.shape == values.shape == (4,)

    # in the loop: 16 steps of 4 envs (no update: the rollout is not full), then the evaluation's rows
    batches.clear()
    train(ppo_args(tmp_path, algo="hdqnn-ppo", num_envs=4, num_steps=32, total_timesteps=64))
    assert batches[:16] == [4] * 16 and set(batches[16:]) == {1}


def test_actions_are_sampled_around_the_mean_and_the_deterministic_one_clipped():
    agent = PPO(Args(algo="ppo", hidden_sizes=(8,)), obs_dim=2, action_space=ACTION_SPACE)
    with torch.no_grad():
        agent.actor.actor_logstd.fill_(np.log(3.0))  # wide enough to leave [-2, 2] often
    torch.manual_seed(0)
    obs = torch.zeros(20_000, 2)
    actions, logprobs, _ = agent.act(obs)
    mean = agent.actor.raw(obs[:1]).detach()
    assert actions.mean().item() == pytest.approx(mean.item(), abs=0.05)
    assert actions.std().item() == pytest.approx(3.0, rel=0.02)
    expected = torch.distributions.Normal(mean, 3.0).log_prob(actions).sum(1)
    torch.testing.assert_close(logprobs, expected)
    assert agent.actor(obs[:1]).item() == pytest.approx(float(np.clip(mean.item(), -2, 2)))


# ------------------------------------------------------------------------------ normalisation
def test_observation_statistics_are_every_observation_seen(tmp_path):
    args = ppo_args(tmp_path, num_envs=3, total_timesteps=600)
    vec = make_vector_env(args)
    vec.reset()
    raw = [np.stack([env.obs for env in vec.sync.envs])]
    rng = np.random.default_rng(0)
    for _ in range(250):  # past the 200-step time limit: the reset observations count too
        vec.envs.step(rng.uniform(-2, 2, (3, 1)).astype(np.float32))
        raw.append(np.stack([env.obs for env in vec.sync.envs]))
    seen = np.concatenate(raw).astype(np.float64)
    n, prior = len(seen), 1e-4  # RunningMeanStd starts as mean 0, var 1 of weight 1e-4
    mean = seen.sum(axis=0) / (n + prior)
    m2 = prior * 1.0 + n * seen.var(axis=0) + seen.mean(axis=0) ** 2 * prior * n / (n + prior)
    rms = vec.obs_norm.obs_rms
    assert rms.count == pytest.approx(n + prior, rel=1e-12)
    np.testing.assert_allclose(rms.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rms.var, m2 / (n + prior), rtol=1e-9)
    vec.close()


def test_restored_envs_and_statistics_continue_exactly(tmp_path):
    args = ppo_args(tmp_path, num_envs=2, total_timesteps=600)
    rng = np.random.default_rng(1)
    actions = rng.uniform(-3, 3, (400, 2, 1)).astype(np.float32)  # outside the bounds too: ClipAction
    straight = make_vector_env(args)
    straight.reset()
    for a in actions[:230]:  # one episode boundary (200 steps) passed
        obs, *_ = straight.envs.step(a)
    state = straight.state_dict(torch.as_tensor(obs))
    normalization = straight.normalization_state()
    resumed = make_vector_env(args)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the environment did not replay")
        restored_obs = resumed.restore(state, normalization)
    assert torch.equal(restored_obs, torch.as_tensor(obs))
    _assert_same_state(resumed.normalization_state(), normalization)
    for a in actions[230:]:  # another boundary ahead
        expected, got = straight.envs.step(a), resumed.envs.step(a)
        for x, y in zip(expected[:4], got[:4]):
            assert np.array_equal(x, y)
    _assert_same_state(resumed.normalization_state(), straight.normalization_state())
    straight.close()
    resumed.close()


def test_normalized_observations_in_numpy_and_torch_agree():
    rng = np.random.default_rng(2)
    obs = rng.normal(0, 30, (50, 3)).astype(np.float32)
    mean, var = rng.normal(size=3), rng.uniform(0.01, 4, 3)
    expected = normalize_observations(obs, mean, var)
    assert expected.dtype == np.float32 and np.abs(expected).max() == 10.0  # clipped
    manual = np.clip(((obs.astype(np.float64) - mean) / np.sqrt(var + 1e-8)).astype(np.float32), -10, 10)
    assert np.array_equal(expected, manual)
    from hdqnn.rl.ppo import ObservationNormalizer

    assert np.array_equal(ObservationNormalizer(torch.from_numpy(mean), torch.from_numpy(var))(
        torch.from_numpy(obs)).numpy(), expected)


# ------------------------------------------------------------------------------ runs
@pytest.mark.parametrize("algo", PPO_ALGOS)
def test_every_variant_trains_and_writes_its_run_folder(tmp_path, algo):
    args = ppo_args(tmp_path, algo=algo, total_timesteps=480, eval_freq=240, fidelity_freq=3)
    summary = train(args)
    assert summary["total_timesteps"] == 480 and summary["episodes"] == 2  # 2 envs x 240 steps
    assert np.isfinite(summary["final_eval"]) and summary["sps"] > 0
    keys = {k for r in read_metrics(args.out_dir) for k in r}
    assert set(PPO_KEYS) <= keys
    assert set(QUANTUM_KEYS) <= keys if algo in QUANTUM_ALGOS else not set(QUANTUM_KEYS) & keys
    assert (summary["circuit_executions"] > 0) == (algo in QUANTUM_ALGOS)
    assert [r["step"] for r in read_metrics(args.out_dir) if "eval/mean_return" in r] == [240, 480]
    rates = [r["charts/learning_rate"] for r in read_metrics(args.out_dir) if "charts/learning_rate" in r]
    np.testing.assert_allclose(rates, 3e-4 * (1 - np.arange(6) / 6))  # 6 rollouts of 80, annealed
    for name in ("run.json", "summary.json", "checkpoint.pt", "learning_curve.png"):
        assert (Path(args.out_dir) / name).exists(), name
    assert json.loads((Path(args.out_dir) / "summary.json").read_text())["algo"] == algo


@pytest.mark.parametrize("algo, how, anneal", [
    ("ppo", "steps", False),       # stopped mid-rollout, past an episode end; resumed with more steps
    ("hdqnn-ppo", "SIGINT", True),  # the rollout, the qtDNN surrogate and the shuffles' RNG
    ("rbg-ppo", "SIGTERM", True),   # the random bits' generator
])
def test_resume_equals_uninterrupted_run(tmp_path, monkeypatch, algo, how, anneal):
    common = dict(algo=algo, anneal_lr=anneal, eval_freq=100, fidelity_freq=3)
    steps, stop = 480, 230  # 2 envs: the signal during env step 230 stops the run at step 230 or 232
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the environment did not replay")
        straight = train(ppo_args(tmp_path, "straight", total_timesteps=steps, **common))
        if how == "steps":
            train(ppo_args(tmp_path, "resumed", total_timesteps=stop, **common))
        else:
            with monkeypatch.context() as patch:
                _signal_at_step(patch, stop, signal.Signals[how])
                with pytest.raises(TrainingInterrupted) as stopped:
                    train(ppo_args(tmp_path, "resumed", total_timesteps=steps, **common))
            assert stopped.value.step in (230, 232) and stopped.value.signum == signal.Signals[how]
        resumed_dir = ppo_args(tmp_path, "resumed").out_dir
        assert load_checkpoint(resumed_dir)["rollout"]["pos"] not in (0, 40)  # mid-rollout
        resumed = train(resume=resumed_dir, total_timesteps=steps)
    a, b = load_checkpoint(ppo_args(tmp_path, "straight").out_dir), load_checkpoint(resumed_dir)
    for part in ("agent", "rollout", "envs", "normalization", "rng"):
        _assert_same_state(a[part], b[part], part)
    for key in ("final_eval", "circuit_executions", "episodes"):
        assert straight[key] == resumed[key], key


# ------------------------------------------------------------------------------ policies
@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    args = ppo_args(tmp_path_factory.mktemp("ppo_policy"), algo="hdqnn-ppo", total_timesteps=160)
    train(args)
    return args.out_dir


def test_load_policy_acts_as_the_trained_actor_on_normalized_observations(ppo_run, tmp_path):
    checkpoint = load_checkpoint(ppo_run)
    args = Args.from_dict(checkpoint["args"])
    agent = PPO(args, 3, ACTION_SPACE)
    agent.load_state_dict(checkpoint["agent"])
    stats = checkpoint["normalization"]["observation"]
    assert stats["count"] == pytest.approx(1e-4 + 2 * (1 + 80))  # the reset and 80 steps of 2 envs
    obs = np.random.default_rng(0).normal(0, 3, (6, 3)).astype(np.float32)
    with torch.no_grad():
        expected = agent.actor(torch.as_tensor(normalize_observations(obs, stats["mean"].numpy(),
                                                                      stats["var"].numpy()))).numpy()
    policy = load_policy(ppo_run)
    assert isinstance(policy.actor, NormalizedActor)
    assert policy.actor.actor.action_high.tolist() == [2.0]  # the env's bounds, not ClipAction's infinite ones
    assert np.array_equal(policy(obs), expected)
    assert np.all(np.abs(policy(obs)) <= 2.0)
    loaded = Policy.load(policy.save(tmp_path / "ppo.policy"))
    assert np.array_equal(loaded(obs), expected)


def test_eval_generalize_and_compare_a_ppo_run(ppo_run):
    returns, args = evaluate_run(ppo_run, episodes=1)
    assert args.algo == "hdqnn-ppo" and np.isfinite(returns).all()
    result = generalize_run(ppo_run, {"gravity": [1.5]}, episodes=1)
    assert result["unperturbed"] == returns.tolist() and len(result["points"]) == 1
    (row,) = compare_runs([ppo_run])
    summary = json.loads((Path(ppo_run) / "summary.json").read_text())
    assert row["label"] == "hdqnn-ppo" and row["seeds"] == 1 and row["steps"] == 160
    assert row["circuit_executions"] == summary["circuit_executions"] > 0


def test_without_normalization_the_policy_is_the_plain_actor(tmp_path):
    args = ppo_args(tmp_path, total_timesteps=80, normalize_observation=False, normalize_reward=False)
    train(args)
    checkpoint = load_checkpoint(args.out_dir)
    assert checkpoint["normalization"] == {"observation": None, "reward": None}
    assert not isinstance(load_policy(args.out_dir).actor, NormalizedActor)


def test_train_command_runs_ppo_on_vectorised_envs(tmp_path):
    from hdqnn.cli import main

    out = tmp_path / "cli"
    assert main(["train", "--algo", "fc-ppo", "--num-envs", "4", "--steps", "64", "--num-steps", "8",
                 "--num-minibatches", "2", "--update-epochs", "1", "--hidden-sizes", "8", "--pre-hidden", "4",
                 "--post-hidden", "4", "--qubits", "2", "--eval-episodes", "1", "--no-progress",
                 "--no-tensorboard", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["algo"], run["num_envs"], run["num_steps"]) == ("fc-ppo", 4, 8)


@pytest.mark.parametrize("overrides, message", [
    (dict(num_envs=0), "num_envs must be a positive integer"),
    (dict(algo="sac", num_envs=2), "num_envs is PPO's"),
    (dict(ent_coef="0.01"), "ent_coef is SAC's.*ppo_ent_coef"),
    (dict(num_envs=3, total_timesteps=100), r"total_timesteps \(100\) must be a multiple of num_envs \(3\)"),
    (dict(num_steps=10, num_envs=1, num_minibatches=3), r"num_minibatches \(3\) must divide .* 10 transitions"),
    (dict(gae_lambda=1.5), r"gae_lambda must be in \[0, 1\]"),
    (dict(num_steps=4, num_envs=1, num_minibatches=4), "norm_adv .* needs 2 transitions"),
    (dict(clip_coef=0.0), "clip_coef must be a finite number > 0"),
    (dict(max_grad_norm=-1.0), "max_grad_norm must be a finite number > 0"),
    (dict(ppo_ent_coef=-0.1), "ppo_ent_coef must be a finite number >= 0"),
    (dict(target_kl=float("nan")), "target_kl must be a finite number >= 0"),
    (dict(update_epochs=0), "update_epochs must be a positive integer"),
])
def test_bad_ppo_arguments_name_the_problem(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        ppo_args(tmp_path, **overrides)
