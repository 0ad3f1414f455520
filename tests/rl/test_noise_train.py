"""``hdqnn train --noise``: a fake IBM device's calibration (or a NoiseModel file) on the actor's
PQC, resolved once and kept in the run folder, exact resume with it, and clear errors."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import hdqnn
from hdqnn import noise
from hdqnn.cli import main as cli_main
from hdqnn.rl import Args
from hdqnn.rl.checkpoint import load_checkpoint
from hdqnn.rl.device_noise import NOISE_FILE, NOISE_HASH_KEY, actor_noise, device_noise, resolve_noise
from hdqnn.rl.networks import make_actor
from hdqnn.rl.train import train
from tests.rl.helpers import ACTION_SPACE
from tests.rl.test_train import _assert_same_state

pytest.importorskip("qiskit_ibm_runtime", reason="fake IBM devices need qiskit-ibm-runtime")

NOISY = dict(algo="hdqnn-td3", noise="fake_manila", shots=100)


def saved_model(run_dir: str) -> tuple[str, noise.NoiseModel]:
    text = (Path(run_dir) / NOISE_FILE).read_text()
    return text, noise.NoiseModel.from_json(text)


def test_a_noisy_run_keeps_its_device_in_the_run_folder(make_args):
    args = make_args(total_timesteps=150, **NOISY)
    summary = train(args)
    assert summary["total_timesteps"] == 150 and (Path(args.out_dir) / "summary.json").is_file()
    text, model = saved_model(args.out_dir)
    run = json.loads((Path(args.out_dir) / "run.json").read_text())
    assert run["noise"] == "fake_manila" and run[NOISE_HASH_KEY] == hashlib.sha256(text.encode()).hexdigest()
    # the calibration of qubits 0-1: cx and sx errors, ry borrowing sx's, and readout errors
    assert model == device_noise("fake_manila", 2)
    assert model.channels_after("cx", (0, 1)) and model.channels_after("ry", (1,)) == model.channels_after("sx", (1,))
    assert model.readout_error(0).p_meas1_given0 > 0.01
    # the actor's layer runs that model (read back from noise.json), forward and shots alike
    layer = make_actor(args, 3, ACTION_SPACE).quantum_layer
    assert layer.noise == model and layer.runner.noise is layer.noise and layer.shots == 100


def test_the_device_runs_in_the_actor(make_args):
    """The layer's exact forward is the noisy expectation, and a noiseless layer differs from it."""
    args = make_args(algo="hdqnn-td3", noise="fake_manila", layers=2)
    layer = make_actor(args, 3, ACTION_SPACE).quantum_layer
    clean = make_actor(make_args(algo="hdqnn-td3", layers=2), 3, ACTION_SPACE).quantum_layer
    x = torch.tensor(np.random.default_rng(0).uniform(-1, 1, (8, 2)))
    want = hdqnn.expval(layer.circuit, x.numpy(), None, noise=device_noise("fake_manila", 2), method="density_matrix")
    np.testing.assert_allclose(layer(x).detach().numpy(), want, atol=1e-12)
    assert np.abs(clean(x).detach().numpy() - want).max() > 1e-3


def test_adjoint_goes_through_the_noisy_density_matrix(make_args):
    args = make_args(algo="hdqnn-td3", noise="fake_manila", grad="adjoint")
    layer = make_actor(args, 3, ACTION_SPACE).quantum_layer
    x = torch.tensor(np.random.default_rng(1).uniform(-1, 1, (4, 2)), requires_grad=True)
    g = torch.tensor(np.random.default_rng(2).normal(size=(4, 2)))
    (layer(x) * g).sum().backward()
    want, _ = hdqnn.vjp(layer.circuit, x.detach().numpy(), None, g.numpy(), noise=layer.noise)
    np.testing.assert_allclose(x.grad.numpy(), want, atol=1e-12)
    with pytest.raises(ValueError, match="adjoint.*shots"):
        make_args(algo="hdqnn-td3", noise="fake_manila", grad="adjoint", shots=100)


def test_resume_with_noise_equals_the_uninterrupted_run(make_args):
    common = dict(eval_freq=100, fidelity_freq=3, **NOISY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        straight = train(make_args("straight", total_timesteps=150, **common))
        train(make_args("resumed", total_timesteps=100, **common))
        resumed = train(resume=make_args("resumed").out_dir, total_timesteps=150)
    a, b = load_checkpoint(make_args("straight").out_dir), load_checkpoint(make_args("resumed").out_dir)
    _assert_same_state(a["agent"], b["agent"])
    _assert_same_state(a["rng"], b["rng"])
    assert straight["final_eval"] == resumed["final_eval"]
    run = json.loads((Path(make_args("resumed").out_dir) / "run.json").read_text())
    assert run[NOISE_HASH_KEY] and run["extensions"]  # an extension keeps the model's hash


def test_a_changed_noise_json_stops_the_resume(make_args):
    args = make_args(total_timesteps=40, **NOISY)
    train(args)
    path = Path(args.out_dir) / NOISE_FILE
    model = noise.NoiseModel.from_json(path.read_text()).add(noise.depolarizing(0.5), "ry")
    path.write_text(model.to_json())
    with pytest.raises(ValueError, match="was changed since the run started"):
        train(resume=args.out_dir, total_timesteps=60)
    path.unlink()
    with pytest.raises(ValueError, match="noise.json or the hash in run.json is missing"):
        train(resume=args.out_dir, total_timesteps=60)


@pytest.mark.parametrize("spelling", ["FakeManilaV2", "FAKE_MANILA", "fakemanila", "manila"])
def test_device_names_are_spelling_free(spelling):
    assert resolve_noise(spelling, 3) == resolve_noise("fake_manila", 3)


def test_a_noise_model_file_is_used_as_given(make_args, tmp_path):
    model = (noise.NoiseModel().add(noise.depolarizing(0.05), ["ry", "rz"])
             .add_readout(noise.ReadoutError(0.02, 0.04), wires=[1]))
    path = tmp_path / "device.json"
    path.write_text(model.to_json())
    args = make_args(algo="hdqnn-td3", noise=str(path), total_timesteps=70)
    train(args)
    assert saved_model(args.out_dir)[1] == model
    assert actor_noise(args) == model


def test_bad_noise_values_are_clear_errors(make_args, tmp_path):
    with pytest.raises(ValueError, match="similar names: fake_manila"):
        train(make_args("typo", algo="hdqnn-td3", noise="fake_manilla"))
    typo = Path(make_args("typo").out_dir)
    assert not any((typo / name).exists() for name in ("run.json", NOISE_FILE))  # refused before writing
    with pytest.raises(ValueError, match="the device has 5 qubits but the PQC has 6"):
        resolve_noise("fake_manila", 6)
    with pytest.raises(ValueError, match="needs an algo with a PQC"):
        Args(algo="td3", noise="fake_manila")
    with pytest.raises(ValueError, match="no such noise model file"):
        resolve_noise(str(tmp_path / "missing.json"), 2)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="bad.json.*not an hdqnn noise model"):
        resolve_noise(str(tmp_path / "bad.json"), 2)
    wide = tmp_path / "wide.json"
    wide.write_text(noise.NoiseModel().add_readout(noise.ReadoutError(0.1, 0.1), wires=[3]).to_json())
    with pytest.raises(ValueError, match="names wire 3 but the PQC has 2"):
        resolve_noise(str(wide), 2)


def test_the_command_reports_an_unknown_device(tmp_path, capsys):
    status = cli_main(["train", "--noise", "FakeManilla", "--out", str(tmp_path / "run"), "--no-progress"])
    assert status != 0
    assert "unknown fake device 'FakeManilla'" in capsys.readouterr().err
