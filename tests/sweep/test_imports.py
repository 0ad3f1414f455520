"""The sweep reads train's flags from ``hdqnn.rl.args``, never from the ``hdqnn`` command (which
imports the sweep: the two modules must not import each other)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hdqnn.sweep
from hdqnn.rl.args import train_parser
from hdqnn.sweep.cli import load_train_command

SWEEP = Path(hdqnn.sweep.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (``from .. import cli`` -> ``hdqnn.cli``)."""
    package = ["hdqnn", "sweep"]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_sweep_does_not_import_the_hdqnn_command():
    for path in SWEEP.rglob("*.py"):
        assert "hdqnn.cli" not in _imported_modules(path), path.name


def test_sweep_checks_options_with_trains_own_parser():
    train = load_train_command()
    flags = {a.dest for a in train_parser()._actions}
    assert all(train.has(dest) for dest in flags - {"help"})


def test_planning_a_sweep_loads_no_torch():
    """The sweep driver reads train's flags at run time: that must not load torch (architecture)."""
    code = ("import sys; from hdqnn.sweep.cli import load_train_command; load_train_command(); "
            "from hdqnn.rl.args import Args, PRESETS; "
            "sys.exit(1 if 'torch' in sys.modules or 'gymnasium' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
