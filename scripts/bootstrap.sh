#!/usr/bin/env bash
# Creates ./.venv (Python 3.11) and installs od_meta with its test extras.
# Idempotent: a later run re-installs only when setup.py changed (or the
# install is broken), so the default job does not pay pip's resolution time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
STAMP=.venv/.od_meta_setup_sha256
WANT="$(sha256sum setup.py | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || \
   ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(not all(
       u.find_spec(m) for m in ('od_meta', 'tensorflow', 'pycocotools')))"; then
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$WANT" > "$STAMP"
fi
