"""Training the node centroids on (query, relevant document) pairs, encoder frozen (JTR).

The loss follows JTR (Li et al., "Constructing Tree-based Index for Efficient and Effective Dense
Retrieval", SIGIR 2023): at every level of the path from the root to the relevant document's leaf,
the cross-entropy of the true child against its siblings, ``-log softmax(scale * q . c)``; summed
over the levels it is the negative log path probability of that leaf. A document stored in several
leaves contributes the path to whichever of its leaves is currently the most probable one.

Only the centroid matrix is a parameter (AdamW). Batches are drawn by a seeded generator and the
loss is built from dense matrix products, masks and one gather whose indices never collide, so
runs with the same inputs and seed give the same centroids (on CPU bit for bit). A GPU is used
when present unless ``device`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from es_neural.encoders.base import resolve_device
from es_neural.errors import InvalidInputError
from es_neural.tree.model import TreeModel

if TYPE_CHECKING:
    import torch

__all__ = ["TrainConfig", "TrainReport", "calibrate_scale", "path_log_probs", "train_tree"]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 0.01
    weight_decay: float = 0.0
    seed: int = 0
    #: ``None``: CUDA when available, else CPU.
    device: str | None = None
    #: Weight of each document as a pseudo-query for its own primary leaf (0 disables). Keeps
    #: the centroids near their documents when there are few training pairs.
    self_weight: float = 0.0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise InvalidInputError("epochs must be >= 0 and batch_size >= 1")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise InvalidInputError("learning_rate must be positive")
        if self.weight_decay < 0 or self.self_weight < 0:
            raise InvalidInputError("weight_decay and self_weight must be >= 0")


@dataclass(frozen=True, slots=True)
class TrainReport:
    pairs: int
    #: Pairs whose document the tree does not hold (left out).
    skipped: int
    self_pairs: int
    epoch_losses: tuple[float, ...]
    elapsed_s: float
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Tables:
    """The tree as tensors: each node's slot among its parent's children and the path table."""

    def __init__(self, model: TreeModel, device: str) -> None:
        import torch

        internal = np.flatnonzero(~model.is_leaf)
        slot_parent = np.full(model.n_nodes, -1, dtype=np.int64)
        slot_parent[internal] = np.arange(len(internal))
        self.width = model.children_table.shape[1]
        self.n_internal = len(internal)
        kids = model.children_table[internal]  # [n_internal, width]
        # Padding gathers from an extra column of -inf scores; no real node is gathered twice.
        self.kids = torch.as_tensor(np.where(kids >= 0, kids, model.n_nodes), device=device)
        self.kid_valid = torch.as_tensor(kids >= 0, device=device)
        slots = np.full(model.n_nodes, -1, dtype=np.int64)
        slots[1:] = slot_parent[model.parents[1:]] * self.width + model.position[1:]
        paths = model.path_table
        # [n_nodes, n_slots] indicator of the slots on each node's path (built lazily per batch).
        self.path_slots = np.where(paths >= 0, slots[np.maximum(paths, 0)], -1)
        self.device = device

    def indicator(self, leaves: npt.NDArray[np.int64]) -> torch.Tensor:
        """``[*leaves.shape, n_slots]`` 0/1 float: the slots on each leaf's path."""
        import torch

        shape = leaves.shape
        flat = leaves.reshape(-1)
        out = np.zeros((len(flat), self.n_internal * self.width), dtype=np.float32)
        paths = self.path_slots[np.maximum(flat, 0)]
        rows = np.repeat(np.arange(len(flat)), paths.shape[1])
        cols = paths.reshape(-1)
        keep = (cols >= 0) & (np.repeat(flat, paths.shape[1]) >= 0)
        out[rows[keep], cols[keep]] = 1.0
        return torch.as_tensor(out.reshape(*shape, -1), device=self.device)


def _slot_log_probs(
    tables: _Tables, queries: torch.Tensor, weights: torch.Tensor, scale: float
) -> torch.Tensor:
    """``[batch, n_slots]``: log probability of each node given its parent (0 on padding)."""
    import torch

    scores = scale * queries @ weights.T  # [batch, n_nodes]
    padded = torch.cat([scores, scores.new_full((len(scores), 1), -math.inf)], dim=1)
    gathered = padded[:, tables.kids]  # [batch, n_internal, width]
    local = gathered - torch.logsumexp(gathered, dim=2, keepdim=True)
    local = torch.where(tables.kid_valid, local, torch.zeros_like(local))
    return local.reshape(len(scores), -1)


def path_log_probs(
    model: TreeModel, queries: npt.ArrayLike, leaves: npt.ArrayLike, *, device: str = "cpu"
) -> npt.NDArray[np.float64]:
    """Log path probability of ``leaves[i, j]`` (node numbers, ``-1`` padded) for query ``i``;
    ``-inf`` on padding."""
    import torch

    tables = _Tables(model, device)
    leaf_array = np.asarray(leaves, dtype=np.int64)
    with torch.no_grad():
        q = torch.as_tensor(np.asarray(queries, dtype=np.float32), device=device)
        w = torch.as_tensor(np.array(model.centroids), device=device)
        slots = _slot_log_probs(tables, q, w, model.scale)
        ind = tables.indicator(leaf_array)
        logp = (slots[:, None, :] * ind).sum(-1).double().cpu().numpy()
    return np.where(leaf_array >= 0, logp, -np.inf)


def _candidate_leaves(
    model: TreeModel, doc_rows: Sequence[int], *, primary_only: bool
) -> npt.NDArray[np.int64]:
    width = 1 if primary_only else max(int(np.diff(model.doc_leaf_ptr).max(initial=1)), 1)
    out = np.full((len(doc_rows), width), -1, dtype=np.int64)
    for i, row in enumerate(doc_rows):
        leaves = model.leaves_of_row(row)[:width]
        out[i, : len(leaves)] = leaves
    return out


def train_tree(
    model: TreeModel,
    queries: npt.ArrayLike,
    pairs: Sequence[tuple[int, str]],
    *,
    doc_vectors: npt.ArrayLike | None = None,
    config: TrainConfig = TrainConfig(),
) -> tuple[TreeModel, TrainReport]:
    """Train the centroids of ``model`` on ``pairs`` of (row of ``queries``, relevant doc id).

    ``doc_vectors`` (one row per document of the tree, in its order) are needed only when
    ``config.self_weight > 0``. Returns the trained copy (same version and structure) and a
    report; ``model`` itself is left as it is.
    """
    from es_neural.encoders.base import require_torch_stack

    require_torch_stack("training the tree")
    import torch

    started = time.perf_counter()
    q_all = np.asarray(queries, dtype=np.float32)
    if q_all.ndim != 2 or (len(q_all) and q_all.shape[1] != model.dims):
        raise InvalidInputError(f"queries must be [n, {model.dims}], got shape {q_all.shape}")
    if model.is_leaf[0]:
        raise InvalidInputError("a one-leaf tree has nothing to train")
    query_rows: list[int] = []
    doc_rows: list[int] = []
    skipped = 0
    for q_row, doc_id in pairs:
        row = model.doc_row(doc_id)
        if row is None:
            skipped += 1
            continue
        if not 0 <= q_row < len(q_all):
            raise InvalidInputError(f"query row {q_row} is out of range")
        query_rows.append(int(q_row))
        doc_rows.append(row)
    inputs = [q_all[query_rows]] if query_rows else []
    targets = _candidate_leaves(model, doc_rows, primary_only=False)
    row_weights = [np.ones(len(query_rows), dtype=np.float32)]
    self_pairs = 0
    if config.self_weight > 0:
        if doc_vectors is None:
            raise InvalidInputError("self_weight > 0 needs doc_vectors")
        docs = np.asarray(doc_vectors, dtype=np.float32)
        if docs.shape != (model.n_documents, model.dims):
            raise InvalidInputError(
                f"doc_vectors must be [{model.n_documents}, {model.dims}], got {docs.shape}"
            )
        own = _candidate_leaves(model, range(model.n_documents), primary_only=True)
        padded = np.full((len(own), targets.shape[1]), -1, dtype=np.int64)
        padded[:, :1] = own
        inputs.append(docs)
        targets = np.concatenate([targets, padded]) if len(targets) else padded
        row_weights.append(np.full(len(docs), config.self_weight, dtype=np.float32))
        self_pairs = len(docs)
    if not inputs:
        raise InvalidInputError("no training pair names a document of the tree")
    x_all = np.concatenate(inputs)
    w_all = np.concatenate(row_weights)

    device = resolve_device(config.device)
    tables = _Tables(model, device)
    generator = torch.Generator().manual_seed(config.seed)
    weights = torch.nn.Parameter(torch.as_tensor(np.array(model.centroids), device=device))
    optimizer = torch.optim.AdamW(
        [weights], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    x_tensor = torch.as_tensor(x_all, device=device)
    w_tensor = torch.as_tensor(w_all, device=device)
    n = len(x_all)
    losses: list[float] = []
    bar = tqdm(range(config.epochs), desc="train tree", unit="epoch", disable=not config.progress)
    for _ in bar:
        order = torch.randperm(n, generator=generator).numpy()
        total, seen = 0.0, 0.0
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            cand = targets[batch]
            ind = tables.indicator(cand)  # [b, m, n_slots]
            slots = _slot_log_probs(tables, x_tensor[batch], weights, model.scale)
            logp = (slots[:, None, :] * ind).sum(-1)  # [b, m]
            valid = torch.as_tensor(cand >= 0, device=device)
            best = torch.where(valid, logp, torch.full_like(logp, -math.inf)).max(dim=1).values
            bw = w_tensor[batch]
            loss = -(best * bw).sum() / bw.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * float(bw.sum())
            seen += float(bw.sum())
        losses.append(total / max(seen, 1e-12))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    trained = model.with_centroids(weights.detach().cpu().numpy()).with_hyperparameters(
        train={k: v for k, v in asdict(config).items() if k not in ("progress", "device")}
    )
    report = TrainReport(
        pairs=len(query_rows),
        skipped=skipped,
        self_pairs=self_pairs,
        epoch_losses=tuple(losses),
        elapsed_s=time.perf_counter() - started,
        device=device,
    )
    return trained, report


def calibrate_scale(
    model: TreeModel,
    queries: npt.ArrayLike,
    pairs: Sequence[tuple[int, str]],
    *,
    factors: Sequence[float] | None = None,
) -> tuple[TreeModel, dict[str, float]]:
    """Temperature scaling (Guo et al., ICML 2017) of the router on held-out ``pairs``.

    Training sharpens the softmaxes until the path probabilities are over-confident, which makes
    a cumulative-probability threshold route to too few leaves. This picks the factor of
    :attr:`TreeModel.scale` that minimises the negative log probability of routing each held-out
    query into a leaf of its relevant document (the sum of the path probabilities of the
    document's leaves); the centroids stay as they are.
    """
    grid = list(factors) if factors is not None else list(np.geomspace(0.05, 2.0, 49))
    if not grid or min(grid) <= 0:
        raise InvalidInputError("factors must be positive")
    q_all = np.asarray(queries, dtype=np.float32)
    rows = [(q, r) for q, d in pairs if (r := model.doc_row(d)) is not None]
    if not rows:
        raise InvalidInputError("no held-out pair names a document of the tree")
    q_rows = np.asarray([q for q, _ in rows], dtype=np.int64)
    targets = _candidate_leaves(model, [r for _, r in rows], primary_only=False)
    best_factor, best_nll = 1.0, math.inf
    before = math.nan
    for factor in sorted(set(float(f) for f in grid) | {1.0}):
        scaled = dataclasses.replace(model, scale=model.scale * factor)
        logp = path_log_probs(scaled, q_all[q_rows], targets)
        top = logp.max(axis=1, keepdims=True)
        nll = float(-(top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))).mean())
        if factor == 1.0:
            before = nll
        if nll < best_nll - 1e-12:
            best_factor, best_nll = factor, nll
    calibrated = dataclasses.replace(model, scale=model.scale * best_factor)
    calibrated = calibrated.with_hyperparameters(
        calibration={"factor": best_factor, "pairs": len(rows)}
    )
    return calibrated, {"factor": best_factor, "nll_before": before, "nll_after": best_nll}
