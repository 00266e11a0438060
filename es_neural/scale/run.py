"""The driver of a scale-out run: read tasks -> encoder actors -> writer actors -> this process.

Ray Data runs the stages as a stream: one read task per unit (a block of a file, or a slice of
an index), a pool of :class:`~es_neural.scale.workers.EncodeWorker` actors (``concurrency``
workers, each with its CPUs or GPUs and its own models), a few
:class:`~es_neural.scale.workers.WriteWorker` actors (the one write stage's bulk writes). What
comes back to this process is small: per batch, its counts, its dead letters and which units it
covered. Here they are added up (the end-of-run report, the progress bar of records done),
dead letters are appended to the run's JSONL (flushed first), and a unit whose every record is
written is checkpointed.

Guarantees, under faults:

* a worker process that dies (SIGKILL, out of memory, a lost node) is restarted by Ray and its
  batch done again; a read task that fails is retried; ids are deterministic, so a document
  written twice is overwritten, never duplicated;
* an engine that restarts is waited out by the dialect's retry layer (``retry_deadline_s``) and
  per-item rejections are re-sent with backoff: nothing is lost;
* a driver that dies loses only the units in flight: run the same command again and the
  checkpointed units are not read again; documents of the others that are already written with
  the same content hash are not encoded again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from es_neural.errors import EsNeuralError
from es_neural.ingest.pipeline import IngestInterrupted, IngestOptions, IngestReport, models_key
from es_neural.ingest.sources import open_source
from es_neural.ingest.state import DeadLetterWriter
from es_neural.ingest.writer import WriteCounts
from es_neural.scale.blocks import plan_file_blocks, read_file_block
from es_neural.scale.cluster import connected, unwrap_ray_error
from es_neural.scale.options import ModelSpec, ScaleOptions, SettingsModels
from es_neural.scale.state import BlockCheckpoint, BlockCheckpointStore
from es_neural.scale.workers import EncodeWorker, WorkerConfig, WriteWorker, decode_outcomes
from es_neural.settings import EngineKind, Settings, get_settings

__all__ = ["Tally", "drive", "ingest_ray", "write_neural"]


@dataclass
class Tally:
    """What the workers did, added up on the driver."""

    read: int = 0
    counts: WriteCounts = field(default_factory=WriteCounts)
    #: Records done per unit, the units' sizes (from their end markers), the complete units.
    processed: dict[int, int] = field(default_factory=dict)
    totals: dict[int, int] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    #: Process ids of the encoder actors that returned batches (a restarted actor adds one).
    encoder_pids: set[int] = field(default_factory=set)
    interrupted: bool = False
    elapsed_s: float = 0.0
    #: Seconds until every encoder worker had returned a batch (Ray starting the workers, the
    #: models loading); ``None`` if some never did (a short run).
    first_result_s: float | None = None
    #: Records of the batches after that moment, and the seconds from it to the last batch.
    steady_read: int = 0
    steady_s: float = 0.0

    @property
    def steady_docs_per_s(self) -> float | None:
        """Records per second once every worker was running."""
        return self.steady_read / self.steady_s if self.steady_s > 0 else None


def drive(
    ray: Any,
    dataset: Any,
    config: WorkerConfig,
    scale: ScaleOptions,
    *,
    batch_size: int,
    dead: DeadLetterWriter,
    bar: Any = None,
    on_unit_done: Callable[[int, int, Tally], None] | None = None,
) -> Tally:
    """Encode and write ``dataset`` (rows of units, or of documents); returns the tally.

    ``on_unit_done(unit, records, tally)`` is called once per unit whose records are all written,
    after their dead letters are flushed (that is where a checkpoint moves)."""
    encoded = dataset.map_batches(
        EncodeWorker,
        fn_constructor_kwargs={"config": config},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=scale.workers),
        num_cpus=scale.cpus_per_worker,
        num_gpus=scale.gpus_per_worker or None,
    )
    written = encoded.map_batches(
        WriteWorker,
        fn_constructor_kwargs={"config": config},
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=scale.writer_count),
        num_cpus=0,
    )
    tally = Tally()
    started = time.perf_counter()
    try:
        for table in written.iter_batches(batch_size=None, batch_format="pyarrow"):
            now = time.perf_counter() - started
            for outcome in decode_outcomes(table):
                if tally.first_result_s is not None:
                    tally.steady_read += outcome.read
                    tally.steady_s = now - tally.first_result_s
                dead.add_all(outcome.result.dead_letters)
                dead.flush()
                tally.read += outcome.read
                tally.counts += outcome.result.counts
                tally.encoder_pids.add(outcome.pid)
                if tally.first_result_s is None and len(tally.encoder_pids) >= scale.workers:
                    tally.first_result_s = now
                for unit, n in outcome.units.items():
                    tally.processed[unit] = tally.processed.get(unit, 0) + n
                tally.totals.update(outcome.ends)
                for unit in {*outcome.units, *outcome.ends}:
                    total = tally.totals.get(unit)
                    if total is None or unit in tally.done:
                        continue
                    if tally.processed.get(unit, 0) >= total:
                        tally.done.add(unit)
                        if on_unit_done is not None:
                            on_unit_done(unit, total, tally)
                if bar is not None:
                    bar.update(outcome.read)
    except KeyboardInterrupt:
        tally.interrupted = True
    except EsNeuralError:
        raise
    except Exception as exc:
        raise unwrap_ray_error(exc) from None
    finally:
        tally.elapsed_s = time.perf_counter() - started
    return tally


def _report(
    *,
    index: str,
    source: str,
    tally: Tally,
    dead: DeadLetterWriter,
    resumed_from: int,
    checkpoint_path: Path | None,
    scale: ScaleOptions,
    extra: dict[str, Any],
) -> IngestReport:
    c = tally.counts
    return IngestReport(
        index=index,
        source=source,
        read=tally.read,
        indexed=c.written,
        unchanged=c.unchanged,
        dead_lettered=dead.count,
        truncated=c.truncated,
        retries=c.retries,
        resumed_from=resumed_from,
        elapsed_s=tally.elapsed_s,
        encode_s=c.encode_s,
        write_s=c.write_s,
        dead_letter_path=str(dead.path),
        checkpoint_path=str(checkpoint_path or ""),
        interrupted=tally.interrupted,
        without_text=c.without_text,
        extra={
            "ray_workers": scale.workers,
            "ray_writers": scale.writer_count,
            "gpus_per_worker": scale.gpus_per_worker,
            "encoder_processes": len(tally.encoder_pids),
            "startup_s": tally.first_result_s,
            "steady_docs_per_s": tally.steady_docs_per_s,
            **extra,
        },
    )


def _index(
    index: str,
    settings: Settings,
    engine: EngineKind | str | None,
    models: ModelSpec,
    options: IngestOptions,
) -> tuple[Any, Any, str]:
    """The index, created (or checked) with the fingerprints of ``models`` loaded here once."""
    from es_neural.neural_index import NeuralIndex

    dense, sparse, leaves = models.load()
    idx = NeuralIndex(
        index,
        settings=settings,
        engine=engine,
        dense=dense,
        sparse=sparse,
        use_sparse=sparse is not None,
        leaves=leaves,
    )
    info = idx.ensure(text_fields=options.text_fields)
    return idx, info, models_key(dense, sparse, leaves)


def ingest_ray(
    source: str | Path,
    index: str,
    *,
    settings: Settings | None = None,
    engine: EngineKind | str | None = None,
    options: IngestOptions | None = None,
    scale: ScaleOptions | None = None,
    models: ModelSpec | None = None,
    use_sparse: bool = True,
) -> IngestReport:
    """Ingest a JSONL, CSV or TSV file on Ray, one read task per block of ``scale.block_size``
    records, resuming from the blocks a previous run of the same file, index and models wrote.

    The file must be readable at the same path by every Ray node (a shared filesystem). Raises
    :class:`~es_neural.ingest.pipeline.IngestInterrupted` (with the report) on Ctrl-C."""
    settings = settings or get_settings()
    options = options or IngestOptions()
    scale = scale or ScaleOptions()
    path = Path(source)
    src = open_source(path)
    models = models or SettingsModels(settings, use_sparse=use_sparse)
    idx, info, key = _index(index, settings, engine, models, options)
    state_dir = settings.home / "state"
    stem = (
        f"{info.name}--"
        + hashlib.sha256(f"{info.name}|{src.identity}|{key}".encode()).hexdigest()[:16]
    )
    checkpoint_path = options.checkpoint_path or state_dir / "checkpoints" / f"{stem}.blocks.json"
    dead_path = options.dead_letter_path or state_dir / "dead-letters" / f"{stem}.jsonl"
    store = BlockCheckpointStore(checkpoint_path)
    blocks = plan_file_blocks(path, scale.block_size)
    previous = (
        store.load(source=src.identity, index=info.name, block_size=scale.block_size)
        if options.resume
        else None
    )
    if previous is None or previous.complete:
        if previous is not None:
            dead_path.unlink(missing_ok=True)
        previous = BlockCheckpoint(src.identity, info.name, scale.block_size, len(blocks))
    state = {"checkpoint": previous}
    pending = [b for b in blocks if b.number not in previous.done]
    dead = DeadLetterWriter(dead_path)
    config = WorkerConfig(
        settings,
        idx.engine,
        info.name,
        models,
        options,
        torch_threads=scale.threads,
    )
    bar = tqdm(
        total=src.total,
        initial=previous.records,
        unit="doc",
        desc=f"ingest {info.name} (ray x{scale.workers})",
        disable=not options.progress,
        dynamic_ncols=True,
    )
    base = previous.counts

    def block_done(number: int, records: int, tally: Tally) -> None:
        counts = {k: base.get(k, 0) + v for k, v in tally.counts.as_dict().items()}
        state["checkpoint"] = replace(
            state["checkpoint"].with_block(number, records), counts=counts
        )
        store.save(state["checkpoint"])

    try:
        if pending:
            with connected(scale) as ray:
                from es_neural.scale.datasource import UnitRead, UnitsDatasource

                units = [UnitRead(partial(read_file_block, path, b), b.count + 1) for b in pending]
                dataset = ray.data.read_datasource(
                    UnitsDatasource(units, name=f"es-neural:{path.name}"),
                    compute=ray.data.TaskPoolStrategy(size=max(2, scale.workers)),
                    num_cpus=0,
                )
                tally = drive(
                    ray,
                    dataset,
                    config,
                    scale,
                    batch_size=options.batch_size,
                    dead=dead,
                    bar=bar,
                    on_unit_done=block_done,
                )
        else:
            tally = Tally()
    finally:
        bar.close()
    if options.refresh:
        idx.dialect.refresh(info.name)
    report = _report(
        index=info.name,
        source=src.description,
        tally=tally,
        dead=dead,
        resumed_from=previous.records,
        checkpoint_path=checkpoint_path,
        scale=scale,
        extra={"blocks": len(blocks), "blocks_resumed": len(previous.done)},
    )
    idx.close()
    if tally.interrupted:
        raise IngestInterrupted(report)
    return report


def write_neural(
    dataset: Any,
    index: str,
    settings: Settings | None = None,
    *,
    engine: EngineKind | str | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    batch_size: int | None = None,
    options: IngestOptions | None = None,
    scale: ScaleOptions | None = None,
    models: ModelSpec | None = None,
    use_sparse: bool = True,
) -> IngestReport:
    """Write a Ray Dataset of documents (one row per document, columns as fields, e.g. from
    ``ray.data.read_parquet`` or ``read_json``) into the es-neural index ``index``.

    Encoding runs in ``concurrency`` actors (``num_gpus`` each: a fraction shares a GPU), each
    loading the models once; writing goes through the one write stage (content-hash skip, per-item
    retries, dead letters). The index is created (or its model fingerprints checked) first. A
    dataset has no stable blocks to checkpoint: a run started again reads everything again, but
    documents already written with the same content hash are not encoded again."""
    settings = settings or get_settings()
    options = options or IngestOptions()
    scale = scale or ScaleOptions()
    changes: dict[str, Any] = {}
    if concurrency is not None:
        changes["workers"] = concurrency
    if num_gpus is not None:
        changes["gpus_per_worker"] = num_gpus
    if changes:
        scale = replace(scale, **changes)
    models = models or SettingsModels(settings, use_sparse=use_sparse)
    idx, info, key = _index(index, settings, engine, models, options)
    stem = f"{info.name}--dataset-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    dead = DeadLetterWriter(
        options.dead_letter_path or settings.home / "state" / "dead-letters" / f"{stem}.jsonl"
    )
    config = WorkerConfig(
        settings, idx.engine, info.name, models, options, torch_threads=scale.threads
    )
    bar = tqdm(
        unit="doc",
        desc=f"write {info.name} (ray x{scale.workers})",
        disable=not options.progress,
        dynamic_ncols=True,
    )
    try:
        with connected(scale) as ray:
            tally = drive(
                ray,
                dataset,
                config,
                scale,
                batch_size=batch_size or options.batch_size,
                dead=dead,
                bar=bar,
            )
    finally:
        bar.close()
    if options.refresh:
        idx.dialect.refresh(info.name)
    report = _report(
        index=info.name,
        source="ray dataset",
        tally=tally,
        dead=dead,
        resumed_from=0,
        checkpoint_path=None,
        scale=scale,
        extra={},
    )
    idx.close()
    if tally.interrupted:
        raise IngestInterrupted(report)
    return report
