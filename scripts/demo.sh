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
# A demo administrator (synthetic data only): its password is kept in the data dir, readable by you alone.
if [ ! -f "$DATA/demo-admin-password" ]; then
  PASSWORD=$(.venv/bin/python -c "import secrets; print(secrets.token_urlsafe(12))")
  (umask 077 && printf '%s\n' "$PASSWORD" > "$DATA/demo-admin-password")
  printf '%s\n' "$PASSWORD" | .venv/bin/sante user add admin --role admin --password-stdin
fi
TOKEN=$(.venv/bin/sante token --user admin --scopes "user/*.cruds" --lifetime 86400 2>/dev/null | tail -n 1)
echo "Demo administrator: admin / $(cat "$DATA/demo-admin-password")"
echo "FHIR API: http://$HOST:$PORT/fhir/metadata; every other request needs the token (valid 24 h):"
echo "  curl -H \"Authorization: Bearer $TOKEN\" 'http://$HOST:$PORT/fhir/Patient?name=jo'"
exec .venv/bin/sante serve --host "$HOST" --port "$PORT"
