"""What the framework retrievers share: one search, hits as plain records, filters translated.

Each adapter (:mod:`.langchain`, :mod:`.haystack`, :mod:`.llamaindex`) is a thin skin over
:func:`retrieve`: it searches a :class:`~es_neural.NeuralIndex` with explain on (so every hit
carries each leg's score and rank, the fused score and the rerank score) and wraps each
:class:`RetrievedHit` in the framework's document type. Fusion is client-side, so this works on
a basic-licence Elasticsearch, where the server-side RRF retriever answers 403.

Filters reach every leg through es-neural's portable format (:mod:`es_neural.search.filters`).
An adapter accepts that format as it is, or its framework's own filter format, translated here:

* Haystack 2: ``{"field": "meta.year", "operator": ">=", "value": 2020}`` and
  ``{"operator": "AND" | "OR" | "NOT", "conditions": [...]}``;
* LlamaIndex: ``MetadataFilters`` of ``MetadataFilter(key, value, operator)`` (``==``, ``!=``,
  ``>``, ``>=``, ``<``, ``<=``, ``in``, ``nin``), nested, with ``and`` / ``or`` / ``not``.

Anything else (a text match, ``contains``, an unknown operator) is refused with
:class:`~es_neural.errors.InvalidInputError` naming it, never silently dropped: a dropped tenant
filter would leak documents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from es_neural.errors import InvalidInputError
from es_neural.search.models import SearchRequest, SearchResponse
from es_neural.text import DEFAULT_TEXT_FIELDS, document_text

if TYPE_CHECKING:
    from es_neural.neural_index import NeuralIndex

__all__ = [
    "PORTABLE_KEYS",
    "RetrievedHit",
    "comparison",
    "hits_of",
    "is_portable",
    "retrieve",
]

#: The top-level keys of a portable filter.
PORTABLE_KEYS = frozenset({"term", "terms", "range", "exists", "bool"})

_RANGE = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


@dataclass(frozen=True, slots=True)
class RetrievedHit:
    """One hit, framework-neutral: its id, text, final score and what each stage said."""

    id: str
    text: str
    score: float
    rank: int
    #: The stored fields other than the text fields (what the frameworks call metadata).
    fields: dict[str, Any] = field(default_factory=dict)
    #: ``{"legs": {name: {score, rank, normalized, contribution} | None}, "fused_score",
    #: "fused_rank", "fusion", "rerank_score", "rerank_rank", "matched_leaf"}``.
    stages: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """Stored fields plus ``es_neural`` (stages, id, rank, score), for a document's metadata."""
        meta = dict(self.fields)
        meta["es_neural"] = {"id": self.id, "rank": self.rank, "score": self.score, **self.stages}
        return meta


def is_portable(filters: Mapping[str, Any]) -> bool:
    """Whether ``filters`` is already a portable filter (one of its top-level keys)."""
    return len(filters) == 1 and next(iter(filters)) in PORTABLE_KEYS


def comparison(name: str, operator: str, value: Any) -> dict[str, Any]:
    """One comparison (``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``in``, ``not in`` /
    ``nin``) as a portable filter clause."""
    op = operator.strip().lower()
    if op == "==":
        if value is None:
            return {"bool": {"must_not": [{"exists": {"field": name}}]}}
        return {"term": {"field": name, "value": value}}
    if op == "!=":
        if value is None:
            return {"exists": {"field": name}}
        return {"bool": {"must_not": [{"term": {"field": name, "value": value}}]}}
    if op in _RANGE:
        return {"range": {"field": name, _RANGE[op]: value}}
    if op == "in":
        return {"terms": {"field": name, "values": _values(name, value)}}
    if op in ("not in", "nin"):
        return {"bool": {"must_not": [{"terms": {"field": name, "values": _values(name, value)}}]}}
    raise InvalidInputError(
        f"filter operator {operator!r} on {name!r} is not supported "
        "(==, !=, >, >=, <, <=, in, not in)"
    )


def _values(name: str, value: Any) -> list[Any]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidInputError(f"filter 'in' on {name!r} needs a list of values")
    return list(value)


def retrieve(
    index: NeuralIndex,
    query: str,
    *,
    top_k: int,
    filters: Mapping[str, Any] | None = None,
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    metadata_fields: Sequence[str] = (),
    request: Mapping[str, Any] | None = None,
) -> list[RetrievedHit]:
    """Search ``index`` for ``query`` (explain on) and return the hits as :class:`RetrievedHit`.

    ``filters`` is a portable filter; ``metadata_fields`` are stored fields returned beside the
    text; ``request`` holds any other :class:`SearchRequest` field (legs, fusion, rerank, tree),
    validated like an API request.
    """
    body: dict[str, Any] = dict(request or {})
    for reserved in ("query", "size", "filter", "explain", "source"):
        if reserved in body:
            raise InvalidInputError(f"set {reserved!r} through the retriever, not its request")
    body.update(query=query, size=top_k, explain=True)
    if metadata_fields:
        body["source"] = tuple(dict.fromkeys((*text_fields, *metadata_fields)))
    if filters:
        body["filter"] = dict(filters)
    try:
        search_request = SearchRequest.model_validate(body)
    except ValueError as exc:  # pydantic's ValidationError
        raise InvalidInputError(f"invalid retriever request: {exc}") from exc
    return hits_of(index.search(search_request), text_fields=text_fields)


def hits_of(
    response: SearchResponse, *, text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS
) -> list[RetrievedHit]:
    """The hits of ``response`` as :class:`RetrievedHit` (text by :func:`document_text`)."""
    out = []
    for hit in response.hits:
        source = dict(hit.source)
        stages: dict[str, Any] = {}
        if hit.explain is not None:
            stages = hit.explain.model_dump(mode="json", exclude={"leaf_ids"})
        out.append(
            RetrievedHit(
                id=hit.id,
                text=document_text(source, text_fields),
                score=hit.score,
                rank=hit.rank,
                fields={k: v for k, v in source.items() if k not in text_fields},
                stages=stages,
            )
        )
    return out
