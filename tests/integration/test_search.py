"""Hybrid search against real engines with the embedded models: legs, fusion vs ranx-checked
fusion functions, explain, pagination, and the same ranking on both engines."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from es_neural.dialects import BaseDialect, get_dialect
from es_neural.encoders.base import DenseEncoder, FloatMatrix, SparseEncoder
from es_neural.errors import InvalidInputError
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex
from es_neural.search.fusion import RankedList, fuse
from es_neural.search.models import SearchRequest
from es_neural.settings import EngineKind, Settings
from es_neural.text import document_text
from tests.support.fakes import HashingDense

pytestmark = [pytest.mark.engine, pytest.mark.models]

CORPUS = [
    ("py", "Python", "Python is a high-level programming language with dynamic typing."),
    ("rust", "Rust", "Rust is a systems programming language focused on memory safety."),
    ("volcano", "Volcanoes", "A volcano is a rupture in the crust where lava and ash escape."),
    ("tea", "Green tea", "Green tea is made from unoxidised leaves of Camellia sinensis."),
    ("coffee", "Coffee", "Coffee is a brewed drink prepared from roasted coffee beans."),
    ("jazz", "Jazz", "Jazz is a music genre that originated in New Orleans."),
    ("piano", "Piano", "The piano is a keyboard instrument played by pressing keys."),
    ("tiger", "Tiger", "The tiger is the largest living cat species, a striped predator."),
    ("eagle", "Eagle", "Eagles are large birds of prey with powerful talons and beaks."),
    ("moon", "Moon", "The Moon is Earth's only natural satellite, orbiting every month."),
    ("mars", "Mars", "Mars is the fourth planet from the Sun, a dusty red desert world."),
    ("bread", "Bread", "Bread is baked from a dough of flour and water, usually with yeast."),
]
DOCS = [
    {"id": i, "title": t, "text": x, "tenant": "a" if n % 2 == 0 else "b"}
    for n, (i, t, x) in enumerate(CORPUS)
]


@pytest.fixture
def neural(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    embedded_dense: DenseEncoder,
    embedded_sparse: SparseEncoder,
    tmp_path: Path,
) -> NeuralIndex:
    idx = NeuralIndex(
        index_name,
        settings=engine_settings,
        dialect=dialect,
        dense=embedded_dense,
        sparse=embedded_sparse,
    )
    idx.ingest(DOCS, options=IngestOptions(progress=False, batch_size=5))
    return idx


@pytest.mark.parametrize(
    ("leg", "query", "expected"),
    [
        ("bm25", "roasted beans", "coffee"),
        ("dense", "a big striped wild cat", "tiger"),
        ("dense", "a large bird that hunts", "eagle"),
        ("sparse", "memory safe systems language", "rust"),
        ("sparse", "lava eruption", "volcano"),
    ],
)
def test_each_leg_finds_the_expected_document(
    neural: NeuralIndex, leg: str, query: str, expected: str
) -> None:
    legs = {name: {"enabled": name == leg} for name in ("bm25", "dense", "sparse")}
    response = neural.search(query, size=3, **legs)
    assert response.hits[0].id == expected
    assert set(response.leg_totals) == {leg}


def test_leg_totals_count_as_far_as_asked(neural: NeuralIndex) -> None:
    # "from" is in four texts (not an English stop word)
    exact = neural.search("from", size=3, dense={"enabled": False}, track_total_hits=True)
    matched = exact.leg_totals["bm25"]["value"]
    assert matched >= 3 and exact.leg_totals["bm25"]["relation"] == "eq"
    assert exact.leg_totals["sparse"]["relation"] == "eq"
    default = neural.search("from", size=3, dense={"enabled": False})
    assert default.leg_totals["bm25"] == {"value": matched, "relation": "eq"}  # under 10,000
    capped = neural.search("from", size=3, dense={"enabled": False}, track_total_hits=2)
    assert capped.leg_totals["bm25"] == {"value": 2, "relation": "gte"}
    untracked = neural.search("from", size=3, dense={"enabled": False}, track_total_hits=False)
    assert untracked.leg_totals["bm25"]["relation"] == "gte"
    # the hits do not depend on how far the totals count
    assert (
        [h.id for h in capped.hits] == [h.id for h in exact.hits] == [h.id for h in untracked.hits]
    )


def test_explain_adds_up_and_matches_the_fusion_functions(neural: NeuralIndex) -> None:
    default = neural.search("programming language", size=5, window=12, explain=True)
    assert default.hits[0].explain is not None
    assert default.hits[0].explain.fusion == "linear"  # the default: min-max, equal weights
    rrf = {"method": "rrf"}
    response = neural.search("programming language", size=5, window=12, explain=True, fusion=rrf)
    assert response.hits[0].id in {"py", "rust"}
    for hit in response.hits:
        e = hit.explain
        assert e is not None and e.fusion == "rrf"
        present = [leg for leg in e.legs.values() if leg is not None]
        assert present
        assert math.isclose(sum(leg.contribution for leg in present), e.fused_score, rel_tol=1e-9)
        for leg in present:
            assert math.isclose(leg.normalized, 1.0 / (60 + leg.rank), rel_tol=1e-12)
        assert hit.score == e.fused_score
    # Rebuild the legs from the explain data and fuse them again: same order (the fusion
    # functions themselves are checked against ranx in the unit tests).
    full = neural.search("programming language", size=12, window=12, explain=True, fusion=rrf)
    lists = []
    for leg in ("bm25", "dense", "sparse"):
        pairs = [
            (h.id, h.explain.legs[leg].score)
            for h in full.hits
            if h.explain is not None and h.explain.legs[leg] is not None
        ]
        lists.append(RankedList.from_scores(leg, pairs))
    refused = fuse(lists, method="rrf")
    assert [h.id for h in full.hits] == list(refused.doc_ids)[: len(full.hits)]


def test_linear_fusion_explain(neural: NeuralIndex) -> None:
    response = neural.search(
        "coffee or tea",
        size=4,
        explain=True,
        fusion={"method": "linear", "normalization": "minmax"},
    )
    for hit in response.hits:
        e = hit.explain
        assert e is not None and e.fusion == "linear"
        for leg in e.legs.values():
            if leg is not None:
                assert 0.0 <= leg.normalized <= 1.0
    assert {h.id for h in response.hits[:2]} == {"coffee", "tea"}


def test_pagination_is_stable_and_honest(neural: NeuralIndex) -> None:
    first = neural.search("animal", size=4, window=12)
    assert first.window_total == len(CORPUS)
    seen = [h.id for h in first.hits]
    cursor = first.next_cursor
    while cursor is not None:
        page = neural.search("animal", size=4, window=12, cursor=cursor)
        assert page.offset == len(seen)
        seen += [h.id for h in page.hits]
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == first.window_total
    with pytest.raises(InvalidInputError, match="different query"):
        neural.search("other query", size=4, window=12, cursor=first.next_cursor)
    with pytest.raises(InvalidInputError):
        neural.search("animal", size=4, window=12, cursor="garbage")


def test_user_filter_applies_to_every_leg(neural: NeuralIndex) -> None:
    response = neural.search(
        "programming language music", size=12, filter={"term": {"field": "tenant", "value": "b"}}
    )
    tenants = {d["id"]: d["tenant"] for d in DOCS}
    assert response.hits and all(tenants[h.id] == "b" for h in response.hits)
    assert response.hits[0].id == "rust"


def test_rerank_is_off_with_a_clear_reason(neural: NeuralIndex) -> None:
    response = neural.search("coffee", size=3, rerank={"enabled": True})
    assert response.rerank.applied is False
    assert response.rerank.reason


def test_same_fused_ranking_on_both_engines(
    running_engines: dict[EngineKind, Settings],
    embedded_dense: DenseEncoder,
    embedded_sparse: SparseEncoder,
) -> None:
    # Unique: the engines are shared, and a fixed name collides with another run of this test.
    name = f"t-same-ranking-{uuid.uuid4().hex[:8]}"
    rankings: dict[EngineKind, list[list[str]]] = {}
    queries = ["programming language", "animal with stripes", "a hot drink", "planets"]
    for engine, settings in running_engines.items():
        dialect = get_dialect(settings)
        idx = NeuralIndex(
            name, settings=settings, dialect=dialect, dense=embedded_dense, sparse=embedded_sparse
        )
        try:
            idx.delete()
            idx.ingest(DOCS, options=IngestOptions(progress=False))
            rankings[engine] = [[h.id for h in idx.search(q, size=8).hits] for q in queries]
        finally:
            idx.delete()
            dialect.close()
    es, os_ = rankings[EngineKind.ELASTICSEARCH], rankings[EngineKind.OPENSEARCH]
    assert es == os_


def _scores(response: Any) -> list[float]:
    return [h.score for h in response.hits]


def test_weights_change_the_linear_fusion(neural: NeuralIndex) -> None:
    bm25_only = neural.search(
        "music",
        size=3,
        fusion={"method": "linear"},
        bm25={"weight": 1.0},
        dense={"weight": 0.0},
        sparse={"weight": 0.0},
    )
    assert bm25_only.hits[0].id == "jazz"
    assert _scores(bm25_only)[0] == pytest.approx(1.0)


def test_search_options_are_validated_like_the_request(neural: NeuralIndex) -> None:
    request = SearchRequest(query="coffee")
    with pytest.raises(ValidationError):
        neural.search(request, size=100_000)
    with pytest.raises(ValidationError):
        neural.search("coffee", rerank={"top_n": 0})
    for query in (request, "coffee"):
        with pytest.raises(InvalidInputError, match=r"unknown search option\(s\) \['sizee'\]"):
            neural.search(query, sizee=3)
    response = neural.search(request, size=2, bm25={"enabled": False})
    assert len(response.hits) == 2 and set(response.leg_totals) == {"dense", "sparse"}


class RecordingDense(HashingDense):
    """HashingDense that keeps every document text it encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.documents: list[str] = []

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        self.documents.extend(texts)
        return super().encode_documents(texts)


class LengthReranker:
    """A real (if simple) reranker: longer passages score higher; keeps what it read."""

    name = "length"
    max_length = 512

    def __init__(self) -> None:
        self.passages: list[str] = []

    def score(self, query: str, passages: Sequence[str], *, batch_size: int = 32) -> list[float]:
        self.passages.extend(passages)
        return [float(len(p)) for p in passages]

    def token_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        return [len(query.split()) + len(p.split()) for p in passages]


def test_a_list_valued_title_reaches_the_reranker_as_the_encoder_saw_it(
    engine_settings: Settings, dialect: BaseDialect, index_name: str
) -> None:
    dense, reranker = RecordingDense(), LengthReranker()
    idx = NeuralIndex(
        index_name,
        settings=engine_settings,
        dialect=dialect,
        dense=dense,
        use_sparse=False,
        reranker=reranker,
    )
    docs = [
        {"id": "isl", "title": ["Volcanic islands", "Iceland"], "text": "Lava and geysers."},
        {"id": "bread", "title": "Bread", "text": "Baked from flour."},
    ]
    report = idx.ingest(docs, options=IngestOptions(progress=False))
    assert report.indexed == 2
    response = idx.search("lava", size=2, sparse={"enabled": False}, rerank={"enabled": True})
    assert response.rerank.applied and response.rerank.candidates == 2
    seen = "Volcanic islands\nIceland\nLava and geysers."
    assert document_text(docs[0], ("title", "text")) == seen
    assert seen in dense.documents
    assert seen in reranker.passages
    assert not any("[" in p for p in reranker.passages)
    # the longest passage first: the reranker's order, not the fused one
    assert [h.id for h in response.hits] == ["isl", "bread"]
    assert response.hits[0].explain is None and response.hits[0].score == float(len(seen))


def test_unset_rerank_options_come_from_the_settings(
    engine_settings: Settings, dialect: BaseDialect, index_name: str
) -> None:
    settings = engine_settings.with_(rerank={"model": "off", "top_n": 1, "budget_ms": 60_000.0})
    reranker = LengthReranker()
    idx = NeuralIndex(
        index_name,
        settings=settings,
        dialect=dialect,
        dense=HashingDense(),
        use_sparse=False,
        reranker=reranker,
    )
    idx.ingest(DOCS, options=IngestOptions(progress=False))
    legs: dict[str, Any] = {"sparse": {"enabled": False}}
    unset = idx.search("coffee beans", size=5, **legs)
    assert unset.rerank.applied and unset.rerank.candidates == 1 and len(reranker.passages) == 1
    asked = idx.search("coffee beans", size=5, rerank={"top_n": 3}, **legs)
    assert asked.rerank.candidates == 3 and len(reranker.passages) == 4
    off = idx.search("coffee beans", size=5, rerank={"enabled": False}, **legs)
    assert not off.rerank.applied and off.rerank.reason == "disabled by the request"
    assert len(off.hits) == 5 and len(reranker.passages) == 4
