"""QuantumLayer: gradients by mode, dtypes, fitting rules, telemetry, the runner seam, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hdqnn
from hdqnn import Circuit, Input
from hdqnn.autograd import QtDNN, QtDNNConfig, QuantumFunction, QuantumLayer
from hdqnn.autograd.gradients import slot_map

from .helpers import RecordingRunner, shiftable_circuit

MODES = ("adjoint", "parameter-shift", "qtdnn")
FIVE_SIGMA = 5.0
TOL64 = 1e-10


def small_circuit(n_qubits: int = 3, n_layers: int = 2) -> Circuit:
    return hdqnn.ansatz.hardware_efficient(n_qubits, n_layers, reupload=True)


@pytest.mark.parametrize("mode", ["adjoint", "parameter-shift"])
def test_gradcheck_exact_modes_float64(mode, rng):
    c = shiftable_circuit(rng, n_qubits=2, n_gates=6)
    layer = QuantumLayer(c, grad=mode, observables=["ZI", "XY", "IZ"], seed=0).double()
    x = torch.tensor(rng.uniform(-1, 1, size=(3, c.n_inputs)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: QuantumFunction.apply(x, w, layer), (x, layer.weight))


def test_layer_gradients_equal_engine_vjp(rng):
    c = small_circuit()
    x = torch.tensor(rng.uniform(-1, 1, size=(4, 3)), requires_grad=True)
    g = torch.tensor(rng.normal(size=(4, 3)))
    results = {}
    for mode in ("adjoint", "parameter-shift"):
        layer = QuantumLayer(c, grad=mode, seed=5).double()
        xg = x.detach().clone().requires_grad_(True)
        layer(xg).backward(g)
        results[mode] = (xg.grad, layer.weight.grad)
    gi, gw = hdqnn.vjp(c, x.detach(), layer.weight.detach(), g)
    for mode, (gx, gwt) in results.items():
        torch.testing.assert_close(gx, gi, atol=TOL64, rtol=0)
        torch.testing.assert_close(gwt, gw, atol=TOL64, rtol=0)


def test_qtdnn_backward_is_the_surrogate_vjp(rng):
    c = small_circuit()
    layer = QuantumLayer(c, grad="qtdnn", seed=2)
    x = torch.tensor(rng.uniform(-1, 1, size=(6, 3)), dtype=torch.float32, requires_grad=True)
    g = torch.tensor(rng.normal(size=(6, 3)), dtype=torch.float32)
    layer(x).backward(g)
    feats = torch.cat([x.detach(), layer.weight.detach().expand(6, -1)], dim=1)
    expected = layer.qtdnn.vjp(feats, g)
    torch.testing.assert_close(x.grad, expected[:, :3])
    torch.testing.assert_close(layer.weight.grad, expected[:, 3:].sum(0))
    assert all(p.grad is None for p in layer.qtdnn.net.parameters())


@pytest.mark.parametrize("mode", MODES)
def test_forward_is_the_real_circuit_and_dtype_follows_input(mode, rng):
    c = small_circuit()
    layer = QuantumLayer(c, grad=mode, seed=1)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, TOL64)):
        x = torch.tensor(rng.uniform(-1, 1, size=(5, 3)), dtype=dtype, requires_grad=True)
        y = layer(x)
        assert y.dtype == dtype and y.shape == (5, 3)
        ref = hdqnn.expval(c, x.detach().double(), layer.weight.detach().double())
        torch.testing.assert_close(y.double(), ref, atol=tol, rtol=0)
        y.sum().backward()
        assert x.grad.dtype == dtype and layer.weight.grad.dtype == layer.weight.dtype
        layer.weight.grad = None


@pytest.mark.parametrize("mode", MODES)
def test_circuit_without_weights_in_sequential(mode):
    c = Circuit(2).ry(Input(0), 0).ry(Input(1), 1).cx(0, 1).rx(0.3, 1)
    layer = QuantumLayer(c, grad=mode, seed=0)
    assert layer.weight is None and list(layer.parameters()) == []
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), layer, nn.Linear(2, 1))
    out = model(torch.randn(4, 3))
    out.sum().backward()
    assert model[0].weight.grad is not None and torch.isfinite(model[0].weight.grad).all()


def test_surrogate_stays_out_of_the_model_parameters():
    layer = QuantumLayer(small_circuit(), grad="qtdnn", seed=0)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    layer.double()
    assert layer.weight.dtype == torch.float64 and layer.qtdnn.dtype == torch.float32


def test_fits_only_when_training_with_something_to_differentiate():
    layer = QuantumLayer(small_circuit(), grad="qtdnn", seed=0)
    x = torch.rand(4, 3)
    layer(x.requires_grad_(True))
    assert layer.stats["fits"] == 1
    with torch.no_grad():
        layer(x)
    layer.eval()
    layer(x)
    layer.train()
    layer.weight.requires_grad_(False)
    layer(x.detach())  # acting: nothing requires grad
    assert layer.stats["fits"] == 1
    layer(x.detach().requires_grad_(True))
    layer.weight.requires_grad_(True)
    layer(x.detach())  # only the weights need gradients: still a training forward
    assert layer.stats["fits"] == 3


def test_fitting_does_not_enter_the_callers_graph():
    layer = QuantumLayer(small_circuit(), grad="qtdnn", seed=0)
    x = torch.rand(4, 3, requires_grad=True)
    y = layer(x)
    assert type(y.grad_fn).__name__ == "QuantumFunctionBackward"
    inputs = {fn[0].variable is x or fn[0].variable is layer.weight for fn in y.grad_fn.next_functions if fn[0] is not None}
    assert inputs == {True}


def test_unfitted_surrogate_backward_warns():
    layer = QuantumLayer(small_circuit(), grad="qtdnn", seed=0).eval()
    x = torch.rand(2, 3, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="never fitted"):
        layer(x).sum().backward()


def test_stats_count_circuit_executions():
    c = small_circuit()
    b = 4
    n_slots = slot_map(c).n_slots
    # adjoint: the sweep starts from the states the forward kept (test_adjoint_reuses_forward_states)
    expected_grad = {"adjoint": 0, "parameter-shift": 2 * n_slots * b, "qtdnn": 0}
    for mode in MODES:
        layer = QuantumLayer(c, grad=mode, seed=0)
        x = torch.rand(b, 3, requires_grad=True)
        layer(x).sum().backward()
        s = layer.stats
        assert s["circuit_executions_forward"] == b and s["last_forward_executions"] == b
        assert s["circuit_executions_grad"] == expected_grad[mode]
        assert s["circuit_executions_total"] == b + expected_grad[mode]
        assert s["fits"] == (1 if mode == "qtdnn" else 0)
        for key in ("last_fit_loss", "last_fit_seconds"):
            assert (s[key] is not None) == (mode == "qtdnn")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_adjoint_reuses_forward_states(monkeypatch, dtype):
    """An adjoint forward that needs a backward keeps its final states and the backward starts
    from them (no grad executions); above KEPT_STATE_BYTES it runs the forward again. The
    gradients are the same either way, and no states are kept without a backward."""
    from hdqnn.sim import api

    c = small_circuit()
    x = torch.rand(6, 3, dtype=dtype, requires_grad=True)
    grads, executions = [], []
    for cap in (api.KEPT_STATE_BYTES, 0):
        monkeypatch.setattr(api, "KEPT_STATE_BYTES", cap)
        layer = QuantumLayer(c, grad="adjoint", seed=0).to(dtype)
        y = layer(x)
        kept = y.grad_fn.kept
        assert (kept is not None) == (cap > 0)
        (y * torch.arange(1, 4, dtype=dtype)).sum().backward()
        assert y.grad_fn.kept is None  # freed with the step
        grads.append((x.grad.clone(), layer.weight.grad.clone()))
        executions.append(layer.stats["circuit_executions_grad"])
        x.grad = None
        keeping = []
        monkeypatch.setattr(layer, "run_forward_for_backward", lambda *a: keeping.append(a) or (None, None))
        with torch.no_grad():
            layer(x)
        layer.weight.requires_grad_(False)
        layer(x.detach())
        assert keeping == []
    assert executions == [0, 6]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)


def test_adjoint_keeps_no_states_on_an_engine_that_cannot_start_from_them():
    """The NumPy reference runs the VJP's own forward: keeping states would only cost a pass."""
    layer = QuantumLayer(small_circuit(), grad="adjoint", backend="numpy", seed=0).double()
    x = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert y.grad_fn.kept is None
    y.sum().backward()
    assert layer.stats["circuit_executions_grad"] == 3


def test_parameter_shift_only_shifts_what_needs_gradients():
    c = small_circuit()
    layer = QuantumLayer(c, grad="parameter-shift", seed=0)
    layer.weight.requires_grad_(False)
    x = torch.rand(3, 3, requires_grad=True)
    layer(x).sum().backward()
    n_input_slots = int(np.sum(slot_map(c).source == hdqnn.circuits.SRC_INPUT))
    assert layer.stats["last_grad_executions"] == 2 * n_input_slots * 3


def test_shot_forward_is_unbiased():
    c = Circuit(2).ry(Input(0), 0).ry(Input(1), 1).cx(0, 1)
    shots, b = 100, 400
    layer = QuantumLayer(c, grad="parameter-shift", shots=shots, observables=["ZI", "IZ", "ZZ"], seed=3)
    x = torch.tensor([[0.9, -0.4]], dtype=torch.float64).expand(b, 2)
    est = layer(x).mean(0)
    exact = hdqnn.expval(c, x[:1], None, ["ZI", "IZ", "ZZ"])[0]
    sigma = torch.sqrt((1 - exact**2) / (shots * b))
    assert torch.all((est - exact).abs() < FIVE_SIGMA * sigma + 1e-12)
    assert not torch.allclose(layer(x[:3]), exact.expand(3, 3))  # really shots, not exact


def test_runner_seam_one_job_per_forward_and_per_shift_backward():
    c = small_circuit(2, 1)
    runner = RecordingRunner()
    layer = QuantumLayer(c, grad="parameter-shift", shots=50, runner=runner, seed=0)
    x = torch.rand(3, 2, requires_grad=True)
    layer(x).sum().backward()
    n_slots = slot_map(c).n_slots
    assert runner.calls == [(3, 50), (2 * n_slots * 3, 50)]
    qt = QuantumLayer(c, grad="qtdnn", runner=runner, seed=0)
    qt(x).sum().backward()
    assert runner.calls[-1] == (3, None) and len(runner.calls) == 3


def test_gradient_fidelity_reports_every_mode():
    c = small_circuit()
    x = torch.rand(4, 3)
    for mode in ("adjoint", "parameter-shift"):
        fid = QuantumLayer(c, grad=mode, seed=0).gradient_fidelity(x)
        assert fid["cosine"] == pytest.approx(1.0, abs=1e-9) and fid["rel_error"] < 1e-9
    layer = QuantumLayer(c, grad="qtdnn", seed=0)
    layer(x.requires_grad_(True))
    fid = layer.gradient_fidelity(x, torch.ones(4, 3))
    assert set(fid) >= {"cosine", "rel_error", "fit_loss", "cosine_inputs", "cosine_weights"}
    assert fid["fit_loss"] == layer.stats["last_fit_loss"]
    assert layer.stats["fidelity_checks"] == 1 and layer.stats["last_fidelity_cosine"] == fid["cosine"]


def test_gradient_fidelity_compares_only_what_receives_a_gradient():
    c = small_circuit()
    x = torch.rand(8, 3) * 0.2
    layer = QuantumLayer(c, grad="qtdnn", seed=0)
    layer(x.clone().requires_grad_(True))  # one fit
    trainable = layer.gradient_fidelity(x)
    assert trainable["cosine_weights"] is not None
    assert trainable["cosine"] != pytest.approx(trainable["cosine_inputs"])
    layer.weight.requires_grad_(False)  # frozen weights get no gradient: their surrogate VJP is moot
    frozen = layer.gradient_fidelity(x)
    assert frozen["cosine"] == frozen["cosine_inputs"] == pytest.approx(trainable["cosine_inputs"])
    assert frozen["rel_error"] == frozen["rel_error_inputs"]
    assert frozen["cosine_weights"] is None and frozen["rel_error_weights"] is None
    exact = QuantumLayer(c, grad="parameter-shift", seed=0)
    exact.weight.requires_grad_(False)
    assert exact.gradient_fidelity(x)["cosine"] == pytest.approx(1.0, abs=1e-9)


def test_construction_never_rewinds_torch_rng(monkeypatch):
    """Saving and restoring the global RNG state around the surrogate's init would rewind the stream
    under any other thread drawing from it meanwhile: construction must not write it at all."""
    def rewind(*args, **kwargs):
        raise AssertionError("torch's global RNG state was written")

    monkeypatch.setattr(torch, "set_rng_state", rewind)
    monkeypatch.setattr(torch.random, "set_rng_state", rewind)
    QuantumLayer(small_circuit(), grad="qtdnn", seed=4)
    QtDNN(5, 3, seed=1)


def test_bad_inputs_raise_clear_errors():
    c = small_circuit()
    layer = QuantumLayer(c, grad="adjoint", seed=0)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        layer(torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        layer(torch.rand(3))
    with pytest.raises(ValueError, match="NaN"):
        layer(torch.tensor([[0.1, float("nan"), 0.2]]))
    with pytest.raises(TypeError, match="float32 or float64"):
        layer(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty batch"):
        layer(torch.zeros(0, 3))


def test_bad_configurations_raise_clear_errors():
    c = small_circuit()
    with pytest.raises(ValueError, match="unknown grad mode"):
        QuantumLayer(c, grad="backprop")
    with pytest.raises(ValueError, match="adjoint"):
        QuantumLayer(c, grad="adjoint", shots=100)
    with pytest.raises(ValueError, match="adjoint"):
        QuantumLayer(c, grad="adjoint", runner=RecordingRunner())
    with pytest.raises(ValueError, match="shots"):
        QuantumLayer(c, grad="qtdnn", shots=0)
    with pytest.raises(ValueError, match="diagonal"):
        QuantumLayer(c, grad="qtdnn", shots=10, observables="XII")
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        QuantumLayer(c, weights_init=np.zeros(5))
    with pytest.raises(ValueError, match="qtdnn= is only used"):
        QuantumLayer(c, grad="adjoint", qtdnn=QtDNNConfig())
    with pytest.raises(ValueError, match="needs 15 features"):
        QuantumLayer(c, grad="qtdnn", qtdnn=QtDNN(3, 3))
    with pytest.raises(ValueError, match="unknown qtDNN setting"):
        QuantumLayer(c, grad="qtdnn", qtdnn={"width": 8})
    with pytest.raises(ValueError, match="crz"):
        QuantumLayer(Circuit(2).crz(Input(0), 0, 1), grad="parameter-shift")
    with pytest.raises(TypeError, match="run"):
        QuantumLayer(c, runner=object())


def test_weights_init_options():
    c = small_circuit()
    fixed = QuantumLayer(c, weights_init=torch.arange(12, dtype=torch.float64))
    assert fixed.weight.dtype == torch.float64 and fixed.weight[5].item() == 5.0
    normal = QuantumLayer(c, weights_init=lambda t: nn.init.constant_(t, 0.25))
    assert torch.all(normal.weight == 0.25)
    a, b = QuantumLayer(c, seed=7), QuantumLayer(c, seed=7)
    assert torch.equal(a.weight, b.weight) and a.weight.abs().max() <= np.pi


@pytest.mark.parametrize("mode", MODES)
def test_hybrid_regression_reduces_the_loss(mode):
    """PreNet -> QuantumLayer -> PostNet learns a smooth target with every gradient mode."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x_all = torch.rand(256, 2, generator=gen) * 2 - 1
    y_all = torch.sin(2 * x_all[:, :1]) * torch.cos(x_all[:, 1:])
    circuit = hdqnn.ansatz.hardware_efficient(3, 1)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), QuantumLayer(circuit, grad=mode, seed=0), nn.Linear(3, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)

    def full_loss() -> float:
        with torch.no_grad():
            return float(nn.functional.mse_loss(model(x_all), y_all))

    before = full_loss()
    for step in range(40):
        idx = torch.randint(0, 256, (32,), generator=gen)
        loss = nn.functional.mse_loss(model(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert full_loss() < 0.5 * before


def test_construction_with_a_seed_leaves_torch_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    QuantumLayer(small_circuit(), grad="qtdnn", seed=4)
    assert torch.equal(torch.rand(3), expected)
