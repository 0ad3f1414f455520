"""bench/run_cmd.sh, which every RL benchmark script uses to train, resume or extend its runs and to
start from another budget's finished runs (FROM=DIR), on hand-made run folders. That an extended run
equals one trained from scratch at the larger budget is tested in tests/rl/test_train.py."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

RUN_CMD = Path(__file__).resolve().parents[1] / "bench" / "run_cmd.sh"


def _bash(script: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HDQNN": "hdqnn", "PYTHON": sys.executable, "COMMON": "--threads 1", "OUT": str(out)}
    return subprocess.run(["bash", "-c", f"set -euo pipefail; . {shlex.quote(str(RUN_CMD))}; {script}"],
                          capture_output=True, text=True, env=env, check=True)


def _run_folder(path: Path, algo: str, steps: int, finished: bool = True, anneal_lr: bool | None = None) -> Path:
    path.mkdir(parents=True)
    args = {"algo": algo, "total_timesteps": steps, **({} if anneal_lr is None else {"anneal_lr": anneal_lr})}
    (path / "run.json").write_text(json.dumps(args))
    (path / "checkpoint.pt").write_bytes(b"state")
    if finished:
        (path / "summary.json").write_text(json.dumps({"total_timesteps": steps}))
        os.utime(path / "checkpoint.pt", (1_000_000, 1_000_000))  # the final checkpoint precedes the summary
    return path


def test_a_new_run_is_trained_with_the_common_flags(tmp_path):
    out = _bash(f"run_cmd {tmp_path}/td3/seed1 --algo td3 --steps 500", tmp_path).stdout
    assert out == f"hdqnn train --threads 1 --algo td3 --steps 500 --out {tmp_path}/td3/seed1 " \
                  f"> {tmp_path}/td3/seed1.log 2>&1\n"
    assert (tmp_path / "td3").is_dir()


def test_an_unfinished_run_is_resumed_and_a_finished_one_left_alone(tmp_path):
    _run_folder(tmp_path / "a", "td3", 500, finished=False)
    _run_folder(tmp_path / "b", "td3", 500)
    out = _bash(f"run_cmd {tmp_path}/a --steps 500; run_cmd {tmp_path}/b --steps 500; "
                f"run_cmd {tmp_path}/b --steps 400", tmp_path).stdout
    assert out == f"hdqnn train --resume {tmp_path}/a --no-progress >> {tmp_path}/a.log 2>&1\n"


def test_a_run_finished_at_a_smaller_budget_is_extended(tmp_path):
    _run_folder(tmp_path / "sac", "hdqnn-sac", 500)
    out = _bash(f"run_cmd {tmp_path}/sac --algo hdqnn-sac --steps 800 --seed 2", tmp_path).stdout
    assert out == f"hdqnn train --resume {tmp_path}/sac --steps 800 --no-progress >> {tmp_path}/sac.log 2>&1\n"


@pytest.mark.parametrize("anneal_lr, extended", [(True, False), (False, True)])
def test_ppo_is_extended_only_without_an_annealed_learning_rate(tmp_path, anneal_lr, extended):
    _run_folder(tmp_path / "ppo", "ppo", 500, anneal_lr=anneal_lr)
    done = _bash(f"run_cmd {tmp_path}/ppo --algo ppo --steps 800", tmp_path)
    assert bool(done.stdout) == extended
    assert ("anneals its learning rate" in done.stderr) == (not extended)


def test_copy_finished_runs_copies_what_can_be_extended_so_that_it_reads_as_finished(tmp_path):
    source, out = tmp_path / "small", tmp_path / "large"
    _run_folder(source / "td3" / "seed1", "td3", 500)
    (source / "td3" / "seed1.log").write_text("the first 500 steps\n")
    (source / "td3" / "seed1" / "generalization.json").write_text("{}")  # the small budget's sweep
    _run_folder(source / "ppo" / "seed1", "ppo", 500, anneal_lr=True)
    _run_folder(source / "sac" / "seed1", "sac", 500, finished=False)
    _run_folder(out / "fc-td3" / "seed1", "fc-td3", 800, finished=False)
    _run_folder(source / "fc-td3" / "seed1", "fc-td3", 500)  # OUT's own run is kept
    printed = _bash(f"copy_finished_runs {source}; run_cmd {out}/td3/seed1 --steps 800", out).stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/seed1")) == ["fc-td3/seed1", "td3/seed1"]
    assert (out / "td3" / "seed1.log").read_text() == "the first 500 steps\n"
    assert not (out / "td3" / "seed1" / "generalization.json").exists()
    assert json.loads((out / "fc-td3" / "seed1" / "run.json").read_text())["total_timesteps"] == 800
    assert printed == f"hdqnn train --resume {out}/td3/seed1 --steps 800 --no-progress >> {out}/td3/seed1.log 2>&1\n"
