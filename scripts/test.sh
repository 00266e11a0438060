#!/usr/bin/env bash
# The test command: set-up (venv, packages), both engines up, the whole test suite.
# Engines are fetched from Maven Central on first use and cached under ~/.cache/es-neural.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The fuzzer's test needs atheris (the `fuzz` extra: a binary wheel, none for every Python):
# required in CI, optional elsewhere (its test then skips, saying why).
if ! .venv/bin/uv pip install -q --python .venv/bin/python -e ".[fuzz]"; then
  if [ -n "${CI:-}" ]; then
    echo "atheris (the fuzz extra) could not be installed: CI needs it" >&2
    exit 1
  fi
  echo "warning: atheris unavailable: tests/unit/test_fuzz_script.py will skip" >&2
fi
# The int8 encoders (the `onnx` extra) and scale-out on Ray Data (the `ray` extra): its engine tests run on a local Ray cluster, so CI
# needs it (they fail, never skip, without it).
.venv/bin/uv pip install -q --python .venv/bin/python -e ".[ray,onnx]"
# The search page is tested in headless Chromium (Debian's package; no browser download).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver
  else
    echo "warning: chromium/chromium-driver missing: the page test will fail" >&2
  fi
fi
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
