"""Routing: beam search down the tree with path probabilities.

A node's probability given its parent is the softmax of ``scale * query . centroid`` over its
siblings; a leaf's path probability is the product along its path, so the leaves of the whole
tree form one distribution (the probabilities of any set of leaves sum to at most 1). The beam
search keeps the ``beam`` most probable internal nodes at each level and collects the leaves it
meets; a query then takes leaves, most probable first, until their cumulative probability reaches
``threshold``, at least ``min_leaves`` and at most ``max_leaves`` (adaptive: a confident query
needs one leaf, an ambiguous one several).

:class:`TreeRouter` is the read path's :class:`~es_neural.protocols.QueryRouter`;
:class:`TreeLeafAssigner` is the write path's :class:`~es_neural.encoders.base.LeafAssigner`.
Both are immutable after construction and safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from es_neural.dialects.base import FieldNames
from es_neural.encoders.base import FloatMatrix, LeafAssignment
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.errors import InvalidInputError
from es_neural.protocols import Route
from es_neural.tree.model import IntArray, TreeModel, vector_keys

__all__ = [
    "BeamResult",
    "Placement",
    "TreeLeafAssigner",
    "TreeRouter",
    "beam_search",
    "leaf_recall",
    "place_documents",
    "route_documents",
    "select_count",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BeamResult:
    """Leaves found per query, best first: node numbers (``-1`` padded) and log path
    probabilities (``-inf`` padded), both ``[n_queries, top]``."""

    leaves: IntArray
    log_probs: FloatArray

    def probabilities(self) -> FloatArray:
        return np.exp(self.log_probs)


def _top(nodes: IntArray, scores: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """The ``k`` best columns per row (ties: lower node number first), ``-1`` where empty."""
    order = np.lexsort((nodes, -scores), axis=1)[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    picked = np.take_along_axis(nodes, order, axis=1)
    picked = np.where(np.isfinite(best), picked, -1)
    return picked, best


def _vectors(vectors: npt.ArrayLike, dims: int) -> npt.NDArray[np.float32]:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dims:
        raise InvalidInputError(f"expected vectors of {dims} dims, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidInputError("vectors hold non-finite values")
    return x


def _local_log_probs(model: TreeModel, scores: FloatArray) -> FloatArray:
    """``[q, n_nodes]``: log softmax of each node's score among its siblings (0 at the root)."""
    internal = model.internal_nodes
    kids = model.children_table[internal]  # [n_internal, width], -1 padded
    padded = np.concatenate([scores, np.full((len(scores), 1), -np.inf)], axis=1)
    gathered = padded[:, np.where(kids >= 0, kids, scores.shape[1])]  # [q, n_internal, width]
    top = gathered.max(axis=2)  # finite: every internal node has a child
    lse = top + np.log(np.exp(gathered - top[..., None]).sum(axis=2))
    local = scores - lse[:, model.parent_slot]
    local[:, 0] = 0.0
    return local


def beam_search(
    model: TreeModel,
    vectors: npt.ArrayLike,
    *,
    beam: int = 16,
    top: int = 16,
    batch_size: int = 2048,
) -> BeamResult:
    """The ``top`` most probable leaves the beam finds for each row of ``vectors``.

    A beam at least as wide as the tree's widest level never prunes; the search is then done
    as one vectorised pass over every leaf's path (the result is the same).
    """
    if beam < 1 or top < 1:
        raise InvalidInputError("beam and top must be >= 1")
    x = _vectors(vectors, model.dims)
    n = len(x)
    leaves_out = np.full((n, top), -1, dtype=np.int64)
    logp_out = np.full((n, top), -np.inf, dtype=np.float64)
    if model.is_leaf[0]:  # a one-node tree: the root is the only leaf
        leaves_out[:, 0] = 0
        logp_out[:, 0] = 0.0
        return BeamResult(leaves_out, logp_out)
    children = model.children_table
    is_leaf = model.is_leaf
    width = children.shape[1]
    weights = model.logit_weights
    # Rows per chunk: keep the [rows, n_nodes] score matrix around 16M entries.
    step = max(1, min(batch_size, (1 << 24) // model.n_nodes))
    for start in range(0, n, step):
        chunk = x[start : start + step].astype(np.float64)
        q = len(chunk)
        local = _local_log_probs(model, chunk @ weights)  # [q, n_nodes]
        if beam >= model.widest_level:
            # The beam never prunes: score every leaf's path at once (same result, faster).
            paths = model.path_table[model.leaf_nodes]  # [n_leaves, depth]
            logp = np.where(paths >= 0, local[:, np.maximum(paths, 0)], 0.0).sum(axis=2)
            nodes = np.broadcast_to(model.leaf_nodes, logp.shape)
            pool_nodes, pool_logp = _top(nodes, logp, top)
            leaves_out[start : start + q, : pool_nodes.shape[1]] = pool_nodes
            logp_out[start : start + q, : pool_nodes.shape[1]] = pool_logp
            continue
        beam_nodes = np.zeros((q, 1), dtype=np.int64)
        beam_logp = np.zeros((q, 1), dtype=np.float64)
        pool_nodes = np.full((q, 0), -1, dtype=np.int64)
        pool_logp = np.full((q, 0), -np.inf, dtype=np.float64)
        while beam_nodes.shape[1] and (beam_nodes >= 0).any():
            kids = children[np.maximum(beam_nodes, 0)]  # [q, b, w]
            valid = ((kids >= 0) & (beam_nodes >= 0)[..., None]).reshape(q, -1)
            flat = kids.reshape(q, -1)
            logp = np.take_along_axis(local, np.maximum(flat, 0), axis=1)
            logp = np.where(valid, logp + np.repeat(beam_logp, width, axis=1), -np.inf)
            leaf = is_leaf[np.maximum(flat, 0)] & valid
            pool_nodes, pool_logp = _top(
                np.concatenate([pool_nodes, flat], axis=1),
                np.concatenate([pool_logp, np.where(leaf, logp, -np.inf)], axis=1),
                top,
            )
            beam_nodes, beam_logp = _top(flat, np.where(valid & ~leaf, logp, -np.inf), beam)
        found = pool_nodes.shape[1]
        leaves_out[start : start + q, :found] = pool_nodes
        logp_out[start : start + q, :found] = pool_logp
    return BeamResult(leaves_out, logp_out)


def select_count(
    probabilities: Sequence[float] | FloatArray,
    *,
    threshold: float,
    min_leaves: int,
    max_leaves: int,
) -> int:
    """How many of ``probabilities`` (descending) to take: until their sum reaches
    ``threshold``, at least ``min_leaves``, at most ``max_leaves`` (and at most what exists)."""
    if not 0.0 < threshold <= 1.0:
        raise InvalidInputError(f"threshold must be in (0, 1], got {threshold}")
    if min_leaves < 1 or max_leaves < min_leaves:
        raise InvalidInputError(
            f"need 1 <= min_leaves <= max_leaves, got {min_leaves} and {max_leaves}"
        )
    probs = np.asarray(probabilities, dtype=np.float64)
    available = int((probs > 0).sum()) if len(probs) else 0
    reached = np.flatnonzero(np.cumsum(probs) >= threshold - 1e-12)
    count = int(reached[0]) + 1 if len(reached) else available
    return max(0, min(max(count, min_leaves), max_leaves, available))


def route_documents(
    model: TreeModel,
    vectors: npt.ArrayLike,
    *,
    threshold: float = 0.5,
    max_leaves: int = 3,
    beam: int = 8,
) -> list[list[int]]:
    """Leaves (node numbers) for each document embedding: the most probable leaf, plus more
    while the cumulative probability is below ``threshold`` (at most ``max_leaves``)."""
    found = beam_search(model, vectors, beam=beam, top=max_leaves)
    probs = found.probabilities()
    out = []
    for row in range(len(probs)):
        count = select_count(probs[row], threshold=threshold, min_leaves=1, max_leaves=max_leaves)
        out.append([int(n) for n in found.leaves[row, : max(count, 1)]])
    return out


@dataclass(frozen=True, slots=True)
class Placement:
    """Documents placed in a tree, one leaf each (:func:`place_documents`)."""

    #: A copy of the tree holding exactly the given documents.
    model: TreeModel
    #: Documents the tree did not know, routed to their most probable leaf.
    routed: int
    #: Documents of the tree that were not among the given ones (dropped from the copy).
    dropped: int


def place_documents(model: TreeModel, doc_ids: Sequence[str], vectors: npt.ArrayLike) -> Placement:
    """Each of ``doc_ids`` in one leaf: a document the tree knows keeps its (build) leaf, a new
    one goes to the leaf its embedding (row ``j`` of ``vectors`` for ``doc_ids[j]``) is most
    probably routed to. The copy holds exactly ``doc_ids`` (with their vectors' keys); more
    leaves per document come after (:func:`~es_neural.tree.optimize.add_routed_leaves`)."""
    x = _vectors(vectors, model.dims)
    if len(x) != len(doc_ids):
        raise InvalidInputError(f"{len(doc_ids)} document ids for {len(x)} vectors")
    rows = [model.doc_row(doc_id) for doc_id in doc_ids]
    unknown = [j for j, row in enumerate(rows) if row is None]
    routed = route_documents(model, x[unknown], threshold=1e-9, max_leaves=1) if unknown else []
    leaves: list[list[int]] = []
    new = iter(routed)
    for row in rows:
        leaves.append(next(new) if row is None else [int(model.leaves_of_row(row)[0])])
    placed = model.with_documents(doc_ids, leaves, keys=vector_keys(x))
    return Placement(placed, routed=len(unknown), dropped=len(set(model.doc_ids) - set(doc_ids)))


class TreeRouter:
    """Routes query vectors to leaves of one tree version (a ``QueryRouter``).

    When the best leaf's path probability is below ``widen_below`` the route is *widened*: the
    filter matches the parents of the chosen leaves (through ``leaf_ancestors``), or the whole
    tree (through ``tree_version``) when a chosen leaf hangs from the root.
    """

    def __init__(
        self,
        model: TreeModel,
        *,
        beam: int = 32,
        widen_below: float = 0.0,
        fields: FieldNames | None = None,
        encoder: ModelFingerprint | None = None,
    ) -> None:
        if beam < 1:
            raise InvalidInputError(f"beam must be >= 1, got {beam}")
        if not 0.0 <= widen_below <= 1.0:
            raise InvalidInputError(f"widen_below must be in [0, 1], got {widen_below}")
        if encoder is not None:
            model.check_encoder(encoder)
        self.model = model
        self.tree_version: str = model.version
        self.beam = beam
        self.widen_below = widen_below
        self.fields = fields if fields is not None else FieldNames()

    def __repr__(self) -> str:
        return f"TreeRouter({self.tree_version!r}, leaves={len(self.model.leaf_nodes)})"

    def route(
        self,
        query_vector: np.ndarray,
        *,
        threshold: float = 0.9,
        min_leaves: int = 1,
        max_leaves: int = 16,
    ) -> Route:
        vector = np.asarray(query_vector, dtype=np.float32)
        if vector.ndim != 1:
            raise InvalidInputError(f"expected one query vector, got shape {vector.shape}")
        return self.route_many(
            vector[None, :], threshold=threshold, min_leaves=min_leaves, max_leaves=max_leaves
        )[0]

    def route_many(
        self,
        query_vectors: npt.ArrayLike,
        *,
        threshold: float = 0.9,
        min_leaves: int = 1,
        max_leaves: int = 16,
    ) -> list[Route]:
        select_count([], threshold=threshold, min_leaves=min_leaves, max_leaves=max_leaves)
        found = beam_search(self.model, query_vectors, beam=self.beam, top=max_leaves)
        probs = found.probabilities()
        return [
            self._route(found.leaves[row], probs[row], threshold, min_leaves, max_leaves)
            for row in range(len(probs))
        ]

    def _route(
        self,
        leaves: IntArray,
        probs: FloatArray,
        threshold: float,
        min_leaves: int,
        max_leaves: int,
    ) -> Route:
        count = select_count(
            probs, threshold=threshold, min_leaves=min_leaves, max_leaves=max_leaves
        )
        chosen = [int(n) for n in leaves[:count]]
        model = self.model
        ids = tuple(model.node_ids[n] for n in chosen)
        chosen_probs = tuple(float(p) for p in probs[:count])
        best = chosen_probs[0] if chosen_probs else 0.0
        if best >= self.widen_below or not chosen:
            return Route(
                leaf_ids=ids,
                probabilities=chosen_probs,
                tree_version=model.version,
                filter_field=self.fields.leaf_ids,
            )
        parents = sorted({int(model.parents[n]) for n in chosen})
        filter_ids: tuple[str, ...]
        if any(p <= 0 for p in parents):
            field, filter_ids = self.fields.tree_version, (model.version,)
        else:
            field = self.fields.leaf_ancestors
            filter_ids = tuple(model.node_ids[p] for p in parents)
        return Route(
            leaf_ids=ids,
            probabilities=chosen_probs,
            tree_version=model.version,
            widened=True,
            filter_ids=filter_ids,
            filter_field=field,
        )


class TreeLeafAssigner:
    """Assigns documents to leaves at ingest (a ``LeafAssigner``).

    A document the tree was built on (recognised by :func:`~es_neural.tree.model.vector_keys` of
    its embedding) gets the leaves stored in the tree, query-log leaves included; any other
    document is routed by its embedding (:func:`route_documents`).
    """

    def __init__(
        self,
        model: TreeModel,
        *,
        threshold: float = 0.5,
        max_leaves: int = 3,
        beam: int = 8,
        use_known: bool = True,
        encoder: ModelFingerprint | None = None,
    ) -> None:
        select_count([], threshold=threshold, min_leaves=1, max_leaves=max_leaves)
        if encoder is not None:
            model.check_encoder(encoder)
        self.model = model
        self.threshold = threshold
        self.max_leaves = max_leaves
        self.beam = beam
        self.use_known = use_known

    def __repr__(self) -> str:
        return f"TreeLeafAssigner({self.tree_version!r}, max_leaves={self.max_leaves})"

    @property
    def tree_version(self) -> str:
        return self.model.version

    def leaves(self, embeddings: FloatMatrix | npt.ArrayLike) -> list[list[int]]:
        """Leaf node numbers for each embedding."""
        model = self.model
        x = _vectors(embeddings, model.dims)
        out: list[list[int] | None] = [None] * len(x)
        if self.use_known and model.n_documents:
            for i, key in enumerate(vector_keys(x).tolist()):
                row = model.row_for_key(key)
                if row is not None:
                    out[i] = [int(n) for n in model.leaves_of_row(row)]
        unknown = [i for i, found in enumerate(out) if found is None]
        if unknown:
            routed = route_documents(
                model,
                x[unknown],
                threshold=self.threshold,
                max_leaves=self.max_leaves,
                beam=self.beam,
            )
            for i, leaves in zip(unknown, routed, strict=True):
                out[i] = leaves
        return [found or [] for found in out]

    def assign(self, embeddings: FloatMatrix) -> list[LeafAssignment]:
        return [self.model.assignment(leaves) for leaves in self.leaves(embeddings)]


def leaf_recall(
    model: TreeModel,
    routed: Sequence[Sequence[str]],
    pairs: Sequence[tuple[int, str]],
) -> float:
    """Share of ``pairs`` (query row, relevant doc id) whose document sits in a leaf the query
    was routed to (``routed[row]``: leaf ids). A document the tree does not hold is a miss."""
    if not pairs:
        raise InvalidInputError("leaf recall needs at least one pair")
    hits = 0
    for row, doc_id in pairs:
        if set(model.document_leaves(doc_id)) & set(routed[row]):
            hits += 1
    return hits / len(pairs)
