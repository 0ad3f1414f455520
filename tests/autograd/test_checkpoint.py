"""state_dict round-trips everything needed to resume training bit-identically."""
from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import hdqnn
from hdqnn.autograd import QuantumLayer


def make_model(mode: str, shots: int | None) -> nn.Sequential:
    torch.manual_seed(0)
    circuit = hdqnn.ansatz.hardware_efficient(3, 1)
    qtdnn = {"hidden": 16, "n_fit_steps": 3, "buffer_size": 20} if mode == "qtdnn" else None
    return nn.Sequential(nn.Linear(2, 3), QuantumLayer(circuit, grad=mode, shots=shots, qtdnn=qtdnn, seed=0),
                         nn.Linear(3, 1))


def train(model: nn.Sequential, opt: torch.optim.Optimizer, steps: int, gen: torch.Generator) -> list[float]:
    losses = []
    for _ in range(steps):
        x = torch.rand(8, 2, generator=gen)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf)  # weights_only=True by default: only tensors and plain values allowed


@pytest.mark.parametrize("mode,shots", [("qtdnn", None), ("qtdnn", 30), ("parameter-shift", 30)])
def test_resume_is_bit_identical(mode, shots):
    model = make_model(mode, shots)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    train(model, opt, 4, gen)
    saved = roundtrip({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()})
    reference = train(model, opt, 4, gen)

    fresh = make_model(mode, shots)
    nn.init.zeros_(fresh[0].weight)  # make sure nothing survives from construction
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.01)
    fresh.load_state_dict(saved["model"])
    fresh_opt.load_state_dict(saved["opt"])
    gen2 = torch.Generator()
    gen2.set_state(saved["gen"])
    resumed = train(fresh, fresh_opt, 4, gen2)
    assert resumed == reference
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
    counters = ("circuit_executions_forward", "circuit_executions_grad", "fits", "last_fit_loss")
    assert {k: model[1].stats[k] for k in counters} == {k: fresh[1].stats[k] for k in counters}


def test_extra_state_holds_the_surrogate_optimizer_and_buffer():
    model = make_model("qtdnn", None)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    train(model, opt, 2, torch.Generator().manual_seed(0))
    extra = model[1].state_dict()["_extra_state"]
    q = extra["qtdnn"]
    assert q["optimizer"]["steps"] == 2 * model[1].qtdnn.config.n_fit_steps
    assert q["optimizer"]["exp_avg_sq"].abs().sum() > 0
    assert q["buffer"]["size"] == 16 and q["counters"]["fits"] == 2
    assert extra["stats"]["circuit_executions_forward"] == 16


def test_loading_into_a_different_mode_fails_clearly():
    state = make_model("qtdnn", None)[1].state_dict()
    other = QuantumLayer(hdqnn.ansatz.hardware_efficient(3, 1), grad="adjoint")
    with pytest.raises(ValueError, match="grad='qtdnn'"):
        other.load_state_dict(state)


def test_deepcopy_gives_an_independent_target_network():
    model = make_model("qtdnn", None)
    target = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    train(model, opt, 2, torch.Generator().manual_seed(0))
    assert target[1].qtdnn.fits == 0 and model[1].qtdnn.fits == 2
    # the copy's parameters are views of the copy's own flat buffer, which its optimizer updates
    copied = target[1].qtdnn
    assert copied.net[0].weight.data_ptr() == copied.optimizer.flat.data_ptr()
    assert copied.optimizer.flat.data_ptr() != model[1].qtdnn.optimizer.flat.data_ptr()
    with torch.no_grad():
        target(torch.rand(4, 2))
    assert target[1].qtdnn.fits == 0
