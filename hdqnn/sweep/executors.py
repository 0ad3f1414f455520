"""Where attempts run: local processes, or Ray tasks on a local instance or a cluster.

Both executors take ``AttemptSpec``s and hand back ``AttemptResult``s; the sweep's driver decides
about retries, so both behave the same. Ray is imported only by ``RayExecutor``.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from .worker import AttemptResult, AttemptSpec, RunningAttempt, run_attempt, start_attempt

POLL_S = 0.2
#: Kept small: a sweep ships only small dicts through Ray, and this machine's memory is shared.
OBJECT_STORE_BYTES = 100 * 2**20
RAY_MISSING = ("Ray is not installed: `pip install hdqnn[ray]` (or `pip install ray`) to run sweeps on Ray, "
               "or pass --runner local to use local processes")


def _crash_result(spec: AttemptSpec, reason: str) -> AttemptResult:
    return AttemptResult(spec.name, spec.attempt, None, False, crashed=reason)


class LocalExecutor:
    """Attempts as child processes of this process, ``slots`` at a time."""

    description = "local processes"

    def __init__(self, slots: int):
        self.slots = slots
        self._running: dict[str, RunningAttempt] = {}
        self._done: list[AttemptResult] = []

    def submit(self, spec: AttemptSpec) -> None:
        started = start_attempt(spec)
        if isinstance(started, AttemptResult):
            self._done.append(started)
        else:
            self._running[spec.name] = started

    def wait(self, timeout: float) -> list[AttemptResult]:
        """Results of attempts that ended, waiting up to ``timeout`` seconds for the first."""
        deadline = time.monotonic() + timeout
        while True:
            for name, attempt in list(self._running.items()):
                if attempt.poll() is not None:
                    self._done.append(self._running.pop(name).result())
            if self._done or time.monotonic() >= deadline:
                done, self._done = self._done, []
                return done
            time.sleep(POLL_S)

    def stop(self) -> None:
        """Terminate every running attempt (their checkpoints stay for a resume)."""
        for attempt in self._running.values():
            attempt.terminate()
        for attempt in self._running.values():
            attempt.result()
        self._running.clear()

    def close(self) -> None:
        self.stop()


def import_ray():
    """The ``ray`` module, or ImportError with how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(RAY_MISSING) from exc
    return ray


def ray_available() -> bool:
    try:
        import_ray()
    except ImportError:
        return False
    return True


class RayExecutor:
    """Attempts as Ray tasks of ``cpus_per_trial`` CPUs each.

    address None starts a private local Ray instance (``address="local"``: never attaches to
    another one by accident) sized to ``slots * cpus_per_trial`` CPUs, light: no dashboard, a
    100 MB object store, workers' output left in the trial logs. ``auto`` or ``ray://host:port``
    uses a running cluster as it is; ``slots`` then defaults to its CPUs / ``cpus_per_trial``.
    """

    def __init__(self, slots: int | None, cpus_per_trial: int, address: str | None = None):
        ray = import_ray()
        self._ray = ray
        kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING,
                                      namespace="hdqnn-sweep")
        if address is None:
            local_slots = slots or max(1, (os.cpu_count() or 1) // cpus_per_trial)
            kwargs.update(address="local", num_cpus=local_slots * cpus_per_trial, include_dashboard=False,
                          object_store_memory=OBJECT_STORE_BYTES)
            self.description = f"a local Ray instance ({local_slots * cpus_per_trial} CPUs)"
        else:
            kwargs.update(address=address)
            self.description = f"the Ray cluster at {address}"
        ray.init(**kwargs)
        cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
        if cluster_cpus < cpus_per_trial:
            ray.shutdown()
            raise RuntimeError(f"the Ray cluster has {cluster_cpus} CPUs; a trial needs {cpus_per_trial}")
        self.slots = slots or max(1, cluster_cpus // cpus_per_trial)
        # max_retries=0: the driver retries (with a resume), so there is one retry count to report
        self._task = ray.remote(run_attempt).options(num_cpus=cpus_per_trial, max_retries=0)
        self._refs: dict[Any, AttemptSpec] = {}

    def submit(self, spec: AttemptSpec) -> None:
        self._refs[self._task.remote(spec)] = spec

    def wait(self, timeout: float) -> list[AttemptResult]:
        if not self._refs:
            time.sleep(timeout)
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:  # collect whatever else is done too
            ready, _ = self._ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        return [self._result(ref) for ref in ready]

    def _result(self, ref: Any) -> AttemptResult:
        spec = self._refs.pop(ref)
        exceptions = self._ray.exceptions
        try:
            return AttemptResult(**self._ray.get(ref))
        except exceptions.RayTaskError as exc:  # our own code raised on the worker: permanent
            return AttemptResult(spec.name, spec.attempt, None, False, error=f"worker error: {exc.cause!r}")
        except exceptions.RayError as exc:  # worker or node died, out of memory, ...: retry
            return _crash_result(spec, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def stop(self) -> None:
        """Cancel running tasks (force: their workers die, and the trainings with them)."""
        for ref in list(self._refs):
            self._ray.cancel(ref, force=True)
        self._refs.clear()

    def close(self) -> None:
        self.stop()
        self._ray.shutdown()


__all__ = ["LocalExecutor", "RayExecutor", "import_ray", "ray_available", "RAY_MISSING"]
