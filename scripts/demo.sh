#!/usr/bin/env bash
# Install Sante and run what exists of the demo so far: validate the synthetic Synthea patients shipped in
# ../shared with the R4 validator and show a summary. (The demo hospital web app arrives with later work.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
DATA=${1:-../shared/data/synthea-r4}
exec .venv/bin/sante validate "$DATA"
