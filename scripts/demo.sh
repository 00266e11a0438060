#!/usr/bin/env bash
# The main job on the embedded defaults: set-up, both engines up, the bundled corpus ingested,
# hybrid queries with explain. Offline; engines come from Maven Central on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/es-neural demo "$@"
