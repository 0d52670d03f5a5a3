#!/usr/bin/env bash
# Install Sante and run what exists of the demo hospital so far: the FHIR R4 API on localhost, over an embedded
# SQLite database loaded (once) with the synthetic Synthea patients from ../shared. The web app comes later.
#   bash scripts/demo.sh [--host H] [--port P] [--data-dir D]
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=127.0.0.1 PORT=8080 DATA=data/demo
while [ $# -gt 0 ]; do
  case "$1" in
    --host) HOST=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --data-dir) DATA=$2; shift 2 ;;
    *) echo "usage: bash scripts/demo.sh [--host H] [--port P] [--data-dir D]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
export SANTE_DATA_DIR="$DATA"
SYNTHEA=../shared/data/synthea-r4
if [ ! -f "$DATA/.seeded" ]; then
  if [ -d "$SYNTHEA" ]; then
    .venv/bin/sante load "$SYNTHEA"
  else
    echo "no $SYNTHEA: starting with an empty database"
  fi
  mkdir -p "$DATA" && touch "$DATA/.seeded"
fi
echo "FHIR API: http://$HOST:$PORT/fhir/metadata  (try http://$HOST:$PORT/fhir/Patient?name=jo)"
exec .venv/bin/sante serve --host "$HOST" --port "$PORT"
