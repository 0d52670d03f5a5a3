#!/usr/bin/env bash
# Install what the tests need (a virtual environment in .venv) and run the whole test suite.
# Extra arguments go to pytest. Exits non-zero when a test fails or when no test ran (pytest's code 5).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
