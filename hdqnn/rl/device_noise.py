"""The noisy device of ``hdqnn train --noise``: a fake IBM backend's calibration or a NoiseModel file.

``--noise`` names a fake device of ``qiskit_ibm_runtime.fake_provider`` (``fake_manila`` or
``FakeManilaV2``, any case; pip install qiskit-ibm-runtime) or a NoiseModel JSON file written by
``NoiseModel.to_json``. A run resolves it ONCE, at its start: the model (wire i = physical qubit
i) is written to the run folder as ``noise.json`` and its SHA-256 to ``run.json``, and the actor's
PQC runs with the model read back from ``noise.json``. A resumed run reads the same file, checked
against that hash, so it simulates the identical device even after Qiskit's calibration snapshots
change.

Gates a device does not run natively get its nearest native gate's error (``DEVICE_GATE_MAP``): the
PQC's ``ry``/``rx`` rotations borrow the qubit's ``sx`` error (an IBM device compiles them into
``sx`` pulses, two of them, so this errs on the side of less noise), and a device whose two-qubit
gate is ``ecr`` or ``cz`` lends its error to ``cx``. A ``cx`` between qubits the device does not
couple (the ring entangler's closing CNOT on a line of qubits) stays noiseless: no SWAPs are
simulated.

Torch-free (the sweep may check a run's arguments); Qiskit is imported only to resolve a name.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Optional

from ..noise import NoiseModel
from .metrics import RUN_FILE

#: The run folder's copy of the run's noise model.
NOISE_FILE = "noise.json"
#: ``run.json``'s key for the SHA-256 of ``noise.json``'s text.
NOISE_HASH_KEY = "noise_sha256"
#: Native gates whose errors the PQC's gates borrow (see the module docstring); None skips the
#: device's idle and reset errors, which an hdqnn circuit has no step for.
DEVICE_GATE_MAP: dict[str, Any] = {"sx": ["sx", "rx", "ry"], "id": None, "reset": None, "delay": None}
#: Two-qubit native gates whose error ``cx`` borrows on a device without ``cx``, in this order.
TWO_QUBIT_NATIVE = ("ecr", "cz")
#: Similar device names listed for a name that is not one.
MAX_SUGGESTIONS = 5


def is_noise_file(spec: str) -> bool:
    """A ``--noise`` value names a file (rather than a fake device) when it looks like a path."""
    return spec.lower().endswith(".json") or "/" in spec or "\\" in spec


def _key(name: str) -> str:
    """Spelling-free form of a device name: ``FakeManilaV2``, ``fake_manila`` -> ``fakemanila``."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    key = key.removesuffix("v2")
    return key if key.startswith("fake") else "fake" + key


def _snake(class_name: str) -> str:
    """``FakeManilaV2`` -> ``fake_manila`` (how the names are listed)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name.removesuffix("V2")).lower()


def fake_backends() -> dict[str, type]:
    """Every fake BackendV2 device of ``qiskit_ibm_runtime.fake_provider``: listed name -> class."""
    try:
        from qiskit.providers import BackendV2
        from qiskit_ibm_runtime import fake_provider
    except ImportError as exc:
        raise ImportError("--noise with a fake device name needs qiskit-ibm-runtime: pip install qiskit-ibm-runtime "
                          "(or pass a NoiseModel JSON file)") from exc
    out = {}
    for name in dir(fake_provider):
        cls = getattr(fake_provider, name)
        if name.startswith("Fake") and isinstance(cls, type) and issubclass(cls, BackendV2):
            out[_snake(name)] = cls
    return out


def fake_backend(name: str) -> Any:
    """The fake device called ``name`` (any spelling); ValueError listing similar names otherwise."""
    devices = fake_backends()
    by_key = {_key(listed): cls for listed, cls in devices.items()}
    cls = by_key.get(_key(name))
    if cls is None:
        similar = difflib.get_close_matches(_key(name), list(by_key), n=MAX_SUGGESTIONS, cutoff=0.6)
        names = {_key(listed): listed for listed in devices}
        hint = (f"similar names: {', '.join(names[k] for k in similar)}" if similar
                else f"the {len(devices)} fake devices: {', '.join(sorted(devices))}")
        raise ValueError(f"unknown fake device {name!r} for --noise (qiskit_ibm_runtime.fake_provider); {hint}; "
                         "or pass a NoiseModel JSON file (NoiseModel.to_json)")
    return cls()


def device_gate_map(operation_names) -> dict[str, Any]:
    """``DEVICE_GATE_MAP`` plus, on a device without ``cx``, its two-qubit gate lent to ``cx``."""
    gate_map = dict(DEVICE_GATE_MAP)
    if "cx" not in operation_names:
        native = next((g for g in TWO_QUBIT_NATIVE if g in operation_names), None)
        if native is not None:
            gate_map[native] = "cx"
    return gate_map


def device_noise(name: str, n_qubits: int) -> NoiseModel:
    """A fake device's calibrated noise on its first ``n_qubits`` qubits (wire i = qubit i)."""
    backend = fake_backend(name)
    if backend.num_qubits < n_qubits:
        raise ValueError(f"--noise {name}: the device has {backend.num_qubits} qubits but the PQC has {n_qubits} "
                         "(--qubits); pick a larger fake device")
    gate_map = device_gate_map(backend.target.operation_names)
    return NoiseModel.from_backend(backend, layout=list(range(n_qubits)), gate_map=gate_map)


def read_noise_file(path: str | Path, n_qubits: int) -> NoiseModel:
    """A NoiseModel JSON file whose wires fit an ``n_qubits`` PQC, or a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--noise {str(path)!r}: no such noise model file (or name a fake device, e.g. fake_manila)")
    try:
        model = NoiseModel.from_json(path.read_text())
    except ValueError as exc:
        raise ValueError(f"--noise {str(path)!r}: {exc}") from None
    if model.max_wire >= n_qubits:
        raise ValueError(f"--noise {str(path)!r}: the model names wire {model.max_wire} but the PQC has {n_qubits} "
                         "qubit(s) (--qubits)")
    return model


def resolve_noise(spec: str, n_qubits: int) -> NoiseModel:
    """The NoiseModel a ``--noise`` value names: a NoiseModel JSON file or a fake device."""
    return read_noise_file(spec, n_qubits) if is_noise_file(spec) else device_noise(spec, n_qubits)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def start_run_noise(args: Any, out_dir: Path) -> dict[str, str]:
    """A fresh run's noise: resolve ``args.noise`` (errors before anything is written), write it to
    ``out_dir/noise.json``; returns the ``run.json`` entry with its hash ({} without noise)."""
    if not args.noise:
        return {}
    text = resolve_noise(args.noise, args.qubits).to_json()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / NOISE_FILE).write_text(text)
    return {NOISE_HASH_KEY: text_hash(text)}


def check_run_noise(args: Any, run_dir: Path) -> dict[str, str]:
    """A resumed run's noise: ``noise.json`` must match the hash in the run's ``run.json``; returns
    that ``run.json`` entry ({} without noise)."""
    if not args.noise:
        return {}
    path = run_dir / NOISE_FILE
    try:
        want = json.loads((run_dir / RUN_FILE).read_text()).get(NOISE_HASH_KEY)
    except (OSError, ValueError):
        want = None
    if not path.is_file() or want is None:
        raise ValueError(f"the run in {str(run_dir)!r} has --noise {args.noise} but its {NOISE_FILE} or the hash in "
                         "run.json is missing: it cannot be resumed with the identical noise model")
    if text_hash(path.read_text()) != want:
        raise ValueError(f"{str(path)!r} was changed since the run started (its SHA-256 differs from run.json's "
                         f"{NOISE_HASH_KEY}): a resumed run must simulate the identical device")
    return {NOISE_HASH_KEY: want}


def actor_noise(args: Any) -> Optional[NoiseModel]:
    """The noise model an hdqnn actor's PQC runs with: None without ``args.noise``; the run's own
    ``noise.json`` when its folder has one (training, resuming, loading a policy from the run);
    else ``args.noise`` resolved now (a policy file away from its run folder)."""
    if not args.noise:
        return None
    saved = Path(args.out_dir) / NOISE_FILE if args.out_dir else None
    if saved is not None and saved.is_file():
        return read_noise_file(saved, args.qubits)
    return resolve_noise(args.noise, args.qubits)
