"""A distilled shallow query tower against the full dense model: quality and query latency.

    python bench/query_tower.py [--layers 0,2,5] [--epochs 3] [--save-compact DIR]
    python bench/query_tower.py --tower DIR          # measure a tower already made

1. **Distil** (unless ``--tower``): :func:`es_neural.train.distil.distil_query_tower` keeps
   ``--layers`` of the embedded all-MiniLM-L6-v2 and trains them to reproduce its query
   embeddings, on unlabelled text from the training mix **without SciFact**: the training-split
   queries of MS MARCO dev-small, WikiQA, TrecQA and StackExchange, plus the opening sentence of up
   to ``--leads`` documents per domain; validation on those domains' dev queries (cosine to the
   full model). The compact form (kept layers in float16) is what is measured and shipped.
2. **Quality**, dense leg alone, exact search over fixed document embeddings of the full model
   (the embedding cache), nDCG@10 on test queries: SciFact test over the whole corpus (a domain
   the tower never saw), the other four over their test queries' pools plus ``--extra-docs``
   sampled documents. Full model vs tower on the same documents, and the per-query cosine.
3. **Latency**, one SciFact claim at a time, warm, the sides alternating claim by claim: the dense
   query alone (full, tower) and dense + SPLADE query, one after the other (``sequential``, as
   searches did before) or side by side on two threads (``concurrent``,
   :func:`es_neural.encoders.legs.encode_query_legs`, what a search does now).

Ends with ``RESULT {json}``: ``query_encode_p50_ms`` / ``query_encode_p95_ms`` (tower, concurrent:
the configuration issue 14's goal is about), the same for every side, ``ndcg`` per domain,
``ndcg_delta`` (tower - full) and the distillation's facts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import SCIFACT_QUERIES, interleaved_latency_ms  # noqa: E402
from bench.encoders import ndcg_at_10  # noqa: E402
from bench.query_encode import quantiles  # noqa: E402
from es_neural.encoders.legs import encode_query_legs  # noqa: E402
from es_neural.settings import Settings  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DOMAINS = ("msmarco", "wikiqa", "trecqa", "stackexchange")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_domains(data: Path, seed: int) -> dict[str, Any]:
    from es_neural.train.mix import (
        load_msmarco,
        load_scifact,
        load_stackexchange,
        load_trecqa,
        load_wikiqa,
    )

    train = data / "train"
    return {
        "msmarco": load_msmarco(train, seed=seed),
        "wikiqa": load_wikiqa(train),
        "trecqa": load_trecqa(train),
        "stackexchange": load_stackexchange(train, seed=seed),
        "scifact": load_scifact(data / "scifact", seed=seed),
    }


def distil_texts(domains: Mapping[str, Any], leads: int, seed: int) -> tuple[list[str], list[str]]:
    from es_neural.train.distil import _lead

    rng = random.Random(seed)
    texts: list[str] = []
    val: list[str] = []
    for name in DOMAINS:
        domain = domains[name]
        texts += [q.text for q in domain.split("train")]
        val += [q.text for q in domain.split("dev")]
        docs = sorted(domain.docs.values())
        rng.shuffle(docs)
        texts += [_lead(t) for t in docs[:leads] if t.strip()]
    texts = list(dict.fromkeys(texts))
    rng.shuffle(texts)
    val_set = set(val)
    return [t for t in texts if t not in val_set], list(dict.fromkeys(val))


def quality(
    domains: Mapping[str, Any],
    full: Any,
    tower: Any,
    extra_docs: int,
    seed: int,
    max_test: int = 0,
) -> dict[str, Any]:
    from es_neural.encoders.cache import CachedDenseEncoder

    docs_encoder = CachedDenseEncoder(full, Settings().embedding_cache_dir)
    out: dict[str, Any] = {}
    for name in ("scifact", *DOMAINS):
        domain = domains[name]
        queries = domain.split("test")
        if max_test:
            queries = queries[:max_test]
        if name != "scifact" or max_test:
            domain = domain.subset([q.qid for q in queries], extra_docs=extra_docs, seed=seed)
            queries = domain.split("test")
        doc_ids = sorted(domain.docs)
        t0 = time.perf_counter()
        docs = np.asarray(
            docs_encoder.encode_documents([domain.docs[d] for d in doc_ids]), dtype=np.float32
        )
        say(
            f"{name}: {len(doc_ids)} documents ({time.perf_counter() - t0:.0f} s), "
            f"{len(queries)} test queries"
        )
        texts = [q.text for q in queries]
        side_vectors = {
            "full": np.asarray(full.encode_queries(texts), dtype=np.float32),
            "tower": np.asarray(tower.encode_queries(texts), dtype=np.float32),
        }
        row: dict[str, Any] = {"documents": len(doc_ids), "queries": len(queries)}
        for side, vectors in side_vectors.items():
            scores = vectors @ docs.T
            top = np.argsort(-scores, axis=1)[:, :10]
            row[side] = round(
                float(
                    np.mean(
                        [
                            ndcg_at_10([doc_ids[i] for i in top[k]], dict(q.qrels))
                            for k, q in enumerate(queries)
                        ]
                    )
                ),
                4,
            )
        a, b = side_vectors["full"], side_vectors["tower"]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        row["delta"] = round(row["tower"] - row["full"], 4)
        row["cosine_mean"] = round(float(cos.mean()), 4)
        row["cosine_min"] = round(float(cos.min()), 4)
        say(
            f"{name}: nDCG@10 full {row['full']:.4f} tower {row['tower']:.4f} "
            f"(cosine mean {row['cosine_mean']:.4f}, min {row['cosine_min']:.4f})"
        )
        out[name] = row
    return out


def latency(
    full: Any, tower: Any, sparse: Any, claims: Sequence[str], rounds: int
) -> dict[str, dict[str, float]]:
    sides: dict[str, Callable[[str], Any]] = {
        "dense_full": lambda t: full.encode_queries([t]),
        "dense_tower": lambda t: tower.encode_queries([t]),
        "sparse": lambda t: sparse.encode_queries([t]),
        "full_sequential": lambda t: encode_query_legs(t, full, sparse, concurrent=False),
        "full_concurrent": lambda t: encode_query_legs(t, full, sparse, concurrent=True),
        "tower_sequential": lambda t: encode_query_legs(t, tower, sparse, concurrent=False),
        "tower_concurrent": lambda t: encode_query_legs(t, tower, sparse, concurrent=True),
    }
    samples = interleaved_latency_ms(sides, claims, rounds=rounds)
    return {side: quantiles(v) for side, v in samples.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--tower", type=Path, help="measure this tower (compact or full folder)")
    parser.add_argument("--layers", default="0,2,5", help="teacher layers kept (or a count)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--leads", type=int, default=4000, help="document openings per domain")
    parser.add_argument("--limit", type=int, default=0, help="at most this many training texts")
    parser.add_argument("--save-compact", type=Path, help="write the compact tower here")
    parser.add_argument("--extra-docs", type=int, default=2000)
    parser.add_argument(
        "--max-test",
        type=int,
        default=0,
        help="at most this many test queries per domain, SciFact's pool then sampled too (0: all)",
    )
    parser.add_argument("--queries", type=int, default=200, help="SciFact claims timed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2, help="torch threads while training")
    args = parser.parse_args(argv)

    from es_neural.encoders.registry import (
        embedded_dense_path,
        get_dense_encoder,
        get_sparse_encoder,
    )
    from es_neural.train.distil import (
        DistilConfig,
        compact_tower,
        distil_query_tower,
        parse_layers,
    )

    settings = Settings()
    result: dict[str, Any] = {
        "cores": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    say("loading the training mix and SciFact")
    domains = load_domains(args.data, args.seed)
    full = get_dense_encoder(settings.dense)
    if full.query_runtime != "onnxruntime":  # type: ignore[attr-defined]
        raise SystemExit("the query path did not apply to the embedded dense model")
    tower_dir = args.tower
    work = Path(tempfile.mkdtemp(prefix="es-neural-tower-"))
    if tower_dir is None:
        texts, val = distil_texts(domains, args.leads, args.seed)
        if args.limit:
            texts = texts[: args.limit]
        config = DistilConfig(
            layers=parse_layers(args.layers),
            epochs=args.epochs,
            learning_rate=args.lr,
            max_length=args.max_length,
            seed=args.seed,
            threads=args.threads,
        )
        say(f"distilling layers {args.layers}: {len(texts)} texts, {len(val)} validation")
        distilled = distil_query_tower(
            embedded_dense_path(),
            texts,
            val,
            work / "full",
            document_model=full.fingerprint.to_meta(),
            config=config,
            log=say,
        )
        from es_neural.train.distil import write_tower_card

        write_tower_card(
            distilled,
            base="embedded (all-MiniLM-L6-v2)",
            data={
                "texts": "training-split queries of MS MARCO dev-small, WikiQA, TrecQA and "
                "StackExchange, plus the opening sentence of up to "
                f"{args.leads} documents per domain (no SciFact)",
                "train_texts": len(texts),
                "validation": "dev-split queries of the same four domains",
                "validation_texts": len(val),
                "terms": "MS MARCO: non-commercial research; WikiQA: Microsoft Research data "
                "licence; TrecQA: research use; StackExchange: CC BY-SA 3.0",
            },
        )
        result["distil"] = {
            "layers": list(distilled.layers),
            "epochs": [
                {
                    "epoch": e.epoch,
                    "loss": None if math.isnan(e.mean_loss) else round(e.mean_loss, 4),
                    "val_cosine_mean": round(e.val_cosine_mean, 4),
                    "val_cosine_min": round(e.val_cosine_min, 4),
                    "seconds": round(e.seconds),
                }
                for e in distilled.epochs
            ],
            "best_epoch": distilled.best_epoch,
            "train_texts": len(texts),
            "minutes": round(distilled.seconds / 60, 1),
        }
        tower_dir = compact_tower(work / "full", args.save_compact or work / "compact")
        say(f"compact tower: {tower_dir}")
    tower = get_dense_encoder(settings.dense.model_copy(update={"query_model": str(tower_dir)}))
    sparse = get_sparse_encoder(settings.sparse)
    result["tower"] = str(tower_dir)

    say("quality: the dense leg, full model vs tower")
    result["ndcg"] = quality(domains, full, tower, args.extra_docs, args.seed, args.max_test)
    result["ndcg_delta"] = {k: v["delta"] for k, v in result["ndcg"].items()}

    claims = [json.loads(line)["text"] for line in SCIFACT_QUERIES.open(encoding="utf-8")]
    say(f"latency: {args.queries} claims x {args.rounds} rounds")
    timing = latency(full, tower, sparse, claims[: args.queries], args.rounds)
    for side, q in timing.items():
        print(f"{side:>17}: p50 {q['p50_ms']:.2f} ms  p95 {q['p95_ms']:.2f} ms", flush=True)
    result["latency_ms"] = timing
    result["query_encode_p50_ms"] = timing["tower_concurrent"]["p50_ms"]
    result["query_encode_p95_ms"] = timing["tower_concurrent"]["p95_ms"]
    result["query_encode_p50_ms_full_sequential"] = timing["full_sequential"]["p50_ms"]
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print("RESULT " + json.dumps(result, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
