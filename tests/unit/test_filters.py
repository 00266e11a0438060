"""The portable filter format: what it accepts, what it compiles to, what it refuses."""

from __future__ import annotations

import pytest

from es_neural.errors import InvalidInputError
from es_neural.search.filters import FilterLimits, compile_filter


def test_each_kind_compiles_to_engine_dsl() -> None:
    assert compile_filter(None) is None
    assert compile_filter({"term": {"field": "tenant", "value": "acme"}}) == {
        "term": {"tenant": "acme"}
    }
    assert compile_filter({"terms": {"field": "tag", "values": ["a", 2, True]}}) == {
        "terms": {"tag": ["a", 2, True]}
    }
    assert compile_filter({"range": {"field": "year", "gte": 2000, "lt": 2010.5}}) == {
        "range": {"year": {"gte": 2000, "lt": 2010.5}}
    }
    assert compile_filter({"exists": {"field": "title"}}) == {"exists": {"field": "title"}}


def test_bool_moves_must_into_filter_and_makes_should_an_or() -> None:
    out = compile_filter(
        {
            "bool": {
                "must": [{"term": {"field": "a", "value": 1}}],
                "should": [{"term": {"field": "b", "value": 2}}],
                "must_not": [{"exists": {"field": "c"}}],
            }
        }
    )
    assert out == {
        "bool": {
            "should": [{"term": {"b": 2}}],
            "must_not": [{"exists": {"field": "c"}}],
            "minimum_should_match": 1,
            "filter": [{"term": {"a": 1}}],
        }
    }


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({}, "exactly one"),
        ({"script": {"source": "1"}}, "unknown filter"),
        ({"term": {"field": "a", "value": 1}, "terms": {}}, "exactly one"),
        ({"term": {"field": "a"}}, "needs"),
        ({"term": {"field": "a", "value": {"nested": 1}}}, "string, number or boolean"),
        ({"term": {"field": "a", "value": float("inf")}}, "finite"),
        ({"term": {"field": "a b", "value": 1}}, "field name"),
        ({"term": {"field": "_id", "value": 1}}, "cannot be filtered"),
        ({"term": {"field": "embedding", "value": 1}}, "cannot be filtered"),
        ({"term": {"field": "a", "value": 1, "boost": 3}}, "unknown key"),
        ({"terms": {"field": "a", "values": []}}, "non-empty"),
        ({"terms": {"field": "a", "values": list(range(2000))}}, "more than"),
        ({"range": {"field": "a"}}, "at least one"),
        ({"range": {"field": "a", "gte": True}}, "numbers or strings"),
        ({"bool": {}}, "at least one clause"),
        ({"bool": {"must": {"term": {}}}}, "must be a list"),
        ({"term": {"field": "a", "value": "x" * 5000}}, "longer than"),
        ("term", "exactly one"),
    ],
)
def test_invalid_filters_are_refused_with_a_reason(node: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        compile_filter(node, denied_fields=("embedding",))


def test_depth_and_clause_limits() -> None:
    node: dict[str, object] = {"term": {"field": "a", "value": 1}}
    for _ in range(FilterLimits.max_depth + 1):
        node = {"bool": {"filter": [node]}}
    with pytest.raises(InvalidInputError, match="deeper"):
        compile_filter(node)
    wide = {"bool": {"should": [{"exists": {"field": "a"}}] * (FilterLimits.max_clauses + 1)}}
    with pytest.raises(InvalidInputError, match="clauses"):
        compile_filter(wide)
