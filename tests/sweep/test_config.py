"""Sweep configs: malformed ones name the field; grid expansion; stable, config-hash trial names."""
from __future__ import annotations

import argparse

import pytest

from hdqnn.sweep import SweepConfigError, parse_config
from hdqnn.sweep.cli import add_sweep_subparser, config_from_args
from hdqnn.sweep.runner import plan
from hdqnn.sweep.trials import config_hash

BASE = {"out": "unused", "base": {"env": "Pendulum-v1", "steps": 60}}


def _parse(fake_train, raw):
    return parse_config(raw, fake_train.resolve, source="bad.yaml")


@pytest.mark.parametrize("raw, field, words", [
    ({**BASE, "gird": {"seed": [0]}}, "gird", "did you mean 'grid'"),
    ({**BASE, "grid": {"seed": 3}}, "grid.seed", "non-empty list"),
    ({**BASE, "grid": {"seed": []}}, "grid.seed", "non-empty list"),
    ({**BASE, "grid": {"seed": [0, 0]}}, "grid.seed[1]", "repeats"),
    ({**BASE, "grid": {"algo": ["td3", "ddpg"]}}, "grid.algo[1]", "invalid choice"),
    ({**BASE, "grid": {"qubit": [4, 6]}}, "grid.qubit[0]", "did you mean 'qubits'"),
    ({**BASE, "base": {"steps": "many"}}, "base.steps", "invalid int value"),
    ({**BASE, "base": {"env": "NoSuchEnv-v9"}}, "base.env", "unknown Gymnasium environment"),
    ({**BASE, "base": {"out": "x"}}, "base.out", "chosen by the sweep"),
    ({**BASE, "base": {"resume": "x"}}, "base.resume", "resumes unfinished trials"),
    ({**BASE, "base": {"progress": "yes"}}, "base.progress", "switch"),
    ({**BASE, "base": {"qubits": None}}, "base.qubits", "number, string or boolean"),
    ({**BASE, "base": {"env": "Pendulum-v1", "env_id": "Pendulum-v1"}}, "base.env_id", "second time"),
    ({**BASE, "base": [1, 2]}, "base", "mapping"),
    ({**BASE, "trials": {"qubits": 4}}, "trials", "non-empty list"),
    ({**BASE, "grid": {"qubits": [4, 6]}, "trials": [{"qubits": 2}]}, "trials[0].qubits", "also swept"),
    ({**BASE, "parallel": 0}, "parallel", "integer >= 1"),
    ({**BASE, "max_retries": -1}, "max_retries", "integer >= 0"),
    ({"base": {"steps": 60}}, "out", "required"),
])
def test_malformed_config_names_the_field(fake_train, raw, field, words):
    with pytest.raises(SweepConfigError) as info:
        _parse(fake_train, raw)
    message = str(info.value)
    assert f"field {field!r}" in message and words in message, message


def test_an_unversioned_env_is_the_trial_train_would_run(fake_train):
    """train runs ``Pendulum`` as Pendulum-v1: the sweep names (and hashes) it so, once."""
    short, full = (plan(_parse(fake_train, {**BASE, "base": {"env": env, "steps": 60}}), fake_train)[0]
                   for env in ("Pendulum", "Pendulum-v1"))
    assert short.name == full.name and short.options["env_id"] == "Pendulum-v1"


def test_grid_expands_every_combination_seed_major(fake_train):
    config = _parse(fake_train, {**BASE, "grid": {"algo": ["td3", "hdqnn-td3"], "seed": [0, 1, 2]},
                                 "trials": [{"qubits": 4}, {"qubits": 6}]})
    trials = plan(config, fake_train)
    assert len(trials) == 2 * 2 * 3
    assert [t.seed for t in trials] == [0] * 4 + [1] * 4 + [2] * 4
    assert len({t.name for t in trials}) == 12
    assert len({t.label for t in trials}) == 4  # configurations: seeds share a label
    first = trials[0]
    assert first.options == {"algo": "td3", "env_id": "Pendulum-v1", "seed": 0, "total_timesteps": 60,
                             "qubits": 4}
    assert first.name == f"Pendulum-v1__{first.label}/seed0" and first.label.startswith("td3__")


def test_names_depend_only_on_the_options(fake_train):
    """Key order, option spelling and number spelling do not change a name; a value does."""
    a = _parse(fake_train, {"out": "x", "base": {"env": "Pendulum-v1", "learning-rate": "1e-3", "qubits": 4},
                            "grid": {"seed": [0, 1]}})
    b = _parse(fake_train, {"out": "x", "grid": {"seed": [1, 0]},
                            "base": {"qubits": 4, "learning_rate": 0.001, "env_id": "Pendulum-v1"}})
    c = _parse(fake_train, {"out": "x", "base": {"env": "Pendulum-v1", "learning-rate": 1e-3, "qubits": 6},
                            "grid": {"seed": [0, 1]}})
    names = [sorted(t.name for t in plan(cfg, fake_train)) for cfg in (a, b, c)]
    assert names[0] == names[1]
    assert set(names[0]).isdisjoint(names[2])


def test_label_is_a_hash_of_the_options_without_seed_and_env(fake_train):
    config = _parse(fake_train, {"out": "x", "base": {"algo": "td3", "steps": 60},
                                 "grid": {"env": ["Pendulum-v1", "MountainCarContinuous-v0"], "seed": [3]}})
    trials = plan(config, fake_train)
    expected = config_hash({"algo": "td3", "total_timesteps": 60})
    assert [t.label for t in trials] == [f"td3__{expected}"] * 2
    assert {t.group for t in trials} == {f"Pendulum-v1__td3__{expected}", f"MountainCarContinuous-v0__td3__{expected}"}
    # the hash itself is pinned: a change of hashing would orphan every existing sweep folder
    assert config_hash({"algo": "td3", "total_timesteps": 60}) == "99b112c0"


def test_train_defaults_are_written_out(fake_train):
    config = _parse(fake_train, {"out": "x"})
    (trial,) = plan(config, fake_train)
    assert trial.options == {"algo": "hdqnn-td3", "env_id": "Pendulum-v1", "seed": 1}


def test_two_entries_of_the_same_run_are_an_error(fake_train):
    config = _parse(fake_train, {"out": "x", "trials": [{"qubits": 4}, {"qubits": 4}]})
    with pytest.raises(SweepConfigError, match="repeats the run"):
        plan(config, fake_train)


def test_list_valued_options(fake_train):
    config = _parse(fake_train, {"out": "x", "grid": {"hidden-sizes": [[64, 64], [32]]}})
    assert [t.options["hidden_sizes"] for t in plan(config, fake_train)] == [[64, 64], [32]]
    assert fake_train.tokens("hidden_sizes", [64, 64]) == ["--hidden-sizes", "64", "64"]
    assert fake_train.tokens("progress", False) == ["--no-progress"]


def _cli(argv):
    parser = argparse.ArgumentParser()
    add_sweep_subparser(parser.add_subparsers())
    return parser.parse_args(["sweep", *argv])


def test_flags_override_the_file(tmp_path, fake_train):
    path = tmp_path / "s.yaml"
    path.write_text("out: runs/x\nbase: {env: Pendulum-v1, steps: 60}\ngrid: {algo: [td3, fc-td3], seed: [0]}\n")
    args = _cli([str(path), "--algo", "rbg-td3", "--seeds", "4", "5", "--set", "qubits=[2, 3]",
                 "--set", "progress=true", "--out", str(tmp_path / "o"), "--parallel", "3"])
    config = config_from_args(args, fake_train)
    assert config.out == tmp_path / "o" and config.parallel == 3
    assert config.base == {"env_id": "Pendulum-v1", "total_timesteps": 60, "algo": "rbg-td3", "progress": True}
    assert config.grid == {"seed": [4, 5], "qubits": [2, 3]}


def test_flag_errors_name_the_flag(fake_train):
    with pytest.raises(SweepConfigError, match="field '--qubitz'.*did you mean 'qubits'"):
        config_from_args(_cli(["--out", "x", "--set", "qubitz=3"]), fake_train)
    with pytest.raises(SweepConfigError, match="OPTION=VALUE"):
        config_from_args(_cli(["--out", "x", "--set", "qubits"]), fake_train)


def test_unreadable_files(tmp_path, fake_train):
    with pytest.raises(SweepConfigError, match="does not exist"):
        config_from_args(_cli([str(tmp_path / "missing.yaml")]), fake_train)
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {algo: [td3\n")
    with pytest.raises(SweepConfigError, match="not valid YAML"):
        config_from_args(_cli([str(bad)]), fake_train)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SweepConfigError, match="must be a mapping"):
        config_from_args(_cli([str(bad)]), fake_train)
