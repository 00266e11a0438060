"""The two Ray Data stages of a scale-out run, as plain callables (Ray instantiates them once per
actor; tests may call them directly).

* :class:`EncodeWorker` (an actor pool, where the CPUs or GPUs are): loads the models once,
  checks them against the fingerprints in the index ``_meta``, and turns each batch of rows into
  one row holding an :class:`~es_neural.ingest.writer.EncodedBatch`: records prepared (ingest's
  validation, or a migration's copy rule), unchanged documents dropped by content hash, the
  rest encoded. All of it is the one write stage's (:mod:`es_neural.ingest.writer`).
* :class:`WriteWorker` (a few actors reserving no CPU: they wait on the engine): bulk-writes each
  encoded batch through :class:`~es_neural.ingest.writer.BatchWriter` (per-item 429 retries with
  backoff, dead letters) and returns its :class:`~es_neural.ingest.writer.WriteResult`, dead
  letters included, to the driver, which records them and moves the checkpoint.

Each output row also carries how many records of each unit (block or slice) the batch held and
the units whose end marker it held (see :mod:`es_neural.scale.blocks`), so the driver knows when
a unit is complete. A worker that dies is restarted by Ray and its batch is done again: ids are
deterministic, so a document written twice is overwritten, never duplicated.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from es_neural.dialects import get_dialect
from es_neural.dialects.base import BaseDialect, RetryPolicy
from es_neural.indices import read_index_info, verify_models
from es_neural.ingest.pipeline import IngestOptions, models_key, prepare_records
from es_neural.ingest.prepare import Prepared, content_hash
from es_neural.ingest.sources import Record
from es_neural.ingest.state import DeadLetter
from es_neural.ingest.writer import BatchWriter, EncodedBatch, WriteResult, WriteStage
from es_neural.scale.blocks import decode_rows
from es_neural.scale.options import ModelSpec
from es_neural.settings import EngineKind, Settings
from es_neural.text import document_text

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "BATCH",
    "ENDS",
    "PID",
    "READ",
    "RESULT",
    "UNITS",
    "CopyRule",
    "EncodeWorker",
    "WorkerConfig",
    "WriteWorker",
]

#: Output columns: JSON {unit: records}, JSON {unit: total}, records read, the pickled encoded
#: batch (encode stage) or write result (write stage), and the encoding worker's process id.
UNITS = "_esn_units"
ENDS = "_esn_ends"
READ = "_esn_read"
BATCH = "_esn_batch"
RESULT = "_esn_result"
PID = "_esn_pid"


@dataclass(frozen=True, slots=True)
class CopyRule:
    """How a migration turns a source hit into a document (as ``migrate.copy`` does): the
    source fields minus ``dropped`` (an es-neural source's neural fields), its ``_id``, the text
    of ``text_fields``; no other validation (a migration copies what the source holds)."""

    text_fields: tuple[str, ...]
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What every worker needs, picklable: where to write and with which models."""

    settings: Settings
    engine: EngineKind
    #: The index (or alias over one index) written into.
    index: str
    models: ModelSpec
    options: IngestOptions = field(default_factory=IngestOptions)
    #: Migration: copy hits by this rule instead of ingest's validation.
    copy: CopyRule | None = None
    torch_threads: int = 1

    def dialect(self) -> BaseDialect:
        policy = RetryPolicy(deadline_s=self.options.retry_deadline_s, max_wait_s=10.0)
        return get_dialect(self.settings, self.engine).with_retry(policy)


def _set_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class EncodeWorker:
    """Rows -> one row with the encoded batch (see the module docstring)."""

    def __init__(self, config: WorkerConfig) -> None:
        _set_threads(config.torch_threads)
        self.config = config
        self.dialect = config.dialect()
        dense, sparse, leaves = config.models.load()
        info = read_index_info(self.dialect, config.index)
        verify_models(
            info,
            dense=dense.fingerprint,
            sparse=sparse.fingerprint if sparse is not None else None,
            tree_version=leaves.tree_version if leaves is not None else None,
        )
        self.fields = info.fields
        self.models_key = models_key(dense, sparse, leaves)
        self.stage = WriteStage.create(
            self.dialect,
            config.index,
            info.fields,
            dense=dense,
            sparse=sparse,
            leaves=leaves,
            skip_unchanged=config.options.skip_unchanged,
        )
        self.pid = os.getpid()

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        records, units, ends = decode_rows(batch)
        encoded = self.encode(records)
        return pa.table(
            {
                UNITS: pa.array([json.dumps(units)], pa.string()),
                ENDS: pa.array([json.dumps(ends)], pa.string()),
                READ: pa.array([len(records)], pa.int64()),
                BATCH: pa.array([pickle.dumps(encoded, protocol=5)], pa.binary()),
                PID: pa.array([self.pid], pa.int64()),
            }
        )

    def encode(self, records: Sequence[Record]) -> EncodedBatch:
        """Prepare ``records``, drop the unchanged, encode the rest (counts include both)."""
        rejected: list[DeadLetter] = []
        if self.config.copy is not None:
            prepared = copy_prepared(records, self.config.copy, self.models_key)
        else:
            prepared, rejected = prepare_records(
                records, self.config.options, self.fields, self.models_key
            )
        todo, unchanged = self.stage.drop_unchanged(prepared)
        encoded = self.stage.encode(todo, rejected=rejected)
        return replace(encoded, counts=encoded.counts + unchanged)


def copy_prepared(records: Sequence[Record], rule: CopyRule, key: str) -> list[Prepared]:
    """Source hits as documents to copy (the last hit of an id wins)."""
    dropped = set(rule.dropped)
    docs: dict[str, Prepared] = {}
    for record in records:
        fields = {k: v for k, v in (record.fields or {}).items() if k not in dropped}
        doc_id = str(record.source_id)
        text = document_text(fields, rule.text_fields)
        docs[doc_id] = Prepared(-1, doc_id, fields, text, content_hash(fields, key))
    return list(docs.values())


class WriteWorker:
    """Encoded batches -> their write results (see the module docstring)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.dialect = config.dialect()
        info = read_index_info(self.dialect, config.index)
        self.writer = BatchWriter(
            self.dialect,
            config.index,
            info.fields,
            max_item_retries=config.options.max_item_retries,
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        results = [
            pickle.dumps(self.writer.write(pickle.loads(payload)), protocol=5)
            for payload in batch.column(BATCH).to_pylist()
        ]
        return pa.table(
            {
                UNITS: batch.column(UNITS),
                ENDS: batch.column(ENDS),
                READ: batch.column(READ),
                RESULT: pa.array(results, pa.binary()),
                PID: batch.column(PID),
            }
        )


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """One output row of the write stage, decoded on the driver."""

    units: Mapping[int, int]
    ends: Mapping[int, int]
    read: int
    result: WriteResult
    pid: int


def decode_outcomes(table: pa.Table) -> list[BatchOutcome]:
    def units(text: str) -> dict[int, int]:
        return {int(k): int(v) for k, v in json.loads(text).items()}

    columns: list[list[Any]] = [
        table.column(name).to_pylist() for name in (UNITS, ENDS, READ, RESULT, PID)
    ]
    return [
        BatchOutcome(units(u), units(e), int(r), pickle.loads(res), int(p))
        for u, e, r, res, p in zip(*columns, strict=True)
    ]
