"""Tuning on validation queries: fusion weights and the rerank interpolation weight.

Everything here works offline on stored rankings (:func:`~es_neural.eval.runner.fuse_offline`),
so a grid of a few hundred weightings takes seconds. Grids are walked in a fixed order and the
first best point wins, so tuning is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

from es_neural.eval.configs import EvalConfig
from es_neural.eval.runner import Ranking, evaluate, fuse_offline
from es_neural.eval.runs import drop_identical_ids

__all__ = ["TuneResult", "simplex_grid", "tune_fusion", "tune_interpolation"]


@dataclass(frozen=True)
class TuneResult:
    config: EvalConfig
    score: float
    metric: str
    tried: int


def simplex_grid(legs: Sequence[str], step: float = 0.1) -> Iterator[dict[str, float]]:
    """Weightings of ``legs`` on a grid of ``step`` that sum to 1, every leg weight > 0."""
    n = round(1 / step)
    for parts in product(range(1, n + 1), repeat=len(legs)):
        if sum(parts) == n:
            yield {leg: round(p * step, 6) for leg, p in zip(legs, parts, strict=True)}


def tune_fusion(
    legs: Mapping[str, Ranking],
    qrels: Mapping[str, Mapping[str, int]],
    base: EvalConfig,
    *,
    normalizations: Sequence[str] = ("minmax", "zscore"),
    step: float = 0.1,
    metric: str = "ndcg@10",
    ignore_identical_ids: bool = False,
) -> TuneResult:
    """Best weights (and normalisation, for linear fusion) of ``base`` on ``qrels``.

    ``ignore_identical_ids`` scores each fused ranking without the query's own id (BEIR's
    option, :func:`~es_neural.eval.runs.drop_identical_ids`)."""
    legs = {leg: {q: run[q] for q in qrels if q in run} for leg, run in legs.items()}
    best: TuneResult | None = None
    tried = 0
    norms = normalizations if base.fusion == "linear" else (base.normalization,)
    for norm in norms:
        for weights in simplex_grid(base.legs, step):
            config = base.with_(weights=weights, normalization=norm)
            fused = fuse_offline(legs, config)
            if ignore_identical_ids:
                fused = drop_identical_ids(fused)
            score = evaluate(qrels, fused, (metric,))[metric]
            tried += 1
            if best is None or score > best.score + 1e-12:
                best = TuneResult(config, score, metric, tried)
    assert best is not None
    return TuneResult(best.config, best.score, metric, tried)


def tune_interpolation(
    rerank_at: Mapping[float | None, Ranking],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    metric: str = "ndcg@10",
) -> tuple[float | None, dict[str, float]]:
    """The interpolation weight (``None``: rerank alone) whose ranking scores best.

    ``rerank_at`` maps each candidate weight to the ranking it gives; returns the best weight
    and every weight's score (keys as strings, ``"rerank"`` for ``None``).
    """
    scores: dict[str, float] = {}
    best: tuple[float | None, float] | None = None
    for alpha, ranking in rerank_at.items():
        value = evaluate(qrels, ranking, (metric,))[metric]
        scores["rerank" if alpha is None else f"{alpha:g}"] = value
        if best is None or value > best[1] + 1e-12:
            best = (alpha, value)
    assert best is not None
    return best[0], scores
