#!/usr/bin/env bash
# Set-up from nothing: a virtual environment in .venv with torch (pinned: an unpinned torch pulls a
# multi-GB CUDA build), then hdqnn with its compiled C++ core and the test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HDQNN_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
python -m hdqnn info
