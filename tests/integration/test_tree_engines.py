"""Tree routing against real engines: ingest with leaves, leaf-filtered kNN, version refusal.

Runs once per engine. The dense encoder is a deterministic toy (topic word -> direction, plus a
hash-seeded jitter): these tests check the plumbing (leaf fields written, terms filter applied
inside the kNN search), not effectiveness, so they need no model files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from es_neural.dialects.base import BaseDialect
from es_neural.encoders.base import FloatMatrix, Similarity
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.errors import ModelMismatchError
from es_neural.indices import ensure_index, read_index_info
from es_neural.ingest.pipeline import IngestOptions, Ingestor
from es_neural.ingest.sources import iterable_source
from es_neural.queries import knn_body, leaf_filter
from es_neural.search.models import (
    BM25Leg,
    DenseLeg,
    RerankConfig,
    SearchRequest,
    SparseLeg,
    TreeConfig,
)
from es_neural.search.service import HybridSearcher
from es_neural.text import DEFAULT_TEXT_FIELDS
from es_neural.tree import BuildConfig, TreeLeafAssigner, TreeModel, TreeRouter, build_tree

pytestmark = pytest.mark.engine

DIMS = 16
TOPICS = ("ocean", "forest", "desert", "glacier", "volcano", "river")


class ToyEncoder:
    """A tiny deterministic ``DenseEncoder``: the topic word picks a direction."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self._directions = {t: rng.normal(size=DIMS) for t in TOPICS}

    @property
    def dims(self) -> int:
        return DIMS

    @property
    def similarity(self) -> Similarity:
        return "cosine"

    @property
    def max_seq_length(self) -> int:
        return 512

    @property
    def fingerprint(self) -> ModelFingerprint:
        return ModelFingerprint(
            kind="dense", name="toy-topics", revision="1", dims=DIMS, normalize=True
        )

    @property
    def cache_key(self) -> str:
        return self.fingerprint.digest

    def load(self) -> None:
        return None

    def _encode(self, texts: Sequence[str]) -> FloatMatrix:
        rows = []
        for text in texts:
            topic = next((t for t in TOPICS if t in text), TOPICS[0])
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            jitter = np.random.default_rng(seed).normal(size=DIMS)
            v = self._directions[topic] + 0.35 * jitter
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts)

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]


def _corpus() -> list[dict[str, str]]:
    return [
        {"_id": f"d{i}", "title": f"{TOPICS[i % len(TOPICS)]} note {i}", "text": f"item {i}"}
        for i in range(72)
    ]


def _texts(docs: list[dict[str, str]]) -> list[str]:
    return [f"{d['title']}\n{d['text']}" for d in docs]  # as ingestion composes them


@pytest.fixture
def tree() -> TreeModel:
    encoder = ToyEncoder()
    docs = _corpus()
    vectors = encoder.encode_documents(_texts(docs))
    model = build_tree(
        vectors,
        version="t1",
        doc_ids=[d["_id"] for d in docs],
        config=BuildConfig(branching=3, max_leaf_size=8),
    )
    return model.with_encoder(encoder.fingerprint)


def _ingest(dialect: BaseDialect, index: str, tree: TreeModel, state: Path) -> None:
    encoder = ToyEncoder()
    info = ensure_index(
        dialect,
        index,
        dense=encoder.fingerprint,
        sparse=None,
        text_fields=DEFAULT_TEXT_FIELDS,
        similarity="cosine",
        tree_version=tree.version,
    )
    ingestor = Ingestor(
        dialect,
        dense=encoder,
        leaves=TreeLeafAssigner(tree),
        options=IngestOptions(progress=False, resume=False),
        state_dir=state,
    )
    report = ingestor.run(iterable_source(_corpus()), info)
    assert report.indexed == 72 and report.dead_lettered == 0


def _request(query: str, **tree: object) -> SearchRequest:
    return SearchRequest(
        query=query,
        size=50,
        window=50,
        bm25=BM25Leg(enabled=False),
        sparse=SparseLeg(enabled=False),
        rerank=RerankConfig(enabled=False),
        tree=TreeConfig(enabled=True, **tree),  # type: ignore[arg-type]
        explain=True,
    )


def test_ingest_stores_the_leaves_of_the_tree(
    dialect: BaseDialect, index_name: str, tree: TreeModel, tmp_path: Path
) -> None:
    _ingest(dialect, index_name, tree, tmp_path)
    assert read_index_info(dialect, index_name).tree_version == "t1"
    stored = dialect.get_documents(
        index_name,
        [f"d{i}" for i in range(72)],
        fields=["leaf_ids", "leaf_ancestors", "tree_version"],
    )
    assert len(stored) == 72
    for doc_id, source in stored.items():
        assert tuple(source["leaf_ids"]) == tree.document_leaves(doc_id)
        leaf = tree.node_index(source["leaf_ids"][0])
        assert set(source["leaf_ancestors"]) >= {tree.node_ids[a] for a in tree.ancestors(leaf)}
        assert source["tree_version"] == "t1"


def test_leaf_filtered_search_returns_only_routed_leaves(
    dialect: BaseDialect, index_name: str, tree: TreeModel, tmp_path: Path
) -> None:
    _ingest(dialect, index_name, tree, tmp_path)
    encoder = ToyEncoder()
    router = TreeRouter(tree)
    searcher = HybridSearcher(dialect, index_name, dense=encoder, router=router)
    by_leaf = tree.documents_by_leaf()
    for query in ("ocean waves", "volcano ash", "glacier melt", "forest trail"):
        response = searcher.search(_request(query, threshold=0.5, max_leaves=2))
        assert response.leaves, query
        routed = set(response.leaves)
        expected = {tree.doc_ids[row] for leaf in routed for row in by_leaf[tree.node_index(leaf)]}
        got = {hit.id for hit in response.hits}
        assert got and got <= expected, query
        assert got == expected  # 50 >= every routed leaf's size: all of them come back
        for hit in response.hits:
            assert hit.explain is not None and hit.explain.matched_leaf in routed
    # The same through the pure builders: a terms filter inside the kNN search.
    vector = encoder.encode_queries(["desert dunes"])[0]
    route = router.route(vector, threshold=0.5, max_leaves=1)
    body = knn_body(
        dialect,
        vector.tolist(),
        k=20,
        num_candidates=100,
        filter=leaf_filter(route.leaf_ids),
        source=["leaf_ids"],
    )
    hits = dialect.search(index_name, body)["hits"]["hits"]
    assert hits and all(set(h["_source"]["leaf_ids"]) & set(route.leaf_ids) for h in hits)


def test_widened_route_filters_on_ancestors(
    dialect: BaseDialect, index_name: str, tree: TreeModel, tmp_path: Path
) -> None:
    _ingest(dialect, index_name, tree, tmp_path)
    encoder = ToyEncoder()
    router = TreeRouter(tree, widen_below=1.0)  # always widen
    searcher = HybridSearcher(dialect, index_name, dense=encoder, router=router)
    vector = encoder.encode_queries(["river delta"])[0]
    route = router.route(vector, threshold=0.3, max_leaves=1)
    assert route.widened and route.filter_field in ("leaf_ancestors", "tree_version")
    response = searcher.search(_request("river delta", threshold=0.3, max_leaves=1))
    allowed = set(route.filter_ids)
    subtree = {
        doc_id
        for doc_id in tree.doc_ids
        for leaf in tree.document_leaves(doc_id)
        if route.filter_field == "tree_version"
        or allowed & {tree.node_ids[a] for a in tree.ancestors(tree.node_index(leaf))}
    }
    got = {hit.id for hit in response.hits}
    assert got and got <= subtree
    leaf_docs = {
        tree.doc_ids[row]
        for leaf in route.leaf_ids
        for row in tree.documents_by_leaf()[tree.node_index(leaf)]
    }
    assert len(got) > len(leaf_docs)  # wider than the leaf itself


def test_a_router_of_another_tree_version_is_refused(
    dialect: BaseDialect, index_name: str, tree: TreeModel, tmp_path: Path
) -> None:
    _ingest(dialect, index_name, tree, tmp_path)
    encoder = ToyEncoder()
    with pytest.raises(ModelMismatchError, match="t1"):
        HybridSearcher(
            dialect, index_name, dense=encoder, router=TreeRouter(tree.with_version("t2"))
        )
    with pytest.raises(ModelMismatchError):
        ensure_index(
            dialect,
            index_name,
            dense=encoder.fingerprint,
            sparse=None,
            text_fields=DEFAULT_TEXT_FIELDS,
            similarity="cosine",
            tree_version="t2",
        )


def test_leaf_boost_on_an_unfiltered_leg_raises_routed_documents_only(
    dialect: BaseDialect, index_name: str, tree: TreeModel, tmp_path: Path
) -> None:
    _ingest(dialect, index_name, tree, tmp_path)
    searcher = HybridSearcher(dialect, index_name, dense=ToyEncoder(), router=TreeRouter(tree))

    def bm25_scores(boost: float) -> tuple[dict[str, float], set[str]]:
        request = SearchRequest(
            query="note",  # every title has it: all 72 documents match BM25
            size=72,
            window=100,
            bm25=BM25Leg(k=100),
            dense=DenseLeg(enabled=False),
            sparse=SparseLeg(enabled=False),
            rerank=RerankConfig(enabled=False),
            tree=TreeConfig(enabled=True, threshold=0.5, max_leaves=2, boost=boost),
            explain=True,
        )
        response = searcher.search(request)
        scores = {}
        for hit in response.hits:
            assert hit.explain is not None
            leg = hit.explain.legs["bm25"]
            assert leg is not None
            scores[hit.id] = leg.score
        return scores, set(response.leaves or [])

    plain, leaves = bm25_scores(0.0)
    boosted, boosted_leaves = bm25_scores(50.0)
    assert leaves == boosted_leaves and leaves
    assert set(plain) == set(boosted) == {f"d{i}" for i in range(72)}  # nothing filtered out
    in_leaves = {
        tree.doc_ids[row]
        for leaf in leaves
        for row in tree.documents_by_leaf()[tree.node_index(leaf)]
    }
    assert 0 < len(in_leaves) < 72
    for doc_id, score in boosted.items():
        expected = plain[doc_id] + (50.0 if doc_id in in_leaves else 0.0)
        assert score == pytest.approx(expected, rel=1e-4), doc_id
    top = sorted(boosted, key=boosted.__getitem__, reverse=True)[: len(in_leaves)]
    assert set(top) == in_leaves
