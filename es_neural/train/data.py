"""Training data for the reranker: (query, positives, hard negatives) from qrels and a ranking.

Hard negatives are the documents the project's own hybrid retrieval ranks high for a query that
its qrels do not mark relevant. Each epoch draws, per query, one positive and ``negatives``
negatives with a seeded generator: ``hard`` of them from the top ``hard_depth`` candidates and
the rest from deeper ones (easier). Everything is deterministic given the seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from es_neural.errors import InvalidInputError

__all__ = ["Group", "QueryExamples", "build_examples", "sample_groups"]


@dataclass(frozen=True, slots=True)
class QueryExamples:
    qid: str
    query: str
    positives: tuple[str, ...]
    #: Non-relevant candidates in retrieval order (best first), with their fused scores.
    negatives: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Group:
    """One listwise training item: the query, then the positive first and the negatives."""

    query: str
    docs: tuple[str, ...]
    #: Fused retrieval scores of ``docs`` (NaN when the positive was not retrieved).
    teacher: tuple[float, ...]


def build_examples(
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    ranking: Mapping[str, Sequence[tuple[str, float]]],
    *,
    depth: int = 100,
) -> list[QueryExamples]:
    """One entry per query of ``qrels`` that has a relevant document and retrieved negatives."""
    out: list[QueryExamples] = []
    for qid in sorted(qrels):
        positives = tuple(sorted(d for d, g in qrels[qid].items() if g > 0))
        if not positives:
            continue
        if qid not in queries:
            raise InvalidInputError(f"query {qid!r} of the qrels has no text")
        hits = list(ranking.get(qid, ()))[:depth]
        negatives = tuple((d, float(s)) for d, s in hits if d not in qrels[qid])
        if negatives:
            out.append(QueryExamples(qid, queries[qid], positives, negatives))
    return out


def sample_groups(
    examples: Sequence[QueryExamples],
    texts: Mapping[str, str],
    *,
    negatives: int = 7,
    hard: int = 5,
    hard_depth: int = 20,
    seed: int = 0,
    positive_scores: Mapping[tuple[str, str], float] | None = None,
) -> list[Group]:
    """One group per (query, positive) for an epoch, shuffled; deterministic for ``seed``."""
    rng = random.Random(seed)
    groups: list[Group] = []
    for ex in examples:
        head = list(ex.negatives[:hard_depth])
        tail = list(ex.negatives[hard_depth:])
        for pos in ex.positives:
            k_hard = min(hard, len(head))
            picked = rng.sample(head, k_hard)
            rest = negatives - k_hard
            pool = tail if len(tail) >= rest else tail + [h for h in head if h not in picked]
            picked += rng.sample(pool, min(rest, len(pool)))
            if not picked:
                continue
            pos_score = (positive_scores or {}).get((ex.qid, pos), float("nan"))
            groups.append(
                Group(
                    ex.query,
                    (texts[pos], *(texts[d] for d, _ in picked)),
                    (pos_score, *(s for _, s in picked)),
                )
            )
    rng.shuffle(groups)
    return groups
