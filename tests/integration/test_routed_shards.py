"""Leaf-routed shards against real engines (issue 16), on a small 6-shard index, once per engine.

Documents are written through the real write stage with a tree whose leaf groups are placed on
the index's shards (:mod:`es_neural.tree.shards`); the dense encoder is the deterministic topic
toy of ``test_tree_engines.py`` (plumbing, not effectiveness).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from es_neural.dialects.base import BaseDialect
from es_neural.errors import ConflictError, InvalidInputError
from es_neural.indices import ensure_index, read_index_info
from es_neural.ingest.pipeline import IngestOptions, Ingestor
from es_neural.ingest.sources import iterable_source
from es_neural.migrate import MigrationOptions, Migrator
from es_neural.search.models import (
    BM25Leg,
    RerankConfig,
    SearchRequest,
    SparseLeg,
    TreeConfig,
)
from es_neural.search.service import HybridSearcher
from es_neural.text import DEFAULT_TEXT_FIELDS
from es_neural.tree import BuildConfig, TreeLeafAssigner, TreeModel, TreeRouter, build_tree
from es_neural.tree.shards import ShardPlacement, place_index
from tests.integration.test_tree_engines import ToyEncoder, _corpus, _texts

pytestmark = pytest.mark.engine

SHARDS = 6
QUERIES = ("ocean waves", "volcano ash", "glacier melt", "forest trail", "desert dunes")


@pytest.fixture
def tree() -> TreeModel:
    encoder = ToyEncoder()
    docs = _corpus()
    model = build_tree(
        encoder.encode_documents(_texts(docs)),
        version="t1",
        doc_ids=[d["_id"] for d in docs],
        config=BuildConfig(branching=3, max_leaf_size=8),
    )
    return model.with_encoder(encoder.fingerprint)


def _create(dialect: BaseDialect, index: str, tree: TreeModel, *, routed: bool) -> None:
    ensure_index(
        dialect,
        index,
        dense=ToyEncoder().fingerprint,
        sparse=None,
        text_fields=DEFAULT_TEXT_FIELDS,
        similarity="cosine",
        shards=SHARDS,
        tree_version=tree.version,
    )
    if routed:
        place_index(dialect, index, tree)


def _ingest(
    dialect: BaseDialect, index: str, tree: TreeModel, state: Path, docs: list | None = None
) -> None:
    ingestor = Ingestor(
        dialect,
        dense=ToyEncoder(),
        leaves=TreeLeafAssigner(tree),
        options=IngestOptions(progress=False, resume=False),
        state_dir=state,
    )
    report = ingestor.run(iterable_source(docs or _corpus()), read_index_info(dialect, index))
    assert report.dead_lettered == 0
    dialect.refresh(index)


def _request(query: str, *, bm25: bool = True) -> SearchRequest:
    return SearchRequest(
        query=query,
        size=40,
        window=40,
        bm25=BM25Leg(enabled=bm25),
        sparse=SparseLeg(enabled=False),
        rerank=RerankConfig(enabled=False),
        tree=TreeConfig(enabled=True, threshold=0.5, max_leaves=2),
        explain=True,
    )


def _on_shard(dialect: BaseDialect, index: str, key: str) -> dict[str, str | None]:
    (answer,) = dialect.msearch(
        index, [{"query": {"match_all": {}}, "size": 500, "_source": False}], routing=[[key]]
    )
    assert not isinstance(answer, Exception)
    assert answer["_shards"]["total"] == 1
    return {h["_id"]: h.get("_routing") for h in answer["hits"]["hits"]}


def test_documents_land_on_the_shards_of_their_leaf_group(
    dialect: BaseDialect, index_name: str, tree: TreeModel, tmp_path: Path
) -> None:
    _create(dialect, index_name, tree, routed=True)
    _ingest(dialect, index_name, tree, tmp_path)
    placement = ShardPlacement.from_meta(read_index_info(dialect, index_name).meta)
    assert placement is not None and placement.groups == SHARDS
    assert sorted(placement.shard_ids) == list(range(SHARDS))
    for g, key in enumerate(placement.keys):
        assert dialect.shard_of_routing(index_name, key) == placement.shard_ids[g]
        expected = {
            doc_id
            for doc_id in tree.doc_ids
            if placement.group_of(tree.document_leaves(doc_id)[0]) == g
        }
        found = _on_shard(dialect, index_name, key)
        assert set(found) == expected and expected
        assert set(found.values()) == {key}
    # by id: a plain mget misses most of them, the routed read finds every one
    ids = list(tree.doc_ids)
    assert len(dialect.get_documents(index_name, ids, routing={})) == len(ids)
    assert len(dialect.get_documents(index_name, ids)) < len(ids)
    # a document whose text moves it to another leaf group leaves its old shard
    doc = next(d for d in _corpus() if d["title"].startswith("ocean"))
    old_group = placement.group_of(tree.document_leaves(doc["_id"])[0])
    moved = {**doc, "title": doc["title"].replace("ocean", "volcano")}
    new_leaf = TreeLeafAssigner(tree).leaves(ToyEncoder().encode_documents(_texts([moved])))[0]
    new_group = placement.group_of(tree.node_ids[new_leaf[0]])
    assert new_group != old_group
    _ingest(dialect, index_name, tree, tmp_path / "again", [moved])
    assert doc["_id"] not in _on_shard(dialect, index_name, placement.keys[old_group])
    assert doc["_id"] in _on_shard(dialect, index_name, placement.keys[new_group])
    assert dialect.count(index_name, {"ids": {"values": [doc["_id"]]}}) == 1
    # placing an index that holds documents is refused
    with pytest.raises(ConflictError, match="already holds documents"):
        place_index(dialect, index_name, tree)


def test_a_routed_query_hits_only_the_shards_of_its_leaves_with_the_same_results(
    dialect: BaseDialect, index_name: str, tree: TreeModel, tmp_path: Path
) -> None:
    _create(dialect, index_name, tree, routed=True)
    _ingest(dialect, index_name, tree, tmp_path)
    hashed = f"{index_name}-hashed"  # the same documents, placed by the engine's default
    try:
        _create(dialect, hashed, tree, routed=False)
        _ingest(dialect, hashed, tree, tmp_path / "hashed")
        _compare(dialect, index_name, hashed, tree)
    finally:
        for concrete in dialect.resolve_alias(hashed):
            dialect.delete_index(concrete)


def _compare(dialect: BaseDialect, index_name: str, hashed: str, tree: TreeModel) -> None:
    router = TreeRouter(tree)
    routed = HybridSearcher(dialect, index_name, dense=ToyEncoder(), router=router)
    unrouted = HybridSearcher(dialect, index_name, dense=ToyEncoder(), router=router)
    unrouted.placement = None  # the same index, every leg to every shard
    by_hash = HybridSearcher(dialect, hashed, dense=ToyEncoder(), router=router)
    assert routed.placement is not None and by_hash.placement is None
    for query in QUERIES:
        response = routed.search(_request(query))
        assert response.leaves
        groups = routed.placement.groups_for(
            router.route(ToyEncoder().encode_queries([query])[0], threshold=0.5, max_leaves=2)
        )
        assert groups is not None
        # the leaf-filtered leg goes to its groups' shards only; BM25 stays on every shard
        assert response.shards["dense"].total == len(groups) < SHARDS
        assert response.shards["dense"].successful == len(groups)
        assert response.shards["bm25"].total == SHARDS
        assert not response.partial
        # the routed leaves hold every document the filter matches: the same results
        plain = unrouted.search(_request(query))
        assert plain.shards["dense"].total == SHARDS
        assert [(h.id, h.score) for h in response.hits] == [(h.id, h.score) for h in plain.hits]
        assert all(h.source.get("title") for h in response.hits)  # fetched by routing
        for hit in response.hits:
            assert hit.explain is not None
            if hit.explain.legs["dense"] is not None:
                assert hit.explain.matched_leaf in set(response.leaves)
        # tree.filter=false: the routed groups' whole shards, no leaf filter
        whole = routed.search(
            _request(query, bm25=False).model_copy(
                update={"tree": TreeConfig(enabled=True, threshold=0.5, max_leaves=2, filter=False)}
            )
        )
        assert whole.shards["dense"].total == len(groups)
        assert {h.id for h in whole.hits} == {
            d
            for d in tree.doc_ids
            if routed.placement.group_of(tree.document_leaves(d)[0]) in groups
        }
        with pytest.raises(InvalidInputError, match="leaf-routed"):
            by_hash.search(
                _request(query).model_copy(update={"tree": TreeConfig(enabled=True, filter=False)})
            )
        dense_only = routed.search(_request(query, bm25=False))
        other = by_hash.search(_request(query, bm25=False))
        assert [h.id for h in dense_only.hits] == [h.id for h in other.hits]
        # the user's filter still applies on every leg, with routing
        leaf = tree.document_leaves(dense_only.hits[0].id)[0]
        filtered = routed.search(
            _request(query).model_copy(
                update={"filter": {"term": {"field": "leaf_ids", "value": leaf}}}
            )
        )
        assert filtered.hits and all(
            leaf in (h.explain.leaf_ids or []) for h in filtered.hits if h.explain is not None
        )
        assert {h.id for h in filtered.hits} == {
            d for d in tree.doc_ids if tree.document_leaves(d)[0] == leaf
        }
    # a later page (no leg answers at hand) is fetched by a search by ids
    first = routed.search(_request("ocean waves").model_copy(update={"size": 3}))
    assert first.next_cursor is not None
    second = routed.search(
        _request("ocean waves").model_copy(update={"size": 3, "cursor": first.next_cursor})
    )
    assert second.hits and all(h.source.get("title") for h in second.hits)


def test_an_index_migrates_into_a_routed_one_and_back(
    dialect: BaseDialect, index_name: str, tree: TreeModel, tmp_path: Path
) -> None:
    _create(dialect, index_name, tree, routed=False)
    _ingest(dialect, index_name, tree, tmp_path)
    leaves = TreeLeafAssigner(tree)

    def make(route: bool) -> Migrator:
        options = MigrationOptions(progress=False, route_leaves=route, shards=SHARDS)
        return Migrator(
            dialect, dense=ToyEncoder(), leaves=leaves, options=options, state_dir=tmp_path
        )

    def migrate(route: bool) -> str:
        migrator = make(route)
        report = migrator.run(index_name)
        assert report.switched and report.verify is not None and report.verify.ok
        return report.plan.target_index

    routed = migrate(True)
    assert dialect.resolve_alias(index_name) == [routed]
    # idempotence (es-neural migrate run): the alias serves a routed copy, not an unrouted one
    assert make(True).serving(index_name) == routed
    assert make(False).serving(index_name) is None
    placement = ShardPlacement.from_meta(read_index_info(dialect, index_name).meta)
    assert placement is not None
    key = placement.keys[0]
    on_first = _on_shard(dialect, index_name, key)
    assert on_first and set(on_first.values()) == {key}

    back = migrate(False)
    assert back != routed and dialect.resolve_alias(index_name) == [back]
    info = read_index_info(dialect, index_name)
    assert ShardPlacement.from_meta(info.meta) is None
    ids = list(tree.doc_ids)
    stored = dialect.get_documents(index_name, ids, fields=["leaf_ids"])  # plain ids again
    assert len(stored) == len(ids)
    assert all(routing is None for _, routing in dialect.find_by_ids(index_name, ids).values())
    searcher = HybridSearcher(dialect, index_name, dense=ToyEncoder(), router=TreeRouter(tree))
    response = searcher.search(_request("ocean waves"))
    assert response.hits and response.shards["dense"].total == SHARDS
