"""Encoders at each precision against plain sentence-transformers, on this CPU (issue 14).

    python bench/encoders.py [--n 1024] [--ndcg-docs 0] [--precisions fp32,int8]

* Throughput: ``--n`` SciFact abstracts (``title + "\\n" + text``), timed in alternating rounds:
  plain ``SentenceTransformer.encode`` and ``SparseEncoder.encode`` with their defaults (the code
  a user would write) against es-neural's encoders at each precision. docs/s per side, and the
  achieved fraction of this CPU's fp32 FLOP ceiling (2 cores x 16 FMA/cycle x 2.25 GHz = 72
  GMAC/s) from the multiply-accumulates each model spends on the measured token counts.
* Quality against es-neural at fp32: per-document cosine (dense), top-64 term overlap and weight
  correlation (SPLADE); SciFact test nDCG@10 of the dense and the SPLADE leg at each precision,
  computed exactly in-process by brute force over the corpus (``--ndcg-docs 0``: all 5,183
  documents; a smaller number keeps every judged document plus a seeded sample of the others,
  and the JSON says so).
* Query encoding: one SciFact claim at a time, warm, dense + SPLADE query, p50/p95 ms, the
  two legs one after the other (``sequential``) and side by side on two threads
  (``concurrent``: what a search does, :mod:`es_neural.encoders.legs`), alternating claim by
  claim. Queries take the torch-free query path (fp32) whatever the document precision;
  ``bench/query_encode.py`` compares it with torch's, ``bench/query_tower.py`` a distilled
  query tower.

``gpu_docs_per_s`` is read from ``bench/out/encoders_gpu.json`` (written by
``bench/encoders_gpu.py`` on a GPU machine) when present, else null. Ends with ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import interleaved_latency_ms  # noqa: E402
from bench.encoders_gpu import (  # noqa: E402
    Run,
    dense_cosines,
    read_corpus,
    sparse_quality,
)

DATA = ROOT.parent / "shared" / "data" / "scifact"
#: This CPU's fp32 peak: 2 cores x 16 FMA per cycle x ~2.25 GHz (issue 14).
PEAK_MAC_PER_S = 2 * 16 * 2.25e9


def macs_per_token(config: Any, *, seq: float, vocab_projection: bool) -> float:
    """Multiply-accumulates per token of a BERT encoder (and an MLM vocabulary projection)."""
    hidden, inter = config.hidden_size, config.intermediate_size
    layers = config.num_hidden_layers
    per_layer = 4 * hidden * hidden + 2 * hidden * inter + 2 * seq * hidden
    total = layers * per_layer
    if vocab_projection:
        total += hidden * hidden + hidden * config.vocab_size  # transform + decoder
    return float(total)


def ndcg_at_10(ranking: Sequence[str], relevant: dict[str, int]) -> float:
    gains = [relevant.get(doc, 0) for doc in ranking[:10]]
    dcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def sparse_matrix(vectors: Sequence[dict[str, float]], vocab: dict[str, int]) -> Any:
    from scipy.sparse import csr_matrix

    rows, cols, vals = [], [], []
    for i, vector in enumerate(vectors):
        for token, weight in vector.items():
            rows.append(i)
            cols.append(vocab.setdefault(token, len(vocab)))
            vals.append(weight)
    return rows, cols, vals, csr_matrix


def sparse_scores(queries: Sequence[dict[str, float]], docs: Sequence[dict[str, float]]) -> Any:
    vocab: dict[str, int] = {}
    qr, qc, qv, csr = sparse_matrix(queries, vocab)
    dr, dc, dv, _ = sparse_matrix(docs, vocab)
    q = csr((qv, (qr, qc)), shape=(len(queries), len(vocab)))
    d = csr((dv, (dr, dc)), shape=(len(docs), len(vocab)))
    return (q @ d.T).toarray()


def mean_ndcg(scores: np.ndarray, doc_ids: Sequence[str], qids: Sequence[str], qrels: Any) -> float:
    values = []
    for row, qid in enumerate(qids):
        top = np.argsort(-scores[row], kind="stable")[:10]
        values.append(ndcg_at_10([doc_ids[i] for i in top], qrels[qid]))
    return float(np.mean(values))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--ndcg-docs", type=int, default=0, help="0: the whole corpus")
    parser.add_argument("--queries", type=int, default=50, help="query-latency samples")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--budget-s", type=float, default=7200.0)
    args = parser.parse_args(argv)
    run = Run(args.budget_s)
    result = run.result
    result["load_average_start"] = os.getloadavg()
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]

    import torch

    from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder
    from es_neural.settings import DenseModelSettings, SparseModelSettings

    result["torch_threads"] = torch.get_num_threads()
    records = read_corpus(args.data / "corpus.jsonl")
    text_of = {str(r["_id"]): f"{r.get('title') or ''}\n{r.get('text') or ''}" for r in records}
    docs = list(text_of.values())[: args.n]

    dense = {
        p: get_dense_encoder(DenseModelSettings(device="cpu", precision=p)) for p in precisions
    }
    sparse = {
        p: get_sparse_encoder(SparseModelSettings(device="cpu", precision=p)) for p in precisions
    }
    dense_path = getattr(dense[precisions[0]], "model_name_or_path", None)
    sparse_path = getattr(sparse[precisions[0]], "model_name_or_path", None)

    from sentence_transformers import SentenceTransformer, SparseEncoder

    st_dense = SentenceTransformer(str(dense_path), device="cpu")
    st_sparse = SparseEncoder(str(sparse_path), device="cpu")  # as it loads (fp16 checkpoint)
    result["st_sparse_dtype"] = str(next(st_sparse.parameters()).dtype)

    sides: dict[str, Callable[[Sequence[str]], Any]] = {
        "st_dense": lambda t: st_dense.encode(list(t), show_progress_bar=False),
        "st_sparse": lambda t: st_sparse.encode_document(list(t), show_progress_bar=False),
    }
    for p in precisions:
        sides[f"dense_{p}"] = dense[p].encode_documents
        sides[f"sparse_{p}"] = sparse[p].encode_documents
    for fn in sides.values():
        fn(docs[:4])
    times: dict[str, list[float]] = {name: [] for name in sides}
    outputs: dict[str, Any] = {}
    for round_index in range(args.rounds):
        for name, fn in sides.items():

            def once(fn: Callable[[Sequence[str]], Any] = fn) -> tuple[float, Any]:
                began = time.perf_counter()
                out = fn(docs)
                return time.perf_counter() - began, out

            measured = run.phase(f"{name}_round{round_index}", once)
            if measured is not None:
                times[name].append(measured[0])
                outputs.setdefault(name, measured[1])
    rates = {name: round(len(docs) / min(ts), 2) for name, ts in times.items() if ts}
    result["docs"] = len(docs)
    result["docs_per_s"] = rates
    result["seconds"] = {k: [round(t, 2) for t in v] for k, v in times.items()}

    # FLOP ceiling (fp32, as the issue defines it) from the measured token counts
    lengths_dense = np.minimum(dense[precisions[0]].token_lengths(docs), 256)
    lengths_sparse = np.minimum(sparse[precisions[0]].token_lengths(docs), 256)
    dense_cfg = st_dense[0].auto_model.config
    sparse_cfg = st_sparse[0].auto_model.config
    mac_dense = float(
        sum(macs_per_token(dense_cfg, seq=n, vocab_projection=False) * n for n in lengths_dense)
    ) / len(docs)
    mac_sparse = float(
        sum(macs_per_token(sparse_cfg, seq=n, vocab_projection=True) * n for n in lengths_sparse)
    ) / len(docs)
    ceiling = {"dense": PEAK_MAC_PER_S / mac_dense, "sparse": PEAK_MAC_PER_S / mac_sparse}
    result["mean_tokens"] = {
        "dense": float(lengths_dense.mean()),
        "sparse": float(lengths_sparse.mean()),
    }
    result["flop_ceiling_docs_per_s"] = {k: round(v, 1) for k, v in ceiling.items()}
    result["flop_ceiling_fraction"] = {
        name: round(rate / ceiling["dense" if "dense" in name else "sparse"], 3)
        for name, rate in rates.items()
    }

    def together(a: float | None, b: float | None) -> float | None:
        return round(1 / (1 / a + 1 / b), 2) if a and b else None

    baseline = together(rates.get("st_dense"), rates.get("st_sparse"))
    result["docs_per_s_together"] = {
        p: together(rates.get(f"dense_{p}"), rates.get(f"sparse_{p}")) for p in precisions
    }
    result["baseline_docs_per_s_together"] = baseline
    result["speedup_vs_sentence_transformers"] = {
        p: round(v / baseline, 2) if v and baseline else None
        for p, v in result["docs_per_s_together"].items()
    }

    # quality against es-neural fp32
    quality: dict[str, Any] = {}
    for p in precisions:
        if f"dense_{p}" in outputs and "dense_fp32" in outputs:
            cos = dense_cosines(outputs[f"dense_{p}"], outputs["dense_fp32"])
            quality[f"dense_{p}"] = {
                "cosine_mean": float(cos.mean()),
                "cosine_min": float(cos.min()),
            }
        if f"sparse_{p}" in outputs and "sparse_fp32" in outputs:
            quality[f"sparse_{p}"] = sparse_quality(outputs[f"sparse_{p}"], outputs["sparse_fp32"])
    if "dense_fp32" in outputs and "st_dense" in outputs:
        cos = dense_cosines(np.asarray(outputs["st_dense"]), outputs["dense_fp32"])
        quality["st_dense_vs_dense_fp32_cosine_min"] = float(cos.min())
    result["quality"] = quality

    # query encoding latency, warm, one claim at a time, the query_sides alternating claim by claim:
    # both legs one after the other (as searches did before), side by side on two threads (what
    # a search does now). bench/query_tower.py measures a distilled query tower the same way.
    claims = [json.loads(line) for line in (args.data / "queries.jsonl").open(encoding="utf-8")]
    claim_texts = [c["text"] for c in claims][: args.queries]
    from es_neural.encoders.legs import encode_query_legs
    from es_neural.encoders.registry import get_dense_encoder
    from es_neural.settings import Settings

    settings = Settings()
    query_dense = get_dense_encoder(settings.dense)
    query_sparse = sparse["fp32"] if "fp32" in sparse else next(iter(sparse.values()))
    query_sides: dict[str, Callable[[str], Any]] = {
        "sequential": lambda t: encode_query_legs(t, query_dense, query_sparse, concurrent=False),
        "concurrent": lambda t: encode_query_legs(t, query_dense, query_sparse, concurrent=True),
    }
    samples = interleaved_latency_ms(query_sides, claim_texts, rounds=3)
    latency: dict[str, Any] = {}
    for side, values in samples.items():
        values.sort()
        latency[side] = {
            "p50_ms": round(statistics.median(values), 2),
            "p95_ms": round(values[max(0, math.ceil(0.95 * len(values)) - 1)], 2),
        }
        print(
            f"query encoding ({side}): p50 {latency[side]['p50_ms']} ms, "
            f"p95 {latency[side]['p95_ms']} ms",
            flush=True,
        )
    result["query_encode_ms"] = latency

    # exact nDCG@10 on SciFact test, brute force
    qrels: dict[str, dict[str, int]] = {}
    with (args.data / "qrels" / "test.tsv").open(encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    query_text = {str(c["_id"]): c["text"] for c in claims}
    qids = [q for q in qrels if q in query_text]
    doc_ids = list(text_of)
    if args.ndcg_docs and args.ndcg_docs < len(doc_ids):
        judged = {d for rel in qrels.values() for d in rel}
        others = [d for d in doc_ids if d not in judged]
        random.Random(14).shuffle(others)
        keep = judged | set(others[: max(0, args.ndcg_docs - len(judged))])
        doc_ids = [d for d in doc_ids if d in keep]
    result["ndcg_corpus"] = {
        "docs": len(doc_ids),
        "exact_full_corpus": len(doc_ids) == len(text_of),
    }
    corpus_texts = [text_of[d] for d in doc_ids]
    questions = [query_text[q] for q in qids]
    ndcg: dict[str, float] = {}
    for p in precisions:

        def dense_leg(p: str = p) -> float:
            d = dense[p].encode_documents(corpus_texts)
            q = dense[p].encode_queries(questions)
            return mean_ndcg(q @ d.T, doc_ids, qids, qrels)

        def sparse_leg(p: str = p) -> float:
            d = sparse[p].encode_documents(corpus_texts)
            q = sparse[p].encode_queries(questions)
            return mean_ndcg(sparse_scores(q, d), doc_ids, qids, qrels)

        for leg, fn in (("dense", dense_leg), ("sparse", sparse_leg)):
            value = run.phase(f"ndcg_{leg}_{p}", fn)
            if value is not None:
                ndcg[f"{leg}_{p}"] = round(value, 4)
        # fp32 queries against int8 documents: may an int8 index be searched at fp32?
    if "int8" in precisions and "fp32" in precisions:

        def mixed() -> float:
            d = dense["int8"].encode_documents(corpus_texts)
            q = dense["fp32"].encode_queries(questions)
            return mean_ndcg(q @ d.T, doc_ids, qids, qrels)

        value = run.phase("ndcg_dense_fp32_queries_on_int8_docs", mixed)
        if value is not None:
            ndcg["dense_fp32_queries_on_int8_docs"] = round(value, 4)
    result["ndcg_at_10"] = ndcg
    result["ndcg_delta"] = {
        leg: {
            p: round(ndcg[f"{leg}_{p}"] - ndcg[f"{leg}_fp32"], 4)
            for p in precisions
            if p != "fp32" and f"{leg}_{p}" in ndcg and f"{leg}_fp32" in ndcg
        }
        for leg in ("dense", "sparse")
    }
    result["query_encode_p50_ms"] = latency["concurrent"]["p50_ms"]
    result["query_encode_p95_ms"] = latency["concurrent"]["p95_ms"]
    gpu_file = args.out / "encoders_gpu.json"
    gpu = json.loads(gpu_file.read_text(encoding="utf-8")) if gpu_file.is_file() else None
    result["gpu_docs_per_s"] = gpu.get("gpu_docs_per_s") if gpu else None
    result["load_average_end"] = os.getloadavg()
    result["elapsed_s"] = round(run.elapsed(), 1)
    line = json.dumps(result, sort_keys=True, default=str)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoders.json").write_text(line + "\n", encoding="utf-8")
    print("RESULT " + line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
