"""``es-neural eval`` end to end: load, ingest, tune on validation, run every configuration.

1. Load the BEIR folder (the evaluated split and, for tuning, the tuning split):
   :func:`_load`.
2. Ingest the corpus into ``index`` through the embedding cache (re-runs skip unchanged
   documents, so a second evaluation does not re-encode anything) and open the read path:
   :func:`_open_read_path`.
3. Tune on validation queries carved from the tuning split (:func:`carve_validation`): per-leg
   runs come from the engine once, fusion weights and normalisation of each linear
   configuration are grid-searched offline, then the reranker's interpolation weight is chosen
   by reranking the best fusion's validation top-N. The evaluated split is never looked at:
   :func:`_tune`. Every configuration that can be measured offline gets a validation score.
4. List the configurations (:func:`_configurations`); without a tuning split the interpolated
   rerank row uses the weight of the reranker's model card.
5. Run each configuration on the evaluated split through the engine (the real read path:
   query encoding, one multi-search, fusion, leaf filter, rerank), score it with ranx, time
   each query and, when asked, write its TREC run file: :func:`_run_configs`.
6. Choose on validation only, by the rules of :mod:`es_neural.eval.recommend` (the untuned
   default fusion unless a row leads it by more than the margin; rerank only when it earns its
   place): the report bolds that row (:func:`_choose`) and, with ``recommend``, it is written as
   a search profile (:func:`_write_recommendation`).

Queries of any length are evaluated: the models truncate a query longer than their window, as
they truncate documents, and the report counts how many were. With ``ignore_identical_ids``
(BEIR's option) a hit whose id is the query's own is dropped before scoring, on validation and on
the evaluated split alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from es_neural.errors import InvalidInputError
from es_neural.eval.configs import (
    LEGS,
    EvalConfig,
    TreeOptions,
    config_key,
    default_configs,
    select_configs,
)
from es_neural.eval.data import BeirData, Qrels, carve_validation, load_beir
from es_neural.eval.recommend import Evidence, Provenance, RerankEvidence, decide, recommend
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
from es_neural.eval.runs import drop_identical_ids, run_file_name, write_trec_run
from es_neural.eval.tune import tune_fusion, tune_interpolation
from es_neural.search.profile import reranker_fingerprint
from es_neural.settings import EngineKind, Settings

__all__ = ["EvalOptions", "rerank_top_n", "run_eval"]

#: Interpolation weights tried on validation (``None``: the rerank score alone).
ALPHAS: tuple[float | None, ...] = (None, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

Log = Callable[[str], None]


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
    #: Candidates reranked per query; ``None``: ``settings.rerank.top_n`` (the searcher's).
    rerank_top_n: int | None = None
    #: A saved tree folder (``es-neural tree``) for the leaf-filter configuration.
    tree: Path | None = None
    tree_options: TreeOptions = field(default_factory=TreeOptions)
    #: Only the configurations of these exact names (:func:`select_configs`); empty: all.
    only: tuple[str, ...] = ()
    #: BEIR's ``ignore_identical_ids``: a hit whose id is the query's id is not counted.
    ignore_identical_ids: bool = False
    #: A folder for one TREC run file per configuration (``None``: none written).
    runs_dir: Path | None = None
    #: Where to write the recommended configuration (a search profile); needs a tuning split.
    recommend: Path | None = None
    #: Validation nDCG@10 the rerank must add to be recommended, and its p95 cost limit per
    #: query (``None``: ``settings.rerank.budget_ms``).
    recommend_margin: float = 0.005
    recommend_budget_ms: float | None = None
    max_queries: int | None = None
    depth: int = 100
    progress: bool = True


def rerank_top_n(options: EvalOptions, settings: Settings) -> int:
    """Candidates reranked: the option when given, else the searcher's own default (settings),
    so evaluation measures the depth searches use."""
    return settings.rerank.top_n if options.rerank_top_n is None else options.rerank_top_n


def _log(log: Log | None, message: str) -> None:
    if log is not None:
        log(message)


# ----- 1. load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    data: BeirData
    queries: dict[str, str]
    qrels: Qrels


def _load(options: EvalOptions) -> _Loaded:
    if options.tune_split == options.split:
        raise InvalidInputError("the tuning split must differ from the evaluated split")
    splits = [options.split] + ([options.tune_split] if options.tune_split else [])
    data = load_beir(options.data_dir, splits)
    qrels = data.split(options.split)
    queries = data.queries_of(qrels)
    if options.max_queries is not None:
        keep = sorted(queries)[: options.max_queries]
        queries = {q: queries[q] for q in keep}
        qrels = {q: qrels[q] for q in keep}
    if options.runs_dir is not None:
        _check_run_ids(data, queries)
    return _Loaded(data, queries, qrels)


def _check_run_ids(data: BeirData, queries: Mapping[str, str]) -> None:
    """Refuse, before any work, ids that a TREC run file cannot hold (they have spaces)."""
    for kind, ids in (("query", queries), ("document", data.corpus.ids)):
        bad = [i for i in ids if not i or any(c.isspace() for c in i)]
        if bad:
            raise InvalidInputError(
                f"--runs: {len(bad)} {kind} ids have spaces (TREC run files cannot hold them), "
                f"e.g. {bad[0]!r}"
            )


def _check_only(options: EvalOptions) -> None:
    """Refuse unknown ``--only`` names before anything is ingested or tuned."""
    if not options.only:
        return
    possible = default_configs(
        tree=options.tree is not None, rerank=options.reranker is not None, interpolation=0.5
    )
    select_configs(possible, options.only)


# ----- 2. ingest and the read path -------------------------------------------------------------


@dataclass(frozen=True)
class _ReadPath:
    """The encoders, reranker and searcher every configuration runs through."""

    name: str
    engine: EngineKind
    dense: Any  # the encoders themselves: query cost and truncation
    sparse: Any
    cached_dense: Any  # through the embedding cache: ingestion and timed searches
    cached_sparse: Any
    reranker: Any | None
    searcher: Any
    ingest_options: Any


def _open_read_path(
    options: EvalOptions, settings: Settings, data: BeirData, log: Log | None
) -> _ReadPath:
    from es_neural.encoders.registry import Encoders
    from es_neural.ingest.pipeline import IngestOptions
    from es_neural.neural_index import NeuralIndex

    name = options.index or options.data_dir.resolve().name
    engine = options.engine or settings.engine
    encoders = Encoders.from_settings(settings)
    dense, sparse = encoders.dense, encoders.required_sparse
    cached = Encoders.from_settings(settings, cached=True)
    cached_dense, cached_sparse = cached.dense, cached.required_sparse
    ingest_options = IngestOptions(progress=options.progress)

    writer = NeuralIndex(
        name, settings=settings, engine=engine, dense=cached_dense, sparse=cached_sparse
    )
    done = writer.ingest(data.corpus_path, options=ingest_options)
    _log(log, f"ingest {name}: {done.indexed} indexed, {done.unchanged} unchanged")

    reranker = None
    if options.reranker:
        from es_neural.search.rerank import get_reranker

        reranker = get_reranker(settings.rerank.model_copy(update={"model": options.reranker}))
        if reranker is not None:
            reranker.load()
    # Query encodings come from the embedding cache too (warmed before each run), so every
    # configuration is timed alike; the cost of encoding a query is measured once, reported apart.
    searcher = NeuralIndex(
        name,
        settings=settings,
        engine=engine,
        dense=cached_dense,
        sparse=cached_sparse,
        reranker=reranker,
    )
    return _ReadPath(
        name, engine, dense, sparse, cached_dense, cached_sparse, reranker, searcher, ingest_options
    )


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


def _truncated_queries(path: _ReadPath, queries: Mapping[str, str]) -> dict[str, int]:
    """Queries longer than each model's window: the model reads their head only, as it does
    with a long document (ingestion counts those the same way)."""
    from es_neural.encoders.base import count_truncated

    texts = [queries[q] for q in sorted(queries)]
    return {
        "dense": count_truncated(path.dense, texts),
        "sparse": count_truncated(path.sparse, texts),
    }


# ----- 3. tuning on validation -----------------------------------------------------------------


@dataclass
class _Tuning:
    """What validation decided, and what it takes to score a configuration there."""

    info: dict[str, Any] = field(default_factory=dict)
    weights: dict[tuple[str, ...], dict[str, float]] = field(default_factory=dict)
    norms: dict[tuple[str, ...], str] = field(default_factory=dict)
    #: The tuned rerank interpolation (``None``: rerank alone won, or no rerank tuning).
    interpolation: float | None = None
    qrels: Qrels = field(default_factory=dict)
    #: Per-leg validation runs from the engine.
    legs: dict[str, Ranking] = field(default_factory=dict)
    #: The best fusion's validation ranking reranked, per interpolation weight tried.
    reranked: dict[float | None, Ranking] = field(default_factory=dict)

    @property
    def tuned(self) -> bool:
        return bool(self.qrels)


def _leg_runs(
    searcher: Any, queries: Mapping[str, str], depth: int, progress: bool
) -> dict[str, Ranking]:
    return {
        leg: run_config(
            searcher, queries, EvalConfig(leg, (leg,), depth=depth), progress=progress
        ).ranking
        for leg in LEGS
    }


def _tune(
    options: EvalOptions, data: BeirData, path: _ReadPath, top_n: int, log: Log | None
) -> _Tuning:
    assert options.tune_split is not None
    _, val_qrels = carve_validation(
        data.split(options.tune_split), fraction=options.val_fraction, seed=options.seed
    )
    val_queries = data.queries_of(val_qrels)
    _warm(path.cached_dense, path.cached_sparse, val_queries)
    tuning = _Tuning(qrels=val_qrels)
    tuning.info["validation"] = {
        "split": options.tune_split,
        "fraction": options.val_fraction,
        "seed": options.seed,
        "queries": len(val_queries),
    }
    _log(log, f"tuning on {len(val_queries)} validation queries of {options.tune_split!r}")
    tuning.legs = _leg_runs(path.searcher, val_queries, options.depth, options.progress)
    _tune_fusion(tuning, options)
    if path.reranker is not None:
        _tune_rerank(tuning, options, data, val_queries, path.reranker, top_n)
    return tuning


def _tune_fusion(tuning: _Tuning, options: EvalOptions) -> None:
    """Weights and normalisation of each linear fusion (pairs and all three legs)."""
    fusion: dict[str, Any] = {}
    for size in (2, 3):
        for group in combinations(LEGS, size):
            base = EvalConfig("+".join(group), group, fusion="linear", depth=options.depth)
            found = tune_fusion(
                tuning.legs,
                tuning.qrels,
                base,
                ignore_identical_ids=options.ignore_identical_ids,
            )
            tuning.weights[group] = dict(found.config.weights)
            tuning.norms[group] = found.config.normalization
            fusion["+".join(group)] = {
                "weights": tuning.weights[group],
                "normalization": tuning.norms[group],
                "val_ndcg@10": round(found.score, 4),
            }
    tuning.info["linear_fusion"] = fusion


def _tune_rerank(
    tuning: _Tuning,
    options: EvalOptions,
    data: BeirData,
    val_queries: Mapping[str, str],
    reranker: Any,
    top_n: int,
) -> None:
    """The interpolation weight: the best linear fusion's validation top-N reranked at each
    weight of :data:`ALPHAS` (each pair is scored once)."""
    best = EvalConfig(
        "best",
        LEGS,
        fusion="linear",
        weights=tuning.weights[LEGS],
        normalization=tuning.norms[LEGS],  # type: ignore[arg-type]
        depth=options.depth,
    )
    fused = fuse_offline(tuning.legs, best)
    texts = dict(zip(data.corpus.ids, data.corpus.texts, strict=True))
    cache: dict[tuple[str, str], float] = {}
    costs: list[float] = []  # ms to score one query's top-N (its first, uncached pass)

    def score_for(qid: str) -> Callable[[str, list[str]], list[float]]:
        def score(query: str, docs: list[str]) -> list[float]:
            todo = [d for d in docs if (qid, d) not in cache]
            if todo:
                started = time.perf_counter()
                for d, s in zip(todo, reranker.score(query, todo), strict=True):
                    cache[(qid, d)] = s
                costs.append((time.perf_counter() - started) * 1000)
            return [cache[(qid, d)] for d in docs]

        return score

    for alpha in ALPHAS:
        ranking: Ranking = {}
        for qid in sorted(tuning.qrels):
            ranking.update(
                rerank_ranking(
                    {qid: fused.get(qid, [])},
                    val_queries,
                    texts,
                    score_for(qid),
                    top_n=top_n,
                    interpolation=alpha,
                )
            )
        tuning.reranked[alpha] = _final(ranking, options)
    tuning.interpolation, by_alpha = tune_interpolation(tuning.reranked, tuning.qrels)
    fused_val = evaluate(tuning.qrels, _final(fused, options), ("ndcg@10",))["ndcg@10"]
    tuning.info["rerank"] = {
        "top_n": top_n,
        "interpolation": tuning.interpolation,
        "val_ndcg@10_fused": round(fused_val, 4),
        "val_ndcg@10_by_interpolation": {k: round(v, 4) for k, v in by_alpha.items()},
        # Scoring each validation query's top-N (passages in memory, no engine fetch).
        "latency_ms": {k: round(v, 2) for k, v in latency_summary(costs).items()},
    }


def _final(ranking: Ranking, options: EvalOptions) -> Ranking:
    """The ranking as it is scored (without the queries' own ids under ``ignore_identical_ids``)."""
    return drop_identical_ids(ranking) if options.ignore_identical_ids else ranking


def _validation_scores(
    configs: Sequence[EvalConfig], tuning: _Tuning, options: EvalOptions
) -> dict[str, float]:
    """Validation nDCG@10 of every configuration that can be measured offline: single legs and
    fusions (from the stored leg runs) and the rerank rows (from the tuning rerankings). The
    leaf filter needs its own index and is not measured there."""
    if not tuning.tuned:
        return {}
    out: dict[str, float] = {}
    for config in configs:
        if config.tree:
            continue
        if config.rerank:
            ranking = tuning.reranked.get(config.interpolation)
            if ranking is None:
                continue
        else:
            ranking = _final(fuse_offline(tuning.legs, config), options)
        out[config.name] = round(evaluate(tuning.qrels, ranking, ("ndcg@10",))["ndcg@10"], 4)
    return out


# ----- 4. the configurations -------------------------------------------------------------------


def _configurations(
    options: EvalOptions, path: _ReadPath, tuning: _Tuning, top_n: int, *, tree: bool
) -> tuple[list[EvalConfig], list[str]]:
    """The configurations to run (``--only`` applied) and notes on how they were made."""
    notes: list[str] = []
    interpolation = tuning.interpolation
    if path.reranker is not None and not tuning.tuned:
        # Untuned, "rerank alone" would be the only rerank row, and the worst mode of a small
        # reranker: add the interpolation its model card was validated with.
        interpolation = getattr(path.reranker, "interpolation", None)
        if interpolation is None:
            notes.append(
                "no interpolated rerank row: no tuning split, and the reranker's folder names "
                "no interpolation weight (es_neural.json)"
            )
        else:
            notes.append(
                f"interpolated rerank row: weight {interpolation:g} from the reranker's model "
                "card (no tuning split)"
            )
    configs = default_configs(
        linear_weights=tuning.weights,
        normalization=tuning.norms,
        tree=tree,
        rerank=path.reranker is not None,
        rerank_top_n=top_n,
        interpolation=interpolation,
    )
    configs = [c.with_(depth=options.depth) for c in configs]
    if options.only:
        present = {config_key(c.name) for c in configs}
        missing = [n for n in options.only if config_key(n) not in present]
        if missing:
            notes.append(f"asked for but not run (no such row this time): {missing}")
        wanted = [n for n in options.only if config_key(n) in present]
        if not wanted:
            raise InvalidInputError(f"none of the configurations asked for can run: {missing}")
        configs = select_configs(configs, wanted)
    return configs, notes


def _tree_searcher(
    options: EvalOptions, settings: Settings, path: _ReadPath, data: BeirData, tree_model: Any
) -> tuple[Any, dict[str, Any]]:
    """A tree-routed copy of the index (its own name) and the tuning entry describing it."""
    from es_neural.neural_index import NeuralIndex
    from es_neural.tree import TreeLeafAssigner, TreeRouter

    tree_name = f"{path.name}-tree"
    common = {
        "settings": settings,
        "engine": path.engine,
        "dense": path.cached_dense,
        "sparse": path.cached_sparse,
    }
    writer = NeuralIndex(tree_name, leaves=TreeLeafAssigner(tree_model), **common)
    writer.ingest(data.corpus_path, options=path.ingest_options)
    searcher = NeuralIndex(
        tree_name, reranker=path.reranker, router=TreeRouter(tree_model), **common
    )
    info = {
        "path": str(options.tree),
        "version": tree_model.version,
        "threshold": options.tree_options.threshold,
        "min_leaves": options.tree_options.min_leaves,
        "max_leaves": options.tree_options.max_leaves,
        "apply_to": list(options.tree_options.apply_to),
    }
    return searcher, info


# ----- 5. the runs -----------------------------------------------------------------------------


def _new_report(
    options: EvalOptions,
    settings: Settings,
    path: _ReadPath,
    loaded: _Loaded,
    tuning: _Tuning,
    encode_cost: dict[str, float],
) -> EvalReport:
    report = EvalReport(
        dataset=options.data_dir.resolve().name,
        split=options.split,
        engine=path.engine.value,
        index=path.name,
        queries=len(loaded.queries),
        tuning=tuning.info,
        metrics=DEFAULT_METRICS,
    )
    if path.reranker is not None:
        report.notes.append(f"reranker: {path.reranker.name} ({path.reranker.model_name_or_path})")
    if settings.dense.query_model is not None:
        report.notes.append(
            f"dense queries: query-tuned model {settings.dense.query_model} (documents: "
            f"{path.cached_dense.fingerprint.name})"
        )
    report.query_encoding_ms = encode_cost
    report.notes.append(
        "latencies: query embeddings come from the embedding cache; encoding a query costs "
        f"about {encode_cost['dense_ms']:.1f} ms (dense) and {encode_cost['sparse_ms']:.1f} ms "
        "(SPLADE) more on this machine (median of single-query calls)"
    )
    report.queries_truncated = _truncated_queries(path, loaded.queries)
    if any(report.queries_truncated.values()):
        counts = ", ".join(f"{n} ({model})" for model, n in report.queries_truncated.items())
        report.notes.append(
            f"queries longer than the model's window, truncated as documents are: {counts} "
            f"of {len(loaded.queries)}"
        )
    if options.ignore_identical_ids:
        report.notes.append(
            "ignore_identical_ids: a hit whose id is the query's own is dropped before scoring"
        )
    return report


def _run_configs(
    report: EvalReport,
    configs: Sequence[EvalConfig],
    searchers: tuple[Any, Any | None],
    loaded: _Loaded,
    options: EvalOptions,
    log: Log | None,
) -> None:
    """Run, score and time each configuration on the evaluated split; one row each."""
    searcher, tree_searcher = searchers
    queries = loaded.queries
    # Warm up (model kernels, engine caches) so the first configuration's latency is fair.
    first = sorted(queries)[:5]
    run_config(searcher, {q: queries[q] for q in first}, configs[-1], progress=False)
    for config in configs:
        target = tree_searcher if config.tree and tree_searcher is not None else searcher
        done = run_config(
            target, queries, config, tree=options.tree_options, progress=options.progress
        )
        ranking = _final(done.ranking, options)
        metrics = evaluate(loaded.qrels, ranking, DEFAULT_METRICS)
        row = ResultRow(
            name=config.name,
            config=config.describe(),
            metrics={k: round(v, 4) for k, v in metrics.items()},
            latency={k: round(v, 2) for k, v in latency_summary(done.latencies_ms).items()},
            queries=len(queries),
            rerank_skipped=done.rerank_skipped,
        )
        report.rows.append(row)
        if options.runs_dir is not None:
            name = run_file_name(config.name)
            write_trec_run(ranking, options.runs_dir / name, tag=name.removesuffix(".trec"))
        _log(
            log,
            f"{config.name}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in row.metrics.items())
            + f", p50 {row.latency['p50_ms']:.1f} ms",
        )
    if options.runs_dir is not None:
        report.notes.append(f"TREC run files, one per configuration: {options.runs_dir}")


# ----- 6. the recommendation -------------------------------------------------------------------


def _evidence(options: EvalOptions, tuning: _Tuning, path: _ReadPath, top_n: int) -> Evidence:
    """What validation measured, for :func:`es_neural.eval.recommend.recommend`: every
    configuration without rerank or leaf filter (whatever ``--only`` ran), and the rerank."""
    plain = default_configs(linear_weights=tuning.weights, normalization=tuning.norms)
    plain = [c.with_(depth=options.depth) for c in plain]
    scores = _validation_scores(plain, tuning, options)
    rerank = None
    info = tuning.info.get("rerank")
    if path.reranker is not None and info is not None and options.reranker is not None:
        model = options.reranker
        if model != "embedded" and Path(model).expanduser().is_dir():
            model = str(Path(model).expanduser().resolve())
        rerank = RerankEvidence(
            model=model,
            top_n=top_n,
            base=plain[-1].name,  # the linear fusion of the three legs (what _tune_rerank reorders)
            fused=info["val_ndcg@10_fused"],
            by_interpolation=info["val_ndcg@10_by_interpolation"],
            interpolation=tuning.interpolation,
            latency_ms=info.get("latency_ms", {}),
        )
    return Evidence(
        configs=[(c, scores[c.name]) for c in plain],
        rerank=rerank,
        validation=tuning.info.get("validation", {}),
        dataset=options.data_dir.resolve().name,
    )


def _margin_budget(options: EvalOptions, settings: Settings) -> tuple[float, float]:
    budget = options.recommend_budget_ms
    return options.recommend_margin, settings.rerank.budget_ms if budget is None else budget


def _choose(
    options: EvalOptions, settings: Settings, evidence: Evidence, report: EvalReport
) -> None:
    """Mark the row validation chooses by the recommendation's rules (:func:`decide`)."""
    margin, budget = _margin_budget(options, settings)
    decision = decide(evidence, margin=margin, budget_ms=budget)
    report.choose(decision.row, (decision.fusion_reason, decision.rerank_reason))


def _write_recommendation(
    options: EvalOptions,
    settings: Settings,
    path: _ReadPath,
    evidence: Evidence,
    report: EvalReport,
    log: Log | None,
) -> None:
    """Write the recommended configuration (a search profile) to ``options.recommend``."""
    assert options.recommend is not None
    provenance = Provenance(
        dense=path.dense.fingerprint,
        sparse=path.sparse.fingerprint if path.sparse is not None else None,
        reranker=reranker_fingerprint(path.reranker),
        index=path.name,
        concrete=path.searcher.searcher.info.concrete,
        engine=path.engine.value,
    )
    margin, budget = _margin_budget(options, settings)
    profile = recommend(evidence, provenance, margin=margin, budget_ms=budget)
    if settings.dense.query_model is not None:
        profile = profile.model_copy(
            update={
                "evidence": {**profile.evidence, "dense_query_model": settings.dense.query_model}
            }
        )
    written = profile.write(options.recommend)
    report.notes.append(f"recommended configuration (chosen on validation): {written}")
    _log(log, f"recommendation written to {written}: " + "; ".join(profile.reasons))


def run_eval(options: EvalOptions, settings: Settings, *, log: Log | None = None) -> EvalReport:
    """Run the evaluation described by ``options`` (see the module docstring)."""
    from es_neural.encoders.base import require_torch_stack
    from es_neural.eval.runner import require_ranx

    require_torch_stack("es-neural eval")
    require_ranx()
    import torch

    if options.recommend is not None and not options.tune_split:
        raise InvalidInputError("a recommendation is chosen on validation: it needs a tuning split")
    if settings.profile is not None:  # every configuration is measured as it is, not a profile's
        settings = settings.with_(profile=None)
    torch.manual_seed(options.seed)
    top_n = rerank_top_n(options, settings)
    _check_only(options)
    loaded = _load(options)
    path = _open_read_path(options, settings, loaded.data, log)
    encode_cost = _encode_cost(
        path.dense, path.sparse, [loaded.queries[q] for q in sorted(loaded.queries)][:50]
    )
    tuning = _tune(options, loaded.data, path, top_n, log) if options.tune_split else _Tuning()

    tree_model = None
    if options.tree is not None:
        from es_neural.tree import load_tree

        tree_model = load_tree(options.tree)
    configs, notes = _configurations(options, path, tuning, top_n, tree=tree_model is not None)
    tree_searcher = None
    if tree_model is not None and any(c.tree for c in configs):
        tree_searcher, tuning.info["tree"] = _tree_searcher(
            options, settings, path, loaded.data, tree_model
        )

    report = _new_report(options, settings, path, loaded, tuning, encode_cost)
    report.notes.extend(notes)
    report.validation = _validation_scores(configs, tuning, options)
    _warm(path.cached_dense, path.cached_sparse, loaded.queries)
    _run_configs(report, configs, (path.searcher, tree_searcher), loaded, options, log)
    if not tuning.tuned:
        report.choose()  # nothing to choose by: no row is bold
        return report
    evidence = _evidence(options, tuning, path, top_n)
    _choose(options, settings, evidence, report)
    if options.recommend is not None:
        _write_recommendation(options, settings, path, evidence, report, log)
    return report
