"""BM25 alone on SciFact test, per engine and text analyzer: nDCG@10 (ranx), no encoders.

Each run creates an index the way es-neural creates one (:func:`es_neural.indices.ensure_index`:
the template mapping, the analyzer probed on the engine, ``standard`` when it lacks the one asked
for), writes the 5,183 raw documents (title, text) with the dialect's bulk, and searches the 300
test queries with the library's BM25 leg (:func:`es_neural.queries.bm25_body`, best fields over
title and text, tie breaker 0.5 as BEIR). The dense field exists (a 4-dimension placeholder) but
stays empty.

    python bench/bm25.py                                   # both engines, standard and english
    python bench/bm25.py --engine elasticsearch --analyzer english \\
        --elasticsearch-url http://127.0.0.1:9650          # a node with the english module

Published anchor: flat BM25 with stemming (Pyserini, BEIR) 0.679; BEIR's multi-field 0.665.
The last line is ``RESULT {json}``: per run the engine, the analyzer asked for and the one the
index got (with the fallback reason), nDCG@10, recall@100 and the indexing/search seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from common import SCIFACT_CORPUS, SHARED_DATA, log, read_jsonl, rounded, table

from es_neural.dialects import BaseDialect, BulkAction, get_dialect
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.eval.runner import evaluate
from es_neural.indices import ensure_index
from es_neural.queries import BM25_TIE_BREAKER, bm25_body
from es_neural.settings import EngineKind, EngineSettings, get_settings
from es_neural.tree.corpus import read_qrels, read_queries

QRELS = SHARED_DATA / "scifact" / "qrels" / "test.tsv"
QUERIES = SHARED_DATA / "scifact" / "queries.jsonl"
PUBLISHED = {"flat BM25 + stemming (Pyserini)": 0.679, "BM25 multi-field (BEIR paper)": 0.665}
#: Placeholder dense fingerprint: the index needs one; no vector is written.
_PLACEHOLDER = ModelFingerprint(kind="dense", name="bm25-bench-none", revision="0", dims=4)
_BATCH = 500
_MSEARCH = 50


def _index_corpus(dialect: BaseDialect, name: str, docs: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(docs), _BATCH):
        actions = [
            BulkAction(name, str(d["_id"]), {"title": d.get("title", ""), "text": d["text"]})
            for d in docs[start : start + _BATCH]
        ]
        result = dialect.bulk(actions)
        if result.failed:
            raise SystemExit(f"bulk failed: {result.failed[:3]}")
    dialect.refresh(name)


def _search(
    dialect: BaseDialect, name: str, queries: dict[str, str], depth: int
) -> dict[str, list[tuple[str, float]]]:
    ranking: dict[str, list[tuple[str, float]]] = {}
    qids = sorted(queries)
    for start in range(0, len(qids), _MSEARCH):
        chunk = qids[start : start + _MSEARCH]
        bodies = [bm25_body(queries[q], size=depth) for q in chunk]
        for qid, answer in zip(chunk, dialect.msearch(name, bodies), strict=True):
            if isinstance(answer, Exception):
                raise SystemExit(f"query {qid} failed: {answer}")
            ranking[qid] = [(h["_id"], float(h["_score"])) for h in answer["hits"]["hits"]]
    return ranking


def run_one(
    dialect: BaseDialect,
    analyzer: str,
    docs: Sequence[dict[str, Any]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
) -> dict[str, Any]:
    name = f"bench-bm25-{analyzer}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    info = ensure_index(
        dialect,
        name,
        dense=_PLACEHOLDER,
        sparse=None,
        text_fields=("title", "text"),
        similarity="cosine",
        analyzer=analyzer,
    )
    try:
        _index_corpus(dialect, info.concrete, docs)
        indexed = time.perf_counter() - started
        started = time.perf_counter()
        ranking = _search(dialect, name, queries, depth=100)
        searched = time.perf_counter() - started
        metrics = evaluate(qrels, ranking, ("ndcg@10", "recall@100"))
    finally:
        for concrete in dialect.resolve_alias(name):
            dialect.delete_index(concrete)
    analysis = info.meta.get("analysis") or {}
    return {
        "engine": dialect.engine.value,
        "analyzer_requested": analyzer,
        "analyzer": analysis.get("text_analyzer"),
        "fallback_reason": analysis.get("fallback_reason"),
        "url": dialect.settings.urls[0],
        "ndcg@10": metrics["ndcg@10"],
        "recall@100": metrics["recall@100"],
        "index_s": indexed,
        "search_s": searched,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=["both", "elasticsearch", "opensearch"], default="both")
    parser.add_argument(
        "--analyzer",
        action="append",
        help="analyzer to ask for (repeatable); default: standard and english",
    )
    parser.add_argument("--elasticsearch-url", help="instead of settings.elasticsearch.url")
    parser.add_argument("--opensearch-url", help="instead of settings.opensearch.url")
    args = parser.parse_args(argv)
    analyzers = args.analyzer or ["standard", "english"]
    engines = (
        [EngineKind.ELASTICSEARCH, EngineKind.OPENSEARCH]
        if args.engine == "both"
        else [EngineKind(args.engine)]
    )
    overrides: dict[str, Any] = {}
    if args.elasticsearch_url:
        overrides["elasticsearch"] = EngineSettings(url=args.elasticsearch_url)
    if args.opensearch_url:
        overrides["opensearch"] = EngineSettings(url=args.opensearch_url)
    settings = get_settings(**overrides)

    docs = read_jsonl(SCIFACT_CORPUS)
    qrels = read_qrels(QRELS)
    queries = {q: t for q, t in read_queries(QUERIES).items() if q in qrels}
    log(f"SciFact: {len(docs)} documents, {len(queries)} test queries")
    runs = []
    for engine in engines:
        dialect = get_dialect(settings, engine)
        try:
            for analyzer in analyzers:
                log(f"{engine.value}: BM25 with analyzer {analyzer!r}")
                runs.append(run_one(dialect, analyzer, docs, queries, qrels))
        finally:
            dialect.close()
    rows = [
        [
            r["engine"],
            r["url"],
            r["analyzer_requested"],
            r["analyzer"] + (" (fallback)" if r["fallback_reason"] else ""),
            f"{r['ndcg@10']:.4f}",
            f"{r['recall@100']:.4f}",
            f"{r['index_s']:.1f}",
            f"{r['search_s']:.1f}",
        ]
        for r in runs
    ]
    headers = ["engine", "url", "asked", "got", "nDCG@10", "R@100", "index s", "search s"]
    print(table(headers, rows))
    for r in runs:
        if r["fallback_reason"]:
            print(f"{r['engine']} {r['analyzer_requested']}: {r['fallback_reason']}")
    print("published: " + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items()))
    result = {
        "dataset": "scifact/test",
        "queries": len(queries),
        "query": f"multi_match best_fields title,text tie_breaker={BM25_TIE_BREAKER}",
        "runs": runs,
        "published": PUBLISHED,
    }
    sys.stdout.flush()
    print("RESULT " + json.dumps(rounded(result, 4), separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
