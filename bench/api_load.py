"""HTTP API under load (issue 7): throughput and latency, then graceful degradation.

    .venv/bin/python bench/api_load.py                       # ES, the issue's full run (~6 min)
    .venv/bin/python bench/api_load.py --duration 5 --phase-duration 8   # quicker
    .venv/bin/python bench/api_load.py --engine opensearch --skip degradation

**The index**: ``bench-api-scifact-N`` (default N=1000: the first SciFact abstracts), built once
with the embedded models (MiniLM-L6 dense + SPLADE-tiny sparse) through ``NeuralIndex.ingest``
and reused when its count matches; ``--index NAME`` uses an existing es-neural index instead.
Queries are SciFact claims; every request is a hybrid search (BM25 + dense + SPLADE, RRF, 10 hits).

**Load** (``es-neural serve`` in a subprocess on a loopback port, default gate: 4 searches at
once + 16 queued, 10 s timeout): closed-loop clients (httpx, one thread each) at concurrency
1, 4, 16 and 64 for a fixed duration each. Per level: answers/s, p50/p95/p99 of the 200s and of
every answer, status counts. Above the gate's capacity the server answers 503 + ``Retry-After``
at once instead of queueing.

**Degradation** (a second server with a small gate, 4 running + 4 queued, and a 2 s request
timeout; it reaches the engine through a delaying TCP proxy that runs in this script: asyncio,
every byte towards the engine held ``--slow-delay`` seconds, the answers untouched; its reranker
is a real CrossEncoder, MiniLM-L6's backbone under an untrained head, the size of
ms-marco-MiniLM-L6: only its cost matters; top 50 in batches of 2, a generous 60 s server
budget). Requests arrive open loop at ``--phase-rate`` per second (``--rerank-rate`` in the
rerank phases) whatever the answers, as many independent clients would send them, so a queue
that grew would show as latency growing through the phase:

1. ``baseline``: proxy delay 0, no rerank.
2. ``slow_engine``: delay ``--slow-delay`` (3 s) > timeout: searches answer 504 + Retry-After at
   the timeout, and 503 + Retry-After at once while the gate is full. The proxy counts the
   requests that reach the engine (one per search: no retries past the deadline).
3. ``recovered``: delay 0 again: 200s.
4. ``slow_reranker_budget``: rerank on with a 100 ms budget: 200s in the fused order
   (``rerank.applied: false``, the budget reason) at about engine + budget + one batch.
5. ``slow_reranker_timeout``: rerank on under the server's 60 s budget (clients can only lower
   it): the whole rerank outlasts the timeout, 504/503 + Retry-After, never an unbounded wait.

For every phase: the latency of *every* answer (p50, p95 of the first and of the second half of
the phase, p99, max), whether every 503/504 carried ``Retry-After``, the server's RSS (psutil:
start, peak, end), the requests and the most connections the engine saw. Ends with
``RESULT {json}``; ``api_p95_ms_under_load`` is the p95 of the 200s at concurrency 16.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import Summary, log

_METHOD = re.compile(rb"^(GET|POST|PUT|HEAD|DELETE) /")

# ----------------------------------------------------------------------------- the index


def ensure_index(engine: str, docs: int) -> str:
    """``bench-api-scifact-<docs>`` with the embedded models (built once, then reused)."""
    from es_neural import NeuralIndex, get_settings
    from es_neural.ingest.pipeline import IngestOptions

    name = f"bench-api-scifact-{docs}"
    idx = NeuralIndex(name, settings=get_settings(), engine=engine)
    try:
        exists = bool(idx.dialect.resolve_alias(idx.name)) or idx.dialect.index_exists(idx.name)
        if exists and idx.count() == docs:
            log(f"index {idx.name} on {engine}: {docs} documents, reused")
            return idx.name
        path = common.head_jsonl(common.SCIFACT_CORPUS, docs)
        log(f"building {idx.name} on {engine} from {docs} SciFact abstracts (embedded models)")
        started = time.perf_counter()
        report = idx.ingest(path, options=IngestOptions(progress=False))
        log(f"built in {time.perf_counter() - started:.0f} s: {report.indexed} indexed")
        if idx.count() != docs:
            raise SystemExit(f"{idx.name} holds {idx.count()} documents, not {docs}")
        return idx.name
    finally:
        idx.close()


def queries(n: int) -> list[str]:
    return [row["text"] for row in common.read_jsonl(common.SCIFACT_QUERIES, n)]


# ----------------------------------------------------------------------------- the slow proxy


class DelayProxy:
    """A TCP proxy on loopback that holds every client->engine byte ``delay_s`` seconds.

    Real fault injection between the API and the engine: the engine still answers every request,
    only later. Counts connections, the most open at once, and requests (chunks that start with
    an HTTP method line) that reached the engine.
    """

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 80
        self.delay_s = 0.0
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset_counts(self) -> None:
        self.requests = 0
        self.max_open = self.open

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def read_client() -> None:
            try:
                while data := await reader.read(65536):
                    if _METHOD.match(data):
                        self.requests += 1
                    await queue.put((time.monotonic(), data))
            finally:
                await queue.put(None)

        async def write_upstream() -> None:
            while (item := await queue.get()) is not None:
                arrived, data = item
                wait = arrived + self.delay_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def write_client() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        tasks = [
            asyncio.ensure_future(t) for t in (read_client(), write_upstream(), write_client())
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.open -= 1
            for w in (writer, up_writer):
                w.close()


# ----------------------------------------------------------------------------- the server


class ServerRss:
    """Samples the server process's RSS (MiB) every ``interval_s`` while in a ``with``."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval_s
        self._stop = threading.Event()
        self.samples: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._process.memory_info().rss / 2**20)
            except Exception:  # the process ended
                return
            self._stop.wait(self._interval)

    def __enter__(self) -> ServerRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        s = self.samples or [float("nan")]
        return {"rss_start_mb": s[0], "rss_peak_mb": max(s), "rss_end_mb": s[-1]}


# ----------------------------------------------------------------------------- the load


def load(
    base: str,
    make_body: Callable[[int], dict[str, Any]],
    concurrency: int,
    duration_s: float,
    *,
    inspect: Callable[[Any], str | None] | None = None,
) -> dict[str, Any]:
    """``concurrency`` closed-loop clients for ``duration_s``: statuses and latencies."""
    import httpx

    rows: list[tuple[int | str, float, bool]] = []
    notes: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration_s

    def client(worker: int) -> None:
        with httpx.Client(base_url=base, timeout=60.0) as http:
            i = worker
            while time.perf_counter() < stop_at:
                body = make_body(i)
                i += concurrency
                t0 = time.perf_counter()
                note = None
                try:
                    response = http.post("/v1/search", json=body)
                    status: int | str = response.status_code
                    retry_after = "retry-after" in response.headers
                    if inspect is not None and status == 200:
                        note = inspect(response.json())
                except httpx.HTTPError as exc:
                    status, retry_after = type(exc).__name__, False
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    rows.append((status, elapsed, retry_after))
                    if note:
                        notes[note] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [ms for status, ms, _ in rows if status == 200]
    every = [ms for _, ms, _ in rows]
    refused = [(s, ra) for s, _, ra in rows if s in (503, 504)]
    statuses = Counter(str(s) for s, _, _ in rows)
    s_ok, s_all = Summary.of(ok), Summary.of(every)
    return {
        "concurrency": concurrency,
        "duration_s": duration_s,
        "wall_s": wall,
        "requests": len(rows),
        "ok": len(ok),
        "ok_per_s": len(ok) / wall,
        "answers_per_s": len(rows) / wall,
        "statuses": dict(sorted(statuses.items())),
        "p50_ms": s_ok.p50,
        "p95_ms": s_ok.p95,
        "p99_ms": s_ok.p99,
        "all_p50_ms": s_all.p50,
        "all_p95_ms": s_all.p95,
        "all_p99_ms": s_all.p99,
        "all_max_ms": max(every) if every else float("nan"),
        "retry_after_on_503_504": all(ra for _, ra in refused) if refused else None,
        "notes": dict(notes),
    }


def load_open(
    base: str,
    make_body: Callable[[int], dict[str, Any]],
    rate: float,
    duration_s: float,
    *,
    inspect: Callable[[Any], str | None] | None = None,
    max_in_flight: int = 256,
) -> dict[str, Any]:
    """Open loop: a request every ``1/rate`` s whatever the answers (what many independent
    clients do); an unbounded server queue would show as latency growing phase-long."""
    import httpx

    rows: list[tuple[int | str, float, bool, float]] = []
    notes: Counter[str] = Counter()
    lock = threading.Lock()
    local = threading.local()
    in_flight = 0
    peak_in_flight = 0
    dropped = 0
    started = time.perf_counter()

    def one(i: int) -> None:
        nonlocal in_flight
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(base_url=base, timeout=60.0)
        t0 = time.perf_counter()
        note = None
        try:
            response = http.post("/v1/search", json=make_body(i))
            status: int | str = response.status_code
            retry_after = "retry-after" in response.headers
            if inspect is not None and status == 200:
                note = inspect(response.json())
        except httpx.HTTPError as exc:
            status, retry_after = type(exc).__name__, False
        elapsed = (time.perf_counter() - t0) * 1000
        with lock:
            rows.append((status, elapsed, retry_after, t0 - started))
            in_flight -= 1
            if note:
                notes[note] += 1

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max_in_flight) as pool:
        n = int(rate * duration_s)
        for i in range(n):
            wait = started + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            with lock:
                if in_flight >= max_in_flight:
                    dropped += 1  # the client side is full (never reached here in practice)
                    continue
                in_flight += 1
                peak_in_flight = max(peak_in_flight, in_flight)
            pool.submit(one, i)
    wall = time.perf_counter() - started
    every = [ms for _, ms, _, _ in rows]
    ok = [ms for status, ms, _, _ in rows if status == 200]
    refused = [ra for status, _, ra, _ in rows if status in (503, 504)]
    half = duration_s / 2
    first = [ms for _, ms, _, at in rows if at < half]
    second = [ms for _, ms, _, at in rows if at >= half]
    s_ok, s_all = Summary.of(ok), Summary.of(every)
    return {
        "rate_per_s": rate,
        "duration_s": duration_s,
        "wall_s": wall,
        "requests": len(rows),
        "ok": len(ok),
        "ok_per_s": len(ok) / wall,
        "statuses": dict(sorted(Counter(str(s) for s, _, _, _ in rows).items())),
        "p50_ms": s_ok.p50,
        "p95_ms": s_ok.p95,
        "p99_ms": s_ok.p99,
        "all_p50_ms": s_all.p50,
        "all_p95_ms": s_all.p95,
        "all_p99_ms": s_all.p99,
        "all_max_ms": max(every) if every else float("nan"),
        # Latency of requests sent in the first vs the second half: equal when nothing queues.
        "all_p95_ms_first_half": Summary.of(first).p95,
        "all_p95_ms_second_half": Summary.of(second).p95,
        "client_peak_in_flight": peak_in_flight,
        "client_dropped": dropped,
        "retry_after_on_503_504": all(refused) if refused else None,
        "notes": dict(notes),
    }


def hybrid_body(index: str, texts: Sequence[str], **extra: Any) -> Callable[[int], dict[str, Any]]:
    def make(i: int) -> dict[str, Any]:
        return {"index": index, "query": texts[i % len(texts)], "size": 10, **extra}

    return make


def rerank_note(data: dict[str, Any]) -> str:
    rerank = data.get("rerank") or {}
    if rerank.get("applied"):
        return "reranked"
    reason = str(rerank.get("reason") or "")
    return "fused order kept (budget)" if "budget" in reason else f"not reranked: {reason[:40]}"


# ----------------------------------------------------------------------------- the runs


def run_levels(
    engine: str, index: str, texts: list[str], levels: Sequence[int], duration_s: float, env: dict
) -> dict[str, Any]:
    with common.api_server(engine, index, {"ES_NEURAL_RERANK__MODEL": "off", **env}) as server:
        base = server.base
        load(base, hybrid_body(index, texts), 2, min(5.0, duration_s))  # warm-up
        out: dict[str, Any] = {}
        for c in levels:
            with ServerRss(server.pid) as rss:
                row = load(base, hybrid_body(index, texts), c, duration_s)
            row.update(rss.summary())
            out[str(c)] = row
            log(
                f"c={c}: {row['ok_per_s']:.1f} ok/s, p50 {row['p50_ms']:.0f} / p95 "
                f"{row['p95_ms']:.0f} / p99 {row['p99_ms']:.0f} ms, statuses {row['statuses']}"
            )
        return out


def run_degradation(
    engine: str,
    index: str,
    texts: list[str],
    *,
    delay_s: float,
    timeout_s: float,
    phase_s: float,
    rate: float,
    rerank_rate: float,
    env: dict[str, str],
) -> dict[str, Any]:
    from es_neural import get_settings
    from es_neural.encoders.registry import embedded_dense_path

    settings = get_settings().engine_settings(engine)
    proxy = DelayProxy(settings.urls[0]).start()
    reranker = str(embedded_dense_path())  # MiniLM-L6 backbone, untrained head: a real cost
    server_env = {
        f"ES_NEURAL_{engine.upper()}__URL": proxy.url,
        "ES_NEURAL_API__REQUEST_TIMEOUT_S": str(timeout_s),
        "ES_NEURAL_API__MAX_CONCURRENCY": "4",
        "ES_NEURAL_API__MAX_QUEUE": "4",
        "ES_NEURAL_RERANK__MODEL": reranker,
        "ES_NEURAL_RERANK__TOP_N": "50",
        "ES_NEURAL_RERANK__BATCH_SIZE": "2",
        # A generous server budget (clients can only lower it): the last phase's rerank runs
        # past the request timeout, as a misconfigured or overloaded reranker would.
        "ES_NEURAL_RERANK__BUDGET_MS": "60000",
        "ES_NEURAL_RERANK__MAX_LENGTH": "256",
        **env,
    }
    server = common.start_api_server(engine, index, server_env)
    base = server.base
    phases: dict[str, Any] = {}
    no_rerank = {"rerank": {"enabled": False}}
    budget = {"rerank": {"enabled": True, "budget_ms": 100.0}}
    server_budget = {"rerank": {"enabled": True}}
    plan: list[tuple[str, float, dict[str, Any], float, float]] = [
        ("baseline", 0.0, no_rerank, phase_s, rate),
        ("slow_engine", delay_s, no_rerank, phase_s, rate),
        ("recovered", 0.0, no_rerank, phase_s, rate),
        ("slow_reranker_budget", 0.0, budget, phase_s, rerank_rate),
        ("slow_reranker_timeout", 0.0, server_budget, phase_s, rerank_rate),
    ]
    try:
        server.wait_ready()
        load(base, hybrid_body(index, texts, **no_rerank), 2, 4.0)  # warm-up
        load(base, hybrid_body(index, texts, rerank={"enabled": True}), 1, 4.0)
        for name, delay, extra, seconds, phase_rate in plan:
            proxy.delay_s = delay
            if name == "recovered":
                time.sleep(timeout_s)  # timed-out searches finish and free their slots
            proxy.reset_counts()
            with ServerRss(server.pid) as rss:
                row = load_open(
                    base,
                    hybrid_body(index, texts, **extra),
                    phase_rate,
                    seconds,
                    inspect=rerank_note,
                )
            row.update(rss.summary())
            row["proxy_delay_s"] = delay
            row["engine_requests"] = proxy.requests
            row["engine_max_connections"] = proxy.max_open
            row["engine_requests_per_answer"] = proxy.requests / max(row["requests"], 1)
            phases[name] = row
            log(
                f"{name}: statuses {row['statuses']}, all p50 {row['all_p50_ms']:.0f} / p99 "
                f"{row['all_p99_ms']:.0f} / max {row['all_max_ms']:.0f} ms, engine requests "
                f"{proxy.requests}, notes {row['notes']}"
            )
        return {
            "timeout_s": timeout_s,
            "slow_delay_s": delay_s,
            "rate_per_s": rate,
            "rerank_rate_per_s": rerank_rate,
            "gate": "4 running + 4 queued",
            "reranker": "LATENCY STAND-IN: all-MiniLM-L6-v2 backbone + untrained head, top 50, "
            "batches of 2, server budget 60 s",
            "phases": phases,
        }
    finally:
        server.stop()
        proxy.stop()


def checks(levels: dict[str, Any], degradation: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if levels:
        out["only_200_or_503_under_load"] = all(
            set(row["statuses"]) <= {"200", "503"} for row in levels.values()
        )
    if degradation:
        timeout_ms = degradation["timeout_s"] * 1000
        phases = degradation["phases"]
        bounded = {}
        for name in ("slow_engine", "slow_reranker_timeout", "slow_reranker_budget"):
            row = phases.get(name)
            if row:
                bounded[name] = row["all_max_ms"] <= timeout_ms * 1.5 + 1000
        out["latency_bounded_by_timeout"] = bounded
        out["retry_after_on_every_503_504"] = all(
            row["retry_after_on_503_504"] is not False for row in phases.values()
        )
        out["recovered_answers_200"] = phases.get("recovered", {}).get("ok", 0) > 0
        out["no_queue_growth"] = {
            name: row["all_p95_ms_second_half"] <= 1.5 * row["all_p95_ms_first_half"] + 500
            for name, row in phases.items()
        }
        budget = phases.get("slow_reranker_budget", {}).get("notes", {})
        out["budget_fallback_to_fused_order"] = budget.get("fused order kept (budget)", 0)
        rss = [row["rss_end_mb"] - row["rss_start_mb"] for row in phases.values()]
        out["rss_growth_mb_max_per_phase"] = max(rss) if rss else None
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--engine", default="elasticsearch", choices=["elasticsearch", "opensearch"])
    p.add_argument("--docs", type=int, default=1000, help="SciFact abstracts in the index")
    p.add_argument("--index", help="an existing es-neural index instead of bench-api-scifact-N")
    p.add_argument("--levels", default="1,4,16,64", help="client concurrency levels")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per level")
    p.add_argument("--phase-duration", type=float, default=15.0, help="seconds per phase")
    p.add_argument("--phase-rate", type=float, default=4.0, help="requests/s sent per phase")
    p.add_argument("--rerank-rate", type=float, default=1.5, help="requests/s, rerank phases")
    p.add_argument("--slow-delay", type=float, default=3.0, help="seconds the proxy adds")
    p.add_argument("--timeout", type=float, default=2.0, help="API request timeout (degradation)")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--torch-threads", type=int, default=1, help="OMP threads of the server")
    p.add_argument("--skip", action="append", default=[], choices=["load", "degradation"])
    p.add_argument("--tag", default="", help="writes bench/out/api_load-TAG.json")
    args = p.parse_args(argv)

    index = args.index or ensure_index(args.engine, args.docs)
    texts = queries(args.queries)
    env = {"OMP_NUM_THREADS": str(args.torch_threads), "MKL_NUM_THREADS": str(args.torch_threads)}
    levels_out: dict[str, Any] = {}
    if "load" not in args.skip:
        levels = [int(x) for x in args.levels.split(",")]
        levels_out = run_levels(args.engine, index, texts, levels, args.duration, env)
    degradation = None
    if "degradation" not in args.skip:
        degradation = run_degradation(
            args.engine,
            index,
            texts,
            delay_s=args.slow_delay,
            timeout_s=args.timeout,
            phase_s=args.phase_duration,
            rate=args.phase_rate,
            rerank_rate=args.rerank_rate,
            env=env,
        )

    print(
        f"\nHTTP API under load: {args.engine}, index {index}, {os.cpu_count()} CPUs (shared), "
        f"server torch threads {args.torch_threads}"
    )
    if levels_out:
        print("\nclosed-loop hybrid search (server gate: 4 running + 16 queued, 10 s timeout)")
        rows = [
            [
                int(c),
                r["requests"],
                r["ok_per_s"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
                r["rss_peak_mb"],
                " ".join(f"{k}:{v}" for k, v in r["statuses"].items()),
            ]
            for c, r in levels_out.items()
        ]
        heads = ["clients", "answers", "200/s", "p50 ms", "p95 ms", "p99 ms", "RSS MiB", "status"]
        print(common.table(heads, rows))
    if degradation:
        print(
            f"\ndegradation (open loop; API timeout {degradation['timeout_s']:g} s, gate "
            f"{degradation['gate']}; engine behind a delaying proxy; {degradation['reranker']})"
        )
        rows = [
            [
                name,
                r["rate_per_s"],
                r["proxy_delay_s"],
                r["requests"],
                r["all_p50_ms"],
                r["all_p95_ms_first_half"],
                r["all_p95_ms_second_half"],
                r["all_p99_ms"],
                r["all_max_ms"],
                r["engine_requests"],
                r["engine_max_connections"],
                round(r["rss_end_mb"] - r["rss_start_mb"], 1),
                " ".join(f"{k}:{v}" for k, v in r["statuses"].items()),
            ]
            for name, r in degradation["phases"].items()
        ]
        heads = ["phase", "req/s", "delay s", "answers", "p50 ms", "p95 1st", "p95 2nd", "p99 ms"]
        heads += ["max ms", "engine req"]
        heads += ["engine conns", "RSS +MiB", "status"]
        print(common.table(heads, rows))
        for name, r in degradation["phases"].items():
            if r["notes"]:
                print(f"  {name}: {r['notes']}")
    result = {
        "engine": args.engine,
        "index": index,
        "api_p95_ms_under_load": levels_out.get("16", {}).get("p95_ms"),
        "levels": levels_out,
        "degradation": degradation,
        "checks": checks(levels_out, degradation),
    }
    print(f"\nchecks: {result['checks']}")
    path = common.write_json(f"api_load{'-' + args.tag if args.tag else ''}.json", result)
    log(f"wrote {path}")
    common.print_result(result)
    return result


if __name__ == "__main__":
    main()
