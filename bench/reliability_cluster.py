"""Cluster faults (issue 7): what a SIGKILLed node and a saturated write queue cost, in figures.

    .venv/bin/python bench/reliability_cluster.py                     # both engines (~8-10 min)
    .venv/bin/python bench/reliability_cluster.py --engine opensearch --docs 50000

Starts a 3-node Elasticsearch and a 3-node OpenSearch cluster on loopback (200 ports above the
configured engine URLs, 512 MB heaps, a write thread pool of one thread and a queue of two on
purpose; see ``tests/support/cluster_faults.py``, whose scenarios the integration tests
``tests/integration/test_cluster_faults.py`` run too), and per engine:

* **kill during ingest**: ``--docs`` documents (20,000) through ``NeuralIndex.ingest`` into an
  index of 3 shards and 1 replica; at 20% a node holding primaries (not the master) gets
  SIGKILL, stays down 5 s and is restarted while the ingest goes on. Meanwhile hybrid searches
  (BM25 + kNN) run in a loop on that index and on one without replicas (one shard per node):
  their count, errors, how many were reported partial, p50 / max latency during the outage.
  Then every id is read back: lost, duplicated.
* **kill during migration**: a plain 3,000-document index migrated to a neural one (2 workers);
  the elected master gets SIGKILL during the copy and is restarted; counts and a checksum of every
  document's fields on both sides.
* **backpressure**: 6 ingest pipelines at once (batches of 100) into one index: bulk requests the
  engine rejected (its write pool's ``rejected`` counter), item retries by the pipelines, lost,
  duplicated, dead-lettered.

Encoders: the tests' tiny random BERT (hidden 32, ``tests/support/tiny_models.py``), dense only
for the ingest and backpressure runs, dense + SPLADE for the migration, on one torch thread: the
figures are about the data path, not about the models (the real models encode a few docs/s on
this machine, which would stretch an outage over a handful of documents).

``measure(...)`` returns the figures (``bench/reliability.py`` imports it); the script prints a
table, writes ``bench/out/reliability_cluster.json`` and ends with ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

import common
from common import log

from es_neural.settings import EngineKind, Settings, get_settings

ENCODERS = (
    "tiny random BERT (tests/support/tiny_models.py, hidden 32): dense only for the ingest and "
    "backpressure runs, dense + SPLADE for the migration; 1 torch thread"
)


def measure(
    *,
    engine: str | None = None,
    docs: int = 20_000,
    migrate_docs: int = 3_000,
    backpressure_docs: int = 4_000,
    writers: int = 6,
    settings: Settings | None = None,
    keep_clusters: bool = False,
    progress: Callable[[str], None] = log,
) -> dict[str, Any]:
    """Run the three fault scenarios on the 3-node cluster of ``engine`` (default: both).

    Returns totals (``documents_lost``, ``documents_duplicated``, ``retries``) and, under
    ``engines``, each engine's per-scenario figures. The clusters are stopped at the end unless
    ``keep_clusters``.
    """
    import torch

    from es_neural.encoders.dense import SentenceTransformerDense
    from es_neural.encoders.sparse import SpladeEncoder
    from tests.support.cluster_faults import (
        Clusters,
        backpressure_ingest,
        kill_during_ingest,
        kill_during_migration,
    )
    from tests.support.tiny_models import make_tiny_bert_dir

    engines = [EngineKind(engine)] if engine else list(EngineKind)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu = common.cpu_note()
    work = Path(tempfile.mkdtemp(prefix="es-neural-reliability-"))
    model_dir = make_tiny_bert_dir(work / "tiny-bert")
    dense = SentenceTransformerDense(model_dir, name="tiny-bert")
    dense.load()
    sparse = SpladeEncoder(model_dir, name="tiny-bert")
    sparse.load()
    clusters = Clusters(settings or get_settings(), engines, progress=progress)
    started = time.perf_counter()
    per_engine: dict[str, Any] = {}
    try:
        clusters.start()
        for kind in engines:
            cluster = clusters.get(kind)
            progress(f"{kind.value}: cluster ready after {time.perf_counter() - started:.0f} s")
            state = work / kind.value
            state.mkdir()
            ingest = kill_during_ingest(
                cluster,
                dense=dense,
                index=f"bench-kill-ingest-{kind.value}",
                state_dir=state,
                docs=docs,
                progress=progress,
            ).summary()
            progress(f"{kind.value}: kill during ingest: {ingest}")
            migration = kill_during_migration(
                cluster,
                dense=dense,
                sparse=sparse,
                name=f"bench-kill-migrate-{kind.value}",
                state_dir=state,
                docs=migrate_docs,
                progress=progress,
            ).summary()
            progress(f"{kind.value}: kill during migration: {migration}")
            pressure = backpressure_ingest(
                cluster,
                dense=dense,
                index=f"bench-backpressure-{kind.value}",
                state_dir=state,
                docs=backpressure_docs,
                writers=writers,
            ).summary()
            progress(f"{kind.value}: backpressure: {pressure}")
            per_engine[kind.value] = {
                "kill_ingest": ingest,
                "kill_migration": migration,
                "backpressure": pressure,
            }
    finally:
        torch.set_num_threads(threads)
        if not keep_clusters:
            clusters.stop()
    scenarios = [s for e in per_engine.values() for s in e.values()]
    return {
        "documents_lost": sum(s.get("lost", 0) for s in scenarios),
        "documents_duplicated": sum(s.get("duplicated", 0) for s in scenarios),
        "documents_different": sum(s.get("different", 0) for s in scenarios),
        "retries": sum(s.get("retries", s.get("item_retries", 0)) for s in scenarios),
        "searches_during_outage": sum(
            v["searches"]
            for e in per_engine.values()
            for v in e["kill_ingest"]["searches"].values()
        ),
        "search_errors_during_outage": sum(
            v["errors"] for e in per_engine.values() for v in e["kill_ingest"]["searches"].values()
        ),
        "encoders": ENCODERS,
        "cpu": cpu,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "engines": per_engine,
    }


def _rows(result: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for engine, scenarios in result["engines"].items():
        k = scenarios["kill_ingest"]
        searches = k["searches"]
        rep, frag = searches["replicated"], searches["fragile"]
        rows.append(
            [
                engine,
                "kill during ingest",
                k["docs"],
                k["lost"],
                k["duplicated"],
                k["retries"],
                f"{k['victim']}, down {k['outage_s']} s, {k['resumes']} resumes",
                f"{rep['searches']} ok-{rep['searches'] - rep['errors']} partial-{rep['partial']} "
                f"p50 {rep['p50_ms']} max {rep['max_ms']} ms | no-replica: {frag['searches']} "
                f"partial-{frag['partial']} p50 {frag['p50_ms']} max {frag['max_ms']} ms",
                k["elapsed_s"],
            ]
        )
        m = scenarios["kill_migration"]
        rows.append(
            [
                engine,
                "kill during migration",
                m["docs"],
                m["lost"],
                f"0 (different: {m['different']})",
                m["item_retries"],
                f"{m['victim']}; verify {'ok' if m['verify_ok'] else 'FAILED'}, "
                f"rounds {m['verify_rounds']}, PIT restarts {m['scan_restarts']}",
                "-",
                m["elapsed_s"],
            ]
        )
        b = scenarios["backpressure"]
        rows.append(
            [
                engine,
                f"backpressure ({b['writers']} writers)",
                b["docs"],
                b["lost"],
                b["duplicated"],
                b["retries"],
                f"engine rejected {b['rejected_by_engine']} bulk shard requests; "
                f"dead-lettered {b['dead_lettered']}",
                "-",
                b["elapsed_s"],
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--engine", choices=[e.value for e in EngineKind], default=None)
    p.add_argument("--docs", type=int, default=20_000, help="documents of the kill-ingest run")
    p.add_argument("--migrate-docs", type=int, default=3_000)
    p.add_argument("--backpressure-docs", type=int, default=4_000)
    p.add_argument("--writers", type=int, default=6, help="concurrent pipelines (backpressure)")
    p.add_argument("--keep-clusters", action="store_true", help="leave the clusters running")
    args = p.parse_args(argv)
    result = measure(
        engine=args.engine,
        docs=args.docs,
        migrate_docs=args.migrate_docs,
        backpressure_docs=args.backpressure_docs,
        writers=args.writers,
        keep_clusters=args.keep_clusters,
    )
    headers = [
        "engine",
        "scenario",
        "docs",
        "lost",
        "duplicated",
        "item retries",
        "fault",
        "searches during the outage",
        "s",
    ]
    print(common.table(headers, _rows(result)))
    print(
        f"\ntotal: lost {result['documents_lost']}, duplicated {result['documents_duplicated']}, "
        f"retries {result['retries']}; encoders: {result['encoders']}; {result['cpu']}"
    )
    common.write_json("reliability_cluster.json", result)
    common.print_result(result)
    return result


if __name__ == "__main__":
    main()
