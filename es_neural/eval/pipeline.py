"""``es-neural eval`` end to end: load, ingest, tune on validation, run every configuration.

1. Load the BEIR folder (the evaluated split and, for tuning, the tuning split).
2. Ingest the corpus into ``index`` through the embedding cache (re-runs skip unchanged
   documents, so a second evaluation does not re-encode anything).
3. Tune on validation queries carved from the tuning split (:func:`carve_validation`): per-leg
   runs come from the engine once, fusion weights and normalisation of each linear
   configuration are grid-searched offline, then the reranker's interpolation weight is chosen
   by reranking the best fusion's validation top-N. The evaluated split is never looked at.
4. Run each configuration on the evaluated split through the engine (the real read path:
   query encoding, one multi-search, fusion, leaf filter, rerank), score it with ranx and time
   each query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_neural.errors import InvalidInputError
from es_neural.eval.configs import LEGS, EvalConfig, TreeOptions, default_configs
from es_neural.eval.data import BeirData, carve_validation, load_beir
from es_neural.eval.report import EvalReport, ResultRow
from es_neural.eval.runner import (
    DEFAULT_METRICS,
    Ranking,
    evaluate,
    fuse_offline,
    latency_summary,
    rerank_ranking,
    run_config,
)
from es_neural.eval.tune import tune_fusion, tune_interpolation
from es_neural.settings import EngineKind, Settings

__all__ = ["EvalOptions", "run_eval"]

#: Interpolation weights tried on validation (``None``: the rerank score alone).
ALPHAS: tuple[float | None, ...] = (None, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class EvalOptions:
    data_dir: Path
    split: str = "test"
    #: Split validation is carved from for tuning; ``None`` skips tuning (equal weights).
    tune_split: str | None = "train"
    val_fraction: float = 0.2
    seed: int = 13
    #: Index (alias) name; defaults to the data folder's name.
    index: str | None = None
    engine: EngineKind | None = None
    #: ``"embedded"``, a CrossEncoder folder or hub id; ``None`` runs no rerank configuration.
    reranker: str | None = "embedded"
    rerank_top_n: int = 30
    #: A saved tree folder (``es-neural tree``) for the leaf-filter configuration.
    tree: Path | None = None
    tree_options: TreeOptions = field(default_factory=TreeOptions)
    #: Only configurations whose name contains one of these (case-insensitive).
    only: tuple[str, ...] = ()
    max_queries: int | None = None
    depth: int = 100
    progress: bool = True


def _log(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(message)


def _leg_runs(
    searcher: Any, queries: Mapping[str, str], depth: int, progress: bool
) -> dict[str, Ranking]:
    return {
        leg: run_config(
            searcher, queries, EvalConfig(leg, (leg,), depth=depth), progress=progress
        ).ranking
        for leg in LEGS
    }


def _warm(dense: Any, sparse: Any, queries: Mapping[str, str]) -> None:
    texts = [queries[q] for q in sorted(queries)]
    dense.encode_queries(texts)
    sparse.encode_queries(texts)


def _encode_cost(dense: Any, sparse: Any, texts: Sequence[str]) -> dict[str, float]:
    """Median milliseconds to encode one query, per model (uncached, one call per query)."""
    import statistics
    import time

    out: dict[str, float] = {}
    for key, encoder in (("dense_ms", dense), ("sparse_ms", sparse)):
        if not texts:
            out[key] = float("nan")
            continue
        encoder.encode_queries([texts[0]])  # warm-up
        times = []
        for text in texts:
            started = time.perf_counter()
            encoder.encode_queries([text])
            times.append((time.perf_counter() - started) * 1000)
        out[key] = round(statistics.median(times), 2)
    return out


def run_eval(
    options: EvalOptions, settings: Settings, *, log: Callable[[str], None] | None = None
) -> EvalReport:
    """Run the evaluation described by ``options`` (see the module docstring)."""
    import torch

    from es_neural.encoders.cache import CachedDenseEncoder, CachedSparseEncoder
    from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder
    from es_neural.ingest.pipeline import IngestOptions
    from es_neural.neural_index import NeuralIndex

    torch.manual_seed(options.seed)
    splits = [options.split] + ([options.tune_split] if options.tune_split else [])
    if options.tune_split == options.split:
        raise InvalidInputError("the tuning split must differ from the evaluated split")
    data: BeirData = load_beir(options.data_dir, splits)
    name = options.index or options.data_dir.resolve().name
    engine = options.engine or settings.engine
    dense = get_dense_encoder(settings.dense)
    sparse = get_sparse_encoder(settings.sparse)
    cached_dense = CachedDenseEncoder(dense, settings.embedding_cache_dir)
    cached_sparse = CachedSparseEncoder(sparse, settings.embedding_cache_dir)
    ingest_opts = IngestOptions(progress=options.progress)

    writer = NeuralIndex(
        name, settings=settings, engine=engine, dense=cached_dense, sparse=cached_sparse
    )
    report_ingest = writer.ingest(data.corpus_path, options=ingest_opts)
    _log(
        log, f"ingest {name}: {report_ingest.indexed} indexed, {report_ingest.unchanged} unchanged"
    )

    reranker = None
    if options.reranker:
        from es_neural.search.rerank import get_reranker

        reranker = get_reranker(settings.rerank.model_copy(update={"model": options.reranker}))
        if reranker is not None:
            reranker.load()
    # Query encodings come from the embedding cache too (warmed below), so every configuration
    # is timed alike; the cost of encoding a query is measured once and reported apart.
    searcher = NeuralIndex(
        name,
        settings=settings,
        engine=engine,
        dense=cached_dense,
        sparse=cached_sparse,
        reranker=reranker,
    )

    eval_qrels = data.split(options.split)
    eval_queries = data.queries_of(eval_qrels)
    if options.max_queries is not None:
        keep = sorted(eval_queries)[: options.max_queries]
        eval_queries = {q: eval_queries[q] for q in keep}
        eval_qrels = {q: eval_qrels[q] for q in keep}

    encode_cost = _encode_cost(dense, sparse, [eval_queries[q] for q in sorted(eval_queries)][:50])
    # ----- tuning on validation -----
    tuning: dict[str, Any] = {}
    weights: dict[tuple[str, ...], dict[str, float]] = {}
    norms: dict[tuple[str, ...], str] = {}
    interpolation: float | None = None
    if options.tune_split:
        _, val_qrels = carve_validation(
            data.split(options.tune_split), fraction=options.val_fraction, seed=options.seed
        )
        val_queries = data.queries_of(val_qrels)
        _warm(cached_dense, cached_sparse, val_queries)
        tuning["validation"] = {
            "split": options.tune_split,
            "fraction": options.val_fraction,
            "seed": options.seed,
            "queries": len(val_queries),
        }
        _log(log, f"tuning on {len(val_queries)} validation queries of {options.tune_split!r}")
        legs = _leg_runs(searcher, val_queries, options.depth, options.progress)
        fusion: dict[str, Any] = {}
        for size in (2, 3):
            from itertools import combinations

            for group in combinations(LEGS, size):
                base = EvalConfig("+".join(group), group, fusion="linear", depth=options.depth)
                found = tune_fusion(legs, val_qrels, base)
                weights[group] = dict(found.config.weights)
                norms[group] = found.config.normalization
                fusion["+".join(group)] = {
                    "weights": weights[group],
                    "normalization": norms[group],
                    "val_ndcg@10": round(found.score, 4),
                }
        tuning["linear_fusion"] = fusion
        if reranker is not None:
            best = EvalConfig(
                "best",
                LEGS,
                fusion="linear",
                weights=weights[LEGS],
                normalization=norms[LEGS],  # type: ignore[arg-type]
                depth=options.depth,
            )
            fused = fuse_offline(legs, best)
            texts = dict(zip(data.corpus.ids, data.corpus.texts, strict=True))
            cache: dict[tuple[str, str], float] = {}

            def score_for(qid: str) -> Callable[[str, list[str]], list[float]]:
                def score(query: str, docs: list[str]) -> list[float]:
                    key = [(qid, d) for d in docs]
                    todo = [d for d in docs if (qid, d) not in cache]
                    if todo:
                        for d, s in zip(todo, reranker.score(query, todo), strict=True):
                            cache[(qid, d)] = s
                    return [cache[k] for k in key]

                return score

            at: dict[float | None, Ranking] = {}
            for alpha in ALPHAS:
                ranking: Ranking = {}
                for qid in sorted(val_qrels):
                    ranking.update(
                        rerank_ranking(
                            {qid: fused.get(qid, [])},
                            val_queries,
                            texts,
                            score_for(qid),
                            top_n=options.rerank_top_n,
                            interpolation=alpha,
                        )
                    )
                at[alpha] = ranking
            interpolation, by_alpha = tune_interpolation(at, val_qrels)
            fused_val = evaluate(val_qrels, fused, ("ndcg@10",))["ndcg@10"]
            tuning["rerank"] = {
                "top_n": options.rerank_top_n,
                "interpolation": interpolation,
                "val_ndcg@10_fused": round(fused_val, 4),
                "val_ndcg@10_by_interpolation": {k: round(v, 4) for k, v in by_alpha.items()},
            }

    # ----- the configurations -----
    tree_model = None
    if options.tree is not None:
        from es_neural.tree import load_tree

        tree_model = load_tree(options.tree)
    configs = default_configs(
        linear_weights=weights,
        normalization=norms,
        tree=tree_model is not None,
        rerank=reranker is not None,
        rerank_top_n=options.rerank_top_n,
        interpolation=interpolation,
    )
    configs = [c.with_(depth=options.depth) for c in configs]
    if options.only:
        wanted = [o.lower() for o in options.only]
        configs = [c for c in configs if any(w in c.name.lower() for w in wanted)]
    tree_searcher = None
    if tree_model is not None and any(c.tree for c in configs):
        from es_neural.tree import TreeLeafAssigner, TreeRouter

        tree_name = f"{name}-tree"
        tree_writer = NeuralIndex(
            tree_name,
            settings=settings,
            engine=engine,
            dense=cached_dense,
            sparse=cached_sparse,
            leaves=TreeLeafAssigner(tree_model),
        )
        tree_writer.ingest(data.corpus_path, options=ingest_opts)
        tree_searcher = NeuralIndex(
            tree_name,
            settings=settings,
            engine=engine,
            dense=cached_dense,
            sparse=cached_sparse,
            reranker=reranker,
            router=TreeRouter(tree_model),
        )
        tuning["tree"] = {
            "path": str(options.tree),
            "version": tree_model.version,
            "threshold": options.tree_options.threshold,
            "min_leaves": options.tree_options.min_leaves,
            "max_leaves": options.tree_options.max_leaves,
            "apply_to": list(options.tree_options.apply_to),
        }

    report = EvalReport(
        dataset=options.data_dir.resolve().name,
        split=options.split,
        engine=engine.value,
        index=name,
        queries=len(eval_queries),
        tuning=tuning,
        metrics=DEFAULT_METRICS,
    )
    if reranker is not None:
        report.notes.append(f"reranker: {reranker.name} ({reranker.model_name_or_path})")
    if settings.dense.query_model is not None:
        report.notes.append(
            f"dense queries: query-tuned model {settings.dense.query_model} (documents: "
            f"{cached_dense.fingerprint.name})"
        )
    report.query_encoding_ms = encode_cost
    report.notes.append(
        "latencies: query embeddings come from the embedding cache; encoding a query costs "
        f"about {encode_cost['dense_ms']:.1f} ms (dense) and {encode_cost['sparse_ms']:.1f} ms "
        "(SPLADE) more on this machine (median of single-query calls)"
    )
    _warm(cached_dense, cached_sparse, eval_queries)
    # Warm up (model kernels, engine caches) so the first configuration's latency is fair.
    first = sorted(eval_queries)[:5]
    run_config(searcher, {q: eval_queries[q] for q in first}, configs[-1], progress=False)
    for config in configs:
        target = tree_searcher if config.tree and tree_searcher is not None else searcher
        done = run_config(
            target, eval_queries, config, tree=options.tree_options, progress=options.progress
        )
        metrics = evaluate(eval_qrels, done.ranking, DEFAULT_METRICS)
        row = ResultRow(
            name=config.name,
            config=config.describe(),
            metrics={k: round(v, 4) for k, v in metrics.items()},
            latency={k: round(v, 2) for k, v in latency_summary(done.latencies_ms).items()},
            queries=len(eval_queries),
            rerank_skipped=done.rerank_skipped,
        )
        report.rows.append(row)
        _log(
            log,
            f"{config.name}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in row.metrics.items())
            + f", p50 {row.latency['p50_ms']:.1f} ms",
        )
    return report


def describe_configs(configs: Sequence[EvalConfig]) -> list[dict[str, Any]]:
    return [c.describe() for c in configs]
