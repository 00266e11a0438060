"""The same documents give the same raw BM25 scores on Elasticsearch and OpenSearch.

Elasticsearch 9 scores BM25 with the ``(k1 + 1)`` factor in the numerator; OpenSearch 3's
default similarity (Lucene's ``BM25Similarity``) dropped it, so its scores were 2.2x lower for
the same ranking. Indices es-neural creates on OpenSearch use ``LegacyBM25``, which keeps it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from es_neural.dialects import BaseDialect, get_dialect
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex
from es_neural.settings import EngineKind, Settings, get_settings
from tests.support.fakes import HashingDense

pytestmark = [pytest.mark.engine]

DOCS = [
    {"id": "a", "title": "Green tea", "text": "green tea is made from leaves of the tea plant"},
    {"id": "b", "title": "Coffee", "text": "coffee is brewed from roasted beans"},
    {"id": "c", "title": "Cocoa", "text": "cocoa beans are fermented, dried and roasted"},
    {"id": "d", "title": "Water", "text": "water is the drink nobody brews"},
]


@pytest.fixture
def both() -> Iterator[dict[EngineKind, NeuralIndex]]:
    # One analyzer on both (the similarity is what is compared; english may be missing on one).
    settings: Settings = get_settings().with_(analyzer="standard")
    name = f"test-bm25-{uuid.uuid4().hex[:8]}"
    dialects: dict[EngineKind, BaseDialect] = {k: get_dialect(settings, k) for k in EngineKind}
    indexes = {
        kind: NeuralIndex(
            name, settings=settings, engine=kind, dialect=d, dense=HashingDense(), use_sparse=False
        )
        for kind, d in dialects.items()
    }
    for idx in indexes.values():
        idx.ingest(DOCS, options=IngestOptions(progress=False))
    yield indexes
    for idx in indexes.values():
        idx.delete()
        idx.close()


def test_raw_bm25_scores_agree_on_both_engines(both: dict[EngineKind, NeuralIndex]) -> None:
    scores = {}
    for kind, idx in both.items():
        response = idx.search(
            "roasted beans tea",
            size=4,
            explain=True,
            dense={"enabled": False},
            sparse={"enabled": False},
        )
        scores[kind] = {
            h.id: h.explain.legs["bm25"].score
            for h in response.hits
            if h.explain and h.explain.legs["bm25"]
        }
    es, os_ = scores[EngineKind.ELASTICSEARCH], scores[EngineKind.OPENSEARCH]
    assert set(es) == set(os_) == {"a", "b", "c"}
    for doc_id, score in es.items():
        assert os_[doc_id] == pytest.approx(score, rel=1e-5)
