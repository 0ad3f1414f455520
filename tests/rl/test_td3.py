"""TD3's update on tiny fixed tensors, recomputed independently; actor variants; surrogate fitting."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hdqnn.rl import Args, TD3, polyak_update
from hdqnn.rl.networks import DenseMiddle, HybridActor, RandomBitsMiddle

from .helpers import ACTION_SPACE, first_adam_step, tiny_batch

SEED = 7
RTOL = 1e-5


def _agent(**overrides) -> TD3:
    torch.manual_seed(SEED)
    args = Args(algo="td3", hidden_sizes=(4,), seed=SEED, **overrides)
    return TD3(args, obs_dim=2, action_space=ACTION_SPACE)


def test_critic_update_matches_hand_computed_target_and_adam_step():
    agent = _agent(target_policy_noise=0.3, target_noise_clip=0.1)
    data = tiny_batch()
    before = {name: copy.deepcopy(m) for name, m in agent.modules().items()}

    torch.manual_seed(123)
    metrics = agent.update(data)

    torch.manual_seed(123)  # the same draw as inside update(): the first torch RNG use
    noise = (torch.randn_like(data.actions) * 0.3).clamp(-0.1, 0.1) * 2.0  # action scale 2
    with torch.no_grad():
        next_actions = (before["actor_target"](data.next_observations) + noise).clamp(-2.0, 2.0)
        q1n = before["qf1_target"](data.next_observations, next_actions).view(-1)
        q2n = before["qf2_target"](data.next_observations, next_actions).view(-1)
        target = data.rewards + (1 - data.dones) * 0.99 * torch.min(q1n, q2n)
    assert target[2] == data.rewards[2]  # a terminal transition does not bootstrap

    qf1 = before["qf1"]
    loss1 = F.mse_loss(qf1(data.observations, data.actions).view(-1), target)
    loss2 = F.mse_loss(before["qf2"](data.observations, data.actions).view(-1), target)
    assert metrics["losses/qf1_loss"] == pytest.approx(loss1.item(), rel=RTOL)
    assert metrics["losses/qf2_loss"] == pytest.approx(loss2.item(), rel=RTOL)
    assert metrics["losses/qf_loss"] == pytest.approx((loss1.item() + loss2.item()) / 2, rel=RTOL)

    grads = torch.autograd.grad(loss1, list(qf1.parameters()))
    for p_before, g, p_after in zip(qf1.parameters(), grads, agent.qf1.parameters()):
        torch.testing.assert_close(p_after, first_adam_step(p_before, g, 3e-4), rtol=RTOL, atol=1e-7)
    # policy_delay = 2: neither the actor nor any target moved on the first update
    for name in ("actor", "actor_target", "qf1_target", "qf2_target"):
        for p, q in zip(before[name].parameters(), agent.modules()[name].parameters()):
            assert torch.equal(p, q), name
    assert "losses/actor_loss" not in metrics


def test_delayed_actor_update_and_polyak_targets():
    agent = _agent(tau=0.1)
    data = tiny_batch()
    agent.update(data)
    actor_before = copy.deepcopy(agent.actor)
    targets_before = {n: copy.deepcopy(agent.modules()[n]) for n in ("actor_target", "qf1_target", "qf2_target")}

    # the actor loss of the second update uses qf1 as it is after that update's critic step
    qf1_seen = {}
    original_update = agent.q_optimizer.step

    def record_step(*a, **k):
        out = original_update(*a, **k)
        qf1_seen["net"] = copy.deepcopy(agent.qf1)
        return out

    agent.q_optimizer.step = record_step
    metrics = agent.update(data)

    actor_loss = -qf1_seen["net"](data.observations, actor_before(data.observations)).mean()
    assert metrics["losses/actor_loss"] == pytest.approx(actor_loss.item(), rel=RTOL)
    grads = torch.autograd.grad(actor_loss, list(actor_before.parameters()))
    for p_before, g, p_after in zip(actor_before.parameters(), grads, agent.actor.parameters()):
        torch.testing.assert_close(p_after, first_adam_step(p_before, g, 3e-4), rtol=RTOL, atol=1e-7)
    for name, online in (("actor_target", agent.actor), ("qf1_target", agent.qf1), ("qf2_target", agent.qf2)):
        for old, new, live in zip(targets_before[name].parameters(), agent.modules()[name].parameters(),
                                  online.parameters()):
            torch.testing.assert_close(new, 0.1 * live + 0.9 * old, rtol=RTOL, atol=1e-7)


def test_polyak_update_in_place():
    online, target = [torch.tensor([1.0, 2.0])], [torch.tensor([3.0, -1.0])]
    polyak_update(online, target, 0.25)
    torch.testing.assert_close(target[0], torch.tensor([2.5, -0.25]))


def test_act_adds_bounded_noise_and_is_deterministic_without_it():
    agent = _agent(exploration_noise=5.0)
    obs = np.array([0.3, -0.4], np.float32)
    a1, a2 = agent.act(obs, explore=False), agent.act(obs, explore=False)
    assert a1.dtype == np.float32 and a1.shape == (1,) and np.array_equal(a1, a2)
    noisy = np.stack([agent.act(obs) for _ in range(50)])
    assert np.all(noisy >= -2.0) and np.all(noisy <= 2.0) and noisy.std() > 0.1


@pytest.mark.parametrize("algo, middle", [("fc-td3", DenseMiddle), ("rbg-td3", RandomBitsMiddle)])
def test_ablation_actors(algo, middle):
    torch.manual_seed(SEED)
    agent = TD3(Args(algo=algo, qubits=3, pre_hidden=(8,), post_hidden=(8,)), 2, ACTION_SPACE)
    assert isinstance(agent.actor, HybridActor) and isinstance(agent.actor.middle, middle)
    obs = torch.randn(5, 2)
    actions = agent.actor(obs)
    assert actions.shape == (5, 1) and bool((actions.abs() <= 2.0).all())
    actions.sum().backward()
    pre_grads = [p.grad for p in agent.actor.pre.parameters()]
    if algo == "rbg-td3":  # random bits ignore their input: no gradient reaches the PreDNN
        assert all(g is None for g in pre_grads)
        bits = agent.actor.middle(torch.zeros(1000, 3))
        assert set(bits.unique().tolist()) == {-1.0, 1.0} and abs(bits.mean().item()) < 0.1
    else:
        assert all(g is not None and bool(g.abs().sum() > 0) for g in pre_grads)


def test_random_bits_state_round_trips():
    middle = RandomBitsMiddle(4, seed=1)
    middle(torch.zeros(3, 4))
    state = copy.deepcopy(middle.state_dict())
    expected = middle(torch.zeros(3, 4))
    other = RandomBitsMiddle(4, seed=99)
    other.load_state_dict(state)
    assert torch.equal(other(torch.zeros(3, 4)), expected)


def test_hdqnn_actor_fits_only_in_the_online_actor_update():
    torch.manual_seed(SEED)
    args = Args(algo="hdqnn-td3", qubits=2, layers=1, pre_hidden=(8,), post_hidden=(8,), hidden_sizes=(8,),
                qtdnn_hidden=16, qtdnn_fit_steps=2, fidelity_freq=1)
    agent = TD3(args, 2, ACTION_SPACE)
    online, target = agent.actor.quantum_layer, agent.actor_target.quantum_layer
    assert online is not target and not target.training
    agent.act(np.zeros(2, np.float32))
    assert online.stats["fits"] == 0  # acting never fits
    metrics = agent.update(tiny_batch())
    assert online.stats["fits"] == 0 and target.stats["fits"] == 0  # critic step: targets only
    assert target.stats["circuit_executions_forward"] == 3
    metrics = agent.update(tiny_batch())
    assert online.stats["fits"] == 1 and target.stats["fits"] == 0
    for key in ("qtdnn/fit_loss", "qtdnn/grad_cosine", "qtdnn/grad_rel_error", "losses/actor_loss"):
        assert np.isfinite(metrics[key]), key
    assert -1.0 <= metrics["qtdnn/grad_cosine"] <= 1.0
    assert agent.circuit_executions() > 0
    # the PQC's rotation angles are fixed constants by default (train_pqc=False); the PreDNN learns
    assert online.weight is None and online.circuit.n_weights == 0
    assert all(p.grad is not None for p in agent.actor.pre.parameters())
    timings = agent.take_timings()
    assert {"critic_update", "actor_forward", "actor_backward", "pqc_forward", "qtdnn_fit"} <= set(timings)


def test_train_pqc_makes_the_rotation_angles_trainable():
    torch.manual_seed(SEED)
    args = Args(algo="hdqnn-td3", qubits=2, layers=1, pre_hidden=(8,), post_hidden=(8,), hidden_sizes=(8,),
                qtdnn_hidden=16, qtdnn_fit_steps=2, train_pqc=True)
    agent = TD3(args, 2, ACTION_SPACE)
    weight = agent.actor.quantum_layer.weight.detach().clone()
    agent.update(tiny_batch())
    agent.update(tiny_batch())
    assert not torch.equal(weight, agent.actor.quantum_layer.weight.detach())


def test_fixed_pqc_angles_equal_the_weighted_circuit():
    import hdqnn
    from hdqnn.rl.networks import actor_circuit, bind_weights

    circuit = hdqnn.ansatz.hardware_efficient(3, 2, reupload=True, input_scale=0.5)
    weights = np.random.default_rng(0).uniform(-np.pi, np.pi, circuit.n_weights)
    x = np.random.default_rng(1).uniform(-1, 1, (4, 3))
    np.testing.assert_allclose(hdqnn.expval(bind_weights(circuit, weights), x, np.zeros(0)),
                               hdqnn.expval(circuit, x, weights), atol=1e-10)
    args = Args(algo="hdqnn-td3", qubits=3, layers=2, seed=5)
    assert actor_circuit(args).n_weights == 0 and actor_circuit(args).n_inputs == 3
    x32 = x.astype(np.float64)
    np.testing.assert_array_equal(hdqnn.expval(actor_circuit(args), x32, np.zeros(0)),
                                  hdqnn.expval(actor_circuit(args), x32, np.zeros(0)))  # seeded: same angles
