"""The dialect contract: the same suite against real Elasticsearch and real OpenSearch."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from es_neural.dialects import BaseDialect, BulkAction, IndexSpec
from es_neural.encoders.tokens import clean_weights
from es_neural.errors import (
    BadRequestError,
    ConflictError,
    IndexNotFoundError,
)
from es_neural.queries import bm25_body, combine_filters, knn_body, leaf_filter, sparse_body

pytestmark = pytest.mark.engine

DIMS = 8
N_DOCS = 200


def _vector(i: int) -> list[float]:
    rng = random.Random(i)
    v = [rng.gauss(0, 1) for _ in range(DIMS)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _leaf(i: int) -> str:
    return f"v1:{i % 4}/{i % 3}"


def _doc(i: int) -> dict[str, Any]:
    weights = {f"tok{i % 20}": 1.0 + i / 100, "common": 0.5}
    if i % 2 == 0:
        weights["dot.ted"] = 0.3 + i / 1000
    leaf = _leaf(i)
    return {
        "title": f"document number {i}",
        "text": f"shared words and a unique marker uniq{i} group{i % 10}",
        "embedding": _vector(i),
        "splade": clean_weights(weights, top_k=None),
        "leaf_ids": [leaf],
        "leaf_ancestors": [leaf.split("/")[0]],
        "tree_version": "v1",
        "content_hash": f"h{i}",
    }


@pytest.fixture
def loaded(dialect: BaseDialect, index_name: str) -> str:
    body = dialect.index_body(IndexSpec(dims=DIMS, meta={"dense": {"name": "test"}}))
    dialect.create_index(index_name, body)
    actions = [BulkAction(index_name, f"d{i}", _doc(i)) for i in range(N_DOCS)]
    result = dialect.bulk(actions, refresh=True)
    assert not result.failed, result.failed[:3]
    assert len(result.succeeded) == N_DOCS
    return index_name


def _ids(response: dict[str, Any]) -> list[str]:
    return [hit["_id"] for hit in response["hits"]["hits"]]


def test_capabilities(dialect: BaseDialect) -> None:
    caps = dialect.probe()
    assert caps.engine is dialect.engine
    assert caps.major >= 2
    assert caps.dense_vectors and caps.sparse_vectors


def test_count_and_meta(dialect: BaseDialect, loaded: str) -> None:
    assert dialect.count(loaded) == N_DOCS
    mapping = dialect.get_mapping(loaded)
    assert mapping["_meta"]["dense"] == {"name": "test"}
    assert mapping["_meta"]["created_by"] == "es-neural"
    dialect.put_meta(loaded, {**mapping["_meta"], "tree_version": "v9"})
    assert dialect.get_mapping(loaded)["_meta"]["tree_version"] == "v9"


def test_bm25_finds_unique_marker(dialect: BaseDialect, loaded: str) -> None:
    response = dialect.search(loaded, bm25_body("uniq137", size=5))
    assert _ids(response) == ["d137"]


def test_bm25_with_filter(dialect: BaseDialect, loaded: str) -> None:
    body = bm25_body("group3", size=50, filter={"terms": {"leaf_ids": [_leaf(3)]}})
    ids = _ids(dialect.search(loaded, body))
    expected = {f"d{i}" for i in range(N_DOCS) if i % 10 == 3 and _leaf(i) == _leaf(3)}
    assert set(ids) == expected


def test_knn_nearest_is_itself(dialect: BaseDialect, loaded: str) -> None:
    response = dialect.search(loaded, knn_body(dialect, _vector(17), k=5, num_candidates=50))
    assert _ids(response)[0] == "d17"
    assert len(_ids(response)) == 5


def test_knn_over_shards_is_the_global_k_nearest(dialect: BaseDialect, index_name: str) -> None:
    # Each shard answers with its own nearest; the leg must return the k nearest of the whole
    # index, and never more than k (the Elasticsearch leg is a knn query, not the knn section).
    body = dialect.index_body(IndexSpec(dims=DIMS, shards=3, meta={"dense": {"name": "test"}}))
    dialect.create_index(index_name, body)
    actions = [BulkAction(index_name, f"d{i}", _doc(i)) for i in range(N_DOCS)]
    assert not dialect.bulk(actions, refresh=True).failed
    q = _vector(58)
    exact = sorted(
        (f"d{i}" for i in range(N_DOCS)),
        key=lambda d: -sum(a * b for a, b in zip(q, _vector(int(d[1:])), strict=True)),
    )
    response = dialect.search(index_name, knn_body(dialect, q, k=7, num_candidates=N_DOCS))
    assert response["_shards"]["total"] == 3
    assert _ids(response) == exact[:7]


def test_knn_filter_is_inside_the_ann_search(dialect: BaseDialect, loaded: str) -> None:
    # d17 is the nearest overall but outside the filter: k results must all satisfy the filter.
    wanted = _leaf(42)
    assert _leaf(17) != wanted
    body = knn_body(dialect, _vector(17), k=10, num_candidates=100, filter=leaf_filter([wanted]))
    ids = _ids(dialect.search(loaded, body))
    members = [f"d{i}" for i in range(N_DOCS) if _leaf(i) == wanted]
    assert len(ids) == 10
    assert set(ids) <= set(members)
    # and they are the 10 nearest members (exact on this small index)
    q = _vector(17)
    by_similarity = sorted(
        members, key=lambda d: -sum(a * b for a, b in zip(q, _vector(int(d[1:])), strict=True))
    )
    assert ids == by_similarity[:10]


def test_sparse_is_a_dot_product(dialect: BaseDialect, loaded: str) -> None:
    response = dialect.search(loaded, sparse_body(dialect, {"tok3": 2.0}, size=20))
    ids = _ids(response)
    expected = sorted((i for i in range(N_DOCS) if i % 20 == 3), key=lambda i: -i)
    assert ids == [f"d{i}" for i in expected]
    top = response["hits"]["hits"][0]
    assert top["_score"] == pytest.approx(2.0 * (1.0 + 183 / 100), rel=0.01)


def test_sparse_token_with_a_dot(dialect: BaseDialect, loaded: str) -> None:
    response = dialect.search(loaded, sparse_body(dialect, {"dot.ted": 1.0}, size=N_DOCS))
    ids = _ids(response)
    assert len(ids) == N_DOCS // 2
    assert ids[0] == "d198"
    assert all(int(d[1:]) % 2 == 0 for d in ids)


def test_leaf_filter_returns_only_routed_leaves(dialect: BaseDialect, loaded: str) -> None:
    leaves = [_leaf(1), _leaf(2)]
    body = {"query": {"bool": {"filter": [leaf_filter(leaves)]}}, "size": N_DOCS}
    ids = _ids(dialect.search(loaded, body))
    assert set(ids) == {f"d{i}" for i in range(N_DOCS) if _leaf(i) in leaves}


def test_combined_filters_in_sparse_leg(dialect: BaseDialect, loaded: str) -> None:
    f = combine_filters(leaf_filter([_leaf(3)]), {"term": {"tree_version": "v1"}})
    ids = _ids(dialect.search(loaded, sparse_body(dialect, {"common": 1.0}, size=N_DOCS, filter=f)))
    assert set(ids) == {f"d{i}" for i in range(N_DOCS) if _leaf(i) == _leaf(3)}


def test_msearch_one_round_trip_with_a_failing_body(dialect: BaseDialect, loaded: str) -> None:
    bodies = [
        bm25_body("uniq5", size=3),
        knn_body(dialect, [1.0, 0.0], k=3),  # wrong dimensions: fails on the shards only
        sparse_body(dialect, {"tok5": 1.0}, size=3),
    ]
    responses = dialect.msearch(loaded, bodies)
    assert len(responses) == 3
    first, second, third = responses
    assert isinstance(first, dict) and _ids(first) == ["d5"]
    assert isinstance(second, BadRequestError)
    assert isinstance(third, dict) and _ids(third)[0] == "d185"


def test_scan_with_point_in_time(dialect: BaseDialect, loaded: str) -> None:
    seen = [hit["_id"] for hit in dialect.scan(loaded, page_size=37, source=["title"])]
    assert len(seen) == N_DOCS
    assert set(seen) == {f"d{i}" for i in range(N_DOCS)}


def test_get_documents(dialect: BaseDialect, loaded: str) -> None:
    docs = dialect.get_documents(loaded, ["d1", "d2", "missing"], fields=["title"])
    assert docs == {"d1": {"title": "document number 1"}, "d2": {"title": "document number 2"}}


def test_alias_swap_is_atomic_and_reversible(dialect: BaseDialect, index_name: str) -> None:
    body = dialect.index_body(IndexSpec(dims=DIMS))
    v1, v2 = f"{index_name}-v1", f"{index_name}-v2"
    dialect.create_index(v1, body)
    dialect.create_index(v2, body)
    dialect.bulk([BulkAction(v1, "a", {"title": "one"})], refresh=True)
    dialect.bulk(
        [BulkAction(v2, "a", {"title": "two"}), BulkAction(v2, "b", {"title": "two"})],
        refresh=True,
    )
    assert dialect.swap_alias(index_name, v1) == []
    assert dialect.resolve_alias(index_name) == [v1]
    assert dialect.count(index_name) == 1
    assert dialect.swap_alias(index_name, v2) == [v1]
    assert dialect.resolve_alias(index_name) == [v2]
    assert dialect.count(index_name) == 2
    with pytest.raises(IndexNotFoundError):
        dialect.swap_alias(index_name, f"{index_name}-v3")
    assert dialect.resolve_alias(index_name) == [v2]


def test_missing_index_is_translated(dialect: BaseDialect) -> None:
    with pytest.raises(IndexNotFoundError):
        dialect.search("es-neural-no-such-index", {"query": {"match_all": {}}})
    with pytest.raises(IndexNotFoundError):
        dialect.delete_index("es-neural-no-such-index", missing_ok=False)
    dialect.delete_index("es-neural-no-such-index")  # missing_ok by default
    assert dialect.resolve_alias("es-neural-no-such-alias") == []


def test_existing_index_and_mapping_conflict(dialect: BaseDialect, loaded: str) -> None:
    with pytest.raises(ConflictError):
        dialect.create_index(loaded, dialect.index_body(IndexSpec(dims=DIMS)))
    with pytest.raises(ConflictError):
        dialect.put_properties(loaded, {"title": {"type": "long"}})


def test_bad_request_is_translated(dialect: BaseDialect, loaded: str) -> None:
    with pytest.raises(BadRequestError):
        dialect.search(loaded, {"query": {"no_such_query": {}}})


def test_bulk_reports_per_item_failures(dialect: BaseDialect, loaded: str) -> None:
    wrong_dims = {**_doc(1), "embedding": [0.1, 0.2]}
    result = dialect.bulk(
        [BulkAction(loaded, "ok1", _doc(1)), BulkAction(loaded, "bad1", wrong_dims)],
        refresh=True,
    )
    assert result.succeeded == ("ok1",)
    assert [f.doc_id for f in result.failed] == ["bad1"]
    failure = result.failed[0]
    assert failure.status == 400 and not failure.transient
    assert failure.reason
    assert dialect.count(loaded) == N_DOCS + 1
