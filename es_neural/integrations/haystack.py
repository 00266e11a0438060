"""A Haystack retriever component over an es-neural index (``pip install "es-neural[haystack]"``).

>>> from haystack import Pipeline
>>> from es_neural import NeuralIndex
>>> from es_neural.integrations.haystack import EsNeuralRetriever
>>> pipe = Pipeline()
>>> pipe.add_component("retriever", EsNeuralRetriever(NeuralIndex("docs"), top_k=5))
>>> pipe.run({"retriever": {"query": "what is a neural tree"}})["retriever"]["documents"]

Haystack's own Elasticsearch hybrid retriever fuses on the client too, but runs two retrievers
with a filter each, and has no sparse (SPLADE) retriever for OpenSearch. This component runs
BM25, kNN and SPLADE in one multi-search with one filter on every leg. ``filters`` take
Haystack's filter syntax (``{"field": "meta.year", "operator": ">=", "value": 2020}``, with
``AND`` / ``OR`` / ``NOT``) or es-neural's portable filter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from es_neural.errors import ConfigurationError, InvalidInputError
from es_neural.integrations.common import comparison, is_portable, retrieve
from es_neural.text import DEFAULT_TEXT_FIELDS

try:
    from haystack import Document, component
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ConfigurationError(
        'the Haystack retriever needs haystack-ai: pip install "es-neural[haystack]"'
    ) from exc

__all__ = ["EsNeuralRetriever", "portable_filter"]

_LOGIC = {"AND": "filter", "OR": "should", "NOT": "must_not"}


def portable_filter(filters: Mapping[str, Any]) -> dict[str, Any]:
    """Haystack's filter syntax (or a portable filter, returned as it is) as a portable filter.

    Fields are ``meta.<name>`` (or a bare stored-field name); ``NOT`` negates the AND of its
    conditions, as Haystack's document stores do.
    """
    if is_portable(filters):
        return dict(filters)
    operator = filters.get("operator")
    if not isinstance(operator, str):
        raise InvalidInputError("a Haystack filter needs an 'operator'")
    if "conditions" in filters:
        logic = operator.upper()
        if logic not in _LOGIC:
            raise InvalidInputError(f"unknown logical operator {operator!r} (AND, OR, NOT)")
        conditions = filters["conditions"]
        if not isinstance(conditions, Sequence) or isinstance(conditions, str) or not conditions:
            raise InvalidInputError(f"{logic} needs a non-empty list of conditions")
        clauses = [portable_filter(c) for c in conditions]
        if logic == "NOT":
            return {"bool": {"must_not": [{"bool": {"filter": clauses}}]}}
        return {"bool": {_LOGIC[logic]: clauses}}
    name = filters.get("field")
    if not isinstance(name, str):
        raise InvalidInputError("a Haystack comparison needs a 'field'")
    if name in ("content", "id", "embedding"):
        raise InvalidInputError(f"filtering on {name!r} is not supported: filter on meta fields")
    return comparison(name.removeprefix("meta."), operator, filters.get("value"))


@component
class EsNeuralRetriever:
    """Hybrid retrieval from a :class:`~es_neural.NeuralIndex` as a Haystack component.

    ``filters`` given at construction apply to every run; filters given to ``run`` replace
    them, as Haystack's retrievers do. Each document's ``meta["es_neural"]`` holds every
    stage's score and rank; ``score`` is the final (fused or reranked) score.
    """

    def __init__(
        self,
        index: Any,
        *,
        top_k: int = 10,
        filters: Mapping[str, Any] | None = None,
        text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
        metadata_fields: Sequence[str] = (),
        request: Mapping[str, Any] | None = None,
    ) -> None:
        self.index = index
        self.top_k = top_k
        self.filters = dict(filters) if filters else None
        self.text_fields = tuple(text_fields)
        self.metadata_fields = tuple(metadata_fields)
        self.request = dict(request or {})

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
    ) -> dict[str, list[Document]]:
        chosen = filters if filters is not None else self.filters
        hits = retrieve(
            self.index,
            query,
            top_k=top_k if top_k is not None else self.top_k,
            filters=portable_filter(chosen) if chosen else None,
            text_fields=self.text_fields,
            metadata_fields=self.metadata_fields,
            request=self.request,
        )
        documents = [
            Document(id=h.id, content=h.text, meta=h.metadata(), score=h.score) for h in hits
        ]
        return {"documents": documents}
