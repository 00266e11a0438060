"""Ingestion against real engines: exact counts, engine restart, resume, dead letters,
fingerprint refusal. Runs once per engine (see tests/conftest.py)."""

from __future__ import annotations

import pickle
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from es_neural.dialects import BaseDialect
from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.engines import LocalEngines
from es_neural.errors import ModelMismatchError
from es_neural.ingest.pipeline import IngestInterrupted, IngestOptions
from es_neural.ingest.prepare import Prepared, content_hash
from es_neural.ingest.sources import iterable_source
from es_neural.ingest.state import DeadLetterWriter, read_dead_letters
from es_neural.ingest.writer import WriteCounts, WriteStage
from es_neural.neural_index import NeuralIndex
from es_neural.settings import Settings
from es_neural.text import document_text
from tests.support.corpus import make_docs
from tests.support.fakes import HashingDense
from tests.support.node_faults import kill_node

pytestmark = [pytest.mark.engine, pytest.mark.models]


class CountingDense:
    """A real dense encoder that counts the documents it encodes (not a mock: it encodes)."""

    def __init__(self, inner: DenseEncoder) -> None:
        self.inner = inner
        self.encoded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded += len(texts)
        return self.inner.encode_documents(texts)


def _index(
    engine_settings: Settings,
    dialect: BaseDialect,
    name: str,
    dense: Any,
    sparse: SparseEncoder | None,
) -> NeuralIndex:
    return NeuralIndex(
        name, settings=engine_settings, dialect=dialect, dense=dense, sparse=sparse,
        use_sparse=sparse is not None,
    )  # fmt: skip


def _options(tmp_path: Path, **kw: Any) -> IngestOptions:
    base: dict[str, Any] = {
        "progress": False,
        "batch_size": 16,
        "checkpoint_path": tmp_path / "checkpoint.json",
        "dead_letter_path": tmp_path / "dead.jsonl",
    }
    base.update(kw)
    return IngestOptions(**base)


def _all_ids(dialect: BaseDialect, index: str) -> list[str]:
    return [hit["_id"] for hit in dialect.scan(index, source=False)]


def test_ingest_end_to_end_counts_exactly(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    embedded_dense: DenseEncoder,
    embedded_sparse: SparseEncoder,
    tmp_path: Path,
) -> None:
    idx = _index(engine_settings, dialect, index_name, embedded_dense, embedded_sparse)
    docs = make_docs(150)
    report = idx.ingest(docs, options=_options(tmp_path))
    assert (report.read, report.indexed, report.dead_lettered) == (150, 150, 0)
    assert dialect.count(index_name) == 150
    ids = _all_ids(dialect, index_name)
    assert sorted(ids) == sorted(d["id"] for d in docs)
    # the stored document has every neural field and its source fields untouched
    stored = dialect.get_documents(index_name, ["d7"])["d7"]
    assert stored["text"] == docs[7]["text"] and stored["year"] == docs[7]["year"]
    assert stored["content_hash"]
    # a second run writes nothing: every document is unchanged
    again = idx.ingest(docs, options=_options(tmp_path))
    assert (again.indexed, again.unchanged) == (0, 150)
    # one changed document is re-encoded, the rest skipped
    docs[3] = {**docs[3], "text": docs[3]["text"] + " changed"}
    third = idx.ingest(docs, options=_options(tmp_path))
    assert (third.indexed, third.unchanged) == (1, 149)
    assert dialect.count(index_name) == 150
    # the BM25 leg finds the unique marker; the sparse and dense legs answer too
    response = idx.search("marker42", size=3, explain=True)
    assert response.hits[0].id == "d42"
    assert response.hits[0].explain is not None
    assert response.hits[0].explain.legs["bm25"] is not None
    # a portable filter on an ordinary source field restricts every leg
    years = {d["id"]: d["year"] for d in docs}
    filtered = idx.search(
        "alpha river", size=50, window=50, filter={"range": {"field": "year", "gte": 2015}}
    )
    assert filtered.hits
    assert all(years[h.id] >= 2015 for h in filtered.hits)
    assert set(filtered.leg_totals) == {"bm25", "dense", "sparse"}


def test_engine_restart_during_ingest_loses_nothing(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    embedded_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    engine = dialect.engine
    manager = LocalEngines(engine_settings)
    idx = _index(engine_settings, dialect, index_name, embedded_dense, None)
    idx.ensure()
    docs = make_docs(600, seed=1)
    restarted = threading.Event()
    problems: list[BaseException] = []

    def restart_when_writing() -> None:
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if dialect.count(index_name) > 0:
                        break
                except Exception:
                    pass
                time.sleep(0.05)
            kill_node(manager, engine, 0)
            restarted.set()
            manager.up(engine)
        except BaseException as exc:  # reported by the test below
            problems.append(exc)

    thread = threading.Thread(target=restart_when_writing)
    thread.start()
    report = idx.ingest(docs, options=_options(tmp_path, batch_size=8, retry_deadline_s=240))
    thread.join(timeout=300)
    assert not problems, problems
    assert restarted.is_set(), "the engine was never restarted during the ingest"
    dialect.refresh(index_name)
    assert report.dead_lettered == 0
    assert dialect.count(index_name) == 600
    ids = _all_ids(dialect, index_name)
    assert len(ids) == len(set(ids)) == 600


def _interrupting(docs: list[dict[str, Any]], after: int) -> Iterator[Mapping[str, Any]]:
    for i, doc in enumerate(docs):
        if i == after:
            raise KeyboardInterrupt
        yield doc


def test_resume_after_interruption_does_not_re_encode(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    embedded_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    docs = make_docs(200, seed=2)
    counting = CountingDense(embedded_dense)
    idx = _index(engine_settings, dialect, index_name, counting, None)
    opts = _options(tmp_path, batch_size=20)
    with pytest.raises(IngestInterrupted) as caught:
        idx.ingest(iterable_source(_interrupting(docs, 130), identity="run"), options=opts)
    first = counting.encoded
    assert caught.value.report.interrupted
    assert 100 <= first <= 130  # finished batches (and the one in flight) were written
    done = dialect.count(index_name)
    assert done >= 100
    report = idx.ingest(iterable_source(iter(docs), identity="run"), options=opts)
    assert report.resumed_from >= 100
    assert counting.encoded - first == 200 - report.resumed_from  # nothing encoded twice
    dialect.refresh(index_name)
    assert dialect.count(index_name) == 200
    assert sorted(_all_ids(dialect, index_name)) == sorted(d["id"] for d in docs)


def _fuzzed_bad(rng: random.Random, n: int) -> list[Any]:
    kinds: list[Any] = [
        lambda i: {"id": f"bad{i}", "text": {"nested": "object"}},  # not text
        lambda i: {"id": f"bad{i}", "title": True, "text": "a boolean title"},
        lambda i: {"id": f"bad{i}", "text": "x\udcff" + "y" * rng.randint(0, 50)},
        lambda i: {"id": "", "text": "empty id"},
        lambda i: {"id": {"nested": i}, "text": "dict id"},
        lambda i: {"id": f"bad{i}", "text": "reserved", "embedding": [1.0]},
        lambda i: {"id": f"bad{i}", "text": "nan", "score": float("nan")},
        lambda i: "not a mapping",
        lambda i: {"id": "z" * rng.randint(513, 900), "text": "long id"},
        lambda i: {"id": f"bad{i}", "text": "wrong type for year", "year": "not-a-number"},
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def _fuzzed_odd(rng: random.Random, n: int) -> tuple[list[Any], list[Any]]:
    """Documents once refused by ingestion (no text, a number or a list as text) that the one
    text rule now takes: ``(without_text, with_text)``."""
    bare = [{"id": f"bare{i}", "year": 2000 + i} for i in range(n)]
    bare += [{"id": f"blank{i}", "title": "", "text": "   "} for i in range(n)]
    texts = [{"id": f"num{i}", "text": rng.randint(0, 10**6)} for i in range(n)]
    texts += [{"id": f"list{i}", "title": ["a", "list"], "text": ""} for i in range(n)]
    return bare, texts


def test_fuzzed_bad_documents_are_dead_lettered_with_reasons(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    embedded_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    rng = random.Random(3)
    good = make_docs(60, seed=3, prefix="g")
    idx = _index(engine_settings, dialect, index_name, embedded_dense, None)
    # "year" mapped as an integer so a wrong type fails inside the engine (per-item 400)
    idx.ensure()
    dialect.put_properties(index_name, {"year": {"type": "integer"}})
    bad = _fuzzed_bad(rng, 40)
    bare, texts = _fuzzed_odd(rng, 3)
    mixed: list[Any] = good + bad + bare + texts
    rng.shuffle(mixed)
    # very long documents are truncated to the model window, counted, and still indexed
    long_doc = {"id": "long", "text": "word " * 5000}
    mixed.append(long_doc)
    report = idx.ingest(iterable_source(mixed, identity="fuzz"), options=_options(tmp_path))
    assert report.read == len(mixed)
    assert report.indexed == len(good) + 1 + len(bare) + len(texts)
    assert report.dead_lettered == len(bad)
    assert report.truncated >= 1
    dialect.refresh(index_name)
    assert dialect.count(index_name) == len(good) + 1 + len(bare) + len(texts)
    letters = read_dead_letters(tmp_path / "dead.jsonl")
    assert len(letters) == len(bad)
    assert all(entry["reason"] for entry in letters)
    stages = {entry["stage"] for entry in letters}
    assert stages == {"read", "validate", "index"}
    index_failures = [e for e in letters if e["stage"] == "index"]
    assert index_failures and all(e["error_type"] for e in index_failures)
    # documents without text: written without vectors, counted, nothing lost
    assert report.without_text == len(bare)
    ids = [d["id"] for d in bare]
    stored = dialect.get_documents(index_name, ids)
    assert set(stored) == set(ids)
    assert all("embedding" not in s and s["content_hash"] for s in stored.values())
    assert stored["bare1"]["year"] == 2001
    # numbers and lists are text by the one rule: encoded
    vectors = dialect.get_documents(index_name, [d["id"] for d in texts], fields=["content_hash"])
    assert len(vectors) == len(texts)
    assert dialect.count(index_name, {"exists": {"field": "embedding"}}) == (
        len(good) + 1 + len(texts)
    )


def test_fingerprint_mismatch_is_refused(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    embedded_dense: DenseEncoder,
    tiny_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    _index(engine_settings, dialect, index_name, embedded_dense, None).ingest(
        make_docs(5), options=_options(tmp_path)
    )
    other = _index(engine_settings, dialect, index_name, tiny_dense, None)
    with pytest.raises(ModelMismatchError, match="dense"):
        other.ingest(make_docs(5), options=_options(tmp_path))
    with pytest.raises(ModelMismatchError):
        other.search("alpha")
    assert dialect.count(index_name) == 5


def test_the_write_stage_in_two_steps_with_the_batch_crossing_a_process_boundary(
    engine_settings: Settings, dialect: BaseDialect, index_name: str, tmp_path: Path
) -> None:
    """What a scale-out worker does: encode here, pickle, write there; counts add up."""
    dense = HashingDense()
    info = _index(engine_settings, dialect, index_name, dense, None).ensure()
    dialect.put_properties(index_name, {"year": {"type": "integer"}})
    sources: list[dict[str, Any]] = [
        {"title": "Rivers", "text": "water flows down", "year": 2001},
        {"text": ["a", "list", 3]},
        {"year": 1999},  # no text: written without vectors
        {"text": "refused by the engine", "year": "not-a-number"},
    ]
    docs = [
        Prepared(i, f"w{i}", src, document_text(src), content_hash(src, "m"))
        for i, src in enumerate(sources)
    ]
    dead = DeadLetterWriter(tmp_path / "dead.jsonl")
    stage = WriteStage.create(dialect, index_name, info.fields, dense=dense, dead_letters=dead)
    todo, skipped = stage.drop_unchanged(docs)
    assert len(todo) == 4 and skipped == WriteCounts()
    batch = pickle.loads(pickle.dumps(stage.encode(todo)))
    result = stage.write(batch)
    c = result.counts
    assert (c.encoded, c.without_text, c.written, c.dead_lettered) == (3, 1, 3, 1)
    assert result.failed_ids == ("w3",)
    (letter,) = read_dead_letters(tmp_path / "dead.jsonl")  # flushed before write returned
    assert (letter["doc_id"], letter["stage"], letter["position"]) == ("w3", "index", 3)
    assert letter["error_type"] and "embedding" not in letter["record"]
    dialect.refresh(index_name)
    assert sorted(_all_ids(dialect, index_name)) == ["w0", "w1", "w2"]
    assert dialect.count(index_name, {"exists": {"field": "embedding"}}) == 2
    # run again: the written documents are unchanged, the refused one is tried (and refused) again
    again = stage.run(docs)
    assert (again.counts.unchanged, again.counts.written, again.counts.dead_lettered) == (3, 0, 1)
    total = result + again
    assert total.counts.written == 3 and total.failed_ids == ("w3", "w3")
