"""bench/sb3_compare.py without training: its statistics against scipy and hand values, the
hdqnn Args -> Stable-Baselines3 mapping against the models both libraries build, the shared
evaluation against hdqnn's, and the report from fixed records."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from hdqnn.rl import make_agent, make_env
from hdqnn.rl.evaluate import evaluate
from hdqnn.rl.networks import Actor

from .qasm.optional import import_or_skip

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "sb3_compare.py"
#: Student t quantile t_{0.975} with 2 degrees of freedom, in closed form: that t's CDF is
#: 1/2 + t / (2 sqrt(2 + t^2)), so t / sqrt(2 + t^2) = 0.95 (tables: 4.303).
T975_DF2 = 0.95 * math.sqrt(2.0 / (1.0 - 0.95 ** 2))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_sb3_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stats():
    return import_or_skip("scipy.stats", "test")


@pytest.fixture(scope="module")
def sb3():
    return import_or_skip("stable_baselines3", "test")


# ------------------------------------------------------------------------------ statistics
def test_t_interval_hand_value(bench, stats):
    low, high = bench.t_interval([1.0, 2.0, 3.0])  # mean 2, sample std 1
    half = T975_DF2 / math.sqrt(3.0)
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-12)
    x = np.array([-210.5, -150.25, -180.0, -400.0])
    expected = stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    assert bench.t_interval(x) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 values"):
        bench.t_interval([1.0])


def test_welch_matches_scipy_and_hand_values(bench, stats):
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0]
    result = bench.welch_test(a, b)
    va, vb = 1.0 / 3.0, (20.0 / 3.0) / 4.0  # variance of each mean
    assert result.difference == pytest.approx(2.0 - 5.0)
    assert result.t == pytest.approx(-3.0 / math.sqrt(va + vb), rel=1e-12)
    assert result.df == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3), rel=1e-12)
    rng = np.random.default_rng(3)
    for n_a, n_b in ((3, 3), (5, 8)):
        x, y = rng.normal(-200, 30, n_a), rng.normal(-170, 60, n_b)
        ours, theirs = bench.welch_test(x, y), stats.ttest_ind(x, y, equal_var=False)
        assert ours.t == pytest.approx(theirs.statistic, rel=1e-12)
        assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-10)
        assert ours.df == pytest.approx(theirs.df, rel=1e-12)
        ci = theirs.confidence_interval(0.95)
        assert ours.ci == pytest.approx((ci.low, ci.high), rel=1e-10)
    with pytest.raises(ValueError, match="two constant samples"):
        bench.welch_test([1.0, 1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 values per sample"):
        bench.welch_test([1.0], [2.0, 3.0])


def test_mann_whitney_with_three_seeds_cannot_go_below_a_tenth(bench, stats):
    assert bench.mann_whitney_floor(3, 3) == pytest.approx(0.1)  # 2 / C(6, 3)
    assert bench.mann_whitney_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)  # fully separated
    assert bench.mann_whitney_p([1.0, 4.0, 5.0], [2.0, 3.0, 6.0]) == pytest.approx(1.0)  # U = 4, next to the centre 4.5


# ------------------------------------------------------------------------------ hyperparameters
def _pendulum():
    return gym.make("Pendulum-v1")


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _linear_shapes(module: torch.nn.Module) -> list[tuple[int, int]]:
    return [tuple(m.weight.shape) for m in module.modules() if isinstance(m, torch.nn.Linear)]


def test_td3_maps_to_sb3_with_the_same_settings_and_networks(bench, sb3, tmp_path):
    args = bench.hdqnn_args("td3", "Pendulum-v1", 7, 5_000, str(tmp_path / "run"), {"learning_starts": 500})
    model = sb3.TD3("MlpPolicy", _pendulum(), **bench.sb3_kwargs(args, act_dim=1))
    assert (model.learning_rate, model.buffer_size, model.learning_starts, model.batch_size) == (3e-4, 1_000_000, 500,
                                                                                                 256)
    assert (model.tau, model.gamma, model.seed) == (0.005, 0.99, 7)
    assert (model.train_freq.frequency, model.gradient_steps) == (1, 1)
    assert (model.policy_delay, model.target_policy_noise, model.target_noise_clip) == (2, 0.2, 0.5)
    np.testing.assert_array_equal(model.action_noise._sigma, [0.1])  # fraction of the half-width, like hdqnn's
    agent = make_agent(args, 3, _pendulum().action_space)
    assert _linear_shapes(model.actor) == _linear_shapes(agent.actor) == [(256, 3), (256, 256), (1, 256)]
    assert model.critic.n_critics == 2
    assert _linear_shapes(model.critic.qf0) == _linear_shapes(agent.qf1) == [(256, 4), (256, 256), (1, 256)]
    assert _n_params(model.critic) == _n_params(agent.qf1) + _n_params(agent.qf2)


def test_sac_maps_to_sb3_with_the_same_settings_and_networks(bench, sb3, tmp_path):
    args = bench.hdqnn_args("sac", "Pendulum-v1", 2, 5_000, str(tmp_path / "run"))
    assert args.policy_delay == 1  # the comparison's override: SB3's SAC has no policy delay
    model = sb3.SAC("MlpPolicy", _pendulum(), **bench.sb3_kwargs(args, act_dim=1))
    assert (model.learning_rate, model.batch_size, model.learning_starts, model.seed) == (3e-4, 256, 1_000, 2)
    assert (model.target_update_interval, model.target_entropy) == (1, -1.0)
    assert model.ent_coef_optimizer is not None and float(model.log_ent_coef.detach().exp()) == pytest.approx(1.0)
    agent = make_agent(args, 3, _pendulum().action_space)
    # SB3's mean and log-std heads are hdqnn's one output layer of twice the width
    assert _linear_shapes(model.actor) == [(256, 3), (256, 256), (1, 256), (1, 256)]
    assert _linear_shapes(agent.actor) == [(256, 3), (256, 256), (2, 256)]
    assert _n_params(model.actor) == _n_params(agent.actor)
    assert _n_params(model.critic) == _n_params(agent.qf1) + _n_params(agent.qf2)

    fixed = bench.hdqnn_args("sac", "Pendulum-v1", 2, 5_000, str(tmp_path / "r2"), {"ent_coef": "0.2"})
    assert bench.sb3_kwargs(fixed, 1)["ent_coef"] == 0.2
    tuned = bench.hdqnn_args("sac", "Pendulum-v1", 2, 5_000, str(tmp_path / "r3"), {"ent_coef": "auto_0.1"})
    assert bench.sb3_kwargs(tuned, 1)["ent_coef"] == "auto_0.1"


def test_ppo_maps_to_sb3_with_the_same_settings_and_networks(bench, sb3, tmp_path):
    if not bench.ppo_available():
        pytest.skip("this hdqnn has no PPO")
    from stable_baselines3.common.vec_env import VecNormalize

    args = bench.hdqnn_args("ppo", "Pendulum-v1", 3, 4_096, str(tmp_path / "run"), {"num_envs": 2, "num_steps": 64})
    env = bench.sb3_env(args)
    assert isinstance(env, VecNormalize) and env.num_envs == 2 and (env.clip_obs, env.clip_reward) == (10.0, 10.0)
    model = sb3.PPO("MlpPolicy", env, **bench.sb3_kwargs(args, act_dim=1))
    assert (model.n_steps, model.batch_size, model.n_epochs) == (64, 2 * 64 // 32, 10)
    assert (model.gamma, model.gae_lambda, model.clip_range(1.0), model.clip_range_vf(1.0)) == (0.99, 0.95, 0.2, 0.2)
    assert (model.normalize_advantage, model.ent_coef, model.max_grad_norm, model.target_kl) == (True, 0.0, 0.5, None)
    assert model.vf_coef == 0.25  # SB3's value loss is twice CleanRL's 0.5 * MSE
    assert model.lr_schedule(1.0) == pytest.approx(3e-4) and model.lr_schedule(0.25) == pytest.approx(7.5e-5)
    agent = make_agent(args, 3, _pendulum().action_space)
    policy = model.policy
    assert _linear_shapes(policy.mlp_extractor.policy_net) + _linear_shapes(policy.action_net) == _linear_shapes(
        agent.actor) == [(256, 3), (256, 256), (1, 256)]
    assert _linear_shapes(policy.mlp_extractor.value_net) + _linear_shapes(policy.value_net) == _linear_shapes(
        agent.critic) == [(256, 3), (256, 256), (1, 256)]
    assert _n_params(policy) == _n_params(agent.actor) + _n_params(agent.critic)  # the log-std included
    assert policy.ortho_init and isinstance(policy.mlp_extractor.policy_net[1], torch.nn.Tanh)

    with pytest.raises(ValueError, match="multiple of num_envs \\* num_steps = 128.*--steps 3968 or 4096"):
        bench.check_budget(bench.hdqnn_args("ppo", "Pendulum-v1", 3, 4_000, "", {"num_envs": 2, "num_steps": 64}))
    bench.check_budget(args)


def test_settings_without_an_sb3_twin_are_refused(bench, sb3, tmp_path):
    delayed = bench.hdqnn_args("sac", "Pendulum-v1", 1, 1_000, str(tmp_path / "a"), {"policy_delay": 2})
    with pytest.raises(ValueError, match="policy_delay=2 has no SB3 twin"):
        bench.sb3_kwargs(delayed, 1)
    hybrid = bench.hdqnn_args("hdqnn-td3", "Pendulum-v1", 1, 1_000, str(tmp_path / "b"))
    with pytest.raises(ValueError, match="only the classical algorithms"):
        bench.sb3_kwargs(hybrid, 1)


def test_parse_sets_reads_json_values(bench):
    assert bench.parse_sets(["learning_starts=5000", "ent_coef=auto", "tau=0.01"]) == {
        "learning_starts": 5000, "ent_coef": "auto", "tau": 0.01}


# ------------------------------------------------------------------------------ protocol and report
def test_shared_evaluation_is_hdqnns(bench):
    torch.manual_seed(0)
    env = make_env("Pendulum-v1")
    actor = Actor(3, env.action_space, (8,)).eval()
    ours = evaluate(actor, env, 2, seed=5)
    with torch.no_grad():
        shared = bench.evaluate_policy(lambda obs: actor(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy(),
                                       "Pendulum-v1", 2, seed=5)
    np.testing.assert_array_equal(shared, ours)


def test_both_libraries_of_a_seed_run_side_by_side(bench):
    names = [job.name for job in bench.jobs_of(["td3", "sac"], [1, 2])]
    assert names[:4] == ["hdqnn_td3_1", "sb3_td3_1", "hdqnn_td3_2", "sb3_td3_2"]


def _record(library: str, seed: int, final: float, sps: float) -> dict:
    return {"library": library, "algo": "td3", "seed": seed, "env_id": "Pendulum-v1", "steps": 100,
            "final_mean": final, "final_returns": [final], "sps": sps, "protocol_check": 0.0 if library == "hdqnn"
            else None, "curve": [(50, final - 100), (100, final)], "hyperparameters": {"policy_delay": 2}}


def test_report_from_fixed_records(bench, stats, tmp_path):
    ours, theirs = [-150.0, -170.0, -190.0], [-160.0, -200.0, -240.0]
    records = ([_record("hdqnn", s, f, 120.0) for s, f in zip((1, 2, 3), ours)]
               + [_record("sb3", s, f, 100.0) for s, f in zip((1, 2, 3), theirs)])
    meta = {"env_id": "Pendulum-v1", "steps": 100, "seeds": [1, 2, 3], "algos": ["td3"], "jobs": 2,
            "final_episodes": 1, "overrides": {}, "load": [1.0, 2.0], "cpus": 2, "sb3_version": "x",
            "hdqnn_version": "y", "torch_version": "z"}
    report = bench.markdown_report(records, meta)
    low, high = bench.t_interval(ours)
    assert f"| td3 | hdqnn | -170.0 | [{low:.1f}, {high:.1f}] | -170.0 |" in report
    welch = stats.ttest_ind(ours, theirs, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert f"| td3 | 30.0 | [{ci.low:.1f}, {ci.high:.1f}] | {welch.pvalue:.2f} | 0.40 | 1.20 |" in report
    assert "cannot go below 0.10" in report and "not that the libraries are equivalent" in report
    bench.plot_curves(records, tmp_path / "curves.png", "test")
    assert (tmp_path / "curves.png").stat().st_size > 0
