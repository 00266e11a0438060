#!/usr/bin/env bash
# The test command: set-up (venv, packages), both engines up, the whole test suite.
# Engines are fetched from Maven Central on first use and cached under ~/.cache/es-neural.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/es-neural engines up --engine both
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
