"""Three-node clusters on loopback and the fault scenarios run on them (issue 7).

Shared by ``tests/integration/test_cluster_faults.py`` (which asserts) and
``bench/reliability_cluster.py`` (which reports), so the two cannot drift apart.

The clusters are a separate :class:`~es_neural.engines.LocalEngines` instance (``cluster3``:
own run folder and data, the engine installs shared with the default nodes) based 200 ports
above the configured engine URLs (9400 / 9401 by default; node ``i`` at ``+10 * i``), with
512 MB heaps and a deliberately tiny write thread pool (one thread, a queue of two), so that
a burst of concurrent bulk requests is rejected with 429 / ``es_rejected_execution_exception``.
Indices made here have 3 shards and 1 replica, at most two shard copies per node, so every
node holds shards and losing one node leaves every shard with an active copy (yellow).

Cluster introspection (shard placement, elected master, thread-pool counters) uses plain
``urllib`` GETs, like :mod:`es_neural.engines.probe`: engine clients live in the dialects only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_neural.dialects import BaseDialect, BulkAction, IndexSpec, get_dialect
from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.engines import LocalEngines
from es_neural.engines.nodes import node_ports, node_url, url_port
from es_neural.errors import EngineError
from es_neural.indices import neural_meta, read_index_info
from es_neural.ingest.pipeline import IngestOptions, IngestReport
from es_neural.ingest.sources import iterable_source
from es_neural.migrate import MigrationOptions, MigrationReport, Migrator
from es_neural.neural_index import NeuralIndex
from es_neural.search.models import SearchRequest, SparseLeg
from es_neural.search.service import HybridSearcher
from es_neural.settings import EngineKind, EngineSettings, Settings
from es_neural.text import DEFAULT_TEXT_FIELDS
from tests.support.corpus import make_docs
from tests.support.node_faults import kill_node

__all__ = [
    "INSTANCE",
    "NODES",
    "PORT_OFFSET",
    "WRITE_POOL",
    "BackpressureResult",
    "Cluster",
    "Clusters",
    "KillIngestResult",
    "KillMigrationResult",
    "SearchProbe",
    "backpressure_ingest",
    "cluster_manager_settings",
    "kill_during_ingest",
    "kill_during_migration",
]

INSTANCE = "cluster3"
NODES = 3
PORT_OFFSET = 200
HEAP = "512m"
SHARDS = 3
#: A write pool this small rejects concurrent bulk shard requests (429) on purpose.
WRITE_POOL = {"thread_pool.write.size": "1", "thread_pool.write.queue_size": "2"}
#: Every node holds two shard copies of a 3-shard, 1-replica index (so every node holds shards).
_SPREAD = {"routing": {"allocation": {"total_shards_per_node": 2}}}
_STATE_TIMEOUT_S = 300.0

Progress = Callable[[str], None]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxies


def cluster_manager_settings(base: Settings) -> Settings:
    """``base`` moved to the cluster ports (+200), small heaps, replicas 1."""
    changes: dict[str, Any] = {"engine_heap": HEAP, "replicas": 1, "shards": SHARDS}
    for engine in EngineKind:
        first = base.engine_settings(engine).urls[0]
        port = url_port(first) + PORT_OFFSET
        changes[engine.value] = EngineSettings(url=node_url(port))
    return base.with_(**changes)


# ----- one cluster -----


@dataclass
class Cluster:
    """One running 3-node cluster and what the scenarios need to know about it."""

    engine: EngineKind
    manager: LocalEngines
    #: Client settings: ``url`` lists every node, replicas 1, 3 shards, ``engine`` set.
    settings: Settings
    base_port: int

    @property
    def urls(self) -> list[str]:
        return [node_url(node_ports(self.base_port, i)[0]) for i in range(NODES)]

    def node_name(self, node: int) -> str:
        return f"{self.engine.value}-node{node}"

    def node_index(self, name: str) -> int:
        return int(name.rsplit("node", 1)[1])

    def dialect(self) -> BaseDialect:
        return get_dialect(self.settings, self.engine)

    def get(self, path: str, *, timeout: float = 10.0) -> Any:
        """``GET path`` as JSON from the first node that answers."""
        last: Exception | None = None
        for url in self.urls:
            request = urllib.request.Request(url + path, headers={"Accept": "application/json"})
            try:
                with _OPENER.open(request, timeout=timeout) as response:
                    return json.loads(response.read().decode("utf-8") or "null")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = exc
        raise EngineError(f"no node of the {self.engine.value} cluster answered {path}: {last}")

    def master(self) -> int:
        rows = self.get("/_cat/master?format=json")
        return self.node_index(rows[0]["node"])

    def shards(self, index: str) -> list[dict[str, Any]]:
        """``_cat/shards`` rows of ``index`` (alias resolved): shard, prirep, state, node."""
        rows = self.get(f"/_cat/shards/{index}?format=json&h=index,shard,prirep,state,node")
        return [dict(r) for r in rows]

    def nodes_holding(self, index: str, *, primaries: bool = False) -> dict[int, int]:
        """Node -> number of started shard copies (primaries only, if asked) of ``index``."""
        held: dict[int, int] = {}
        for row in self.shards(index):
            if row.get("state") != "STARTED" or not row.get("node"):
                continue
            if primaries and row.get("prirep") != "p":
                continue
            node = self.node_index(str(row["node"]).split(" ")[0])
            held[node] = held.get(node, 0) + 1
        return held

    def write_pool(self) -> list[dict[str, Any]]:
        """Per node: the write thread pool's configured size/queue and its counters."""
        info = self.get("/_nodes/thread_pool?filter_path=nodes.*.thread_pool.write")
        stats = self.get("/_nodes/stats/thread_pool?filter_path=nodes.*.thread_pool.write")
        out = []
        for node_id, node in info.get("nodes", {}).items():
            pool = node["thread_pool"]["write"]
            counters = stats.get("nodes", {}).get(node_id, {}).get("thread_pool", {})
            out.append({**pool, **counters.get("write", {})})
        return out

    def rejected_writes(self) -> int:
        return sum(int(p.get("rejected", 0)) for p in self.write_pool())

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/_cluster/health")
        return result

    def wait_nodes(self, nodes: int = NODES, timeout: float = _STATE_TIMEOUT_S) -> None:
        """Until ``nodes`` nodes are in the cluster (after a restart)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if int(self.health().get("number_of_nodes", 0)) >= nodes:
                    return
            except EngineError:
                pass
            if time.monotonic() > deadline:
                raise EngineError(
                    f"{self.engine.value}: fewer than {nodes} nodes after {timeout} s"
                )
            time.sleep(0.5)

    def kill(self, node: int) -> None:
        kill_node(self.manager, self.engine, node)

    def restart(self) -> None:
        """Start what is missing and wait until every node is back and healthy."""
        self.manager.up(self.engine, nodes=NODES, timeout=_STATE_TIMEOUT_S)

    def create_neural_index(
        self,
        dialect: BaseDialect,
        alias: str,
        dense: DenseEncoder,
        sparse: SparseEncoder | None,
        *,
        replicas: int = 1,
        per_node: int = 2,
    ) -> None:
        """``alias-v1`` (+ alias) like ``ensure_index``, with shard copies spread ``per_node``."""
        spec = IndexSpec(
            dims=dense.dims,
            similarity=dense.similarity,
            shards=SHARDS,
            replicas=replicas,
            meta=neural_meta(
                dense=dense.fingerprint,
                sparse=sparse.fingerprint if sparse is not None else None,
                text_fields=DEFAULT_TEXT_FIELDS,
            ),
            source_settings={
                "index": {"routing": {"allocation": {"total_shards_per_node": per_node}}}
            },
        )
        dialect.create_index(f"{alias}-v1", dialect.index_body(spec))
        dialect.swap_alias(alias, f"{alias}-v1")


class Clusters:
    """Both engines' clusters, started in parallel; :meth:`get` waits for one."""

    def __init__(
        self,
        base: Settings,
        engines: Sequence[EngineKind] = tuple(EngineKind),
        *,
        progress: Progress | None = None,
    ) -> None:
        self.settings = cluster_manager_settings(base)
        self.manager = LocalEngines(
            self.settings, instance=INSTANCE, node_settings=WRITE_POOL, progress=progress
        )
        self.engines = tuple(engines)
        self._pool = ThreadPoolExecutor(max_workers=len(self.engines), thread_name_prefix="up")
        self._futures: dict[EngineKind, Future[Cluster]] = {}

    def start(self) -> Clusters:
        for engine in self.engines:
            self._futures[engine] = self._pool.submit(self._up, engine)
        return self

    def _up(self, engine: EngineKind) -> Cluster:
        self.manager.up(engine, nodes=NODES, timeout=_STATE_TIMEOUT_S)
        base_port = self.manager.base_port(engine)
        urls = ",".join(node_url(node_ports(base_port, i)[0]) for i in range(NODES))
        client = self.settings.with_(engine=engine, **{engine.value: EngineSettings(url=urls)})
        cluster = Cluster(engine, self.manager, client, base_port)
        for pool in cluster.write_pool():
            if (str(pool.get("size")), str(pool.get("queue_size"))) != (
                WRITE_POOL["thread_pool.write.size"],
                WRITE_POOL["thread_pool.write.queue_size"],
            ):
                raise EngineError(
                    f"{engine.value} cluster at {urls} runs with write pool {pool}, not "
                    f"{WRITE_POOL} (a cluster left from another run? stop it: "
                    f"LocalEngines(..., instance={INSTANCE!r}).down({engine.value!r}))"
                )
        return cluster

    def get(self, engine: EngineKind) -> Cluster:
        return self._futures[engine].result()

    def stop(self) -> None:
        """Stop every cluster node (waits for starts still running first)."""
        for future in self._futures.values():
            with contextlib.suppress(Exception):  # stop whatever did start
                future.result()
        self._pool.shutdown(wait=True)
        for engine in self.engines:
            self.manager.down(engine)


# ----- searches during an outage -----


@dataclass
class SearchProbe:
    """Hybrid searches run in a loop on another thread; what each one gave."""

    searchers: Mapping[str, HybridSearcher]
    requests: Sequence[SearchRequest]
    pause_s: float = 0.4
    results: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SearchProbe:
        self._thread = threading.Thread(target=self._loop, name="search-probe", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            for name, searcher in self.searchers.items():
                request = self.requests[i % len(self.requests)]
                started = time.perf_counter()
                row: dict[str, Any] = {"index": name, "at": time.monotonic()}
                try:
                    response = searcher.search(request)
                    row.update(
                        ok=True,
                        partial=response.partial,
                        hits=len(response.hits),
                        failed_shards=max((s.missing for s in response.shards.values()), default=0),
                        total_shards=max((s.total for s in response.shards.values()), default=0),
                        warnings=list(response.warnings),
                    )
                except Exception as exc:  # recorded: a search must never crash the caller
                    row.update(ok=False, error=f"{type(exc).__name__}: {exc}")
                row["ms"] = (time.perf_counter() - started) * 1000
                self.results.append(row)
            i += 1
            self._stop.wait(self.pause_s)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        return self.results


def search_summary(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    ms = sorted(r["ms"] for r in rows)
    return {
        "searches": len(rows),
        "errors": sum(1 for r in rows if not r["ok"]),
        "partial": sum(1 for r in rows if r.get("partial")),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "max_ms": round(ms[-1], 1) if ms else None,
    }


# ----- scenario 1: SIGKILL a node during an ingest -----


@dataclass
class KillIngestResult:
    engine: str
    docs: int
    victim: int
    victim_primaries: int
    master: int
    report: IngestReport
    #: Runs after the first one (each resumed from the checkpoint).
    resumes: int
    ids: list[str]
    count: int
    with_vector: int
    elapsed_s: float
    outage_s: float
    #: Searches between the kill and the node's return, per index ("replicated"/"fragile").
    outage_searches: dict[str, list[dict[str, Any]]]

    @property
    def lost(self) -> int:
        expected = {f"d{i}" for i in range(self.docs)}
        return len(expected - set(self.ids))

    @property
    def duplicated(self) -> int:
        return len(self.ids) - len(set(self.ids))

    @property
    def unexpected(self) -> int:
        expected = {f"d{i}" for i in range(self.docs)}
        return len(set(self.ids) - expected)

    def summary(self) -> dict[str, Any]:
        return {
            "docs": self.docs,
            "count": self.count,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
            "retries": self.report.retries,
            "resumes": self.resumes,
            "victim": f"node{self.victim} ({self.victim_primaries} primaries"
            f"{', master' if self.victim == self.master else ''})",
            "elapsed_s": round(self.elapsed_s, 1),
            "outage_s": round(self.outage_s, 1),
            "searches": {k: search_summary(v) for k, v in self.outage_searches.items()},
        }


def drop_indexes(dialect: BaseDialect, *names: str) -> None:
    """Delete ``names`` and whatever indices they alias: a scenario's indexes, before it (what an
    interrupted run left on the cluster, whose data survives restarts) and after it."""
    for name in names:
        for concrete in dialect.resolve_alias(name):
            dialect.delete_index(concrete)
        dialect.delete_index(name)


def _wait_count(dialect: BaseDialect, index: str, at_least: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            dialect.refresh(index)
            if dialect.count(index) >= at_least:
                return
        except EngineError:
            pass
        time.sleep(0.25)
    raise EngineError(f"{index} did not reach {at_least} documents in {timeout} s")


def _all_ids(dialect: BaseDialect, index: str) -> list[str]:
    dialect.refresh(index)
    return [hit["_id"] for hit in dialect.scan(index, source=False, page_size=2000)]


def kill_during_ingest(
    cluster: Cluster,
    *,
    dense: DenseEncoder,
    index: str,
    state_dir: Path,
    docs: int = 20_000,
    kill_at: float = 0.2,
    down_s: float = 5.0,
    batch_size: int = 100,
    progress: Progress | None = None,
) -> KillIngestResult:
    """Ingest ``docs`` documents (dense only) into ``index`` (3 shards, 1 replica); once
    ``kill_at`` of them are in, SIGKILL a node that holds primaries of it (not the elected
    master), keep it down ``down_s`` seconds, restart it, and let the ingest run on.

    A second index ``<index>-fragile`` (no replica, one shard on each node) is searched next to
    the replicated one while the node is away: its results are partial by construction.
    """
    say = progress or (lambda _m: None)
    dialect = cluster.dialect()
    search_dialect = cluster.dialect()
    fragile = f"{index}-fragile"
    try:
        drop_indexes(dialect, index, fragile)
        cluster.create_neural_index(dialect, index, dense, None)
        cluster.create_neural_index(dialect, fragile, dense, None, replicas=0, per_node=1)
        options = IngestOptions(
            progress=False,
            batch_size=batch_size,
            checkpoint_path=state_dir / f"{index}.checkpoint.json",
            dead_letter_path=state_dir / f"{index}.dead.jsonl",
            retry_deadline_s=120.0,
        )
        idx = NeuralIndex(
            index, settings=cluster.settings, dialect=dialect, dense=dense, use_sparse=False
        )
        NeuralIndex(
            fragile, settings=cluster.settings, dialect=dialect, dense=dense, use_sparse=False
        ).ingest(
            make_docs(300, seed=5, prefix="f", words=10),
            options=IngestOptions(progress=False, checkpoint_path=state_dir / "fragile.json"),
        )
        searchers = {
            name: HybridSearcher(search_dialect, target, dense=dense)
            for name, target in (("replicated", index), ("fragile", fragile))
        }
        requests = [
            SearchRequest(query=q, size=10, sparse=SparseLeg(enabled=False))
            for q in ("neural search engine", "gene protein cell", "river mountain forest")
        ]
        corpus = make_docs(docs, seed=1, words=10)
        source = iterable_source(corpus, identity=f"cluster-faults-{index}")
        fault: dict[str, Any] = {}
        problems: list[BaseException] = []
        probe = SearchProbe(searchers, requests)

        def inject() -> None:
            watcher = cluster.dialect()
            try:
                _wait_count(watcher, index, int(docs * kill_at))
                master = cluster.master()
                held = cluster.nodes_holding(index, primaries=True)
                candidates = [n for n in held if n != master] or list(held)
                victim = max(candidates, key=lambda n: (held[n], n))
                fault.update(victim=victim, primaries=held[victim], master=master)
                say(f"{cluster.engine.value}: SIGKILL node{victim} ({held[victim]} primaries)")
                probe.start()
                fault["killed_at"] = time.monotonic()
                cluster.kill(victim)
                time.sleep(down_s)
                say(f"{cluster.engine.value}: restarting node{victim}")
                cluster.restart()
                fault["back_at"] = time.monotonic()
                say(f"{cluster.engine.value}: node{victim} is back")
            except BaseException as exc:  # reported by the caller
                problems.append(exc)
            finally:
                watcher.close()

        thread = threading.Thread(target=inject, name="fault-injector", daemon=True)
        started = time.perf_counter()
        thread.start()
        resumes = 0
        while True:
            try:
                report = idx.ingest(source, options=options)
                break
            except EngineError as exc:
                # retries ran out (the cluster stayed unusable too long): resume from the
                # checkpoint, as a user would by running the command again
                resumes += 1
                say(f"{cluster.engine.value}: ingest stopped ({exc}); resuming")
                if resumes > 3:
                    raise
        thread.join(timeout=_STATE_TIMEOUT_S + 60)
        searches = probe.stop()
        if problems:
            raise problems[0]
        if "back_at" not in fault:
            raise EngineError("the fault was never injected (the ingest finished first?)")
        elapsed = time.perf_counter() - started
        outage = [r for r in searches if fault["killed_at"] <= r["at"] <= fault["back_at"]]
        ids = _all_ids(dialect, index)
        return KillIngestResult(
            engine=cluster.engine.value,
            docs=docs,
            victim=fault["victim"],
            victim_primaries=fault["primaries"],
            master=fault["master"],
            report=report,
            resumes=resumes,
            ids=ids,
            count=dialect.count(index),
            with_vector=dialect.count(index, {"exists": {"field": "embedding"}}),
            elapsed_s=elapsed,
            outage_s=fault["back_at"] - fault["killed_at"],
            outage_searches={name: [r for r in outage if r["index"] == name] for name in searchers},
        )
    finally:
        drop_indexes(dialect, index, fragile)
        dialect.close()
        search_dialect.close()


# ----- scenario 2: SIGKILL a node during a migration -----


def _load_source(dialect: BaseDialect, index: str, docs: Sequence[Mapping[str, Any]]) -> None:
    """Bulk-load plain documents, re-sending items the small write queue rejects."""
    for start in range(0, len(docs), 500):
        pending = [
            BulkAction(index, str(d["id"]), {k: v for k, v in d.items() if k != "id"})
            for d in docs[start : start + 500]
        ]
        for attempt in range(20):
            result = dialect.bulk(pending)
            if result.permanent_failures:
                raise EngineError(f"load failed: {result.permanent_failures[:3]}")
            again = {item.doc_id for item in result.transient_failures}
            if not again:
                break
            time.sleep(min(0.1 * 2**attempt, 2.0))
            pending = [a for a in pending if a.doc_id in again]
        else:
            raise EngineError(f"load: {len(pending)} items still rejected after 20 tries")
    dialect.refresh(index)


def source_digests(dialect: BaseDialect, index: str, drop: Sequence[str] = ()) -> dict[str, str]:
    """``_id`` -> sha256 of the document's fields (minus ``drop``), read back from ``index``."""
    dialect.refresh(index)
    out: dict[str, str] = {}
    for hit in dialect.scan(index, source_excludes=drop, page_size=1000):
        fields = {k: v for k, v in hit["_source"].items() if k not in drop}
        blob = json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()
        out[hit["_id"]] = hashlib.sha256(blob).hexdigest()
    return out


@dataclass
class KillMigrationResult:
    engine: str
    docs: int
    victim: int
    master: int
    report: MigrationReport
    resumes: int
    source_count: int
    target_count: int
    source_digests: dict[str, str]
    target_digests: dict[str, str]
    alias_targets: list[str]
    elapsed_s: float

    @property
    def lost(self) -> int:
        return len(set(self.source_digests) - set(self.target_digests))

    @property
    def different(self) -> int:
        return sum(
            1
            for doc_id, digest in self.source_digests.items()
            if doc_id in self.target_digests and self.target_digests[doc_id] != digest
        )

    def summary(self) -> dict[str, Any]:
        return {
            "docs": self.docs,
            "source_count": self.source_count,
            "target_count": self.target_count,
            "lost": self.lost,
            "different": self.different,
            "verify_ok": bool(self.report.verify and self.report.verify.ok),
            "switched": self.report.switched,
            "resumes": self.resumes,
            "verify_rounds": self.report.rounds,
            "scan_restarts": self.report.counts.get("scan_restarts", 0),
            "item_retries": self.report.counts.get("item_retries", 0),
            "victim": f"node{self.victim}{' (master)' if self.victim == self.master else ''}",
            "elapsed_s": round(self.elapsed_s, 1),
        }


def kill_during_migration(
    cluster: Cluster,
    *,
    dense: DenseEncoder,
    sparse: SparseEncoder | None,
    name: str,
    state_dir: Path,
    docs: int = 3000,
    kill_at: float = 0.15,
    down_s: float = 3.0,
    progress: Progress | None = None,
) -> KillMigrationResult:
    """Migrate a plain ``<name>-src`` index (3 shards, 1 replica) into a neural ``<name>-v1``
    behind the alias ``name``; once ``kill_at`` of the documents are copied, SIGKILL the
    elected master (it holds shard copies and, likely, points in time), restart it."""
    say = progress or (lambda _m: None)
    dialect = cluster.dialect()
    source = f"{name}-src"
    target = f"{name}-v1"
    try:
        mapping = {
            "properties": {
                "title": {"type": "text"},
                "text": {"type": "text"},
                "year": {"type": "integer"},
            }
        }
        settings = {"number_of_shards": SHARDS, "number_of_replicas": 1, **{"index": _SPREAD}}
        drop_indexes(dialect, name, source, target)
        dialect.create_index(source, {"settings": settings, "mappings": mapping})
        _load_source(dialect, source, make_docs(docs, seed=9, words=10))
        fault: dict[str, Any] = {}
        problems: list[BaseException] = []

        def inject() -> None:
            watcher = cluster.dialect()
            try:
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    try:
                        if watcher.index_exists(target):
                            watcher.refresh(target)
                            if watcher.count(target) >= docs * kill_at:
                                break
                    except EngineError:
                        pass
                    time.sleep(0.1)
                master = cluster.master()
                fault.update(victim=master, master=master)
                say(f"{cluster.engine.value}: SIGKILL node{master} (master) during the copy")
                cluster.kill(master)
                time.sleep(down_s)
                cluster.restart()
                fault["back"] = True
                say(f"{cluster.engine.value}: node{master} is back")
            except BaseException as exc:
                problems.append(exc)
            finally:
                watcher.close()

        thread = threading.Thread(target=inject, name="fault-injector", daemon=True)
        migrator = Migrator(
            dialect,
            None,
            dense=dense,
            sparse=sparse,
            options=MigrationOptions(
                alias=name,
                workers=2,
                page_size=200,
                batch_size=50,
                retry_deadline_s=240,
                progress=False,
            ),
            state_dir=state_dir,
        )
        started = time.perf_counter()
        thread.start()
        resumes = 0
        while True:
            try:
                report = migrator.run(source)
                break
            except EngineError as exc:
                resumes += 1
                say(f"{cluster.engine.value}: migration stopped ({exc}); resuming")
                if resumes > 3:
                    raise
        thread.join(timeout=_STATE_TIMEOUT_S + 60)
        if problems:
            raise problems[0]
        if "back" not in fault:
            raise EngineError("the fault was never injected (the copy finished first?)")
        elapsed = time.perf_counter() - started
        drop = read_index_info(dialect, target).fields.neural()
        return KillMigrationResult(
            engine=cluster.engine.value,
            docs=docs,
            victim=fault["victim"],
            master=fault["master"],
            report=report,
            resumes=resumes,
            source_count=dialect.count(source),
            target_count=dialect.count(target),
            source_digests=source_digests(dialect, source),
            target_digests=source_digests(dialect, target, drop),
            alias_targets=dialect.resolve_alias(name),
            elapsed_s=elapsed,
        )
    finally:
        drop_indexes(dialect, name, source, target)
        dialect.close()


# ----- scenario 3: backpressure -----


@dataclass
class BackpressureResult:
    engine: str
    docs: int
    writers: int
    reports: list[IngestReport]
    rejected_by_engine: int
    ids: list[str]
    count: int
    elapsed_s: float

    @property
    def retries(self) -> int:
        return sum(r.retries for r in self.reports)

    @property
    def dead_lettered(self) -> int:
        return sum(r.dead_lettered for r in self.reports)

    @property
    def lost(self) -> int:
        expected = {f"b{i}" for i in range(self.docs)}
        return len(expected - set(self.ids))

    @property
    def duplicated(self) -> int:
        return len(self.ids) - len(set(self.ids))

    def summary(self) -> dict[str, Any]:
        return {
            "docs": self.docs,
            "writers": self.writers,
            "count": self.count,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "retries": self.retries,
            "rejected_by_engine": self.rejected_by_engine,
            "dead_lettered": self.dead_lettered,
            "elapsed_s": round(self.elapsed_s, 1),
        }


def backpressure_ingest(
    cluster: Cluster,
    *,
    dense: DenseEncoder,
    index: str,
    state_dir: Path,
    docs: int = 4000,
    writers: int = 6,
    batch_size: int = 100,
) -> BackpressureResult:
    """``writers`` ingest pipelines at once (each its share of ``docs``, small batches) into
    one index on the cluster's tiny write pool: the engine rejects bulk items with 429, the
    pipelines re-send them with backoff."""
    dialect = cluster.dialect()
    try:
        drop_indexes(dialect, index)
        cluster.create_neural_index(dialect, index, dense, None)
        corpus = make_docs(docs, seed=4, prefix="b", words=10)
        share = -(-docs // writers)
        rejected_before = cluster.rejected_writes()

        def one(w: int) -> IngestReport:
            part = corpus[w * share : (w + 1) * share]
            writer_dialect = cluster.dialect()
            try:
                idx = NeuralIndex(
                    index,
                    settings=cluster.settings,
                    dialect=writer_dialect,
                    dense=dense,
                    use_sparse=False,
                )
                return idx.ingest(
                    iterable_source(part, identity=f"backpressure-{index}-{w}"),
                    options=IngestOptions(
                        progress=False,
                        batch_size=batch_size,
                        refresh=False,
                        checkpoint_path=state_dir / f"bp-{w}.json",
                        dead_letter_path=state_dir / f"bp-{w}.dead.jsonl",
                    ),
                )
            finally:
                writer_dialect.close()

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="bp-writer") as pool:
            reports = list(pool.map(one, range(writers)))
        elapsed = time.perf_counter() - started
        rejected = cluster.rejected_writes() - rejected_before
        ids = _all_ids(dialect, index)
        return BackpressureResult(
            engine=cluster.engine.value,
            docs=docs,
            writers=writers,
            reports=reports,
            rejected_by_engine=rejected,
            ids=ids,
            count=dialect.count(index),
            elapsed_s=elapsed,
        )
    finally:
        drop_indexes(dialect, index)
        dialect.close()
