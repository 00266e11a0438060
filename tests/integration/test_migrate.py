"""`es-neural migrate` against real engines: 10k documents under concurrent writes, an engine
restart mid-copy, resume without re-encoding, a conflicting mapping refused in the plan,
blue/green re-embedding, and Elasticsearch -> OpenSearch -> Elasticsearch.

Encoders are the tiny random BERTs (fast); what is checked is the data path, so the final
comparison here is independent of the migrator's own checksums: every document's source fields
are read back from both indices and compared as dicts.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from es_neural.dialects import BaseDialect, BulkAction, BulkOp, get_dialect
from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.engines import LocalEngines
from es_neural.errors import ModelMismatchError
from es_neural.migrate import (
    MigrationOptions,
    MigrationPlanError,
    Migrator,
    Phase,
    RollbackError,
    rollback,
)
from es_neural.settings import EngineKind, Settings
from tests.support.node_faults import kill_node

pytestmark = pytest.mark.engine

WORDS = [
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "search",
    "index",
    "query",
    "document",
    "vector",
    "dense",
    "sparse",
    "neural",
    "network",
    "model",
    "engine",
    "cluster",
    "node",
    "shard",
    "field",
    "text",
    "token",
    "weight",
    "cell",
    "gene",
    "protein",
]
MAPPING = {
    "properties": {
        "title": {"type": "text"},
        "text": {"type": "text"},
        "year": {"type": "integer"},
        "tags": {"type": "keyword"},
        "updated": {"type": "date", "format": "epoch_millis"},
    }
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _doc(rng: random.Random, i: int | str, *, updated: int | None = None) -> dict[str, Any]:
    return {
        "title": " ".join(rng.choices(WORDS, k=3)),
        "text": " ".join(rng.choices(WORDS, k=12)) + f" marker{i}",
        "year": 1990 + rng.randrange(35),
        "tags": rng.sample(WORDS, k=2),
        "updated": updated if updated is not None else _now_ms(),
    }


def _load(dialect: BaseDialect, index: str, n: int, *, seed: int = 0, **extra: Any) -> None:
    rng = random.Random(seed)
    updated = _now_ms() - 3_600_000  # written an hour "ago": only later writes are caught up
    for start in range(0, n, 1000):
        actions = [
            BulkAction(index, f"d{i}", {**_doc(rng, i, updated=updated), **extra})
            for i in range(start, min(start + 1000, n))
        ]
        result = dialect.bulk(actions)
        assert not result.failed, result.failed[:3]
    dialect.refresh(index)


def _sources(dialect: BaseDialect, index: str, drop: Sequence[str] = ()) -> dict[str, Any]:
    dialect.refresh(index)
    return {
        hit["_id"]: {k: v for k, v in hit["_source"].items() if k not in drop}
        for hit in dialect.scan(index, source_excludes=drop)
    }


def _assert_same_documents(
    src: BaseDialect, src_index: str, dst: BaseDialect, dst_index: str, drop: Sequence[str]
) -> int:
    """Every document's fields, read back from both indices, are equal (``drop``: es-neural's
    fields, and vector fields the engines return at another precision)."""
    left, right = _sources(src, src_index, drop=drop), _sources(dst, dst_index, drop=drop)
    assert len(left) == len(right) == src.count(src_index) == dst.count(dst_index)
    assert set(left) == set(right)
    different = [i for i in left if left[i] != right[i]]
    assert not different, (different[:5], [(left[i], right[i]) for i in different[:2]])
    return len(left)


class Writer(threading.Thread):
    """Another writer: updates, inserts and deletes source documents until stopped."""

    def __init__(self, settings: Settings, index: str, existing: int, *, seed: int = 7) -> None:
        super().__init__(name="test-writer", daemon=True)
        self.dialect = get_dialect(settings)
        self.index = index
        self.rng = random.Random(seed)
        self.ids = [f"d{i}" for i in range(existing)]
        self.stop = threading.Event()
        self.ops = {"update": 0, "insert": 0, "delete": 0}
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                actions = []
                for _ in range(5):
                    roll = self.rng.random()
                    if roll < 0.6 and self.ids:
                        doc_id = self.rng.choice(self.ids)
                        actions.append(BulkAction(self.index, doc_id, _doc(self.rng, doc_id)))
                        self.ops["update"] += 1
                    elif roll < 0.9:
                        doc_id = f"w{n}"
                        n += 1
                        self.ids.append(doc_id)
                        actions.append(BulkAction(self.index, doc_id, _doc(self.rng, doc_id)))
                        self.ops["insert"] += 1
                    elif self.ids:
                        doc_id = self.ids.pop(self.rng.randrange(len(self.ids)))
                        actions.append(BulkAction(self.index, doc_id, op=BulkOp.DELETE))
                        self.ops["delete"] += 1
                result = self.dialect.bulk(actions)
                if result.failed:
                    raise AssertionError(f"writer bulk failed: {result.failed[:3]}")
                time.sleep(0.1)  # ~50 writes/s
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)
        finally:
            self.dialect.close()

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=60)


def _migrator(
    source: BaseDialect,
    target: BaseDialect | None,
    dense: DenseEncoder,
    sparse: SparseEncoder | None,
    state_dir: Path,
    **options: Any,
) -> Migrator:
    on_phase = options.pop("on_phase", None)
    return Migrator(
        source,
        target,
        dense=dense,
        sparse=sparse,
        options=MigrationOptions(progress=False, **options),
        state_dir=state_dir,
        on_phase=on_phase,
    )


def _count_with(dialect: BaseDialect, index: str, field: str) -> int:
    return dialect.count(index, {"exists": {"field": field}})


# ----- the main scenario -----


def test_migrate_10k_documents_while_another_writer_writes(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tiny_dense: DenseEncoder,
    tiny_sparse: SparseEncoder,
    tmp_path: Path,
) -> None:
    old = f"{index_name}-v1"
    dialect.create_index(old, {"settings": {"number_of_shards": 2}, "mappings": MAPPING})
    dialect.update_aliases([{"add": {"index": old, "alias": index_name}}])
    _load(dialect, old, 10_000)
    writer = Writer(engine_settings, old, 10_000)
    seen: list[Phase] = []

    def on_phase(phase: Phase) -> None:
        seen.append(phase)
        if phase is Phase.VERIFY and writer.is_alive():
            writer.finish()  # writes went on through copy and catch-up

    migrator = _migrator(
        dialect, None, tiny_dense, tiny_sparse, tmp_path,
        timestamp_field="updated", catch_up_margin_s=2.0, workers=2, on_phase=on_phase,
    )  # fmt: skip
    plan = migrator.plan(index_name)
    assert plan.ok and plan.target_index == f"{index_name}-v2" and plan.replaced == (old,)
    writer.start()
    started = time.perf_counter()
    report = migrator.run(index_name)
    elapsed = time.perf_counter() - started
    writer.finish()
    assert not writer.errors, writer.errors
    assert writer.ops["update"] > 50 and writer.ops["insert"] > 20 and writer.ops["delete"] > 5
    assert report.verify is not None and report.verify.ok and report.switched
    assert Phase.CATCH_UP in seen and Phase.SWITCHED in seen
    new = f"{index_name}-v2"
    assert dialect.resolve_alias(index_name) == [new]
    n = _assert_same_documents(dialect, old, dialect, new, plan.fields.neural())
    assert n == 10_000 + writer.ops["insert"] - writer.ops["delete"]
    # every document got both encodings; the mapping kept the source fields
    assert _count_with(dialect, new, "embedding") == n
    assert _count_with(dialect, new, "content_hash") == n
    props = dialect.get_mapping(new)["properties"]
    assert props["updated"] == MAPPING["properties"]["updated"]
    assert props["tags"] == {"type": "keyword"}
    print(f"\n{dialect.engine.value}: migrated {n} documents in {elapsed:.1f} s", report.phases)
    # rollback restores the old index; the new one is kept
    back = rollback(dialect, index_name)
    assert back.index == old and dialect.resolve_alias(index_name) == [old]
    assert dialect.index_exists(new)
    with pytest.raises(RollbackError):
        rollback(dialect, index_name)  # the old index was not switched in by a migration


def test_engine_restart_during_copy_resumes_without_loss(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tiny_dense: DenseEncoder,
    tiny_sparse: SparseEncoder,
    tmp_path: Path,
) -> None:
    """A concrete source used by name: the alias is created on it, then swapped. No timestamp
    field: the catch-up is the diff pass of verify."""
    source = f"{index_name}-src"
    dialect.create_index(source, {"mappings": MAPPING})
    _load(dialect, source, 2000, seed=3)
    manager = LocalEngines(engine_settings)
    engine = dialect.engine
    target = f"{index_name}-v1"
    restarted = threading.Event()
    problems: list[BaseException] = []

    def restart_while_copying() -> None:
        watcher = get_dialect(engine_settings)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if watcher.index_exists(target) and watcher.count(target) >= 100:
                        break
                except Exception:
                    pass
                time.sleep(0.05)
            kill_node(manager, engine, 0)
            restarted.set()
            manager.up(engine)
        except BaseException as exc:
            problems.append(exc)
        finally:
            watcher.close()

    thread = threading.Thread(target=restart_while_copying)
    thread.start()
    migrator = _migrator(
        dialect, None, tiny_dense, tiny_sparse, tmp_path,
        alias=index_name, workers=2, page_size=50, batch_size=16, retry_deadline_s=240,
    )  # fmt: skip
    report = migrator.run(source)
    thread.join(timeout=300)
    assert not problems, problems
    assert restarted.is_set(), "the engine was never restarted during the migration"
    assert report.verify is not None and report.verify.ok and report.switched
    assert report.counts["scan_restarts"] >= 1  # points in time died with the node, reopened
    assert dialect.resolve_alias(index_name) == [target]
    _assert_same_documents(dialect, source, dialect, target, migrator.plan(source).fields.neural())
    assert rollback(dialect, index_name).index == source
    assert dialect.resolve_alias(index_name) == [source]


class FailingDense:
    """The tiny dense encoder that raises once it has encoded ``limit`` documents (a crash)."""

    def __init__(self, inner: DenseEncoder, limit: int | None = None) -> None:
        self.inner = inner
        self.limit = limit
        self.encoded = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            if self.limit is not None and self.encoded + len(texts) > self.limit:
                raise RuntimeError("simulated crash while encoding")
            self.encoded += len(texts)
        return self.inner.encode_documents(texts)


def test_interrupted_migration_resumes_without_re_encoding(
    dialect: BaseDialect,
    index_name: str,
    tiny_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    old = f"{index_name}-v1"
    dialect.create_index(old, {"settings": {"number_of_shards": 1}, "mappings": MAPPING})
    dialect.update_aliases([{"add": {"index": old, "alias": index_name}}])
    _load(dialect, old, 1200, seed=5)
    crashing = FailingDense(tiny_dense, limit=500)
    first = _migrator(dialect, None, crashing, None, tmp_path, workers=3, page_size=100)
    with pytest.raises(RuntimeError, match="simulated crash"):
        first.run(index_name)
    dialect.refresh(f"{index_name}-v2")
    written_before = dialect.count(f"{index_name}-v2")
    assert 0 < crashing.encoded <= 500 and dialect.resolve_alias(index_name) == [old]
    counting = FailingDense(tiny_dense)
    second = _migrator(dialect, None, counting, None, tmp_path, workers=3, page_size=100)
    assert second.plan(index_name).target_index == f"{index_name}-v2"  # the same, resumed
    report = second.run(index_name)
    assert report.resumed and report.switched and report.verify is not None and report.verify.ok
    # nothing written by the first run was encoded again
    assert counting.encoded == 1200 - written_before
    assert crashing.encoded + counting.encoded == 1200
    assert dialect.resolve_alias(index_name) == [f"{index_name}-v2"]


class PoisonedDense(FailingDense):
    """The tiny dense encoder, failing on any batch that holds the word "poison"."""

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        if any("poison" in t for t in texts):
            raise RuntimeError("cannot encode poison")
        return super().encode_documents(texts)


def test_documents_without_text_and_failures_are_handled_as_ingestion_handles_them(
    dialect: BaseDialect,
    index_name: str,
    tiny_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    """The one write stage: a document without text is copied without vectors and counted; one
    the encoder fails on is dead-lettered (the same JSONL, with the reason) and the rest go on."""
    from es_neural.ingest.state import read_dead_letters
    from es_neural.migrate import VerificationFailed

    old, new = f"{index_name}-v1", f"{index_name}-v2"
    dialect.create_index(old, {"mappings": MAPPING})
    dialect.update_aliases([{"add": {"index": old, "alias": index_name}}])
    _load(dialect, old, 60, seed=17)
    odd = [BulkAction(old, f"bare{i}", {"year": 2000 + i, "tags": ["x"]}) for i in range(3)]
    odd.append(BulkAction(old, "blank", {"title": "  ", "text": "", "year": 1999}))
    odd.append(BulkAction(old, "poison", {"title": "poison", "text": "a poison pill"}))
    assert not dialect.bulk(odd).failed
    dialect.refresh(old)
    encoder = PoisonedDense(tiny_dense)
    migrator = _migrator(dialect, None, encoder, None, tmp_path, max_rounds=1, batch_size=128)
    with pytest.raises(VerificationFailed) as caught:
        migrator.run(index_name)
    report = caught.value.report
    assert report.verify is not None and report.verify.missing == ("poison",)
    assert report.counts["without_text"] == 4 and report.counts["failed"] == 1
    assert report.counts["encoded"] == encoder.encoded == 60
    assert dialect.resolve_alias(index_name) == [old]  # no switch
    (letter,) = read_dead_letters(Path(report.failures_path))
    assert (letter["doc_id"], letter["stage"]) == ("poison", "encode")
    assert "cannot encode poison" in letter["reason"]
    assert letter["record"]["text"] == "a poison pill"
    dialect.refresh(new)
    bare = dialect.get_documents(new, ["bare0", "bare1", "bare2", "blank"])
    assert len(bare) == 4 and all(d["content_hash"] for d in bare.values())
    assert bare["bare2"]["year"] == 2002 and bare["blank"]["title"] == "  "
    assert dialect.count(new) == 64
    assert _count_with(dialect, new, "embedding") == 60  # the four without text have none


def test_conflicting_mapping_fails_in_the_plan_before_anything_is_written(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tiny_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    old = f"{index_name}-v1"
    mapping = {"properties": {**MAPPING["properties"], "embedding": {"type": "keyword"}}}
    dialect.create_index(old, {"mappings": mapping})
    dialect.update_aliases([{"add": {"index": old, "alias": index_name}}])
    _load(dialect, old, 20, embedding="not a vector")
    migrator = _migrator(dialect, None, tiny_dense, None, tmp_path)
    with pytest.raises(MigrationPlanError, match=r"'embedding'.*--field-prefix neural_"):
        migrator.run(index_name)
    assert not dialect.index_exists(f"{index_name}-v2")
    assert dialect.resolve_alias(index_name) == [old]
    assert not (tmp_path / "migrations").exists()
    # a concrete index used by name needs an alias of another name
    concrete = f"{index_name}-src"
    dialect.create_index(concrete, {"mappings": MAPPING})
    problems = migrator.plan(concrete).problems
    assert any("--alias" in p and "cannot share" in p for p in problems)
    # renamed neural fields resolve the clash; the user's field is copied as it is
    renamed = _migrator(dialect, None, tiny_dense, None, tmp_path, field_prefix="neural_")
    report = renamed.run(index_name)
    new = f"{index_name}-v2"
    assert report.verify is not None and report.verify.ok
    stored = dialect.get_documents(new, ["d3"])["d3"]
    assert stored["embedding"] == "not a vector" and stored["neural_content_hash"]
    assert _count_with(dialect, new, "neural_embedding") == 20


@pytest.fixture(scope="module")
def tiny_dense_other(tmp_path_factory: pytest.TempPathFactory) -> DenseEncoder:
    """Another tiny model (other weights): a "new model" for blue/green re-embedding."""
    from es_neural.encoders.dense import SentenceTransformerDense
    from tests.support.tiny_models import make_tiny_bert_dir

    folder = make_tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert-seed1"), seed=1)
    encoder = SentenceTransformerDense(folder, name="tiny-bert-2")
    encoder.load()
    return encoder


def test_blue_green_re_embedding_never_mixes_fingerprints(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tiny_dense: DenseEncoder,
    tiny_dense_other: DenseEncoder,
    tiny_sparse: SparseEncoder,
    tmp_path: Path,
) -> None:
    from es_neural.ingest.pipeline import IngestOptions
    from es_neural.neural_index import NeuralIndex

    rng = random.Random(11)
    docs = [{"id": f"d{i}", **_doc(rng, i)} for i in range(300)]
    first = NeuralIndex(index_name, settings=engine_settings, dialect=dialect, dense=tiny_dense,
                        use_sparse=False)  # fmt: skip
    first.ingest(docs, options=IngestOptions(progress=False, checkpoint_path=tmp_path / "c.json",
                                             dead_letter_path=tmp_path / "d.jsonl"))  # fmt: skip
    old, new = f"{index_name}-v1", f"{index_name}-v2"
    migrator = _migrator(dialect, None, tiny_dense_other, tiny_sparse, tmp_path)
    plan = migrator.plan(index_name)
    assert plan.dropped_fields and "embedding" in plan.dropped_fields
    report = migrator.run(index_name)
    assert report.switched and report.counts["encoded"] == 300
    old_meta = dialect.get_mapping(old)["_meta"]
    new_meta = dialect.get_mapping(new)["_meta"]
    assert old_meta["dense"] == tiny_dense.fingerprint.to_meta() and old_meta["sparse"] is None
    assert new_meta["dense"] == tiny_dense_other.fingerprint.to_meta()
    assert new_meta["sparse"] == tiny_sparse.fingerprint.to_meta()
    _assert_same_documents(dialect, old, dialect, new, plan.fields.neural())
    # the new index is searchable with the new models through the alias
    second = NeuralIndex(index_name, settings=engine_settings, dialect=dialect,
                         dense=tiny_dense_other, sparse=tiny_sparse)  # fmt: skip
    response = second.search("marker42", size=10)
    assert response.hits and set(response.leg_totals) == {"bm25", "dense", "sparse"}
    with pytest.raises(ModelMismatchError):
        first.search("marker42", size=3)  # the old models are refused by the new index
    assert rollback(dialect, index_name).index == old


# ----- across engines -----

Pair = tuple[BaseDialect, BaseDialect, str]


@pytest.fixture
def both(
    running_engines: dict[EngineKind, Settings],
) -> Iterator[tuple[BaseDialect, BaseDialect, str]]:
    es = get_dialect(running_engines[EngineKind.ELASTICSEARCH])
    os_ = get_dialect(running_engines[EngineKind.OPENSEARCH])
    name = f"t-migrate-cross-{uuid.uuid4().hex[:8]}"
    try:
        yield es, os_, name
    finally:
        for d in (es, os_):
            for alias in (name, f"{name}-back"):
                for index in d.resolve_alias(alias):
                    d.delete_index(index)
            for suffix in ("-src", "-v1", "-v2", "-back-v1"):
                d.delete_index(name + suffix)
            d.close()


def test_elasticsearch_to_opensearch_and_back(
    both: Pair,
    tiny_dense: DenseEncoder,
    tiny_sparse: SparseEncoder,
    tmp_path: Path,
) -> None:
    es, os_, name = both
    source = f"{name}-src"
    mapping = {"properties": {**MAPPING["properties"],
               "vec": {"type": "dense_vector", "dims": 4, "similarity": "l2_norm"}}}  # fmt: skip
    es.create_index(source, {"mappings": mapping})
    _load(es, source, 600, seed=9, vec=[0.5, 0.25, -1.0, 2.0])
    to_os = _migrator(es, os_, tiny_dense, tiny_sparse, tmp_path, alias=name)
    plan = to_os.plan(source)
    assert plan.ok and plan.target_index == f"{name}-v1" and plan.checksum_excludes == ("vec",)
    report = to_os.run(source)
    assert report.verify is not None and report.verify.ok and report.switched
    assert os_.resolve_alias(name) == [f"{name}-v1"]
    props = os_.get_mapping(f"{name}-v1")["properties"]
    assert props["vec"]["type"] == "knn_vector" and props["vec"]["dimension"] == 4
    assert props["embedding"]["type"] == "knn_vector"
    assert os_.get_documents(f"{name}-v1", ["d5"])["d5"]["vec"] == [0.5, 0.25, -1.0, 2.0]
    neural = plan.fields.neural()
    _assert_same_documents(es, source, os_, f"{name}-v1", (*neural, "vec"))
    with pytest.raises(RollbackError, match="point readers back there"):
        rollback(os_, name)
    # and back: the OpenSearch neural index into Elasticsearch (its neural fields recomputed)
    back = _migrator(os_, es, tiny_dense, tiny_sparse, tmp_path, alias=f"{name}-back")
    back_plan = back.plan(name)
    assert back_plan.dropped_fields and back_plan.ok
    assert back.run(name).switched
    back_index = f"{name}-back-v1"
    es_props = es.get_mapping(back_index)["properties"]
    assert es_props["vec"]["type"] == "dense_vector" and es_props["vec"]["dims"] == 4
    _assert_same_documents(os_, f"{name}-v1", es, back_index, (*neural, "vec"))
    assert _count_with(es, back_index, "vec") == 600


def test_differences_block_the_switch_and_the_cli_reports_and_rolls_back(
    dialect: BaseDialect,
    index_name: str,
    tiny_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from es_neural.cli.migrate import migrate_app
    from es_neural.migrate import VerificationFailed

    old, new = f"{index_name}-v1", f"{index_name}-v2"
    dialect.create_index(old, {"mappings": MAPPING})
    dialect.update_aliases([{"add": {"index": old, "alias": index_name}}])
    _load(dialect, old, 200, seed=13)

    def write_behind_its_back(phase: Phase) -> None:
        if phase is Phase.VERIFY:  # a write no catch-up saw, and no repair round left
            rng = random.Random(1)
            dialect.bulk(
                [BulkAction(old, "d7", _doc(rng, "d7")), BulkAction(old, "late", _doc(rng, 0))]
            )

    strict = _migrator(dialect, None, tiny_dense, None, tmp_path, max_rounds=1,
                       on_phase=write_behind_its_back)  # fmt: skip
    with pytest.raises(VerificationFailed) as caught:
        strict.run(index_name)
    verified = caught.value.report.verify
    assert verified is not None and not verified.ok
    assert (verified.missing, verified.changed) == (("late",), ("d7",))
    assert "missing in target: 1 (late)" in str(caught.value)
    assert dialect.resolve_alias(index_name) == [old]  # no switch
    # run again: the same migration resumes, repairs the two documents and switches
    report = _migrator(dialect, None, tiny_dense, None, tmp_path).run(index_name)
    assert report.resumed and report.switched and report.counts["encoded"] == 2
    assert dialect.resolve_alias(index_name) == [new]
    # the CLI's status and rollback (no models needed)
    engine = ["--engine", dialect.engine.value]
    runner = CliRunner()
    status = runner.invoke(migrate_app, ["status", "--alias", index_name, "--json", *engine])
    assert status.exit_code == 0, status.output
    assert f'"{new}"' in status.output and f'"{old}"' in status.output
    back = runner.invoke(migrate_app, ["rollback", "--alias", index_name, *engine])
    assert back.exit_code == 0, back.output
    assert dialect.resolve_alias(index_name) == [old]
    again = runner.invoke(migrate_app, ["rollback", "--alias", index_name, *engine])
    assert again.exit_code == 1 and "not switched in" in " ".join(again.output.split())
