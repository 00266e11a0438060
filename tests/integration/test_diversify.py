"""The diversify stage (MMR) against real engines, once per engine: near-duplicates are moved
apart, explain agrees with a recomputation from the documents' own vectors, cursors keep the
diversified order and its explanations, ``lambda = 1`` changes nothing.

The documents are encoded by the hashing test encoder, widened to 256 dims (a bag of hashed
words, few collisions): near copies of one text get near-identical vectors, other texts far
apart ones, and the test computes every vector itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from es_neural.errors import InvalidInputError
from es_neural.neural_index import NeuralIndex
from es_neural.search.models import SearchResponse
from es_neural.text import document_text
from tests.support.fakes import HashingDense

pytestmark = [pytest.mark.engine]

QUERY = "python programming language"
COPIES = {"py1", "py2", "py3"}
_PY = "Python is a programming language with dynamic typing and a large standard library"
DOCS: list[dict[str, Any]] = [
    {"id": "py1", "title": "Python", "text": f"{_PY} for everyone."},
    {"id": "py2", "title": "Python", "text": f"{_PY} for everybody."},
    {"id": "py3", "title": "Python", "text": f"{_PY} for all."},
    {"id": "rust", "title": "Rust", "text": "Rust: a systems programming language, memory safe."},
    {"id": "snake", "title": "Pythons", "text": "The python snake swallows its prey whole."},
    {"id": "cobol", "title": "COBOL", "text": "COBOL, the language of old bank programs."},
    {"id": "tea", "title": "Tea", "text": "Green tea is made from the leaves of a shrub."},
    {"id": "mars", "title": "Mars", "text": "Mars is the fourth planet from the Sun."},
    # written without text: no vector; found by BM25 on its tag only
    {"id": "bare", "tag": "python programming language"},
]
#: BM25 alone: the order before MMR is then plain to see (MMR reads the documents' vectors
#: from the engine whatever legs ran).
LEGS: dict[str, Any] = {"dense": {"enabled": False}, "sparse": {"enabled": False}}
#: BM25 over ``tag`` too: finds the document without text.
WITH_TAG: dict[str, Any] = {**LEGS, "bm25": {"fields": ["title", "text", "tag"]}}


class WideHashing(HashingDense):
    dims = 256


@pytest.fixture
def hashed(hashed_index: Callable[..., NeuralIndex]) -> NeuralIndex:
    return hashed_index(DOCS, WideHashing())


def _vectors() -> dict[str, np.ndarray]:
    """Each document's vector as the test computes it (what ingest wrote)."""
    encoder = WideHashing()
    out = {}
    for doc in DOCS:
        text = document_text(doc, ("title", "text"))
        if text:
            out[doc["id"]] = encoder.encode_documents([text])[0].astype(np.float64)
    return out


def _cos(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return 0.0
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _search(idx: NeuralIndex, legs: dict[str, Any] = LEGS, **options: Any) -> SearchResponse:
    # RRF: the fixture's relevance spread (three copies on top, others close behind) was laid
    # out on RRF scores; MMR itself does not depend on how the window was fused.
    request = {"size": 9, "window": 9, "fusion": {"method": "rrf"}, **legs, **options}
    return idx.search(QUERY, **request)


def _ids(response: SearchResponse) -> list[str]:
    return [h.id for h in response.hits]


def test_near_duplicates_are_moved_apart(hashed: NeuralIndex) -> None:
    plain = _search(hashed)
    assert set(_ids(plain)[:3]) == COPIES  # plain ranking puts the three copies together
    assert not plain.diversify.applied and plain.diversify.reason == "disabled by the request"
    mmr = _search(hashed, diversify={"enabled": True, "lambda": 0.5})
    info = mmr.diversify
    assert info.applied and info.lambda_ == 0.5 and info.window == len(plain.hits) == 6
    assert info.missing_vectors == 0
    ids = _ids(mmr)
    assert sorted(ids) == sorted(_ids(plain))  # reordered, nothing dropped
    assert ids[0] == _ids(plain)[0] and ids[1] not in COPIES
    copies = [i for i, d in enumerate(ids) if d in COPIES]
    assert copies[1] - copies[0] > 1  # no longer side by side
    # the relevance a hit shows is the one it had: MMR moves hits, not their scores
    assert {h.id: h.score for h in mmr.hits} == {h.id: h.score for h in plain.hits}
    assert mmr.timings.diversify_ms > 0


@pytest.mark.parametrize("lam", [0.6, 0.2])
def test_explain_recomputes_to_the_final_order(hashed: NeuralIndex, lam: float) -> None:
    # with the document without text (no vector: similar to nothing) in the window
    plain = _search(hashed, WITH_TAG)
    mmr = _search(hashed, WITH_TAG, explain=True, diversify={"enabled": True, "lambda": lam})
    assert "bare" in _ids(plain) and mmr.diversify.missing_vectors == 1
    vectors = _vectors()
    plain_rank = {h.id: h.rank for h in plain.hits}
    scores = [h.score for h in plain.hits]
    lo, hi = min(scores), max(scores)
    placed: list[str] = []
    for hit in mmr.hits:
        m = hit.explain.mmr if hit.explain is not None else None
        assert m is not None
        assert m.rank_before == plain_rank[hit.id]
        assert m.relevance == pytest.approx((hit.score - lo) / (hi - lo), abs=1e-12)
        # its max similarity is to a document above it, computed here from the texts
        sims = {d: _cos(vectors.get(hit.id), vectors.get(d)) for d in placed}
        if placed:
            assert m.max_similarity == pytest.approx(max(sims.values()), abs=1e-5)
        else:
            assert m.max_similarity == 0.0 and m.similar_to is None
        if hit.id == "bare":
            assert m.max_similarity == 0.0 and m.similar_to is None
        elif m.similar_to is not None:
            assert m.similar_to in placed
            assert sims[m.similar_to] == pytest.approx(m.max_similarity, abs=1e-5)
        assert m.mmr_score == pytest.approx(lam * m.relevance - (1 - lam) * m.max_similarity)
        # no document placed below it would have scored higher at its turn
        for other in mmr.hits[hit.rank :]:
            rel = (other.score - lo) / (hi - lo)
            penalty = max((_cos(vectors.get(other.id), vectors.get(d)) for d in placed), default=0)
            assert lam * rel - (1 - lam) * penalty <= m.mmr_score + 1e-6
        placed.append(hit.id)


def test_lambda_one_is_no_diversification(hashed: NeuralIndex) -> None:
    plain = _search(hashed)
    same = _search(hashed, diversify={"enabled": True, "lambda": 1.0})
    assert same.diversify.applied
    assert [(h.id, h.score) for h in same.hits] == [(h.id, h.score) for h in plain.hits]


def test_the_cursor_keeps_the_diversified_order_and_explains_later_pages(
    hashed: NeuralIndex,
) -> None:
    options: dict[str, Any] = {"explain": True, "diversify": {"enabled": True, "lambda": 0.4}}
    full = _search(hashed, **options)
    assert full.next_cursor is None
    pages = [_search(hashed, size=2, **options)]
    while pages[-1].next_cursor is not None:
        pages.append(_search(hashed, size=2, cursor=pages[-1].next_cursor, **options))
    walked = [h for page in pages for h in page.hits]
    assert [h.id for h in walked] == _ids(full)
    assert [h.rank for h in walked] == list(range(1, len(full.hits) + 1))
    # later pages explain from the cursor: the same numbers as the one full page
    assert [h.explain.mmr if h.explain else None for h in walked] == [
        h.explain.mmr if h.explain else None for h in full.hits
    ]
    assert all(page.diversify == full.diversify for page in pages)
    # a cursor of the diversified order is refused for another diversification
    with pytest.raises(InvalidInputError, match="different query or options"):
        _search(hashed, size=2, cursor=pages[0].next_cursor, diversify={"enabled": True})


def test_the_mmr_window_and_what_is_below_it(hashed: NeuralIndex) -> None:
    plain = _search(hashed)
    top = _search(hashed, explain=True, diversify={"enabled": True, "lambda": 0.3, "window": 4})
    assert top.diversify.window == 4
    assert sorted(_ids(top)[:4]) == sorted(_ids(plain)[:4])
    assert _ids(top)[4:] == _ids(plain)[4:]  # below the MMR window: the order before
    assert all(h.explain and h.explain.mmr is not None for h in top.hits[:4])
    assert all(h.explain and h.explain.mmr is None for h in top.hits[4:])


class _LengthReranker:
    """A real (if simple) reranker: longer passages score higher."""

    name = "length"
    max_length = 512
    interpolation = None

    def score(self, query: str, passages: Sequence[str], *, batch_size: int = 32) -> list[float]:
        return [float(len(p)) for p in passages]

    def token_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        return [len(p.split()) for p in passages]


def test_after_rerank_mmr_reorders_the_reranked_candidates(hashed: NeuralIndex) -> None:
    idx = NeuralIndex(
        hashed.name,
        settings=hashed.settings,
        dialect=hashed.dialect,
        dense=hashed.dense,
        use_sparse=False,
        reranker=_LengthReranker(),
    )
    rerank = {"enabled": True, "top_n": 5}
    reranked = _search(idx, rerank=rerank)
    both = _search(idx, rerank=rerank, explain=True, diversify={"enabled": True, "lambda": 0.5})
    assert both.rerank.applied and both.diversify.applied
    # the reranked scores and the fused ones below them are on two scales: MMR keeps to the 5
    assert both.diversify.window == 5 and "reranked candidates" in (both.diversify.note or "")
    assert sorted(_ids(both)[:5]) == sorted(_ids(reranked)[:5])
    assert _ids(both)[5:] == _ids(reranked)[5:]
    scores = [h.score for h in reranked.hits[:5]]
    for hit in both.hits[:5]:
        assert hit.explain is not None and hit.explain.mmr is not None
        expected = (hit.score - min(scores)) / (max(scores) - min(scores))
        assert math.isclose(hit.explain.mmr.relevance, expected, abs_tol=1e-12)
