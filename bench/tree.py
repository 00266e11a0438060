"""Benchmark of neural tree routing (issue 5): SciFact effectiveness and kNN latency at scale.

Run from the repository root with the engines up (``es-neural engines up``)::

    .venv/bin/python bench/tree.py                      # SciFact + 300k synthetic vectors
    .venv/bin/python bench/tree.py --scale-docs 1000000 # the 1M target (longer ingest)

Part 1, SciFact (``../shared/data/scifact``, MiniLM-L6 embeddings through the embedding cache):
a tree is built over the corpus embeddings, its centroids trained on 80% of the train queries,
documents get extra leaves from their own embedding and from a query log (the train queries,
with the project's hybrid BM25 + dense retrieval as the teacher), the router's temperature is
calibrated and the routing threshold chosen on the other 20% of the train queries. Measured on
the test queries: leaf recall (share of relevant documents whose leaves include a routed leaf),
the share of the corpus the filter leaves to search, and dense-only nDCG@10 through the engine
with and without the leaf filter.

Part 2, scale: synthetic clustered unit vectors (64 dims), an HNSW index on one engine (force
merged to one segment), and the p50 latency of kNN (k=10) with and without the leaf filter, each
at its cheapest setting whose recall@10 against exact top-10 (numpy) reaches 0.95.

Indices are kept and reused across runs (checked by count and tree version); the tree index
moves to a new tree through a new index version and an atomic alias swap (blue/green). The last
line printed is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from es_neural.dialects import BaseDialect, get_dialect
from es_neural.dialects.base import BulkAction, IndexSpec
from es_neural.encoders.base import DenseEncoder
from es_neural.errors import EsNeuralError
from es_neural.indices import (
    IndexInfo,
    ensure_index,
    neural_meta,
    next_version_name,
    read_index_info,
)
from es_neural.ingest.pipeline import IngestOptions, Ingestor
from es_neural.ingest.sources import jsonl_source
from es_neural.search.models import (
    BM25Leg,
    DenseLeg,
    RerankConfig,
    SearchRequest,
    SparseLeg,
    TreeConfig,
)
from es_neural.search.service import HybridSearcher
from es_neural.settings import EngineKind, Settings, get_settings
from es_neural.text import DEFAULT_TEXT_FIELDS
from es_neural.tree import (
    BuildConfig,
    TrainConfig,
    TreeLeafAssigner,
    TreeModel,
    TreeRouter,
    add_cooccurrence_leaves,
    add_routed_leaves,
    build_tree,
    calibrate_scale,
    leaf_recall,
    query_log_leaves,
    save_tree,
    train_tree,
)
from es_neural.tree.corpus import read_corpus, read_qrels, read_queries

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"
THRESHOLDS = (0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
TARGET_RECALL = 0.95


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def tree_version(prefix: str, model: TreeModel) -> str:
    """A content version: changes whenever structure, centroids, scale or leaves change."""
    digest = hashlib.sha256()
    for array in (model.parents, model.centroids, model.doc_leaf_ptr, model.doc_leaf_nodes):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(repr(model.scale).encode())
    digest.update("\0".join(model.doc_ids).encode())
    return f"{prefix}-{digest.hexdigest()[:10]}"


# ---------------------------------------------------------------------------------- indices


def _count(dialect: BaseDialect, name: str) -> int:
    try:
        return dialect.count(name)
    except EsNeuralError:
        return -1


def base_index(
    dialect: BaseDialect, dense: DenseEncoder, name: str, corpus_path: Path, n_docs: int
) -> None:
    """BM25 + dense index without a tree (the teacher's), created once and reused."""
    info = ensure_index(
        dialect,
        name,
        dense=dense.fingerprint,
        sparse=None,
        text_fields=DEFAULT_TEXT_FIELDS,
        similarity=dense.similarity,
    )
    if _count(dialect, name) == n_docs:
        log(f"reusing {name} ({n_docs} docs)")
        return
    log(f"ingesting {corpus_path.name} into {name}")
    _ingest(dialect, dense, None, info, corpus_path)


def _ingest(
    dialect: BaseDialect,
    dense: DenseEncoder,
    assigner: TreeLeafAssigner | None,
    info: IndexInfo,
    corpus_path: Path,
) -> None:
    state = ROOT / "bench" / "out" / "state"
    ingestor = Ingestor(
        dialect,
        dense=dense,
        leaves=assigner,
        options=IngestOptions(batch_size=256, progress=False, resume=False),
        state_dir=state,
    )
    report = ingestor.run(jsonl_source(corpus_path), info)
    log(f"ingested {report.indexed} docs in {report.elapsed_s:.0f} s ({report.dead_lettered} dead)")


def tree_index(
    dialect: BaseDialect,
    dense: DenseEncoder,
    alias: str,
    model: TreeModel,
    corpus_path: Path,
) -> str:
    """The alias ``alias`` serving ``model``'s leaves: reused when it already does, otherwise a
    new index version is filled and swapped in (blue/green), and the old version dropped."""
    current = dialect.resolve_alias(alias)
    if current:
        info = read_index_info(dialect, alias)
        if info.tree_version == model.version and _count(dialect, alias) == model.n_documents:
            log(f"reusing {alias} -> {info.concrete} (tree {model.version})")
            return info.concrete
    concrete = next_version_name(alias, current)
    spec = IndexSpec(
        dims=dense.dims,
        similarity=dense.similarity,
        text_fields=DEFAULT_TEXT_FIELDS,
        meta=neural_meta(
            dense=dense.fingerprint,
            sparse=None,
            text_fields=DEFAULT_TEXT_FIELDS,
            tree_version=model.version,
        ),
    )
    dialect.delete_index(concrete)
    dialect.create_index(concrete, dialect.index_body(spec))
    log(f"blue/green: filling {concrete} with tree {model.version}")
    _ingest(
        dialect, dense, TreeLeafAssigner(model), read_index_info(dialect, concrete), corpus_path
    )
    old = dialect.swap_alias(alias, concrete)
    for name in old:
        dialect.delete_index(name)
    log(f"alias {alias} -> {concrete} (dropped {old or 'nothing'})")
    return concrete


# ---------------------------------------------------------------------------------- metrics


def ndcg_at_10(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> float:
    from ranx import Qrels, Run, evaluate

    filled = {q: run.get(q) or {"__none__": 0.0} for q in qrels}
    return float(evaluate(Qrels(qrels), Run(filled), "ndcg@10"))


def dense_run(
    searcher: HybridSearcher, texts: dict[str, str], *, tree: TreeConfig | None
) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for qid, text in texts.items():
        request = SearchRequest(
            query=text,
            size=10,
            window=10,
            bm25=BM25Leg(enabled=False),
            sparse=SparseLeg(enabled=False),
            dense=DenseLeg(k=10, num_candidates=100),
            rerank=RerankConfig(enabled=False),
            tree=tree or TreeConfig(),
        )
        hits = searcher.search(request).hits
        run[qid] = {h.id: float(h.score) for h in hits}
    return run


def searched_share(model: TreeModel, leaf_ids: Sequence[Sequence[str]]) -> float:
    """Mean share of the corpus inside the routed leaves."""
    by_leaf = model.documents_by_leaf()
    shares = []
    for leaves in leaf_ids:
        rows = [by_leaf[model.node_index(leaf)] for leaf in leaves]
        shares.append(len(np.unique(np.concatenate(rows))) / model.n_documents if rows else 0.0)
    return float(np.mean(shares))


def wilson_lower(p: float, n: int, z: float = 1.2816) -> float:
    """One-sided lower confidence bound of a proportion (z=1.28: 90%)."""
    if n == 0:
        return 0.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half


@dataclass(frozen=True)
class RoutingRow:
    threshold: float
    min_leaves: int
    max_leaves: int
    val_recall: float
    test_recall: float
    leaves: float
    searched: float
    ndcg: float = math.nan


# ---------------------------------------------------------------------------------- SciFact


def scifact(dialect: BaseDialect, dense: DenseEncoder, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    corpus_path = DATA / "corpus.jsonl"
    corpus = read_corpus(corpus_path)
    queries = read_queries(DATA / "queries.jsonl")
    train_qrels = read_qrels(DATA / "qrels" / "train.tsv")
    test_qrels = read_qrels(DATA / "qrels" / "test.tsv")
    log(f"encoding {len(corpus)} documents (embedding cache)")
    doc_vectors = dense.encode_documents(list(corpus.texts))
    query_ids = sorted(set(train_qrels) | set(test_qrels))
    q_row = {q: i for i, q in enumerate(query_ids)}
    q_vectors = dense.encode_queries([queries[q] for q in query_ids])
    encode_s = time.perf_counter() - started

    def holdout(qid: str) -> bool:  # a fixed 20% of the train queries validates
        return int(hashlib.sha256(qid.encode()).hexdigest(), 16) % 5 == 0

    def pairs(
        qrels: dict[str, dict[str, int]], keep: Callable[[str], bool]
    ) -> list[tuple[int, str]]:
        return [
            (q_row[q], d)
            for q in sorted(qrels)
            if keep(q)
            for d, g in sorted(qrels[q].items())
            if g > 0
        ]

    fit_pairs = pairs(train_qrels, lambda q: not holdout(q))
    val_pairs = pairs(train_qrels, holdout)
    test_pairs = pairs(test_qrels, lambda q: True)

    # --- build and train
    t0 = time.perf_counter()
    built = build_tree(
        doc_vectors,
        version="sf",
        doc_ids=corpus.ids,
        config=BuildConfig(branching=8, max_leaf_size=128, seed=0),
    )
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained, report = train_tree(
        built,
        q_vectors,
        fit_pairs,
        doc_vectors=doc_vectors,
        config=TrainConfig(epochs=10, learning_rate=0.003, self_weight=0.3, seed=0),
    )
    train_s = time.perf_counter() - t0
    routed, routed_info = add_routed_leaves(trained, doc_vectors, threshold=0.7, max_leaves=3)

    # --- query-log leaves, teacher = hybrid BM25 + dense on a tree-less index
    base_name = "bench-tree-scifact-base"
    base_index(dialect, dense, base_name, corpus_path, len(corpus))
    teacher = HybridSearcher(dialect, base_name, dense=dense)
    log_ids = sorted(train_qrels)  # the query log: train queries, their text only
    retrieved: list[list[int]] = []
    t0 = time.perf_counter()
    for qid in log_ids:
        request = SearchRequest(
            query=queries[qid],
            size=10,
            window=10,
            sparse=SparseLeg(enabled=False),
            rerank=RerankConfig(enabled=False),
        )
        hits = teacher.search(request).hits
        retrieved.append([r for h in hits if (r := routed.doc_row(h.id)) is not None])
    teacher_s = time.perf_counter() - t0
    log_leaves = query_log_leaves(
        routed, q_vectors[[q_row[q] for q in log_ids]], leaves_per_query=2
    )
    optimized, co_info = add_cooccurrence_leaves(
        routed, log_leaves, retrieved, per_document=1, max_leaves=3
    )
    calibrated, calibration = calibrate_scale(optimized, q_vectors, val_pairs)
    model = calibrated.with_version(tree_version("sf", calibrated))
    save_tree(model, out / "scifact-tree")

    # --- leaf recall by stage (fixed 8 leaves per query) and by threshold (adaptive)
    stages = [
        ("built (k-means only)", built),
        ("trained", trained),
        ("+ routed leaves", routed),
        ("+ query-log leaves", optimized),
    ]
    stage_rows = []
    for name, m in stages:
        routes = TreeRouter(m).route_many(q_vectors, threshold=1.0, min_leaves=8, max_leaves=8)
        ids = [r.leaf_ids for r in routes]
        test_ids = [ids[q_row[q]] for q in sorted(test_qrels)]
        stage_rows.append(
            (
                name,
                leaf_recall(m, ids, test_pairs),
                leaf_recall(m, ids, fit_pairs),
                searched_share(m, test_ids),
            )
        )
    router = TreeRouter(model)
    rows: list[RoutingRow] = []
    for threshold in THRESHOLDS:
        routes = router.route_many(q_vectors, threshold=threshold, min_leaves=2, max_leaves=64)
        ids = [r.leaf_ids for r in routes]
        test_ids = [ids[q_row[q]] for q in sorted(test_qrels)]
        rows.append(
            RoutingRow(
                threshold=threshold,
                min_leaves=2,
                max_leaves=64,
                val_recall=leaf_recall(model, ids, val_pairs),
                test_recall=leaf_recall(model, ids, test_pairs),
                leaves=float(np.mean([len(x) for x in test_ids])),
                searched=searched_share(model, test_ids),
            )
        )
    # The threshold is chosen on validation: the smallest whose leaf recall is at least the
    # target with 90% confidence (Wilson lower bound; the validation set is small).
    n_val = len(val_pairs)
    chosen = next((r for r in rows if wilson_lower(r.val_recall, n_val) >= TARGET_RECALL), rows[-1])

    # --- nDCG@10, dense only, through the engine
    alias = "bench-tree-scifact"
    concrete = tree_index(dialect, dense, alias, model, corpus_path)
    searcher = HybridSearcher(dialect, alias, dense=dense, router=router)
    test_texts = {q: queries[q] for q in sorted(test_qrels)}
    t0 = time.perf_counter()
    unfiltered = ndcg_at_10(test_qrels, dense_run(searcher, test_texts, tree=None))
    scored = []
    for row in rows:
        config = TreeConfig(
            enabled=True,
            threshold=row.threshold,
            min_leaves=row.min_leaves,
            max_leaves=row.max_leaves,
        )
        value = ndcg_at_10(test_qrels, dense_run(searcher, test_texts, tree=config))
        scored.append(RoutingRow(**{**row.__dict__, "ndcg": value}))
    rows = scored
    chosen = next(r for r in rows if r.threshold == chosen.threshold)
    search_s = time.perf_counter() - t0
    exact = exact_dense_ndcg(doc_vectors, corpus.ids, q_vectors, q_row, test_qrels)

    sizes = model.leaf_sizes()
    png = leaf_size_png(sizes, out / "tree_leaf_sizes.png", title=f"SciFact tree {model.version}")

    table(
        "SciFact: test leaf recall by stage (8 leaves per query)",
        ("stage", "test leaf recall", "fit-pairs leaf recall", "corpus searched"),
        stage_rows,
    )
    table(
        f"SciFact: adaptive routing (calibrated scale x{calibration['factor']:.3f}, min 2, "
        "max 64 leaves); nDCG@10 dense-only via the engine",
        ("threshold", "val recall", "test recall", "leaves/query", "corpus searched", "nDCG@10"),
        [(r.threshold, r.val_recall, r.test_recall, r.leaves, r.searched, r.ndcg) for r in rows],
    )
    stats = model.stats()
    print(
        f"\n  unfiltered dense nDCG@10 (engine) {unfiltered:.4f}; exact numpy {exact:.4f}; "
        f"chosen threshold {chosen.threshold} (val recall {chosen.val_recall:.3f}, 90% lower "
        f"bound {wilson_lower(chosen.val_recall, n_val):.3f} on {n_val} pairs): "
        f"test leaf recall {chosen.test_recall:.3f}, nDCG@10 {chosen.ndcg:.4f} "
        f"(loss {unfiltered - chosen.ndcg:+.4f}), {100 * chosen.searched:.1f}% of the corpus "
        f"searched\n  tree: {stats['leaves']} leaves, depth {stats['max_depth']}, leaf size "
        f"p50 {stats['leaf_size']['p50']:.0f} / p90 {stats['leaf_size']['p90']:.0f} / max "
        f"{stats['leaf_size']['p100']:.0f}, leaves per doc {stats['leaves_per_document']}; "
        f"index {concrete}"
    )
    return {
        "docs": len(corpus),
        "tree_version": model.version,
        "leaves": stats["leaves"],
        "depth": stats["max_depth"],
        "leaf_size": stats["leaf_size"],
        "leaves_per_document": stats["leaves_per_document"],
        "leaf_size_png": str(png) if png else None,
        "train": {
            "pairs": report.pairs,
            "self_pairs": report.self_pairs,
            "loss_first": report.epoch_losses[0],
            "loss_last": report.epoch_losses[-1],
            "seconds": round(train_s, 1),
            "device": report.device,
        },
        "routed_leaves_added": routed_info["added"],
        "query_log": {"queries": len(log_ids), **co_info, "teacher_s": round(teacher_s, 1)},
        "calibration": calibration,
        "stages_k8": [
            {"stage": s, "test_leaf_recall": a, "fit_leaf_recall": b, "searched": c}
            for s, a, b, c in stage_rows
        ],
        "routing": [r.__dict__ for r in rows],
        "chosen_threshold": chosen.threshold,
        "leaf_recall": chosen.test_recall,
        "k_leafs_mean": chosen.leaves,
        "searched_share": chosen.searched,
        "ndcg10_unfiltered": unfiltered,
        "ndcg10_filtered": chosen.ndcg,
        "ndcg10_loss": unfiltered - chosen.ndcg,
        "ndcg10_exact_numpy": exact,
        "seconds": {
            "encode": round(encode_s, 1),
            "build": round(build_s, 1),
            "train": round(train_s, 1),
            "engine_eval": round(search_s, 1),
            "total": round(time.perf_counter() - started, 1),
        },
    }


def exact_dense_ndcg(
    docs: np.ndarray,
    doc_ids: Sequence[str],
    queries: np.ndarray,
    q_row: dict[str, int],
    qrels: dict[str, dict[str, int]],
) -> float:
    run = {}
    for qid in qrels:
        scores = docs @ queries[q_row[qid]]
        top = np.argsort(-scores, kind="stable")[:10]
        run[qid] = {doc_ids[i]: float(scores[i]) for i in top}
    return ndcg_at_10(qrels, run)


def leaf_size_png(sizes: np.ndarray, path: Path, *, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no PNG")
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(sizes, bins=40, color="#4472c4")
    ax.set_xlabel("documents per leaf")
    ax.set_ylabel("leaves")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- scale


def synthetic(n_docs: int, dims: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Unit vectors in two-level clusters (topics > sub-topics), and queries near documents."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(max(n_docs // 10_000, 8), dims))
    n_sub = max(n_docs // 300, 16)
    sub = topics[rng.integers(len(topics), size=n_sub)] + 0.6 * rng.normal(size=(n_sub, dims))
    docs = sub[rng.integers(n_sub, size=n_docs)] + 0.45 * rng.normal(size=(n_docs, dims))
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    picks = rng.integers(n_docs, size=n_queries)
    queries = docs[picks] + 0.3 * rng.normal(size=(n_queries, dims)) / math.sqrt(dims)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return docs.astype(np.float32), queries.astype(np.float32)


def exact_top(docs: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ docs.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[start : start + 256] = np.take_along_axis(part, order, axis=1)
    return out


def scale_index(
    dialect: BaseDialect, name: str, docs: np.ndarray, model: TreeModel
) -> tuple[str, float]:
    """One HNSW index of the synthetic vectors with their leaves, force-merged; reused."""
    if _count(dialect, name) == len(docs):
        info = read_index_info(dialect, name)
        if info.meta.get("tree", {}).get("version") == model.version:
            log(f"reusing {name}")
            return name, 0.0
    dialect.delete_index(name)
    from es_neural.encoders.fingerprint import ModelFingerprint

    fingerprint = ModelFingerprint(
        kind="dense", name="synthetic-clusters", revision="1", dims=docs.shape[1], normalize=True
    )
    spec = IndexSpec(
        dims=docs.shape[1],
        similarity="cosine",
        text_fields=(),
        meta=neural_meta(
            dense=fingerprint, sparse=None, text_fields=(), tree_version=model.version
        ),
    )
    dialect.create_index(name, dialect.index_body(spec))
    t0 = time.perf_counter()
    assigner = TreeLeafAssigner(model)
    chunk = 2000
    for start in range(0, len(docs), chunk):
        block = docs[start : start + chunk]
        assignments = assigner.assign(block)
        actions = [
            BulkAction(
                name,
                str(start + i),
                {
                    "embedding": block[i].tolist(),
                    "leaf_ids": list(a.leaf_ids),
                    "leaf_ancestors": list(a.ancestors),
                    "tree_version": a.tree_version,
                },
            )
            for i, a in enumerate(assignments)
        ]
        result = dialect.bulk(actions)
        if result.failed:
            raise RuntimeError(f"bulk failed: {result.failed[0]}")
        if (start // chunk) % 25 == 0:
            log(f"  bulk {start + len(block)}/{len(docs)}")
    dialect.refresh(name)
    log("force-merging to one segment")
    force_merge(dialect, name)
    dialect.refresh(name)
    return name, time.perf_counter() - t0


def force_merge(dialect: BaseDialect, name: str) -> None:
    """One segment, so latency reflects one HNSW graph (an admin call the dialect lacks)."""
    client = dialect.client
    if hasattr(client, "options"):  # elasticsearch-py 9

        def merge() -> Any:
            return client.options(request_timeout=3600).indices.forcemerge(
                index=name, max_num_segments=1
            )
    else:  # opensearch-py

        def merge() -> Any:
            return client.indices.forcemerge(index=name, max_num_segments=1, request_timeout=3600)

    dialect.call(merge, retry=False)


def time_queries(
    dialect: BaseDialect, index: str, bodies: Sequence[dict[str, Any]], *, passes: int = 2
) -> tuple[list[list[int]], float]:
    """Hits of each search and the p50 wall time of single requests (the best of ``passes``
    passes: the machine is shared, the minimum is the least disturbed)."""
    ids: list[list[int]] = []
    medians = []
    for n in range(passes):
        wall = []
        for body in bodies:
            t0 = time.perf_counter()
            response = dialect.search(index, body)
            wall.append((time.perf_counter() - t0) * 1000)
            if n == 0:
                ids.append([int(h["_id"]) for h in response["hits"]["hits"]])
        medians.append(float(np.median(wall)))
    return ids, min(medians)


def engine_ms(dialect: BaseDialect, index: str, bodies: Sequence[dict[str, Any]]) -> float:
    """Engine time per search, without the HTTP round trip: one multi-search that runs the
    searches one after another (``max_concurrent_searches=1``); its ``took`` over their number
    (the best of three runs)."""
    lines: list[dict[str, Any]] = []
    for body in bodies:
        lines.extend(({}, dict(body)))
    client = dialect.client
    if hasattr(client, "options"):  # elasticsearch-py 9

        def run() -> Any:
            return client.options(request_timeout=600).msearch(
                index=index, searches=lines, max_concurrent_searches=1
            )
    else:  # opensearch-py

        def run() -> Any:
            return client.msearch(
                body=lines, index=index, max_concurrent_searches=1, request_timeout=600
            )

    return min(float(dialect.call(run, retry=False)["took"]) for _ in range(3)) / len(bodies)


def recall_at_10(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


_PLAIN = ("num_candidates", "recall10", "p50_ms", "engine_ms")
_FILTERED = (
    "threshold",
    "min_leaves",
    "num_candidates",
    "leaves",
    "searched",
    "recall10",
    "p50_ms",
    "engine_ms",
    "route_ms",
)


def compare(
    plain_rows: Sequence[tuple[Any, ...]],
    tree_rows: Sequence[tuple[Any, ...]],
    target: float,
    overhead: float,
) -> dict[str, Any]:
    """Unfiltered kNN with the fewest candidates reaching ``target`` recall@10 vs the cheapest
    (engine + routing time) filtered setting reaching it; printed and returned."""
    plain = next((r for r in plain_rows if r[1] >= target), plain_rows[-1])
    passing = [r for r in tree_rows if r[5] >= target]
    best = (
        min(passing, key=lambda r: r[7] + r[8]) if passing else max(tree_rows, key=lambda r: r[5])
    )
    engine = plain[3] / best[7] if best[7] > 0 else math.inf
    with_routing = plain[3] / (best[7] + best[8])
    end_to_end = plain[2] / best[6]
    print(
        f"\n  at recall@10 >= {target}: unfiltered nc={plain[0]} (recall {plain[1]:.3f}) vs "
        f"filtered threshold {best[0]}, min {best[1]} leaves, nc={best[2]} (recall "
        f"{best[5]:.3f}, {100 * best[4]:.2f}% of the corpus searched):\n"
        f"    engine time per kNN {plain[3]:.3f} vs {best[7]:.3f} ms = {engine:.2f}x; "
        f"with the client-side routing ({best[8]:.3f} ms) {with_routing:.2f}x\n"
        f"    end to end (p50 of single requests; a no-op search takes {overhead:.2f} ms) "
        f"{plain[2]:.2f} vs {best[6]:.2f} ms = {end_to_end:.2f}x"
    )
    return {
        "target_recall10": target,
        "unfiltered": dict(zip(_PLAIN, plain, strict=True)),
        "filtered": dict(zip(_FILTERED, best, strict=True)),
        "filtered_reaches_target": bool(passing),
        "speedup_engine": engine,
        "speedup_engine_with_routing": with_routing,
        "speedup_p50_end_to_end": end_to_end,
    }


def scale(dialect: BaseDialect, n_docs: int, out: Path) -> dict[str, Any]:
    from es_neural.queries import knn_body

    started = time.perf_counter()
    dims, n_train, n_val, n_test = 64, 10_000, 2_000, 300
    docs, queries = synthetic(n_docs, dims, n_train + n_val + n_test)
    train_q, val_q, test_q = np.split(queries, [n_train, n_train + n_val])
    log(f"exact top-10 for {len(queries)} queries over {n_docs} docs")
    truth = exact_top(docs, queries)
    train_truth, val_truth, test_truth = np.split(truth, [n_train, n_train + n_val])
    t0 = time.perf_counter()
    built = build_tree(
        docs, version="sc", config=BuildConfig(branching=16, max_leaf_size=2000, seed=0)
    )
    build_s = time.perf_counter() - t0
    # Train on each training query's exact top-10 (the neighbours a kNN query must find).
    pairs = [(i, str(int(d))) for i, row in enumerate(train_truth) for d in row]
    t0 = time.perf_counter()
    trained, report = train_tree(
        built, train_q, pairs, config=TrainConfig(epochs=3, learning_rate=0.003, seed=0)
    )
    train_s = time.perf_counter() - t0
    val_pairs = [(i, str(int(d))) for i, row in enumerate(val_truth) for d in row]
    calibrated, calibration = calibrate_scale(trained, val_q, val_pairs)
    model = calibrated.with_version(tree_version("sc", calibrated))
    stats = model.stats()
    name, index_s = scale_index(dialect, f"bench-tree-scale-{n_docs}", docs, model)
    router = TreeRouter(model)
    vectors = [q.tolist() for q in test_q]

    # Warm the index (page cache, HNSW graph) before timing.
    warm = [knn_body(dialect, v, k=10, num_candidates=100) for v in vectors]
    time_queries(dialect, name, warm)
    # The round trip of a search that does nothing: client, HTTP and engine overhead.
    noop = [{"query": {"match_none": {}}, "size": 0} for _ in vectors]
    _, overhead = time_queries(dialect, name, noop)

    plain_rows = []
    for nc in (10, 15, 20, 30, 40, 60, 80, 100, 150, 200, 300, 500):
        bodies = [knn_body(dialect, v, k=10, num_candidates=nc) for v in vectors]
        found, wall = time_queries(dialect, name, bodies)
        plain_rows.append(
            (nc, recall_at_10(found, test_truth), wall, engine_ms(dialect, name, bodies))
        )
    tree_rows = []
    for threshold, min_leaves in ((0.9, 1), (0.95, 1), (0.95, 2), (0.99, 2), (0.99, 4)):
        t0 = time.perf_counter()
        routes = [
            router.route(q, threshold=threshold, min_leaves=min_leaves, max_leaves=64)
            for q in test_q
        ]
        route_ms = (time.perf_counter() - t0) * 1000 / len(test_q)
        share = searched_share(model, [r.leaf_ids for r in routes])
        for nc in (10, 20, 50, 100):
            bodies = [
                knn_body(
                    dialect,
                    v,
                    k=10,
                    num_candidates=nc,
                    filter={"terms": {r.filter_field: sorted(r.filter_ids or r.leaf_ids)}},
                )
                for v, r in zip(vectors, routes, strict=True)
            ]
            found, wall = time_queries(dialect, name, bodies)
            tree_rows.append(
                (
                    threshold,
                    min_leaves,
                    nc,
                    float(np.mean([len(r.leaf_ids) for r in routes])),
                    share,
                    recall_at_10(found, test_truth),
                    wall + route_ms,
                    engine_ms(dialect, name, bodies),
                    route_ms,
                )
            )
    table(
        f"Scale: {n_docs} synthetic vectors x {dims} dims, unfiltered HNSW kNN (k=10), "
        f"{n_test} queries",
        ("num_candidates", "recall@10", "p50 ms (client)", "engine ms/query"),
        plain_rows,
    )
    table(
        "Scale: leaf-filtered kNN (terms filter inside the kNN search; routing time included)",
        (
            "threshold",
            "min leaves",
            "num_candidates",
            "leaves/query",
            "corpus searched",
            "recall@10",
            "p50 ms (client+route)",
            "engine ms/query",
            "route ms",
        ),
        tree_rows,
    )
    comparisons = {
        target: compare(plain_rows, tree_rows, target, overhead) for target in (0.95, 0.99)
    }
    main = comparisons[TARGET_RECALL]
    return {
        "docs": n_docs,
        "dims": dims,
        "engine": dialect.engine.value,
        "index": name,
        "tree_version": model.version,
        "leaves": stats["leaves"],
        "leaf_size": stats["leaf_size"],
        "train_pairs": report.pairs,
        "calibration": calibration,
        "noop_p50_ms": overhead,
        "unfiltered": main["unfiltered"],
        "filtered": main["filtered"],
        "speedup_engine": main["speedup_engine"],
        "speedup_engine_with_routing": main["speedup_engine_with_routing"],
        "speedup_p50_end_to_end": main["speedup_p50_end_to_end"],
        "at_recall_0.99": comparisons[0.99],
        "seconds": {
            "build": round(build_s, 1),
            "train": round(train_s, 1),
            "index": round(index_s, 1),
            "total": round(time.perf_counter() - started, 1),
        },
    }


# ---------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", default="elasticsearch", choices=[e.value for e in EngineKind])
    parser.add_argument("--scale-docs", type=int, default=300_000)
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "tree")
    args = parser.parse_args()
    settings: Settings = get_settings()
    dialect = get_dialect(settings, args.engine)
    try:
        dialect.health(timeout_s=10)
    except EsNeuralError as exc:
        sys.exit(f"{args.engine} is not reachable ({exc}); start it with `es-neural engines up`")
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"engine": args.engine, "load_average_start": os.getloadavg()}
    if not args.skip_scifact:
        from es_neural.encoders.registry import Encoders

        dense = Encoders.from_settings(settings, sparse=False, cached=True).dense
        result["scifact"] = scifact(dialect, dense, args.out)
    if not args.skip_scale:
        result["scale"] = scale(dialect, args.scale_docs, args.out)
    sf, sc = result.get("scifact"), result.get("scale")
    result["load_average_end"] = os.getloadavg()
    result["goals"] = {
        "leaf_recall>=0.95": sf["leaf_recall"] >= 0.95 if sf else None,
        "ndcg_loss<=0.005": sf["ndcg10_loss"] <= 0.005 if sf else None,
        "knn_speedup>=3x": sc["speedup_engine_with_routing"] >= 3.0 if sc else None,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=1, default=float))
    dialect.close()
    print("RESULT " + json.dumps(result, separators=(",", ":"), default=float))


if __name__ == "__main__":
    main()
