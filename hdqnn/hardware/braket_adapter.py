"""Run hdqnn circuits on Amazon Braket: any device that accepts OpenQASM 3 programs.

Programs are written in the ``braket`` dialect of :func:`hdqnn.qasm.dumps` (Braket's builtin
gate names, no include), limited to the device's ``supportedOperations`` so a QPU receives only
gates it accepts. A device that runs program sets gets a whole batch as ONE task (Braket
charges per task and per shot); others get one task per program. Braket writes a count key in
the order of the measurement statements, ``c[0]`` (wire 0) first, as hdqnn does.
"""
from __future__ import annotations

from typing import Any

from .base import ShotRunner, require


class BraketAdapter(ShotRunner):
    """A Braket device as an hdqnn device.

    device:        e.g. ``braket.aws.AwsDevice(arn)`` (credentials come from the AWS config) or
                   ``braket.devices.LocalSimulator()`` (the default; offline).
    device_gates:  restrict exported gates to the device's supported operations (default True).
    max_batch:     programs per task; capped by the device's program-set limits.
    timeout:       seconds a task may take (AWS devices; the local simulator runs synchronously).
    retries, retry_delay: see :class:`ShotRunner`.
    """

    version = "3.0"
    dialect = "braket"

    def __init__(self, device: Any = None, *, device_gates: bool = True, max_batch: int | None = None,
                 timeout: float | None = None, retries: int = 2, retry_delay: float = 1.0,
                 poll_interval: float = 1.0) -> None:
        super().__init__(max_batch=max_batch, timeout=timeout, retries=retries, retry_delay=retry_delay)
        require("braket.devices", "braket", "BraketAdapter")
        from braket.device_schema import DeviceActionType
        from braket.devices import LocalSimulator

        self.device = LocalSimulator() if device is None else device
        self.local = isinstance(self.device, LocalSimulator)
        actions = self.device.properties.action
        if DeviceActionType.OPENQASM not in actions:
            raise ValueError(f"Braket device {getattr(self.device, 'name', self.device)!r} does not "
                             "accept OpenQASM programs")
        supported = getattr(actions[DeviceActionType.OPENQASM], "supportedOperations", None)
        self.basis = list(supported) if device_gates and supported else None
        self.program_set = actions.get(DeviceActionType.OPENQASM_PROGRAM_SET)
        self.poll_interval = poll_interval

    def _device_batch_limit(self, shots: int) -> int | None:
        if self.program_set is None:
            return None
        limits = [self.program_set.maximumExecutables]
        if self.program_set.maximumTotalShots:
            if shots > self.program_set.maximumTotalShots:
                raise ValueError(f"{shots} shots exceed the device's limit of "
                                 f"{self.program_set.maximumTotalShots} per task")
            limits.append(self.program_set.maximumTotalShots // shots)
        return min(x for x in limits if x)

    def _task_options(self) -> dict[str, Any]:
        if self.local:
            return {}
        options: dict[str, Any] = {"poll_interval_seconds": self.poll_interval}
        if self.timeout is not None:
            options["poll_timeout_seconds"] = self.timeout
        return options

    def _result(self, task: Any) -> Any:
        result = task.result()
        if result is None:  # an AWS task past poll_timeout_seconds returns None
            task.cancel()
            raise TimeoutError(f"Braket task did not finish within {self.timeout} s (cancelled)")
        return result

    def _run_job(self, programs: list[str], shots: int) -> list[dict[str, int]]:
        from braket.ir.openqasm import Program

        if self.program_set is not None:
            from braket.program_sets import ProgramSet

            batch = ProgramSet([Program(source=p) for p in programs], shots_per_executable=shots)
            task = self.device.run(batch, shots=shots * len(programs), **self._task_options())
            return [dict(entry.entries[0].counts) for entry in self._result(task).entries]
        tasks = [self.device.run(Program(source=p), shots=shots, **self._task_options()) for p in programs]
        return [dict(self._result(t).measurement_counts) for t in tasks]
