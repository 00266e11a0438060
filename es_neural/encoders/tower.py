"""Storage of distilled query towers (:mod:`es_neural.train.distil`).

A tower keeps a few layers of the dense document model and borrows its word, position and type
embeddings unchanged (they are frozen while it is distilled). So it is stored **compactly**: the
kept layers in float16 (``tower.safetensors``, renumbered 0..k-1), its ``es_neural.json`` (the
document model's fingerprint and a digest of the embeddings it borrows), card and training facts.
:func:`materialize_tower` rebuilds the full sentence-transformers folder from the two, once, under
the cache directory; the torch encoder and the torch-free query path load that folder like any
other. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from es_neural.errors import ConfigurationError, InvalidInputError

__all__ = [
    "TOWER_META",
    "TOWER_WEIGHTS",
    "cache_root",
    "compact_tower",
    "is_compact_tower",
    "materialize_tower",
]

#: The query-model meta file (as :data:`es_neural.train.dense.QUERY_MODEL_META`).
TOWER_META = "es_neural.json"
#: The kept layers of a compact tower (float16, renumbered 0..k-1).
TOWER_WEIGHTS = "tower.safetensors"
_LAYER_PREFIX = "encoder.layer."


def cache_root() -> Path:
    """Where materialized towers go: ``ES_NEURAL_HOME`` (as the settings' ``home``), else
    ``~/.cache/es-neural``."""
    home = os.environ.get("ES_NEURAL_HOME")
    return Path(home) if home else Path.home() / ".cache" / "es-neural"


def is_compact_tower(folder: str | Path) -> bool:
    return (Path(folder) / TOWER_WEIGHTS).is_file()


def compact_tower(folder: str | Path, dest: str | Path) -> Path:
    """Store the tower in ``folder`` (a full saved folder) as its kept layers in float16 plus its
    meta, card and training facts: what the embeddings are is named, not copied."""
    from safetensors.numpy import load_file, save_file

    src, out = Path(folder), Path(dest)
    meta = json.loads((src / TOWER_META).read_text(encoding="utf-8"))
    if "tower" not in meta:
        raise InvalidInputError(f"{src} is not a distilled query tower (no 'tower' in its meta)")
    weights = _bert_weights(load_file(str(src / "model.safetensors")))
    kept = {k: v.astype(np.float16) for k, v in weights.items() if k.startswith(_LAYER_PREFIX)}
    if not kept:
        raise InvalidInputError(f"{src}/model.safetensors holds no {_LAYER_PREFIX}* weights")
    out.mkdir(parents=True, exist_ok=True)
    save_file(kept, str(out / TOWER_WEIGHTS))
    # The embeddings must be the document model's own: record a digest of them to check.
    meta["tower"]["embeddings_sha256"] = _embeddings_digest(weights)
    meta["tower"]["dtype"] = "float16"
    (out / TOWER_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for name in ("README.md", "training.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    return out


def _bert_weights(weights: Mapping[str, Any]) -> dict[str, Any]:
    """A BERT checkpoint's tensors named as ``BertModel`` names them (no ``bert.`` prefix)."""
    return {k.removeprefix("bert."): v for k, v in weights.items()}


def _embeddings_digest(weights: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    # Parameters only: buffers such as ``position_ids`` are saved by some writers, not others.
    keys = (k for k in weights if k.startswith("embeddings.") and k.endswith((".weight", ".bias")))
    for key in sorted(keys):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(weights[key], dtype=np.float32).tobytes())
    return digest.hexdigest()


def materialize_tower(compact: str | Path, base: str | Path, cache_root: str | Path) -> Path:
    """The full sentence-transformers folder of the compact tower ``compact`` over the document
    model folder ``base`` (whose embeddings it borrows), built once under ``cache_root``."""
    from safetensors.numpy import load_file, save_file

    src, base_dir = Path(compact), Path(base)
    meta = json.loads((src / TOWER_META).read_text(encoding="utf-8"))
    tower = meta.get("tower") or {}
    key = hashlib.sha256(
        (src / TOWER_WEIGHTS).read_bytes() + json.dumps(meta, sort_keys=True).encode()
    ).hexdigest()[:16]
    out = Path(cache_root) / "query-towers" / key
    if (out / "model.safetensors").is_file() and (out / TOWER_META).is_file():
        return out
    base_weights = _bert_weights(load_file(str(base_dir / "model.safetensors")))
    wanted = tower.get("embeddings_sha256")
    if wanted and _embeddings_digest(base_weights) != wanted:
        raise ConfigurationError(
            f"the query tower {src} borrows the embeddings of another model than {base_dir}"
        )
    # The encoder without its layers (and without a masked-LM head, should the base have one).
    merged = {
        k: v
        for k, v in base_weights.items()
        if not k.startswith(_LAYER_PREFIX) and k.startswith(("embeddings.", "pooler."))
    }
    merged.update({k: v.astype(np.float32) for k, v in load_file(str(src / TOWER_WEIGHTS)).items()})
    # Built aside and renamed into place: a process that finds the folder finds it whole, and
    # two processes building it at once do not share a work folder.
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base_dir, tmp, ignore=shutil.ignore_patterns("model.safetensors", "*.onnx"))
    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    config["num_hidden_layers"] = len(tower.get("layers") or [])
    config["architectures"] = ["BertModel"]
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(merged, str(tmp / "model.safetensors"))
    (tmp / TOWER_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for name in ("README.md", "training.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, tmp / name)
    try:
        tmp.rename(out)
    except OSError:  # built meanwhile by another process: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "model.safetensors").is_file():
            raise
    return out
