"""Adapters: counts agree with the engine's probabilities within 5 sigma, bit order, Pauli
estimates, usage accounting, batching into jobs, retries, timeouts and missing SDKs."""
from __future__ import annotations

import math

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit
from hdqnn.hardware import (
    HardwareBackend,
    LocalSampler,
    ShotRunner,
    expectations_from_counts,
    measurement_groups,
    qiskit_key_to_hdqnn,
    wait_for,
    with_measurement_basis,
)
from hdqnn.hardware.base import require
from hdqnn.qasm import dumps
from tests.circuit_factory import random_circuit
from tests.hardware.conftest import ENGINE
from tests.qasm.optional import import_or_skip

SIGMAS = 5.0
SHOTS = 2000


def within_shot_bounds(counts: dict[str, int], probs: np.ndarray, shots: int) -> None:
    """Every outcome's frequency within 5 sigma of its probability (keys: wire 0 first)."""
    assert sum(counts.values()) == shots
    observed = np.zeros_like(probs)
    for key, count in counts.items():
        observed[int(key, 2)] = count / shots
    bound = SIGMAS * np.sqrt(probs * (1 - probs) / shots) + 1.0 / shots
    worst = int(np.argmax(np.abs(observed - probs) - bound))
    assert np.all(np.abs(observed - probs) <= bound), (
        f"outcome {worst:0{int(math.log2(len(probs)))}b}: observed {observed[worst]}, p = {probs[worst]}")


def test_adapters_follow_the_protocols(adapter):
    assert isinstance(adapter, HardwareBackend)
    assert isinstance(adapter, hdqnn.CircuitRunner)


@pytest.mark.parametrize("wire", [0, 2])
def test_count_keys_put_wire_0_first(adapter, wire):
    counts = adapter.submit([dumps(Circuit(3).x(wire), version=adapter.version, dialect=adapter.dialect)], 10)
    assert counts == [{"".join("1" if q == wire else "0" for q in range(3)): 10}]


def test_counts_agree_with_probabilities(adapter):
    rng = np.random.default_rng(11)
    c = random_circuit(rng, 3)
    x, w = rng.normal(size=(2, c.n_inputs)), rng.normal(size=c.n_weights)
    counts = adapter.submit(adapter.export(c, x, w), SHOTS)
    probs = hdqnn.probabilities(c, x, w, backend=ENGINE)
    for row_counts, row_probs in zip(counts, probs):
        within_shot_bounds(row_counts, row_probs, SHOTS)
    assert adapter.shots_used == 2 * SHOTS and adapter.circuits_run == 2


def test_run_estimates_pauli_strings(adapter):
    rng = np.random.default_rng(12)
    c = hdqnn.ansatz.hardware_efficient(3, 1)
    x, w = rng.normal(size=(2, 3)), rng.normal(size=c.n_weights)
    observables = ["ZII", "IZZ", "XIX", "IYI", "XXI", "ZIZ"]
    got = adapter.run(c, x, w, SHOTS, observables)
    want = hdqnn.expval(c, x, w, observables, backend=ENGINE)
    bound = SIGMAS * np.sqrt((1 - want**2) / SHOTS) + 1.0 / SHOTS
    assert got.shape == (2, 6) and got.dtype == np.float64
    assert np.all(np.abs(got - want) <= bound), np.abs(got - want) / bound
    n_bases = len(measurement_groups(hdqnn.circuits.compile_observables(observables, 3)))
    assert adapter.shots_used == n_bases * 2 * SHOTS


def test_per_sample_weights_and_int8_tables_are_accepted():
    sampler = LocalSampler(0, backend=ENGINE)
    c = Circuit(2).ry(hdqnn.Weight(0), 0).ry(hdqnn.Weight(1), 1)
    w = np.array([[np.pi, 0.0], [0.0, np.pi]])
    table = hdqnn.circuits.compile_observables(None, 2)
    np.testing.assert_array_equal(sampler.run(c, None, w, 50, table), [[-1.0, 1.0], [1.0, -1.0]])


def test_measurement_groups_share_compatible_bases():
    table = hdqnn.circuits.compile_observables(["ZII", "IZZ", "XIX", "IYI", "XXI", "ZIZ"], 3)
    assert measurement_groups(table) == [("ZZZ", [0, 1, 5]), ("XYX", [2, 3]), ("XXZ", [4])]


def test_basis_rotation_turns_x_and_y_into_z():
    c = Circuit(2).h(0).h(1).sdg(1)  # |+> (X = +1) and |-i> (Y = -1)
    rotated = with_measurement_basis(c, "XY")
    probs = hdqnn.probabilities(rotated, backend=ENGINE)[0]
    assert probs[0b01] == pytest.approx(1.0)  # X0 -> bit 0, Y1 -> bit 1 (eigenvalue -1)
    assert with_measurement_basis(c, "ZZ") is c


def test_expectations_from_counts_reads_keys_wire_0_first():
    counts = {"10": 3, "00": 1}
    masks = np.array([[True, False], [False, True], [True, True]])
    np.testing.assert_allclose(expectations_from_counts(counts, masks), [-0.5, 1.0, -0.5])
    with pytest.raises(ValueError, match="has 3 bits"):
        expectations_from_counts({"101": 1}, masks)


def test_qiskit_keys_are_reversed():
    assert qiskit_key_to_hdqnn("001") == "100"
    assert qiskit_key_to_hdqnn("01 10") == "0110"[::-1]


# --------------------------------------------------------------------------- job machinery
class FlakyDevice(ShotRunner):
    """Fails its first ``failures`` jobs, then answers every program with all-zero counts."""

    def __init__(self, failures: int = 0, error: Exception | None = None, **kwargs) -> None:
        kwargs.setdefault("retry_delay", 0.0)
        super().__init__(**kwargs)
        self.failures = failures
        self.error = error or ConnectionError("device busy")
        self.jobs: list[int] = []

    def _run_job(self, programs, shots):
        self.jobs.append(len(programs))
        if self.failures:
            self.failures -= 1
            raise self.error
        return [{"0": shots} for _ in programs]


def test_programs_are_batched_into_jobs_of_max_batch():
    device = FlakyDevice(max_batch=4)
    device.submit(["p"] * 10, 5)
    assert device.jobs == [4, 4, 2]
    assert (device.jobs_run, device.circuits_run, device.shots_used) == (3, 10, 50)
    device.reset_usage()
    assert (device.jobs_run, device.circuits_run, device.shots_used) == (0, 0, 0)


def test_failed_jobs_are_retried():
    device = FlakyDevice(failures=2, retries=2)
    assert device.submit(["p"], 3) == [{"0": 3}]
    assert device.jobs == [1, 1, 1] and device.jobs_run == 1


def test_retries_exhausted_raise_with_the_last_error():
    device = FlakyDevice(failures=3, retries=2)
    with pytest.raises(RuntimeError, match="failed 3 time.*ConnectionError: device busy"):
        device.submit(["p"], 3)
    assert device.shots_used == 0


def test_bad_programs_are_not_retried():
    device = FlakyDevice(failures=5, retries=3, error=ValueError("bad program"))
    with pytest.raises(ValueError, match="bad program"):
        device.submit(["p"], 3)
    assert device.jobs == [1]


class SlowJob:
    def __init__(self) -> None:
        self.cancelled = False

    def done(self) -> bool:
        return False

    def cancel(self) -> None:
        self.cancelled = True

    def result(self):
        raise AssertionError("result() of an unfinished job")


def test_a_job_past_its_timeout_is_cancelled():
    job = SlowJob()
    with pytest.raises(TimeoutError, match="0.05 s"):
        wait_for(job, 0.05)
    assert job.cancelled


def test_a_timeout_on_the_qiskit_adapter_is_retried_then_reported():
    aer = import_or_skip("qiskit_aer", "qiskit")
    from hdqnn.hardware import QiskitAdapter

    adapter = QiskitAdapter(aer.AerSimulator(), timeout=1e-9, retries=1, retry_delay=0.0)
    circuit = hdqnn.ansatz.hardware_efficient(12, 4)
    program = dumps(circuit, np.zeros(circuit.n_inputs), np.zeros(circuit.n_weights), "2.0")
    with pytest.raises(RuntimeError, match="failed 2 time.*TimeoutError"):
        adapter.submit([program], 100)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch": 0}, "max_batch"), ({"timeout": -1}, "timeout"), ({"retries": -1}, "retries"),
    ({"retry_delay": -1.0}, "retry_delay"),
])
def test_bad_job_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlakyDevice(**kwargs)


def test_bad_submissions():
    sampler = LocalSampler(0, backend=ENGINE)
    with pytest.raises(ValueError, match="needs shots"):
        sampler.run(Circuit(1).h(0), None, None, None)
    with pytest.raises(ValueError, match="positive int"):
        sampler.submit([dumps(Circuit(1).h(0))], 0)
    with pytest.raises(TypeError, match="sequence of programs"):
        sampler.submit(dumps(Circuit(1).h(0)), 10)
    with pytest.raises(ValueError, match=r"free parameters: \['in_0'\]"):
        sampler.submit([dumps(Circuit(1).rx(hdqnn.Input(0), 0))], 10)


def test_local_sampler_is_reproducible_and_follows_measure_statements():
    text = 'OPENQASM 3.0;\nqubit[2] q;\nbit[2] c;\nx q[0];\nc[1] = measure q[0];\nc[0] = measure q[1];\n'
    assert LocalSampler(3, backend=ENGINE).submit([text], 7) == [{"01": 7}]
    c = random_circuit(np.random.default_rng(1), 2)
    x, w = np.ones((2, c.n_inputs)), np.ones(c.n_weights)
    runs = [LocalSampler(5, backend=ENGINE).run(c, x, w, 100) for _ in range(2)]
    np.testing.assert_array_equal(*runs)


def test_missing_sdk_message_names_the_extra():
    with pytest.raises(ImportError, match=r"pip install 'hdqnn\[braket\]'"):
        require("hdqnn_no_such_sdk", "braket", "BraketAdapter")


def test_braket_adapter_limits_gates_to_the_device_and_uses_program_sets():
    import_or_skip("braket.devices", "braket")
    from hdqnn.hardware import BraketAdapter

    adapter = BraketAdapter()
    assert "cnot" in adapter.basis and "crx" not in adapter.basis
    assert adapter._batch_size(1000) == 100 and adapter._batch_size(10000) == 20
    adapter.submit([dumps(Circuit(2).crx(0.3, 0, 1), dialect="braket")] * 3, 10)
    assert adapter.jobs_run == 1
