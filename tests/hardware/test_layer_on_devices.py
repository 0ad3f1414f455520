"""A QuantumLayer trains through every adapter: forward on the device, gradients by
parameter-shift (also on the device) or by the qtDNN surrogate (no extra circuits)."""
from __future__ import annotations

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit, Input, Weight
from tests.hardware.conftest import ENGINE

SHOTS = 1000
STEPS = 3
LEARNING_RATE = 0.3
X = [[0.3, -0.2], [0.1, 0.4]]
TARGET = [1.0, -1.0]  # <Z0> -> +1, <Z1> -> -1: a swapped bit order would pull the wrong way
WEIGHTS_INIT = [1.0, 1.0]


@pytest.fixture
def quantum_layer():
    if not hasattr(hdqnn, "QuantumLayer"):
        pytest.skip("QuantumLayer not available")
    return hdqnn.QuantumLayer


def readout_circuit() -> Circuit:
    """<Z_q> = cos(x_q + w_q) on each of two wires."""
    return Circuit(2).ry(Input(0), 0).ry(Input(1), 1).ry(Weight(0), 0).ry(Weight(1), 1)


def exact_loss(weights: np.ndarray) -> float:
    y = hdqnn.expval(readout_circuit(), np.array(X), weights, backend=ENGINE)
    return float(np.mean((y - np.array(TARGET)) ** 2))


def train(quantum_layer, adapter, grad: str) -> tuple[np.ndarray, list[float]]:
    torch = pytest.importorskip("torch")
    layer = quantum_layer(readout_circuit(), grad=grad, shots=SHOTS, runner=adapter, backend=ENGINE,
                          weights_init=torch.tensor(WEIGHTS_INIT, dtype=torch.float64), seed=0)
    optimizer = torch.optim.Adam(layer.parameters(), lr=LEARNING_RATE)
    x = torch.tensor(X, dtype=torch.float64)
    target = torch.tensor(TARGET, dtype=torch.float64)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = ((layer(x) - target) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return layer.weight.detach().numpy().copy(), losses


def test_parameter_shift_training_on_the_device(quantum_layer, adapter):
    weights, losses = train(quantum_layer, adapter, "parameter-shift")
    assert np.all(np.isfinite(losses))
    assert exact_loss(weights) < exact_loss(np.array(WEIGHTS_INIT)) - 0.2
    batch, n_weights = len(X), len(WEIGHTS_INIT)
    # per step: B forward circuits + 2 * (shifted angles) * B gradient circuits, SHOTS each
    assert adapter.shots_used == STEPS * (batch + 2 * n_weights * batch) * SHOTS


def test_qtdnn_training_runs_only_the_forward_on_the_device(quantum_layer, adapter):
    weights, losses = train(quantum_layer, adapter, "qtdnn")
    assert np.all(np.isfinite(losses)) and np.all(np.isfinite(weights))
    assert not np.allclose(weights, WEIGHTS_INIT)
    assert adapter.shots_used == STEPS * len(X) * SHOTS
