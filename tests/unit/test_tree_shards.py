"""Leaf groups and routing keys of leaf-routed shards (the pure part of es_neural.tree.shards)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from es_neural.errors import ConfigurationError, InvalidInputError
from es_neural.protocols import Route
from es_neural.tree import BuildConfig, build_tree
from es_neural.tree.model import TreeModel
from es_neural.tree.shards import (
    ShardPlacement,
    assign_keys,
    depth_first_leaves,
    leaf_groups,
    placement_for,
)

DIMS = 8


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _tree(n: int = 600, seed: int = 5) -> TreeModel:
    docs = _unit(np.random.default_rng(seed).normal(size=(n, DIMS)))
    return build_tree(docs, version="t1", config=BuildConfig(branching=4, max_leaf_size=12))


def _hash_shard(shards: int):  # a stand-in for the engine's routing hash (deterministic)
    def shard_of(key: str) -> int:
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") % shards

    return shard_of


def _subtree_leaves(model: TreeModel, node: int) -> set[int]:
    return {int(leaf) for leaf in model.leaf_nodes if node in model.path_table[leaf] or node == 0}


def test_depth_first_order_keeps_every_subtree_contiguous() -> None:
    model = _tree()
    order = depth_first_leaves(model).tolist()
    assert sorted(order) == model.leaf_nodes.tolist()
    position = {leaf: i for i, leaf in enumerate(order)}
    for node in model.internal_nodes:
        spots = sorted(position[leaf] for leaf in _subtree_leaves(model, int(node)))
        assert spots == list(range(spots[0], spots[0] + len(spots)))


@pytest.mark.parametrize("groups", [1, 3, 12, 16])
def test_groups_are_contiguous_cover_every_leaf_and_are_balanced(groups: int) -> None:
    model = _tree()
    found = leaf_groups(model, groups)
    assert len(found) == groups
    order = depth_first_leaves(model).tolist()
    assert [leaf for group in found for leaf in group] == order  # contiguous runs, in order
    counts = np.bincount(model.doc_leaf_nodes[model.doc_leaf_ptr[:-1]], minlength=model.n_nodes)
    weights = [int(counts[list(g)].sum()) for g in found]
    assert sum(weights) == model.n_documents
    share = model.n_documents / groups
    heaviest_leaf = int(counts[model.leaf_nodes].max())
    # every run is within one leaf of its share
    assert all(abs(w - share) <= heaviest_leaf for w in weights), (weights, share)


def test_fewer_leaves_than_groups_gives_one_group_per_leaf() -> None:
    model = _tree(n=40)
    leaves = len(model.leaf_nodes)
    found = leaf_groups(model, leaves + 5)
    assert len(found) == leaves
    assert all(len(g) == 1 for g in found)
    with pytest.raises(InvalidInputError):
        leaf_groups(model, 0)


def test_keys_reach_distinct_shards() -> None:
    shard_of = _hash_shard(16)
    found = assign_keys(16, shard_of, shards=16, prefix="t1")
    assert sorted(s for _, s in found) == list(range(16))
    assert all(shard_of(k) == s for k, s in found)
    assert len({k for k, _ in found}) == 16
    # fewer groups than shards: distinct shards still
    few = assign_keys(5, shard_of, shards=16)
    assert len({s for _, s in few}) == 5
    with pytest.raises(InvalidInputError):
        assign_keys(17, shard_of, shards=16)
    with pytest.raises(ConfigurationError, match="reached only 1"):
        assign_keys(2, lambda key: 0, shards=2, max_probes=50)


def test_documents_route_by_their_primary_leaf_and_queries_by_their_leaves() -> None:
    model = _tree()
    placement = ShardPlacement.build(model, _hash_shard(12), shards=12)
    assert placement.groups == 12 and sorted(placement.shard_ids) == list(range(12))
    for row in range(0, model.n_documents, 37):
        leaves = [model.node_ids[int(n)] for n in model.leaves_of_row(row)]
        key = placement.routing_for(leaves)
        group = placement.group_of(leaves[0])
        assert group is not None and key == placement.keys[group]
    assert placement.routing_for([]) is None  # a document without text: the default routing
    with pytest.raises(ConfigurationError, match="no leaf group"):
        placement.routing_for(["other:0/1"])

    first, last = placement.leaves[0][0], placement.leaves[-1][-1]
    route = Route(leaf_ids=(first, last), probabilities=(0.6, 0.3), tree_version="t1")
    assert placement.keys_for_route(route) == (placement.keys[0], placement.keys[-1])
    one = Route(leaf_ids=(first,), probabilities=(0.9,), tree_version="t1")
    assert placement.keys_for_route(one) == (placement.keys[0],)


def test_widened_routes_take_the_groups_under_their_ancestors() -> None:
    model = _tree()
    placement = ShardPlacement.build(model, _hash_shard(8), shards=8)
    child = int(model.children_table[0][0])  # the root's first child: a depth-1 subtree
    ancestor = model.node_ids[child]
    under = {model.node_ids[leaf] for leaf in _subtree_leaves(model, child)}
    expected = tuple(g for g, group in enumerate(placement.leaves) if under.intersection(group))
    widened = Route(
        leaf_ids=(sorted(under)[0],),
        probabilities=(0.1,),
        tree_version="t1",
        widened=True,
        filter_ids=(ancestor,),
        filter_field="leaf_ancestors",
    )
    assert placement.groups_for(widened) == expected
    whole = Route(
        leaf_ids=(sorted(under)[0],),
        probabilities=(0.1,),
        tree_version="t1",
        widened=True,
        filter_ids=("t1",),
        filter_field="tree_version",
    )
    assert placement.keys_for_route(whole) is None  # the whole tree: every shard
    other = Route(leaf_ids=("t2:0",), probabilities=(1.0,), tree_version="t2")
    assert placement.keys_for_route(other) is None


def test_meta_round_trip_and_unrouted_meta() -> None:
    model = _tree()
    placement = ShardPlacement.build(model, _hash_shard(4), shards=4)
    meta = {"created_by": "es-neural", "placement": placement.to_meta()}
    again = placement_for(meta)
    assert again == placement
    assert placement_for({"created_by": "es-neural"}) is None
    assert placement_for(None) is None
    with pytest.raises(ConfigurationError, match="unknown shard placement"):
        placement_for({"placement": {"kind": "by-tenant"}})
    with pytest.raises(ConfigurationError, match="share a shard"):
        ShardPlacement("t1", 4, ("a", "b"), (1, 1), (("t1:0",), ("t1:1",)))
