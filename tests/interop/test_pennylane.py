"""hdqnn.qubit, the PennyLane device, against default.qubit: values, shapes, VJPs, shots, engine calls."""
from __future__ import annotations

import numpy as np
import pytest

from tests.qasm.optional import import_or_skip

qml = import_or_skip("pennylane", "pennylane")
torch = pytest.importorskip("torch")

from hdqnn.interop import pennylane as hdqnn_pl  # noqa: E402  (after the optional import)
from hdqnn.interop.pennylane import HdqnnQubit  # noqa: E402

N_WIRES = 3


def _ansatz(x, w):
    """Broadcastable embedding, a layer with gates outside hdqnn's set, adjoints and a phase."""
    qml.AngleEmbedding(x, wires=range(N_WIRES), rotation="Y")
    qml.StronglyEntanglingLayers(w, wires=range(N_WIRES))
    qml.Rot(0.3, -0.4, 0.5, wires=1)
    qml.adjoint(qml.RX(0.7, wires=2))
    qml.adjoint(qml.S(wires=0))
    qml.CRZ(0.2, wires=[2, 0])
    qml.IsingXX(x[..., 0], wires=[0, 2])
    qml.Toffoli(wires=[0, 1, 2])
    qml.GlobalPhase(0.4)


def _pair(measure, wires=N_WIRES, **qnode_kwargs):
    def circuit(x, w):
        _ansatz(x, w)
        return measure()

    ours = qml.QNode(circuit, HdqnnQubit(wires=wires), **qnode_kwargs)
    theirs = qml.QNode(circuit, qml.device("default.qubit", wires=wires))
    return ours, theirs


def _args(batch, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, N_WIRES) if batch else (N_WIRES,)
    return rng.uniform(-np.pi, np.pi, shape), rng.uniform(-np.pi, np.pi, (2, N_WIRES, 3))


MEASUREMENTS = {
    "pauli_word": lambda: qml.expval(qml.Z(0) @ qml.X(2)),
    "hamiltonian": lambda: qml.expval(qml.Hamiltonian([0.5, -1.5, 2.0], [qml.Y(1), qml.Z(0) @ qml.Z(2), qml.I(0)])),
    "sum": lambda: qml.expval(qml.X(0) + 0.3 * qml.Y(1) @ qml.Y(2)),
    "var_word": lambda: qml.var(qml.X(1)),
    "var_sum": lambda: qml.var(qml.X(0) + qml.Z(1)),
    "hermitian": lambda: qml.expval(qml.Hermitian(np.array([[1.0, 0.5], [0.5, -2.0]]), wires=1)),
    "probs_subset": lambda: qml.probs(wires=[2, 0]),
    "probs": lambda: qml.probs(),
    "state": lambda: qml.state(),
    "several": lambda: (qml.expval(qml.Z(1)), qml.probs(wires=[1]), qml.var(qml.Y(0))),
}


@pytest.mark.parametrize("batch", [None, 1, 3])
@pytest.mark.parametrize("name", sorted(MEASUREMENTS))
def test_analytic_measurements_match_default_qubit(name, batch):
    ours, theirs = _pair(MEASUREMENTS[name])
    x, w = _args(batch)
    got, want = ours(x, w), theirs(x, w)
    if not isinstance(want, tuple):
        got, want = (got,), (want,)
    assert len(got) == len(want)
    if name == "hamiltonian" and batch == 1:
        # default.qubit squeezes a LinearCombination's batch of 1 (its Sum keeps it); the return
        # spec says batch_size=1 "is still a batch size", which hdqnn.qubit follows
        want = (np.reshape(want[0], (1,)),)
    for g, v in zip(got, want):
        assert np.shape(g) == np.shape(v)
        np.testing.assert_allclose(np.asarray(g), np.asarray(v), atol=1e-10)


def test_arbitrary_wire_labels_and_tape_wires():
    def circuit(x):
        qml.RY(x, wires="a")
        qml.CNOT(wires=["a", -1])
        qml.Hadamard(wires=7)
        return qml.probs(wires=[-1, "a"]), qml.expval(qml.X(7) @ qml.Z(-1))

    x = np.array([0.1, 1.2, 2.3])
    for wires in (["a", 7, -1], None):
        got = qml.QNode(circuit, HdqnnQubit(wires=wires))(x)
        want = qml.QNode(circuit, qml.device("default.qubit", wires=["a", 7, -1]))(x)
        for g, v in zip(got, want):
            np.testing.assert_allclose(g, v, atol=1e-12)


def test_broadcast_257_is_one_engine_call(monkeypatch):
    calls = []
    real = hdqnn_pl.expval

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(hdqnn_pl, "expval", counting)
    ours, theirs = _pair(MEASUREMENTS["hamiltonian"])
    x, w = _args(257)
    np.testing.assert_allclose(ours(x, w), theirs(x, w), atol=1e-10)
    assert len(calls) == 1 and calls[0][0] == 257


def test_structurally_equal_tapes_are_coalesced(monkeypatch):
    calls = []
    real = hdqnn_pl.expval
    monkeypatch.setattr(hdqnn_pl, "expval", lambda *a, **k: calls.append(1) or real(*a, **k))
    dev = HdqnnQubit(wires=2)
    tapes = [qml.tape.QuantumScript([qml.RX(a, 0), qml.CNOT([0, 1]), qml.RY(b, 1)], [qml.expval(obs)])
             for a, b, obs in [(0.1, 0.2, qml.Z(1)), (np.array([0.3, 0.4]), 0.5, qml.X(0)), (0.6, 0.7, qml.Z(1))]]
    got = dev.execute(tapes)
    assert len(calls) == 2  # the broadcast tape differs in structure; tapes 0 and 2 share a call
    want = qml.device("default.qubit", wires=2).execute(tapes)
    for g, v in zip(got, want):
        np.testing.assert_allclose(g, v, atol=1e-12)


def _torch_grads(qnode, x, w):
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    out = qnode(xt, wt)
    loss = (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)).sum()
    loss.backward()
    return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


@pytest.mark.parametrize("diff_method", ["adjoint", "device", "best"])
@pytest.mark.parametrize("batch", [None, 1, 5])
def test_torch_gradients_match_backprop(diff_method, batch):
    def circuit(x, w):
        _ansatz(x, w)
        return qml.expval(qml.Z(0) @ qml.Y(1) + 0.5 * qml.X(2))

    ours = qml.QNode(circuit, HdqnnQubit(wires=N_WIRES), interface="torch", diff_method=diff_method)
    theirs = qml.QNode(circuit, qml.device("default.qubit", wires=N_WIRES), interface="torch",
                       diff_method="backprop")
    x, w = _args(batch, seed=3)
    for g, v in zip(_torch_grads(ours, x, w), _torch_grads(theirs, x, w)):
        np.testing.assert_allclose(g, v, atol=1e-10)


def test_broadcast_trainable_inputs_one_vjp_call(monkeypatch):
    """The case PennyLane's gradient transforms reject (#4462): VJP w.r.t. broadcasted inputs."""
    calls = []
    real = hdqnn_pl.vjp
    monkeypatch.setattr(hdqnn_pl, "vjp", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))

    def circuit(x, w):
        _ansatz(x, w)
        return qml.expval(qml.Z(0)), qml.expval(qml.X(1) @ qml.X(2))

    dev = HdqnnQubit(wires=N_WIRES)
    ours = qml.QNode(circuit, dev, interface="torch", diff_method="adjoint")
    theirs = qml.QNode(circuit, qml.device("default.qubit", wires=N_WIRES), interface="torch",
                       diff_method="backprop")
    x, w = _args(16, seed=4)
    grads = []
    for qnode in (ours, theirs):
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        a, b = qnode(xt, wt)
        ((a * b).sum() + (a**2).sum()).backward()
        grads.append((xt.grad.numpy(), wt.grad.numpy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0], atol=1e-10)
    np.testing.assert_allclose(grads[0][1], grads[1][1], atol=1e-10)
    assert calls == [(16, calls[0][1])]


def test_torch_layer_training_step_matches_default_qubit():
    torch.manual_seed(0)

    def layer(device):
        @qml.qnode(device, interface="torch", **({} if device.name == "default.qubit" else {"diff_method": "adjoint"}))
        def circuit(inputs, weights):
            qml.AngleEmbedding(inputs, wires=range(N_WIRES))
            qml.BasicEntanglerLayers(weights, wires=range(N_WIRES))
            return [qml.expval(qml.Z(i)) for i in range(N_WIRES)]

        return qml.qnn.TorchLayer(circuit, {"weights": (2, N_WIRES)})

    ours, theirs = layer(HdqnnQubit(wires=N_WIRES)), layer(qml.device("default.qubit", wires=N_WIRES))
    theirs.load_state_dict(ours.state_dict())
    pre = torch.nn.Linear(2, N_WIRES).double()
    x, target = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, N_WIRES, dtype=torch.float64)
    results = []
    for model in (torch.nn.Sequential(pre, ours.double()), torch.nn.Sequential(pre, theirs.double())):
        model.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    assert abs(results[0][0] - results[1][0]) < 1e-10
    for g, v in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g, v, atol=1e-10, rtol=0)


def test_torch_tapes_reach_execute_unconverted(monkeypatch):
    """Torch tapes on the device-gradient path skip PennyLane's per-operation NumPy conversion (the
    device reads the tensors); torch observable data (here Hamiltonian coefficients) is converted by
    PennyLane; other interfaces and gradient methods keep the conversion."""
    config = HdqnnQubit(wires=1).setup_execution_config
    assert not config(qml.devices.ExecutionConfig(interface="torch", gradient_method="adjoint")).convert_to_numpy
    assert config(qml.devices.ExecutionConfig(interface="torch", gradient_method="parameter-shift")).convert_to_numpy
    assert config(qml.devices.ExecutionConfig(interface="autograd", gradient_method="adjoint")).convert_to_numpy
    seen = []
    real = HdqnnQubit.execute
    monkeypatch.setattr(HdqnnQubit, "execute", lambda self, tapes, execution_config=None: seen.extend(
        type(p).__name__ for t in tapes for p in t.get_parameters(trainable_only=False))
        or real(self, tapes, execution_config))
    coeffs = np.array([0.5, -1.5])

    def circuit(x, w, c):
        _ansatz(x, w)
        return qml.expval(qml.Z(0) @ qml.X(2)), qml.expval(qml.Hamiltonian(c, [qml.Y(1), qml.Z(0) @ qml.Z(2)]))

    x, w = _args(4, seed=5)
    ours = qml.QNode(circuit, HdqnnQubit(wires=N_WIRES), interface="torch", diff_method="adjoint")
    got = ours(torch.tensor(x), torch.tensor(w), torch.tensor(coeffs))
    want = qml.QNode(circuit, qml.device("default.qubit", wires=N_WIRES))(x, w, coeffs)
    assert "Tensor" in seen
    for g, v in zip(got, want):
        np.testing.assert_allclose(g.numpy(), v, atol=1e-10)


def test_broadcast_global_phase_alone_sets_the_batch():
    tape = qml.tape.QuantumScript([qml.Hadamard(0), qml.RX(0.4, 1), qml.GlobalPhase(np.array([0.1, 0.2, 0.3]))],
                                  [qml.state()])
    (got,) = HdqnnQubit(wires=2).execute([tape])
    (want,) = qml.device("default.qubit", wires=2).execute([tape])
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_broadcast_parameters_of_different_lengths_are_refused():
    tape = qml.tape.QuantumScript([qml.RX(np.array([0.1, 0.2]), 0), qml.RY(np.array([0.1, 0.2, 0.3]), 0)],
                                  [qml.expval(qml.Z(0))])
    with pytest.raises(ValueError, match="broadcast parameters of different lengths 2 and 3"):
        HdqnnQubit(wires=1).execute([tape])


def test_wire_labels_of_controlled_gates_are_their_wires():
    for op in [qml.CNOT([3, 1]), qml.CRX(0.1, ["a", "b"]), qml.Toffoli([0, 1, 2]), qml.adjoint(qml.CRZ(0.3, [2, 0])),
               qml.ctrl(qml.RX(0.2, 1), control=[0, 3], work_wires=[5]), qml.RY(0.1, 2)]:
        assert hdqnn_pl._wire_labels(op) == op.wires.labels


def test_float32_parameters_run_in_c_dtype():
    circuit = lambda x: (qml.RX(x, 0), qml.expval(qml.Z(0)))[1]  # noqa: E731
    x = np.float32(0.3)
    exact = np.cos(np.float64(x))
    assert abs(qml.QNode(circuit, HdqnnQubit(wires=1))(x) - exact) < 1e-14
    assert abs(qml.QNode(circuit, HdqnnQubit(wires=1, c_dtype=np.complex64))(x) - exact) < 1e-6
    with pytest.raises(ValueError, match="c_dtype"):
        HdqnnQubit(wires=1, c_dtype=np.float64)


def test_shots_statistics_within_five_sigma():
    shots = 20000

    def circuit(x):
        qml.RY(x, 0)
        qml.Hadamard(1)
        qml.CNOT([0, 2])
        return (qml.expval(qml.Z(0)), qml.expval(qml.X(1)), qml.var(qml.Z(2)), qml.probs(wires=[0]),
                qml.sample(wires=[0, 2]), qml.counts(wires=[1]))

    x = np.array([0.4, 2.0])
    qnode = qml.set_shots(qml.QNode(circuit, HdqnnQubit(wires=3, seed=11)), shots)
    ez0, ex1, vz2, p0, samples, counts = qnode(x)
    sigma = 5 / np.sqrt(shots)
    np.testing.assert_allclose(ez0, np.cos(x), atol=2 * sigma)
    np.testing.assert_allclose(ex1, [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(vz2, np.sin(x) ** 2, atol=2 * sigma)
    np.testing.assert_allclose(p0[:, 0], np.cos(x / 2) ** 2, atol=sigma)
    assert np.shape(samples) == (2, shots, 2)
    assert np.array_equal(samples[..., 0], samples[..., 1])  # CNOT copies wire 0 onto wire 2
    assert len(counts) == 2 and all(abs(c["0"] - shots / 2) < 5 * np.sqrt(shots) / 2 for c in counts)


def test_shot_vector():
    qnode = qml.set_shots(qml.QNode(lambda: (qml.RX(0.9, 0), qml.expval(qml.Z(0)))[1], HdqnnQubit(wires=1, seed=2)),
                          [(3000, 2), 5000])
    result = qnode()
    assert len(result) == 3
    for value, shots in zip(result, (3000, 3000, 5000)):
        assert abs(value - np.cos(0.9)) < 5 / np.sqrt(shots)


def test_tracker_counts_one_batch_and_the_broadcast_executions():
    dev = HdqnnQubit(wires=2)
    qnode = qml.QNode(lambda x: (qml.RX(x, 0), qml.expval(qml.Z(0)))[1], dev)
    with qml.Tracker(dev) as tracker:
        qnode(np.array([0.1, 0.2, 0.3]))
    assert tracker.totals["batches"] == 1 and tracker.totals["executions"] == 3
    assert tracker.totals["simulations"] == 1


def test_entry_point_is_declared():
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pennylane.plugins"]["hdqnn.qubit"] == \
        "hdqnn.interop.pennylane:HdqnnQubit"
    assert HdqnnQubit(wires=1).name == "hdqnn.qubit"


def test_unsupported_things_raise_clearly():
    dev = HdqnnQubit(wires=2)
    with pytest.raises(qml.exceptions.DeviceError, match="not accepted for analytic"):
        qml.QNode(lambda: qml.sample(wires=0), dev)()
    with pytest.raises(qml.exceptions.DeviceError, match="option"):
        dev.setup_execution_config(qml.devices.ExecutionConfig(device_options={"bogus": 1}))
    probs = qml.QNode(lambda x: (qml.RX(x, 0), qml.probs(wires=0))[1], dev, interface="torch",
                      diff_method="adjoint")
    with pytest.raises(qml.exceptions.QuantumFunctionError, match="does not support adjoint"):
        probs(torch.tensor(0.3, requires_grad=True))  # supports_derivatives(circuit) says no
    tape = qml.tape.QuantumScript([qml.RX(0.3, 0)], [qml.probs(wires=0)], trainable_params=[0])
    program = dev.preprocess_transforms(qml.devices.ExecutionConfig(gradient_method="adjoint"))
    with pytest.raises(qml.exceptions.DeviceError, match="Pauli words and sums only"):
        program((tape,))
    with pytest.raises(qml.exceptions.DeviceError, match=r"wires \[2\] that hdqnn.qubit does not have"):
        dev.execute(qml.tape.QuantumScript([qml.RX(0.1, 2)], [qml.expval(qml.Z(0))]))
    with pytest.raises(qml.exceptions.DeviceError, match=r"wires \[7\] that hdqnn.qubit does not have"):
        dev.execute(qml.tape.QuantumScript([qml.RX(0.1, 0)], [qml.probs(wires=[0, 7])]))
    with pytest.raises(qml.exceptions.DeviceError, match="1 to 30 wires"):
        HdqnnQubit().execute(qml.tape.QuantumScript([qml.RX(0.1, w) for w in range(31)], [qml.expval(qml.Z(0))]))
    with pytest.raises(qml.exceptions.DeviceError, match="deferring"):
        qml.QNode(_mid_circuit_measurement, dev, mcm_method="tree-traversal")()
    with pytest.raises(ValueError, match="[Pp]ostselect"):
        qml.QNode(lambda: _mid_circuit_measurement(postselect=1), dev)()


def _mid_circuit_measurement(postselect=None):
    qml.Hadamard(0)
    qml.cond(qml.measure(0, postselect=postselect), qml.X)(1)
    return qml.expval(qml.Z(1))


def test_mid_circuit_measurement_and_broadcast_state_prep_match_default_qubit():
    ref = qml.device("default.qubit", wires=2)
    assert qml.QNode(_mid_circuit_measurement, HdqnnQubit(wires=3))() == pytest.approx(
        qml.QNode(_mid_circuit_measurement, ref)(), abs=1e-12)
    states = np.random.default_rng(5).normal(size=(3, 4)) + 0j
    states /= np.linalg.norm(states, axis=1, keepdims=True)

    def prepared(s):
        qml.StatePrep(s, wires=[0, 1])
        return qml.expval(qml.Z(0) @ qml.X(1)), qml.state()

    for got, want in zip(qml.QNode(prepared, HdqnnQubit(wires=2))(states), qml.QNode(prepared, ref)(states)):
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_import_hdqnn_does_not_load_pennylane():
    import subprocess
    import sys

    code = "import sys, hdqnn, hdqnn.interop; assert 'pennylane' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_compute_vjp_coalesces_tapes_with_their_own_weights(monkeypatch):
    calls = []
    real = hdqnn_pl.vjp
    monkeypatch.setattr(hdqnn_pl, "vjp", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    rng = np.random.default_rng(9)

    def tape(a, b, c):
        # single-parameter gates only: default.qubit's adjoint VJP needs them (hdqnn.qubit does not)
        ops = [qml.RX(a, 0), qml.CNOT([0, 1]), qml.RY(b, 1), qml.CRZ(0.3, [1, 0]), qml.IsingYY(c, wires=[1, 0])]
        return qml.tape.QuantumScript(ops, [qml.expval(qml.Z(0) @ qml.Y(1)), qml.expval(qml.X(1) - 2 * qml.Z(0))],
                                      trainable_params=[0, 1, 3])

    tapes = [tape(*rng.uniform(-3, 3, 3)) for _ in range(3)]
    cotangents = [tuple(rng.normal(size=2)) for _ in tapes]
    config = qml.devices.ExecutionConfig(gradient_method="adjoint")
    got = HdqnnQubit(wires=2).compute_vjp(tapes, cotangents, config)
    want = qml.device("default.qubit", wires=2).compute_vjp(tapes, cotangents, config)
    assert calls == [(3, 0)]  # three tapes, one engine call
    for g, v in zip(got, want):
        np.testing.assert_allclose(np.asarray(g, dtype=float), np.asarray(v, dtype=float), atol=1e-10)


def test_vjp_starts_from_the_states_of_its_forward(monkeypatch):
    """A torch step's VJP starts from the states its forward kept (no second forward pass); a VJP
    of other parameter values, or after another forward, runs its own, with the same gradients."""
    starts = []
    real = hdqnn_pl.vjp
    monkeypatch.setattr(hdqnn_pl, "vjp", lambda *a, **k: starts.append(k["final_state"] is not None) or real(*a, **k))

    def circuit(x, w):
        _ansatz(x, w)
        return qml.expval(qml.Z(0) @ qml.Y(1) + 0.5 * qml.X(2))

    dev = HdqnnQubit(wires=N_WIRES)
    ours = qml.QNode(circuit, dev, interface="torch", diff_method="adjoint")
    theirs = qml.QNode(circuit, qml.device("default.qubit", wires=N_WIRES), interface="torch",
                       diff_method="backprop")
    x, w = _args(7, seed=5)
    for g, v in zip(_torch_grads(ours, x, w), _torch_grads(theirs, x, w)):
        np.testing.assert_allclose(g, v, atol=1e-10)
    assert starts == [True] and not dev._kept  # used, then released

    rng = np.random.default_rng(10)

    def tape(a, b):
        ops = [qml.RX(a, 0), qml.CNOT([0, 1]), qml.RY(b, 1), qml.CRZ(0.3, [1, 0])]
        return qml.tape.QuantumScript(ops, [qml.expval(qml.Z(0) @ qml.Y(1))], trainable_params=[0, 1])

    config = qml.devices.ExecutionConfig(gradient_method="adjoint")
    run, other = [tape(*rng.uniform(-3, 3, 2)) for _ in range(2)], [tape(*rng.uniform(-3, 3, 2)) for _ in range(2)]
    cotangents = [1.5, -0.7]
    want = qml.device("default.qubit", wires=2).compute_vjp(other, cotangents, config)
    starts.clear()
    dev = HdqnnQubit(wires=2)
    dev.execute(run, config)
    got = dev.compute_vjp(other, cotangents, config)  # other values: its own forward
    dev.execute(run, config)
    dev.execute(other, qml.devices.ExecutionConfig())  # no device gradient: nothing kept, the last dropped
    got_after = dev.compute_vjp(other, cotangents, config)
    assert starts == [False, False]
    for g, g2, v in zip(got, got_after, want):
        np.testing.assert_allclose(np.asarray(g, dtype=float), np.asarray(v, dtype=float), atol=1e-10)
        np.testing.assert_allclose(np.asarray(g2, dtype=float), np.asarray(v, dtype=float), atol=1e-10)
    dev.execute(other, config)
    got_kept = dev.compute_vjp(other, cotangents, config)
    assert starts == [False, False, True]
    for g, v in zip(got_kept, want):
        np.testing.assert_allclose(np.asarray(g, dtype=float), np.asarray(v, dtype=float), atol=1e-10)


def test_sampled_hermitian_is_read_in_its_eigenbasis():
    """diagonalize_measurements leaves a Hermitian alone: its samples need its own diagonalizing gates."""
    shots = 20000
    h = np.array([[1.0, 2.0 - 1j], [2.0 + 1j, -0.5]])

    def circuit():
        qml.RY(0.8, 0)
        qml.RX(-0.4, 1)
        return qml.expval(qml.Hermitian(h, wires=0)), qml.var(qml.Hermitian(h, wires=0) @ qml.Z(1))

    exact = qml.QNode(circuit, qml.device("default.qubit", wires=2))()
    got = qml.set_shots(qml.QNode(circuit, HdqnnQubit(wires=2, seed=4)), shots)()
    spread = 5 * np.abs(np.linalg.eigvalsh(h)).max() ** 2 / np.sqrt(shots)
    np.testing.assert_allclose(got, exact, atol=spread)


# ----------------------------------------------------------------------------- from_pennylane
def _converted_state(circuit, slots, values=None):
    import hdqnn

    psi = np.asarray(hdqnn.statevector(circuit, slots.inputs(values), slots.weights(values)))
    return psi * np.exp(-1j * slots.global_phase(values))[:, None]


@pytest.mark.parametrize("batch", [0, 1, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_from_pennylane_qnode_state_and_expval_match_default_qubit(batch, seed):
    import hdqnn

    _, theirs = _pair(qml.state)
    x, w = _args(batch, seed)
    circuit, slots = hdqnn.from_pennylane(theirs, x, w)
    expected = np.reshape(theirs(x, w), (max(batch, 1), -1))
    np.testing.assert_allclose(_converted_state(circuit, slots), expected, atol=1e-12)
    assert slots.batch_size == (batch or None) and slots.inputs().shape == (max(batch, 1), slots.n_inputs)

    _, word = _pair(lambda: qml.expval(qml.Z(0) @ qml.X(2)))
    ev = hdqnn.expval(circuit, slots.inputs(), slots.weights(), observables=[("ZX", (0, 2))])
    np.testing.assert_allclose(np.asarray(ev)[:, 0], np.reshape(word(x, w), -1), atol=1e-12)


def test_from_pennylane_tape_maps_parameters_in_tape_order():
    import hdqnn

    tape = qml.tape.QuantumScript([qml.RX(np.array([0.1, 0.2]), 0), qml.RY(0.3, 1), qml.CNOT([0, 1]),
                                   qml.RZ(np.array([0.4, 0.5]), 1), qml.PhaseShift(0.6, 0)],
                                  [qml.expval(qml.Z(1))])
    circuit, slots = hdqnn.from_pennylane(tape)
    assert [(s.kind, s.index) for s in slots.parameters] == [("input", 0), ("weight", 0), ("input", 1),
                                                             ("weight", 1)]
    np.testing.assert_array_equal(slots.inputs(), [[0.1, 0.4], [0.2, 0.5]])
    np.testing.assert_array_equal(slots.weights(), [0.3, 0.6])
    values = [np.array([1.0, 2.0]), 3.0, np.array([4.0, 5.0]), 6.0]  # new values, same layout
    np.testing.assert_array_equal(slots.inputs(values), [[1.0, 4.0], [2.0, 5.0]])
    np.testing.assert_array_equal(slots.weights(values), [3.0, 6.0])
    expected = qml.execute([tape], qml.device("default.qubit", wires=2))[0]
    ev = hdqnn.expval(circuit, slots.inputs(), slots.weights(), observables=[("Z", (1,))])
    np.testing.assert_allclose(np.asarray(ev)[:, 0], expected, atol=1e-12)


def test_from_pennylane_torch_qnode_keeps_trainable_indices():
    import hdqnn

    @qml.qnode(qml.device("default.qubit", wires=2), interface="torch")
    def circuit(x, w):
        qml.RX(x, 0)
        qml.RY(w, 1)
        qml.CZ([0, 1])
        return qml.expval(qml.Z(0))

    x = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64, requires_grad=True)
    _, slots = hdqnn.from_pennylane(circuit, x, w=torch.tensor(0.7, dtype=torch.float64))
    assert slots.trainable_params == (0,)
    np.testing.assert_allclose(slots.inputs()[:, 0], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(slots.weights(), [0.7])


def test_from_pennylane_errors():
    import hdqnn

    tape = qml.tape.QuantumScript([qml.RX(np.array([0.1, 0.2]), 0), qml.RY(0.3, 0)])
    _, slots = hdqnn.from_pennylane(tape)
    with pytest.raises(TypeError, match="QNode or a QuantumTape"):
        hdqnn.from_pennylane(lambda x: x)
    with pytest.raises(TypeError, match="arguments are for a QNode"):
        hdqnn.from_pennylane(tape, 0.1)
    with pytest.raises(ValueError, match="expected 2 gate parameter values"):
        slots.inputs([0.1])
    with pytest.raises(ValueError, match="must be a scalar"):
        slots.weights([np.array([0.1, 0.2]), np.array([0.3, 0.4])])
    with pytest.raises(ValueError, match="mid-circuit measurements"):
        hdqnn.from_pennylane(qml.tape.QuantumScript([qml.measurements.MidMeasureMP(0)]))
