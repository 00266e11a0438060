"""Rerank latency at top-N: the embedded reranker on torch against the ONNX Runtime path.

    python bench/rerank_latency.py [--queries 100] [--top-n 20] [--rounds 1]

One SciFact claim with N SciFact abstracts (title and text, seeded sample; most are longer than
the reranker's 192 tokens, so every pair is full length: the worst case), warm, scored by
:class:`~es_neural.search.rerank.CrossEncoderReranker`:

* ``torch``: ``runtime="torch"`` (sentence-transformers' ``CrossEncoder``, torch's threads);
* ``onnx_1`` / ``onnx_2``: ``runtime="onnx"`` with 1 and 2 ONNX Runtime threads (the default,
  ``threads=0``, is one per core: 2 here); on one thread each pair runs alone, on more the N
  pairs run as one padded batch.

The sides take turns on every claim (``common.interleaved_latency_ms``). Quality: the largest
absolute difference between torch's scores and either ONNX side's, over 20 claims' pairs.

Ends with ``RESULT {json}``: ``rerank_p50_ms`` / ``rerank_p95_ms`` per side, ``top_n``,
``max_abs_score_diff``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from es_neural.search.rerank import CrossEncoderReranker, embedded_reranker_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--top-n", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/scifact")
    args = parser.parse_args()

    docs = common.read_jsonl(args.data / "corpus.jsonl", 3000)
    claims = [q["text"] for q in common.read_jsonl(args.data / "queries.jsonl", args.queries)]
    rng = random.Random(13)
    pools = {c: [f"{d['title']} {d['text']}" for d in rng.sample(docs, args.top_n)] for c in claims}
    path = str(embedded_reranker_path())
    rerankers = {
        "torch": CrossEncoderReranker(path, runtime="torch").load(),
        "onnx_1": CrossEncoderReranker(path, runtime="onnx", threads=1).load(),
        "onnx_2": CrossEncoderReranker(path, runtime="onnx", threads=2).load(),
    }
    diff = max(
        abs(a - b)
        for claim in claims[:20]
        for side in ("onnx_1", "onnx_2")
        for a, b in zip(
            rerankers["torch"].score(claim, pools[claim]),
            rerankers[side].score(claim, pools[claim]),
            strict=True,
        )
    )
    load = os.getloadavg()[0]
    samples = common.interleaved_latency_ms(
        {side: (lambda c, r=r: r.score(c, pools[c])) for side, r in rerankers.items()},
        claims,
        rounds=args.rounds,
    )
    p50 = {side: common.percentile(v, 50) for side, v in samples.items()}
    p95 = {side: common.percentile(v, 95) for side, v in samples.items()}
    rows = [[side, f"{p50[side]:.1f}", f"{p95[side]:.1f}"] for side in samples]
    print(f"top {args.top_n}, {len(claims)} claims x {args.rounds} rounds, {common.cpu_note()}")
    print(f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(common.table(["side", "p50 ms", "p95 ms"], rows))
    print(f"largest score difference, torch vs ONNX Runtime: {diff:.2e}")
    result = {
        "top_n": args.top_n,
        "queries": len(claims),
        "rerank_p50_ms": p50,
        "rerank_p95_ms": p95,
        "max_abs_score_diff": f"{diff:.2e}",  # a string: RESULT rounds floats to 2 digits
    }
    common.write_json("rerank_latency.json", result)
    common.print_result(result)


if __name__ == "__main__":
    main()
