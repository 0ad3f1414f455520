"""The README's PyTorch example runs and prints the gradient cosine the README states (issue 16, item 5)."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    section = README.read_text().split("## Quantum layers in PyTorch", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_pytorch_example_prints_the_cosine_the_readme_states():
    code = _example()
    assert "requires_grad_(False)" in code, "qtdnn needs frozen or bound circuit weights (README's own advice)"
    stated = float(re.search(r"surrogate VJP vs exact adjoint: ([0-9.]+)", code).group(1))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    printed = float(out.getvalue().strip().splitlines()[-1])
    assert printed > 0.9
    assert abs(printed - stated) < 0.02, f"README states {stated}, the example prints {printed}"
