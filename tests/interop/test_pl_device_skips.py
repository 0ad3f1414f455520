"""pl_device_skips.txt (the PennyLane device-suite tests CI deselects) against what hdqnn.qubit supports:
every listed operation is one the device rejects, every rejected operation of the suite's gate table is
listed, and every listed node id is a test the suite really has."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.qasm.optional import import_or_skip

qml = import_or_skip("pennylane", "pennylane")
import_or_skip("pytest_mock", "test")  # the device suite's own requirements (pl-device-test checks them)
import_or_skip("flaky", "test")

from pennylane.devices.tests import get_device_tests  # noqa: E402  (after the optional import)
from pennylane.exceptions import DeviceError  # noqa: E402

from hdqnn.interop.pennylane import HdqnnQubit  # noqa: E402

SKIPS_FILE = Path(__file__).with_name("pl_device_skips.txt")
GATE_TEST = "test_gates.py::TestSupportedGates::test_supported_gates_can_be_implemented"


class Skip(NamedTuple):
    node_id: str
    operation: str
    reason: str


def read_skips(path: Path = SKIPS_FILE) -> list[Skip]:
    """The file's entries: ``node id | operation | reason`` per line, ``#`` lines are comments."""
    skips = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 3 or not all(fields):
            raise ValueError(f"{path.name}:{number}: expected 'node id | operation | reason', got {line!r}")
        skips.append(Skip(*fields))
    return skips


def _suite_gates() -> dict:
    """The suite's gate table (test_gates.ops): operation name -> instance."""
    with warnings.catch_warnings():  # the module marks itself with the suite's own skip_unsupported mark
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        from pennylane.devices.tests.test_gates import ops

    return ops


def _rejected(op) -> bool:
    """True when hdqnn.qubit's preprocessing refuses ``op`` as unsupported (what the suite checks)."""
    program = HdqnnQubit(wires=4).preprocess_transforms()
    try:
        program((qml.tape.QuantumScript([op], [qml.expval(qml.Z(0))]),))
    except DeviceError as exc:
        return "not supported" in str(exc)
    return False


def test_entries_are_well_formed_and_unique():
    skips = read_skips()
    assert skips, "the file lists no test"
    ids = [s.node_id for s in skips]
    assert len(ids) == len(set(ids)), "a node id is listed twice"
    for s in skips:
        if s.node_id.startswith(GATE_TEST):
            assert s.node_id == f"{GATE_TEST}[device_kwargs0-{s.operation}]", s


def test_malformed_line_names_the_line(tmp_path):
    path = tmp_path / "skips.txt"
    path.write_text("# comment\ntest_a.py::test_b | RX\n")
    with pytest.raises(ValueError, match=r"skips.txt:2: expected 'node id \| operation \| reason'"):
        read_skips(path)


def test_every_listed_operation_is_rejected_by_the_device():
    gates = _suite_gates()
    for operation in sorted({s.operation for s in read_skips()}):
        assert operation in gates, f"{operation} is not in the suite's gate table: cannot check it"
        assert _rejected(gates[operation]), f"hdqnn.qubit runs {operation}: remove its lines from {SKIPS_FILE.name}"


def test_every_rejected_gate_of_the_suite_is_listed():
    listed = {s.operation for s in read_skips() if s.node_id.startswith(GATE_TEST)}
    rejected = {name for name, op in _suite_gates().items() if _rejected(op)}
    assert rejected == listed


def test_every_listed_node_id_is_a_test_of_the_suite():
    """A stale id would deselect nothing; collection needs no device (the name only parametrizes)."""
    skips = read_skips()
    modules = sorted({str(Path(get_device_tests()) / s.node_id.split("::")[0]) for s in skips})
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *modules,
         "--device=hdqnn.qubit"], capture_output=True, text=True, timeout=120)
    ids = {line.strip() for line in collected.stdout.splitlines()}
    missing = [s.node_id for s in skips if s.node_id not in ids]
    assert not missing, (missing, collected.stdout[-2000:], collected.stderr[-2000:])
