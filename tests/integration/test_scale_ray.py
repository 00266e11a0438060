"""Scale-out on Ray Data under faults, on a local Ray cluster of 2 CPUs, on both engines.

* an encoder worker's process SIGKILLed mid-run: Ray restarts it and redoes its batch;
* the driver SIGKILLed mid-run, then the same run again: it resumes from the checkpointed
  blocks (ingest) or slices (migration) and does not read, let alone encode, them again;
* a node of a 3-node cluster (the ``cluster3`` instance, never the shared single nodes)
  SIGKILLed and restarted mid-run: the retry layers absorb it;

and each time every document is in the index exactly once: ids, counts and per-document content
hashes are read back from the engine. The encoders are the tiny random BERT (a real model, 32
hidden units), logged per process (tests/support/scale.py) so that what was encoded can be
counted across processes and runs. Ray is required here (the ``ray`` extra): without it these
tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from es_neural.dialects import BaseDialect, BulkAction
from es_neural.encoders.base import DenseEncoder
from es_neural.ingest.pipeline import IngestOptions, IngestReport, models_key
from es_neural.ingest.prepare import content_hash
from es_neural.scale import RayMigrator, ScaleOptions, ingest_ray
from es_neural.settings import Settings
from es_neural.text import document_text
from tests.support.cluster_faults import Clusters
from tests.support.corpus import make_docs
from tests.support.scale import LoggedTinyModels, encoded_hashes, pids, text_hash

pytestmark = [pytest.mark.engine]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray cluster of 2 CPUs for this module (this process is its first driver)."""
    import logging

    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


# ----- helpers -----


def _write_jsonl(path: Path, docs: Sequence[Mapping[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def _expected_hashes(docs: Sequence[Mapping[str, Any]], key: str) -> dict[str, str]:
    return {
        str(d["id"]): content_hash({k: v for k, v in d.items() if k != "_id"}, key) for d in docs
    }


def _assert_exactly_once(
    dialect: BaseDialect, index: str, expected: Mapping[str, str], hash_field: str = "content_hash"
) -> None:
    """Every expected id once, nothing else, each with the expected content hash."""
    dialect.refresh(index)
    ids = [hit["_id"] for hit in dialect.scan(index, source=False)]
    assert len(ids) == len(set(ids)), "a document is in the index twice"
    assert sorted(ids) == sorted(expected)
    assert dialect.count(index) == len(expected)
    stored: dict[str, Any] = {}
    keys = sorted(expected)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        stored.update(dialect.get_documents(index, chunk, fields=[hash_field]))
    wrong = [i for i in keys if stored.get(i, {}).get(hash_field) != expected[i]]
    assert not wrong, f"{len(wrong)} documents with another content hash, e.g. {wrong[:3]}"


def _drop(dialect: BaseDialect, *names: str) -> None:
    for name in names:
        for concrete in dialect.resolve_alias(name):
            dialect.delete_index(concrete)
        dialect.delete_index(name)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _options(tmp_path: Path, name: str, **kw: Any) -> IngestOptions:
    base: dict[str, Any] = {
        "batch_size": 10,
        "progress": False,
        "checkpoint_path": tmp_path / f"{name}.blocks.json",
        "dead_letter_path": tmp_path / f"{name}.dead.jsonl",
    }
    base.update(kw)
    return IngestOptions(**base)


def _driver(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.scale", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


# ----- 1. an encoder worker SIGKILLed -----


def test_sigkilled_encoder_worker_is_redone_and_every_document_lands_once(
    ray_address: str,
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tiny_model_dir: Path,
    tiny_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    docs = make_docs(300, seed=11)
    path = _write_jsonl(tmp_path / "docs.jsonl", docs)
    logs = tmp_path / "encoders"
    models = LoggedTinyModels(str(tiny_model_dir), str(logs), delay_s=0.25)
    killed: dict[str, Any] = {}
    problems: list[BaseException] = []

    def kill_one_worker() -> None:
        try:
            _wait_for(lambda: len(encoded_hashes(logs)) >= 40, 600, "40 encoded documents")
            victim = pids(logs)[0]
            killed.update(pid=victim, encoded=len(encoded_hashes(logs)))
            os.kill(victim, signal.SIGKILL)
        except BaseException as exc:
            problems.append(exc)

    thread = threading.Thread(target=kill_one_worker, daemon=True)
    thread.start()
    report = ingest_ray(
        path,
        index_name,
        settings=engine_settings,
        options=_options(tmp_path, "kill-worker"),
        scale=ScaleOptions(workers=2, block_size=60),
        models=models,
    )
    thread.join(timeout=60)
    assert not problems, problems
    assert killed and killed["encoded"] < len(docs), "the worker was killed after the run"
    assert not _alive(killed["pid"])
    # Ray started a new encoder process in its place, which did the rest
    assert len(pids(logs)) >= 3
    assert report.read == len(docs)
    assert report.dead_lettered == 0
    assert report.indexed + report.unchanged == len(docs)
    assert report.extra["blocks"] == 5
    key = models_key(tiny_dense, None, None)
    _assert_exactly_once(dialect, index_name, _expected_hashes(docs, key))


# ----- 2. the driver SIGKILLed, then the same run again -----


def test_killed_driver_resumes_from_checkpointed_blocks_without_encoding_them_again(
    ray_address: str,
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tiny_model_dir: Path,
    tiny_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    docs = make_docs(300, seed=12)
    path = _write_jsonl(tmp_path / "docs.jsonl", docs)
    checkpoint = tmp_path / "run.blocks.json"
    first_logs = tmp_path / "first"
    args = [
        "ingest",
        "--address", ray_address,
        "--settings", engine_settings.model_dump_json(),
        "--folder", str(tiny_model_dir),
        "--log-dir", str(first_logs),
        "--workers", "2",
        "--batch-size", "10",
        "--delay-s", "0.3",
        # about 240 of 300 documents at most before the driver dies: never all 6 blocks or
        # slices, however slowly a loaded machine lets this test see the first one
        "--hold-after", "240",
        "--report", str(tmp_path / "first.json"),
        "--file", str(path),
        "--index", index_name,
        "--checkpoint", str(checkpoint),
        "--dead", str(tmp_path / "dead.jsonl"),
        "--block-size", "50",
    ]  # fmt: skip
    driver = _driver(args, tmp_path / "driver.log")

    def done_blocks() -> list[int]:
        try:
            return list(json.loads(checkpoint.read_text(encoding="utf-8"))["done"])
        except (OSError, ValueError, KeyError):
            return []

    try:
        _wait_for(
            lambda: len(done_blocks()) >= 1 or driver.poll() is not None, 600, "a finished block"
        )
        assert driver.poll() is None, (tmp_path / "driver.log").read_text(errors="replace")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    done = done_blocks()
    assert 1 <= len(done) < 6, f"blocks done when the driver died: {done}"
    # the job's workers die with their driver
    _wait_for(lambda: not any(_alive(p) for p in pids(first_logs)), 120, "the workers to exit")

    second_logs = tmp_path / "second"
    report = ingest_ray(
        path,
        index_name,
        settings=engine_settings,
        options=_options(tmp_path, "run", checkpoint_path=checkpoint),
        scale=ScaleOptions(workers=2, block_size=50),
        models=LoggedTinyModels(str(tiny_model_dir), str(second_logs)),
    )
    in_done_blocks = [d for i, d in enumerate(docs) if i // 50 in done]
    assert report.extra["blocks_resumed"] == len(done)
    assert report.resumed_from == len(in_done_blocks)
    # the checkpointed blocks were not even read again ...
    assert report.read == len(docs) - len(in_done_blocks)
    # ... nor encoded; the other blocks' documents already written were skipped by hash
    again = set(encoded_hashes(second_logs))
    done_texts = {text_hash(document_text(d)) for d in in_done_blocks}
    assert not again & done_texts
    assert len(encoded_hashes(second_logs)) == report.indexed
    assert report.indexed + report.unchanged == report.read
    assert json.loads(checkpoint.read_text(encoding="utf-8"))["complete"] is True
    key = models_key(tiny_dense, None, None)
    _assert_exactly_once(dialect, index_name, _expected_hashes(docs, key))


def _load_plain(dialect: BaseDialect, index: str, docs: Sequence[Mapping[str, Any]]) -> None:
    dialect.create_index(index, {"mappings": {"properties": {"year": {"type": "integer"}}}})
    actions = [
        BulkAction(index, str(d["id"]), {k: v for k, v in d.items() if k != "id"}) for d in docs
    ]
    result = dialect.bulk(actions, refresh=True)
    assert not result.failed


def test_killed_migration_driver_resumes_from_checkpointed_slices(
    ray_address: str,
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tiny_model_dir: Path,
    tiny_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    source, alias = f"{index_name}-src", f"{index_name}-live"
    docs = make_docs(300, seed=13)
    _load_plain(dialect, source, docs)
    state_dir = tmp_path / "state"
    first_logs = tmp_path / "first"
    args = [
        "migrate",
        "--address", ray_address,
        "--settings", engine_settings.model_dump_json(),
        "--folder", str(tiny_model_dir),
        "--log-dir", str(first_logs),
        "--workers", "2",
        "--batch-size", "10",
        "--delay-s", "0.3",
        # about 240 of 300 documents at most before the driver dies: never all 6 blocks or
        # slices, however slowly a loaded machine lets this test see the first one
        "--hold-after", "240",
        "--report", str(tmp_path / "first.json"),
        "--source", source,
        "--alias", alias,
        "--state-dir", str(state_dir),
        "--slices", "6",
    ]  # fmt: skip
    state_file = state_dir / "migrations" / f"{engine_settings.engine.value}--{alias}.json"

    def slices_done() -> dict[str, Any]:
        try:
            return json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    driver = _driver(args, tmp_path / "driver.log")
    try:
        try:
            _wait_for(
                lambda: bool(slices_done().get("slices_done")) or driver.poll() is not None,
                600,
                "a copied slice",
            )
            assert driver.poll() is None, (tmp_path / "driver.log").read_text(errors="replace")
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=60)
        finally:
            if driver.poll() is None:
                driver.kill()
        state = slices_done()
        done, done_read = state["slices_done"], int(state["counts"]["read"])
        assert 1 <= len(done) < 6 and state["phase"] == "copy"
        _wait_for(lambda: not any(_alive(p) for p in pids(first_logs)), 120, "the workers to exit")

        second_logs = tmp_path / "second"
        models = LoggedTinyModels(str(tiny_model_dir), str(second_logs))
        from es_neural.migrate import MigrationOptions

        report = RayMigrator(
            dialect,
            dense=tiny_dense,
            options=MigrationOptions(alias=alias, workers=6, batch_size=10, progress=False),
            state_dir=state_dir,
            settings=engine_settings,
            models=models,
            scale=ScaleOptions(workers=2),
        ).run(source)
        assert report.resumed and report.switched and report.verify is not None
        assert report.verify.ok
        # the copied slices were not read again; what the others had written was not re-encoded
        assert report.counts["read_copy"] == len(docs) - done_read
        assert report.counts["encoded"] + report.counts["unchanged"] == len(docs) - done_read
        assert len(encoded_hashes(second_logs)) == report.counts["encoded"]
        target = report.plan.target_index
        assert dialect.resolve_alias(alias) == [target]
        key = models_key(tiny_dense, None, None)
        expected = {
            str(d["id"]): content_hash({k: v for k, v in d.items() if k != "id"}, key) for d in docs
        }
        _assert_exactly_once(dialect, target, expected)
    finally:
        _drop(dialect, source, alias, f"{alias}-v1", f"{alias}-v2")


# ----- 3. an engine node SIGKILLed and restarted -----


def test_engine_node_restart_mid_run_is_absorbed(
    ray_address: str,
    cluster3: Clusters,
    engine_settings: Settings,
    tiny_model_dir: Path,
    tiny_dense: DenseEncoder,
    tmp_path: Path,
) -> None:
    cluster = cluster3.get(engine_settings.engine)
    dialect = cluster.dialect()
    index = f"t-scale-restart-{uuid.uuid4().hex[:8]}"
    docs = make_docs(600, seed=14)
    path = _write_jsonl(tmp_path / "docs.jsonl", docs)
    fault: dict[str, Any] = {}
    problems: list[BaseException] = []

    def restart_a_node() -> None:
        watcher = cluster.dialect()
        try:
            _wait_for(
                lambda: watcher.index_exists(index) and watcher.count(index) >= 60,
                600,
                "60 documents written",
                poll=0.5,
            )
            master = cluster.master()
            held = cluster.nodes_holding(index, primaries=True)
            victim = max([n for n in held if n != master] or list(held))
            fault.update(victim=victim, killed_at=watcher.count(index))
            cluster.kill(victim)
            time.sleep(3)
            cluster.restart()
            fault["back"] = True
        except BaseException as exc:
            problems.append(exc)
        finally:
            watcher.close()

    thread = threading.Thread(target=restart_a_node, daemon=True)
    thread.start()
    try:
        report: IngestReport = ingest_ray(
            path,
            index,
            settings=cluster.settings,
            options=_options(tmp_path, "restart", retry_deadline_s=300),
            scale=ScaleOptions(workers=2, block_size=100),
            models=LoggedTinyModels(str(tiny_model_dir), str(tmp_path / "logs"), delay_s=0.2),
        )
        thread.join(timeout=600)
        assert not problems, problems
        assert fault.get("back"), "the node was never restarted"
        assert fault["killed_at"] < len(docs), "the node was killed after the run had written all"
        assert report.dead_lettered == 0
        assert report.indexed + report.unchanged == len(docs)
        key = models_key(tiny_dense, None, None)
        _assert_exactly_once(dialect, index, _expected_hashes(docs, key))
    finally:
        _drop(dialect, index)
        dialect.close()
