"""es-neural: neural retrieval (dense, SPLADE, tree routing, cross-encoder rerank) for existing
Elasticsearch and OpenSearch clusters."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
