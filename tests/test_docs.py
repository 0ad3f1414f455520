"""The README names only files that exist in the repository (a newcomer follows those names)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# backticked repository paths: source, scripts, docs and configs (run-folder outputs such as
# `run.json` are not repository files and have other suffixes)
REPO_PATH = re.compile(r"`([\w./-]+\.(?:md|py|sh|yaml|toml|cpp|hpp|cu))`")


def test_readme_names_only_existing_files():
    text = (ROOT / "README.md").read_text()
    missing = sorted({name for name in REPO_PATH.findall(text) if not (ROOT / name).exists()})
    assert not missing, f"README.md names files that are not in the repository: {missing}"


def test_architecture_lives_in_the_repository():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    assert "Who may import whom" in text
    assert "ARCHITECTURE.md" in (ROOT / "tests" / "test_architecture.py").read_text()
