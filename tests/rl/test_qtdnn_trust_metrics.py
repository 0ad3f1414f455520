"""The qtDNN trust figures of issue 15 reach the RL logs under ``qtdnn/`` keys when measured."""
from __future__ import annotations

import torch

import hdqnn
from hdqnn.autograd import QuantumLayer
from hdqnn.rl.offpolicy import _trust_metrics


def _trained_layer(**qtdnn) -> QuantumLayer:
    layer = QuantumLayer(hdqnn.ansatz.hardware_efficient(2, 1), grad="qtdnn", seed=0,
                         qtdnn={"hidden": 8, "n_fit_steps": 1, **qtdnn})
    layer.weight.requires_grad_(False)
    layer(torch.rand(8, 2, requires_grad=True)).sum().backward()
    return layer


def test_trust_metrics_are_logged_only_when_measured():
    assert _trust_metrics(_trained_layer().stats) == {}
    metrics = _trust_metrics(_trained_layer(holdout=0.25, sobolev_samples=2).stats)
    assert set(metrics) == {"qtdnn/holdout_error", "qtdnn/tangent_cosine", "qtdnn/tangent_rel_error"}
    assert all(isinstance(v, float) for v in metrics.values())
