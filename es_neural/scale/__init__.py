"""Scale-out ingestion and migration on Ray Data (the optional ``ray`` extra).

Nothing here imports Ray until a run starts: ``import es_neural.scale`` is cheap and works
without Ray installed (a run then says how to install it).

* :func:`write_neural` writes any Ray Dataset of documents into a neural index;
* :func:`ingest_ray` ingests a JSONL/CSV/TSV file in checkpointed blocks (``es-neural ingest
  --ray``);
* :class:`RayMigrator` runs a migration's copy as one Ray read task per point-in-time slice
  (``es-neural migrate run --ray``).

How the work is split and what is guaranteed under faults: :mod:`es_neural.scale.run`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from es_neural.scale.options import LOCAL, ModelSpec, ScaleOptions, SettingsModels

if TYPE_CHECKING:
    from es_neural.scale.migrate import RayMigrator
    from es_neural.scale.run import ingest_ray, write_neural

__all__ = [
    "LOCAL",
    "ModelSpec",
    "RayMigrator",
    "ScaleOptions",
    "SettingsModels",
    "ingest_ray",
    "write_neural",
]

_LAZY = {
    "ingest_ray": "es_neural.scale.run",
    "write_neural": "es_neural.scale.run",
    "RayMigrator": "es_neural.scale.migrate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'es_neural.scale' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
