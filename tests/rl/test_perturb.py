"""Perturbed evaluation: each perturbation changes what it claims, from the originals, deterministically;
bad input is a clear error; ``hdqnn eval --perturb`` and ``hdqnn generalize`` on a tiny trained run."""
from __future__ import annotations

import gc
import json
import shutil
import weakref

import gymnasium as gym
import numpy as np
import pytest
import torch

from hdqnn.cli import main
from hdqnn.rl import make_env, train
from hdqnn.rl.evaluate import evaluate, evaluate_run
from hdqnn.rl.generalize import relative_drop, sweep_points
from hdqnn.rl.networks import Actor
from hdqnn.rl.perturb import (PERTURBATIONS, ActionDelay, ActionNoise, ObservationNoise, apply_perturbations,
                              parse_levels, parse_perturbations, restore_parameters, supported)

from .conftest import tiny_args

MUJOCO_ENV = "Hopper-v5"


def _mujoco_fields(env: gym.Env) -> dict[str, np.ndarray]:
    model = env.unwrapped.model
    return {"body_mass": model.body_mass.copy(), "body_inertia": model.body_inertia.copy(),
            "geom_friction": model.geom_friction.copy(), "actuator_gear": model.actuator_gear.copy(),
            "gravity": model.opt.gravity.copy()}


@pytest.fixture
def hopper():
    env = make_env(MUJOCO_ENV)
    yield env
    env.close()


@pytest.fixture
def pendulum():
    env = make_env("Pendulum-v1")
    yield env
    env.close()


# ------------------------------------------------------------------------------------ physical parameters
def test_mujoco_fields_are_scaled_from_their_originals_and_never_compound(hopper):
    original = _mujoco_fields(hopper)
    perturbed = apply_perturbations(hopper, {"mass": 1.5, "friction": 0.8, "gain": 2.0, "gravity": 0.5})
    fields = _mujoco_fields(hopper)
    for name, scale in (("body_mass", 1.5), ("body_inertia", 1.5), ("geom_friction", 0.8), ("actuator_gear", 2.0),
                        ("gravity", 0.5)):
        np.testing.assert_allclose(fields[name], original[name] * scale, err_msg=name)
    perturbed.reset(seed=0)
    for _ in range(3):  # the edited model steps
        perturbed.step(perturbed.action_space.sample())

    # a second level on the same env scales the originals: 0.5x, not 1.5 * 0.5; the rest is restored
    apply_perturbations(hopper, {"mass": 0.5})
    again = _mujoco_fields(hopper)
    np.testing.assert_allclose(again["body_mass"], original["body_mass"] * 0.5)
    for name in ("geom_friction", "actuator_gear", "gravity"):
        np.testing.assert_array_equal(again[name], original[name], err_msg=name)
    restore_parameters(hopper)
    for name, value in _mujoco_fields(hopper).items():
        np.testing.assert_array_equal(value, original[name], err_msg=name)


def _fall_speed(env: gym.Env) -> float:
    """Vertical speed of the hopper after one step dropped from 1 m above its start, at rest."""
    env.reset(seed=0)
    base = env.unwrapped
    qpos, qvel = base.init_qpos.copy(), np.zeros_like(base.init_qvel)
    qpos[1] += 1.0  # rootz: well clear of the floor, so only gravity acts
    base.set_state(qpos, qvel)
    env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    return float(base.data.qvel[1])


def test_gravity_scale_changes_a_free_fall(hopper):
    normal = _fall_speed(hopper)
    apply_perturbations(hopper, {"gravity": 2.0})
    doubled = _fall_speed(hopper)
    assert normal < 0
    assert doubled == pytest.approx(2 * normal, rel=0.02)


def test_pendulum_attributes_are_scaled_and_change_its_dynamics(pendulum):
    base = pendulum.unwrapped
    m, l, g = base.m, base.l, base.g

    def swing(env: gym.Env) -> float:
        """Angular velocity after one unforced step from horizontal, at rest."""
        env.reset(seed=0)
        env.unwrapped.state = np.array([np.pi / 2, 0.0])
        env.step(np.zeros(1, dtype=np.float32))
        return float(env.unwrapped.state[1])

    normal = swing(pendulum)
    apply_perturbations(pendulum, {"mass": 2.0, "length": 0.5, "gravity": 1.5})
    assert (base.m, base.l, base.g) == (2 * m, 0.5 * l, 1.5 * g)
    # thdot' = 3 g / (2 l) sin(th) dt: 1.5x gravity at half the length swings 3x faster
    assert swing(pendulum) == pytest.approx(3 * normal)
    apply_perturbations(pendulum, {"gravity": 2.0})  # from the originals, the others restored
    assert (base.m, base.l, base.g) == (m, l, 2 * g)


@pytest.mark.parametrize("env_id, spec", [("Pendulum-v1", {"mass": 2.0}), (MUJOCO_ENV, {"gravity": 2.0})])
def test_remembered_originals_do_not_keep_the_env_alive(env_id, spec):
    env = make_env(env_id)
    apply_perturbations(env, spec)
    alive = weakref.ref(env.unwrapped)
    env.close()
    del env
    gc.collect()
    assert alive() is None


def test_supported_perturbations_depend_on_the_env(hopper, pendulum):
    assert supported(hopper) == ["mass", "friction", "gain", "gravity", "obs_noise", "action_noise", "action_delay"]
    assert supported(pendulum) == ["mass", "gravity", "length", "obs_noise", "action_noise", "action_delay"]


# ------------------------------------------------------------------------------------ sensing and acting
class Recorder(gym.Env):
    """Records the actions it executes; observes zeros; asymmetric action bounds."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(np.array([0.0, -1.0], np.float32), np.array([2.0, 1.0], np.float32))

    def __init__(self):
        self.executed: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.executed = []
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.executed.append(np.array(action))
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_observation_noise_has_the_documented_statistics(pendulum):
    clean_env = make_env("Pendulum-v1")
    noisy_env = ObservationNoise(pendulum, 0.1)
    clean, _ = clean_env.reset(seed=3)
    noisy, _ = noisy_env.reset(seed=3)
    noise = [noisy - clean]
    for _ in range(199):
        clean, *_ = clean_env.step(np.array([0.5], np.float32))
        noisy, *_ = noisy_env.step(np.array([0.5], np.float32))
        noise.append(noisy - clean)
    clean_env.close()
    noise = np.concatenate(noise).astype(np.float64)  # 600 draws
    assert noisy.dtype == np.float32
    assert abs(noise.mean()) < 4 * 0.1 / np.sqrt(noise.size)
    assert noise.std() == pytest.approx(0.1, rel=0.1)


def test_action_noise_is_a_fraction_of_the_half_range_and_stays_in_bounds():
    env = ActionNoise(Recorder(), 0.1)
    env.reset(seed=0)
    for _ in range(2000):
        env.step(np.array([1.0, 0.0], np.float32))
    executed = np.array(env.unwrapped.executed)
    assert executed.std(axis=0) == pytest.approx([0.1, 0.1], rel=0.1)  # half-ranges 1 and 1
    env.reset(seed=0)
    for _ in range(200):
        env.step(np.array([2.0, -1.0], np.float32))  # at the bounds: noise is clipped
    executed = np.array(env.unwrapped.executed)
    assert executed[:, 0].max() <= 2.0 and executed[:, 1].min() >= -1.0
    assert (executed[:, 0] < 2.0).any()


@pytest.mark.parametrize("k", [1, 3])
def test_action_delay_shifts_actions_by_k_steps(k):
    env = ActionDelay(Recorder(), k)
    actions = [np.array([0.1 * i, -0.05 * i], np.float32) for i in range(10)]
    for _ in range(2):  # a reset starts the delay line again
        env.reset(seed=0)
        for a in actions:
            env.step(a)
        executed = env.unwrapped.executed
        np.testing.assert_array_equal(np.array(executed[:k]), np.tile([1.0, 0.0], (k, 1)))  # the action middle
        np.testing.assert_array_equal(np.array(executed[k:]), np.array(actions[:-k]))


def test_perturbed_evaluation_is_deterministic():
    torch.manual_seed(0)
    spec = {"mass": 1.3, "obs_noise": 0.05, "action_noise": 0.1, "action_delay": 1}

    def returns(seed: int) -> np.ndarray:
        env = apply_perturbations(make_env("Pendulum-v1"), spec)
        try:
            return evaluate(actor, env, 2, seed)
        finally:
            env.close()

    actor = Actor(3, make_env("Pendulum-v1").action_space, (8,))
    first = returns(0)
    np.testing.assert_array_equal(first, returns(0))
    assert not np.array_equal(first, returns(1))


def test_noise_draws_follow_the_episode_seed(pendulum):
    env = ObservationNoise(pendulum, 0.1)
    a, _ = env.reset(seed=5)
    env.step(np.zeros(1, np.float32))
    b, _ = env.reset(seed=5)
    c, _ = env.reset(seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("items, message", [
    (["mass"], "not NAME=LEVEL"),
    (["mass=heavy"], "'heavy' is not a number"),
    (["masss=1.5"], "unknown perturbation 'masss'; known: mass, friction"),
    (["mass=0"], "a scale must be > 0"),
    (["gravity=nan"], "finite"),
    (["obs_noise=-0.1"], "a noise std must be >= 0"),
    (["action_delay=1.5"], "a delay is a whole number of steps"),
    (["mass=1.5", "mass=2"], "'mass' is given twice"),
])
def test_bad_perturbation_specs_are_clear_errors(items, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_perturbations(items)


def test_bad_levels_are_clear_errors():
    assert parse_levels(["mass=0.5,2", "gravity"]) == {"mass": (0.5, 2.0), "gravity": PERTURBATIONS["gravity"].levels}
    for items, message in ((["mass="], "lists no levels"), (["mass=0.5,x"], "'x' is not a number"),
                           (["wind"], "unknown perturbation 'wind'"), (["action_delay=-1"], "whole number")):
        with pytest.raises(ValueError, match=message):
            parse_levels(items)
    # the Python API checks what the CLI parser checks, and takes NumPy numbers
    assert sweep_points(["mass"], {"mass": [np.float32(0.5), np.int64(2)]}, "X") == [("mass", 0.5), ("mass", 2.0)]
    for levels, message in (({"wind": [1]}, "unknown perturbation 'wind'"), ({"mass": [0]}, "a scale must be > 0"),
                            ({"friction": [2]}, "'friction' does not apply to X; it supports: mass")):
        with pytest.raises(ValueError, match=message):
            sweep_points(["mass"], levels, "X")


def test_inapplicable_perturbations_list_what_the_env_supports(hopper, pendulum):
    with pytest.raises(ValueError, match="'friction' .* does not apply to Pendulum-v1; Pendulum-v1 supports: "
                                         "mass, gravity, length, obs_noise, action_noise, action_delay"):
        apply_perturbations(pendulum, {"friction": 0.8})
    with pytest.raises(ValueError, match="'length' .* does not apply to Hopper-v5; Hopper-v5 supports: mass, friction"):
        apply_perturbations(hopper, {"length": 2.0})
    with pytest.raises(ValueError, match="unknown perturbation 'wind'; Pendulum-v1 supports"):
        apply_perturbations(pendulum, {"wind": 1.0})


# ------------------------------------------------------------------------------------ the commands
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two seeds of a tiny hDQNN-TD3 run on Pendulum-v1."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (1, 2):
        train(tiny_args(root, f"seed{seed}", algo="hdqnn-td3", env_id="Pendulum-v1", seed=seed,
                        total_timesteps=120, learning_starts=40, eval_freq=120, tensorboard=False))
    return root


def test_eval_perturb_prints_the_perturbed_return_and_the_drop(tiny_runs, capsys):
    run = tiny_runs / "seed1"
    assert main(["eval", str(run), "--episodes", "1", "--perturb", "mass=1.5", "action_delay=1"]) == 0
    out = capsys.readouterr().out.splitlines()
    perturbed = evaluate_run(str(run), 1, perturb={"mass": 1.5, "action_delay": 1})[0].mean()
    unperturbed = evaluate_run(str(run), 1)[0].mean()
    assert out[0].startswith(f"hdqnn-td3 on Pendulum-v1 under mass=1.5 action_delay=1: 1 deterministic episodes, "
                             f"return {perturbed:.1f}")
    assert out[1] == (f"unperturbed on the same episodes: return {unperturbed:.1f}; relative drop "
                      f"{100 * relative_drop(unperturbed, perturbed):.1f}% (positive = worse)")

    assert main(["eval", str(run), "--perturb", "friction=0.8"]) == 2
    assert "Pendulum-v1 supports: mass, gravity, length" in capsys.readouterr().err
    assert main(["eval", str(run), "--perturb", "mass=-1"]) == 2
    assert "a scale must be > 0" in capsys.readouterr().err


def test_generalize_writes_per_run_and_pooled_tables_and_plots(tiny_runs, tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs, runs)
    broken = runs / "seed3"  # a seed without a checkpoint is reported, not fatal
    shutil.copytree(runs / "seed2", broken)
    (broken / "checkpoint.pt").unlink()
    recorded = json.loads((broken / "run.json").read_text())
    (broken / "run.json").write_text(json.dumps({**recorded, "seed": 3}))

    out = tmp_path / "out"
    assert main(["generalize", str(runs), "--episodes", "1", "--levels", "mass=0.5,2", "obs_noise=0.1",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "[3/3]" in captured.err and f"{broken} not evaluated: no checkpoint" in captured.out
    pooled = json.loads((out / "generalization.json").read_text())["rows"]
    assert [(r["perturbation"], r["level"], r["seeds"], r["ci_over"]) for r in pooled] == [
        ("none", None, 2, "seeds"), ("mass", 0.5, 2, "seeds"), ("mass", 2.0, 2, "seeds"),
        ("obs_noise", 0.1, 2, "seeds")]
    assert (out / "generalization.png").stat().st_size > 0 and "obs_noise" in (out / "generalization.txt").read_text()

    per_seed = []
    for seed in (1, 2):
        rows = json.loads((runs / f"seed{seed}" / "generalization.json").read_text())["rows"]
        assert (runs / f"seed{seed}" / "generalization.png").stat().st_size > 0
        assert rows[0]["ci_over"] == "episodes"
        # the sweep's numbers are hdqnn eval --perturb's: the same episode seeds
        assert rows[2]["mean_return"] == evaluate_run(str(runs / f"seed{seed}"), 1, perturb={"mass": 2.0})[0].mean()
        per_seed.append(rows)
    assert pooled[2]["mean_return"] == pytest.approx(np.mean([rows[2]["mean_return"] for rows in per_seed]))
    assert pooled[2]["drop"] == pytest.approx(np.mean([rows[2]["drop"] for rows in per_seed]))

    assert main(["generalize", str(runs), "--levels", "friction"]) == 2
    assert "'friction' does not apply to Pendulum-v1" in capsys.readouterr().err
