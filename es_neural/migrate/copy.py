"""Copy and enrich: source documents -> encoded documents in the target index.

The source is read through points in time + search_after, sliced (``slice.max`` = number of
slices) across worker threads, each slice with its own point in time. Per page of hits a worker

1. keeps the source fields (minus the neural fields of an es-neural source, which are recomputed),
2. computes each document's text (:func:`es_neural.text.document_text`) and content hash (its
   fields + the models), and hands them to the one write stage (:mod:`es_neural.ingest.writer`),
   which skips the documents the target already holds with that hash (never encoded twice),
3. encodes the others (dense, SPLADE, tree leaves) while holding the one encoder lock: encoding is
   CPU-bound and uses every core through torch, so workers overlap their I/O with another
   worker's encoding rather than encoding side by side (the fast tokenizers are not safe for
   concurrent use either),
4. bulk-writes them under their source ``_id`` (an overwrite, never a duplicate), re-sending
   per-item transient failures and dead-lettering permanent ones (the dead-letter JSONL, with
   reasons, the same as ingestion's).

As in ingestion, documents with no text in the text fields are copied without vectors and counted
(a migration loses nothing). A slice whose point in time disappears (an engine restart) is read
again from a new one (:mod:`es_neural.migrate.scan`); the content hashes make that cheap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_neural.dialects.base import BaseDialect
from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder
from es_neural.errors import EsNeuralError
from es_neural.ingest.prepare import Prepared, content_hash
from es_neural.ingest.state import DeadLetterWriter
from es_neural.ingest.writer import WriteCounts, WriteStage
from es_neural.migrate.plan import MigrationPlan
from es_neural.migrate.scan import restartable_scan
from es_neural.text import document_text

__all__ = ["Copier", "CopyStats", "CopyStopped"]


class CopyStopped(EsNeuralError):
    """Another worker failed (or the run was interrupted): this one stopped at a page boundary."""


@dataclass
class CopyStats:
    """Counters shared by the workers (updated under a lock): the write stage's counts, the
    documents read and the points in time reopened."""

    read: int = 0
    scan_restarts: int = 0
    counts: WriteCounts = field(default_factory=WriteCounts)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self, counts: WriteCounts | None = None, *, read: int = 0, scan_restarts: int = 0
    ) -> None:
        with self._lock:
            self.read += read
            self.scan_restarts += scan_restarts
            if counts is not None:
                self.counts += counts

    @property
    def written(self) -> int:
        return self.counts.written

    def snapshot(self) -> dict[str, float]:
        """The report's counts: ``read``, ``scan_restarts`` and the stage's, where its
        ``dead_lettered`` is called ``failed`` and its ``retries`` ``item_retries``."""
        with self._lock:
            out: dict[str, float] = {"read": self.read, "scan_restarts": self.scan_restarts}
            out.update(self.counts.as_dict())
        out["failed"] = out.pop("dead_lettered")
        out["item_retries"] = out.pop("retries")
        return out


class Copier:
    """Copies source documents into the plan's target index, encoding them on the way."""

    def __init__(
        self,
        source: BaseDialect,
        target: BaseDialect,
        plan: MigrationPlan,
        *,
        dense: DenseEncoder,
        sparse: SparseEncoder | None,
        leaves: LeafAssigner | None,
        models_key: str,
        page_size: int = 500,
        batch_size: int = 64,
        max_item_retries: int = 8,
        max_scan_restarts: int = 5,
        failures_path: Path,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        """``failures_path``: the dead-letter JSONL of the migration (documents that could not
        be written, with the reasons)."""
        self.source = source
        self.target = target
        self.plan = plan
        self.dense = dense
        self.sparse = sparse
        self.leaves = leaves
        self.models_key = models_key
        self.page_size = page_size
        self.batch_size = batch_size
        self.max_item_retries = max_item_retries
        self.max_scan_restarts = max_scan_restarts
        self.failures_path = failures_path
        self.on_read = on_read
        self.stats = CopyStats()
        self.stop = threading.Event()
        self.dead_letters = DeadLetterWriter(failures_path)
        self.stage = WriteStage.create(
            target,
            plan.target_index,
            plan.fields,
            dense=dense,
            sparse=sparse,
            leaves=leaves,
            dead_letters=self.dead_letters,
            max_item_retries=max_item_retries,
        )
        self._encode_lock = threading.Lock()

    # ----- reading -----

    def copy_scan(
        self,
        *,
        query: Mapping[str, Any] | None = None,
        slice_id: int | None = None,
        slice_max: int | None = None,
    ) -> None:
        """Copy every source document the query (and slice) selects; a lost point in time (an
        engine restart) starts the slice again from a new one."""
        restartable_scan(
            self.source,
            self.plan.source.concrete,
            self.copy_hits,
            query=query,
            page_size=self.page_size,
            slice_id=slice_id,
            slice_max=slice_max,
            source_excludes=self.plan.dropped_fields,
            include_vectors=self.plan.include_vectors,
            keep_alive="10m",
            max_restarts=self.max_scan_restarts,
            on_restart=lambda: self.stats.add(scan_restarts=1),
        )

    def copy_slices(
        self,
        slices: Sequence[int],
        *,
        slice_max: int,
        workers: int,
        query: Mapping[str, Any] | None = None,
        on_slice_done: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        """Copy the given slices with ``workers`` threads; ``on_slice_done`` after each one."""
        if not slices:
            return

        def one(slice_id: int) -> None:
            before = self.stats.snapshot()
            self.copy_scan(query=query, slice_id=slice_id, slice_max=slice_max)
            if on_slice_done is not None:
                after = self.stats.snapshot()
                on_slice_done(slice_id, {k: after[k] - before[k] for k in after})

        if workers <= 1 or len(slices) == 1:
            for slice_id in slices:
                one(slice_id)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="es-neural-copy") as pool:
            futures = [pool.submit(one, s) for s in slices]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                errors = [f.exception() for f in done if f.exception() is not None]
                if errors:
                    self.stop.set()
            except BaseException:
                self.stop.set()  # Ctrl-C: the workers stop at their next page
                raise
            finally:
                wait(futures)
        failures = [e for f in futures if (e := f.exception()) is not None]
        real = [e for e in failures if not isinstance(e, CopyStopped)]
        if real or failures:
            raise (real or failures)[0]

    def copy_ids(self, ids: Sequence[str], *, chunk: int = 1000) -> None:
        """Copy (again) the source documents with these ids, e.g. the differences verify found."""
        for start in range(0, len(ids), chunk):
            part = list(ids[start : start + chunk])
            self.copy_scan(query={"ids": {"values": part}})

    def delete_ids(self, ids: Sequence[str], *, chunk: int = 1000) -> None:
        """Delete target documents that the source no longer has."""
        for start in range(0, len(ids), chunk):
            self.stats.add(self.stage.writer.delete(ids[start : start + chunk]).counts)

    # ----- one page -----

    def copy_hits(self, hits: Iterable[Mapping[str, Any]]) -> None:
        page: list[Mapping[str, Any]] = []
        for hit in hits:
            page.append(hit)
            if len(page) >= self.page_size:
                self._page(page)
                page = []
        if page:
            self._page(page)

    def _page(self, hits: Sequence[Mapping[str, Any]]) -> None:
        if self.stop.is_set():
            raise CopyStopped("stopped")
        plan = self.plan
        dropped = set(plan.dropped_fields)
        docs: dict[str, Prepared] = {}
        for hit in hits:
            fields = {k: v for k, v in (hit.get("_source") or {}).items() if k not in dropped}
            doc_id = str(hit["_id"])
            text = document_text(fields, plan.text_fields)
            docs[doc_id] = Prepared(-1, doc_id, fields, text, content_hash(fields, self.models_key))
        todo, unchanged = self.stage.drop_unchanged(list(docs.values()))
        self.stats.add(unchanged, read=len(hits))
        for start in range(0, len(todo), self.batch_size):
            with self._encode_lock:
                batch = self.stage.encode(todo[start : start + self.batch_size])
            self.stats.add(self.stage.write(batch).counts)
        if self.on_read is not None:
            self.on_read(len(hits))
