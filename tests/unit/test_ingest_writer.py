"""The write stage's pure half (es_neural.ingest.writer): encoding, checks, counts, pickling.

The engine half (bulk writes, per-item retries, dead letters) runs against real engines in
tests/integration/test_ingest.py and test_migrate.py.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np
import pytest

from es_neural.dialects import dialect_class
from es_neural.dialects.base import FieldNames
from es_neural.encoders.base import FloatMatrix
from es_neural.errors import EsNeuralError
from es_neural.ingest.prepare import Prepared, content_hash
from es_neural.ingest.state import DeadLetter
from es_neural.ingest.writer import (
    BatchEncoder,
    EncodedBatch,
    WriteCounts,
    WriteResult,
    item_backoff_s,
)
from es_neural.settings import EngineKind, EngineSettings
from es_neural.text import document_text
from tests.support.fakes import HashingDense

ES = dialect_class(EngineKind.ELASTICSEARCH)(EngineSettings(url="http://127.0.0.1:1"))
FIELDS = FieldNames()


def _doc(i: int, **fields: object) -> Prepared:
    source = {"id": f"d{i}", **fields}
    return Prepared(i, f"d{i}", source, document_text(source), content_hash(source, "m"))


class PickyDense(HashingDense):
    """Really encodes, but fails on any batch holding the word "poison"."""

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        if any("poison" in t for t in texts):
            raise RuntimeError("cannot encode poison")
        return super().encode_documents(texts)


class WrongShapeDense(HashingDense):
    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        return np.zeros((len(texts), 3), dtype=np.float32)


def test_encode_assembles_neural_fields_and_keeps_the_source() -> None:
    dense = HashingDense()
    docs = [_doc(0, title="A", text="river water"), _doc(1, text="volcano ash", year=2020)]
    batch = BatchEncoder(ES, FIELDS, dense=dense).encode(docs)
    assert batch.ids == ("d0", "d1")
    assert batch.positions == {"d0": 0, "d1": 1}
    first = batch.docs[0].source
    assert first["title"] == "A" and first["text"] == "river water"
    assert first[FIELDS.content_hash] == docs[0].content_hash
    expected = dense.encode_documents(["A\nriver water"])[0]
    assert np.allclose(first[FIELDS.dense], expected)
    assert FIELDS.sparse not in first and FIELDS.leaf_ids not in first
    assert batch.counts.encoded == 2 and batch.counts.without_text == 0
    assert batch.dead_letters == () and batch.counts.dead_lettered == 0


def test_a_document_without_text_is_written_without_vectors_and_counted() -> None:
    docs = [_doc(0, text="words here"), _doc(1, title="", year=1999), _doc(2, text="   ")]
    batch = BatchEncoder(ES, FIELDS, dense=HashingDense()).encode(docs)
    assert batch.ids == ("d0", "d1", "d2")  # in order, none lost
    bare = batch.docs[1].source
    assert bare == {
        "id": "d1",
        "title": "",
        "year": 1999,
        FIELDS.content_hash: docs[1].content_hash,
    }
    assert FIELDS.dense not in batch.docs[2].source
    assert (batch.counts.encoded, batch.counts.without_text) == (1, 2)


def test_a_failing_document_is_isolated_and_dead_lettered() -> None:
    docs = [_doc(0, text="fine"), _doc(1, text="poison pill"), _doc(2, text="also fine")]
    rejected = [DeadLetter(7, None, "validate", "bad record")]
    batch = BatchEncoder(ES, FIELDS, dense=PickyDense()).encode(docs, rejected=rejected)
    assert batch.ids == ("d0", "d2")
    stages = [(d.stage, d.doc_id) for d in batch.dead_letters]
    assert stages == [("validate", None), ("encode", "d1")]
    assert "cannot encode poison" in batch.dead_letters[1].reason
    assert batch.dead_letters[1].record == docs[1].source
    assert (batch.counts.encoded, batch.counts.dead_lettered) == (2, 2)


def test_when_every_document_fails_the_encoder_is_broken_and_the_error_raised() -> None:
    with pytest.raises(RuntimeError, match="poison"):
        BatchEncoder(ES, FIELDS, dense=PickyDense()).encode([_doc(3, text="poison")])
    with pytest.raises(RuntimeError, match="poison"):
        docs = [_doc(1, text="poison a"), _doc(2, text="poison b")]
        BatchEncoder(ES, FIELDS, dense=PickyDense()).encode(docs)
    with pytest.raises(ValueError, match=r"\(1, 3\)"):  # a wrong shape, checked per document
        BatchEncoder(ES, FIELDS, dense=WrongShapeDense()).encode(
            [_doc(0, text="a"), _doc(1, text="b")]
        )


def test_our_own_errors_are_not_swallowed() -> None:
    class Broken(HashingDense):
        def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
            raise EsNeuralError("model files missing")

    with pytest.raises(EsNeuralError, match="model files missing"):
        BatchEncoder(ES, FIELDS, dense=Broken()).encode([_doc(0, text="x")])


def test_truncation_is_counted() -> None:
    docs = [_doc(0, text="word " * 100), _doc(1, text="short")]
    batch = BatchEncoder(ES, FIELDS, dense=HashingDense()).encode(docs)
    assert batch.counts.truncated == 1


def test_an_encoded_batch_and_a_result_pickle() -> None:
    batch = BatchEncoder(ES, FIELDS, dense=PickyDense()).encode(
        [_doc(0, text="x"), _doc(1, text="poison")]
    )
    again = pickle.loads(pickle.dumps(batch))
    assert isinstance(again, EncodedBatch) and again == batch
    result = WriteResult(batch.counts, batch.dead_letters)
    assert pickle.loads(pickle.dumps(result)) == result


def test_counts_and_results_add_up() -> None:
    a = WriteCounts(encoded=2, written=2, retries=1, encode_s=0.5)
    b = WriteCounts(unchanged=3, written=1, dead_lettered=1, write_s=0.25)
    total = a + b
    assert total == WriteCounts(
        unchanged=3, encoded=2, written=3, dead_lettered=1, retries=1, encode_s=0.5, write_s=0.25
    )
    assert WriteCounts.total([a, b, WriteCounts()]) == total
    assert total.as_dict()["written"] == 3
    letter = DeadLetter(0, "x", "index", "refused")
    merged = WriteResult(a) + WriteResult(b, (letter,))
    assert merged.counts == total and merged.failed_ids == ("x",)


def test_the_one_backoff_formula() -> None:
    assert [item_backoff_s(n) for n in (1, 2, 3, 7, 20)] == [0.2, 0.4, 0.8, 10.0, 10.0]


def test_an_ingest_report_from_summed_worker_counts() -> None:
    from es_neural.ingest.pipeline import IngestReport

    workers = [
        WriteCounts(encoded=3, written=3, truncated=1, encode_s=1.0, write_s=0.5),
        WriteCounts(unchanged=2, without_text=1, written=1, dead_lettered=2, retries=4),
    ]
    report = IngestReport.from_counts(
        WriteCounts.total(workers),
        index="i",
        source="s",
        read=9,
        resumed_from=0,
        elapsed_s=2.0,
        dead_letter_path="d",
        checkpoint_path="c",
    )
    assert (report.read, report.indexed, report.unchanged, report.dead_lettered) == (9, 4, 2, 2)
    assert (report.truncated, report.retries, report.without_text) == (1, 4, 1)
    assert report.docs_per_s == 3.0  # (indexed + unchanged) / elapsed
    assert ("written without text (no vectors)", "1") in report.rows()
