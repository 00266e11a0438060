"""The routing tree: structure, node centroids and where each document sits.

Nodes are numbered breadth-first from the root (``0``): a node's parent always has a smaller
number and siblings are contiguous, so a node's path (its position among its siblings at each
level) is its identity. Node ids carry the tree version::

    v3           the root (the whole tree; never stored on documents)
    v3:1         second child of the root
    v3:1/4/0     a leaf three levels down

Ids are unique for any branching factor (positions are separated by ``/``). A document stores
the ids of its leaves (``leaf_ids``) and every proper ancestor of those leaves except the root
(``leaf_ancestors``), so a terms filter on ``leaf_ancestors`` widens a query to whole subtrees.

Only :attr:`TreeModel.centroids` is learned (:mod:`es_neural.tree.train`); the structure and the
document assignment are fixed when the tree is built and change only through a new version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from es_neural.encoders.base import LeafAssignment
from es_neural.encoders.fingerprint import ModelFingerprint, check_compatible
from es_neural.errors import ConfigurationError, InvalidInputError, ModelMismatchError

__all__ = [
    "IntArray",
    "TreeModel",
    "check_version",
    "vector_keys",
]

IntArray = npt.NDArray[np.int64]
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_version(version: str) -> str:
    """``version`` if it can prefix node ids (letters, digits, ``._-``; no ``:`` or ``/``)."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ConfigurationError(
            f"tree version must be 1-64 letters, digits, '.', '_' or '-' and start with a letter "
            f"or digit, got {version!r}"
        )
    return version


def vector_keys(embeddings: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """A 64-bit key per row: the hash of the row rounded to float16.

    Used to recognise a document the tree was built on when only its embedding is at hand (the
    ingest path hands embeddings, not ids, to a :class:`~es_neural.encoders.base.LeafAssigner`).
    Rounding absorbs last-bit noise between encoding runs; a key that still differs only means
    the document is routed like an unseen one.
    """
    rows = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32).astype(np.float16))
    if rows.ndim != 2:
        raise InvalidInputError(f"expected a 2-d array of embeddings, got shape {rows.shape}")
    keys = np.empty(rows.shape[0], dtype=np.uint64)
    for i, row in enumerate(rows):
        digest = hashlib.blake2b(row.tobytes(), digest_size=8).digest()
        keys[i] = int.from_bytes(digest, "little")
    return keys


def _frozen(array: npt.ArrayLike, dtype: Any) -> Any:
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class TreeModel:
    """An immutable routing tree; ``with_*`` methods return changed copies.

    ``parents[i]`` is node ``i``'s parent (``-1`` for the root ``0``); ``centroids[i]`` is the
    vector a query is scored against to choose node ``i`` among its siblings (row 0 is unused).
    Documents are stored in compressed rows: the leaves of document ``j`` are
    ``doc_leaf_nodes[doc_leaf_ptr[j]:doc_leaf_ptr[j + 1]]``, its primary (build) leaf first.
    """

    version: str
    parents: npt.NDArray[np.int32]
    centroids: npt.NDArray[np.float32]
    #: Logits are ``scale * query . centroid`` (a fixed inverse temperature).
    scale: float = 20.0
    doc_ids: tuple[str, ...] = ()
    doc_leaf_ptr: IntArray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    doc_leaf_nodes: npt.NDArray[np.int32] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int32)
    )
    #: :func:`vector_keys` of each document's embedding (0 when unknown).
    doc_keys: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    #: ``ModelFingerprint.to_meta()`` of the dense encoder whose space the tree lives in.
    encoder: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_version(self.version)
        set_ = object.__setattr__
        set_(self, "parents", _frozen(self.parents, np.int32))
        set_(self, "centroids", _frozen(self.centroids, np.float32))
        set_(self, "doc_ids", tuple(str(d) for d in self.doc_ids))
        set_(self, "doc_leaf_ptr", _frozen(self.doc_leaf_ptr, np.int64))
        set_(self, "doc_leaf_nodes", _frozen(self.doc_leaf_nodes, np.int32))
        set_(self, "doc_keys", _frozen(self.doc_keys, np.uint64))
        set_(self, "hyperparameters", dict(self.hyperparameters))
        set_(self, "encoder", dict(self.encoder) if self.encoder is not None else None)
        set_(self, "scale", float(self.scale))
        self._validate()

    def _validate(self) -> None:
        parents, n = self.parents, len(self.parents)
        if n < 1 or parents.ndim != 1 or parents[0] != -1:
            raise ConfigurationError("a tree needs a root (node 0, parent -1)")
        if n > 1 and not (np.all(parents[1:] >= 0) and np.all(parents[1:] < np.arange(1, n))):
            raise ConfigurationError("nodes must be numbered breadth-first (parent < node)")
        if n > 2 and np.any(np.diff(parents[1:]) < 0):
            raise ConfigurationError("siblings must be contiguous and ordered by parent")
        if self.centroids.ndim != 2 or self.centroids.shape[0] != n:
            raise ConfigurationError(
                f"centroids must have one row per node ({n}), got {self.centroids.shape}"
            )
        if not np.isfinite(self.centroids).all():
            raise ConfigurationError("centroids hold non-finite values")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ConfigurationError(f"scale must be positive, got {self.scale}")
        n_docs = len(self.doc_ids)
        ptr = self.doc_leaf_ptr
        if len(ptr) != n_docs + 1 or ptr[0] != 0 or np.any(np.diff(ptr) < 0):
            raise ConfigurationError("doc_leaf_ptr does not match doc_ids")
        if ptr[-1] != len(self.doc_leaf_nodes):
            raise ConfigurationError("doc_leaf_ptr does not match doc_leaf_nodes")
        if len(self.doc_keys) != n_docs:
            raise ConfigurationError("doc_keys must have one key per document")
        nodes = self.doc_leaf_nodes
        if len(nodes) and (nodes.min() < 0 or nodes.max() >= n or not self.is_leaf[nodes].all()):
            raise ConfigurationError("documents may only be assigned to leaves")

    # ------------------------------------------------------------------ structure

    @property
    def n_nodes(self) -> int:
        return len(self.parents)

    @property
    def dims(self) -> int:
        return int(self.centroids.shape[1])

    @cached_property
    def child_count(self) -> IntArray:
        counts = np.bincount(self.parents[1:], minlength=self.n_nodes).astype(np.int64)
        counts.flags.writeable = False
        return counts

    @cached_property
    def is_leaf(self) -> npt.NDArray[np.bool_]:
        leaf = self.child_count == 0
        leaf.flags.writeable = False
        return leaf

    @cached_property
    def leaf_nodes(self) -> IntArray:
        """Node numbers of the leaves, ascending."""
        leaves = np.flatnonzero(self.is_leaf).astype(np.int64)
        leaves.flags.writeable = False
        return leaves

    @cached_property
    def internal_nodes(self) -> IntArray:
        """Node numbers of the nodes with children, ascending."""
        nodes = np.flatnonzero(~self.is_leaf).astype(np.int64)
        nodes.flags.writeable = False
        return nodes

    @cached_property
    def widest_level(self) -> int:
        """The most internal nodes at any one depth (a beam this wide never prunes)."""
        depths = self.depth[self.internal_nodes]
        return int(np.bincount(depths).max()) if len(depths) else 0

    @cached_property
    def parent_slot(self) -> IntArray:
        """Each node's parent as a row of :attr:`internal_nodes` (0 for the root)."""
        slot = np.zeros(self.n_nodes, dtype=np.int64)
        row = np.full(self.n_nodes, -1, dtype=np.int64)
        row[self.internal_nodes] = np.arange(len(self.internal_nodes))
        slot[1:] = row[self.parents[1:]]
        slot.flags.writeable = False
        return slot

    @cached_property
    def first_child(self) -> IntArray:
        """Number of each node's first child (``-1`` for leaves)."""
        first = np.full(self.n_nodes, -1, dtype=np.int64)
        children = np.arange(1, self.n_nodes)
        # Siblings are contiguous and ascending: the first occurrence of each parent wins.
        parents, index = np.unique(self.parents[1:], return_index=True)
        first[parents] = children[index]
        first.flags.writeable = False
        return first

    @cached_property
    def position(self) -> IntArray:
        """Each node's position among its siblings (0 for the root)."""
        pos = np.zeros(self.n_nodes, dtype=np.int64)
        if self.n_nodes > 1:
            nodes = np.arange(1, self.n_nodes)
            pos[1:] = nodes - self.first_child[self.parents[1:]]
        pos.flags.writeable = False
        return pos

    @cached_property
    def depth(self) -> IntArray:
        depth = np.zeros(self.n_nodes, dtype=np.int64)
        for node in range(1, self.n_nodes):  # parents come first (breadth-first numbering)
            depth[node] = depth[self.parents[node]] + 1
        depth.flags.writeable = False
        return depth

    @property
    def max_depth(self) -> int:
        return int(self.depth.max())

    @property
    def max_branching(self) -> int:
        return int(self.child_count.max())

    @cached_property
    def children_table(self) -> IntArray:
        """``[n_nodes, max_branching]`` children of each node, ``-1`` padded."""
        width = max(self.max_branching, 1)
        table = np.full((self.n_nodes, width), -1, dtype=np.int64)
        if self.n_nodes > 1:
            nodes = np.arange(1, self.n_nodes)
            table[self.parents[1:], self.position[1:]] = nodes
        table.flags.writeable = False
        return table

    @cached_property
    def logit_weights(self) -> npt.NDArray[np.float64]:
        """``[dims, n_nodes]``: ``scale * centroids.T`` in float64, a query's node logits being
        ``query @ logit_weights`` (built once: routing a query must not rebuild it)."""
        weights = self.centroids.T.astype(np.float64) * self.scale
        weights.flags.writeable = False
        return weights

    @cached_property
    def path_table(self) -> IntArray:
        """``[n_nodes, max_depth]``: the nodes from depth 1 down to each node, ``-1`` padded."""
        width = max(self.max_depth, 1)
        table = np.full((self.n_nodes, width), -1, dtype=np.int64)
        for node in range(1, self.n_nodes):
            parent = self.parents[node]
            table[node] = table[parent]
            table[node, self.depth[node] - 1] = node
        table.flags.writeable = False
        return table

    # ------------------------------------------------------------------ ids

    @cached_property
    def node_ids(self) -> tuple[str, ...]:
        ids = [self.version]
        paths = [""]
        for node in range(1, self.n_nodes):
            parent = int(self.parents[node])
            step = str(int(self.position[node]))
            path = f"{paths[parent]}/{step}" if parent else step
            paths.append(path)
            ids.append(f"{self.version}:{path}")
        return tuple(ids)

    @cached_property
    def _index_of(self) -> dict[str, int]:
        return {node_id: i for i, node_id in enumerate(self.node_ids)}

    def node_id(self, node: int) -> str:
        return self.node_ids[node]

    def node_index(self, node_id: str) -> int:
        """The node number of ``node_id``; :class:`ModelMismatchError` for another version's id."""
        try:
            return self._index_of[node_id]
        except KeyError:
            version = node_id.split(":", 1)[0]
            if version != self.version:
                raise ModelMismatchError(
                    f"node {node_id!r} belongs to tree {version!r}, not {self.version!r}"
                ) from None
            raise InvalidInputError(f"tree {self.version!r} has no node {node_id!r}") from None

    def ancestors(self, node: int) -> tuple[int, ...]:
        """Proper ancestors of ``node`` from depth 1 down, root excluded."""
        path = self.path_table[node]
        return tuple(int(n) for n in path[: max(int(self.depth[node]) - 1, 0)])

    def assignment(self, leaves: Iterable[int]) -> LeafAssignment:
        """The stored form of a document in ``leaves`` (their ids and all their ancestors)."""
        ordered = list(dict.fromkeys(int(leaf) for leaf in leaves))
        if not ordered:
            raise InvalidInputError("a document needs at least one leaf")
        ancestors = sorted({a for leaf in ordered for a in self.ancestors(leaf)})
        return LeafAssignment(
            leaf_ids=tuple(self.node_ids[leaf] for leaf in ordered),
            ancestors=tuple(self.node_ids[a] for a in ancestors),
            tree_version=self.version,
        )

    # ------------------------------------------------------------------ documents

    @property
    def n_documents(self) -> int:
        return len(self.doc_ids)

    @cached_property
    def _doc_row(self) -> dict[str, int]:
        return {doc_id: i for i, doc_id in enumerate(self.doc_ids)}

    @cached_property
    def _key_row(self) -> dict[int, int]:
        rows: dict[int, int] = {}
        for i, key in enumerate(self.doc_keys.tolist()):
            if key:
                rows.setdefault(int(key), i)
        return rows

    def doc_row(self, doc_id: str) -> int | None:
        return self._doc_row.get(doc_id)

    def row_for_key(self, key: int) -> int | None:
        return self._key_row.get(int(key))

    def leaves_of_row(self, row: int) -> npt.NDArray[np.int32]:
        return self.doc_leaf_nodes[self.doc_leaf_ptr[row] : self.doc_leaf_ptr[row + 1]]

    def document_leaves(self, doc_id: str) -> tuple[str, ...]:
        """Leaf ids of a document the tree knows (``()`` for an unknown id)."""
        row = self.doc_row(doc_id)
        if row is None:
            return ()
        return tuple(self.node_ids[int(n)] for n in self.leaves_of_row(row))

    def documents_by_leaf(self) -> dict[int, IntArray]:
        """Leaf node -> rows of the documents stored in it (every leaf present)."""
        counts = np.diff(self.doc_leaf_ptr)
        rows = np.repeat(np.arange(self.n_documents, dtype=np.int64), counts)
        order = np.argsort(self.doc_leaf_nodes, kind="stable")
        nodes, rows = self.doc_leaf_nodes[order], rows[order]
        empty = np.zeros(0, dtype=np.int64)
        out: dict[int, IntArray] = {int(leaf): empty for leaf in self.leaf_nodes}
        if len(nodes):
            bounds = np.flatnonzero(np.diff(nodes)) + 1
            for chunk_nodes, chunk_rows in zip(
                np.split(nodes, bounds), np.split(rows, bounds), strict=True
            ):
                out[int(chunk_nodes[0])] = chunk_rows
        return out

    def leaf_sizes(self) -> IntArray:
        """Documents stored in each leaf, in :attr:`leaf_nodes` order (a document in two leaves
        counts in both)."""
        counts = np.bincount(self.doc_leaf_nodes, minlength=self.n_nodes).astype(np.int64)
        return counts[self.leaf_nodes]

    # ------------------------------------------------------------------ copies

    def with_version(self, version: str) -> TreeModel:
        """The same tree under another version (every node id changes with it)."""
        return self._replace(version=check_version(version))

    def with_centroids(self, centroids: npt.ArrayLike) -> TreeModel:
        return self._replace(centroids=np.asarray(centroids, dtype=np.float32))

    def with_hyperparameters(self, **values: Any) -> TreeModel:
        return self._replace(hyperparameters={**self.hyperparameters, **values})

    def with_encoder(self, fingerprint: ModelFingerprint | Mapping[str, Any] | None) -> TreeModel:
        meta = fingerprint.to_meta() if isinstance(fingerprint, ModelFingerprint) else fingerprint
        return self._replace(encoder=meta)

    def with_documents(
        self,
        doc_ids: Sequence[str],
        leaves: Sequence[Sequence[int]],
        *,
        keys: npt.ArrayLike | None = None,
    ) -> TreeModel:
        """A copy whose documents are ``doc_ids``, document ``j`` in leaves ``leaves[j]``."""
        if len(doc_ids) != len(leaves):
            raise InvalidInputError("doc_ids and leaves must have the same length")
        if len(set(doc_ids)) != len(doc_ids):
            raise InvalidInputError("document ids must be unique")
        cleaned = [list(dict.fromkeys(int(n) for n in row)) for row in leaves]
        if any(not row for row in cleaned):
            raise InvalidInputError("every document needs at least one leaf")
        lengths = np.array([len(row) for row in cleaned], dtype=np.int64)
        ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.array([n for row in cleaned for n in row], dtype=np.int32)
        key_array = (
            np.zeros(len(doc_ids), dtype=np.uint64)
            if keys is None
            else np.asarray(keys, dtype=np.uint64)
        )
        if key_array.shape != (len(doc_ids),):
            raise InvalidInputError("keys must have one entry per document")
        return self._replace(
            doc_ids=tuple(doc_ids), doc_leaf_ptr=ptr, doc_leaf_nodes=flat, doc_keys=key_array
        )

    def _replace(self, **changes: Any) -> TreeModel:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ checks and facts

    def check_encoder(self, fingerprint: ModelFingerprint) -> None:
        """Refuse a dense encoder other than the one the tree was built for (when recorded)."""
        if self.encoder is None:
            return
        check_compatible(self.encoder, fingerprint)
        if fingerprint.dims is not None and fingerprint.dims != self.dims:
            raise ModelMismatchError(
                f"tree {self.version!r} has {self.dims}-dim centroids, encoder {fingerprint.dims}"
            )

    def stats(self) -> dict[str, Any]:
        """Structure and leaf-size facts, JSON-ready."""
        sizes = self.leaf_sizes()
        per_doc = np.diff(self.doc_leaf_ptr)
        pct = (
            {f"p{q}": float(np.percentile(sizes, q)) for q in (0, 10, 50, 90, 99, 100)}
            if len(sizes)
            else {}
        )
        return {
            "version": self.version,
            "nodes": self.n_nodes,
            "leaves": len(self.leaf_nodes),
            "max_depth": self.max_depth,
            "max_branching": self.max_branching,
            "dims": self.dims,
            "documents": self.n_documents,
            "leaf_size": {"mean": float(sizes.mean()) if len(sizes) else 0.0, **pct},
            "empty_leaves": int((sizes == 0).sum()),
            "leaves_per_document": {
                str(k): int(v) for k, v in zip(*np.unique(per_doc, return_counts=True), strict=True)
            },
            "hyperparameters": dict(self.hyperparameters),
            "encoder": self.encoder,
        }
