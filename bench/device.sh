#!/usr/bin/env bash
# The GPU runs, as run on the H200 that the `device` tool lends (no registry, no hub, no engines):
#   here:  python bench/device_pack.py pack          (models + SciFact into .device/, ignored)
#          python scripts/pack_device_train.py        (the training mix into .device/train/)
#          pip download the pydantic wheels into .whl/ (see /work/.library/device/README.md)
#   there: bash bench/device.sh encoders              (carry .device/pack .device/data .whl)
#          bash bench/device.sh reranker              (carry .device/train; same machine, warm)
# Output lands in $OUT (the tool brings it back): *.json results and logs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT="${OUT:-bench/out/device}"
mkdir -p "$OUT"
if [ ! -d /tmp/site/pydantic ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "wheels missing: carry .whl" >&2; exit 3; }
fi
export PYTHONPATH="/tmp/site:$PWD"
if [ ! -f .device/models/minilm/model.safetensors ]; then
  [ -f .device/pack/models.tar.xz ] || { echo "models missing: carry .device/pack" >&2; exit 3; }
  python3 bench/device_pack.py unpack --pack .device || exit 3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, sentence_transformers as st; print('torch', torch.__version__, 'transformers', transformers.__version__, 'sentence-transformers', st.__version__)" | tee -a "$OUT/gpu.txt"
job="${1:-}"
case "$job" in
  encoders) shift; cmd=(python3 bench/encoders_gpu.py --dense .device/models/minilm --sparse .device/models/splade-tiny --corpus .device/data/scifact-corpus.jsonl.gz --out "$OUT" "$@") ;;
  reranker) shift; cmd=(python3 bench/reranker_gpu.py --data .device/train --models .device/models --out "$OUT" "$@") ;;
  *) echo "usage: bench/device.sh encoders|reranker [args]" >&2; exit 2 ;;
esac
echo "+ ${cmd[*]}"
"${cmd[@]}" 2>&1 | tee "$OUT/$job.log"
