"""The qtDNN surrogate: presets, buffer, fitting, VJP, and gradient fidelity after fitting."""
from __future__ import annotations

import pytest
import torch

import hdqnn
from hdqnn.autograd import QtDNN, QtDNNConfig, QuantumLayer

#: Smooth-circuit fidelity the surrogate must reach (issue 3, item 5).
MIN_COSINE = 0.9


def test_paper_preset():
    q = QtDNN.paper(5)
    assert (q.n_inputs, q.n_outputs) == (5, 5)
    assert q.config.hidden == 64 and q.config.layers == 3
    assert q.config.n_fit_steps == 32 and q.config.loss == "bce"
    widths = [m.out_features for m in q.net if isinstance(m, torch.nn.Linear)]
    assert widths == [64, 64, 5]
    assert QtDNNConfig.paper(10).hidden == 2048
    assert QtDNN.paper(4, n_inputs=20, n_outputs=3, n_fit_steps=8).config.n_fit_steps == 8


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="loss"):
        QtDNN(3, 3, loss="hinge")
    with pytest.raises(ValueError, match="buffer_mix"):
        QtDNN(3, 3, buffer_mix=1.5)
    with pytest.raises(ValueError, match="activation"):
        QtDNN(3, 3, activation="swish")
    with pytest.raises(ValueError, match="hidden"):
        QtDNN(3, 3, hidden=0)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        QtDNN(3, 2)(torch.zeros(4, 2))


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_outputs_live_in_the_expectation_range_and_fit_reduces_loss(loss):
    torch.manual_seed(0)
    q = QtDNN(2, 2, hidden=32, n_fit_steps=50, lr=1e-2, loss=loss, seed=0)
    x = torch.rand(64, 2)
    y = torch.stack([torch.cos(x[:, 0]), torch.sin(x[:, 0] * x[:, 1])], dim=1)
    with torch.no_grad():
        before = float(((q(x) - y) ** 2).mean())
    for _ in range(6):
        q.fit(x, y)
    with torch.no_grad():
        after = float(((q(x) - y) ** 2).mean())
    assert after < 0.1 * before
    out = q(torch.randn(100, 2) * 10)
    assert out.abs().max() <= 1.0
    assert q.fits == 6 and q.last_fit_seconds > 0 and q.fit_seconds_total >= q.last_fit_seconds


def _float64_case(activation, loss, layers, seed):
    """A small float64 surrogate with a random centre, and 9 random feature rows."""
    q = QtDNN(3, 4, hidden=7, layers=layers, activation=activation, loss=loss, dtype=torch.float64, seed=seed)
    q.offset = torch.randn(3, dtype=torch.float64)
    return q, torch.randn(9, 3, dtype=torch.float64)


@pytest.mark.parametrize("activation", ["silu", "tanh", "gelu", "relu"])
@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("layers", [2, 4])
def test_fit_step_gradients_equal_autograd(activation, loss, layers):
    """The fit's hand-written backward gives autograd's gradients of ``loss()`` (float64)."""
    q, x = _float64_case(activation, loss, layers, seed=2)
    y = torch.rand(9, 4, dtype=torch.float64) * 2 - 1
    expected_loss = q.loss(x, y)
    expected = torch.autograd.grad(expected_loss, list(q.net.parameters()))
    before = [p.detach().clone() for p in q.net.parameters()]
    q.optimizer.step = lambda: None  # keep the gradients and parameters to compare them
    got_loss = q._fit_step(x, y)
    assert got_loss == pytest.approx(float(expected_loss.detach()), rel=1e-12)
    for param, got, grad, old in zip(q.net.parameters(), q.optimizer.grads, expected, before):
        torch.testing.assert_close(got, grad, rtol=1e-10, atol=1e-12)
        assert torch.equal(param.detach(), old)


def test_fit_steps_follow_adam_on_the_loss():
    """A fit equals torch.optim.Adam stepping on autograd gradients of ``loss()`` on the same batches."""
    q = QtDNN(2, 3, hidden=8, n_fit_steps=5, buffer_size=0, dtype=torch.float64, seed=3)
    reference = QtDNN(2, 3, hidden=8, n_fit_steps=5, buffer_size=0, dtype=torch.float64, seed=3)
    adam = torch.optim.Adam(reference.net.parameters(), lr=reference.config.lr)
    x = torch.randn(20, 2, dtype=torch.float64)
    y = torch.tanh(torch.randn(20, 3, dtype=torch.float64))
    q.fit(x, y)
    reference.offset = x.mean(dim=0)
    for bx, by in zip(*reference._tiny_batches(x, y)):
        adam.zero_grad()
        reference.loss(bx, by).backward()
        adam.step()
    for got, want in zip(q.net.parameters(), reference.net.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_buffer_is_a_fifo_of_recent_pairs():
    q = QtDNN(1, 1, n_fit_steps=1, buffer_size=5, seed=0)
    for start in (0, 3, 6):
        x = torch.arange(start, start + 3, dtype=torch.float32)[:, None]
        q.fit(x, torch.zeros(3, 1))
    assert len(q.buffer) == 5
    assert sorted(q.buffer.features[:, 0].tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]
    big = torch.arange(100, 112, dtype=torch.float32)[:, None]
    q.fit(big, torch.zeros(12, 1))
    assert sorted(q.buffer.features[:, 0].tolist()) == [107.0, 108.0, 109.0, 110.0, 111.0]
    assert len(QtDNN(1, 1, buffer_size=0, n_fit_steps=1, seed=0).buffer) == 0


def test_vjp_matches_autograd_and_leaves_no_grads():
    q = QtDNN(3, 2, hidden=16, seed=1)
    x = torch.randn(5, 3, dtype=torch.float64)
    g = torch.randn(5, 2)
    got = q.vjp(x, g)
    xx = x.float().requires_grad_(True)
    (expected,) = torch.autograd.grad(q(xx), xx, g)
    torch.testing.assert_close(got, expected)
    assert got.dtype == torch.float32
    assert all(p.grad is None for p in q.net.parameters())


@pytest.mark.parametrize("activation", ["silu", "tanh", "gelu", "relu"])
@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("layers", [2, 4])
def test_hand_written_vjp_equals_autograd(activation, loss, layers):
    """The hand-written VJP is autograd's through the network, its centering and its head (float64)."""
    q, x = _float64_case(activation, loss, layers, seed=4)
    x.requires_grad_(True)
    g = torch.randn(9, 4, dtype=torch.float64)
    (expected,) = torch.autograd.grad(q(x), x, g)
    torch.testing.assert_close(q.vjp(x, g), expected, rtol=1e-12, atol=1e-14)


def test_fidelity_after_fitting_on_a_smooth_circuit():
    """Minibatches concentrated around a slowly drifting centre (the RL regime): cosine > 0.9."""
    gen = torch.Generator().manual_seed(0)
    circuit = hdqnn.ansatz.hardware_efficient(4, 2)
    layer = QuantumLayer(circuit, grad="qtdnn", seed=3)
    centre = torch.full((4,), 0.3)
    cosines = []
    for step in range(30):
        centre = centre + 0.02 * torch.randn(4, generator=gen)
        x = (centre + 0.1 * torch.randn(64, 4, generator=gen)).requires_grad_(True)
        layer(x)
        if step >= 20:
            cosines.append(layer.gradient_fidelity(x)["cosine_inputs"])
    assert sum(cosines) / len(cosines) > MIN_COSINE


def test_layer_accepts_the_paper_preset_by_name():
    layer = QuantumLayer(hdqnn.ansatz.hardware_efficient(3, 1), grad="qtdnn", qtdnn="paper", seed=0)
    assert layer.qtdnn.config == QtDNNConfig.paper(3)
    assert layer.qtdnn.n_inputs == 3 + 6
    with pytest.raises(ValueError, match="paper"):
        QuantumLayer(hdqnn.ansatz.hardware_efficient(3, 1), grad="qtdnn", qtdnn="wide")
