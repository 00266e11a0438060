"""Placing documents in a tree's leaves (what ``es-neural tree assign`` starts from)."""

from __future__ import annotations

import numpy as np
import pytest

from es_neural.errors import InvalidInputError
from es_neural.tree import BuildConfig, build_tree, place_documents, route_documents

DIMS = 8


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_known_documents_keep_their_leaf_and_new_ones_are_routed() -> None:
    rng = np.random.default_rng(3)
    docs = _unit(rng.normal(size=(120, DIMS)))
    tree = build_tree(docs, version="v1", config=BuildConfig(branching=3, max_leaf_size=10))
    kept = [str(i) for i in range(0, 100)]  # documents 100..119 are gone
    new_vectors = _unit(rng.normal(size=(5, DIMS)))
    ids = [*kept, "n0", "n1", "n2", "n3", "n4"]
    vectors = np.concatenate([docs[:100], new_vectors])

    placed = place_documents(tree, ids, vectors)

    assert (placed.routed, placed.dropped) == (5, 20)
    assert placed.model.doc_ids == tuple(ids)
    for doc_id in kept:
        assert placed.model.document_leaves(doc_id) == tree.document_leaves(doc_id)
    routed = route_documents(tree, new_vectors, threshold=1e-9, max_leaves=1)
    for j, doc_id in enumerate(ids[100:]):
        row = placed.model.doc_row(doc_id)
        assert row is not None
        assert placed.model.leaves_of_row(row).tolist() == routed[j]  # one leaf each
    # the copy recognises the new documents by their embeddings' keys
    assert placed.model.row_for_key(int(placed.model.doc_keys[-1])) == len(ids) - 1


def test_ids_and_vectors_must_match() -> None:
    docs = _unit(np.random.default_rng(0).normal(size=(20, DIMS)))
    tree = build_tree(docs, config=BuildConfig(max_leaf_size=5))
    with pytest.raises(InvalidInputError, match="3 document ids for 20 vectors"):
        place_documents(tree, ["a", "b", "c"], docs)
    with pytest.raises(InvalidInputError, match="dims"):
        place_documents(tree, ["a"], np.ones((1, DIMS + 1)))
