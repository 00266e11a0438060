"""Building a tree: hierarchical k-means over document embeddings (numpy only, seeded).

Each node holding more than ``max_leaf_size`` documents is split into at most ``branching``
children by k-means (spherical by default: unit vectors, cosine assignment). A node that k-means
cannot split (duplicates, a single dense blob) is cut into equal chunks instead, so every child is
strictly smaller than its parent and the build always ends; ``max_depth`` bounds the depth too
(a node at that depth stays a leaf whatever its size). The loop is an explicit queue, never
recursion. Each node's k-means draws from its own generator seeded by ``(seed, node)``, so the
result does not depend on processing order.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from es_neural.encoders.base import FloatMatrix
from es_neural.errors import InvalidInputError
from es_neural.tree.model import TreeModel, check_version, vector_keys

__all__ = ["BuildConfig", "build_tree", "kmeans"]


@dataclass(frozen=True, slots=True)
class BuildConfig:
    branching: int = 8
    max_leaf_size: int = 128
    max_depth: int = 12
    kmeans_iterations: int = 20
    #: Cosine k-means on unit vectors (right for cosine / dot-product encoders).
    spherical: bool = True
    seed: int = 0
    #: Inverse temperature of the router's softmax (``scale * query . centroid``).
    scale: float = 20.0
    #: k-means on at most this many sampled points per node (all points are then assigned).
    sample_size: int = 100_000

    def __post_init__(self) -> None:
        if not 2 <= self.branching <= 1000:
            raise InvalidInputError(f"branching must be in 2..1000, got {self.branching}")
        if self.max_leaf_size < 1:
            raise InvalidInputError(f"max_leaf_size must be >= 1, got {self.max_leaf_size}")
        if not 1 <= self.max_depth <= 64:
            raise InvalidInputError(f"max_depth must be in 1..64, got {self.max_depth}")
        if self.kmeans_iterations < 1:
            raise InvalidInputError("kmeans_iterations must be >= 1")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InvalidInputError(f"scale must be positive, got {self.scale}")
        if self.sample_size < self.branching:
            raise InvalidInputError("sample_size must be at least the branching factor")


def _normalize(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _assign(
    x: npt.NDArray[np.float32], centers: npt.NDArray[np.float32], spherical: bool
) -> npt.NDArray[np.int64]:
    if spherical:
        return np.asarray(np.argmax(x @ centers.T, axis=1), dtype=np.int64)
    d = (centers * centers).sum(1)[None, :] - 2.0 * (x @ centers.T)
    return np.asarray(np.argmin(d, axis=1), dtype=np.int64)


def _plusplus(
    x: npt.NDArray[np.float32], k: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """k-means++ seeding; stops early (fewer centers) when every point already has a twin center."""
    first = int(rng.integers(len(x)))
    centers = [x[first]]
    closest = ((x - x[first]) ** 2).sum(1).astype(np.float64)
    for _ in range(1, k):
        total = closest.sum()
        if not total > 1e-12:
            break
        pick = int(rng.choice(len(x), p=closest / total))
        centers.append(x[pick])
        closest = np.minimum(closest, ((x - x[pick]) ** 2).sum(1))
    return np.stack(centers).astype(np.float32)


def kmeans(
    x: npt.ArrayLike,
    k: int,
    *,
    rng: np.random.Generator,
    iterations: int = 20,
    spherical: bool = True,
    sample_size: int = 100_000,
) -> npt.NDArray[np.int64]:
    """Cluster labels ``0..m-1`` (``m <= k`` non-empty clusters, numbered by first appearance of
    their smallest member) for the rows of ``x``. Deterministic for a given ``rng`` state."""
    data = np.asarray(x, dtype=np.float32)
    n = len(data)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    fit = data
    if n > sample_size:
        fit = data[np.sort(rng.choice(n, size=sample_size, replace=False))]
    centers = _plusplus(fit, min(k, len(fit)), rng)
    labels = _assign(fit, centers, spherical)
    for _ in range(iterations):
        counts = np.bincount(labels, minlength=len(centers))
        alive = counts > 0
        new = centers.copy()
        for c in np.flatnonzero(alive):
            new[c] = fit[labels == c].mean(0, dtype=np.float64)
        if spherical:
            new[alive] = _normalize(new[alive])
        if np.array_equal(new, centers):
            break
        centers = new
        new_labels = _assign(fit, centers, spherical)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    labels = _assign(data, centers, spherical)
    # Renumber the non-empty clusters by their smallest member (stable, order-independent).
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first, kind="stable")
    used = np.unique(labels)[order]
    remap = np.full(len(centers), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return remap[labels]


def _split(
    x: npt.NDArray[np.float32], members: npt.NDArray[np.int64], node: int, config: BuildConfig
) -> list[npt.NDArray[np.int64]]:
    """Children of a node holding ``members``: k-means clusters, or equal chunks when k-means
    does not split (every child strictly smaller than the node)."""
    n = len(members)
    k = min(config.branching, n)
    rng = np.random.default_rng([config.seed, node])
    labels = kmeans(
        x[members],
        k,
        rng=rng,
        iterations=config.kmeans_iterations,
        spherical=config.spherical,
        sample_size=config.sample_size,
    )
    groups = [members[labels == c] for c in range(int(labels.max()) + 1)]
    if len(groups) >= 2:
        return groups
    chunks = min(config.branching, max(2, math.ceil(n / config.max_leaf_size)))
    return [chunk for chunk in np.array_split(members, chunks) if len(chunk)]


def build_tree(
    vectors: FloatMatrix | npt.ArrayLike,
    *,
    version: str = "v1",
    doc_ids: Sequence[str] | None = None,
    config: BuildConfig = BuildConfig(),
    progress: bool = False,
) -> TreeModel:
    """A tree over ``vectors`` (one row per document, ids ``doc_ids`` or ``"0".."n-1"``).

    Every node's centroid starts as the (normalised, when spherical) mean of its documents; each
    document sits in exactly one leaf, the one k-means put it in.
    """
    check_version(version)
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim != 2 or len(x) == 0:
        raise InvalidInputError(f"expected a non-empty [n, dims] matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidInputError("vectors hold non-finite values")
    ids = [str(i) for i in range(len(x))] if doc_ids is None else [str(d) for d in doc_ids]
    if len(ids) != len(x):
        raise InvalidInputError(f"{len(ids)} ids for {len(x)} vectors")
    if len(set(ids)) != len(ids):
        raise InvalidInputError("document ids must be unique")

    parents: list[int] = [-1]
    members_of: list[npt.NDArray[np.int64]] = [np.arange(len(x), dtype=np.int64)]
    depth: list[int] = [0]
    queue: deque[int] = deque([0])
    bar = tqdm(total=len(x), unit="doc", desc="build tree", disable=not progress)
    while queue:
        node = queue.popleft()
        members = members_of[node]
        if len(members) <= config.max_leaf_size or depth[node] >= config.max_depth:
            bar.update(len(members))
            continue
        for group in _split(x, members, node, config):
            child = len(parents)
            parents.append(node)
            members_of.append(group)
            depth.append(depth[node] + 1)
            queue.append(child)
    bar.close()

    centroids = np.zeros((len(parents), x.shape[1]), dtype=np.float32)
    for node in range(1, len(parents)):
        mean = x[members_of[node]].mean(0, dtype=np.float64).astype(np.float32)
        centroids[node] = _normalize(mean[None, :])[0] if config.spherical else mean
    n_children = np.bincount(np.asarray(parents[1:], dtype=np.int64), minlength=len(parents))
    leaf_of = np.zeros(len(x), dtype=np.int64)
    for leaf in np.flatnonzero(n_children == 0).tolist():
        leaf_of[members_of[leaf]] = leaf
    model = TreeModel(
        version=version,
        parents=np.asarray(parents, dtype=np.int32),
        centroids=centroids,
        scale=config.scale,
        hyperparameters={"build": asdict(config)},
    )
    return model.with_documents(ids, [[int(leaf)] for leaf in leaf_of], keys=vector_keys(x))
