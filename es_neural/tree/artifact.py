"""Saving and loading a tree: a folder with ``tree.json`` and ``arrays.npz``.

``tree.json`` holds what a person may want to read: format, version, scale, hyper-parameters, the
encoder fingerprint, the structure (each node's parent), and each document's leaf ids.
``arrays.npz`` holds the centroids (float32) and the document keys (uint64), loaded without
pickle; ``tree.json`` records its sha256, checked on load. Files are written under temporary
names and renamed, so a reader never sees half a tree. A load gives back a model equal to the
saved one, array for array and bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from es_neural.errors import ConfigurationError
from es_neural.tree.model import TreeModel

__all__ = ["ARRAYS_FILE", "FORMAT", "TREE_FILE", "load_tree", "save_tree"]

FORMAT = "es-neural-tree/1"
TREE_FILE = "tree.json"
ARRAYS_FILE = "arrays.npz"


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tree(model: TreeModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``model`` into ``folder`` (created if needed); returns the folder."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    buffer = _npz_bytes(model)
    node_ids = model.node_ids
    documents = {
        doc_id: [node_ids[int(n)] for n in model.leaves_of_row(row)]
        for row, doc_id in enumerate(model.doc_ids)
    }
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": model.version,
        "scale": model.scale,
        "dims": model.dims,
        "hyperparameters": model.hyperparameters,
        "encoder": model.encoder,
        "parents": model.parents.tolist(),
        "documents": documents,
        "arrays": {"file": ARRAYS_FILE, "sha256": hashlib.sha256(buffer).hexdigest()},
        "stats": {
            "nodes": model.n_nodes,
            "leaves": len(model.leaf_nodes),
            "documents": model.n_documents,
        },
    }
    _write_atomic(root / ARRAYS_FILE, buffer)
    _write_atomic(root / TREE_FILE, json.dumps(meta, indent=1, ensure_ascii=False).encode())
    return root


def _npz_bytes(model: TreeModel) -> bytes:
    import io

    out = io.BytesIO()
    np.savez(out, centroids=model.centroids, doc_keys=model.doc_keys)
    return out.getvalue()


def load_tree(folder: str | os.PathLike[str]) -> TreeModel:
    """The tree saved in ``folder``; :class:`ConfigurationError` when it is missing, of another
    format, or its arrays do not match their recorded checksum."""
    root = Path(folder)
    try:
        meta = json.loads((root / TREE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"no tree at {root} ({TREE_FILE} is missing)") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{root / TREE_FILE} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ConfigurationError(f"{root / TREE_FILE} has format {found!r}, expected {FORMAT!r}")
    arrays_path = root / meta["arrays"]["file"]
    try:
        raw = arrays_path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"tree arrays {arrays_path} are missing") from None
    if hashlib.sha256(raw).hexdigest() != meta["arrays"]["sha256"]:
        raise ConfigurationError(f"{arrays_path} does not match the checksum in {TREE_FILE}")
    import io

    with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
        centroids = np.array(arrays["centroids"], dtype=np.float32)
        keys = np.array(arrays["doc_keys"], dtype=np.uint64)
    model = TreeModel(
        version=meta["version"],
        parents=np.asarray(meta["parents"], dtype=np.int32),
        centroids=centroids,
        scale=float(meta["scale"]),
        hyperparameters=meta.get("hyperparameters") or {},
        encoder=meta.get("encoder"),
    )
    documents: dict[str, list[str]] = meta.get("documents") or {}
    index = {node_id: i for i, node_id in enumerate(model.node_ids)}
    try:
        leaves = [[index[leaf] for leaf in ids] for ids in documents.values()]
    except KeyError as exc:
        raise ConfigurationError(f"{TREE_FILE} names an unknown node {exc}") from None
    return model.with_documents(list(documents), leaves, keys=keys)
