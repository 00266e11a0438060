"""Where documents come from: JSONL, CSV, Python iterables, an existing index.

Every source yields :class:`Record` values in a deterministic order, one per input item, each
carrying its position (for checkpoints) and either a mapping of fields or the reason the item
could not even be read (bad JSON, invalid UTF-8): such records are dead-lettered, never dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from es_neural.errors import InvalidInputError

if TYPE_CHECKING:
    from es_neural.dialects.base import BaseDialect

__all__ = [
    "Record",
    "Source",
    "csv_source",
    "index_source",
    "iterable_source",
    "jsonl_record",
    "jsonl_source",
    "open_source",
]


@dataclass(frozen=True, slots=True)
class Record:
    """One input item. ``fields`` is None when the item could not be parsed (see ``error``)."""

    position: int
    fields: Mapping[str, Any] | None
    error: str | None = None
    raw: str | None = None
    #: The id the source itself gives (the ``_id`` of an index hit), if any.
    source_id: str | None = None


@dataclass(frozen=True)
class Source:
    """A re-readable stream of records plus an identity used to key checkpoints."""

    identity: str
    description: str
    _factory: Any = field(repr=False)
    total: int | None = None

    def records(self, *, skip: int = 0) -> Iterator[Record]:
        """Records from position ``skip`` on (positions are 0-based and stable across reads)."""
        for record in self._factory():
            if record.position >= skip:
                yield record


#: The start of a line kept in a read error (the whole line may be megabytes).
_MAX_RAW_CHARS = 4000


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(";")[0][:200]


def _file_identity(path: Path) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def jsonl_record(position: int, raw_line: bytes) -> Record | None:
    """One line of a JSONL file as the record at ``position`` (a read error when it is not a
    UTF-8 JSON object); ``None`` for a blank line, which takes no position."""
    if not raw_line.strip():
        return None
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw_line.decode("utf-8", errors="replace").rstrip("\n")
        return Record(position, None, f"invalid UTF-8 at byte {exc.start}", text)
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return Record(position, None, f"invalid JSON: {exc.msg}", line.rstrip("\n"))
    except (ValueError, RecursionError) as exc:  # huge integers, deep nesting
        reason = f"invalid JSON: {_short_reason(exc)}"
        return Record(position, None, reason, line[:_MAX_RAW_CHARS].rstrip("\n"))
    if isinstance(value, dict):
        return Record(position, value)
    reason = f"expected a JSON object, got {type(value).__name__}"
    return Record(position, None, reason, line.rstrip("\n"))


def jsonl_source(path: str | os.PathLike[str]) -> Source:
    """One JSON object per line; blank lines are skipped (and do not count as positions)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such file: {p}")

    def factory() -> Iterator[Record]:
        position = 0
        with p.open("rb") as f:
            for raw_line in f:
                record = jsonl_record(position, raw_line)
                if record is not None:
                    yield record
                    position += 1

    return Source(_file_identity(p), str(p), factory, total=_count_lines(p))


def csv_source(path: str | os.PathLike[str], *, delimiter: str = ",") -> Source:
    """A CSV file with a header row; every value is a string."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such file: {p}")

    def factory() -> Iterator[Record]:
        with p.open("rb") as raw:
            data = raw.read()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("utf-8-sig", errors="surrogateescape")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        for position, row in enumerate(reader):
            if len(row) != len(header):
                reason = f"expected {len(header)} columns, got {len(row)}"
                yield Record(position, None, reason, delimiter.join(row))
                continue
            yield Record(position, dict(zip(header, row, strict=True)))

    with p.open("rb") as f:
        total = max(sum(1 for _ in f) - 1, 0)
    return Source(_file_identity(p), str(p), factory, total=total)


def iterable_source(
    items: Iterable[Mapping[str, Any]], *, identity: str | None = None, total: int | None = None
) -> Source:
    """Documents from Python. A list can be re-read; a one-shot iterator can only be resumed by
    re-supplying it (give ``identity`` so the checkpoint can be found again)."""
    materialised: Sequence[Mapping[str, Any]] | None = (
        items if isinstance(items, Sequence) else None
    )
    if identity is None:
        if materialised is None:
            raise InvalidInputError(
                "a one-shot iterable needs an explicit identity for checkpoints"
            )
        digest = hashlib.sha256()
        for position, item in enumerate(materialised):
            try:
                text = json.dumps(item, sort_keys=True, default=str)
            except (TypeError, ValueError, RecursionError):
                # Not JSON (mixed key types, cycles, huge numbers): prepare_record rejects it.
                text = f"<unserialisable {type(item).__name__} at {position}>"
            digest.update(text.encode("utf-8", "replace"))
        identity = digest.hexdigest()[:16]
    if materialised is not None and total is None:
        total = len(materialised)

    def factory() -> Iterator[Record]:
        for position, item in enumerate(items):
            if isinstance(item, Mapping):
                yield Record(position, item)
            else:
                yield Record(
                    position,
                    None,
                    f"expected a mapping, got {type(item).__name__}",
                    repr(item)[:200],
                )

    return Source(identity, "python iterable", factory, total=total)


def index_source(
    dialect: BaseDialect,
    index: str,
    *,
    fields: Sequence[str] | None = None,
    query: Mapping[str, Any] | None = None,
    page_size: int = 500,
) -> Source:
    """Documents of an existing index, read through a point in time + search_after."""
    total = dialect.count(index, query)

    def factory() -> Iterator[Record]:
        hits = dialect.scan(
            index, query=query, page_size=page_size, source=list(fields) if fields else True
        )
        for position, hit in enumerate(hits):
            yield Record(position, hit.get("_source", {}), source_id=str(hit["_id"]))

    identity = hashlib.sha256(
        f"{dialect.engine}|{','.join(dialect.settings.urls)}|{index}".encode()
    ).hexdigest()
    return Source(identity[:16], f"{dialect.engine.value}:{index}", factory, total=total)


def open_source(path: str | os.PathLike[str]) -> Source:
    """A file source chosen by extension (.jsonl/.json/.ndjson or .csv/.tsv)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return jsonl_source(p)
    if suffix == ".csv":
        return csv_source(p)
    if suffix == ".tsv":
        return csv_source(p, delimiter="\t")
    raise InvalidInputError(f"cannot tell the format of {p}: use .jsonl, .csv or .tsv")
