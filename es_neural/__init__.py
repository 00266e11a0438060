"""es-neural: neural retrieval (dense, SPLADE, tree routing, cross-encoder rerank) for existing
Elasticsearch and OpenSearch clusters.

The public names are imported on first use, so ``import es_neural`` stays cheap and loads no
engine client or model.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from es_neural._version import __version__

if TYPE_CHECKING:
    from es_neural.ingest.pipeline import IngestOptions, IngestReport
    from es_neural.neural_index import NeuralIndex
    from es_neural.search.models import SearchRequest, SearchResponse
    from es_neural.settings import EngineKind, Settings, get_settings

_PUBLIC = {
    "EngineKind": "es_neural.settings",
    "IngestOptions": "es_neural.ingest.pipeline",
    "IngestReport": "es_neural.ingest.pipeline",
    "NeuralIndex": "es_neural.neural_index",
    "SearchRequest": "es_neural.search.models",
    "SearchResponse": "es_neural.search.models",
    "Settings": "es_neural.settings",
    "get_settings": "es_neural.settings",
}

__all__ = [
    "EngineKind",
    "IngestOptions",
    "IngestReport",
    "NeuralIndex",
    "SearchRequest",
    "SearchResponse",
    "Settings",
    "__version__",
    "get_settings",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'es_neural' has no attribute {name!r}")
    return getattr(import_module(module), name)
