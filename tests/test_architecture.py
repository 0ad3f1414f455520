"""ARCHITECTURE.md's import table, enforced: each layer imports only what it may."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hdqnn"
LAYERS = ("circuits", "noise", "backends", "sim", "autograd", "qasm", "hardware", "interop", "rl", "sweep")
# layer -> imports it must not make (hdqnn layers and third-party roots). backends may use the
# circuits table (gate codes and matrices): a NumPy-only leaf, departure noted in the README.
FORBIDDEN = {
    "circuits": {"backends", "sim", "autograd", "qasm", "hardware", "rl", "torch"},
    # channels and noise models beside the circuit IR (Qiskit only lazily, in noise/importers.py)
    "noise": {"backends", "sim", "autograd", "qasm", "hardware", "rl", "torch"},
    "backends": {"sim", "autograd", "qasm", "hardware", "rl", "torch"},
    "sim": {"autograd", "qasm", "hardware", "rl"},
    "autograd": {"qasm", "hardware", "rl"},
    "qasm": {"backends", "sim", "torch", "autograd", "hardware", "rl"},
    "hardware": {"autograd", "rl"},
    # bridges to other SDKs (Qiskit imported lazily), above sim/ and autograd/
    "interop": {"rl", "sweep"},
    "rl": set(),
    # the sweep drives `hdqnn train` runs; torch stays in the trial processes
    "sweep": {"torch"},
}


def _imports(path: Path) -> set[str]:
    """Top-level names a module imports: hdqnn layers for relative/absolute hdqnn imports."""
    tree = ast.parse(path.read_text())
    layer_depth = len(path.relative_to(PACKAGE).parts) - 1
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                names.add(parts[1] if parts[0] == "hdqnn" and len(parts) > 1 else parts[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "hdqnn":
                    names.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
                else:
                    names.add(parts[0])
            elif node.level > layer_depth:  # climbs out of the layer: from ..sim import x
                names.add(node.module.split(".")[0] if node.module else node.names[0].name)
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_follow_design(layer):
    folder = PACKAGE / layer
    if not folder.exists():
        pytest.skip(f"hdqnn/{layer} not written yet")
    for path in folder.rglob("*.py"):
        bad = _imports(path) & FORBIDDEN[layer]
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}, forbidden for {layer}/"
