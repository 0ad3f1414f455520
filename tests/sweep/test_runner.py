"""The sweep runner in local processes on the fake train: layout, skip, permanent failures, and a
killed trial that resumes to the same result as an uninterrupted sweep."""
from __future__ import annotations

import io
import json
import sys
import threading

import pytest

from hdqnn.sweep.progress import ProgressBoard
from hdqnn.sweep.runner import decide, plan
from hdqnn.sweep.worker import AttemptResult
from tests.sweep.helpers import KILL_TIMEOUT_S, finals, kill_when_checkpointed, run_quietly, run_with_a_kill


def test_tiny_sweep_runs_every_trial_with_the_layout(tiny, fake_train):
    config = tiny()
    report, text = run_quietly(config, fake_train, compare=True)
    assert [o.state for o in report.outcomes] == ["finished"] * 4, text
    assert len(set(finals(report).values())) == 4  # each seed/config its own run
    root = config.out
    manifest = json.loads((root / "sweep.json").read_text())
    assert len(manifest["trials"]) == 4
    for trial in manifest["trials"]:
        run = root / trial["run_dir"]
        assert (run / "summary.json").is_file() and (run / "checkpoint.pt").is_file()
        slug = trial["name"].replace("/", "__")
        assert json.loads((root / "status" / f"{slug}.json").read_text())["state"] == "finished"
        args = json.loads((run / "run.json").read_text())
        assert args["tag"] == trial["label"] and args["threads"] == 1 and args["progress"] is False
    assert json.loads((root / "summary.json").read_text())["runner"] == "local processes"
    assert "final return" in report.table and (root / "compare.png").is_file()
    assert "configurations:" in text and "hdqnn-td3__" in text


def test_rerun_skips_finished_trials(tiny, fake_train):
    config = tiny()
    first, _ = run_quietly(config, fake_train)
    logs = {p.name: p.read_text() for p in (config.out / "logs").iterdir()}
    again, text = run_quietly(config, fake_train)
    assert [o.state for o in again.outcomes] == ["skipped"] * 4, text
    assert finals(again) == finals(first)
    assert {p.name: p.read_text() for p in (config.out / "logs").iterdir()} == logs  # nothing ran


def test_rerun_resumes_an_unfinished_trial(tiny, fake_train):
    """A trial killed with no retries left fails; running the sweep again resumes it from its
    checkpoint, to the result of an uninterrupted sweep."""
    config = tiny(step_seconds=0.02, checkpoint_freq=10)
    reference, _ = run_quietly(config, fake_train)
    config.out = config.out.with_name("interrupted")
    config.max_retries = 0
    victim = plan(config, fake_train)[0]
    results = {}
    sweep = threading.Thread(target=lambda: results.update(report=run_quietly(config, fake_train)[0]))
    sweep.start()
    kill_when_checkpointed(config.out, victim.slug, "pid")
    sweep.join(timeout=KILL_TIMEOUT_S)
    assert [o.state for o in results["report"].outcomes] == ["failed", "finished", "finished", "finished"]
    config.max_retries = 2
    again, text = run_quietly(config, fake_train)
    assert [o.state for o in again.outcomes] == ["finished", "skipped", "skipped", "skipped"], text
    assert "resume from its checkpoint" in (config.out / "logs" / f"{victim.slug}.log").read_text()
    assert finals(again) == finals(reference)


def test_config_failure_is_reported_once_not_retried(tiny, fake_train):
    config = tiny()
    config.trials = [{}, {"fail": "error"}]
    report, text = run_quietly(config, fake_train)
    failed = report.failed
    assert len(failed) == 4 and len([o for o in report.outcomes if o.state == "finished"]) == 4
    assert all(o.attempts == 1 for o in failed)
    assert "fake train cannot run Pendulum-v1" in failed[0].message
    assert text.count(f"FAILED {failed[0].name}") == 1
    assert "retry" not in text


def test_worker_killed_every_time_fails_after_max_retries(tiny, fake_train):
    config = tiny(max_retries=1, fail="kill")
    config.grid = {"seed": [0]}
    report, text = run_quietly(config, fake_train)
    (outcome,) = report.outcomes
    assert outcome.state == "failed" and outcome.attempts == 2
    assert "SIGKILL" in outcome.message and text.count("retry ") == 1


def test_killed_trial_resumes_to_the_uninterrupted_result(tiny, fake_train):
    config = tiny(step_seconds=0.02, checkpoint_freq=10)
    reference, _ = run_quietly(config, fake_train)
    config.out = config.out.with_name("killed")
    assert finals(run_with_a_kill(config, fake_train, "local", "pid")) == finals(reference)


@pytest.mark.parametrize("result, attempts, expected", [
    (AttemptResult("t", 1, 0, True), 1, "finished"),
    (AttemptResult("t", 1, -9, False), 1, "retry"),
    (AttemptResult("t", 3, -9, False), 3, "failed"),
    (AttemptResult("t", 1, None, False, crashed="WorkerCrashedError"), 1, "retry"),
    (AttemptResult("t", 1, 143, False), 1, "retry"),  # train saved a checkpoint on SIGTERM
    (AttemptResult("t", 1, 1, False, log_tail="Traceback\nValueError: bad env\n"), 1, "failed"),
    (AttemptResult("t", 1, 0, False), 1, "failed"),
    (AttemptResult("t", 1, None, False, error="locked"), 1, "failed"),
])
def test_retry_policy(result, attempts, expected):
    state, why = decide(result, attempts, max_retries=2)
    assert state == expected
    if result.returncode == 1:
        assert "ValueError: bad env" in why


def test_without_ray_auto_runs_local_processes_and_says_so(tiny, fake_train, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    config = tiny()
    config.grid = {"seed": [0]}
    report, text = run_quietly(config, fake_train, runner="auto")
    assert "Ray is not installed" in text and report.runner == "local processes"
    with pytest.raises(ImportError, match=r"pip install hdqnn\[ray\]"):
        run_quietly(config, fake_train, runner="ray")


def test_live_board_redraws_one_line_per_running_trial(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 10, "charts/episodic_return": -5.0}\n{"step": 20, "eval/')
    stream = io.StringIO()
    board = ProgressBoard(stream, live=True)
    board.started("cfg/seed0", run, total_steps=100, attempt=2)
    board.refresh(force=True)
    board.event("done   other/seed1")
    text = stream.getvalue()
    assert "cfg/seed0  step 10/100  return -5.0  eval -  ETA -  (attempt 2)" in text  # torn last line skipped
    assert "\x1b[1F\x1b[J" + "done   other/seed1" in text  # erased, event printed, block redrawn
    assert text.endswith("(attempt 2)\n")


def test_a_worker_that_cannot_see_the_sweep_folder_fails_once(tmp_path):
    """On a cluster whose nodes do not share --out, the attempt says so instead of training."""
    from hdqnn.sweep.worker import AttemptSpec, start_attempt

    spec = AttemptSpec("c/seed0", "c__seed0", str(tmp_path / "elsewhere"), str(tmp_path / "run"), [], [], 1)
    result = start_attempt(spec)
    assert result.error is not None and "shared by every node" in result.error
    assert decide(result, 1, max_retries=2)[0] == "failed"
