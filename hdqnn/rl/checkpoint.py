"""Checksummed atomic checkpoints of a training run, the run folder's one-writer lock, RNG states.

A checkpoint file is a one-line header, ``hdqnn-checkpoint sha256=<64 hex digits>\n``, then one
``torch.save`` payload holding only tensors and plain values, so it loads with
``torch.load(weights_only=True)`` (no code runs from a checkpoint). The header holds the SHA-256 of
the payload, checked before anything is unpickled: torch's zip reader does not check its records'
CRCs, so without it a flipped bit in a tensor loads silently as a different model. The file is
written to a temporary file, fsynced, and renamed over the previous one: a run killed at any moment
leaves either the old or the new checkpoint, never a torn one.

Checkpoints written before the checksum (a bare torch zip) still load, with a warning that they
cannot be verified; the next checkpoint of a resumed run has the header.

One process writes a run folder at a time: ``RunFolderLock`` holds an exclusive ``flock`` on the
folder's ``.lock`` file while ``train`` runs (the kernel releases it when the process dies) and
writes the holder's pid and host into it, so a second writer is refused at once with a message
naming the holder. Releasing the lock empties the file again, so a resume that fails (a corrupted
checkpoint, say) leaves every file of the folder as it was.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
import random
import socket
import time
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = ".lock"
FORMAT = "hdqnn-rl-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "args", "global_step", "agent", "rng")
#: The header: this prefix, the payload's SHA-256 in hex, a newline.
HEADER_PREFIX = b"hdqnn-checkpoint sha256="
HEADER_SIZE = len(HEADER_PREFIX) + 64 + 1
#: How a torch zip payload starts (a checkpoint without a header: written before checksums).
ZIP_MAGIC = b"PK\x03\x04"
HASH_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupted, or not an hdqnn RL checkpoint."""


class RunFolderLocked(ValueError):
    """Another process is writing the run folder."""


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


class _HashingWriter:
    """A write-only file that passes bytes to ``file`` and hashes them on the way."""

    def __init__(self, file: IO[bytes]):
        self.file = file
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format tags) to ``run_dir/checkpoint.pt`` atomically, with its checksum."""
    return write_checksummed(checkpoint_path(run_dir), {"format": FORMAT, "version": VERSION, **state})


def write_checksummed(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` behind the checksum header, atomically (the checkpoint's
    file format; ``hdqnn.rl.policy`` writes its policy files with it too)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(HEADER_PREFIX + b"0" * 64 + b"\n")  # placeholder: the hash is known once written
        payload = _HashingWriter(f)
        torch.save(obj, payload)
        f.seek(len(HEADER_PREFIX))
        f.write(payload.sha256.hexdigest().encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _verified_payload(f: IO[bytes], path: Path, what: str = "checkpoint", headerless_ok: bool = True) -> None:
    """Check the header's checksum against the payload and leave ``f`` at the payload's start;
    a headerless (pre-checksum) checkpoint is accepted with a warning if ``headerless_ok``."""
    header = f.read(HEADER_SIZE)
    if header.startswith(ZIP_MAGIC) and headerless_ok:
        warnings.warn(f"checkpoint {str(path)!r} has no checksum (written by an older hdqnn): it is loaded "
                      "unverified", RuntimeWarning, stacklevel=4)
        f.seek(0)
        return
    if not header.startswith(HEADER_PREFIX) or not header.endswith(b"\n"):
        raise CheckpointError(f"{what} {str(path)!r} is corrupted or not an hdqnn {what}: "
                              "its header is missing or damaged")
    expected = header[len(HEADER_PREFIX):-1].decode("ascii", "replace")
    sha256 = hashlib.sha256()
    while chunk := f.read(HASH_CHUNK):
        sha256.update(chunk)
    if sha256.hexdigest() != expected:
        raise CheckpointError(f"{what} {str(path)!r} is corrupted: its SHA-256 checksum does not match "
                              "its contents (a damaged or truncated file); nothing was loaded")
    f.seek(HEADER_SIZE)


def _existing_checkpoint(run_dir: str | os.PathLike) -> Path:
    """``run_dir``'s checkpoint file; CheckpointError if the folder or the file is missing."""
    path = checkpoint_path(run_dir)
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run folder {str(run_dir)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {str(run_dir)!r} (expected {path.name}); was the run "
                              "started with a checkpoint frequency and did it reach its first checkpoint?")
    return path


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint of ``run_dir``, its checksum verified; CheckpointError naming the problem otherwise."""
    path = _existing_checkpoint(run_dir)
    state = read_checksummed(path)
    check_saved_state(state, path, "checkpoint", "an hdqnn RL checkpoint", FORMAT, VERSION, REQUIRED_KEYS)
    return state


def check_saved_state(state: Any, path: str | os.PathLike, what: str, foreign: str, fmt: str, version: int,
                      required: tuple[str, ...]) -> None:
    """CheckpointError unless ``state`` is a dict of format ``fmt``, version ``version``, holding every
    ``required`` key. ``what`` names the kind of file; a file of another format "is not ``foreign``"."""
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise CheckpointError(f"{str(path)!r} is not {foreign}")
    if state.get("version") != version:
        raise CheckpointError(f"{str(path)!r} has {what} version {state.get('version')}; "
                              f"this hdqnn reads version {version}")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{what} {str(path)!r} lacks {', '.join(missing)}")


def read_checksummed(path: str | os.PathLike, what: str = "checkpoint", headerless_ok: bool = True) -> Any:
    """The object in a file ``write_checksummed`` wrote, its checksum verified before anything is
    unpickled (``weights_only``: no code runs from it); CheckpointError calling it ``what`` otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            _verified_payload(f, path, what, headerless_ok)
            # torch reads the zip archive that starts at the file's position (after the header)
            return torch.load(f, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{what} {str(path)!r} is corrupted or unreadable: {exc}") from exc


class RunFolderLock:
    """The exclusive right to write one run folder, for the life of a ``with`` block.

    ``acquire(run_dir)`` takes it (RunFolderLocked naming the holder if another process has it);
    leaving the block releases it. A lock that was never acquired releases nothing.
    """

    def __init__(self) -> None:
        self._fd: int | None = None

    def acquire(self, run_dir: str | os.PathLike, fresh: bool = False) -> None:
        """Lock ``run_dir``: a fresh run's folder (made if missing), else a run to resume (it must
        hold a checkpoint, so a mistyped folder gets no lock file)."""
        run_dir = Path(run_dir)
        if fresh:
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            _existing_checkpoint(run_dir)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise RunFolderLocked(f"run folder {str(run_dir)!r} is being written by another process "
                                  f"({holder}); wait for it to end or stop it, then try again") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # before unlocking: no later holder's record is erased
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunFolderLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_holder(fd: int) -> str:
    """Who holds a lock, as its file records it ("pid 123 on host, since ..."), for messages."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):  # empty: the holder is starting up
        return "a process that is starting up"


def global_rng_state() -> dict[str, Any]:
    """Python's, NumPy's legacy and torch's global RNG states."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def set_global_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    legacy = state["numpy"]
    np.random.set_state((legacy["name"], legacy["keys"].numpy().astype(np.uint32), legacy["pos"],
                         legacy["has_gauss"], legacy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global RNG and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
