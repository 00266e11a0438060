"""``search(request, **options)``: options are validated as the request's own fields are.

No engine: :func:`es_neural.search.models.search_request` is what ``HybridSearcher.search``
(and so ``NeuralIndex.search``) applies first; tests/integration/test_search.py checks the
searcher itself on both engines.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from es_neural.errors import InvalidInputError
from es_neural.search.models import RerankConfig, SearchRequest, search_request


def test_options_apply_to_text_and_to_a_request() -> None:
    from_text = search_request("q", size=5, rerank={"enabled": True})
    assert from_text == SearchRequest(query="q", size=5, rerank=RerankConfig(enabled=True))
    base = SearchRequest(query="q", window=20)
    changed = search_request(base, size=7, query="other")
    assert (changed.query, changed.size, changed.window) == ("other", 7, 20)
    assert base.size == 10  # the request given is left as it is
    assert search_request(base) is base


def test_a_nested_option_is_validated_into_its_model() -> None:
    request = search_request(SearchRequest(query="q"), rerank={"top_n": 5})
    assert isinstance(request.rerank, RerankConfig)
    assert request.rerank.top_n == 5 and request.rerank.enabled is None


@pytest.mark.parametrize("request_", ["q", SearchRequest(query="q")], ids=["text", "request"])
def test_unknown_options_are_a_typed_error_naming_them(request_: SearchRequest | str) -> None:
    with pytest.raises(InvalidInputError, match=r"unknown search option\(s\) \['sizee', 'top_k'\]"):
        search_request(request_, sizee=3, top_k=5)


@pytest.mark.parametrize("request_", ["q", SearchRequest(query="q")], ids=["text", "request"])
@pytest.mark.parametrize(
    "options",
    [
        {"size": 100_000},
        {"size": 0},
        {"window": 5000},
        {"rerank": {"top_n": 0}},
        {"rerank": {"interpolation": 2.0}},
        {"bm25": {"fields": ["*"]}},
        {"filter": {"script": {"source": "1"}}},
        {"fusion": {"method": "borda"}},
    ],
)
def test_bad_values_fail_as_building_the_request_would(
    request_: SearchRequest | str, options: dict[str, object]
) -> None:
    with pytest.raises(ValidationError) as got:
        search_request(request_, **options)
    with pytest.raises(ValidationError) as direct:
        SearchRequest.model_validate({"query": "q", **options})
    assert [e["loc"] for e in got.value.errors()] == [e["loc"] for e in direct.value.errors()]


def test_the_query_given_twice_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="twice"):
        search_request("q", query="other")
    with pytest.raises(ValidationError):
        search_request(SearchRequest(query="q"), query="   ")


def test_leg_totals_are_counted_up_to_the_engines_default_unless_asked() -> None:
    from es_neural.search.models import DEFAULT_TRACK_TOTAL_HITS
    from es_neural.search.service import leg_bodies
    from tests.support.grammar import DIALECTS, INFO

    assert SearchRequest(query="q").track_total_hits == DEFAULT_TRACK_TOTAL_HITS == 10_000
    for tracked in (True, False, 1, 250_000):
        request = SearchRequest(query="q", track_total_hits=tracked)
        for dialect in DIALECTS:
            bodies = leg_bodies(
                request, dialect=dialect, info=INFO, vector=[0.0] * 4, weights={"x": 1.0}
            )
            assert set(bodies) == {"bm25", "dense", "sparse"}
            for body in bodies.values():
                assert body["track_total_hits"] == tracked
                assert type(body["track_total_hits"]) is type(tracked)
    for bad in (0, -1, 2**31, "many", 1.5):
        with pytest.raises(ValidationError):
            SearchRequest(query="q", track_total_hits=bad)
