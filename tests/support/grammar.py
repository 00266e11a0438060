"""The closed grammar of the engine bodies es-neural builds, for hostile-input tests and fuzzing.

:class:`Grammar` walks a body built by :func:`es_neural.search.service.leg_bodies` (or a clause
built by :func:`es_neural.search.filters.compile_filter`) and raises :class:`GrammarError` for
anything outside what the layer means to send: client text only as the BM25 query text, as
filter values, or under field names that passed the field-name rules (never metadata fields,
never es-neural's own fields where they are denied); finite vectors; sanitised sparse tokens; no
other clause kind (no script, no query_string, no DSL from the client).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from es_neural.dialects import BaseDialect
from es_neural.dialects.elasticsearch import ElasticsearchDialect
from es_neural.dialects.opensearch import OpenSearchDialect
from es_neural.encoders.tokens import MAX_TOKEN_LENGTH, sanitize_token
from es_neural.indices import IndexInfo
from es_neural.queries import BM25_TIE_BREAKER
from es_neural.search.filters import is_field_name
from es_neural.search.models import SearchRequest
from es_neural.settings import EngineSettings

__all__ = [
    "DIALECTS",
    "FILTER_DENIED",
    "INFO",
    "LEAF_CLAUSE",
    "LEAF_IDS",
    "OWN_FIELDS",
    "RESERVED",
    "Grammar",
    "GrammarError",
]

INFO = IndexInfo(
    name="docs",
    concrete="docs-v1",
    meta={
        "created_by": "es-neural",
        "text_fields": ["title", "text"],
        "fields": {"dense": "embedding", "sparse": "splade", "leaf_ids": "leaf_ids"},
    },
    properties={},
)
OWN_FIELDS = frozenset(INFO.fields.neural())
FILTER_DENIED = (INFO.fields.dense, INFO.fields.sparse, INFO.fields.content_hash)
RESERVED = tuple(OWN_FIELDS)
LEAF_IDS = ("leaf-3", "leaf-7")
LEAF_CLAUSE = {"terms": {INFO.fields.leaf_ids: list(LEAF_IDS)}}
LEAF_CLAUSE_SORTED = {"terms": {INFO.fields.leaf_ids: sorted(LEAF_IDS)}}
_ENGINE = EngineSettings(url="http://127.0.0.1:1", max_retries=0)  # never contacted
DIALECTS: tuple[BaseDialect, ...] = (ElasticsearchDialect(_ENGINE), OpenSearchDialect(_ENGINE))


class GrammarError(AssertionError):
    """A built body holds something the layer never means to send."""


def _scalars_of(value: Any) -> list[Any]:
    """Every scalar in a client value (what may show up as a filter value)."""
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _scalars_of(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _scalars_of(v)]
    return [value]


class Grammar:
    """The closed grammar of the bodies es-neural sends, and where client text may appear."""

    def __init__(self, request: SearchRequest, dialect: BaseDialect) -> None:
        self.request = request
        self.dialect = dialect
        self.client_values = _scalars_of(request.filter)
        self.fields = INFO.fields

    def fail(self, path: str, why: str) -> None:
        raise GrammarError(f"{type(self.dialect).__name__}: {path}: {why}")

    # ----- leaves

    def filter_value(self, value: Any, path: str, *, leaf_ids: bool = False) -> None:
        if leaf_ids:
            if value not in LEAF_IDS:
                self.fail(path, f"{value!r} is not a server leaf id")
            return
        if not isinstance(value, str | int | float | bool):
            self.fail(path, f"{value!r} is not a scalar")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, "non-finite filter value")
        if not any(type(value) is type(c) and value == c for c in self.client_values):
            self.fail(path, f"{value!r} is not one of the client's filter values")

    def filter_field(self, name: Any, path: str) -> None:
        ok = (
            is_field_name(name)
            and not name.startswith("_")
            and name not in FILTER_DENIED
            and name != ""
        )
        if not ok:
            self.fail(path, f"field {name!r} may not be filtered on")

    def vector(self, value: Any, path: str) -> None:
        if not isinstance(value, list) or not all(
            isinstance(x, float) and math.isfinite(x) for x in value
        ):
            self.fail(path, "the vector must be finite floats")

    def token(self, token: Any, weight: Any, path: str) -> None:
        if not isinstance(token, str) or not token or sanitize_token(token) != token:
            self.fail(path, f"token {token!r} is not sanitised")
        if "." in token or any(c.isspace() for c in token) or len(token) > MAX_TOKEN_LENGTH:
            self.fail(path, f"token {token!r} holds a dot or a space, or is too long")
        if not (isinstance(weight, float) and math.isfinite(weight) and weight > 0):
            self.fail(path, f"weight {weight!r} is not a positive finite float")

    # ----- clauses

    def clause(self, node: Any, path: str, *, scoring: bool) -> None:
        if not isinstance(node, dict) or len(node) != 1:
            self.fail(path, f"a clause is a one-key object, got {node!r:.200}")
        ((kind, body),) = node.items()
        handler = {
            "bool": self.bool_,
            "term": self.term,
            "terms": self.terms,
            "range": self.range_,
            "exists": self.exists,
            "match_none": self.match_none,
            "constant_score": self.constant_score,
            "multi_match": self.multi_match,
            "rank_feature": self.rank_feature,
            "knn": self.knn,
        }.get(kind)
        if handler is None:
            self.fail(path, f"unexpected clause {kind!r}")
        assert handler is not None
        handler(body, f"{path}.{kind}", scoring=scoring)

    def bool_(self, body: Any, path: str, *, scoring: bool) -> None:
        allowed = {"must", "should", "filter", "must_not", "minimum_should_match"}
        if not isinstance(body, dict) or not set(body) <= allowed:
            self.fail(path, f"bool keys {list(body)}")
        for occur in ("must", "should", "filter", "must_not"):
            for i, item in enumerate(body.get(occur, [])):
                inner_scoring = scoring and occur in ("must", "should")
                self.clause(item, f"{path}.{occur}[{i}]", scoring=inner_scoring)
        if "minimum_should_match" in body and body["minimum_should_match"] != 1:
            self.fail(path, "minimum_should_match")

    def term(self, body: Any, path: str, *, scoring: bool) -> None:
        ((field, value),) = body.items()
        if field == self.fields.sparse and scoring:  # Elasticsearch's sparse clause
            if not isinstance(self.dialect, ElasticsearchDialect) or set(value) != {
                "value",
                "boost",
            }:
                self.fail(path, "sparse term clause")
            self.token(value["value"], value["boost"], path)
            return
        self.filter_field(field, path)
        self.filter_value(value, f"{path}.{field}")

    def terms(self, body: Any, path: str, *, scoring: bool) -> None:
        ((field, values),) = body.items()
        if not isinstance(values, list) or not values:
            self.fail(path, "terms values")
        leaf = field == self.fields.leaf_ids and values == sorted(LEAF_IDS)
        if not leaf:
            self.filter_field(field, path)
        for i, value in enumerate(values):
            self.filter_value(value, f"{path}[{i}]", leaf_ids=leaf)

    def range_(self, body: Any, path: str, *, scoring: bool) -> None:
        ((field, bounds),) = body.items()
        self.filter_field(field, path)
        if not bounds or not set(bounds) <= {"gt", "gte", "lt", "lte"}:
            self.fail(path, f"range bounds {bounds!r}")
        for op, value in bounds.items():
            self.filter_value(value, f"{path}.{op}")

    def exists(self, body: Any, path: str, *, scoring: bool) -> None:
        if set(body) != {"field"}:
            self.fail(path, "exists keys")
        self.filter_field(body["field"], path)

    def match_none(self, body: Any, path: str, *, scoring: bool) -> None:
        if body != {}:
            self.fail(path, "match_none takes nothing")

    def constant_score(self, body: Any, path: str, *, scoring: bool) -> None:
        if set(body) != {"filter", "boost"} or body["filter"] != LEAF_CLAUSE_SORTED:
            self.fail(path, "only the server's leaf boost uses constant_score")

    def multi_match(self, body: Any, path: str, *, scoring: bool) -> None:
        if set(body) != {"query", "fields", "type", "tie_breaker"} or (
            body["type"] != "best_fields" or body["tie_breaker"] != BM25_TIE_BREAKER
        ):
            self.fail(path, "multi_match keys")
        if body["query"] != self.request.query:  # the one place the query text goes
            self.fail(path, "the query text changed")
        wanted = list(self.request.bm25.fields) or list(INFO.text_fields)
        if body["fields"] != wanted:
            self.fail(path, f"fields {body['fields']!r}")
        for name in body["fields"]:
            base = name.partition("^")[0]
            if not is_field_name(base) or base.startswith("_") or base in OWN_FIELDS:
                self.fail(path, f"BM25 over field {name!r}")

    def rank_feature(self, body: Any, path: str, *, scoring: bool) -> None:
        if not isinstance(self.dialect, OpenSearchDialect) or set(body) != {
            "field",
            "linear",
            "boost",
        }:
            self.fail(path, "rank_feature")
        prefix, dot, token = body["field"].partition(".")
        if prefix != self.fields.sparse or not dot or body["linear"] != {}:
            self.fail(path, f"rank_feature field {body['field']!r}")
        self.token(token, body["boost"], path)

    def knn(self, body: Any, path: str, *, scoring: bool) -> None:
        if isinstance(self.dialect, ElasticsearchDialect):  # the knn query of Elasticsearch
            if not set(body) <= {"field", "query_vector", "k", "num_candidates", "filter"}:
                self.fail(path, f"knn {body!r:.200}")
            if body.get("field") != self.fields.dense:
                self.fail(path, "knn field")
            self.vector(body["query_vector"], f"{path}.query_vector")
            if "filter" in body:
                self.clause(body["filter"], f"{path}.filter", scoring=False)
            return
        if not isinstance(self.dialect, OpenSearchDialect) or set(body) != {self.fields.dense}:
            self.fail(path, "knn query")
        knn = body[self.fields.dense]
        if not set(knn) <= {"vector", "k", "method_parameters", "filter"}:
            self.fail(path, f"knn keys {list(knn)}")
        self.vector(knn["vector"], f"{path}.vector")
        if "filter" in knn:
            self.clause(knn["filter"], f"{path}.filter", scoring=False)

    # ----- bodies

    def body(self, leg: str, body: dict[str, Any]) -> None:
        path = f"bodies.{leg}"
        allowed = {"query", "size", "_source", "track_total_hits"}
        if not set(body) <= allowed:
            self.fail(path, f"top-level keys {sorted(body)}")
        if body.get("_source") is not False:
            self.fail(path, "the search legs fetch no _source")
        tracked, asked = body.get("track_total_hits"), self.request.track_total_hits
        if type(tracked) is not type(asked) or tracked != asked:  # True is not 1 here
            self.fail(path, f"track_total_hits {tracked!r}, asked {asked!r}")
        if "query" in body:
            self.clause(body["query"], f"{path}.query", scoring=True)
        json.dumps(body, allow_nan=False)  # plain JSON, finite numbers
