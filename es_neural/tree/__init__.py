"""Neural tree routing (after JTR, SIGIR 2023, and raphaelsty/neural-tree).

A tree over document embeddings, built by hierarchical k-means (:mod:`.build`), whose node
centroids are trained on (query, relevant document) pairs with the encoder frozen (:mod:`.train`).
At ingest each document is stored with its leaves (:class:`TreeLeafAssigner`); at search time the
query is routed to a few leaves by beam search (:class:`TreeRouter`), which become a terms filter
inside the kNN search. Extra leaves per document come from its own embedding and from a query log
(:mod:`.optimize`); a tree is saved and loaded as a folder (:mod:`.artifact`).

A tree's leaf ids carry its version (``v3:1/4/0``) and an index's ``_meta`` records the version its
leaf fields belong to: a router of another version is refused. A re-trained or re-assigned tree
therefore gets a new version and goes into a new index version (blue/green), swapped in with the
alias; the live index keeps serving the old tree until the swap.

Importing this package loads neither torch nor a model.
"""

from __future__ import annotations

from es_neural.tree.artifact import load_tree, save_tree
from es_neural.tree.build import BuildConfig, build_tree, kmeans
from es_neural.tree.model import TreeModel, check_version, vector_keys
from es_neural.tree.optimize import (
    COUNT_CAP,
    Cooccurrence,
    add_cooccurrence_leaves,
    add_routed_leaves,
    cooccurrence_counts,
    query_log_leaves,
    saturating_add,
)
from es_neural.tree.route import (
    BeamResult,
    Placement,
    TreeLeafAssigner,
    TreeRouter,
    beam_search,
    leaf_recall,
    place_documents,
    route_documents,
    select_count,
)
from es_neural.tree.train import (
    TrainConfig,
    TrainReport,
    calibrate_scale,
    path_log_probs,
    train_tree,
)

__all__ = [
    "COUNT_CAP",
    "BeamResult",
    "BuildConfig",
    "Cooccurrence",
    "Placement",
    "TrainConfig",
    "TrainReport",
    "TreeLeafAssigner",
    "TreeModel",
    "TreeRouter",
    "add_cooccurrence_leaves",
    "add_routed_leaves",
    "beam_search",
    "build_tree",
    "calibrate_scale",
    "check_version",
    "cooccurrence_counts",
    "kmeans",
    "leaf_recall",
    "load_tree",
    "path_log_probs",
    "place_documents",
    "query_log_leaves",
    "route_documents",
    "saturating_add",
    "save_tree",
    "select_count",
    "train_tree",
    "vector_keys",
]
