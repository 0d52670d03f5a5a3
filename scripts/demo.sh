#!/usr/bin/env bash
# Install Sante and run the demo hospital on localhost: `sante demo` seeds it once (a provincial general hospital
# with its departments, beds, staff and their accounts, the formulary, 300 synthetic Vietnamese patients and the
# Synthea patients from ../shared) into an embedded SQLite database, prints the accounts and serves the web app
# and the FHIR API.
#   bash scripts/demo.sh [--host H] [--port P] [--data-dir D] [--patients N] [--no-synthea] [--seed-only]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/sante demo "$@"
