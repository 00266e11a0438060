"""Engine dialects: one module per engine, the only modules that import an engine client.

>>> dialect = get_dialect(settings)            # settings.engine decides which
>>> dialect.create_index("docs-v1", dialect.index_body(IndexSpec(dims=384)))
"""

from __future__ import annotations

from importlib import import_module

from es_neural.dialects.base import (
    BaseDialect,
    BulkAction,
    BulkOp,
    BulkResult,
    Capabilities,
    FieldNames,
    IndexSpec,
    RetryPolicy,
)
from es_neural.settings import EngineKind, Settings

__all__ = [
    "BaseDialect",
    "BulkAction",
    "BulkOp",
    "BulkResult",
    "Capabilities",
    "FieldNames",
    "IndexSpec",
    "RetryPolicy",
    "dialect_class",
    "get_dialect",
]

# Imported on first use, so that using one engine never loads the other's client.
_DIALECTS: dict[EngineKind, tuple[str, str]] = {
    EngineKind.ELASTICSEARCH: ("es_neural.dialects.elasticsearch", "ElasticsearchDialect"),
    EngineKind.OPENSEARCH: ("es_neural.dialects.opensearch", "OpenSearchDialect"),
}


def dialect_class(engine: EngineKind | str) -> type[BaseDialect]:
    module, name = _DIALECTS[EngineKind(engine)]
    cls: type[BaseDialect] = getattr(import_module(module), name)
    return cls


def get_dialect(settings: Settings, engine: EngineKind | str | None = None) -> BaseDialect:
    """A dialect for ``engine`` (default ``settings.engine``); connects on first call."""
    kind = EngineKind(engine) if engine is not None else settings.engine
    return dialect_class(kind)(settings.engine_settings(kind))
