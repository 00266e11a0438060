"""The write path: source -> validate -> skip unchanged -> encode -> bulk write -> checkpoint.

Encoding of batch N+1 overlaps the bulk write of batch N: a single writer thread takes encoded
batches from a queue of one, so at most one batch waits while the engine writes another, in
order. Resilience, layer by layer:

* request-level transient failures (connection refused, 503, 429 on the whole request) are
  retried by the dialect's one retry layer, here with a deadline long enough to wait out an
  engine restart;
* per-item transient failures inside a 200 bulk response (429, ``es_rejected_execution``) are
  re-sent with backoff;
* permanent per-item failures, unreadable or invalid records and encoding failures go to the
  dead-letter JSONL with the reason, and the run goes on;
* after each batch is written the checkpoint moves past it (dead letters flushed first), so an
  interrupted run resumes without re-encoding finished batches; deterministic ids make any
  re-written batch an overwrite, never a duplicate.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from es_neural.dialects.base import BaseDialect, BulkAction, FieldNames, RetryPolicy
from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder, count_truncated
from es_neural.errors import EsNeuralError
from es_neural.indices import IndexInfo
from es_neural.ingest.prepare import Prepared, Rejected, prepare_record
from es_neural.ingest.sources import Record, Source
from es_neural.ingest.state import Checkpoint, CheckpointStore, DeadLetterWriter

__all__ = ["IngestOptions", "IngestReport", "Ingestor", "models_key"]


@dataclass(frozen=True, slots=True)
class IngestOptions:
    text_fields: tuple[str, ...] = ("title", "text")
    #: The field holding each document's id; ``None`` tries ``_id`` then ``id``, else hashes.
    id_field: str | None = None
    batch_size: int = 64
    max_batch_bytes: int = 8_000_000
    max_doc_bytes: int = 5_000_000
    #: Re-sends of per-item transient failures (429 / rejected execution) before dead-lettering.
    max_item_retries: int = 8
    #: How long request-level failures (engine down, restarting) are retried before giving up.
    retry_deadline_s: float = 300.0
    skip_unchanged: bool = True
    resume: bool = True
    refresh: bool = True
    progress: bool = True
    checkpoint_path: Path | None = None
    dead_letter_path: Path | None = None


@dataclass(frozen=True, slots=True)
class IngestReport:
    index: str
    source: str
    read: int
    indexed: int
    unchanged: int
    dead_lettered: int
    truncated: int
    retries: int
    resumed_from: int
    elapsed_s: float
    encode_s: float
    write_s: float
    dead_letter_path: str
    checkpoint_path: str
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        done = self.indexed + self.unchanged
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("index", self.index),
            ("source", self.source),
            ("resumed from record", str(self.resumed_from)),
            ("records read", str(self.read)),
            ("indexed", str(self.indexed)),
            ("unchanged (skipped)", str(self.unchanged)),
            ("dead-lettered", str(self.dead_lettered)),
            ("truncated to model window", str(self.truncated)),
            ("item retries", str(self.retries)),
            ("elapsed", f"{self.elapsed_s:.1f} s"),
            ("encoding time", f"{self.encode_s:.1f} s"),
            ("bulk write time", f"{self.write_s:.1f} s"),
            ("throughput", f"{self.docs_per_s:.1f} docs/s"),
            ("dead letters", self.dead_letter_path),
        ]


def models_key(
    dense: DenseEncoder, sparse: SparseEncoder | None, leaves: LeafAssigner | None
) -> str:
    """What, besides its fields, decides a document's encoded form (part of its content hash)."""
    parts = [dense.cache_key, sparse.cache_key if sparse else "-"]
    parts.append(leaves.tree_version if leaves else "-")
    return "|".join(parts)


@dataclass
class _Batch:
    end_position: int
    actions: list[BulkAction]
    positions: dict[str, int]
    read: int
    unchanged: int
    truncated: int


@dataclass
class _Totals:
    read: int = 0
    indexed: int = 0
    unchanged: int = 0
    dead: int = 0
    truncated: int = 0
    retries: int = 0
    encode_s: float = 0.0
    write_s: float = 0.0


_DONE = object()


class Ingestor:
    """Ingests sources into one es-neural index with the given encoders."""

    def __init__(
        self,
        dialect: BaseDialect,
        *,
        dense: DenseEncoder,
        sparse: SparseEncoder | None = None,
        leaves: LeafAssigner | None = None,
        options: IngestOptions = IngestOptions(),
        state_dir: Path,
    ) -> None:
        self.dialect = dialect.with_retry(
            RetryPolicy(deadline_s=options.retry_deadline_s, max_wait_s=10.0)
        )
        self.dense = dense
        self.sparse = sparse
        self.leaves = leaves
        self.options = options
        self.state_dir = state_dir
        self._models_key = models_key(dense, sparse, leaves)

    # ----- paths -----

    def _paths(self, source: Source, index: str) -> tuple[Path, Path]:
        key = hashlib.sha256(f"{index}|{source.identity}|{self._models_key}".encode()).hexdigest()
        stem = f"{index}--{key[:16]}"
        checkpoint = self.options.checkpoint_path or self.state_dir / "checkpoints" / f"{stem}.json"
        dead = self.options.dead_letter_path or self.state_dir / "dead-letters" / f"{stem}.jsonl"
        return checkpoint, dead

    # ----- the run -----

    def run(self, source: Source, info: IndexInfo) -> IngestReport:
        """Ingest ``source`` into the index described by ``info`` (see :func:`ensure_index`)."""
        index = info.name
        fields = info.fields
        checkpoint_path, dead_path = self._paths(source, index)
        store = CheckpointStore(checkpoint_path)
        previous = store.load(source=source.identity, index=index) if self.options.resume else None
        if previous is None or previous.complete:
            checkpoint = Checkpoint(source=source.identity, index=index)
            if previous is not None and previous.complete:
                dead_path.unlink(missing_ok=True)
        else:
            checkpoint = previous
        resumed_from = checkpoint.position
        dead = DeadLetterWriter(dead_path)
        totals = _Totals()
        jobs: queue.Queue[Any] = queue.Queue(maxsize=1)
        failure: list[BaseException] = []
        state = {"checkpoint": checkpoint}
        bar = tqdm(
            total=source.total,
            initial=resumed_from,
            unit="doc",
            desc=f"ingest {index}",
            disable=not self.options.progress,
            dynamic_ncols=True,
        )

        def writer() -> None:
            try:
                while True:
                    job = jobs.get()
                    if job is _DONE:
                        return
                    self._write(job, info, dead, totals)
                    dead.flush()
                    state["checkpoint"] = state["checkpoint"].advanced(
                        job.end_position,
                        {"read": job.read, "unchanged": job.unchanged},
                    )
                    store.save(state["checkpoint"])
                    bar.update(job.read)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=writer, name="es-neural-bulk-writer", daemon=True)
        thread.start()
        started = time.perf_counter()
        interrupted = False
        try:
            for records in self._batches(source.records(skip=resumed_from)):
                if failure:
                    break
                job = self._encode_batch(records, fields, info, dead, totals)
                while True:
                    if failure:
                        break
                    try:
                        jobs.put(job, timeout=0.5)
                        break
                    except queue.Full:
                        continue
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if not failure:
                jobs.put(_DONE)  # the writer finishes the batches already encoded, then stops
            thread.join()
            bar.close()
        if failure:
            raise failure[0]
        if not interrupted:
            state["checkpoint"] = Checkpoint(
                source=checkpoint.source,
                index=index,
                position=state["checkpoint"].position,
                complete=True,
                counts=state["checkpoint"].counts,
                updated_at=time.time(),
            )
            store.save(state["checkpoint"])
        if self.options.refresh:
            # what was written is searchable, also after an interruption
            self.dialect.refresh(index)
        report = IngestReport(
            index=index,
            source=source.description,
            read=totals.read,
            indexed=totals.indexed,
            unchanged=totals.unchanged,
            dead_lettered=dead.count,
            truncated=totals.truncated,
            retries=totals.retries,
            resumed_from=resumed_from,
            elapsed_s=time.perf_counter() - started,
            encode_s=totals.encode_s,
            write_s=totals.write_s,
            dead_letter_path=str(dead_path),
            checkpoint_path=str(checkpoint_path),
            interrupted=interrupted,
        )
        if interrupted:
            raise IngestInterrupted(report)
        return report

    def _batches(self, records: Iterator[Record]) -> Iterator[list[Record]]:
        batch: list[Record] = []
        size = 0
        for record in records:
            batch.append(record)
            size += _approx_bytes(record)
            if len(batch) >= self.options.batch_size or size >= self.options.max_batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _encode_batch(
        self,
        records: Sequence[Record],
        fields: FieldNames,
        info: IndexInfo,
        dead: DeadLetterWriter,
        totals: _Totals,
    ) -> _Batch:
        prepared: dict[str, Prepared] = {}
        for record in records:
            outcome = prepare_record(
                record,
                id_field=self.options.id_field or _auto_id_field(record),
                text_fields=self.options.text_fields,
                reserved_fields=fields.neural(),
                models_key=self._models_key,
                max_doc_bytes=self.options.max_doc_bytes,
            )
            if isinstance(outcome, Rejected):
                dead.add(
                    position=outcome.position,
                    doc_id=outcome.doc_id,
                    stage=outcome.stage,
                    reason=outcome.reason,
                    record=outcome.record,
                )
            else:
                # A later record with the same id supersedes an earlier one in the same batch.
                prepared.pop(outcome.doc_id, None)
                prepared[outcome.doc_id] = outcome
        totals.read += len(records)
        docs = list(prepared.values())
        unchanged = 0
        if self.options.skip_unchanged and docs:
            stored = self.dialect.get_documents(
                info.name, [d.doc_id for d in docs], fields=[fields.content_hash]
            )
            keep = []
            for doc in docs:
                if stored.get(doc.doc_id, {}).get(fields.content_hash) == doc.content_hash:
                    unchanged += 1
                else:
                    keep.append(doc)
            docs = keep
        totals.unchanged += unchanged
        started = time.perf_counter()
        encoded, truncated = self._encode(docs, fields, dead)
        totals.encode_s += time.perf_counter() - started
        totals.truncated += truncated
        actions = [BulkAction(info.name, doc.doc_id, source) for doc, source in encoded]
        return _Batch(
            end_position=records[-1].position + 1,
            actions=actions,
            positions={doc.doc_id: doc.position for doc, _ in encoded},
            read=len(records),
            unchanged=unchanged,
            truncated=truncated,
        )

    def _encode(
        self, docs: list[Prepared], fields: FieldNames, dead: DeadLetterWriter
    ) -> tuple[list[tuple[Prepared, dict[str, Any]]], int]:
        if not docs:
            return [], 0
        try:
            return self._encode_all(docs, fields), self._truncated([d.text for d in docs])
        except EsNeuralError:
            raise
        except Exception:
            if len(docs) == 1:
                raise
        # Isolate the document(s) the encoder chokes on; the rest of the batch goes on.
        out: list[tuple[Prepared, dict[str, Any]]] = []
        for doc in docs:
            try:
                out.extend(self._encode_all([doc], fields))
            except Exception as exc:
                dead.add(
                    position=doc.position,
                    doc_id=doc.doc_id,
                    stage="encode",
                    reason=f"{type(exc).__name__}: {exc}",
                    record=dict(doc.source),
                )
        return out, self._truncated([d.text for d, _ in out])

    def _truncated(self, texts: list[str]) -> int:
        return count_truncated(self.dense, texts)

    def _encode_all(
        self, docs: list[Prepared], fields: FieldNames
    ) -> list[tuple[Prepared, dict[str, Any]]]:
        texts = [d.text for d in docs]
        vectors = np.asarray(self.dense.encode_documents(texts), dtype=np.float32)
        if vectors.shape != (len(docs), self.dense.dims) or not np.isfinite(vectors).all():
            raise ValueError(f"dense encoder returned {vectors.shape} / non-finite values")
        weights = self.sparse.encode_documents(texts) if self.sparse is not None else None
        assignments = self.leaves.assign(vectors) if self.leaves is not None else None
        out = []
        for i, doc in enumerate(docs):
            source = dict(doc.source)
            source[fields.dense] = vectors[i].tolist()
            if weights is not None and weights[i]:
                source[fields.sparse] = self.dialect.sparse_source_value(weights[i])
            if assignments is not None:
                a = assignments[i]
                source[fields.leaf_ids] = list(a.leaf_ids)
                source[fields.leaf_ancestors] = list(a.ancestors)
                source[fields.tree_version] = a.tree_version
            source[fields.content_hash] = doc.content_hash
            out.append((doc, source))
        return out

    def _write(self, job: _Batch, info: IndexInfo, dead: DeadLetterWriter, totals: _Totals) -> None:
        pending = list(job.actions)
        attempt = 0
        started = time.perf_counter()
        while pending:
            result = self.dialect.bulk(pending)
            totals.indexed += len(result.succeeded)
            for item in result.permanent_failures:
                source = next((a.source for a in pending if a.doc_id == item.doc_id), None)
                dead.add(
                    position=job.positions.get(item.doc_id, -1),
                    doc_id=item.doc_id,
                    stage="index",
                    reason=item.reason,
                    error_type=item.error_type,
                    record=_without_vectors(source, info.fields),
                )
            transient = {item.doc_id: item for item in result.transient_failures}
            if not transient:
                break
            attempt += 1
            if attempt > self.options.max_item_retries:
                for doc_id, item in transient.items():
                    source = next((a.source for a in pending if a.doc_id == doc_id), None)
                    dead.add(
                        position=job.positions.get(doc_id, -1),
                        doc_id=doc_id,
                        stage="index",
                        reason=f"gave up after {attempt - 1} retries: {item.reason}",
                        error_type=item.error_type,
                        record=_without_vectors(source, info.fields),
                    )
                break
            totals.retries += len(transient)
            time.sleep(min(0.2 * 2 ** (attempt - 1), 10.0))
            pending = [a for a in pending if a.doc_id in transient]
        totals.write_s += time.perf_counter() - started


class IngestInterrupted(EsNeuralError):
    """The run was interrupted (Ctrl-C); finished batches are checkpointed, resume to go on."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(
            f"interrupted after {report.read} records; run again to resume from the checkpoint"
        )
        self.report = report


def _approx_bytes(record: Record) -> int:
    if record.fields is None:
        return len(record.raw or "")
    return sum(len(v) if isinstance(v, str) else 16 for v in record.fields.values()) + 4096


def _auto_id_field(record: Record) -> str | None:
    if record.fields is None:
        return None
    for name in ("_id", "id"):
        if name in record.fields:
            return name
    return None


def _without_vectors(source: Any, fields: FieldNames) -> Any:
    if not isinstance(source, dict):
        return source
    return {k: v for k, v in source.items() if k not in (fields.dense, fields.sparse)}
