"""Query encoding latency: the torch path against the torch-free query path, side by side.

    python bench/query_encode.py [--queries 300] [--rounds 3]

One SciFact claim at a time, warm, through es-neural's encoders of the embedded models: dense
(all-MiniLM-L6-v2), SPLADE query (SPLADE-tiny), and both (what a hybrid search encodes).

* ``before``: ``query_runtime=torch`` (sentence-transformers and transformers, as before the
  query path existed);
* ``after``: ``query_runtime=auto`` (ONNX Runtime over the same safetensors, ``tokenizers``).

Each is measured single-threaded (``torch.set_num_threads(1)``, ``query_threads=1``) and with
the default threads (torch's default, ``query_threads=0``: ONNX Runtime's default, one per
core). The sides alternate claim by claim, so both see the same machine load; the load average
is reported at the start and the end. Quality: per-claim dense cosine between the two sides and
SPLADE top-20 term agreement (with the largest weight difference).

Ends with ``RESULT {json}``: ``query_p50_ms`` / ``query_p95_ms`` per side, threading and leg
(``dense``, ``sparse``, ``both``), ``speedup_p50`` of ``both``, and the quality figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
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

from bench.common import SCIFACT_QUERIES  # noqa: E402
from es_neural.encoders.base import DenseEncoder, SparseEncoder  # noqa: E402
from es_neural.settings import Settings  # noqa: E402

SIDES = ("before", "after")
LEGS = ("dense", "sparse", "both")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def quantiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 3),
    }


def encoders(settings: Settings, runtime: str, threads: int) -> tuple[DenseEncoder, SparseEncoder]:
    from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder

    update = {"query_runtime": runtime, "query_threads": threads}
    dense = get_dense_encoder(settings.dense.model_copy(update=update))
    sparse = get_sparse_encoder(settings.sparse.model_copy(update=update))
    return dense, sparse


def measure(
    pairs: dict[str, tuple[DenseEncoder, SparseEncoder]], texts: Sequence[str], rounds: int
) -> dict[str, dict[str, dict[str, float]]]:
    """p50/p95 per side and leg; sides and legs alternate per claim."""
    samples: dict[str, dict[str, list[float]]] = {s: {leg: [] for leg in LEGS} for s in pairs}

    def legs(dense: DenseEncoder, sparse: SparseEncoder) -> dict[str, Callable[[str], Any]]:
        return {
            "dense": lambda t: dense.encode_queries([t]),
            "sparse": lambda t: sparse.encode_queries([t]),
            "both": lambda t: (dense.encode_queries([t]), sparse.encode_queries([t])),
        }

    calls = {side: legs(*pair) for side, pair in pairs.items()}
    for side in pairs:  # warm-up
        for text in texts[:10]:
            calls[side]["both"](text)
    for _ in range(rounds):
        for text in texts:
            for leg in LEGS:
                for side in pairs:
                    began = time.perf_counter()
                    calls[side][leg](text)
                    samples[side][leg].append((time.perf_counter() - began) * 1000)
    return {
        side: {leg: quantiles(v) for leg, v in by_leg.items()} for side, by_leg in samples.items()
    }


def quality(
    pairs: dict[str, tuple[DenseEncoder, SparseEncoder]], texts: Sequence[str]
) -> dict[str, Any]:
    before_dense, before_sparse = pairs["before"]
    after_dense, after_sparse = pairs["after"]
    a, b = before_dense.encode_queries(texts), after_dense.encode_queries(texts)
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    same_top20, worst = 0, 0.0
    for x, y in zip(
        before_sparse.encode_queries(texts), after_sparse.encode_queries(texts), strict=True
    ):
        same_top20 += list(x)[:20] == list(y)[:20]
        common = x.keys() & y.keys()
        worst = max([worst, *(abs(x[k] - y[k]) for k in common)])
    return {
        "dense_cosine_min": round(float(cosine.min()), 7),
        "sparse_top20_identical": f"{same_top20}/{len(texts)}",
        "sparse_weight_max_abs_diff": float(f"{worst:.3g}"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--queries", type=int, default=300, help="SciFact claims measured")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the claims")
    args = parser.parse_args(argv)

    import torch

    claims = [json.loads(line)["text"] for line in SCIFACT_QUERIES.open(encoding="utf-8")]
    texts = claims[: args.queries]
    settings = Settings()
    default_threads = torch.get_num_threads()
    result: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "claims": len(texts),
        "rounds": args.rounds,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "torch_default_threads": default_threads,
    }
    latency: dict[str, Any] = {}
    for label, torch_threads, query_threads in (
        ("1_thread", 1, 1),
        ("default", default_threads, 0),
    ):
        torch.set_num_threads(torch_threads)
        pairs = {
            "before": encoders(settings, "torch", query_threads),
            "after": encoders(settings, "auto", query_threads),
        }
        if pairs["after"][0].query_runtime != "onnxruntime":  # type: ignore[attr-defined]
            raise SystemExit("the query path did not apply to the embedded dense model")
        latency[label] = measure(pairs, texts, args.rounds)
        if label == "1_thread":
            result["quality"] = quality(pairs, texts)
        for side in SIDES:
            row = latency[label][side]
            print(
                f"{label:>8} {side:>6}: "
                + "  ".join(
                    f"{leg} p50 {row[leg]['p50_ms']:.2f} p95 {row[leg]['p95_ms']:.2f}"
                    for leg in LEGS
                ),
                flush=True,
            )
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["query_ms"] = latency
    for label in latency:
        before, after = latency[label]["before"]["both"], latency[label]["after"]["both"]
        result[f"query_p50_ms_{label}"] = after["p50_ms"]
        result[f"query_p95_ms_{label}"] = after["p95_ms"]
        result[f"query_p50_ms_before_{label}"] = before["p50_ms"]
        result[f"query_p95_ms_before_{label}"] = before["p95_ms"]
        result[f"speedup_p50_{label}"] = round(before["p50_ms"] / after["p50_ms"], 2)
    print("RESULT " + json.dumps(result, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
