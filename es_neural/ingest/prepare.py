"""Turning a raw record into a document to encode, or into a rejection with a reason.

Pure functions: no model, no engine. Ids are deterministic (the id field, else a hash of the
document), and every document carries a content hash that covers its fields *and* the models
and tree that will encode it, so re-ingesting an unchanged document is skipped, while a new model
or tree re-encodes it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from es_neural.ingest.sources import Record

__all__ = ["Prepared", "Rejected", "content_hash", "prepare_record"]

#: Elasticsearch and OpenSearch refuse ids longer than 512 bytes.
MAX_ID_BYTES = 512


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


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def content_hash(source: Mapping[str, Any], models_key: str) -> str:
    return hashlib.sha256(_canonical(source) + b"|" + models_key.encode()).hexdigest()[:32]


def _bad_unicode(value: Any) -> str | None:
    """The path of the first string that cannot be encoded as UTF-8 (lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return ""
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or _bad_unicode(key) is not None:
                return f"key {key!r}"
            inner = _bad_unicode(item)
            if inner is not None:
                return f"{key}.{inner}" if inner else key
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            inner = _bad_unicode(item)
            if inner is not None:
                return f"[{i}].{inner}" if inner else f"[{i}]"
    return None


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


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
    if _bad_unicode(doc_id) is not None:
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
    bad = _bad_unicode(fields)
    if bad is not None:
        return Rejected(
            record.position, None, "validate", f"invalid UTF-8 (lone surrogate) in {bad}", None
        )
    doc_id = _doc_id(record, fields, id_field)
    if isinstance(doc_id, Rejected):
        return doc_id

    def reject(reason: str) -> Rejected:
        return Rejected(record.position, doc_id, "validate", reason, dict(fields))

    clashes = sorted(set(fields) & set(reserved_fields))
    if clashes:
        return reject(f"field(s) {clashes} are reserved for es-neural's own data")
    if _non_finite(fields):
        return reject("a number is NaN or infinite (not valid JSON for the engine)")
    parts: list[str] = []
    for name in text_fields:
        value = fields.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            return reject(f"field {name!r} must be a string, got {type(value).__name__}")
        if value.strip():
            parts.append(value.strip())
    if not parts:
        return reject(f"no text to encode: fields {list(text_fields)} are missing or empty")
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
        text="\n".join(parts),
        content_hash=content_hash(source, models_key),
    )
