"""Reading the inputs of tree building and training: a JSONL corpus, BEIR queries and qrels.

Document texts are composed exactly as ingestion composes them (the one rule,
:func:`es_neural.text.document_text`), so the embeddings a tree is built on are the embeddings
ingestion computes (and the encoder cache returns) for the same documents.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from es_neural.errors import InvalidInputError
from es_neural.text import DEFAULT_TEXT_FIELDS, document_text

__all__ = ["Corpus", "read_corpus", "read_qrels", "read_queries", "read_titled_corpus"]


@dataclass(frozen=True, slots=True)
class Corpus:
    ids: tuple[str, ...]
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path}:{number}: not JSON: {exc}") from None
            if not isinstance(record, dict):
                raise InvalidInputError(f"{path}:{number}: expected an object")
            yield number, record


def _record_id(record: dict[str, object], id_field: str | None, where: str) -> str:
    for name in (id_field,) if id_field else ("_id", "id"):
        value = record.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    raise InvalidInputError(f"{where}: no document id (field {id_field or '_id / id'})")


def read_corpus(
    path: str | os.PathLike[str],
    *,
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    id_field: str | None = None,
) -> Corpus:
    """Ids and texts of a JSONL corpus; records without text are skipped, a repeated id keeps
    its last record (as ingestion does)."""
    p = Path(path)
    texts: dict[str, str] = {}
    for number, record in _jsonl(p):
        doc_id = _record_id(record, id_field, f"{p}:{number}")
        text = document_text(record, text_fields)
        if text:
            texts.pop(doc_id, None)
            texts[doc_id] = text
    if not texts:
        raise InvalidInputError(f"{p} holds no document with text in {list(text_fields)}")
    return Corpus(tuple(texts), tuple(texts.values()))


def read_titled_corpus(
    path: str | os.PathLike[str],
    *,
    title_field: str = "title",
    body_field: str = "text",
    id_field: str | None = None,
) -> list[tuple[str, str, str]]:
    """``(doc id, title, body)`` of a JSONL corpus, each part composed by the text rule (``""``
    when absent); ids as :func:`read_corpus` reads them (a repeated id keeps its last record,
    records with neither part are skipped). The pseudo-query builders read this."""
    p = Path(path)
    parts: dict[str, tuple[str, str]] = {}
    for number, record in _jsonl(p):
        doc_id = _record_id(record, id_field, f"{p}:{number}")
        title = document_text(record, (title_field,))
        body = document_text(record, (body_field,))
        if title or body:
            parts.pop(doc_id, None)
            parts[doc_id] = (title, body)
    return [(doc_id, title, body) for doc_id, (title, body) in parts.items()]


def read_queries(path: str | os.PathLike[str]) -> dict[str, str]:
    """BEIR ``queries.jsonl``: query id -> text."""
    p = Path(path)
    out: dict[str, str] = {}
    for number, record in _jsonl(p):
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"{p}:{number}: query without text")
        out[_record_id(record, None, f"{p}:{number}")] = text
    return out


def read_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """BEIR qrels TSV (header ``query-id corpus-id score``): query id -> {doc id: grade}."""
    p = Path(path)
    out: dict[str, dict[str, int]] = {}
    with p.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(rows, 1):
            if not row or (number == 1 and not row[-1].strip().lstrip("-").isdigit()):
                continue
            if len(row) < 3:
                raise InvalidInputError(f"{p}:{number}: expected query-id, corpus-id, score")
            out.setdefault(row[0], {})[row[1]] = int(row[2])
    return out
