"""The qtDNN trust figures of issue 15 reach the RL logs under ``qtdnn/`` keys when measured."""
from __future__ import annotations

import torch

import hdqnn
from hdqnn.autograd import QuantumLayer
from hdqnn.rl.actor_telemetry import trust_metrics as _trust_metrics


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


def test_the_sobolev_preset_trains_and_logs_its_trust_figures(make_args):
    from hdqnn.rl.metrics import read_metrics
    from hdqnn.rl.networks import qtdnn_config
    from hdqnn.rl.train import train

    args = make_args(qtdnn_preset="sobolev", total_timesteps=120, qtdnn_fit_steps=0)
    config = qtdnn_config(args)
    assert config.normalize and config.sobolev_samples == 12 and config.n_fit_steps == 64
    summary = train(args)
    keys = set().union(*(record.keys() for record in read_metrics(args.out_dir)))
    assert {"qtdnn/tangent_cosine", "qtdnn/tangent_rel_error"} <= keys
    # the same run without the probes: the 2 x 12 probe runs per fit are counted on top
    plain = train(make_args("normalized", qtdnn_preset="normalized", total_timesteps=120, qtdnn_fit_steps=0))
    extra = summary["circuit_executions"] - plain["circuit_executions"]
    assert extra > 0 and extra % 24 == 0


def test_the_fast_sobolev_preset_keeps_the_default_fit_steps(make_args):
    from hdqnn.autograd import QtDNNConfig
    from hdqnn.rl.networks import qtdnn_config

    config = qtdnn_config(make_args(qtdnn_preset="sobolev-fast", qtdnn_fit_steps=0))
    assert config.normalize and config.sobolev_samples == 12 and config.sobolev_weight == 4.0
    assert config.n_fit_steps == QtDNNConfig().n_fit_steps


def test_the_sobolev_presets_refuse_shots(make_args):
    import pytest

    from hdqnn.rl.train import fresh_args

    for preset in ("sobolev", "sobolev-fast"):
        with pytest.raises(ValueError, match=f"'{preset}'.*shot noise"):
            fresh_args(make_args(qtdnn_preset=preset, shots=100))
    assert fresh_args(make_args(qtdnn_preset="sobolev", shots=100, grad="parameter-shift")).shots == 100


def test_the_auto_preset_is_sobolev_fast_for_exact_outputs_and_default_with_shots(make_args):
    from hdqnn.rl.args import Args, validate
    from hdqnn.rl.networks import qtdnn_config
    from hdqnn.rl.train import fresh_args

    assert Args().qtdnn_preset == "auto"
    exact = make_args(qtdnn_preset="auto", qtdnn_fit_steps=0)
    assert qtdnn_config(exact) == qtdnn_config(make_args(qtdnn_preset="sobolev-fast", qtdnn_fit_steps=0))
    shots = make_args(qtdnn_preset="auto", shots=100, qtdnn_fit_steps=0)
    validate(shots)
    assert fresh_args(shots).qtdnn_preset == "default"
    assert qtdnn_config(shots) == qtdnn_config(make_args(qtdnn_preset="default", shots=100, qtdnn_fit_steps=0))


def test_a_run_records_the_preset_auto_resolved_to(make_args):
    from hdqnn.rl.train import fresh_args

    assert fresh_args(make_args(qtdnn_preset="auto")).qtdnn_preset == "sobolev-fast"
    assert fresh_args(make_args(qtdnn_preset="auto", shots=50)).qtdnn_preset == "default"
    assert fresh_args(make_args(qtdnn_preset="paper")).qtdnn_preset == "paper"
