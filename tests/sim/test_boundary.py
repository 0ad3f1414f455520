"""Bad input at the API boundary: clear errors and warnings instead of silent NaNs, CPU fallbacks or
detached graphs (issue 16, item 12)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit, Input, Weight
from hdqnn.sim.device import parse_device, wants_gpu

torch = pytest.importorskip("torch")


# ---------------------------------------------------------------- angle overflow
def test_finite_scale_times_finite_input_overflowing_is_refused():
    c = Circuit(2).h(0).rx(Input(0), 0).ry(Input(1, scale=1e300), 1)
    x = np.array([[0.1, 0.5], [0.2, 1e10]])
    with pytest.raises(ValueError, match=r"angle slot 1 \(gate #2 ry, Input\(1, scale=1e\+300\)\) overflows: "
                                         r"scale x inputs\[1, 1\] = 1e\+300 x 1e\+10 is not finite"):
        hdqnn.expval(c, x)
    np.testing.assert_allclose(hdqnn.expval(c, x[:1]), hdqnn.expval(c, x[:1], backend="numpy"), atol=1e-12)


def test_overflowing_weight_angle_names_the_weight():
    c = Circuit(1).rz(0.3, 0).rx(Weight(0, scale=-1e200), 0)
    with pytest.raises(ValueError, match=r"Weight\(0, scale=-1e\+200\)\) overflows: scale x weights\[0, 0\]"):
        hdqnn.expval(c, weights=np.array([1e150]))
    with pytest.raises(ValueError, match=r"weights\[1, 0\]"):  # per-sample weights: the row is named
        hdqnn.vjp(c, None, np.array([[1.0], [-1e150]]), np.ones((2, 1)))


# ---------------------------------------------------------------- device names
@pytest.mark.parametrize("spelling, parsed", [("cpu", "cpu"), ("CPU", "cpu"), ("cuda", "cuda"), ("CUDA", "cuda"),
                                              (" Cuda:1 ", "cuda:1"), (None, None)])
def test_device_spellings(spelling, parsed):
    assert parse_device(spelling) == parsed
    assert parse_device(torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "banana", "cuda:", "cuda:x", "cpu0", ""])
def test_unknown_device_is_a_value_error_listing_the_valid_ones(bad):
    c = Circuit(1).h(0)
    with pytest.raises(ValueError, match=r"unknown device .*'cpu', 'cuda', 'cuda:N'"):
        hdqnn.expval(c, device=bad)
    with pytest.raises(ValueError, match="unknown device"):
        hdqnn.sample(c, shots=3, device=bad)
    with pytest.raises(TypeError, match="device must be None, a str or a torch.device"):
        hdqnn.statevector(c, device=3.5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure without a GPU")
def test_upper_case_cuda_goes_to_the_gpu_path_and_fails_loudly_without_one():
    assert wants_gpu("CUDA") and wants_gpu("Cuda:0") and not wants_gpu("CPU")
    with pytest.raises(RuntimeError, match="CUDA was requested but no GPU engine can run"):
        hdqnn.expval(Circuit(1).h(0), device="CUDA")


# ---------------------------------------------------------------- tensors
def test_bfloat16_tensor_gets_a_clear_type_error():
    c = Circuit(1).rx(Input(0), 0)
    with pytest.raises(TypeError, match=r"inputs has dtype torch.bfloat16.*cast with .float\(\)"):
        hdqnn.expval(c, torch.zeros(2, 1, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match=r"weights has dtype torch.bfloat16"):
        hdqnn.expval(Circuit(1).rx(Weight(0), 0), weights=torch.zeros(1, dtype=torch.bfloat16))


def test_requires_grad_tensor_warns_that_the_result_is_detached():
    c = Circuit(1).rx(Input(0), 0).ry(Weight(0), 0)
    x, w = torch.zeros(2, 1, requires_grad=True), torch.zeros(1)
    for fn in (hdqnn.expval, hdqnn.statevector, hdqnn.probabilities):
        with pytest.warns(UserWarning, match=rf"hdqnn.{fn.__name__} returns a result without autograd history.*"
                                             "QuantumLayer"):
            out = fn(c, x, w)
        assert not out.requires_grad
    with pytest.warns(UserWarning, match="hdqnn.sample returns"):
        hdqnn.sample(c, x, torch.nn.Parameter(w), shots=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hdqnn.expval(c, x.detach(), w)  # detached: nothing to say
        with torch.no_grad():
            hdqnn.expval(c, x, w)  # no graph is being built
        hdqnn.vjp(c, x, w, torch.ones(2, 1))  # the VJP is itself the gradient


# ---------------------------------------------------------------- engine out of memory
def test_engine_bad_alloc_becomes_a_memory_error_that_says_what_ran_out(monkeypatch):
    engine = hdqnn.get_backend()

    def bad_alloc(*args, **kwargs):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(engine, "statevector", bad_alloc)
    with pytest.raises(MemoryError, match=r"out of memory: statevector needs \d+\.\d\d GiB at its peak "
                                          r"\(result 0\.12 \+ workspace .*GiB\); .* GiB was available before"):
        hdqnn.statevector(Circuit(20).h(0), weights=np.zeros((8, 0)), backend=engine)
    monkeypatch.setattr(engine, "expval", bad_alloc)
    with pytest.raises(MemoryError, match=r"out of memory: expval needs 0\.00 GiB"):  # too small to check first
        hdqnn.expval(Circuit(2).h(0), backend=engine)
