"""The qtDNN options of issue 15: Sobolev fitting, held-out / adaptive fitting, per-minibatch
normalisation (one shared spread); their math against autograd and finite differences, their circuit-execution
counts, checkpoints and configuration errors."""
from __future__ import annotations

import math

import pytest
import torch

import hdqnn
from hdqnn.autograd import QtDNN, QtDNNConfig, QuantumLayer
from hdqnn.autograd import qtdnn as qtdnn_module


def _surrogate(activation="silu", loss="mse", **options):
    q = QtDNN(3, 2, hidden=6, activation=activation, loss=loss, dtype=torch.float64, seed=1, **options)
    q.offset = torch.randn(3, dtype=torch.float64)
    q.scale = torch.rand(3, dtype=torch.float64) + 0.5
    return q


@pytest.mark.parametrize("activation", ["silu", "tanh", "gelu", "relu"])
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_jvp_equals_autograd_with_scaled_inputs(activation, loss):
    q = _surrogate(activation, loss)
    x, v = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    _, want = torch.autograd.functional.jvp(q, x, v)  # the double-backward trick
    torch.testing.assert_close(q.jvp(x, v), want, rtol=1e-10, atol=1e-12)


def test_vjp_includes_the_normalisation_scale():
    q = _surrogate()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 2, dtype=torch.float64)
    (want,) = torch.autograd.grad(q(x), x, g)
    torch.testing.assert_close(q.vjp(x, g), want, rtol=1e-10, atol=1e-12)


def test_normalize_uses_each_minibatch_mean_and_one_shared_spread():
    q = QtDNN(3, 1, n_fit_steps=1, normalize=True, dtype=torch.float64, seed=0)
    x = torch.randn(40, 3, dtype=torch.float64) * torch.tensor([0.3, 2.0, 0.0], dtype=torch.float64) + 1.0
    q.fit(x, torch.zeros(40, 1, dtype=torch.float64))
    torch.testing.assert_close(q.offset, x.mean(dim=0))
    # the varying features share the rms of their stds; a feature without spread (a constant
    # circuit weight) keeps scale 1 instead of blowing up
    spread = x[:, :2].std(dim=0, unbiased=False).square().mean().sqrt()
    torch.testing.assert_close(q.scale, torch.stack([spread, spread, torch.tensor(1.0, dtype=torch.float64)]))
    q.fit(x * 2.0, torch.zeros(40, 1, dtype=torch.float64))
    torch.testing.assert_close(q.offset, (x * 2.0).mean(dim=0))
    torch.testing.assert_close(q.scale[:2], 2.0 * spread.expand(2))


def test_normalize_does_not_magnify_a_feature_that_hardly_varies():
    """A saturated input (std 1e-4 beside ~0.5) would be scaled up 5,000x by a per-feature std, and
    the surrogate's derivative along it with it; with the shared spread the surrogate's VJP stays
    the size of the function's (here a plane, learnable from the other features)."""
    torch.manual_seed(0)
    q = QtDNN(3, 1, hidden=16, n_fit_steps=200, lr=1e-2, normalize=True, dtype=torch.float64, seed=0)
    x = torch.randn(256, 3, dtype=torch.float64) * torch.tensor([0.5, 0.4, 1e-4], dtype=torch.float64)
    slope = torch.tensor([[0.3], [-0.2], [0.1]], dtype=torch.float64)
    q.fit(x, x @ slope)
    grad = q.vjp(x, torch.ones(256, 1, dtype=torch.float64)).mean(dim=0)
    assert float(grad.abs().max()) < 1.0
    torch.testing.assert_close(grad[:2], slope[:2, 0], atol=0.05, rtol=0.0)


@pytest.mark.parametrize("activation", ["silu", "tanh", "gelu", "relu"])
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_sobolev_gradient_equals_autograd_of_the_jacobian_loss(activation, loss):
    """The fit step's added gradient is d/dθ of w * mean((J v - D)**2), J from autograd's jacobian."""
    q = _surrogate(activation, loss, sobolev_weight=2.5)
    rows, v, d = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64), \
        torch.randn(4, 2, dtype=torch.float64)
    for grad in q.optimizer.grads:
        grad.zero_()
    q._add_sobolev_grad((rows, v, d))
    params = list(q.net.parameters())
    jac = torch.stack([torch.autograd.functional.jacobian(q, r[None], create_graph=True)[0, :, 0] for r in rows])
    jv = torch.einsum("nkf,nf->nk", jac, v)
    want = torch.autograd.grad(2.5 * ((jv - d) ** 2).mean(), params)
    for got, expected in zip(q.optimizer.grads, want):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_sobolev_fitting_learns_a_function_from_its_derivatives():
    """Fitted on directional derivatives only (values uninformative), the surrogate's Jacobian
    approaches the true one: the Sobolev term really is differentiated through J v."""
    torch.manual_seed(0)
    q = QtDNN(2, 1, hidden=32, n_fit_steps=40, lr=1e-2, buffer_size=0, sobolev_samples=8,
              sobolev_weight=10.0, dtype=torch.float64, seed=0)
    x = torch.rand(64, 2, dtype=torch.float64) - 0.5

    def jacobian(p):
        return torch.stack([torch.cos(p[:, 0]), -torch.sin(p[:, 1])], dim=1) * 0.5

    probe = torch.rand(32, 2, dtype=torch.float64) - 0.5
    before = float((q.vjp(probe, torch.ones(32, 1, dtype=torch.float64)) - jacobian(probe)).norm())
    for _ in range(30):
        rows, v = q.draw_probes(64, 2)
        d = (jacobian(x[rows]) * v).sum(dim=1, keepdim=True)
        q.fit(x, torch.zeros(64, 1, dtype=torch.float64), (x[rows], v, d))
    after = float((q.vjp(probe, torch.ones(32, 1, dtype=torch.float64)) - jacobian(probe)).norm())
    assert after < 0.3 * before


def test_probes_are_distinct_rows_and_unit_directions_over_the_inputs():
    q = QtDNN(5, 1, sobolev_samples=3, sobolev_directions=2, seed=0)
    rows, v = q.draw_probes(10, 3)
    assert rows.shape == (6,) and len(set(rows.tolist())) == 3
    assert torch.equal(rows[::2], rows[1::2])
    torch.testing.assert_close(v[:, :3].norm(dim=1), torch.ones(6))
    assert torch.equal(v[:, 3:], torch.zeros(6, 2))  # the circuit weights are not probed


def _layer(**qtdnn):
    circuit = hdqnn.ansatz.hardware_efficient(3, 1)
    layer = QuantumLayer(circuit, grad="qtdnn", seed=0, qtdnn={"hidden": 16, "n_fit_steps": 2, **qtdnn})
    layer.weight.requires_grad_(False)
    return layer


def test_layer_counts_two_executions_per_probe_and_measures_true_derivatives():
    layer = _layer(sobolev_samples=4, sobolev_directions=3, sobolev_step=1e-3)
    x = torch.rand(16, 3, dtype=torch.float64, requires_grad=True)
    rows, directions, measured = layer._measure_tangents(x)  # rows: the probed feature rows
    assert layer.stats["circuit_executions_fit"] == 2 * 4 * 3 and layer.stats["last_fit_executions"] == 24
    # the central difference against the exact adjoint Jacobian of the circuit
    adjoint = QuantumLayer(layer.circuit, grad="adjoint", weights_init=layer.weight.detach())
    for i in range(rows.shape[0]):
        row = rows[i, :3][None].to(torch.float64).requires_grad_(True)
        jac = torch.stack([torch.autograd.grad(adjoint(row)[0, k], row)[0][0] for k in range(3)])
        torch.testing.assert_close(measured[i], jac @ directions[i, :3].to(torch.float64), rtol=1e-5, atol=1e-6)
    layer.train()
    before = layer.stats["circuit_executions_total"]
    layer(x).sum().backward()
    stats = layer.stats
    assert stats["circuit_executions_total"] - before == 16 + 24  # B forward runs + 2 k m probe runs
    assert stats["last_tangent_cosine"] is not None and stats["last_tangent_rel_error"] is not None


def test_plain_qtdnn_still_costs_only_the_forward():
    layer = _layer()
    x = torch.rand(16, 3, requires_grad=True)
    layer(x).sum().backward()
    stats = layer.stats
    assert stats["circuit_executions_total"] == 16 and stats["circuit_executions_fit"] == 0
    assert stats["last_holdout_error"] is None and stats["last_tangent_cosine"] is None


def test_holdout_rows_are_not_trained_on_and_report_their_loss():
    q = QtDNN(2, 1, hidden=8, n_fit_steps=3, buffer_size=0, holdout=0.25, dtype=torch.float64, seed=0)
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.tanh(torch.randn(8, 1, dtype=torch.float64))
    reference = QtDNN(2, 1, hidden=8, n_fit_steps=3, buffer_size=0, holdout=0.25, dtype=torch.float64, seed=0)
    q.fit(x, y)
    train_x, train_y, held_x, held_y = reference._split_holdout(x, y)
    assert held_x.shape[0] == 2 and train_x.shape[0] == 6
    reference.offset = x.mean(dim=0)
    reference._run_steps(train_x, train_y, None, 3)
    for got, want in zip(q.net.parameters(), reference.net.parameters()):
        torch.testing.assert_close(got, want)
    assert q.last_holdout_error == pytest.approx(float(reference.loss(held_x, held_y).detach()))
    q.fit(x[:1], y[:1])  # nothing to hold out of one row: no stale figure from the last fit
    assert q.last_holdout_error is None


def test_tangent_check_compares_before_fitting_and_is_not_left_stale():
    q = QtDNN(2, 1, hidden=8, n_fit_steps=2, sobolev_samples=2, dtype=torch.float64, seed=0)
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.zeros(8, 1, dtype=torch.float64)
    rows, v = q.draw_probes(8, 2)
    mine = q.jvp(x[rows], v)
    q.fit(x, y, (x[rows], v, 2.0 * mine))  # the circuit's derivatives: twice the surrogate's
    assert q.last_tangent_cosine == pytest.approx(1.0)
    assert q.last_tangent_rel_error == pytest.approx(0.5)
    q.fit(x, y)
    assert q.last_tangent_cosine is None and q.last_tangent_rel_error is None


def test_adaptive_fit_stops_between_min_and_max_steps(monkeypatch):
    x = torch.rand(64, 2, dtype=torch.float64)
    y = torch.sin(3 * x[:, :1]) * 0.8
    q = QtDNN(2, 1, hidden=16, n_fit_steps=4, lr=1e-2, holdout=0.2, adaptive_max_steps=40,
              dtype=torch.float64, seed=0)
    q.fit(x, y)
    assert 4 < q.last_fit_steps <= 40  # an untrained net improves on its held-out rows
    assert (q.last_fit_steps - 4) % qtdnn_module.ADAPTIVE_CHECK_EVERY == 0 or q.last_fit_steps == 40
    easy = QtDNN(2, 1, hidden=16, n_fit_steps=4, holdout=0.2, adaptive_max_steps=40, adaptive_target=10.0,
                 dtype=torch.float64, seed=0)
    easy.fit(x, y)
    assert easy.last_fit_steps == 4  # the target is met at once
    assert easy.optimizer.steps == 4


def test_options_survive_a_state_dict_round_trip():
    options = dict(normalize=True, holdout=0.2, adaptive_max_steps=12, sobolev_samples=2, sobolev_directions=2,
                   sobolev_weight=0.5, sobolev_step=0.2, sobolev_buffer=16)
    layer = _layer(**options)
    x = torch.rand(16, 3, requires_grad=True)
    for _ in range(2):
        layer(x).sum().backward()
    state = layer.state_dict()
    copy = _layer(**options)
    copy.load_state_dict(state)
    for name in ("offset", "scale"):
        assert torch.equal(getattr(copy.qtdnn, name), getattr(layer.qtdnn, name))
    assert len(copy.qtdnn.tangent_buffer) == len(layer.qtdnn.tangent_buffer) == 8
    for key in ("last_holdout_error", "last_tangent_cosine", "last_fit_steps", "circuit_executions_fit"):
        assert copy.stats[key] == layer.stats[key]
    y1, y2 = layer(x), copy(x)  # same RNG, same fit: bit-identical continuation
    y1.sum().backward()
    y2.sum().backward()
    assert torch.equal(copy.qtdnn.net[0].weight, layer.qtdnn.net[0].weight)
    with pytest.raises(ValueError, match="config"):
        _layer(**{**options, "sobolev_step": 0.3}).load_state_dict(state)


def test_states_saved_before_the_options_load_as_their_defaults():
    layer = _layer()
    layer(torch.rand(8, 3, requires_grad=True)).sum().backward()
    state = layer.state_dict()
    extra = state["_extra_state"]
    for key in ("scale", "tangent_buffer"):
        del extra["qtdnn"][key]
    for key in ("normalize", "holdout", "adaptive_max_steps", "adaptive_target", "sobolev_samples",
                "sobolev_directions", "sobolev_weight", "sobolev_step", "sobolev_buffer"):
        del extra["qtdnn"]["config"][key]
    del extra["stats"]["circuit_executions_fit"]
    copy = _layer()
    copy.load_state_dict(state)
    assert torch.equal(copy.qtdnn.scale, torch.ones(3 + 6))  # 3 inputs, 6 circuit weights
    assert copy.stats["circuit_executions_fit"] == 0


@pytest.mark.parametrize("options, match", [
    ({"holdout": 0.5}, "holdout"),
    ({"holdout": -0.1}, "holdout"),
    ({"holdout": True}, "holdout"),
    ({"adaptive_max_steps": 32}, "needs holdout"),
    ({"holdout": 0.1, "adaptive_max_steps": 8}, "at least n_fit_steps"),
    ({"adaptive_target": -1.0}, "adaptive_target"),
    ({"sobolev_samples": -1}, "sobolev_samples"),
    ({"sobolev_directions": 0}, "sobolev_directions"),
    ({"sobolev_weight": math.nan}, "sobolev_weight"),
    ({"sobolev_step": 0.0}, "sobolev_step"),
    ({"sobolev_buffer": 1.5}, "sobolev_buffer"),
])
def test_bad_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        QtDNNConfig(**options)


def test_bad_tangents_and_probe_requests_raise():
    q = QtDNN(3, 2, n_fit_steps=1, sobolev_samples=2, seed=0)
    x, y = torch.zeros(4, 3), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="tangents"):
        q.fit(x, y, (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 2)))
    with pytest.raises(ValueError, match="n_dims"):
        q.draw_probes(4, 4)
    with pytest.raises(ValueError, match="batch"):
        q.draw_probes(0, 3)
