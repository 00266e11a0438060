"""Turning a raw record into a document to encode, or into a rejection with a reason.

Pure functions: no model, no engine. Ids are deterministic (the id field, else a hash of the
document), and every document carries a content hash that covers its fields *and* the models
and tree that will encode it, so re-ingesting an unchanged document is skipped, while a new model
or tree re-encodes it. A document's text is :func:`es_neural.text.document_text` of its text
fields; a document without text is prepared all the same (the write stage writes it without
vectors), while a text field holding an object or a boolean is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from es_neural.ingest.sources import Record
from es_neural.ingest.state import DeadLetter
from es_neural.text import document_text, is_text_value

__all__ = ["Prepared", "Rejected", "content_hash", "prepare_record"]

#: Elasticsearch and OpenSearch refuse ids longer than 512 bytes.
MAX_ID_BYTES = 512
#: Deepest nesting of objects and arrays accepted (the engines' parsers stop near 1,000 levels
#: and their mappings at 20 object levels; this also ends the walk of a reference cycle).
MAX_DEPTH = 100
#: Larger integers are refused (Python cannot even serialise ones past ~14,000 bits).
MAX_INT_BITS = 4096


@dataclass(frozen=True, slots=True)
class Prepared:
    position: int
    doc_id: str
    source: Mapping[str, Any]
    text: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class Rejected:
    position: int
    doc_id: str | None
    stage: str
    reason: str
    record: Any

    def dead_letter(self) -> DeadLetter:
        return DeadLetter(self.position, self.doc_id, self.stage, self.reason, self.record)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def content_hash(source: Mapping[str, Any], models_key: str) -> str:
    return hashlib.sha256(_canonical(source) + b"|" + models_key.encode()).hexdigest()[:32]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _show(key: Any) -> str:
    """A field name for a reason: short, and safe for any key (even one that cannot be printed)."""
    if not isinstance(key, str):
        return f"<{type(key).__name__}>"
    return repr(key[:40] + ("..." if len(key) > 40 else ""))


def _json_problem(fields: Mapping[str, Any]) -> str | None:
    """Why ``fields`` is not a JSON document the engines can take, or ``None`` when it is.

    One iterative walk (no recursion, so no nesting can overflow the stack): string keys, valid
    UTF-8 (no lone surrogates), finite floats, integers small enough to serialise, JSON types
    only, at most :data:`MAX_DEPTH` levels (which also stops reference cycles).
    """
    stack: list[tuple[Any, str, int]] = [(fields, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        where = path[:200] or "the document"
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str):
            if not _utf8(value):
                return f"invalid UTF-8 (lone surrogate) in {where}"
        elif isinstance(value, int):
            if value.bit_length() > MAX_INT_BITS:
                return f"integer in {where} is larger than {MAX_INT_BITS} bits"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return "a number is NaN or infinite (not valid JSON for the engine)"
        elif isinstance(value, Mapping | list | tuple):
            if depth >= MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels (or a reference cycle) at {where}"
            if isinstance(value, Mapping):
                for key, item in value.items():
                    if not isinstance(key, str) or not _utf8(key):
                        return f"field name {_show(key)} in {where} is not a valid UTF-8 string"
                    stack.append((item, f"{path}.{key[:40]}" if path else key[:40], depth + 1))
            else:
                for i, item in enumerate(value):
                    stack.append((item, f"{path}[{i}]", depth + 1))
        else:
            return f"{where} holds a {type(value).__name__}, which is not a JSON value"
    return None


def _doc_id(record: Record, fields: Mapping[str, Any], id_field: str | None) -> str | Rejected:
    def reject(reason: str) -> Rejected:
        return Rejected(record.position, None, "validate", reason, dict(fields))

    if record.source_id is not None:
        return record.source_id
    if id_field is None or id_field not in fields:
        if id_field is not None and id_field != "_id":
            return reject(f"missing id field {id_field!r}")
        return "h" + hashlib.sha256(_canonical(fields)).hexdigest()[:31]
    raw = fields[id_field]
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return reject(
            f"id field {id_field!r} must be a string or integer, got {type(raw).__name__}"
        )
    doc_id = str(raw).strip()
    if not doc_id:
        return reject(f"id field {id_field!r} is empty")
    if not _utf8(doc_id):
        return reject(f"id field {id_field!r} is not valid UTF-8")
    if len(doc_id.encode("utf-8")) > MAX_ID_BYTES:
        return reject(f"id is longer than {MAX_ID_BYTES} bytes")
    return doc_id


def prepare_record(
    record: Record,
    *,
    id_field: str | None,
    text_fields: Sequence[str],
    reserved_fields: Sequence[str],
    models_key: str,
    max_doc_bytes: int = 5_000_000,
) -> Prepared | Rejected:
    """Validate one record; return the document to encode or the reason it cannot be."""
    if record.fields is None:
        return Rejected(record.position, None, "read", record.error or "unreadable", record.raw)
    fields = record.fields
    if not isinstance(fields, Mapping):
        reason = f"expected a mapping of fields, got {type(fields).__name__}"
        return Rejected(record.position, None, "read", reason, None)
    problem = _json_problem(fields)
    if problem is not None:
        # The record itself is not kept: it may not even be printable (cycles, huge numbers).
        return Rejected(record.position, None, "validate", problem, None)
    doc_id = _doc_id(record, fields, id_field)
    if isinstance(doc_id, Rejected):
        return doc_id

    def reject(reason: str) -> Rejected:
        return Rejected(record.position, doc_id, "validate", reason, dict(fields))

    clashes = sorted(set(fields) & set(reserved_fields))
    if clashes:
        return reject(f"field(s) {clashes} are reserved for es-neural's own data")
    for name in text_fields:
        if not is_text_value(value := fields.get(name)):
            return reject(
                f"text field {name!r} must be a string, a number or a list of them, "
                f"got {type(value).__name__}"
            )
    source = {k: v for k, v in fields.items() if k != "_id"}
    try:
        encoded = _canonical(source)
    except (TypeError, ValueError) as exc:
        return reject(f"not JSON-serialisable: {exc}")
    if len(encoded) > max_doc_bytes:
        return reject(f"document is {len(encoded)} bytes, more than the limit of {max_doc_bytes}")
    return Prepared(
        position=record.position,
        doc_id=doc_id,
        source=source,
        text=document_text(source, text_fields),
        content_hash=content_hash(source, models_key),
    )
