"""Helpers of the sweep tests: a quiet sweep run, final results, and a sweep with a killed trial."""
from __future__ import annotations

import io
import json
import os
import signal
import threading
import time

from hdqnn.sweep import run_sweep
from hdqnn.sweep.runner import plan

KILL_TIMEOUT_S = 60.0


def run_quietly(config, train, runner="local", compare=False):
    """run_sweep with plain progress into a string: (report, printed text)."""
    stream = io.StringIO()
    report = run_sweep(config, train, runner=runner, stream=stream, live=False, compare=compare,
                       progress_interval_s=0.5)
    return report, stream.getvalue()


def finals(report) -> dict[str, float]:
    """Trial name -> final evaluation return."""
    return {o.name: o.final_eval for o in report.outcomes}


def kill_when_checkpointed(root, slug, which):
    """Kill the trial's ``which`` process ('pid': train, 'worker_pid': its worker) once it has a
    checkpoint and is still running; returns the killed pid."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    status = root / "status" / f"{slug}.json"
    while time.monotonic() < deadline:
        try:
            data = json.loads(status.read_text())
        except (OSError, json.JSONDecodeError):
            data = {}
        run_dir = data.get("run_dir")
        if (data.get("state") == "running" and run_dir and os.path.exists(os.path.join(run_dir, "checkpoint.pt"))
                and not os.path.exists(os.path.join(run_dir, "summary.json"))):
            os.kill(data[which], signal.SIGKILL)
            return data[which]
        time.sleep(0.05)
    raise AssertionError(f"{slug} never reached a checkpoint while running")


def run_with_a_kill(config, train, runner, which):
    """Run ``config`` killing its first trial's ``which`` process ('pid': train, 'worker_pid': the
    worker running it) once it has a checkpoint; checks the kill was retried with a resume."""
    victim = plan(config, train)[0]
    results = {}
    sweep = threading.Thread(target=lambda: results.update(zip(("report", "text"), run_quietly(config, train, runner))))
    sweep.start()
    kill_when_checkpointed(config.out, victim.slug, which)
    sweep.join(timeout=KILL_TIMEOUT_S * 4)
    assert not sweep.is_alive()
    report, text = results["report"], results["text"]
    assert {o.name: o for o in report.outcomes}[victim.name].attempts == 2, text
    assert f"retry  {victim.name}" in text
    assert "resume from its checkpoint" in (config.out / "logs" / f"{victim.slug}.log").read_text()
    assert all(o.state == "finished" for o in report.outcomes), text
    return report
