"""The one write stage: prepared documents -> encoded documents -> written, with counts.

Used by single-process ingestion (:mod:`es_neural.ingest.pipeline`), migration
(:mod:`es_neural.migrate.copy`) and scale-out workers. Three steps, each usable on its own and,
where it helps, in another process:

1. :meth:`BatchWriter.drop_unchanged` (reads the engine) drops the documents the index already
   holds with the same content hash (their fields *and* the models that encode them), so an
   unchanged document is never encoded twice.
2. :meth:`BatchEncoder.encode` (pure: no engine call) computes dense vectors, SPLADE weights and
   tree leaves for the documents that have text, checks the vectors' shape and that they are
   finite, and assembles each document's source with its neural fields and content hash.

   * A document without text (:func:`es_neural.text.document_text` is ``""``) is written
     without vectors, with its content hash, and counted in ``without_text``: nothing is lost,
     and a search finds it by its other fields.
   * When the encoders fail on a batch, its documents are encoded again one at a time; those
     that still fail become dead letters (stage ``encode``) and the rest go on. When every
     document fails on its own (a batch of one included), the encoder is broken rather than
     the documents: the error is raised and nothing is dead-lettered (a run stops; a resumed
     run encodes those documents again). An :class:`~es_neural.errors.EsNeuralError` (a
     missing model, say) is always raised.

   The result, :class:`EncodedBatch`, is plain picklable data (ids, positions, sources, dead
   letters, counts), so encoding and writing can run in different processes.
3. :meth:`BatchWriter.write` bulk-writes an encoded batch. Per-item transient failures inside a
   200 response (429, rejected execution) are re-sent after :func:`item_backoff_s`, up to
   ``max_item_retries`` times; permanent failures, and transient ones still failing after the
   last re-send, become dead letters (stage ``index``). Request-level failures are retried by the
   dialect's one retry layer, not here. Dead letters (the batch's own and the ones found while
   encoding) go to the :class:`~es_neural.ingest.state.DeadLetterWriter` when one is given,
   flushed before :meth:`~BatchWriter.write` returns, and are returned in the
   :class:`WriteResult` in every case.

:class:`WriteStage` runs the three steps for one batch. :class:`WriteCounts` and
:class:`WriteResult` add up with ``+`` (and :meth:`WriteCounts.total`), so the results of many
batches or workers can be summed. Constructors only store what they are given: no model loads,
no engine call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from es_neural.dialects.base import BaseDialect, BulkAction, BulkOp, FieldNames
from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder, count_truncated
from es_neural.errors import EsNeuralError
from es_neural.ingest.prepare import Prepared
from es_neural.ingest.state import DeadLetter, DeadLetterWriter
from es_neural.tree.shards import ShardPlacement

__all__ = [
    "BatchEncoder",
    "BatchWriter",
    "DeadLetter",
    "EncodedBatch",
    "EncodedDoc",
    "WriteCounts",
    "WriteResult",
    "WriteStage",
    "item_backoff_s",
]


#: ``BatchWriter(placement=...)`` not given: read from the index ``_meta`` on first use.
_UNREAD = object()


def item_backoff_s(attempt: int) -> float:
    """Seconds to wait before re-sending per-item transient failures for the ``attempt``-th time
    (1-based): 0.2 s doubling, at most 10 s."""
    return min(0.2 * 2 ** (attempt - 1), 10.0)


@dataclass(frozen=True, slots=True)
class WriteCounts:
    """What the stage did to a batch (or, summed with ``+``, to many)."""

    #: Skipped: the index holds the document with the same content hash.
    unchanged: int = 0
    #: Given vectors.
    encoded: int = 0
    #: Without text, so written without vectors (never dead-lettered for that).
    without_text: int = 0
    #: Longer than the dense model's window (encoded from their beginning).
    truncated: int = 0
    #: Written (indexed) by the engine.
    written: int = 0
    #: Deleted by :meth:`BatchWriter.delete`.
    deleted: int = 0
    #: Dead letters of the stage (encode and index failures, and those handed to ``encode``).
    dead_lettered: int = 0
    #: Per-item re-sends of transient failures.
    retries: int = 0
    encode_s: float = 0.0
    write_s: float = 0.0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        if not isinstance(other, WriteCounts):
            return NotImplemented
        return WriteCounts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    @staticmethod
    def total(many: Iterable[WriteCounts]) -> WriteCounts:
        out = WriteCounts()
        for one in many:
            out = out + one
        return out

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EncodedDoc:
    doc_id: str
    #: Where the document came from in its source (``-1`` where there is no such thing).
    position: int
    #: The fields to write: the document's own plus the neural fields and the content hash.
    source: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """The output of :meth:`BatchEncoder.encode`: plain data, picklable."""

    docs: tuple[EncodedDoc, ...] = ()
    #: Documents that will not be written (encode failures, and the rejections given to encode).
    dead_letters: tuple[DeadLetter, ...] = ()
    counts: WriteCounts = field(default_factory=WriteCounts)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(d.doc_id for d in self.docs)

    @property
    def positions(self) -> dict[str, int]:
        return {d.doc_id: d.position for d in self.docs}


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The output of :meth:`BatchWriter.write` (or of a whole :class:`WriteStage` run)."""

    #: Every count of the batch, those of its encoding included.
    counts: WriteCounts = field(default_factory=WriteCounts)
    #: Every dead letter of the batch, those of its encoding included.
    dead_letters: tuple[DeadLetter, ...] = ()

    def __add__(self, other: WriteResult) -> WriteResult:
        if not isinstance(other, WriteResult):
            return NotImplemented
        return WriteResult(self.counts + other.counts, self.dead_letters + other.dead_letters)

    @property
    def failed_ids(self) -> tuple[str, ...]:
        return tuple(d.doc_id for d in self.dead_letters if d.doc_id is not None)


class BatchEncoder:
    """Step 2: encodes prepared documents and assembles their neural fields (no engine call).

    ``dialect`` is used only for its pure builders (the form of a SPLADE value); ``fields`` names
    the neural fields to write.
    """

    def __init__(
        self,
        dialect: BaseDialect,
        fields: FieldNames,
        *,
        dense: DenseEncoder,
        sparse: SparseEncoder | None = None,
        leaves: LeafAssigner | None = None,
    ) -> None:
        self.dialect = dialect
        self.fields = fields
        self.dense = dense
        self.sparse = sparse
        self.leaves = leaves

    def encode(
        self, docs: Sequence[Prepared], *, rejected: Sequence[DeadLetter] = ()
    ) -> EncodedBatch:
        """Encode ``docs``; ``rejected`` (e.g. records that failed validation) travel along in
        the batch's dead letters, so that :meth:`BatchWriter.write` records them with it."""
        started = time.perf_counter()
        with_text = [d for d in docs if d.text]
        encoded, dead = self._encode_isolating(with_text)
        done = iter(encoded)
        out: list[EncodedDoc] = []
        for doc in docs:
            if not doc.text:
                source = {**doc.source, self.fields.content_hash: doc.content_hash}
                out.append(EncodedDoc(doc.doc_id, doc.position, source))
            elif (one := next(done)) is not None:
                out.append(one)
        kept = [d.text for d, e in zip(with_text, encoded, strict=True) if e is not None]
        letters = (*rejected, *dead)
        counts = WriteCounts(
            encoded=len(kept),
            without_text=len(docs) - len(with_text),
            truncated=count_truncated(self.dense, kept) if kept else 0,
            dead_lettered=len(letters),
            encode_s=time.perf_counter() - started,
        )
        return EncodedBatch(tuple(out), letters, counts)

    def _encode_isolating(
        self, docs: list[Prepared]
    ) -> tuple[list[EncodedDoc | None], list[DeadLetter]]:
        """One encoded document per document (``None`` where it failed), and the dead letters."""
        if not docs:
            return [], []
        try:
            return list(self._encode_all(docs)), []
        except EsNeuralError:
            raise
        except Exception:
            if len(docs) == 1:
                raise
        # Isolate the document(s) the encoders choke on; the rest of the batch goes on.
        out: list[EncodedDoc | None] = []
        dead: list[DeadLetter] = []
        failure: Exception | None = None
        for doc in docs:
            try:
                out.extend(self._encode_all([doc]))
            except EsNeuralError:
                raise
            except Exception as exc:
                failure = exc
                reason = f"{type(exc).__name__}: {exc}"
                dead.append(
                    DeadLetter(doc.position, doc.doc_id, "encode", reason, dict(doc.source))
                )
                out.append(None)
        if failure is not None and len(dead) == len(docs):
            raise failure  # every document fails on its own: the encoder is broken, not they
        return out, dead

    def _encode_all(self, docs: Sequence[Prepared]) -> list[EncodedDoc]:
        f = self.fields
        texts = [d.text for d in docs]
        vectors = np.asarray(self.dense.encode_documents(texts), dtype=np.float32)
        if vectors.shape != (len(docs), self.dense.dims) or not np.isfinite(vectors).all():
            raise ValueError(f"the dense encoder returned {vectors.shape} / non-finite values")
        weights = self.sparse.encode_documents(texts) if self.sparse is not None else None
        assignments = self.leaves.assign(vectors) if self.leaves is not None else None
        out = []
        for i, doc in enumerate(docs):
            source = dict(doc.source)
            source[f.dense] = vectors[i].tolist()
            if weights is not None and weights[i]:
                source[f.sparse] = self.dialect.sparse_source_value(weights[i])
            if assignments is not None:
                a = assignments[i]
                source[f.leaf_ids] = list(a.leaf_ids)
                source[f.leaf_ancestors] = list(a.ancestors)
                source[f.tree_version] = a.tree_version
            source[f.content_hash] = doc.content_hash
            out.append(EncodedDoc(doc.doc_id, doc.position, source))
        return out


class BatchWriter:
    """Steps 1 and 3: the engine side of the stage, for one index.

    ``dead_letters``: where dead letters are recorded (``None``: only returned in the result).
    ``sleep`` waits between per-item re-sends (a test passes a recorder).

    On a leaf-routed index (:mod:`es_neural.tree.shards`; the placement is read from the
    index ``_meta`` on first use unless ``placement`` is given) each document is written with
    its leaf group's ``_routing``; ids are looked up by a search by ids, a document whose group
    changed is deleted from its old shard in the same bulk, and deletes carry the routing the
    document was written with.
    """

    def __init__(
        self,
        dialect: BaseDialect,
        index: str,
        fields: FieldNames,
        *,
        dead_letters: DeadLetterWriter | None = None,
        max_item_retries: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        placement: ShardPlacement | object | None = _UNREAD,
    ) -> None:
        self.dialect = dialect
        self.index = index
        self.fields = fields
        self.dead_letters = dead_letters
        self.max_item_retries = max_item_retries
        self.sleep = sleep
        self._placement = placement

    @property
    def placement(self) -> ShardPlacement | None:
        """The index's leaf placement (``None``: unrouted), read from its ``_meta`` once."""
        if self._placement is _UNREAD:
            meta = self.dialect.get_mapping(self.index).get("_meta") or {}
            self._placement = ShardPlacement.from_meta(meta)
        return self._placement  # type: ignore[return-value]

    def _stored_routing(self, ids: Sequence[str]) -> dict[str, str | None]:
        """The ``_routing`` of those ``ids`` the routed index holds (by a search by ids)."""
        found = self.dialect.find_by_ids(self.index, ids, fields=[])
        return {doc_id: routing for doc_id, (_, routing) in found.items()}

    def drop_unchanged(self, docs: Sequence[Prepared]) -> tuple[list[Prepared], WriteCounts]:
        """The documents the index does not hold with the same content hash, and the count of
        those it does (``unchanged``)."""
        if not docs:
            return [], WriteCounts()
        name = self.fields.content_hash
        # routed: a search by ids
        routing: dict[str, str | None] | None = {} if self.placement is not None else None
        stored = self.dialect.get_documents(
            self.index, [d.doc_id for d in docs], fields=[name], routing=routing
        )
        todo = [d for d in docs if stored.get(d.doc_id, {}).get(name) != d.content_hash]
        return todo, WriteCounts(unchanged=len(docs) - len(todo))

    def write(self, batch: EncodedBatch) -> WriteResult:
        """Bulk-write ``batch``; its counts plus the writing's, and every dead letter of it."""
        moved, actions = self._routed(
            [BulkAction(self.index, d.doc_id, d.source) for d in batch.docs]
        )
        positions = batch.positions
        _, moved_retries, moved_dead, moved_s = self._bulk(moved, positions)
        succeeded, retries, dead, seconds = self._bulk(actions, positions)
        dead, retries, seconds = [*moved_dead, *dead], retries + moved_retries, seconds + moved_s
        letters = (*batch.dead_letters, *dead)
        self._record(letters)
        counts = batch.counts + WriteCounts(
            written=succeeded, dead_lettered=len(dead), retries=retries, write_s=seconds
        )
        return WriteResult(counts, letters)

    def delete(self, ids: Sequence[str]) -> WriteResult:
        """Delete these documents (already gone counts as deleted), with the same retries."""
        actions = [BulkAction(self.index, i, op=BulkOp.DELETE) for i in ids]
        if self.placement is not None:
            stored = self._stored_routing(ids)
            actions = [replace(a, routing=stored.get(a.doc_id)) for a in actions]
        succeeded, retries, dead, seconds = self._bulk(actions, {})
        self._record(dead)
        counts = WriteCounts(
            deleted=succeeded, dead_lettered=len(dead), retries=retries, write_s=seconds
        )
        return WriteResult(counts, tuple(dead))

    def _routed(self, actions: list[BulkAction]) -> tuple[list[BulkAction], list[BulkAction]]:
        """On a routed index: the deletes of documents' copies on another shard (their group
        changed; sent first), and ``actions`` with their leaf group's routing."""
        placement = self.placement
        if placement is None or not actions:
            return [], actions
        leaf_field = self.fields.leaf_ids
        routed = [
            replace(a, routing=placement.routing_for((a.source or {}).get(leaf_field)))
            for a in actions
        ]
        stored = self._stored_routing([a.doc_id for a in routed])
        moved = [
            BulkAction(self.index, a.doc_id, op=BulkOp.DELETE, routing=stored[a.doc_id])
            for a in routed
            if a.doc_id in stored and stored[a.doc_id] != a.routing
        ]
        return moved, routed

    def _record(self, letters: Sequence[DeadLetter]) -> None:
        if self.dead_letters is not None and letters:
            self.dead_letters.add_all(letters)
            self.dead_letters.flush()

    def _bulk(
        self, actions: Sequence[BulkAction], positions: Mapping[str, int]
    ) -> tuple[int, int, list[DeadLetter], float]:
        """(succeeded, item re-sends, dead letters, seconds) for ``actions``."""
        started = time.perf_counter()
        pending = list(actions)
        succeeded = retries = attempt = 0
        dead: list[DeadLetter] = []

        def letter(doc_id: str, reason: str, error_type: str) -> DeadLetter:
            source = next((a.source for a in pending if a.doc_id == doc_id), None)
            return DeadLetter(
                positions.get(doc_id, -1),
                doc_id,
                "index",
                reason,
                self._without_vectors(source),
                error_type,
            )

        while pending:
            result = self.dialect.bulk(pending)
            succeeded += len(result.succeeded)
            dead.extend(letter(i.doc_id, i.reason, i.error_type) for i in result.permanent_failures)
            transient = {item.doc_id: item for item in result.transient_failures}
            if not transient:
                break
            attempt += 1
            if attempt > self.max_item_retries:
                dead.extend(
                    letter(i, f"gave up after {attempt - 1} retries: {t.reason}", t.error_type)
                    for i, t in transient.items()
                )
                break
            retries += len(transient)
            self.sleep(item_backoff_s(attempt))
            pending = [a for a in pending if a.doc_id in transient]
        return succeeded, retries, dead, time.perf_counter() - started

    def _without_vectors(self, source: Any) -> Any:
        if not isinstance(source, Mapping):
            return source
        drop = (self.fields.dense, self.fields.sparse)
        return {k: v for k, v in source.items() if k not in drop}


class WriteStage:
    """The three steps for one batch: skip unchanged, encode, write."""

    def __init__(
        self, encoder: BatchEncoder, writer: BatchWriter, *, skip_unchanged: bool = True
    ) -> None:
        self.encoder = encoder
        self.writer = writer
        self.skip_unchanged = skip_unchanged

    @classmethod
    def create(
        cls,
        dialect: BaseDialect,
        index: str,
        fields: FieldNames,
        *,
        dense: DenseEncoder,
        sparse: SparseEncoder | None = None,
        leaves: LeafAssigner | None = None,
        dead_letters: DeadLetterWriter | None = None,
        max_item_retries: int = 8,
        skip_unchanged: bool = True,
    ) -> WriteStage:
        return cls(
            BatchEncoder(dialect, fields, dense=dense, sparse=sparse, leaves=leaves),
            BatchWriter(
                dialect,
                index,
                fields,
                dead_letters=dead_letters,
                max_item_retries=max_item_retries,
            ),
            skip_unchanged=skip_unchanged,
        )

    def drop_unchanged(self, docs: Sequence[Prepared]) -> tuple[list[Prepared], WriteCounts]:
        """Step 1 (reads the engine) when ``skip_unchanged`` is on; else every document."""
        if not self.skip_unchanged:
            return list(docs), WriteCounts()
        return self.writer.drop_unchanged(docs)

    def encode(
        self, docs: Sequence[Prepared], *, rejected: Sequence[DeadLetter] = ()
    ) -> EncodedBatch:
        """Step 2 (pure): see :meth:`BatchEncoder.encode`."""
        return self.encoder.encode(docs, rejected=rejected)

    def write(self, batch: EncodedBatch) -> WriteResult:
        """Step 3."""
        return self.writer.write(batch)

    def run(self, docs: Sequence[Prepared], *, rejected: Sequence[DeadLetter] = ()) -> WriteResult:
        """All three steps for one batch (the counts include ``unchanged``)."""
        todo, skipped = self.drop_unchanged(docs)
        result = self.write(self.encode(todo, rejected=rejected))
        return replace(result, counts=result.counts + skipped)
