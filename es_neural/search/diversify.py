"""The diversify stage: maximal marginal relevance (MMR) over the top of a window, pure functions.

MMR (Carbonell and Goldstein, SIGIR 1998) fills the positions one at a time, each with the
document not yet placed that maximises

    lambda * rel(d) - (1 - lambda) * max over s placed above d of cos(d, s)

where ``rel`` is the final score of the stage before (the reranked or fused score), min-max
normalised over the documents MMR reorders (all-equal scores give 1.0, as in
:func:`es_neural.search.fusion.normalize`). ``lambda = 1`` keeps the relevance order, ``0``
orders by dissimilarity alone. The first position has no document above it: its penalty is 0.
A document without a dense vector (written without text) has similarity 0 to every other.
Ties go to the document that came first.

* :func:`mmr` is the algorithm over scores and vectors;
* :func:`diversify_window` applies it to the top ``size`` entries of a window in its final order
  (the entries below keep their order after them) and explains each position
  (:class:`~es_neural.search.models.MmrExplain`);
* :func:`explain_steps` rebuilds those explanations from what a cursor keeps.

The searcher (:class:`~es_neural.search.service.HybridSearcher`) fetches the dense vectors of the
MMR window in one engine request and runs this stage after rerank, before the page. It is done
here rather than by the engines' own MMR (Elasticsearch 9.3's ``diversify`` retriever,
OpenSearch 3.3's MMR search processor) so that it works the same on both engines, on every
licence and version, over the fused and reranked order (not one kNN query's), and is explained
per hit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from es_neural.errors import InvalidInputError
from es_neural.search.fusion import Normalization, normalize
from es_neural.search.models import MmrExplain
from es_neural.search.rerank import WindowEntry

__all__ = [
    "Diversified",
    "MmrPick",
    "diversify_window",
    "explain_steps",
    "mmr",
    "mmr_score",
    "relevance",
]


@dataclass(frozen=True, slots=True)
class MmrPick:
    """One position of the MMR order: which input it took and why."""

    #: The document's position (0-based) in the input order.
    index: int
    #: Its normalised relevance.
    relevance: float
    #: Its highest cosine similarity to the documents picked before it (0 for the first).
    max_similarity: float
    #: The input position of that most similar earlier pick; ``None`` for the first pick, and
    #: when the document or every earlier pick has no vector.
    similar_to: int | None
    #: ``lambda * relevance - (1 - lambda) * max_similarity``: the highest of those not yet
    #: picked when it was picked.
    score: float


def relevance(scores: Sequence[float]) -> tuple[float, ...]:
    """The scores min-max normalised (all equal: 1.0); non-finite scores are refused."""
    return normalize(scores, Normalization.MINMAX)


def mmr_score(lambda_: float, rel: float, max_similarity: float) -> float:
    """``lambda * rel - (1 - lambda) * max_similarity``: the one formula, for the picks and for
    explanations rebuilt from a cursor."""
    return lambda_ * rel - (1.0 - lambda_) * max_similarity


def _unit_rows(vectors: Sequence[Sequence[float] | None]) -> tuple[np.ndarray, np.ndarray]:
    """The vectors as unit rows (a zero row for a missing or zero vector), and which have one."""
    dims = {len(v) for v in vectors if v is not None and len(v) > 0}
    if len(dims) > 1:
        raise InvalidInputError(f"vectors of different lengths {sorted(dims)}")
    width = dims.pop() if dims else 0
    out = np.zeros((len(vectors), width), dtype=np.float64)
    for row, vector in enumerate(vectors):
        if vector is not None and len(vector) > 0:
            out[row] = np.asarray(vector, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InvalidInputError("a vector holds a non-finite value")
    norms = np.linalg.norm(out, axis=1)
    present = norms > 0.0
    out[present] /= norms[present, None]
    return out, present


def mmr(
    scores: Sequence[float], vectors: Sequence[Sequence[float] | None], *, lambda_: float
) -> tuple[MmrPick, ...]:
    """Every input in MMR order (see the module docstring).

    ``scores[i]`` is document ``i``'s relevance score (any scale: min-max normalised here) and
    ``vectors[i]`` its dense vector or ``None``; vectors are normalised here, so cosine is a dot
    product. Pure, deterministic: an exact tie goes to the lower input position.
    """
    if len(scores) != len(vectors):
        raise InvalidInputError(f"{len(scores)} scores but {len(vectors)} vectors")
    if not 0.0 <= lambda_ <= 1.0 or math.isnan(lambda_):
        raise InvalidInputError(f"lambda must be in [0, 1], got {lambda_!r}")
    n = len(scores)
    if n == 0:
        return ()
    rel = np.asarray(relevance(scores), dtype=np.float64)
    unit, present = _unit_rows(vectors)
    sims = unit @ unit.T
    # Highest similarity to the picks so far (-inf: nothing picked yet) and which pick it is.
    max_sim = np.full(n, -np.inf)
    nearest = np.full(n, -1)
    left = np.ones(n, dtype=bool)
    picks: list[MmrPick] = []
    for _ in range(n):
        penalty = np.where(np.isneginf(max_sim), 0.0, max_sim)
        value = lambda_ * rel - (1.0 - lambda_) * penalty
        value[~left] = -np.inf
        i = int(np.argmax(value))  # the first of equal maxima: ties keep the input order
        similar = int(nearest[i]) if present[i] and nearest[i] >= 0 else None
        rel_i, penalty_i = float(rel[i]), float(penalty[i])
        picks.append(MmrPick(i, rel_i, penalty_i, similar, mmr_score(lambda_, rel_i, penalty_i)))
        left[i] = False
        row = sims[i]
        closer = left & (row > max_sim)
        max_sim[closer] = row[closer]
        # A pick without a vector is similar to nothing (0): never named as the nearest.
        nearest[closer & present[i]] = i
    return tuple(picks)


@dataclass(frozen=True, slots=True)
class Diversified:
    """A window after MMR: the new order, and the explanation of each reordered position."""

    entries: tuple[WindowEntry, ...]
    #: One per position of the MMR window (the top ``len(steps)`` entries), in the new order.
    steps: tuple[MmrExplain, ...]
    #: Documents of the MMR window without a vector.
    missing_vectors: int


def diversify_window(
    entries: Sequence[WindowEntry],
    vectors: Mapping[str, Sequence[float]],
    *,
    lambda_: float,
    size: int,
) -> Diversified:
    """The top ``size`` of ``entries`` (the window in its final order) reordered by MMR, with
    the final score of each entry as its relevance; the entries below keep their order.

    ``vectors`` maps a document id to its dense vector (an id it lacks has none). The entries'
    scores are left as they are: MMR changes the order, not the relevance.
    """
    head = list(entries[: max(size, 0)])
    vecs = [vectors.get(doc_id) for doc_id, _, _ in head]
    picks = mmr([score for _, score, _ in head], vecs, lambda_=lambda_)
    steps = tuple(
        MmrExplain(
            rank_before=p.index + 1,
            relevance=p.relevance,
            max_similarity=p.max_similarity,
            similar_to=head[p.similar_to][0] if p.similar_to is not None else None,
            mmr_score=p.score,
        )
        for p in picks
    )
    reordered = tuple(head[p.index] for p in picks) + tuple(entries[len(head) :])
    missing = sum(1 for v in vecs if v is None or len(v) == 0)
    return Diversified(reordered, steps, missing)


def explain_steps(
    entries: Sequence[WindowEntry],
    kept: Sequence[tuple[int, float, int | None]],
    *,
    lambda_: float,
) -> tuple[MmrExplain, ...]:
    """The explanations of :func:`diversify_window` rebuilt from what a cursor keeps.

    ``entries`` is the window in its diversified order; ``kept[j]`` is, for its position ``j``
    of the MMR window, ``(rank_before, max_similarity, position of the similar entry or
    None)``. Relevance and the MMR score are computed again from the entries' scores, by the
    same functions, so they equal the first page's.
    """
    head = entries[: len(kept)]
    rel = relevance([score for _, score, _ in head])
    steps = []
    for j, (rank_before, max_similarity, similar) in enumerate(kept):
        steps.append(
            MmrExplain(
                rank_before=rank_before,
                relevance=rel[j],
                max_similarity=max_similarity,
                similar_to=head[similar][0] if similar is not None else None,
                mmr_score=mmr_score(lambda_, rel[j], max_similarity),
            )
        )
    return tuple(steps)
