"""Running configurations through the read path and scoring them with ranx.

:func:`run_config` sends one :class:`~es_neural.search.models.SearchRequest` per query through a
searcher (a :class:`~es_neural.neural_index.NeuralIndex` or a
:class:`~es_neural.search.service.HybridSearcher`), keeps each query's ranked hits and its
wall-clock latency, and returns a :class:`ConfigRun`. :func:`fuse_offline` fuses single-leg runs
with the same pure functions the searcher uses (:mod:`es_neural.search.fusion`), which makes
weight tuning on stored leg runs exact and fast. Metrics come from ranx (:func:`evaluate`).

Ranked lists reach ranx as rank-derived scores (``n - position``), so ranx sees exactly the
order the system returned, ties included (ranx would otherwise order tied scores its own way).
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm.auto import tqdm

from es_neural.errors import ConfigurationError, InvalidInputError
from es_neural.eval.configs import EvalConfig, TreeOptions
from es_neural.search.fusion import RankedList, fuse
from es_neural.search.models import SearchRequest, SearchResponse

__all__ = [
    "DEFAULT_METRICS",
    "ConfigRun",
    "Ranking",
    "Searcher",
    "evaluate",
    "fuse_offline",
    "latency_summary",
    "run_config",
    "to_ranx_run",
]

#: Metric names as ranx spells them.
DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")

#: query id -> hits best first, as (doc id, score)
Ranking = dict[str, list[tuple[str, float]]]


class Searcher(Protocol):
    def search(self, request: SearchRequest | str, **options: Any) -> SearchResponse: ...


@dataclass(frozen=True)
class ConfigRun:
    """A configuration's hits per query and per-query latencies (ms)."""

    config: EvalConfig
    ranking: Ranking
    latencies_ms: tuple[float, ...] = ()
    #: Queries whose rerank did not apply (budget, no candidates), when rerank was asked.
    rerank_skipped: int = 0
    warnings: tuple[str, ...] = field(default=())


def run_config(
    searcher: Searcher,
    queries: Mapping[str, str],
    config: EvalConfig,
    *,
    tree: TreeOptions | None = None,
    progress: bool = True,
) -> ConfigRun:
    """Search every query (in id order) with ``config``; deterministic for a fixed index."""
    ranking: Ranking = {}
    latencies: list[float] = []
    skipped = 0
    warnings: list[str] = []
    for qid in tqdm(sorted(queries), desc=config.name, disable=not progress, leave=False):
        request = config.request(queries[qid], tree=tree)
        started = time.perf_counter()
        response = searcher.search(request)
        latencies.append((time.perf_counter() - started) * 1000)
        ranking[qid] = [(hit.id, hit.score) for hit in response.hits]
        if config.rerank and not response.rerank.applied:
            skipped += 1
        warnings.extend(f"{qid}: {w}" for w in response.warnings)
    return ConfigRun(config, ranking, tuple(latencies), skipped, tuple(warnings))


def require_ranx() -> None:
    """:class:`ConfigurationError` naming the extra when ranx (the metrics) is not installed."""
    if importlib.util.find_spec("ranx") is None:
        raise ConfigurationError(
            "evaluation computes its metrics with ranx, which this install leaves out: "
            "pip install 'es-neural[eval]'"
        )


def to_ranx_run(ranking: Mapping[str, Sequence[tuple[str, float]]], name: str = "run") -> Any:
    """A ``ranx.Run`` holding the order of ``ranking`` (scores ``n - position``)."""
    require_ranx()
    from ranx import Run

    data = {
        qid: {doc: float(len(hits) - i) for i, (doc, _) in enumerate(hits)}
        for qid, hits in ranking.items()
    }
    return Run(data, name=name)


def evaluate(
    qrels: Mapping[str, Mapping[str, int]],
    ranking: Mapping[str, Sequence[tuple[str, float]]],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """ranx metrics of ``ranking`` against ``qrels``, averaged over the queries of ``qrels``.

    A query of ``qrels`` missing from ``ranking`` (or with no hits) scores 0; queries of
    ``ranking`` without qrels are ignored.
    """
    require_ranx()
    from ranx import Qrels
    from ranx import evaluate as ranx_evaluate

    if not qrels:
        raise InvalidInputError("no qrels to evaluate against")
    qrels_data = {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items()}
    run_data: dict[str, list[tuple[str, float]]] = {}
    for qid in qrels_data:
        hits = list(ranking.get(qid, ()))
        run_data[qid] = hits
    # ranx needs every query to have at least one hit; a placeholder id no qrels name scores 0.
    for qid, hits in run_data.items():
        if not hits:
            run_data[qid] = [("\x00no-hit", 0.0)]
    result = ranx_evaluate(
        Qrels(qrels_data), to_ranx_run(run_data), list(metrics), make_comparable=True
    )
    if isinstance(result, Mapping):
        return {m: float(result[m]) for m in metrics}
    return {metrics[0]: float(result)}


def fuse_offline(legs: Mapping[str, Ranking], config: EvalConfig) -> Ranking:
    """Fuse single-leg rankings as the searcher would for ``config`` (top ``config.depth``)."""
    missing = sorted(set(config.legs) - set(legs))
    if missing:
        raise InvalidInputError(f"no leg run for {missing}")
    if not config.fused:
        return {q: list(hits[: config.depth]) for q, hits in legs[config.legs[0]].items()}
    qids = sorted(set().union(*(legs[leg].keys() for leg in config.legs)))
    out: Ranking = {}
    weights = {leg: config.weights.get(leg, 1.0) for leg in config.legs}
    for qid in qids:
        ranked = [
            RankedList.from_scores(leg, legs[leg].get(qid, [])[: config.depth])
            for leg in config.legs
        ]
        if config.fusion == "rrf":
            fused = fuse(ranked, method="rrf", weights=weights, k=config.rrf_k, limit=config.depth)
        else:
            fused = fuse(
                ranked,
                method="linear",
                weights=weights,
                normalization=config.normalization,
                limit=config.depth,
            )
        out[qid] = fused.head()
    return out


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """Mean, p50 and p95 (nearest rank) of per-query latencies, in ms."""
    if not latencies_ms:
        return {"mean_ms": math.nan, "p50_ms": math.nan, "p95_ms": math.nan}
    ordered = sorted(latencies_ms)

    def nearest(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return {
        "mean_ms": statistics.fmean(ordered),
        "p50_ms": nearest(0.5),
        "p95_ms": nearest(0.95),
    }


def rerank_ranking(
    ranking: Mapping[str, Sequence[tuple[str, float]]],
    queries: Mapping[str, str],
    texts: Mapping[str, str],
    score: Callable[[str, list[str]], list[float]],
    *,
    top_n: int,
    interpolation: float | None = None,
) -> Ranking:
    """Rerank the top ``top_n`` of each query offline with the searcher's rerank stage.

    :func:`~es_neural.search.rerank.rerank_window` with ``score`` as the reranker, no time
    budget and one call per query; ``interpolation`` ``None`` orders the top ``top_n`` by the
    rerank score alone.
    """
    from es_neural.search.rerank import RerankPlan, ScoreFunction, rerank_window

    scorer = ScoreFunction(score)
    plan = RerankPlan(
        enabled=True,
        top_n=top_n,
        budget_ms=math.inf,
        batch_size=max(top_n, 1),
        interpolation=interpolation,
    )

    def passages(ids: Sequence[str]) -> list[str]:
        return [texts[d] for d in ids]

    out: Ranking = {}
    for qid in sorted(ranking):
        hits = list(ranking[qid])
        query = queries[qid] if hits[:top_n] else ""
        outcome = rerank_window(query, hits, reranker=scorer, plan=plan, passages=passages)
        out[qid] = [(doc_id, final) for doc_id, final, _ in outcome.entries]
    return out
