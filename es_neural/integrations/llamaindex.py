"""A LlamaIndex retriever over an es-neural index (``pip install "es-neural[llamaindex]"``).

>>> from es_neural import NeuralIndex
>>> from es_neural.integrations.llamaindex import EsNeuralRetriever
>>> retriever = EsNeuralRetriever(NeuralIndex("docs"), similarity_top_k=5)
>>> nodes = retriever.retrieve("what is a neural tree")
>>> nodes[0].node.metadata["es_neural"]["fused_score"]

LlamaIndex's ``ElasticsearchStore`` hybrid mode fuses on the server with RRF, which Elasticsearch
9 allows only with an Enterprise licence (a basic licence answers 403); es-neural fuses on the
client. ``filters`` take LlamaIndex ``MetadataFilters`` or es-neural's portable filter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from es_neural.errors import ConfigurationError, InvalidInputError
from es_neural.integrations.common import comparison, retrieve
from es_neural.text import DEFAULT_TEXT_FIELDS

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ConfigurationError(
        'the LlamaIndex retriever needs llama-index-core: pip install "es-neural[llamaindex]"'
    ) from exc

__all__ = ["EsNeuralRetriever", "portable_filter"]

_CONDITIONS = {"and": "filter", "or": "should", "not": "must_not"}


def portable_filter(filters: MetadataFilters | Mapping[str, Any]) -> dict[str, Any]:
    """LlamaIndex ``MetadataFilters`` (or a portable filter, returned as it is) as a portable
    filter. ``not`` negates the AND of its filters."""
    if isinstance(filters, Mapping):
        return dict(filters)
    clauses: list[dict[str, Any]] = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            clauses.append(portable_filter(item))
        elif isinstance(item, MetadataFilter):
            op = getattr(item.operator, "value", item.operator)
            clauses.append(comparison(item.key, str(op), item.value))
        else:
            raise InvalidInputError(f"unsupported LlamaIndex filter {type(item).__name__}")
    if not clauses:
        raise InvalidInputError("MetadataFilters has no filters")
    condition = str(getattr(filters.condition, "value", filters.condition) or "and").lower()
    if condition not in _CONDITIONS:
        raise InvalidInputError(f"unknown filter condition {condition!r} (and, or, not)")
    if condition == "not":
        return {"bool": {"must_not": [{"bool": {"filter": clauses}}]}}
    return {"bool": {_CONDITIONS[condition]: clauses}}


class EsNeuralRetriever(BaseRetriever):
    """Hybrid retrieval from a :class:`~es_neural.NeuralIndex` as a LlamaIndex retriever.

    Each node's ``metadata["es_neural"]`` holds every stage's score and rank; the node's score
    is the final (fused or reranked) score.
    """

    def __init__(
        self,
        index: Any,
        *,
        similarity_top_k: int = 10,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
        metadata_fields: Sequence[str] = (),
        request: Mapping[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self._index = index
        self._top_k = similarity_top_k
        self._filters = portable_filter(filters) if filters is not None else None
        self._text_fields = tuple(text_fields)
        self._metadata_fields = tuple(metadata_fields)
        self._request = dict(request or {})

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = retrieve(
            self._index,
            query_bundle.query_str,
            top_k=self._top_k,
            filters=self._filters,
            text_fields=self._text_fields,
            metadata_fields=self._metadata_fields,
            request=self._request,
        )
        nodes = [TextNode(id_=h.id, text=h.text, metadata=h.metadata()) for h in hits]
        return [NodeWithScore(node=n, score=h.score) for n, h in zip(nodes, hits, strict=True)]
