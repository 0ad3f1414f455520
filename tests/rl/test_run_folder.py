"""A run folder under faults: corrupted checkpoints, damaged logs and two writers at once."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hdqnn.cli import main
from hdqnn.rl import CheckpointError, evaluate_run, load_checkpoint, train
from hdqnn.rl.checkpoint import HEADER_SIZE, LOCK_FILE, RunFolderLock, RunFolderLocked
from hdqnn.rl.compare import compare_runs
from hdqnn.rl.metrics import METRICS_FILE, read_metrics, restore_log

from .conftest import tiny_args

#: Seconds a helper process may take to import torch and take the lock on a loaded machine.
CHILD_START_S = 120


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished run (one checkpoint, one evaluation) that tests copy before changing."""
    args = tiny_args(tmp_path_factory.mktemp("runs"), algo="td3", total_timesteps=80, eval_freq=80)
    train(args)
    return Path(args.out_dir)


@pytest.fixture
def run_dir(finished_run, tmp_path):
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _flip_a_tensor_byte(run_dir: Path) -> None:
    """Flip one bit inside the actor's first weight matrix as stored in ``checkpoint.pt``."""
    path = run_dir / "checkpoint.pt"
    weight = next(iter(load_checkpoint(run_dir)["agent"]["actor"].values()))
    data = bytearray(path.read_bytes())
    at = data.find(weight.numpy().tobytes())
    assert at > HEADER_SIZE
    data[at + 5] ^= 0x10
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------ checksums
def test_flipped_byte_in_a_checkpoint_is_refused_and_changes_nothing(run_dir, capsys):
    _flip_a_tensor_byte(run_dir)
    before = _snapshot(run_dir)
    with pytest.raises(CheckpointError, match="checkpoint.pt.*corrupted.*SHA-256"):
        train(resume=str(run_dir), total_timesteps=120)
    with pytest.raises(CheckpointError, match="SHA-256"):
        evaluate_run(str(run_dir), episodes=1)
    assert main(["train", "--resume", str(run_dir), "--steps", "120", "--no-progress"]) == 2
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{run_dir / 'checkpoint.pt'}") == 2 and "Traceback" not in err
    assert _snapshot(run_dir) == before


def test_damaged_checkpoint_header_is_refused(run_dir):
    path = run_dir / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    data[HEADER_SIZE - 3] ^= 0x01  # a digit of the recorded hash
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(run_dir)
    path.write_bytes(b"garbage" + bytes(data[7:]))
    with pytest.raises(CheckpointError, match="header is missing or damaged"):
        load_checkpoint(run_dir)


def test_checkpoint_without_checksum_loads_with_a_warning(run_dir):
    """Checkpoints written before the checksum (a bare torch zip) still load, unverified."""
    state = load_checkpoint(run_dir)
    path = run_dir / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[HEADER_SIZE:])
    with pytest.warns(RuntimeWarning, match="no checksum"):
        old = load_checkpoint(run_dir)
    assert old["global_step"] == state["global_step"]
    assert torch.equal(next(iter(old["agent"]["actor"].values())), next(iter(state["agent"]["actor"].values())))


# ------------------------------------------------------------------------------------ metrics.jsonl
def _assert_clean_log(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert b"\0" not in data and data.endswith(b"\n")
    return list(read_metrics(path.parent))


def test_truncated_log_is_repaired_on_resume_never_nul_padded(run_dir):
    path = run_dir / METRICS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # lost records, the last line torn
    with pytest.warns(RuntimeWarning, match="repaired on resume"):
        summary = train(resume=str(run_dir), total_timesteps=120)
    assert summary["total_timesteps"] == 120
    records = _assert_clean_log(path)
    notes = [r for r in records if "note" in r]
    assert len(notes) == 1 and "of the" in notes[0]["note"] and "torn" in notes[0]["note"]
    assert records[-1]["step"] == 120
    assert compare_runs([run_dir])[0]["steps"] == 120


def test_restore_log_cases(tmp_path):
    path = tmp_path / METRICS_FILE
    lines = [json.dumps({"step": s, "wall_time": 0.0, "x": s}) + "\n" for s in (10, 20, 30)]
    whole = "".join(lines).encode()

    path.write_bytes(whole)  # longer than the checkpoint's: cut at its size, no note
    assert restore_log(path, len(lines[0]) + len(lines[1])) is None
    assert path.read_bytes() == whole[: len(lines[0]) + len(lines[1])]

    # the old bug's file: a short log NUL-padded to the checkpoint's size, then appended to
    padded = lines[0].encode() + b"\0" * 7 + lines[1].encode() + lines[2].encode()
    path.write_bytes(padded)
    with pytest.warns(RuntimeWarning, match="NUL bytes removed"):
        restore_log(path, len(padded))
    assert [r["step"] for r in _assert_clean_log(path)] == [10, 20, 30, 30]

    path.write_bytes(whole[:-5])  # shorter than expected, torn mid-line
    with pytest.warns(RuntimeWarning, match="1 damaged or torn lines dropped"):
        note = restore_log(path, len(whole))
    assert f"{len(whole) - 5} of the {len(whole)} bytes" in note
    assert [r.get("step") for r in _assert_clean_log(path)] == [10, 20, 20]

    path.unlink()  # missing altogether
    with pytest.warns(RuntimeWarning, match="0 records kept"):
        restore_log(path, 100)
    assert [r["step"] for r in _assert_clean_log(path)] == [0]

    path.unlink()
    assert restore_log(path, 0) is None and path.read_bytes() == b""  # a fresh run's empty log


def test_garbled_log_line_is_an_error_naming_file_and_line(tmp_path):
    (tmp_path / METRICS_FILE).write_bytes(b'{"step": 1}\n\x00\x00{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: malformed record"):
        list(read_metrics(tmp_path))


# ------------------------------------------------------------------------------------ one writer
def test_run_folder_lock_admits_one_holder(tmp_path):
    first = RunFolderLock()
    first.acquire(tmp_path / "run", fresh=True)
    with pytest.raises(RunFolderLocked, match=f"pid {os.getpid()} on "):
        RunFolderLock().acquire(tmp_path / "run", fresh=True)
    first.release()
    assert (tmp_path / "run" / LOCK_FILE).read_bytes() == b""  # released: no holder recorded
    with RunFolderLock() as second:
        second.acquire(tmp_path / "run", fresh=True)
    # a folder to resume must hold a checkpoint: a mistyped one is not created or written to
    with pytest.raises(CheckpointError, match="does not exist"):
        RunFolderLock().acquire(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(resume=str(tmp_path / "empty"))
    assert not (tmp_path / "missing").exists() and not any((tmp_path / "empty").iterdir())


HOLDER = textwrap.dedent("""
    import sys
    from hdqnn.rl.checkpoint import RunFolderLock
    lock = RunFolderLock()
    lock.acquire(sys.argv[1])
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or kills us)
""")


def test_second_writer_is_refused_while_the_first_runs(run_dir):
    before = _snapshot(run_dir)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"  # blocks until the child holds the lock
        with pytest.raises(RunFolderLocked, match=f"pid {holder.pid} on .*wait for it to end"):
            train(resume=str(run_dir), total_timesteps=120)
        with pytest.raises(RunFolderLocked, match=f"pid {holder.pid}"):
            train(tiny_args(run_dir.parent, "run", algo="td3", total_timesteps=80))
        holder.kill()  # a holder that dies releases the lock: the kernel drops its flock
        holder.wait(CHILD_START_S)
    finally:
        holder.kill()
        holder.wait(CHILD_START_S)
        holder.stdout.close()
        holder.stdin.close()
    after = _snapshot(run_dir)
    assert json.loads(after.pop(LOCK_FILE))["pid"] == holder.pid  # the dead holder's record stays
    assert after == {k: v for k, v in before.items() if k != LOCK_FILE}
    assert train(resume=str(run_dir), total_timesteps=120)["total_timesteps"] == 120
    assert (run_dir / LOCK_FILE).read_bytes() == b""
