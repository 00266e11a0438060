"""The searcher's own Python time as k grows: what a search spends outside the encoders, the
engine and the page fetch, at 10, 100 and 1,000 hits per leg.

Two parts, one run:

* **in-process, no engine**: three legs of k **stand-in** hits (random ids and scores, in the
  engine's order: best first) ranked (``RankedList.from_scores``) and fused into a window of k
  (``fuse(..., limit=k)``, then the window's ids and scores), and one multi-search response of
  three such legs parsed by the standard library's ``json.loads`` and by the clients' parser
  (``es_neural.dialects.jsonio``, orjson), side by side;
* **through an engine** (``--engine``, an index of SciFact, as ``es-neural eval`` builds it):
  real SciFact claims through :class:`HybridSearcher` (BM25 + dense + SPLADE, no rerank) with
  ``k`` hits per leg and a window of ``k``; per search, ``total - encode - engine round trip -
  fetch`` is the Python time, and ``engine round trip - engine took`` what the client spends
  around the engine (network, the client, parsing the response).

    python bench/search_python.py                      # Elasticsearch, index scifact
    python bench/search_python.py --engine opensearch --queries 60

Ends with ``RESULT {json}``: ``python_ms_by_k`` (p50 per k, through the engine),
``client_ms_by_k`` (round trip minus took), ``in_process_ms_by_k`` (lists + fusion) and
``json_parse_ms_by_k`` (``json`` and ``jsonio``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

from common import (
    SCIFACT_QUERIES,
    interleaved_latency_ms,
    log,
    print_result,
    read_jsonl,
    table,
)

KS = (10, 100, 1000)


def _median_ms(fn: Any, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def _stand_in_legs(k: int, seed: int) -> list[list[tuple[str, float]]]:
    """Three legs of k stand-in hits over a pool of 2.6k ids, best first."""
    rng = random.Random(seed)
    pool = [f"{rng.randrange(10**8):08d}" for _ in range(max(26, int(k * 2.6)))]
    pool = list(dict.fromkeys(pool))
    legs = []
    for _ in range(3):
        chosen = rng.sample(pool, min(k, len(pool)))
        legs.append(sorted(((d, rng.random() * 30) for d in chosen), key=lambda p: -p[1]))
    return legs


def in_process(rounds: int) -> dict[str, dict[str, float]]:
    from es_neural.dialects import jsonio
    from es_neural.search.fusion import RankedList, fuse

    names = ("bm25", "dense", "sparse")
    fusion: dict[str, float] = {}
    parse: dict[str, dict[str, float]] = {}
    for k in KS:
        legs = _stand_in_legs(k, seed=k)

        def lists_and_fusion(legs: list[list[tuple[str, float]]] = legs, k: int = k) -> Any:
            ranked = [RankedList.from_scores(n, hits) for n, hits in zip(names, legs, strict=True)]
            fused = fuse(ranked, method="linear", limit=k)
            head = getattr(fused, "head", None)  # before the lazy hits: every hit built
            return head(k) if head else [(h.doc_id, h.score) for h in fused.hits[:k]]

        fusion[str(k)] = _median_ms(lists_and_fusion, rounds)
        response = {
            "took": 20,
            "responses": [
                {
                    "took": 20,
                    "timed_out": False,
                    "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                    "hits": {
                        "total": {"value": 10_000, "relation": "gte"},
                        "max_score": hits[0][1],
                        "hits": [{"_index": "scifact-v1", "_id": d, "_score": s} for d, s in hits],
                    },
                    "status": 200,
                }
                for hits in legs
            ],
        }
        raw = json.dumps(response).encode()
        # the two parsers take turns on every repetition (bench/common.py)
        samples = interleaved_latency_ms(
            {"json": json.loads, "jsonio": jsonio.loads}, [raw] * rounds, rounds=1, warmup=2
        )
        parse[str(k)] = {side: statistics.median(v) for side, v in samples.items()}
        parse[str(k)]["bytes"] = float(len(raw))
    return {"fusion": fusion, **{f"parse_{k}": v for k, v in parse.items()}}


def through_engine(engine: str, index: str, queries: int) -> dict[str, dict[str, float]]:
    from es_neural import get_settings
    from es_neural.dialects import get_dialect
    from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder
    from es_neural.search.models import RerankConfig, SearchRequest
    from es_neural.search.service import HybridSearcher

    settings = get_settings()
    searcher = HybridSearcher(
        get_dialect(settings, engine),
        index,
        dense=get_dense_encoder(settings.dense),
        sparse=get_sparse_encoder(settings.sparse),
    )
    texts = [q["text"] for q in read_jsonl(SCIFACT_QUERIES)][: queries + 5]
    off = RerankConfig(enabled=False)

    def request(text: str, k: int) -> SearchRequest:
        return SearchRequest(
            query=text,
            rerank=off,
            window=k,
            bm25={"k": k},
            dense={"k": k, "num_candidates": max(k, 100)},
            sparse={"k": k},
        )

    for text in texts[:5]:  # warm-up: models, connections, the engine's caches
        for k in KS:
            searcher.search(request(text, k))
    python: dict[str, list[float]] = {str(k): [] for k in KS}
    client: dict[str, list[float]] = {str(k): [] for k in KS}
    for text in texts[5:]:
        for k in KS:  # the k values take turns on every claim
            t = searcher.search(request(text, k)).timings
            python[str(k)].append(t.total_ms - t.encode_ms - t.engine_ms - t.fetch_ms - t.rerank_ms)
            client[str(k)].append(t.engine_ms - t.engine_took_ms)
    return {
        "python": {k: statistics.median(v) for k, v in python.items()},
        "client": {k: statistics.median(v) for k, v in client.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--engine", default="elasticsearch", choices=["elasticsearch", "opensearch"]
    )
    parser.add_argument("--index", default="scifact", help="a SciFact index (es-neural eval)")
    parser.add_argument("--queries", type=int, default=40, help="SciFact claims per k")
    parser.add_argument("--rounds", type=int, default=40, help="in-process repetitions")
    parser.add_argument("--no-engine", action="store_true", help="the in-process part only")
    args = parser.parse_args()

    log("in-process: stand-in legs (random ids and scores), lists + fusion, JSON parsing")
    local = in_process(args.rounds)
    engine = None if args.no_engine else through_engine(args.engine, args.index, args.queries)
    rows = []
    for k in KS:
        key = str(k)
        parse = local[f"parse_{k}"]
        rows.append(
            [
                k,
                local["fusion"][key],
                parse["json"],
                parse["jsonio"],
                engine["python"][key] if engine else float("nan"),
                engine["client"][key] if engine else float("nan"),
            ]
        )
    print(
        table(
            [
                "k per leg",
                "lists + fusion ms (stand-in)",
                "parse json ms",
                "parse jsonio ms",
                f"searcher Python ms ({args.engine})",
                "round trip - took ms",
            ],
            rows,
        )
    )
    print_result(
        {
            "python_ms_by_k": engine["python"] if engine else None,
            "client_ms_by_k": engine["client"] if engine else None,
            "in_process_ms_by_k": local["fusion"],
            "json_parse_ms_by_k": {
                str(k): {
                    "json": local[f"parse_{k}"]["json"],
                    "jsonio": local[f"parse_{k}"]["jsonio"],
                }
                for k in KS
            },
            "engine": None if args.no_engine else args.engine,
            "queries": None if args.no_engine else args.queries,
        }
    )


if __name__ == "__main__":
    main()
