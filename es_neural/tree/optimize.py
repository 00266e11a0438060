"""Extra leaves for documents: from their own embedding and from a query log.

A document lives in its primary (build) leaf. Two sources may add leaves, up to a cap (3 by
default), which trades leaf recall against leaf size (a bigger leaf filters less):

* :func:`add_routed_leaves`: the leaves the document's own embedding routes to, while their
  cumulative path probability is below a threshold (documents near a boundary sit on both sides);
* :func:`add_cooccurrence_leaves`: neural-tree's ``optimize_leafs`` (after JTR's overlapped
  clustering). For each logged query, every document a teacher retriever returns co-occurs with
  every leaf the query routes to; a document gains the leaves it co-occurs with most. The teacher
  is the caller's: the project's own hybrid retrieval in ``bench/tree.py`` and the CLI.

Counts are ``int64`` with saturating addition (neural-tree accumulates them in ``int8``, which
wraps after 127 co-occurrences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from es_neural.errors import InvalidInputError
from es_neural.tree.model import IntArray, TreeModel
from es_neural.tree.route import beam_search, route_documents

__all__ = [
    "COUNT_CAP",
    "Cooccurrence",
    "add_cooccurrence_leaves",
    "add_routed_leaves",
    "cooccurrence_counts",
    "query_log_leaves",
    "saturating_add",
]

#: Counts saturate here instead of wrapping.
COUNT_CAP = int(np.iinfo(np.int64).max)


def saturating_add(a: npt.ArrayLike, b: npt.ArrayLike, *, cap: int = COUNT_CAP) -> IntArray:
    """``min(a + b, cap)`` element-wise for non-negative ``int64`` counts, without overflow."""
    x = np.asarray(a, dtype=np.int64)
    y = np.asarray(b, dtype=np.int64)
    if (x < 0).any() or (y < 0).any():
        raise InvalidInputError("counts must be non-negative")
    room = np.int64(cap) - np.minimum(x, np.int64(cap))
    return np.asarray(np.minimum(x, np.int64(cap)) + np.minimum(y, room), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Cooccurrence:
    """Sparse ``(document row, leaf node) -> count``, sorted by document then leaf."""

    doc_rows: IntArray
    leaves: IntArray
    counts: IntArray

    def __len__(self) -> int:
        return len(self.counts)


def _merge(
    keys_a: IntArray, counts_a: IntArray, keys_b: IntArray, counts_b: IntArray, cap: int
) -> tuple[IntArray, IntArray]:
    """Union of two sparse count vectors (each with unique keys), counts added saturating."""
    keys = np.concatenate([keys_a, keys_b])
    counts = np.minimum(np.concatenate([counts_a, counts_b]), np.int64(cap))
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    first = np.concatenate([[True], keys[1:] != keys[:-1]])
    out_keys, out_counts = keys[first], counts[first].copy()
    second = np.flatnonzero(~first)  # each key occurs at most twice
    target = np.cumsum(first)[second] - 1
    out_counts[target] = saturating_add(out_counts[target], counts[second], cap=cap)
    return out_keys, out_counts


def cooccurrence_counts(
    query_leaves: Sequence[Sequence[int]],
    retrieved: Sequence[Sequence[int]],
    *,
    n_documents: int,
    n_nodes: int,
    cap: int = COUNT_CAP,
    chunk_queries: int = 10_000,
) -> Cooccurrence:
    """How often each document was retrieved by a query routed to each leaf.

    ``query_leaves[i]`` are the leaves query ``i`` routes to; ``retrieved[i]`` the document rows
    the teacher returned for it (duplicates within a query count once).
    """
    if len(query_leaves) != len(retrieved):
        raise InvalidInputError("query_leaves and retrieved must have one entry per query")
    if cap < 1:
        raise InvalidInputError("cap must be >= 1")
    if n_documents < 0 or n_nodes < 1 or n_documents * n_nodes >= 2**62:
        raise InvalidInputError("n_documents * n_nodes must fit in 62 bits")
    keys = np.zeros(0, dtype=np.int64)
    counts = np.zeros(0, dtype=np.int64)
    for start in range(0, len(query_leaves), chunk_queries):
        parts = []
        for leaves, docs in zip(
            query_leaves[start : start + chunk_queries],
            retrieved[start : start + chunk_queries],
            strict=True,
        ):
            leaf_arr = np.unique(np.asarray(leaves, dtype=np.int64))
            doc_arr = np.unique(np.asarray(docs, dtype=np.int64))
            if not len(leaf_arr) or not len(doc_arr):
                continue
            if leaf_arr.min() < 0 or leaf_arr.max() >= n_nodes:
                raise InvalidInputError("a leaf number is out of range")
            if doc_arr.min() < 0 or doc_arr.max() >= n_documents:
                raise InvalidInputError("a document row is out of range")
            parts.append((doc_arr[:, None] * n_nodes + leaf_arr[None, :]).reshape(-1))
        if not parts:
            continue
        chunk_keys, chunk_counts = np.unique(np.concatenate(parts), return_counts=True)
        keys, counts = _merge(keys, counts, chunk_keys, chunk_counts.astype(np.int64), cap)
    return Cooccurrence(keys // n_nodes, keys % n_nodes, counts)


def query_log_leaves(
    model: TreeModel, query_vectors: npt.ArrayLike, *, leaves_per_query: int = 2, beam: int = 16
) -> list[list[int]]:
    """The ``leaves_per_query`` most probable leaves of each logged query (neural-tree's
    ``k_tree``)."""
    found = beam_search(model, query_vectors, beam=beam, top=leaves_per_query)
    return [[int(n) for n in row if n >= 0] for row in found.leaves]


def _extend(
    model: TreeModel, additions: dict[int, list[int]], *, max_leaves: int
) -> tuple[TreeModel, int]:
    rows = []
    added = 0
    for row in range(model.n_documents):
        leaves = [int(n) for n in model.leaves_of_row(row)]
        for leaf in additions.get(row, ()):
            if len(leaves) >= max_leaves:
                break
            if leaf not in leaves:
                leaves.append(leaf)
                added += 1
        rows.append(leaves)
    return model.with_documents(model.doc_ids, rows, keys=model.doc_keys), added


def add_routed_leaves(
    model: TreeModel,
    doc_vectors: npt.ArrayLike,
    *,
    threshold: float = 0.5,
    max_leaves: int = 3,
    beam: int = 8,
) -> tuple[TreeModel, dict[str, Any]]:
    """Each document also in the leaves its embedding routes to (see :func:`route_documents`),
    after the leaves it already has, up to ``max_leaves``."""
    vectors = np.asarray(doc_vectors, dtype=np.float32)
    if vectors.shape != (model.n_documents, model.dims):
        raise InvalidInputError(
            f"doc_vectors must be [{model.n_documents}, {model.dims}], got {vectors.shape}"
        )
    routed = route_documents(model, vectors, threshold=threshold, max_leaves=max_leaves, beam=beam)
    extended, added = _extend(model, dict(enumerate(routed)), max_leaves=max_leaves)
    extended = extended.with_hyperparameters(
        routed_leaves={"threshold": threshold, "max_leaves": max_leaves, "beam": beam}
    )
    return extended, {"added": added}


def add_cooccurrence_leaves(
    model: TreeModel,
    query_leaves: Sequence[Sequence[int]],
    retrieved: Sequence[Sequence[int]],
    *,
    per_document: int = 2,
    max_leaves: int = 3,
    min_count: int = 1,
) -> tuple[TreeModel, dict[str, Any]]:
    """Each document also in the ``per_document`` leaves it co-occurs with most among those it
    is not in yet (at least ``min_count`` times; ties go to the lower node number), up to
    ``max_leaves`` in all."""
    if per_document < 0 or max_leaves < 1 or min_count < 1:
        raise InvalidInputError("need per_document >= 0, max_leaves >= 1, min_count >= 1")
    co = cooccurrence_counts(
        query_leaves, retrieved, n_documents=model.n_documents, n_nodes=model.n_nodes
    )
    additions: dict[int, list[int]] = {}
    keep = co.counts >= min_count
    rows, leaves, counts = co.doc_rows[keep], co.leaves[keep], co.counts[keep]
    order = np.lexsort((leaves, -counts, rows))
    for row, leaf in zip(rows[order].tolist(), leaves[order].tolist(), strict=True):
        picked = additions.setdefault(row, [])
        if len(picked) < per_document and leaf not in model.leaves_of_row(row):
            picked.append(leaf)
    extended, added = _extend(model, additions, max_leaves=max_leaves)
    extended = extended.with_hyperparameters(
        cooccurrence={
            "queries": len(query_leaves),
            "per_document": per_document,
            "max_leaves": max_leaves,
            "min_count": min_count,
        }
    )
    return extended, {
        "pairs": len(co),
        "documents_touched": sum(1 for picked in additions.values() if picked),
        "added": added,
        "max_count": int(co.counts.max()) if len(co) else 0,
    }
