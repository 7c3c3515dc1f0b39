#!/usr/bin/env bash
# Creates ./.venv (Python 3.11) and installs od_meta with its test extras.
# Idempotent: a second run only re-installs od_meta itself in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
.venv/bin/python -m pip install -q -e ".[test]"
