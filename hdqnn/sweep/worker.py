"""One attempt at a trial: a ``hdqnn train`` process, fresh or resumed, under a lock.

This is the code that runs where the trial runs: in the sweep's own process for the local runner,
inside a Ray task on a Ray worker otherwise. It imports neither Ray nor torch.

An attempt takes the trial's lock (so two workers never write one run folder), looks at the run
folder (finished: nothing to do; checkpoint: ``--resume``; else a fresh start), and starts train
through a small launcher that asks Linux to kill it when its parent dies (``PR_SET_PDEATHSIG``):
a killed Ray worker must not leave an orphan training on, racing its own retry. The child inherits
the lock's file descriptor, so the lock is held until both the worker and the child are gone.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from . import contract

LOCK_WAIT_S = 30.0
LOCK_POLL_S = 0.2
LOG_TAIL_BYTES = 4096
#: Thread-count variables set to the trial's CPUs so a trial never oversubscribes its share.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
#: Runs ``argv[2:]`` with PR_SET_PDEATHSIG=SIGKILL (Linux), or exits if the parent is already gone.
LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "    if os.getppid() != int(sys.argv[1]):\n"
    "        sys.exit('hdqnn sweep: the worker that started this trial is gone')\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
#: The sweep's manifest; a worker that cannot see it is on a node that does not share the folder.
MANIFEST_FILE = "sweep.json"
LOG_DIR, STATUS_DIR, LOCK_DIR = "logs", "status", "locks"


class TrialSetupError(RuntimeError):
    """An attempt could not start for a reason a retry cannot fix (message says which)."""


@dataclass
class AttemptSpec:
    """Everything a worker needs to run one attempt (plain data: it travels to Ray workers).

    fresh_args / resume_args: train arguments for a fresh start and for a resume;
    command: the train command (None: this interpreter's ``python -m hdqnn train``).
    """

    name: str
    slug: str
    root: str
    run_dir: str
    fresh_args: list[str]
    resume_args: list[str]
    attempt: int
    cpus: int = 1
    command: list[str] | None = None

    @property
    def log_path(self) -> Path:
        return Path(self.root) / LOG_DIR / f"{self.slug}.log"

    @property
    def status_path(self) -> Path:
        return Path(self.root) / STATUS_DIR / f"{self.slug}.json"

    @property
    def lock_path(self) -> Path:
        return Path(self.root) / LOCK_DIR / f"{self.slug}.lock"


@dataclass
class AttemptResult:
    """How an attempt ended.

    returncode: train's exit status (negative: killed by that signal; None: train never ran);
    finished: the run folder holds a finished run afterwards; resumed: it started from a checkpoint;
    error: why it could not start (permanent); crashed: why the worker vanished under it (a retry
    resumes); log_tail: the end of the trial's log.
    """

    name: str
    attempt: int
    returncode: int | None
    finished: bool
    resumed: bool = False
    wall_s: float = 0.0
    error: str | None = None
    crashed: str | None = None
    log_tail: str = ""
    host: str = field(default_factory=socket.gethostname)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON through a temporary file and a rename (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def log_tail(path: Path, size: int = LOG_TAIL_BYTES) -> str:
    """The last ``size`` bytes of a log, decoded leniently."""
    try:
        with open(path, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - size, 0))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _acquire_lock(path: Path) -> int:
    """An exclusive ``flock`` on ``path``; TrialSetupError if another process holds it too long."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise TrialSetupError(f"trial is locked by another process ({path}); is another sweep "
                                      "running on this folder?") from None
            time.sleep(LOCK_POLL_S)


def _child_env(cpus: int) -> dict[str, str]:
    """This environment with the trial's thread counts and this hdqnn first on the path."""
    env = dict(os.environ)
    for name in THREAD_ENV:
        env[name] = str(cpus)
    env["PYTHONUNBUFFERED"] = "1"
    package_root = str(Path(__file__).resolve().parents[2])
    if Path(package_root).name not in ("site-packages", "dist-packages"):
        # an uninstalled checkout: the child must import the same hdqnn as this process
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in paths if p != package_root])
    return env


class RunningAttempt:
    """A started train process; ``poll()`` it, then ``result()`` once it has exited."""

    def __init__(self, spec: AttemptSpec, process: subprocess.Popen, lock_fd: int, log: IO[bytes],
                 resumed: bool, started: float):
        self.spec = spec
        self.process = process
        self.resumed = resumed
        self.started = started
        self._lock_fd = lock_fd
        self._log = log

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self) -> int:
        return self.process.wait()

    def terminate(self) -> None:
        """Ask train to stop (SIGTERM); its last checkpoint stays for a later resume."""
        if self.process.poll() is None:
            self.process.terminate()

    def result(self) -> AttemptResult:
        """Release the lock and report (call after the process has exited)."""
        returncode = self.process.wait()
        self._log.close()
        os.close(self._lock_fd)
        run_dir = Path(self.spec.run_dir)
        return AttemptResult(
            name=self.spec.name, attempt=self.spec.attempt, returncode=returncode,
            finished=contract.run_state(run_dir).finished, resumed=self.resumed,
            wall_s=time.time() - self.started, log_tail=log_tail(self.spec.log_path))


def start_attempt(spec: AttemptSpec) -> RunningAttempt | AttemptResult:
    """Start train for ``spec``: resume from the run's checkpoint if it has one.

    Returns an AttemptResult straight away when the run is already finished or cannot start
    (``error`` says why; such errors are permanent), else the RunningAttempt.
    """
    root = Path(spec.root)
    if not (root / MANIFEST_FILE).is_file():
        return AttemptResult(spec.name, spec.attempt, None, False, error=(
            f"the sweep folder {root} is not visible on {socket.gethostname()}: a sweep on a Ray "
            "cluster needs its --out folder on a filesystem shared by every node"))
    try:
        lock_fd = _acquire_lock(spec.lock_path)
    except TrialSetupError as exc:
        return AttemptResult(spec.name, spec.attempt, None, False, error=str(exc))
    run_dir = Path(spec.run_dir)
    state = contract.run_state(run_dir)
    if state.finished:
        os.close(lock_fd)
        return AttemptResult(spec.name, spec.attempt, 0, True)
    args = spec.resume_args if state.has_checkpoint else spec.fresh_args
    command = spec.command or [sys.executable, "-m", "hdqnn", "train"]
    argv = [sys.executable, "-c", LAUNCHER, str(os.getpid()), *command, *args]
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(spec.log_path, "ab")
    started = time.time()
    how = "resume from its checkpoint" if state.has_checkpoint else "fresh start"
    log.write(f"=== hdqnn sweep: attempt {spec.attempt} ({how}) on {socket.gethostname()} at "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command + args)}\n".encode())
    log.flush()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               env=_child_env(spec.cpus), pass_fds=(lock_fd,), start_new_session=True)
    write_json_atomic(spec.status_path, {
        "name": spec.name, "state": "running", "attempt": spec.attempt, "pid": process.pid,
        "worker_pid": os.getpid(), "host": socket.gethostname(), "started": started,
        "resumed": state.has_checkpoint, "run_dir": str(run_dir)})
    return RunningAttempt(spec, process, lock_fd, log, state.has_checkpoint, started)


def run_attempt(spec: AttemptSpec) -> dict[str, Any]:
    """Run one attempt to its end (the body of a Ray task); the AttemptResult as a dict."""
    started = start_attempt(spec)
    if isinstance(started, AttemptResult):
        return asdict(started)
    started.wait()
    return asdict(started.result())


__all__ = ["AttemptSpec", "AttemptResult", "RunningAttempt", "TrialSetupError", "start_attempt", "run_attempt",
           "write_json_atomic", "read_json", "log_tail", "MANIFEST_FILE", "LOG_DIR", "STATUS_DIR", "LOCK_DIR"]
