#!/usr/bin/env bash
# Install what the tests need (a virtual environment in .venv) and run the whole test suite.
# Extra arguments go to pytest. Exits non-zero when a test fails or when no test ran (pytest's code 5).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# A real PostgreSQL for the store tests (both backends run the same suite): Debian's package.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "scripts/test.sh: PostgreSQL is missing; install it (apt-get install postgresql) or run as root" >&2
  fi
fi
# A browser for the web app's tests: Playwright drives Debian's Chromium (`playwright install` is not used).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "scripts/test.sh: Chromium is missing; install it (apt-get install chromium) or run as root" >&2
  fi
fi
# The Unicode font of the printed documents (PDF) in Vietnamese: Debian's DejaVu Sans.
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core >/dev/null
fi
# Java for Spark (the national analytics tier runs the SQL on FHIR views on pyspark in local mode), and R with its
# `surveillance` package, the reference that the outbreak detectors are compared with: Debian's packages.
if [ "$(id -u)" = 0 ]; then
  missing=()
  command -v java >/dev/null || missing+=(default-jre-headless)
  [ -d /usr/lib/R/site-library/surveillance ] || missing+=(r-cran-surveillance)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check src tests bench
exec .venv/bin/python -m pytest "$@"
