"""Copy and enrich: source documents -> encoded documents in the target index.

The source is read through points in time + search_after, sliced (``slice.max`` = number of
slices) across worker threads, each slice with its own point in time. Per page of hits a worker

1. keeps the source fields (minus the neural fields of an es-neural source, which are recomputed),
2. computes each document's content hash (its fields + the models) and asks the target which
   documents it already holds with that hash: those are skipped, never encoded twice,
3. encodes the others (dense, SPLADE, tree leaves) while holding the one encoder lock: encoding is
   CPU-bound and uses every core through torch, so workers overlap their I/O with another
   worker's encoding rather than encoding side by side (the fast tokenizers are not safe for
   concurrent use either),
4. bulk-writes them under their source ``_id`` (an overwrite, never a duplicate), re-sending
   per-item transient failures and logging permanent ones.

Documents with no text in the text fields are copied without vectors (a migration loses nothing).
A slice whose point in time disappears (an engine restart) is read again from a new one; the
content hashes make that cheap.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from es_neural.dialects.base import BaseDialect, BulkAction, BulkOp
from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder
from es_neural.errors import EsNeuralError, IndexNotFoundError, ShardsUnavailableError
from es_neural.ingest.prepare import content_hash
from es_neural.migrate.plan import MigrationPlan

__all__ = ["Copier", "CopyStats", "CopyStopped", "document_text"]


class CopyStopped(EsNeuralError):
    """Another worker failed (or the run was interrupted): this one stopped at a page boundary."""


@dataclass
class CopyStats:
    """Counters shared by the workers (updated under a lock)."""

    read: int = 0
    written: int = 0
    unchanged: int = 0
    encoded: int = 0
    without_text: int = 0
    deleted: int = 0
    failed: int = 0
    item_retries: int = 0
    scan_restarts: int = 0
    encode_s: float = 0.0
    write_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **amounts: float) -> None:
        with self._lock:
            for key, value in amounts.items():
                setattr(self, key, getattr(self, key) + value)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def document_text(fields: Mapping[str, Any], text_fields: Sequence[str]) -> str:
    """The text encoded for a document: its text fields' strings (lists flattened), in order."""
    parts: list[str] = []
    for name in text_fields:
        value = fields.get(name)
        values = value if isinstance(value, list) else [value]
        parts.extend(v.strip() for v in values if isinstance(v, str) and v.strip())
    return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class _Doc:
    doc_id: str
    fields: dict[str, Any]
    text: str
    content_hash: str


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
        self._encode_lock = threading.Lock()
        self._failures_lock = threading.Lock()

    # ----- reading -----

    def scan_source(
        self,
        *,
        query: Mapping[str, Any] | None = None,
        slice_id: int | None = None,
        slice_max: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        return self.source.scan(
            self.plan.source.concrete,
            query=query,
            page_size=self.page_size,
            slice_id=slice_id,
            slice_max=slice_max,
            source_excludes=self.plan.dropped_fields,
            include_vectors=self.plan.include_vectors,
            keep_alive="10m",
        )

    def copy_scan(
        self,
        *,
        query: Mapping[str, Any] | None = None,
        slice_id: int | None = None,
        slice_max: int | None = None,
    ) -> None:
        """Copy every source document the query (and slice) selects; a lost point in time (an
        engine restart) starts the slice again from a new one."""
        for attempt in range(self.max_scan_restarts + 1):
            try:
                self.copy_hits(
                    self.scan_source(query=query, slice_id=slice_id, slice_max=slice_max)
                )
                return
            except (IndexNotFoundError, ShardsUnavailableError):
                # The point in time died (wholly or in part) with the node that held it, or the
                # source is gone.
                if attempt == self.max_scan_restarts or not self.source.index_exists(
                    self.plan.source.concrete
                ):
                    raise
                self.stats.add(scan_restarts=1)
                # give the cluster a moment to promote replicas of a lost node's shards
                time.sleep(min(0.5 * 2**attempt, 8.0))

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
        index = self.plan.target_index
        for start in range(0, len(ids), chunk):
            actions = [
                BulkAction(index, doc_id, op=BulkOp.DELETE) for doc_id in ids[start : start + chunk]
            ]
            self._write(actions)
            self.stats.add(deleted=len(actions))

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
        docs: dict[str, _Doc] = {}
        for hit in hits:
            fields = {k: v for k, v in (hit.get("_source") or {}).items() if k not in dropped}
            doc_id = str(hit["_id"])
            docs[doc_id] = _Doc(
                doc_id,
                fields,
                document_text(fields, plan.text_fields),
                content_hash(fields, self.models_key),
            )
        hash_field = plan.fields.content_hash
        stored = self.target.get_documents(plan.target_index, list(docs), fields=[hash_field])
        todo = [
            d for d in docs.values() if stored.get(d.doc_id, {}).get(hash_field) != d.content_hash
        ]
        self.stats.add(read=len(hits), unchanged=len(docs) - len(todo))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            actions = [
                BulkAction(plan.target_index, doc.doc_id, source)
                for doc, source in self._encode(batch)
            ]
            self._write(actions)
        if self.on_read is not None:
            self.on_read(len(hits))

    def _encode(self, docs: Sequence[_Doc]) -> list[tuple[_Doc, dict[str, Any]]]:
        f = self.plan.fields
        with_text = [d for d in docs if d.text]
        out = []
        if with_text:
            texts = [d.text for d in with_text]
            with self._encode_lock:
                started = time.perf_counter()
                vectors = np.asarray(self.dense.encode_documents(texts), dtype=np.float32)
                weights = self.sparse.encode_documents(texts) if self.sparse is not None else None
                leaves = self.leaves.assign(vectors) if self.leaves is not None else None
                elapsed = time.perf_counter() - started
            if vectors.shape != (len(texts), self.dense.dims) or not np.isfinite(vectors).all():
                raise EsNeuralError(
                    f"the dense encoder returned shape {vectors.shape} or non-finite values"
                )
            self.stats.add(encoded=len(texts), encode_s=elapsed)
            for i, doc in enumerate(with_text):
                source = dict(doc.fields)
                source[f.dense] = vectors[i].tolist()
                if weights is not None and weights[i]:
                    source[f.sparse] = self.target.sparse_source_value(weights[i])
                if leaves is not None:
                    source[f.leaf_ids] = list(leaves[i].leaf_ids)
                    source[f.leaf_ancestors] = list(leaves[i].ancestors)
                    source[f.tree_version] = leaves[i].tree_version
                source[f.content_hash] = doc.content_hash
                out.append((doc, source))
        for doc in docs:
            if not doc.text:
                out.append((doc, {**doc.fields, f.content_hash: doc.content_hash}))
        self.stats.add(without_text=len(docs) - len(with_text))
        return out

    # ----- writing -----

    def _write(self, actions: Sequence[BulkAction]) -> None:
        pending = list(actions)
        attempt = 0
        started = time.perf_counter()
        written = 0
        while pending:
            result = self.target.bulk(pending)
            written += len(result.succeeded)
            for item in result.permanent_failures:
                self._record_failure(item.doc_id, item.error_type, item.reason)
            transient = {item.doc_id for item in result.transient_failures}
            if not transient:
                break
            attempt += 1
            if attempt > self.max_item_retries:
                for item in result.transient_failures:
                    self._record_failure(
                        item.doc_id, item.error_type, f"gave up after retries: {item.reason}"
                    )
                break
            self.stats.add(item_retries=len(transient))
            time.sleep(min(0.2 * 2 ** (attempt - 1), 10.0))
            pending = [a for a in pending if a.doc_id in transient]
        deletes = sum(1 for a in actions if a.op is BulkOp.DELETE)
        self.stats.add(
            written=written - min(deletes, written), write_s=time.perf_counter() - started
        )

    def _record_failure(self, doc_id: str, error_type: str, reason: str) -> None:
        self.stats.add(failed=1)
        line = json.dumps(
            {"doc_id": doc_id, "error_type": error_type, "reason": reason, "at": time.time()},
            ensure_ascii=False,
        )
        with self._failures_lock:
            self.failures_path.parent.mkdir(parents=True, exist_ok=True)
            with self.failures_path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
