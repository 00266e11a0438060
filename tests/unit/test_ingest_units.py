"""Pure parts of ingestion: sources, record preparation, checkpoint and dead-letter files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from es_neural.errors import InvalidInputError
from es_neural.ingest.prepare import Prepared, Rejected, content_hash, prepare_record
from es_neural.ingest.sources import (
    Record,
    csv_source,
    iterable_source,
    jsonl_source,
    open_source,
)
from es_neural.ingest.state import (
    Checkpoint,
    CheckpointStore,
    DeadLetterWriter,
    read_dead_letters,
)
from es_neural.text import DEFAULT_TEXT_FIELDS

RESERVED = ("embedding", "splade", "leaf_ids", "leaf_ancestors", "tree_version", "content_hash")


def _prep(fields: dict[str, object] | None, *, id_field: str | None = "id", **kw: object):
    record = Record(7, fields, error=None if fields is not None else "bad")
    return prepare_record(
        record,
        id_field=id_field,
        text_fields=DEFAULT_TEXT_FIELDS,
        reserved_fields=RESERVED,
        models_key="m1",
        **kw,  # type: ignore[arg-type]
    )


def test_jsonl_source_yields_every_line_with_reasons(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "x"}\n'
        b"\n"
        b"not json\n"
        b"[1, 2]\n"
        b'{"id": "b", "text": "\xff\xfe bad utf8"}\n'
        b'{"id": "c", "text": "y"}\n'
    )
    source = jsonl_source(path)
    records = list(source.records())
    assert [r.position for r in records] == [0, 1, 2, 3, 4]
    assert source.total == 5
    assert records[0].fields == {"id": "a", "text": "x"}
    assert records[1].fields is None and "invalid JSON" in (records[1].error or "")
    assert records[2].fields is None and "expected a JSON object" in (records[2].error or "")
    assert records[3].fields is None and "invalid UTF-8" in (records[3].error or "")
    assert records[4].fields == {"id": "c", "text": "y"}
    assert [r.position for r in source.records(skip=3)] == [3, 4]


def test_source_identity_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n')
    first = jsonl_source(path).identity
    assert jsonl_source(path).identity == first
    path.write_text('{"id": 1}\n{"id": 2}\n')
    assert jsonl_source(path).identity != first


def test_csv_source_and_open_source(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text('id,title,text\n1,Hello,"world, with comma"\n2,short\n')
    records = list(open_source(path).records())
    assert records[0].fields == {"id": "1", "title": "Hello", "text": "world, with comma"}
    assert records[1].fields is None and "columns" in (records[1].error or "")
    with pytest.raises(InvalidInputError):
        open_source(tmp_path / "docs.parquet")
    with pytest.raises(InvalidInputError):
        csv_source(tmp_path / "missing.csv")


def test_iterable_source_identity_is_content_based() -> None:
    docs = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}]
    assert iterable_source(docs).identity == iterable_source(list(docs)).identity
    assert iterable_source(docs).identity != iterable_source(docs[:1]).identity
    with pytest.raises(InvalidInputError):
        iterable_source(iter(docs))
    one_shot = iterable_source(iter(docs), identity="run-1")
    assert [r.fields for r in one_shot.records()] == docs


def test_prepare_accepts_a_good_document() -> None:
    out = _prep({"id": 42, "title": " T ", "text": "body", "year": 2020})
    assert isinstance(out, Prepared)
    assert out.doc_id == "42"
    assert out.text == "T\nbody"
    assert out.source == {"id": 42, "title": " T ", "text": "body", "year": 2020}
    assert out.content_hash == content_hash(out.source, "m1")
    assert out.content_hash != content_hash(out.source, "m2")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"id": "a", "text": {"nested": "x"}}, "must be a string, a number or a list"),
        ({"id": "a", "text": True}, "must be a string, a number or a list"),
        ({"id": "a", "title": ["x", {"y": 1}]}, "must be a string, a number or a list"),
        ({"text": "x"}, "missing id field"),
        ({"id": "", "text": "x"}, "is empty"),
        ({"id": 1.5, "text": "x"}, "string or integer"),
        ({"id": True, "text": "x"}, "string or integer"),
        ({"id": "x" * 600, "text": "x"}, "longer than 512 bytes"),
        ({"id": "a", "text": "x\ud800y"}, "invalid UTF-8"),
        ({"id": "a", "text": "x", "embedding": [1]}, "reserved"),
        ({"id": "a", "text": "x", "score": float("nan")}, "NaN"),
    ],
)
def test_prepare_rejects_with_a_reason(fields: dict[str, object], reason: str) -> None:
    out = _prep(fields)
    assert isinstance(out, Rejected)
    assert reason in out.reason


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"id": "a"}, ""),  # no text: prepared all the same, written without vectors
        ({"id": "a", "title": "", "text": "   "}, ""),
        ({"id": "a", "text": 12}, "12"),  # the one text rule (es_neural.text)
        ({"id": "a", "text": ["x"]}, "x"),
        ({"id": "a", "title": ["a", "b"], "text": "c"}, "a\nb\nc"),
    ],
)
def test_prepare_composes_the_text_by_the_one_rule(fields: dict[str, object], text: str) -> None:
    out = _prep(fields)
    assert isinstance(out, Prepared)
    assert out.text == text
    assert out.source == fields


def test_prepare_unreadable_record_and_size_limit() -> None:
    out = _prep(None)
    assert isinstance(out, Rejected) and out.stage == "read"
    big = _prep({"id": "a", "text": "x" * 1000}, max_doc_bytes=500)
    assert isinstance(big, Rejected) and "more than the limit" in big.reason


def test_ids_are_deterministic_without_an_id_field() -> None:
    a = _prep({"text": "same"}, id_field=None)
    b = _prep({"text": "same"}, id_field=None)
    c = _prep({"text": "other"}, id_field=None)
    assert isinstance(a, Prepared) and isinstance(b, Prepared) and isinstance(c, Prepared)
    assert a.doc_id == b.doc_id != c.doc_id


def test_checkpoint_round_trip_and_mismatch(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "cp" / "run.json")
    assert store.load(source="s", index="i") is None
    cp = Checkpoint(source="s", index="i").advanced(64, {"read": 64})
    cp = cp.advanced(128, {"read": 64, "unchanged": 3})
    store.save(cp)
    loaded = store.load(source="s", index="i")
    assert loaded is not None and loaded.position == 128
    assert loaded.counts == {"read": 128, "unchanged": 3}
    assert store.load(source="other", index="i") is None
    (tmp_path / "cp" / "run.json").write_text("{corrupt")
    assert store.load(source="s", index="i") is None


def test_dead_letters_are_durable_only_after_flush(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    writer = DeadLetterWriter(path)
    writer.add(position=1, doc_id="a", stage="validate", reason="why", record={"x": "\ud800"})
    assert read_dead_letters(path) == []
    writer.flush()
    writer.add(position=2, doc_id=None, stage="read", reason="bad", record="y" * 10_000)
    writer.flush()
    entries = read_dead_letters(path)
    assert [e["position"] for e in entries] == [1, 2]
    assert entries[0]["reason"] == "why"
    assert len(json.dumps(entries[1]["record"])) < 5000
    assert writer.count == 2
