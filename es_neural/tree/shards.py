"""Leaf-routed shards: documents placed on shards by their leaf group, queries sent to few shards.

A tree's leaves, in depth-first order, are cut into contiguous runs (:func:`leaf_groups`), one
per shard at most, balanced by the documents whose primary (first) leaf they are. Each run is a
union of whole subtrees except at its two ends, so a query routed to a few neighbouring leaves
touches one or two groups. Each group gets a *routing key* that the engine hashes to a shard of
its own (:func:`assign_keys`, with the engine's answer for a key given as ``shard_of``: the
dialect's ``shard_of_routing``, i.e. ``GET /<index>/_search_shards?routing=<key>``, the same on
both engines), and the index ``_meta`` records the groups and their keys
(:meth:`ShardPlacement.to_meta`, key ``placement``).

At index time a document's ``_routing`` is the key of its primary leaf's group
(:meth:`ShardPlacement.routing_for`); a document without leaves (no text) keeps the engine's
default (its ``_id``). At query time a leg that the leaf filter restricts is sent with
``routing=`` the keys of the routed leaves' groups (:meth:`ShardPlacement.keys_for_route`), so it
is answered by those shards alone; a leg the filter does not restrict stays on every shard.

A routed leg sees the documents whose *primary* leaf is in a routed group: a document stored in
several leaves is found through its others only where they share its group. Anything addressing
documents by id must pass the routing or search by ids (``BaseDialect.get_documents`` with
``routing``), since a document's shard no longer follows from its id.

The grouping and key search are pure; :func:`place_index` is the one function here that talks
to an engine (through a dialect) and writes the placement into an empty index's ``_meta``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from es_neural.errors import ConfigurationError, ConflictError, InvalidInputError
from es_neural.protocols import Route
from es_neural.tree.model import IntArray, TreeModel

if TYPE_CHECKING:
    from es_neural.dialects.base import BaseDialect

__all__ = [
    "META_KEY",
    "ShardPlacement",
    "assign_keys",
    "depth_first_leaves",
    "leaf_groups",
    "place_index",
    "placement_for",
]

#: Where a routed index's ``_meta`` keeps its placement.
META_KEY = "placement"
_KIND = "leaf_groups"


def depth_first_leaves(model: TreeModel) -> IntArray:
    """The tree's leaves in depth-first order (children by position): every subtree's leaves
    are one contiguous run of it."""
    children = model.children_table
    out: list[int] = []
    stack = [0]
    while stack:
        node = stack.pop()
        if model.is_leaf[node]:
            out.append(node)
            continue
        kids = [int(c) for c in children[node] if c >= 0]
        stack.extend(reversed(kids))
    return np.asarray(out, dtype=np.int64)


def _primary_leaf_counts(model: TreeModel) -> IntArray:
    """Documents per node whose primary (first) leaf it is."""
    if model.n_documents == 0:
        return np.zeros(model.n_nodes, dtype=np.int64)
    primary = model.doc_leaf_nodes[model.doc_leaf_ptr[:-1]]
    return np.bincount(primary, minlength=model.n_nodes).astype(np.int64)


def leaf_groups(model: TreeModel, groups: int) -> tuple[tuple[int, ...], ...]:
    """The leaves (node numbers) cut into at most ``groups`` contiguous depth-first runs of
    nearly equal weight: the documents whose primary leaf they are (every leaf counts as one
    when the tree holds no documents). Every run is non-empty; there are ``min(groups,
    leaves)`` of them."""
    if groups < 1:
        raise InvalidInputError(f"groups must be >= 1, got {groups}")
    order = depth_first_leaves(model)
    n = min(groups, len(order))
    counts = _primary_leaf_counts(model)[order].astype(np.float64)
    weights = counts if counts.sum() > 0 else np.ones(len(order))
    # Cut where the running weight is nearest each share k * total / n, keeping every run
    # non-empty (a heavy leaf may leave a run lighter or heavier than its share).
    cumulative = np.cumsum(weights)
    total = float(cumulative[-1])
    cuts: list[int] = []
    start = 0
    for k in range(1, n):
        target = total * k / n
        lo, hi = start + 1, len(order) - (n - k)  # a cut after at least one leaf, leaving
        # at least one leaf for each run still to come
        pos = int(np.searchsorted(cumulative, target, side="left"))
        candidates = {min(max(p, lo), hi) for p in (pos, pos + 1)}
        best = min(candidates, key=lambda p: (abs(cumulative[p - 1] - target), p))
        cuts.append(best)
        start = best
    bounds = [0, *cuts, len(order)]
    return tuple(tuple(int(leaf) for leaf in order[bounds[i] : bounds[i + 1]]) for i in range(n))


def assign_keys(
    groups: int,
    shard_of: Callable[[str], int],
    *,
    shards: int,
    prefix: str = "g",
    max_probes: int | None = None,
) -> tuple[tuple[str, int], ...]:
    """A routing key per group, each hashed by the engine to a different shard: the keys
    ``prefix-0``, ``prefix-1``, ... are probed in order (``shard_of`` answers the shard of one
    key) and the first key met for each new shard is kept, until every group has one. Returns
    ``(key, shard)`` per group, in group order (shards in the order they were found)."""
    if not 1 <= groups <= shards:
        raise InvalidInputError(f"need 1 <= groups <= shards, got {groups} groups, {shards} shards")
    # Coupon collector: about shards * ln(shards) probes on average; allow plenty more.
    limit = max_probes if max_probes is not None else 64 * shards + 256
    found: dict[int, str] = {}
    for probe in range(limit):
        key = f"{prefix}-{probe}"
        shard = int(shard_of(key))
        if not 0 <= shard < shards:
            raise ConfigurationError(f"routing key {key!r} went to shard {shard} of {shards}")
        found.setdefault(shard, key)
        if len(found) == groups:
            return tuple((k, s) for s, k in found.items())
    raise ConfigurationError(
        f"{limit} routing keys reached only {len(found)} of {shards} shards ({groups} needed)"
    )


@dataclass(frozen=True)
class ShardPlacement:
    """Which leaves live on which shard of one index, and the routing key that reaches it."""

    tree_version: str
    shards: int
    #: Per group: its routing key, the shard that key reaches, and its leaf ids.
    keys: tuple[str, ...]
    shard_ids: tuple[int, ...]
    leaves: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if not (len(self.keys) == len(self.shard_ids) == len(self.leaves)) or not self.keys:
            raise ConfigurationError("a placement needs a key, a shard and leaves per group")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ConfigurationError("two leaf groups of a placement share a shard")
        if len(set(self.keys)) != len(self.keys):
            raise ConfigurationError("two leaf groups of a placement share a routing key")

    @classmethod
    def build(
        cls,
        model: TreeModel,
        shard_of: Callable[[str], int],
        *,
        shards: int,
    ) -> ShardPlacement:
        """Group ``model``'s leaves for ``shards`` shards and find each group's key."""
        groups = leaf_groups(model, shards)
        found = assign_keys(len(groups), shard_of, shards=shards, prefix=model.version)
        return cls(
            tree_version=model.version,
            shards=shards,
            keys=tuple(k for k, _ in found),
            shard_ids=tuple(s for _, s in found),
            leaves=tuple(tuple(model.node_ids[n] for n in group) for group in groups),
        )

    @cached_property
    def _group_of(self) -> dict[str, int]:
        return {leaf: g for g, group in enumerate(self.leaves) for leaf in group}

    @property
    def groups(self) -> int:
        return len(self.keys)

    def group_of(self, leaf_id: str) -> int | None:
        return self._group_of.get(leaf_id)

    def routing_for(self, leaf_ids: Sequence[str] | None) -> str | None:
        """The ``_routing`` of a document stored in ``leaf_ids`` (primary first): its primary
        leaf's group key; ``None`` (the engine's default) for a document without leaves.
        A leaf of another tree is refused."""
        if not leaf_ids:
            return None
        group = self.group_of(str(leaf_ids[0]))
        if group is None:
            raise ConfigurationError(
                f"leaf {leaf_ids[0]!r} is in no leaf group of tree {self.tree_version!r}"
            )
        return self.keys[group]

    def groups_for(self, route: Route) -> tuple[int, ...] | None:
        """The groups holding what ``route``'s filter matches; ``None`` for every shard (a route
        widened to the whole tree, or one of another tree)."""
        if route.tree_version != self.tree_version:
            return None
        ids = route.filter_ids or route.leaf_ids
        if not ids:
            return None
        if route.widened:
            if any(":" not in i for i in ids):  # the tree_version filter: the whole tree
                return None
            prefixes = tuple(f"{i}/" for i in ids)
            found = {
                g
                for g, group in enumerate(self.leaves)
                if any(leaf.startswith(prefixes) for leaf in group)
            }
        else:
            found = {g for i in ids if (g := self.group_of(i)) is not None}
        return tuple(sorted(found)) if found else None

    def keys_for_route(self, route: Route) -> tuple[str, ...] | None:
        """The routing keys a leg restricted by ``route``'s filter is sent with (``None``: no
        routing, every shard)."""
        groups = self.groups_for(route)
        if groups is None or len(groups) == self.groups:
            return None
        return tuple(self.keys[g] for g in groups)

    def to_meta(self) -> dict[str, Any]:
        return {
            "kind": _KIND,
            "tree_version": self.tree_version,
            "shards": self.shards,
            "groups": [
                {"key": k, "shard": s, "leaves": list(leaves)}
                for k, s, leaves in zip(self.keys, self.shard_ids, self.leaves, strict=True)
            ],
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> ShardPlacement | None:
        """The placement recorded in an index ``_meta`` (``None`` for an unrouted index)."""
        placement = (meta or {}).get(META_KEY)
        if not placement:
            return None
        if not isinstance(placement, Mapping) or placement.get("kind") != _KIND:
            raise ConfigurationError(f"unknown shard placement in the index _meta: {placement!r}")
        groups = placement["groups"]
        return cls(
            tree_version=str(placement["tree_version"]),
            shards=int(placement["shards"]),
            keys=tuple(str(g["key"]) for g in groups),
            shard_ids=tuple(int(g["shard"]) for g in groups),
            leaves=tuple(tuple(str(x) for x in g["leaves"]) for g in groups),
        )


def placement_for(meta: Mapping[str, Any] | None) -> ShardPlacement | None:
    """:meth:`ShardPlacement.from_meta` (a function, for callers holding only a ``_meta``)."""
    return ShardPlacement.from_meta(meta)


def place_index(dialect: BaseDialect, index: str, model: TreeModel) -> ShardPlacement:
    """Give the empty es-neural index ``index`` (an alias or concrete name) a leaf placement
    for ``model``: the groups, keys probed on the index's own shards, written into its
    ``_meta``. An index that already holds documents is refused (documents written without
    routing would be on the wrong shards): re-place it through a migration."""
    from es_neural.indices import read_index_info

    info = read_index_info(dialect, index)
    if info.tree_version not in (None, model.version):
        raise ConflictError(
            f"index {info.concrete!r} holds leaves of tree {info.tree_version!r}, "
            f"not {model.version!r}"
        )
    if dialect.count(info.concrete) > 0:
        raise ConflictError(
            f"index {info.concrete!r} already holds documents: re-place it through a migration "
            "into a new index version"
        )
    shards = int(dialect.get_settings(info.concrete)["number_of_shards"])
    placement = ShardPlacement.build(
        model, lambda key: dialect.shard_of_routing(info.concrete, key), shards=shards
    )
    meta = {
        **dict(info.meta),
        "tree": {"version": model.version},
        META_KEY: placement.to_meta(),
    }
    dialect.put_meta(info.concrete, meta)
    return placement
