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
* a document without text (:func:`es_neural.text.document_text` is empty) is written without
  vectors and counted (``without_text``), as migration does: nothing is lost.

Encoding, the unchanged-document skip, the per-item retries and the dead letters are the one
write stage's (:mod:`es_neural.ingest.writer`); this module reads, prepares, batches and
checkpoints.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from es_neural.dialects.base import BaseDialect, FieldNames, RetryPolicy
from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder
from es_neural.errors import EsNeuralError
from es_neural.indices import IndexInfo
from es_neural.ingest.prepare import Prepared, Rejected, prepare_record
from es_neural.ingest.sources import Record, Source
from es_neural.ingest.state import Checkpoint, CheckpointStore, DeadLetter, DeadLetterWriter
from es_neural.ingest.writer import EncodedBatch, WriteCounts, WriteStage
from es_neural.text import DEFAULT_TEXT_FIELDS

__all__ = ["IngestOptions", "IngestReport", "Ingestor", "models_key", "prepare_records"]


@dataclass(frozen=True, slots=True)
class IngestOptions:
    text_fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS
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
    #: Written without vectors: no text in the text fields.
    without_text: int = 0

    @classmethod
    def from_counts(
        cls,
        counts: WriteCounts,
        *,
        index: str,
        source: str,
        read: int,
        resumed_from: int,
        elapsed_s: float,
        dead_letter_path: str,
        checkpoint_path: str,
        interrupted: bool = False,
    ) -> IngestReport:
        """The report of a run from the write stage's counts (summed over batches or workers)."""
        return cls(
            index=index,
            source=source,
            read=read,
            indexed=counts.written,
            unchanged=counts.unchanged,
            dead_lettered=counts.dead_lettered,
            truncated=counts.truncated,
            retries=counts.retries,
            resumed_from=resumed_from,
            elapsed_s=elapsed_s,
            encode_s=counts.encode_s,
            write_s=counts.write_s,
            dead_letter_path=dead_letter_path,
            checkpoint_path=checkpoint_path,
            interrupted=interrupted,
            without_text=counts.without_text,
        )

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
            ("written without text (no vectors)", str(self.without_text)),
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


@dataclass(frozen=True, slots=True)
class _Job:
    """One batch of records, encoded, on its way to the writer thread."""

    end_position: int
    read: int
    batch: EncodedBatch


@dataclass
class _Run:
    """The durable state of one run: checkpoint, dead letters, and the counts so far."""

    store: CheckpointStore
    checkpoint: Checkpoint
    dead: DeadLetterWriter
    checkpoint_path: Path
    dead_path: Path
    resumed_from: int
    read: int = 0
    counts: WriteCounts = field(default_factory=WriteCounts)


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

    # ----- paths and state -----

    def _paths(self, source: Source, index: str) -> tuple[Path, Path]:
        key = hashlib.sha256(f"{index}|{source.identity}|{self._models_key}".encode()).hexdigest()
        stem = f"{index}--{key[:16]}"
        checkpoint = self.options.checkpoint_path or self.state_dir / "checkpoints" / f"{stem}.json"
        dead = self.options.dead_letter_path or self.state_dir / "dead-letters" / f"{stem}.jsonl"
        return checkpoint, dead

    def _open(self, source: Source, index: str) -> _Run:
        """The run's state: resumed from an unfinished checkpoint, else fresh (a finished run's
        dead letters are cleared)."""
        checkpoint_path, dead_path = self._paths(source, index)
        store = CheckpointStore(checkpoint_path)
        previous = store.load(source=source.identity, index=index) if self.options.resume else None
        if previous is None or previous.complete:
            checkpoint = Checkpoint(source=source.identity, index=index)
            if previous is not None and previous.complete:
                dead_path.unlink(missing_ok=True)
        else:
            checkpoint = previous
        return _Run(
            store=store,
            checkpoint=checkpoint,
            dead=DeadLetterWriter(dead_path),
            checkpoint_path=checkpoint_path,
            dead_path=dead_path,
            resumed_from=checkpoint.position,
        )

    def _stage(self, info: IndexInfo, dead: DeadLetterWriter) -> WriteStage:
        return WriteStage.create(
            self.dialect,
            info.name,
            info.fields,
            dense=self.dense,
            sparse=self.sparse,
            leaves=self.leaves,
            dead_letters=dead,
            max_item_retries=self.options.max_item_retries,
            skip_unchanged=self.options.skip_unchanged,
        )

    # ----- the run -----

    def run(self, source: Source, info: IndexInfo) -> IngestReport:
        """Ingest ``source`` into the index described by ``info`` (see :func:`ensure_index`)."""
        run = self._open(source, info.name)
        stage = self._stage(info, run.dead)
        started = time.perf_counter()
        bar = tqdm(
            total=source.total,
            initial=run.resumed_from,
            unit="doc",
            desc=f"ingest {info.name}",
            disable=not self.options.progress,
            dynamic_ncols=True,
        )
        try:
            interrupted = self._pump(source, info, run, stage, bar)
        finally:
            bar.close()
        if not interrupted:
            run.checkpoint = replace(run.checkpoint, complete=True, updated_at=time.time())
            run.store.save(run.checkpoint)
        if self.options.refresh:
            # what was written is searchable, also after an interruption
            self.dialect.refresh(info.name)
        report = self._report(source, info, run, time.perf_counter() - started, interrupted)
        if interrupted:
            raise IngestInterrupted(report)
        return report

    def _pump(
        self, source: Source, info: IndexInfo, run: _Run, stage: WriteStage, bar: Any
    ) -> bool:
        """Encode batches here while a writer thread writes the previous one and moves the
        checkpoint past it; ``True`` when interrupted (Ctrl-C) after the batches in flight."""
        jobs: queue.Queue[Any] = queue.Queue(maxsize=1)
        failure: list[BaseException] = []

        def writer() -> None:
            try:
                while (job := jobs.get()) is not _DONE:
                    self._write(job, stage, run)
                    bar.update(job.read)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=writer, name="es-neural-bulk-writer", daemon=True)
        thread.start()
        interrupted = False
        try:
            for records in self._batches(source.records(skip=run.resumed_from)):
                if failure:
                    break
                _hand_over(jobs, self._encode_batch(records, info.fields, stage), failure)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if not failure:
                jobs.put(_DONE)  # the writer finishes the batches already encoded, then stops
            thread.join()
        if failure:
            raise failure[0]
        return interrupted

    def _write(self, job: _Job, stage: WriteStage, run: _Run) -> None:
        """Write one batch (its dead letters flushed), then move the checkpoint past it."""
        result = stage.write(job.batch)
        run.read += job.read
        run.counts += result.counts
        run.checkpoint = run.checkpoint.advanced(
            job.end_position, {"read": job.read, "unchanged": result.counts.unchanged}
        )
        run.store.save(run.checkpoint)

    def _report(
        self, source: Source, info: IndexInfo, run: _Run, elapsed_s: float, interrupted: bool
    ) -> IngestReport:
        return IngestReport.from_counts(
            run.counts,
            index=info.name,
            source=source.description,
            read=run.read,
            resumed_from=run.resumed_from,
            elapsed_s=elapsed_s,
            dead_letter_path=str(run.dead_path),
            checkpoint_path=str(run.checkpoint_path),
            interrupted=interrupted,
        )

    # ----- one batch -----

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
        self, records: Sequence[Record], fields: FieldNames, stage: WriteStage
    ) -> _Job:
        """Prepare, skip unchanged and encode one batch of records."""
        prepared, rejected = prepare_records(records, self.options, fields, self._models_key)
        todo, unchanged = stage.drop_unchanged(prepared)
        batch = stage.encode(todo, rejected=rejected)
        return _Job(
            end_position=records[-1].position + 1,
            read=len(records),
            batch=replace(batch, counts=batch.counts + unchanged),
        )


def prepare_records(
    records: Sequence[Record], options: IngestOptions, fields: FieldNames, models_key: str
) -> tuple[list[Prepared], list[DeadLetter]]:
    """A batch of records as documents to write (a later record with the same id supersedes an
    earlier one) and the dead letters of those refused (shared with scale-out workers)."""
    prepared: dict[str, Prepared] = {}
    rejected: list[DeadLetter] = []
    for record in records:
        outcome = prepare_record(
            record,
            id_field=options.id_field or _auto_id_field(record),
            text_fields=options.text_fields,
            reserved_fields=fields.neural(),
            models_key=models_key,
            max_doc_bytes=options.max_doc_bytes,
        )
        if isinstance(outcome, Rejected):
            rejected.append(outcome.dead_letter())
        else:
            prepared.pop(outcome.doc_id, None)
            prepared[outcome.doc_id] = outcome
    return list(prepared.values()), rejected


class IngestInterrupted(EsNeuralError):
    """The run was interrupted (Ctrl-C); finished batches are checkpointed, resume to go on."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(
            f"interrupted after {report.read} records; run again to resume from the checkpoint"
        )
        self.report = report


def _hand_over(jobs: queue.Queue[Any], job: _Job, failure: list[BaseException]) -> None:
    """Put ``job`` on the writer's queue, unless the writer has failed meanwhile."""
    while not failure:
        try:
            jobs.put(job, timeout=0.5)
            return
        except queue.Full:
            continue


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
