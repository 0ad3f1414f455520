"""SAC's update on tiny fixed tensors, recomputed independently; the squashed Gaussian's density;
entropy tuning; the hybrid actors in SAC; the agent factory."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from hdqnn.rl import TD3, Args, Batch, SAC, make_agent
from hdqnn.rl.args import parse_ent_coef
from hdqnn.rl.networks import (LOG_STD_MIN, DenseMiddle, HybridActor, RandomBitsMiddle, gaussian_params,
                               squashed_gaussian_sample)

from .helpers import ACTION_SPACE, first_adam_step, tiny_batch

SEED = 7
RTOL = 1e-5


def _agent(algo: str = "sac", **overrides) -> SAC:
    overrides = {"seed": SEED, **overrides}
    torch.manual_seed(overrides["seed"])
    args = Args(algo=algo, hidden_sizes=(4,), pre_hidden=(8,), post_hidden=(8,), qubits=2, layers=1,
                qtdnn_hidden=16, qtdnn_fit_steps=2, **overrides)
    return SAC(args, obs_dim=2, action_space=ACTION_SPACE)


def _set_log_std(agent: SAC, pre_tanh: float) -> None:
    """A constant policy: mean 0, log-std output ``pre_tanh`` before its tanh bounding."""
    last = agent.actor.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, pre_tanh]))


def test_squashed_gaussian_log_prob_is_the_density_of_the_action():
    """exp(log_prob) is the density of a = tanh(u) * scale + bias: the derivative of the action's
    CDF, Phi((atanh((a - bias) / scale) - mean) / std), and it integrates to 1 over the bounds."""
    # spreads that keep tanh away from saturation, where the log's SQUASH_EPS (CleanRL's) would
    # dominate float32's 1 - tanh(u)^2
    mean, log_std = torch.tensor([[0.3, -0.5]]), torch.tensor([[-0.5, -0.7]])
    scale, bias = torch.tensor([2.0, 0.5]), torch.tensor([0.5, -1.0])
    torch.manual_seed(0)
    actions, log_prob = squashed_gaussian_sample(mean.expand(2000, 2), log_std.expand(2000, 2), scale, bias)
    assert actions.shape == (2000, 2) and log_prob.shape == (2000,)
    assert bool(((actions - bias).abs() <= scale).all())

    def cdf(a, d):
        u = np.arctanh(np.clip((a - bias[d].item()) / scale[d].item(), -1 + 1e-12, 1 - 1e-12))
        return stats.norm.cdf(u, mean[0, d].item(), np.exp(log_std[0, d].item()))

    a = actions.double().numpy()
    h = 1e-6
    density = np.prod([(cdf(a[:, d] + h, d) - cdf(a[:, d] - h, d)) / (2 * h) for d in range(2)], axis=0)
    np.testing.assert_allclose(log_prob.numpy(), np.log(density), rtol=2e-3, atol=2e-3)

    # the first dimension alone on a grid: a probability density (log_prob sums the dimensions)
    grid = torch.linspace(-1.5 + 1e-4, 2.5 - 1e-4, 20001)
    u = torch.atanh((grid - bias[0]) / scale[0])
    normal = torch.distributions.Normal(mean[0, 0], log_std[0, 0].exp())
    per_dim = normal.log_prob(u) - torch.log(scale[0] * (1 - torch.tanh(u) ** 2) + 1e-6)
    assert torch.trapezoid(per_dim.exp(), grid).item() == pytest.approx(1.0, abs=2e-3)


def test_monte_carlo_mean_action_matches_the_analytic_expectation():
    """E[a] of the sampler = E[tanh(u)] * scale + bias, computed by quadrature over u."""
    torch.manual_seed(1)
    mean, log_std = torch.full((200_000, 1), 0.4), torch.full((200_000, 1), -0.3)
    actions, _ = squashed_gaussian_sample(mean, log_std, torch.tensor([2.0]), torch.tensor([0.5]))
    u = np.linspace(-10, 10, 200_001)
    expected = np.trapezoid(np.tanh(u) * stats.norm.pdf(u, 0.4, np.exp(-0.3)), u) * 2.0 + 0.5
    assert actions.mean().item() == pytest.approx(expected, abs=0.01)


def test_critic_update_matches_hand_computed_soft_target():
    agent = _agent(ent_coef="0.3")
    data = tiny_batch()
    before = {name: copy.deepcopy(m) for name, m in agent.modules().items()}

    torch.manual_seed(123)
    metrics = agent.update(data)

    torch.manual_seed(123)  # the same draw as inside update(): the first torch RNG use
    actor = before["actor"]
    next_actions, next_log_pi = actor.sample(actor.raw(data.next_observations))
    q_next = torch.min(before["qf1_target"](data.next_observations, next_actions),
                       before["qf2_target"](data.next_observations, next_actions)).view(-1)
    target = data.rewards + (1 - data.dones) * 0.99 * (q_next - 0.3 * next_log_pi)
    loss1 = F.mse_loss(before["qf1"](data.observations, data.actions).view(-1), target)
    loss2 = F.mse_loss(before["qf2"](data.observations, data.actions).view(-1), target)
    assert metrics["losses/qf1_loss"] == pytest.approx(loss1.item(), rel=RTOL)
    assert metrics["losses/qf_loss"] == pytest.approx((loss1.item() + loss2.item()) / 2, rel=RTOL)
    assert metrics["losses/alpha"] == pytest.approx(0.3)
    # policy_delay = 2: no actor step yet; target_network_frequency = 1: the targets moved
    assert "losses/actor_loss" not in metrics
    for p, q in zip(before["actor"].parameters(), agent.actor.parameters()):
        assert torch.equal(p, q)
    for name, online in (("qf1_target", agent.qf1), ("qf2_target", agent.qf2)):
        for old, new, live in zip(before[name].parameters(), agent.modules()[name].parameters(), online.parameters()):
            torch.testing.assert_close(new, 0.005 * live + 0.995 * old, rtol=RTOL, atol=1e-7)


def test_actor_loss_is_alpha_log_pi_minus_min_q_and_one_adam_step():
    agent = _agent(ent_coef="0.3", policy_delay=1)
    data = tiny_batch()
    actor_before, critics_seen = copy.deepcopy(agent.actor), {}
    q_step = agent.q_optimizer.step

    def record_q_step(*a, **k):  # the actor's loss uses the critics after this update's step
        out = q_step(*a, **k)
        critics_seen.update(qf1=copy.deepcopy(agent.qf1), qf2=copy.deepcopy(agent.qf2))
        return out

    agent.q_optimizer.step = record_q_step
    torch.manual_seed(5)
    metrics = agent.update(data)

    torch.manual_seed(5)
    actor_before.sample(actor_before.raw(data.next_observations))  # the critic target's draw
    actions, log_pi = actor_before.sample(actor_before.raw(data.observations))
    q = torch.min(critics_seen["qf1"](data.observations, actions), critics_seen["qf2"](data.observations, actions))
    actor_loss = (0.3 * log_pi - q.view(-1)).mean()
    assert metrics["losses/actor_loss"] == pytest.approx(actor_loss.item(), rel=RTOL)
    grads = torch.autograd.grad(actor_loss, list(actor_before.parameters()))
    for p_before, g, p_after in zip(actor_before.parameters(), grads, agent.actor.parameters()):
        torch.testing.assert_close(p_after, first_adam_step(p_before, g, 3e-4), rtol=RTOL, atol=1e-7)
    assert "losses/alpha_loss" not in metrics  # a fixed coefficient is not tuned


def test_policy_delay_makes_that_many_actor_steps_at_once():
    agent = _agent(policy_delay=3)
    steps = []
    original = agent.actor_optimizer.step
    agent.actor_optimizer.step = lambda *a, **k: steps.append(agent.n_updates) or original(*a, **k)
    for _ in range(6):
        agent.update(tiny_batch())
    assert steps == [3, 3, 3, 6, 6, 6]  # CleanRL's policy_frequency: the delay made up on one minibatch


def _random_batch(n: int) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(observations=torch.randn(n, 2, generator=g), next_observations=torch.randn(n, 2, generator=g),
                 actions=torch.rand(n, 1, generator=g) * 4 - 2, rewards=torch.randn(n, generator=g),
                 dones=torch.zeros(n))


# the log-std output before its tanh bounding: 3/7 -> log-std 0 (std 1); -20 -> LOG_STD_MIN (std e^-5)
@pytest.mark.parametrize("pre_tanh, direction", [(np.arctanh(3 / 7), -1), (-20.0, +1)])
def test_entropy_tuning_moves_alpha_towards_the_target_entropy(pre_tanh, direction):
    """A policy with more entropy than the target (-act_dim) lowers alpha; one with less raises it.
    (Entropy of the squashed action: std 1 spreads it over [-2, 2], about +1.3 nats; std e^-5 about -3.4.)"""
    agent = _agent(ent_coef="auto_0.5", policy_delay=1, learning_rate=1e-2)
    assert agent.autotune and agent.target_entropy == -1.0 and agent.alpha == pytest.approx(0.5)
    _set_log_std(agent, pre_tanh)
    _, log_std = gaussian_params(agent.actor.raw(torch.zeros(1, 2)))
    assert log_std.item() == pytest.approx(0.0 if direction < 0 else LOG_STD_MIN, abs=1e-5)
    alphas = [agent.alpha]
    for _ in range(3):
        _set_log_std(agent, pre_tanh)
        metrics = agent.update(_random_batch(256))
        alphas.append(metrics["losses/alpha"])
        assert np.isfinite(metrics["losses/alpha_loss"])
    assert all(np.sign(b - a) == direction for a, b in zip(alphas, alphas[1:])), alphas


def test_ent_coef_spellings():
    assert parse_ent_coef("auto") == (True, 1.0)
    assert parse_ent_coef("auto_0.1") == (True, 0.1)
    assert parse_ent_coef("0.2") == (False, 0.2)
    for bad in ("auto_", "auto_-1", "0", "-0.2", "nan", "inf", "fast", "auto0.1"):
        with pytest.raises(ValueError, match="ent_coef must be a positive number, 'auto' or 'auto_X'"):
            Args(algo="sac", ent_coef=bad)
    fixed = _agent(ent_coef="0.2")
    assert not fixed.autotune and "alpha_optimizer" not in fixed.state_dict()
    assert fixed.alpha == pytest.approx(0.2)


def test_act_samples_within_bounds_and_is_deterministic_without_exploration():
    agent = _agent()
    obs = np.array([0.3, -0.4], np.float32)
    a1, a2 = agent.act(obs, explore=False), agent.act(obs, explore=False)
    assert a1.dtype == np.float32 and a1.shape == (1,) and np.array_equal(a1, a2)
    torch.testing.assert_close(torch.from_numpy(a1), agent.actor(torch.from_numpy(obs)[None])[0])
    noisy = np.stack([agent.act(obs) for _ in range(50)])
    assert np.all(noisy >= -2.0) and np.all(noisy <= 2.0) and noisy.std() > 0.1


def test_target_network_frequency_delays_the_target_critics():
    agent = _agent(target_network_frequency=2)
    target = copy.deepcopy(agent.qf1_target)
    agent.update(tiny_batch())
    assert all(torch.equal(p, q) for p, q in zip(target.parameters(), agent.qf1_target.parameters()))
    agent.update(tiny_batch())
    assert not all(torch.equal(p, q) for p, q in zip(target.parameters(), agent.qf1_target.parameters()))


def test_state_round_trip_continues_identically():
    agent = _agent(policy_delay=1)
    for _ in range(3):
        agent.update(tiny_batch())
    state = copy.deepcopy(agent.state_dict())
    assert {"log_alpha", "alpha_optimizer", "actor_optimizer", "q_optimizer", "n_updates"} <= set(state)
    other = _agent(policy_delay=1, seed=99)
    other.load_state_dict(state)
    torch.manual_seed(3)
    expected = agent.update(tiny_batch())
    torch.manual_seed(3)
    assert other.update(tiny_batch()) == expected
    assert other.alpha == agent.alpha


@pytest.mark.parametrize("algo, middle", [("hdqnn-sac", None), ("fc-sac", DenseMiddle), ("rbg-sac", RandomBitsMiddle)])
def test_hybrid_gaussian_actors(algo, middle):
    agent = _agent(algo)
    actor = agent.actor
    assert isinstance(actor, HybridActor) and actor.gaussian and actor.post[-1].out_features == 2
    assert isinstance(actor.middle, middle) if middle else actor.quantum_layer is not None
    obs = torch.randn(5, 2)
    actions, log_pi = actor.sample(actor.raw(obs))
    assert actions.shape == (5, 1) and log_pi.shape == (5,) and bool((actions.abs() <= 2.0).all())
    assert actor(obs).shape == (5, 1)
    metrics = {}
    for _ in range(2):
        metrics.update(agent.update(tiny_batch()))
    assert {"losses/qf_loss", "losses/actor_loss", "losses/alpha", "losses/alpha_loss"} <= set(metrics)
    assert ("qtdnn/grad_cosine" in metrics) == (algo == "hdqnn-sac")
    assert (agent.circuit_executions() > 0) == (algo == "hdqnn-sac")


def test_acting_on_a_batch_is_one_circuit_call():
    agent = _agent("hdqnn-sac")
    layer = agent.quantum_layer
    calls = []
    run_forward = layer.run_forward
    layer.run_forward = lambda x, w: calls.append(x.shape[0]) or run_forward(x, w)
    with torch.no_grad():
        agent.actor.sample(agent.actor.raw(torch.randn(8, 2)))
    assert calls == [8]
    timings = agent.take_timings()
    assert "pqc_forward" in timings


def test_make_agent_picks_the_algorithm():
    for algo in ("td3", "hdqnn-td3", "fc-td3", "rbg-td3"):
        agent = make_agent(Args(algo=algo, qubits=2, layers=1), 2, ACTION_SPACE)
        assert type(agent) is TD3 and not agent.actor.gaussian
        with pytest.raises(TypeError, match="needs a Gaussian"):
            agent.actor.sample(agent.actor.raw(torch.zeros(1, 2)))
    for algo in ("sac", "hdqnn-sac", "fc-sac", "rbg-sac"):
        agent = make_agent(Args(algo=algo, qubits=2, layers=1), 2, ACTION_SPACE)
        assert type(agent) is SAC and agent.actor.gaussian


def test_hdqnn_train_runs_sac_from_the_command_line(tmp_path, capsys):
    from hdqnn.cli import main
    from hdqnn.rl import evaluate_run

    run = tmp_path / "run"
    tiny = ["--steps", "120", "--learning-starts", "40", "--batch-size", "8", "--hidden-sizes", "8",
            "--pre-hidden", "4", "--post-hidden", "4", "--qubits", "2", "--layers", "1", "--qtdnn-hidden", "8",
            "--qtdnn-fit-steps", "1", "--eval-freq", "120", "--eval-episodes", "1", "--no-progress"]
    assert main(["train", "--algo", "hdqnn-sac", "--ent-coef", "auto_0.1", *tiny, "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algo"] == "hdqnn-sac" and summary["circuit_executions"] > 0
    # the checkpoint's actor reloads as the same deterministic policy
    returns, args = evaluate_run(str(run), episodes=1)
    assert args.ent_coef == "auto_0.1" and returns[0] == summary["final_eval"]
    capsys.readouterr()
    assert main(["train", "--algo", "sac", "--ent-coef", "often", *tiny, "--out", str(tmp_path / "bad")]) == 2
    assert "ent_coef must be a positive number" in capsys.readouterr().err
