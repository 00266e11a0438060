"""Ingestion benchmark (issue 3): is I/O hidden behind encoding, and is memory flat?

    .venv/bin/python bench/ingest.py                       # the issue's full run (hours on 2 cores)
    .venv/bin/python bench/ingest.py --scifact-limit 512 --big-limit 1536   # what fits in ~40 min

Figures, measured side by side in one run on the same documents:

* **encoder-only docs/s**: the dense (and SPLADE) encoders alone over the pipeline's own batches
  (``IngestOptions.batch_size``) of the pipeline's own texts (:func:`prepare_record`);
* **end-to-end docs/s**: ``NeuralIndex.ingest`` of the same documents, read from a JSONL file,
  into a fresh index (read, validate, skip-unchanged lookup, encode, bulk write, checkpoint,
  refresh), timed by the wall clock around the call;
* **ratio** = end-to-end / encoder-only (goal >= 0.90: the bulk writes are hidden behind encoding).

The two modes alternate over ``--rounds`` chunks (A B B A ...) so that drift in the load of the
shared machine falls on both alike.

**Peak RSS** at 10k vs 100k documents: each size is ingested by a fresh child process
(``--rss-child N``) whose ``ru_maxrss`` is compared (goal: flat within 10%). Encoding 100k
documents with the real models takes hours on 2 CPU cores, so by default the children use
*stand-in* document encoders (``--rss-encoder standin``): the dense vector is the mean of
MiniLM's own input token embeddings, the SPLADE vector the log term frequencies of SPLADE's own
wordpieces, both of the real shapes, with the real models loaded in the process. Every other
stage is the real pipeline against the real engine. The 100k child's index
(``bench-gcide-100000``, kept) is the index of ``bench/search.py``; its ``_meta`` says how its
vectors were made. ``--rss-encoder real`` runs the children with the real encoders.

The large corpus is GCIDE (``apt-get install -y dict-gcide``), one document per entry, built
into ``~/.cache/es-neural/bench/``. Ends with one line ``RESULT {json}``; also writes
``bench/out/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import log

BENCH_INDEX_PREFIX = "bench-"
#: Marker stored in the ``_meta`` of benchmark indexes (how the vectors were made, complete).
META_KEY = "es_neural_bench"


# ----- stand-in document encoders -----


class StandInDense:
    """Mean of the real model's input token embeddings, L2-normalised: a 384-d unit vector of the
    real model's space family at the cost of a tokenizer call. Queries use the real model."""

    def __init__(self, real: Any) -> None:
        self.real = real
        model = real.model
        self._tokenizer = model.tokenizer
        embeddings = model[0].auto_model.get_input_embeddings().weight
        self._table = embeddings.detach().cpu().numpy().astype(np.float32)
        self._special = set(self._tokenizer.all_special_ids)

    dims = property(lambda self: self.real.dims)
    similarity = property(lambda self: self.real.similarity)
    max_seq_length = property(lambda self: self.real.max_seq_length)
    fingerprint = property(lambda self: self.real.fingerprint)
    cache_key = property(lambda self: self.real.cache_key + "+bench-standin")

    def load(self) -> None:
        self.real.load()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return list(self.real.token_lengths(texts))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.real.encode_queries(texts), dtype=np.float32)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        ids = self._tokenizer(
            list(texts),
            add_special_tokens=False,
            truncation=True,
            max_length=self.max_seq_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        out = np.zeros((len(ids), self._table.shape[1]), dtype=np.float32)
        for i, row in enumerate(ids):
            kept = [t for t in row if t not in self._special]
            if kept:
                v = self._table[kept].mean(axis=0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
            else:
                out[i, 0] = 1.0
        return out


class StandInSparse:
    """``1 + log(tf)`` of the real SPLADE tokenizer's wordpieces, cleaned by the project's
    :func:`clean_weights` (no expansion terms: real SPLADE documents carry more terms)."""

    def __init__(self, real: Any) -> None:
        from transformers import AutoTokenizer

        self.real = real
        self._tokenizer = AutoTokenizer.from_pretrained(real.model_name_or_path)
        self._special = set(self._tokenizer.all_special_tokens)

    max_seq_length = property(lambda self: self.real.max_seq_length)
    fingerprint = property(lambda self: self.real.fingerprint)
    cache_key = property(lambda self: self.real.cache_key + "+bench-standin")

    def load(self) -> None:
        self.real.load()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return list(self.real.token_lengths(texts))

    def encode_queries(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return list(self.real.encode_queries(texts))

    def encode_documents(self, texts: Sequence[str]) -> list[dict[str, float]]:
        from es_neural.encoders.tokens import clean_weights

        out = []
        for text in texts:
            counts: dict[str, int] = {}
            for token in self._tokenizer.tokenize(text)[: self.max_seq_length]:
                if token not in self._special:
                    counts[token] = counts.get(token, 0) + 1
            raw = {t: 1.0 + math.log(c) for t, c in counts.items()}
            out.append(clean_weights(raw, top_k=self.real.doc_top_k, min_weight=0.0))
        return out


# ----- indexes -----


def bench_index(name: str, *, engine: str, dense: Any, sparse: Any) -> Any:
    from es_neural import NeuralIndex, get_settings

    return NeuralIndex(
        name,
        settings=get_settings(),
        engine=engine,
        dense=dense,
        sparse=sparse,
        use_sparse=sparse is not None,
    )


def mark_index(idx: Any, marker: dict[str, Any]) -> None:
    """Record how the benchmark index was built in its ``_meta`` (read back by bench/search.py)."""
    from es_neural.indices import read_index_info

    info = read_index_info(idx.dialect, idx.name)
    idx.dialect.put_meta(info.concrete, {**info.meta, META_KEY: marker})


def real_encoders(dense_only: bool) -> tuple[Any, Any]:
    from es_neural import get_settings
    from es_neural.encoders.registry import Encoders

    encoders = Encoders.from_settings(get_settings(), sparse=not dense_only)
    return encoders.dense, encoders.sparse


# ----- ratio: encoder-only vs end-to-end -----


def _chunks(path: Path, limit: int, rounds: int, label: str) -> list[tuple[Path, list[dict]]]:
    docs = common.read_jsonl(path, limit)
    if len(docs) < limit:
        log(f"{label}: only {len(docs)} documents available (asked {limit})")
    rounds = max(1, min(rounds, len(docs)))
    size = math.ceil(len(docs) / rounds)
    folder = common.BENCH_CACHE / "ratio-chunks"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(rounds):
        part = docs[i * size : (i + 1) * size]
        if not part:
            continue
        chunk = folder / f"{label}-{len(docs)}-{i}.jsonl"
        with chunk.open("w", encoding="utf-8") as f:
            for doc in part:
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        out.append((chunk, part))
    return out


def _pipeline_texts(docs: list[dict], options: Any, fields: Any, models_key: str) -> list[str]:
    """The texts the pipeline would encode (same preparation, same order)."""
    from es_neural.ingest.prepare import Prepared, prepare_record
    from es_neural.ingest.sources import Record

    texts = []
    for position, doc in enumerate(docs):
        outcome = prepare_record(
            Record(position, doc),
            id_field="_id" if "_id" in doc else None,
            text_fields=options.text_fields,
            reserved_fields=fields.neural(),
            models_key=models_key,
            max_doc_bytes=options.max_doc_bytes,
        )
        if isinstance(outcome, Prepared):
            texts.append(outcome.text)
    return texts


def wait_healthy(idx: Any, timeout_s: float = 300.0) -> None:
    """Wait for the engine (shared engines get restarted by other jobs now and then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if idx.dialect.health(timeout_s=5.0).get("status") in ("green", "yellow"):
                return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"the engine is not healthy: {exc}") from exc
        time.sleep(2.0)


def _encoder_only(texts: list[str], batch: int, dense: Any, sparse: Any) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        part = texts[start : start + batch]
        dense.encode_documents(part)
        if sparse is not None:
            sparse.encode_documents(part)
    return time.perf_counter() - started


def measure_ratio(
    label: str,
    corpus: Path,
    *,
    limit: int,
    rounds: int,
    dense_only: bool,
    engine: str,
    skip_unchanged: bool,
) -> dict[str, Any]:
    from es_neural.ingest.pipeline import IngestOptions, models_key

    dense, sparse = real_encoders(dense_only)
    idx = bench_index(
        f"{BENCH_INDEX_PREFIX}ingest-{label}", engine=engine, dense=dense, sparse=sparse
    )
    wait_healthy(idx)
    idx.delete()
    info = idx.ensure()
    options = IngestOptions(progress=False, resume=False, skip_unchanged=skip_unchanged)
    key = models_key(dense, sparse, None)
    chunks = _chunks(corpus, limit, rounds, label)
    # Warm-up (not timed): one batch through both encoders.
    warm = _pipeline_texts(chunks[0][1][: options.batch_size], options, info.fields, key)
    _encoder_only(warm, options.batch_size, dense, sparse)
    enc_s = e2e_s = pipe_encode_s = pipe_write_s = 0.0
    docs = indexed = 0
    per_round = []
    for i, (path, part) in enumerate(chunks):
        texts = _pipeline_texts(part, options, info.fields, key)

        def run_e2e(path: Path = path) -> tuple[float, Any]:
            wait_healthy(idx)
            started = time.perf_counter()
            report = idx.ingest(path, options=options)
            return time.perf_counter() - started, report

        if i % 2 == 0:
            t_enc = _encoder_only(texts, options.batch_size, dense, sparse)
            t_e2e, report = run_e2e()
        else:
            t_e2e, report = run_e2e()
            t_enc = _encoder_only(texts, options.batch_size, dense, sparse)
        enc_s += t_enc
        e2e_s += t_e2e
        pipe_encode_s += report.encode_s
        pipe_write_s += report.write_s
        docs += len(texts)
        indexed += report.indexed
        per_round.append(
            {
                "docs": len(texts),
                "encoder_docs_per_s": len(texts) / t_enc,
                "e2e_docs_per_s": len(texts) / t_e2e,
                "ratio": t_enc / t_e2e,
            }
        )
        log(f"{label} round {i + 1}/{len(chunks)}: {per_round[-1]}")
    count = idx.count()
    idx.close()
    if indexed != docs or count != docs:
        log(f"{label}: WARNING indexed {indexed}, count {count}, expected {docs}")
    return {
        "docs": docs,
        "models": "dense" if dense_only else "dense+sparse",
        "rounds": len(chunks),
        "e2e_docs_per_s": docs / e2e_s,
        "encoder_docs_per_s": docs / enc_s,
        "ratio": enc_s / e2e_s,
        "e2e_s": e2e_s,
        "encoder_s": enc_s,
        "pipeline_encode_s": pipe_encode_s,
        "pipeline_write_s": pipe_write_s,
        "pipeline_not_encoding_s": e2e_s - pipe_encode_s,
        "indexed": indexed,
        "count": count,
        "per_round": per_round,
    }


# ----- peak RSS (one child process per size) -----


def rss_child(docs: int, *, encoder: str, engine: str, keep: bool, dense_only: bool) -> None:
    """Ingest the first ``docs`` GCIDE documents in this fresh process; print one JSON line."""
    from es_neural.ingest.pipeline import IngestOptions

    corpus = common.gcide_corpus(docs)
    dense, sparse = real_encoders(dense_only)
    if encoder == "standin":
        dense = StandInDense(dense)
        sparse = StandInSparse(sparse) if sparse is not None else None
    idx = bench_index(
        f"{BENCH_INDEX_PREFIX}gcide-{docs}", engine=engine, dense=dense, sparse=sparse
    )
    wait_healthy(idx)
    idx.delete()
    idx.ensure()
    before = common.current_rss_mb()
    options = IngestOptions(progress=False, resume=False)
    with common.RssSampler() as sampler:
        started = time.perf_counter()
        report = idx.ingest(corpus, options=options)
        elapsed = time.perf_counter() - started
    count = idx.count()
    if keep:
        mark_index(
            idx,
            {
                "corpus": "gcide",
                "docs": docs,
                "complete": count == docs,
                "document_encoders": encoder,
                "models": "dense" if sparse is None else "dense+sparse",
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    else:
        idx.delete()
    idx.close()
    print(
        json.dumps(
            {
                "docs": docs,
                "indexed": report.indexed,
                "count": count,
                "encoder": encoder,
                "engine": engine,
                "ru_maxrss_mb": common.peak_rss_mb(),
                "rss_before_ingest_mb": before,
                "sampled_peak_mb": sampler.peak_mb,
                "sampled_end_mb": sampler.samples[-1][1] if sampler.samples else None,
                "elapsed_s": elapsed,
                "docs_per_s": docs / elapsed,
                "encode_s": report.encode_s,
                "write_s": report.write_s,
                "index": idx.name,
                "kept": keep,
            }
        ),
        flush=True,
    )


def run_rss_child(docs: int, args: argparse.Namespace, *, keep: bool) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--rss-child",
        str(docs),
        "--rss-encoder",
        args.rss_encoder,
        "--engine",
        args.engine,
    ]
    if keep:
        cmd.append("--keep")
    if args.dense_only:
        cmd.append("--dense-only")
    log(f"rss child: {' '.join(cmd[1:])}")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"rss child for {docs} documents failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----- main -----


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact-limit", type=int, default=None, help="default: all 5,183")
    parser.add_argument("--big-docs", type=int, default=100_000, help="big corpus size (RSS)")
    parser.add_argument(
        "--big-limit",
        type=int,
        default=None,
        help="documents of the big corpus in the ratio measurement (default: --big-docs)",
    )
    parser.add_argument("--dense-only", action="store_true", help="no SPLADE anywhere")
    parser.add_argument("--rounds", type=int, default=2, help="alternations per ratio figure")
    parser.add_argument("--no-skip-unchanged", action="store_true")
    parser.add_argument("--rss-small", type=int, default=10_000)
    parser.add_argument("--rss-encoder", choices=["standin", "real"], default="standin")
    parser.add_argument("--skip", action="append", default=[], choices=["scifact", "big", "rss"])
    parser.add_argument("--engine", default="elasticsearch")
    parser.add_argument("--tag", default=None, help="output to bench/out/ingest-TAG.json")
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.rss_child is not None:
        rss_child(
            args.rss_child,
            encoder=args.rss_encoder,
            engine=args.engine,
            keep=args.keep,
            dense_only=args.dense_only,
        )
        return

    started = time.perf_counter()
    result: dict[str, Any] = {
        "engine": args.engine,
        "machine": common.cpu_note(),
        "skip_unchanged": not args.no_skip_unchanged,
    }
    rows = []
    if "scifact" not in args.skip:
        if not common.SCIFACT_CORPUS.is_file():
            raise SystemExit(f"SciFact not found at {common.SCIFACT_CORPUS}")
        limit = args.scifact_limit or 5183
        log(f"scifact: {limit} documents, encoder-only vs end-to-end")
        result["scifact"] = measure_ratio(
            "scifact",
            common.SCIFACT_CORPUS,
            limit=limit,
            rounds=args.rounds,
            dense_only=args.dense_only,
            engine=args.engine,
            skip_unchanged=not args.no_skip_unchanged,
        )
    if "big" not in args.skip:
        limit = args.big_limit or args.big_docs
        corpus = common.gcide_corpus(args.big_docs)
        log(f"big (gcide): {limit} of {args.big_docs} documents, encoder-only vs end-to-end")
        result["big"] = measure_ratio(
            "gcide",
            corpus,
            limit=limit,
            rounds=args.rounds,
            dense_only=args.dense_only,
            engine=args.engine,
            skip_unchanged=not args.no_skip_unchanged,
        )
        result["big"]["corpus"] = "gcide"
        result["big"]["corpus_docs"] = args.big_docs
    for name in ("scifact", "big"):
        r = result.get(name)
        if r:
            rows.append(
                [
                    name,
                    r["models"],
                    r["docs"],
                    r["encoder_docs_per_s"],
                    r["e2e_docs_per_s"],
                    r["ratio"],
                    "yes" if r["ratio"] >= 0.90 else "NO",
                    r["pipeline_encode_s"],
                    r["pipeline_not_encoding_s"],
                ]
            )
    if "rss" not in args.skip:
        common.gcide_corpus(args.rss_small)  # built here, so the children only read them
        common.gcide_corpus(args.big_docs)
        small = run_rss_child(args.rss_small, args, keep=False)
        big = run_rss_child(args.big_docs, args, keep=True)
        # The lifetime peak (ru_maxrss) is set by model loading, before the first document:
        # the figure is the peak sampled while ingesting; ru_maxrss is reported beside it.
        growth = big["sampled_peak_mb"] / small["sampled_peak_mb"] - 1.0
        result.update(
            {
                "rss_mb_10k": small["sampled_peak_mb"],
                "rss_mb_100k": big["sampled_peak_mb"],
                "rss_growth": growth,
                "rss_flat_within_10pct": abs(growth) <= 0.10,
                "rss_measure": "peak RSS sampled every 0.2 s during ingest (psutil), fresh child "
                "process per size",
                "ru_maxrss_mb_10k": small["ru_maxrss_mb"],
                "ru_maxrss_mb_100k": big["ru_maxrss_mb"],
                "ru_maxrss_growth": big["ru_maxrss_mb"] / small["ru_maxrss_mb"] - 1.0,
                "rss_before_ingest_mb": [
                    small["rss_before_ingest_mb"],
                    big["rss_before_ingest_mb"],
                ],
                "rss_docs": [small["docs"], big["docs"]],
                "rss_document_encoders": args.rss_encoder,
                "rss_children": [small, big],
                "write_path_docs_per_s_100k": big["docs_per_s"]
                if args.rss_encoder == "standin"
                else None,
                "search_index": big["index"],
            }
        )
    result["wall_s"] = time.perf_counter() - started
    common.write_json(f"ingest-{args.tag}.json" if args.tag else "ingest.json", result)

    print()
    print(f"Ingestion benchmark on {args.engine} ({common.cpu_note()})")
    if rows:
        print()
        print(
            common.table(
                [
                    "corpus",
                    "models",
                    "docs",
                    "encoder docs/s",
                    "e2e docs/s",
                    "ratio",
                    ">=0.90",
                    "pipeline encode s",
                    "pipeline other s",
                ],
                rows,
            )
        )
    if "rss" in result or "rss_mb_10k" in result:
        s, b = result["rss_children"]
        print()
        print(
            common.table(
                [
                    "docs",
                    "doc encoders",
                    "peak RSS in ingest MB",
                    "RSS at end MB",
                    "ru_maxrss MB (with loading)",
                    "docs/s",
                    "count",
                ],
                [
                    [
                        x["docs"],
                        x["encoder"],
                        x["sampled_peak_mb"],
                        x["sampled_end_mb"],
                        x["ru_maxrss_mb"],
                        x["docs_per_s"],
                        x["count"],
                    ]
                    for x in (s, b)
                ],
            )
        )
        verdict = "flat within 10%" if result["rss_flat_within_10pct"] else "NOT flat within 10%"
        growth = result["rss_growth"]
        print(f"peak RSS growth {s['docs']:,} -> {b['docs']:,}: {growth:+.1%} ({verdict})")
        if args.rss_encoder == "standin":
            print(
                "RSS children used stand-in document encoders (real models loaded, real "
                "pipeline and engine); see the module docstring"
            )
    summary = {k: v for k, v in result.items() if k not in ("rss_children",)}
    for name in ("scifact", "big"):
        if name in summary:
            summary[name] = {k: v for k, v in summary[name].items() if k != "per_round"}
    common.print_result(summary)


if __name__ == "__main__":
    main()
