"""Benchmark of `es-neural migrate` (issue 6): throughput of a whole migration, docs/s.

Run from the repository root with the engines up (``es-neural engines up``)::

    .venv/bin/python bench/migrate.py                  # Elasticsearch, workers 1 and 2
    .venv/bin/python bench/migrate.py --docs 5183 --real-docs 1000 --engine opensearch \
        --workers 1,2,4

A source index of the first N SciFact documents (title + abstract, ``../shared/data/scifact``) is
created once and reused (``--docs`` for the copy-only runs, ``--real-docs`` for the model runs).
Each measured run migrates it into a fresh target (plan, create, sliced copy with encoding, verify
with checksums of every document, atomic alias switch), then the target is deleted again. Two
settings:

* ``real``: the embedded offline models (MiniLM-L6 dense + SPLADE-tiny), as a user would run it;
* ``copy_only``: encoding excluded: a stand-in dense encoder returns a fixed unit vector per text
  (no model, no sparse), so the run measures reading, hashing, writing 384-dim vectors, verifying
  and switching: the ceiling the engines and the pipeline allow on this machine.

``docs_per_s`` is documents / copy phase; ``end_to_end_docs_per_s`` counts the whole run (plan,
verify and switch included); ``encoder_docs_per_s`` is the encoders' own rate inside the run and
``encoding_share`` the part of the copy phase spent encoding (close to 1: the pipeline adds little
to the models' cost). On a shared 2-core machine the real-model numbers move with the load. The
last line printed is ``RESULT {json}``.

Measured (Elasticsearch 9.5, 2 shared cores under a load average of ~10, defaults): copy-only
476 docs/s with 1 worker, 506 with 2 (2000 documents; writing the vectors dominates); real models
2.7 docs/s with 1 worker, 3.2 with 2 (300 documents; encoding is 99% of the copy phase, verify
and switch take under a second).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from es_neural.dialects import BaseDialect, BulkAction, get_dialect
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.migrate import MigrationOptions, Migrator
from es_neural.settings import EngineKind, get_settings

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"
MAPPING = {"properties": {"title": {"type": "text"}, "text": {"type": "text"}}}


class ConstantDense:
    """Encoding excluded: a unit vector per text from its hash (no model runs)."""

    def __init__(self, dims: int = 384) -> None:
        self._dims = dims
        self._fingerprint = ModelFingerprint(kind="dense", name="no-encoding", revision="1",
                                             dims=dims)  # fmt: skip

    dims = property(lambda self: self._dims)
    similarity = property(lambda self: "cosine")
    max_seq_length = property(lambda self: 512)
    fingerprint = property(lambda self: self._fingerprint)
    cache_key = property(lambda self: self._fingerprint.digest)

    def load(self) -> None:
        return None

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self._dims), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            v = np.random.default_rng(seed).standard_normal(self._dims).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out

    encode_queries = encode_documents

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def ensure_source(dialect: BaseDialect, name: str, docs: int) -> None:
    if dialect.index_exists(name) and dialect.count(name) == docs:
        return
    dialect.delete_index(name)
    dialect.create_index(name, {"settings": {"number_of_shards": 1}, "mappings": MAPPING})
    batch: list[BulkAction] = []
    with CORPUS.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= docs:
                break
            row = json.loads(line)
            batch.append(BulkAction(name, str(row["_id"]), {"title": row["title"],
                                                            "text": row["text"]}))  # fmt: skip
            if len(batch) == 500:
                dialect.bulk(batch)
                batch = []
    dialect.bulk(batch)
    dialect.refresh(name)


def clean(dialect: BaseDialect, alias: str) -> None:
    """Remove a previous run's target indices and alias (the source stays)."""
    for index in dialect.resolve_alias(alias):
        if index.startswith(f"{alias}-v"):
            dialect.delete_index(index)
        else:
            dialect.update_aliases([{"remove": {"index": index, "alias": alias}}])
    for n in range(1, 4):
        dialect.delete_index(f"{alias}-v{n}")


def one_run(
    dialect: BaseDialect, source: str, label: str, workers: int, dense: Any, sparse: Any
) -> dict[str, Any]:
    alias = f"bench-migrate-{label}-w{workers}"
    clean(dialect, alias)
    with tempfile.TemporaryDirectory() as state:
        migrator = Migrator(
            dialect,
            dense=dense,
            sparse=sparse,
            options=MigrationOptions(alias=alias, workers=workers, progress=False),
            state_dir=Path(state),
        )
        started = time.perf_counter()
        report = migrator.run(source)
        elapsed = time.perf_counter() - started
    clean(dialect, alias)
    if report.verify is None or not report.verify.ok:
        raise SystemExit(f"verification failed in {label}: {report.verify}")
    docs = report.plan.source.count
    encode_s = report.counts.get("encode_s", 0.0)
    copy_s = report.phases.get("copy", 0.0)
    return {
        "workers": workers,
        "docs": docs,
        "docs_per_s": round(report.copy_docs_per_s, 1),
        "end_to_end_docs_per_s": round(docs / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "encode_s": round(encode_s, 2),
        # the encoders' own rate inside the run, and the share of the copy phase spent encoding
        "encoder_docs_per_s": (
            round(report.counts.get("encoded", 0) / encode_s, 1) if encode_s > 0.5 else None
        ),
        "encoding_share": round(encode_s / copy_s, 3) if copy_s > 0 else None,
        "write_s": round(report.counts.get("write_s", 0.0), 2),
        "phases": {k: round(v, 2) for k, v in report.phases.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--docs", type=int, default=2000, help="documents, encoding excluded")
    ap.add_argument("--real-docs", type=int, default=300, help="documents, real models")
    ap.add_argument("--engine", choices=[e.value for e in EngineKind], default="elasticsearch")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--skip-real", action="store_true", help="copy-only runs only")
    args = ap.parse_args()
    settings = get_settings()
    dialect = get_dialect(settings, args.engine)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    source = f"bench-migrate-src-{args.docs}"
    ensure_source(dialect, source, args.docs)
    result: dict[str, Any] = {
        "bench": "migrate",
        "engine": args.engine,
        "docs": args.docs,
        "real_docs": args.real_docs,
        "corpus": "scifact (title + abstract)",
        "cpus": os.cpu_count(),
        "copy_only": [],
        "real": [],
    }
    for w in workers:
        run = one_run(dialect, source, "copy", w, ConstantDense(), None)
        print(f"copy-only, {w} worker(s): {run}", file=sys.stderr)
        result["copy_only"].append(run)
    if not args.skip_real:
        from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder

        dense = get_dense_encoder(settings.dense)
        sparse = get_sparse_encoder(settings.sparse)
        dense.load()
        sparse.load()
        result["models"] = {"dense": dense.fingerprint.name, "sparse": sparse.fingerprint.name}
        real_source = f"bench-migrate-src-{args.real_docs}"
        ensure_source(dialect, real_source, args.real_docs)
        for w in workers:
            run = one_run(dialect, real_source, "real", w, dense, sparse)
            print(f"real models, {w} worker(s): {run}", file=sys.stderr)
            result["real"].append(run)
    dialect.close()
    out = Path(__file__).resolve().parent / "out" / "migrate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print("RESULT " + json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
