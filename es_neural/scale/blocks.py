"""Units of work that can be checkpointed: blocks of a file and slices of an index.

A run reads its input as numbered *units* (a block of ``block_size`` records of a file, or one
``slice`` of a point-in-time scan of an index), one Ray read task each. Every row a read task
emits carries its unit, and the last row of a unit is a marker saying how many records the unit
had. The driver adds up the records written per unit; a unit whose records are all written (and
whose marker has arrived) is complete and goes into the run's checkpoint, so a run started again
does not read it, let alone encode it.

Rows travel as two columns, the unit and the :class:`~es_neural.ingest.sources.Record` pickled
(lossless for any record: unreadable lines, lone surrogates, nested values), so Arrow never
has to infer a schema from documents. No Ray import here: the read functions return Arrow
tables and are tested on their own.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from es_neural.errors import InvalidInputError
from es_neural.ingest.sources import Record, jsonl_record, open_source

if TYPE_CHECKING:
    import pyarrow as pa

    from es_neural.dialects.base import BaseDialect

__all__ = [
    "RECORD",
    "UNIT",
    "FileBlock",
    "decode_rows",
    "encode_rows",
    "plan_file_blocks",
    "read_file_block",
    "read_slice",
]

#: Column of the unit (block or slice number) of a row.
UNIT = "_esn_unit"
#: Column of the pickled record; ``None`` in a unit's end marker.
RECORD = "_esn_record"
#: Column of the number of records of the unit, set in its end marker only.
TOTAL = "_esn_total"
#: Rows per Arrow table a read task yields.
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class FileBlock:
    """Records ``first`` .. ``first + count - 1`` of a file (bytes ``start`` .. ``end`` of a
    JSONL file; ``start`` is ``-1`` for formats that are read from the beginning)."""

    number: int
    first: int
    count: int
    start: int = -1
    end: int = -1


def plan_file_blocks(path: Path, block_size: int) -> list[FileBlock]:
    """The blocks of ``path``. A JSONL file is split at line boundaries by one pass over its
    bytes, so each read task seeks to its block; CSV and TSV (whose quoted values may hold line
    breaks) are numbered by record and each read task reads up to its block."""
    if block_size < 1:
        raise InvalidInputError("the block size must be at least 1")
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        return _jsonl_blocks(path, block_size)
    source = open_source(path)  # refuses unknown formats
    total = sum(1 for _ in source.records())
    return [
        FileBlock(n, first, min(block_size, total - first))
        for n, first in enumerate(range(0, total, block_size))
    ]


def _jsonl_blocks(path: Path, block_size: int) -> list[FileBlock]:
    blocks: list[FileBlock] = []
    first = count = 0
    start = offset = 0
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                if count == 0:
                    start = offset
                count += 1
                if count == block_size:
                    blocks.append(FileBlock(len(blocks), first, count, start, offset + len(line)))
                    first += count
                    count = 0
            offset += len(line)
    if count:
        blocks.append(FileBlock(len(blocks), first, count, start, offset))
    return blocks


def encode_rows(unit: int, records: Iterable[Record], *, chunk: int = _CHUNK) -> Iterator[pa.Table]:
    """Arrow tables of rows for ``records`` of ``unit``, ending with the unit's marker."""
    import pyarrow as pa

    rows: list[bytes] = []
    total = 0
    for record in records:
        rows.append(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
        total += 1
        if len(rows) >= chunk:
            yield _table(pa, unit, rows, None)
            rows = []
    yield _table(pa, unit, rows, total)


def _table(pa: Any, unit: int, rows: list[bytes], total: int | None) -> pa.Table:
    records: list[bytes | None] = list(rows)
    totals: list[int | None] = [None] * len(rows)
    if total is not None:
        records.append(None)
        totals.append(total)
    return pa.table(
        {
            UNIT: pa.array([unit] * len(records), pa.int64()),
            RECORD: pa.array(records, pa.binary()),
            TOTAL: pa.array(totals, pa.int64()),
        }
    )


def decode_rows(table: pa.Table) -> tuple[list[Record], dict[int, int], dict[int, int]]:
    """The records of a batch of rows, the number of records per unit, and the totals of the
    units whose end marker is in the batch.

    A batch without the unit columns is a dataset of the caller's own (``write_neural``): each
    row is one document (columns as fields, nulls left out), at position ``-1``."""
    if RECORD not in table.column_names:
        return [_row_record(row) for row in table.to_pylist()], {}, {}
    records: list[Record] = []
    per_unit: dict[int, int] = {}
    totals: dict[int, int] = {}
    units = table.column(UNIT).to_pylist()
    payloads = table.column(RECORD).to_pylist()
    ends = table.column(TOTAL).to_pylist()
    for unit, payload, total in zip(units, payloads, ends, strict=True):
        if payload is None:
            totals[unit] = int(total)
            continue
        records.append(pickle.loads(payload))
        per_unit[unit] = per_unit.get(unit, 0) + 1
    return records, per_unit, totals


def _row_record(row: Mapping[str, Any]) -> Record:
    return Record(-1, {k: v for k, v in row.items() if v is not None})


# ----- read tasks -----


def read_file_block(path: Path, block: FileBlock) -> Iterator[pa.Table]:
    """The rows of one block of a file (see :func:`plan_file_blocks`)."""
    return encode_rows(block.number, _file_records(path, block))


def _file_records(path: Path, block: FileBlock) -> Iterator[Record]:
    if block.start >= 0:
        position = block.first
        with path.open("rb") as f:
            f.seek(block.start)
            remaining = block.end - block.start
            while remaining > 0:
                line = f.readline()
                if not line:
                    break
                remaining -= len(line)
                record = jsonl_record(position, line)
                if record is not None:
                    yield record
                    position += 1
        return
    end = block.first + block.count
    for record in open_source(path).records(skip=block.first):
        if record.position >= end:
            return
        yield record


def read_slice(
    dialect: BaseDialect,
    index: str,
    slice_id: int,
    slice_max: int,
    *,
    page_size: int = 500,
    source_excludes: Sequence[str] = (),
    include_vectors: bool = False,
    query: Mapping[str, Any] | None = None,
    max_restarts: int = 5,
) -> Iterator[pa.Table]:
    """The rows of one slice of a point-in-time scan of ``index`` (each hit a record with its
    ``_id`` as the source id). A lost point in time (a node restart) is read again from a new
    one, like :func:`es_neural.migrate.scan.restartable_scan`; hits already emitted are not
    emitted again."""
    return encode_rows(
        slice_id,
        _slice_records(
            dialect,
            index,
            slice_id,
            slice_max,
            page_size=page_size,
            source_excludes=source_excludes,
            include_vectors=include_vectors,
            query=query,
            max_restarts=max_restarts,
        ),
    )


def _slice_records(
    dialect: BaseDialect,
    index: str,
    slice_id: int,
    slice_max: int,
    *,
    page_size: int,
    source_excludes: Sequence[str],
    include_vectors: bool,
    query: Mapping[str, Any] | None,
    max_restarts: int,
) -> Iterator[Record]:
    from es_neural.migrate.scan import LOST_SCAN, ScanRetry, ScanSpec

    spec = ScanSpec(query, page_size, slice_id, slice_max, source_excludes, include_vectors)
    retry = ScanRetry(dialect, index, max_restarts)
    emitted: set[str] = set()
    while True:
        try:
            for hit in spec.open(dialect, index):
                doc_id = str(hit["_id"])
                if doc_id in emitted:
                    continue
                emitted.add(doc_id)
                yield Record(-1, hit.get("_source") or {}, source_id=doc_id)
            return
        except LOST_SCAN as exc:
            retry.after_loss(exc)
