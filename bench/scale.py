"""Scale-out benchmark (issue 15): is Ray's overhead small, do the writers keep up, and where
does the bottleneck move with more workers?

    .venv/bin/python bench/scale.py                          # the issue's run (long on 2 cores)
    .venv/bin/python bench/scale.py --n 300 --n-write 20000  # what fits a shared 2-core machine

Parts, each on fresh indices of one engine (``--engine``):

1. **Encoding**: the first ``--n`` (2,000) SciFact documents, with the real embedded models
   (all-MiniLM-L6-v2 + SPLADE-tiny; ``--dense-only`` leaves SPLADE out), through the
   single-process pipeline (``NeuralIndex.ingest``, torch at one thread), Ray with 1 CPU worker
   and Ray with 2 CPU workers (one torch thread each) on a local Ray of 2 CPUs. A Ray run's
   docs/s is *steady*: records written after every worker had returned its first batch, over
   the time since then (a Ray run first starts its workers, which load their models:
   ``startup_s``, shown apart); the single process's is its report's (models loaded before).
   Ratios: ``ray2_over_ray1`` (goal >= 1.6) and ``ray1_over_single`` (goal >= 0.9).
2. **Write path, with stand-in encoders** (hashed pseudo-vectors of 32 dims: no model, NOT for
   retrieval): ``--n-write`` (200,000) generated documents through 2 stand-in encoder workers
   and 1, 2, 4 writer actors (``--writers``): the bulk docs/s the engine sustains against the
   number of writers.
3. **Faults**: ``--n-fault`` (600) documents with the tests' tiny BERT, once with an encoder
   worker SIGKILLed mid-run, once with the driver SIGKILLed mid-run and the run started again;
   ``lost`` and ``duplicated`` count ids read back from the engine (both must be 0).
4. **GPU**: ``gpu_docs_per_s`` (encode-only, dense + SPLADE, one GPU) is read from
   ``bench/out/encoders_gpu.json`` when ``bench/encoders_gpu.py`` ran on a lent GPU; else null.
   A projection table puts workers x docs/s per worker against the measured engine write rate.

Ends with ``RESULT {json}``; also writes ``bench/out/scale.json`` (or ``scale-TAG.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

import common
from common import log

from es_neural.dialects import BaseDialect, get_dialect
from es_neural.ingest.pipeline import IngestOptions, IngestReport
from es_neural.settings import Settings, get_settings

GPU_JSON = common.OUT_DIR / "encoders_gpu.json"


def _drop(dialect: BaseDialect, name: str) -> None:
    for concrete in dialect.resolve_alias(name):
        dialect.delete_index(concrete)
    dialect.delete_index(name)


def _ids(dialect: BaseDialect, index: str) -> list[str]:
    dialect.refresh(index)
    return [hit["_id"] for hit in dialect.scan(index, source=False, page_size=5000)]


def _options(tmp: Path, name: str, batch_size: int) -> IngestOptions:
    return IngestOptions(
        batch_size=batch_size,
        progress=False,
        resume=False,
        checkpoint_path=tmp / f"{name}.checkpoint.json",
        dead_letter_path=tmp / f"{name}.dead.jsonl",
    )


def _row(name: str, report: IngestReport, wall_s: float, workers: int | str) -> dict[str, Any]:
    steady = report.extra.get("steady_docs_per_s")
    return {
        "run": name,
        "workers": workers,
        "docs": report.indexed + report.unchanged,
        "docs_per_s": steady if steady is not None else report.docs_per_s,
        "startup_s": report.extra.get("startup_s") or 0.0,
        "wall_s": wall_s,
        "dead_lettered": report.dead_lettered,
    }


# ----- 1. encoding: single process vs Ray-1 vs Ray-2 -----


def encoding(args: argparse.Namespace, settings: Settings, tmp: Path) -> list[dict[str, Any]]:
    import torch

    from es_neural.encoders.registry import Encoders
    from es_neural.neural_index import NeuralIndex
    from es_neural.scale import ScaleOptions, SettingsModels, ingest_ray

    corpus = common.head_jsonl(common.SCIFACT_CORPUS, args.n)
    use_sparse = not args.dense_only
    torch.set_num_threads(1)
    encoders = Encoders.from_settings(settings, sparse=use_sparse)
    encoders.dense.encode_documents(["warm up"])
    if encoders.sparse is not None:
        encoders.sparse.encode_documents(["warm up"])
    dialect = get_dialect(settings)
    rows: list[dict[str, Any]] = []
    try:
        name = f"bench-scale-single-{uuid.uuid4().hex[:6]}"
        log(f"single process: {args.n} SciFact documents, 1 torch thread")
        idx = NeuralIndex(
            name,
            settings=settings,
            dialect=dialect,
            dense=encoders.dense,
            sparse=encoders.sparse,
            use_sparse=use_sparse,
        )
        t0 = time.perf_counter()
        report = idx.ingest(corpus, options=_options(tmp, name, args.batch_size))
        rows.append(_row("single process", report, time.perf_counter() - t0, 1))
        _drop(dialect, name)
        for workers in (1, 2):
            name = f"bench-scale-ray{workers}-{uuid.uuid4().hex[:6]}"
            log(f"Ray, {workers} CPU worker(s), 1 torch thread each")
            t0 = time.perf_counter()
            report = ingest_ray(
                corpus,
                name,
                settings=settings,
                options=_options(tmp, name, args.batch_size),
                scale=ScaleOptions(workers=workers, torch_threads=1, block_size=args.block_size),
                models=SettingsModels(settings, use_sparse=use_sparse),
            )
            rows.append(
                _row(f"Ray, {workers} CPU worker(s)", report, time.perf_counter() - t0, workers)
            )
            _drop(dialect, name)
    finally:
        dialect.close()
    return rows


# ----- 2. the write path with stand-in encoders -----


def write_path(args: argparse.Namespace, settings: Settings, tmp: Path) -> list[dict[str, Any]]:
    from es_neural.scale import ScaleOptions, ingest_ray
    from tests.support.corpus import make_docs
    from tests.support.scale import StandInModels

    path = tmp / "write.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, args.n_write, 10_000):
            docs = make_docs(min(10_000, args.n_write - start), seed=start, prefix=f"w{start}-")
            f.write("".join(json.dumps(d) + "\n" for d in docs))
    dialect = get_dialect(settings)
    rows: list[dict[str, Any]] = []
    try:
        for writers in args.writers:
            name = f"bench-scale-write{writers}-{uuid.uuid4().hex[:6]}"
            log(f"write path (stand-in encoders): {args.n_write:,} documents, {writers} writer(s)")
            t0 = time.perf_counter()
            report = ingest_ray(
                path,
                name,
                settings=settings,
                options=_options(tmp, name, 500),
                scale=ScaleOptions(workers=2, writers=writers, block_size=20_000),
                models=StandInModels(),
            )
            row = _row(
                f"stand-in encoders, {writers} writer(s)", report, time.perf_counter() - t0, 2
            )
            row["writers"] = writers
            dialect.refresh(name)
            row["count"] = dialect.count(name)
            rows.append(row)
            _drop(dialect, name)
    finally:
        dialect.close()
    return rows


# ----- 3. faults: lost and duplicated -----


def faults(args: argparse.Namespace, settings: Settings, tmp: Path, address: str) -> dict[str, Any]:
    from es_neural.scale import ScaleOptions, ingest_ray
    from tests.support.corpus import make_docs
    from tests.support.scale import LoggedTinyModels, encoded_hashes, pids
    from tests.support.tiny_models import make_tiny_bert_dir

    folder = make_tiny_bert_dir(tmp / "tiny")
    docs = make_docs(args.n_fault, seed=21)
    path = tmp / "faults.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    expected = {d["id"] for d in docs}
    dialect = get_dialect(settings)
    out: dict[str, Any] = {"docs": len(docs), "runs": []}

    def tally(name: str, index: str, extra: dict[str, Any]) -> None:
        ids = _ids(dialect, index)
        row = {
            "run": name,
            "lost": len(expected - set(ids)),
            "duplicated": len(ids) - len(set(ids)),
            "unexpected": len(set(ids) - expected),
            **extra,
        }
        out["runs"].append(row)
        log(f"{name}: {row}")

    try:
        # an encoder worker SIGKILLed
        index = f"bench-scale-kill-worker-{uuid.uuid4().hex[:6]}"
        logs = tmp / "kill-worker"
        killed: dict[str, Any] = {}

        def kill() -> None:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and len(encoded_hashes(logs)) < len(docs) // 5:
                time.sleep(0.1)
            if pids(logs):
                killed["pid"] = pids(logs)[0]
                killed["at_encoded"] = len(encoded_hashes(logs))
                os.kill(killed["pid"], signal.SIGKILL)

        thread = threading.Thread(target=kill, daemon=True)
        thread.start()
        report = ingest_ray(
            path,
            index,
            settings=settings,
            options=_options(tmp, index, 20),
            scale=ScaleOptions(workers=2, block_size=100),
            models=LoggedTinyModels(str(folder), str(logs), delay_s=0.1),
        )
        thread.join(timeout=60)
        tally(
            "encoder worker SIGKILLed",
            index,
            {"killed": bool(killed), "encoder_processes": len(pids(logs)), "read": report.read},
        )
        _drop(dialect, index)

        # the driver SIGKILLed, then the same run again
        index = f"bench-scale-kill-driver-{uuid.uuid4().hex[:6]}"
        checkpoint = tmp / f"{index}.blocks.json"
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.scale",
                "ingest",
                "--address",
                address,
                "--settings",
                settings.model_dump_json(),
                "--folder",
                str(folder),
                "--log-dir",
                str(tmp / "kill-driver-1"),
                "--workers",
                "2",
                "--batch-size",
                "20",
                "--delay-s",
                "0.1",
                "--report",
                str(tmp / "driver.json"),
                "--file",
                str(path),
                "--index",
                index,
                "--checkpoint",
                str(checkpoint),
                "--dead",
                str(tmp / f"{index}.dead.jsonl"),
                "--block-size",
                "100",
            ],
            cwd=common.REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        done: list[int] = []
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and driver.poll() is None and not done:
            try:
                done = json.loads(checkpoint.read_text(encoding="utf-8"))["done"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        killed_driver = driver.poll() is None
        driver.kill()
        driver.wait(timeout=60)
        time.sleep(5)  # the job's workers exit with their driver
        report = ingest_ray(
            path,
            index,
            settings=settings,
            options=IngestOptions(
                batch_size=20,
                progress=False,
                checkpoint_path=checkpoint,
                dead_letter_path=tmp / f"{index}.dead.jsonl",
            ),
            scale=ScaleOptions(workers=2, block_size=100),
            models=LoggedTinyModels(str(folder), str(tmp / "kill-driver-2")),
        )
        tally(
            "driver SIGKILLed, run again",
            index,
            {
                "killed": killed_driver,
                "blocks_resumed": report.extra.get("blocks_resumed"),
                "read_again": report.read,
                "encoded_again": len(encoded_hashes(tmp / "kill-driver-2")),
            },
        )
        _drop(dialect, index)
    finally:
        dialect.close()
    out["lost"] = sum(r["lost"] for r in out["runs"])
    out["duplicated"] = sum(r["duplicated"] for r in out["runs"])
    return out


# ----- 4. GPU and projection -----


def gpu_docs_per_s() -> float | None:
    try:
        data = json.loads(GPU_JSON.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("gpu_docs_per_s")
    return float(value) if isinstance(value, int | float) else None


def projection(per_worker: dict[str, float | None], write_rate: float | None) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for kind, rate in per_worker.items():
        if rate is None or write_rate is None:
            continue
        for workers in (1, 2, 4, 8, 16, 32, 64):
            encode = workers * rate
            rows.append(
                [
                    kind,
                    workers,
                    rate,
                    encode,
                    write_rate,
                    min(encode, write_rate),
                    "encoders" if encode < write_rate else "engine writes",
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="SciFact documents (encoding part)")
    parser.add_argument("--n-write", type=int, default=200_000, help="write-path documents")
    parser.add_argument("--n-fault", type=int, default=600, help="documents of each fault run")
    parser.add_argument("--writers", default="1,2,4", help="writer counts of the write path")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=500)
    parser.add_argument("--dense-only", action="store_true", help="no SPLADE in the encoding part")
    parser.add_argument("--engine", default="elasticsearch")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["encode", "write", "faults"]
    )
    parser.add_argument("--tag", default=None, help="output to bench/out/scale-TAG.json")
    args = parser.parse_args()
    args.writers = [int(w) for w in args.writers.split(",") if w.strip()]

    import ray

    settings = get_settings().with_(engine=args.engine)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    address = ray.get_runtime_context().gcs_address
    result: dict[str, Any] = {
        "engine": args.engine,
        "machine": f"{os.cpu_count()} CPUs (shared); encoding at 1 torch thread per process",
        "ray": ray.__version__,
        "n": args.n if "encode" not in args.skip else None,
        "n_write": args.n_write if "write" not in args.skip else None,
    }
    with tempfile.TemporaryDirectory(prefix="es-neural-bench-scale-") as folder:
        tmp = Path(folder)
        encode_rows = [] if "encode" in args.skip else encoding(args, settings, tmp)
        write_rows = [] if "write" in args.skip else write_path(args, settings, tmp)
        fault = None if "faults" in args.skip else faults(args, settings, tmp, address)
    ray.shutdown()

    rates = {r["run"]: r["docs_per_s"] for r in encode_rows}
    single = rates.get("single process")
    ray1 = rates.get("Ray, 1 CPU worker(s)")
    ray2 = rates.get("Ray, 2 CPU worker(s)")
    write_rate = max((r["docs_per_s"] for r in write_rows), default=None)
    gpu = gpu_docs_per_s()
    result.update(
        encoding=encode_rows,
        write_path=write_rows,
        faults=fault,
        ray2_over_ray1=ray2 / ray1 if ray1 and ray2 else None,
        ray1_over_single=ray1 / single if ray1 and single else None,
        write_path_docs_per_s=write_rate,
        gpu_docs_per_s=gpu,
        gpu_source=str(GPU_JSON.relative_to(common.REPO)) if gpu is not None else None,
        lost=fault["lost"] if fault else None,
        duplicated=fault["duplicated"] if fault else None,
    )
    if encode_rows:
        print(
            f"\nEncoding: {args.n:,} SciFact documents, real embedded models "
            f"({'dense' if args.dense_only else 'dense + SPLADE'}), {result['machine']}"
        )
        print(common.table(
            ["run", "workers", "docs", "docs/s (steady)", "startup s", "wall s"],
            [[r["run"], r["workers"], r["docs"], r["docs_per_s"], r["startup_s"], r["wall_s"]]
             for r in encode_rows],
        ))  # fmt: skip
    if write_rows:
        print(
            f"\nWrite path, STAND-IN encoders (hashed 32-dim pseudo-vectors, not a model): "
            f"{args.n_write:,} documents, 2 encoder workers"
        )
        print(common.table(
            ["writers", "docs written", "bulk docs/s (steady)", "wall s"],
            [[r["writers"], r["docs"], r["docs_per_s"], r["wall_s"]] for r in write_rows],
        ))  # fmt: skip
    if fault:
        print(f"\nFaults ({fault['docs']} documents each, tiny BERT)")
        print(common.table(
            ["run", "lost", "duplicated", "unexpected"],
            [[r["run"], r["lost"], r["duplicated"], r["unexpected"]] for r in fault["runs"]],
        ))  # fmt: skip
    table = projection({"CPU worker (1 thread)": ray1, "GPU worker": gpu}, write_rate)
    result["projection"] = table
    if table:
        print("\nProjection: workers x docs/s per worker against the measured engine write rate")
        print(common.table(
            ["worker", "workers", "docs/s each", "encode docs/s", "engine docs/s", "expected",
             "bottleneck"],
            table,
        ))  # fmt: skip
    common.write_json(f"scale-{args.tag}.json" if args.tag else "scale.json", result)
    common.print_result(
        {
            k: result[k]
            for k in (
                "ray2_over_ray1",
                "ray1_over_single",
                "write_path_docs_per_s",
                "gpu_docs_per_s",
                "lost",
                "duplicated",
                "n",
                "n_write",
            )
        }
    )


if __name__ == "__main__":
    main()
