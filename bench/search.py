"""Search benchmark (issue 4): latency per leg and hybrid, its split, and HTTP API throughput.

    .venv/bin/python bench/ingest.py --skip scifact --skip big      # builds the 100k index
    .venv/bin/python bench/search.py                                # this benchmark

On the 100k-document GCIDE index that ``bench/ingest.py`` builds (``bench-gcide-100000``, checked
by its count and the ``_meta`` it records; ``--build`` builds a missing one) and SciFact's claims
as queries (natural-language questions of realistic length):

* **in process** (``NeuralIndex.search``): p50/p95 of ``total_ms`` for each leg alone (bm25,
  dense, sparse) and for the hybrid (all three, RRF) without rerank, each split into query
  encoding (``encode_ms``), the engine round trip (``engine_ms``) and the engine's own ``took``,
  the document fetch (``fetch_ms``), and the layer's own **overhead** = total - (encode + engine
  round trip + fetch + rerank), which holds fusion, request building and response building.
  Configurations alternate query by query, so load drift falls on all alike. Goals: hybrid p95
  <= 50 ms without rerank, overhead <= 10% of the total.
* **rerank**: with the configured reranker (``ES_NEURAL_RERANK__MODEL``) when there is one;
  otherwise labelled *latency stand-ins* (the tiny random BERT of the tests, and MiniLM-L6's
  backbone under an untrained head, the size of ms-marco-MiniLM-L6): their order is meaningless,
  only their cost is measured.
* **HTTP API** (``es-neural serve`` in a subprocess on loopback): hybrid requests at concurrency
  1, 4 and 16 for a fixed duration each: requests/s and p50/p95/p99 latency, non-200 counts.
* **neural-search**: whether ``org.opensearch.plugin:neural-search`` is served on Maven Central
  for the OpenSearch version, and, given ``--neural-search-url`` (an OpenSearch node with the
  plugin and the same index), the same hybrid through its ``hybrid`` query with an RRF search
  pipeline, side by side with this layer on that node.

Writes ``bench/out/search.json`` and ``bench/out/search.png``; ends with one line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import Summary, log
from ingest import META_KEY

CONFIGS: dict[str, dict[str, bool]] = {
    "bm25": {"bm25": True, "dense": False, "sparse": False},
    "dense": {"bm25": False, "dense": True, "sparse": False},
    "sparse": {"bm25": False, "dense": False, "sparse": True},
    "hybrid": {"bm25": True, "dense": True, "sparse": True},
}
_RERANK_LABELS = {
    "standin_tiny_random_bert": "hybrid+rerank\ntiny random BERT\n(latency stand-in)",
    "standin_minilm_l6_untrained_head": "hybrid+rerank\nMiniLM-L6 untrained\n(latency stand-in)",
}
PARTS = ("encode_ms", "engine_took_ms", "client_ms", "fetch_ms", "rerank_ms", "overhead_ms")


# ----- the index -----


def check_index(engine: str, docs: int) -> tuple[str, dict[str, Any]]:
    """The benchmark index on ``engine``: (name, its bench ``_meta``) or SystemExit."""
    from es_neural import NeuralIndex, get_settings
    from es_neural.indices import read_index_info

    name = f"bench-gcide-{docs}"
    idx = NeuralIndex(name, settings=get_settings(), engine=engine)
    try:
        if not (idx.dialect.resolve_alias(idx.name) or idx.dialect.index_exists(idx.name)):
            raise LookupError("missing")
        info = read_index_info(idx.dialect, idx.name)
        marker = dict(info.meta.get(META_KEY) or {})
        count = idx.count()
    except LookupError:
        raise SystemExit(
            f"no index {name} on {engine}: build it with `.venv/bin/python bench/ingest.py "
            f"--skip scifact --skip big --big-docs {docs} --engine {engine}` (or pass --build)"
        ) from None
    finally:
        idx.close()
    if count != docs or not marker.get("complete"):
        raise SystemExit(f"index {name} on {engine} is incomplete ({count} docs, _meta {marker})")
    return name, marker


def build_index(engine: str, docs: int) -> None:
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("ingest.py")),
        "--skip",
        "scifact",
        "--skip",
        "big",
        "--rss-small",
        "1000",
        "--big-docs",
        str(docs),
        "--engine",
        engine,
    ]
    log(f"building the index: {' '.join(cmd[1:])}")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def queries(n: int) -> list[str]:
    rows = common.read_jsonl(common.SCIFACT_QUERIES)
    return [r["text"] for r in rows[:n]]


# ----- in-process latency -----


def request(query: str, config: str, *, rerank: bool = False, **extra: Any) -> Any:
    from es_neural.search.models import SearchRequest

    legs = CONFIGS[config]
    return SearchRequest.model_validate(
        {
            "query": query,
            "size": 10,
            "bm25": {"enabled": legs["bm25"]},
            "dense": {"enabled": legs["dense"]},
            "sparse": {"enabled": legs["sparse"]},
            "rerank": {"enabled": rerank, **extra},
        }
    )


def split(timings: Any) -> dict[str, float]:
    t = timings
    return {
        "total_ms": t.total_ms,
        "encode_ms": t.encode_ms,
        "engine_ms": t.engine_ms,
        "engine_took_ms": t.engine_took_ms,
        "client_ms": max(t.engine_ms - t.engine_took_ms, 0.0),
        "fetch_ms": t.fetch_ms,
        "rerank_ms": t.rerank_ms,
        "fusion_ms": t.fusion_ms,
        "overhead_ms": t.overhead_ms,
    }


def summarise(samples: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(samples)}
    for key in samples[0]:
        s = Summary.of([x[key] for x in samples])
        out[key] = {"p50": s.p50, "p95": s.p95, "mean": s.mean}
    total = sum(x["total_ms"] for x in samples)
    out["overhead_pct"] = 100.0 * sum(x["overhead_ms"] for x in samples) / total
    return out


def run_configs(idx: Any, texts: list[str], configs: Sequence[str]) -> dict[str, list[dict]]:
    samples: dict[str, list[dict]] = {c: [] for c in configs}
    for i, text in enumerate(texts):
        order = list(configs) if i % 2 == 0 else list(reversed(configs))
        for config in order:
            response = idx.search(request(text, config))
            samples[config].append(split(response.timings))
    return samples


class _Rerankers:
    """The rerankers to time: the configured one, else labelled latency stand-ins."""

    @staticmethod
    def available(settings: Any, tmp: Path) -> list[tuple[str, Any, str]]:
        from es_neural.search.rerank import CrossEncoderReranker, get_reranker

        configured = get_reranker(settings.rerank)
        if configured is not None:
            return [("configured", configured, f"configured reranker {configured.name}")]
        sys.path.insert(0, str(common.REPO))
        from es_neural.encoders.registry import embedded_dense_path
        from tests.support.tiny_models import make_tiny_bert_dir

        tiny = make_tiny_bert_dir(tmp / "tiny-bert")
        out = [
            (
                "standin_tiny_random_bert",
                CrossEncoderReranker(
                    str(tiny),
                    max_length=min(settings.rerank.max_length, 128),  # its position table
                    name="LATENCY STAND-IN: tiny random BERT (tests)",
                ),
                "latency stand-in: tests/support/tiny_models.py (2 layers x 32 dims, random)",
            )
        ]
        try:
            backbone = embedded_dense_path()
        except Exception as exc:  # the embedded dense model is not installed
            log(f"no MiniLM-L6 backbone stand-in: {exc}")
        else:
            out.append(
                (
                    "standin_minilm_l6_untrained_head",
                    CrossEncoderReranker(
                        str(backbone),
                        max_length=settings.rerank.max_length,
                        name="LATENCY STAND-IN: MiniLM-L6 + untrained head",
                    ),
                    "latency stand-in: all-MiniLM-L6-v2 backbone with a randomly initialised "
                    "classification head (the size of cross-encoder/ms-marco-MiniLM-L6-v2)",
                )
            )
        return out


def run_rerank(
    engine: str, index: str, texts: list[str], n: int, settings: Any, dense: Any, sparse: Any
) -> dict[str, Any]:
    from es_neural import NeuralIndex

    out: dict[str, Any] = {}
    real = settings.rerank.model != "off"
    with tempfile.TemporaryDirectory() as tmp:
        for key, reranker, label in _Rerankers.available(settings, Path(tmp)):
            reranker.load()
            idx = NeuralIndex(
                index,
                settings=settings,
                engine=engine,
                dense=dense,
                sparse=sparse,
                reranker=reranker,
            )
            top_n = settings.rerank.top_n
            samples, over_default_budget = [], 0
            for j, text in enumerate(texts[: n + 2]):
                # A budget far above the default, so that the model's whole cost is measured.
                response = idx.search(request(text, "hybrid", rerank=True, budget_ms=600_000.0))
                if j < 2:
                    continue  # warm-up
                if (
                    response.timings.rerank_ms + response.timings.fetch_ms
                    > settings.rerank.budget_ms
                ):
                    over_default_budget += 1
                samples.append(split(response.timings))
            idx.close()
            out[key] = {
                "label": label,
                "top_n": top_n,
                "queries": len(samples),
                "over_default_budget": over_default_budget,
                "default_budget_ms": settings.rerank.budget_ms,
                **summarise(samples),
            }
            log(f"rerank {key}: p50 {out[key]['total_ms']['p50']:.0f} ms")
    if not real:
        out["configured"] = "not available (ES_NEURAL_RERANK__MODEL is off and no trained "
        out["configured"] += "reranker ships at es_neural/models/reranker)"
    return out


# ----- HTTP API -----


def load(
    base: str, index: str, texts: list[str], concurrency: int, duration_s: float, max_requests: int
) -> dict[str, Any]:
    """``concurrency`` closed-loop clients for ``duration_s`` (at most ``max_requests``)."""
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    counter = iter(range(max_requests))
    stop_at = time.perf_counter() + duration_s

    def client(worker: int) -> None:
        with httpx.Client(base_url=base, timeout=30.0) as http:
            i = worker
            while time.perf_counter() < stop_at:
                if next(counter, None) is None:
                    return
                body = {
                    "index": index,
                    "query": texts[i % len(texts)],
                    "size": 10,
                    "rerank": {"enabled": False},
                }
                i += concurrency
                t0 = time.perf_counter()
                try:
                    status = str(http.post("/v1/search", json=body).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == "200":
                        latencies.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    s = Summary.of(latencies)
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "ok": len(latencies),
        "statuses": statuses,
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50_ms": s.p50,
        "p95_ms": s.p95,
        "p99_ms": s.p99,
    }


def run_api(
    engine: str, index: str, texts: list[str], levels: Sequence[int], duration_s: float
) -> dict[str, Any]:
    with common.api_server(engine, index, {"ES_NEURAL_RERANK__MODEL": "off"}) as server:
        base = server.base
        load(base, index, texts, 1, min(5.0, duration_s), 10_000)  # warm-up
        out = {}
        for c in levels:
            out[str(c)] = load(base, index, texts, c, duration_s, 10_000)
            log(f"api c={c}: {out[str(c)]['rps']:.1f} req/s, p95 {out[str(c)]['p95_ms']:.0f} ms")
        return out


# ----- OpenSearch neural-search -----


def neural_search_served(version: str) -> dict[str, Any]:
    """Probe Maven Central for the plugin zip (cached under ~/.cache/es-neural/bench)."""
    folder = common.BENCH_CACHE / "neural-search"
    for artifact in ("neural-search", "opensearch-neural-search"):
        zip_path = folder / artifact / f"{artifact}-{version}.0.zip"
        if zip_path.is_file():
            return {
                "served": True,
                "artifact": f"org.opensearch.plugin:{artifact}:{version}.0:zip",
                "zip": str(zip_path),
            }
        if shutil.which("mvn") is None:
            return {"served": None, "reason": "mvn is not installed: cannot probe"}
        cmd = [
            "mvn",
            "-B",
            "-q",
            "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
            f"-Dartifact=org.opensearch.plugin:{artifact}:{version}.0:zip",
            f"-DoutputDirectory={zip_path.parent}",
        ]
        try:
            subprocess.run(cmd, capture_output=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            continue
        if zip_path.is_file():
            return {
                "served": True,
                "artifact": f"org.opensearch.plugin:{artifact}:{version}.0:zip",
                "zip": str(zip_path),
            }
    return {"served": False}


def run_neural_search(
    url: str, index: str, texts: list[str], dense: Any, sparse: Any, warmup: int
) -> dict[str, Any]:
    """This layer vs the plugin's ``hybrid`` query (RRF pipeline), same node, same index."""
    from es_neural import NeuralIndex, get_settings
    from es_neural.queries import bm25_body, knn_body, sparse_body
    from es_neural.settings import EngineSettings

    base = get_settings()
    settings = base.with_(opensearch=EngineSettings(url=url).model_dump())
    idx = NeuralIndex(index, settings=settings, engine="opensearch", dense=dense, sparse=sparse)
    info = idx.searcher.info
    f = info.fields
    client = idx.dialect.client
    pipeline = "es-neural-bench-rrf"
    client.transport.perform_request(
        "PUT",
        f"/_search/pipeline/{pipeline}",
        body={
            "phase_results_processors": [
                {
                    "score-ranker-processor": {
                        "combination": {"technique": "rrf", "rank_constant": 60}
                    }
                }
            ]
        },
    )
    fields = list(info.text_fields)

    def plugin_search(text: str) -> dict[str, float]:
        t0 = time.perf_counter()
        vector = dense.encode_queries([text])[0].tolist()
        weights = sparse.encode_queries([text])[0]
        t1 = time.perf_counter()
        body = {
            "size": 10,
            "_source": fields,
            "query": {
                "hybrid": {
                    "pagination_depth": 100,
                    "queries": [
                        bm25_body(text, fields=fields, size=100)["query"],
                        knn_body(idx.dialect, vector, field=f.dense, k=100, num_candidates=200)[
                            "query"
                        ],
                        sparse_body(idx.dialect, weights, field=f.sparse, size=100)["query"],
                    ],
                }
            },
        }
        response = client.search(index=idx.name, body=body, params={"search_pipeline": pipeline})
        t2 = time.perf_counter()
        return {
            "total_ms": (t2 - t0) * 1000,
            "encode_ms": (t1 - t0) * 1000,
            "engine_ms": (t2 - t1) * 1000,
            "engine_took_ms": float(response["took"]),
            "hits": len(response["hits"]["hits"]),
        }

    for text in texts[:warmup]:
        plugin_search(text)
        idx.search(request(text, "hybrid"))
    ours, theirs = [], []
    for i, text in enumerate(texts):
        if i % 2 == 0:
            ours.append(split(idx.search(request(text, "hybrid")).timings))
            theirs.append(plugin_search(text))
        else:
            theirs.append(plugin_search(text))
            ours.append(split(idx.search(request(text, "hybrid")).timings))
    idx.close()
    plugin = {
        k: {
            "p50": Summary.of([x[k] for x in theirs]).p50,
            "p95": Summary.of([x[k] for x in theirs]).p95,
        }
        for k in ("total_ms", "encode_ms", "engine_ms", "engine_took_ms")
    }
    return {
        "url": url,
        "queries": len(texts),
        "es_neural_hybrid": summarise(ours),
        "plugin_hybrid": plugin,
    }


# ----- chart -----


def chart(rows: dict[str, dict[str, Any]], path: Path, where: str) -> None:
    """p50 of each part stacked per configuration (linear ms), p95 of the total marked; the
    reranked configurations get their own panel (their scale is another)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ["#4c72b0", "#dd8452", "#8c8c8c", "#55a868", "#c44e52", "#8172b3"]
    names = {
        "encode_ms": "query encoding",
        "engine_took_ms": "engine took",
        "client_ms": "engine round trip beyond took",
        "fetch_ms": "fetch (mget)",
        "rerank_ms": "rerank",
        "overhead_ms": "layer overhead",
    }
    plain = [k for k, v in rows.items() if v["rerank_ms"]["p50"] == 0]
    reranked = [k for k in rows if k not in plain]
    panels = [p for p in (plain, reranked) if p]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(11, 5),
        gridspec_kw={"width_ratios": [len(p) for p in panels]},
        squeeze=False,
    )
    for ax, labels in zip(axes[0], panels, strict=True):
        bottoms = [0.0] * len(labels)
        for part, color in zip(PARTS, colors, strict=True):
            values = [rows[label][part]["p50"] for label in labels]
            ax.bar(labels, values, bottom=bottoms, color=color, label=names[part])
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        for i, label in enumerate(labels):
            p95 = rows[label]["total_ms"]["p95"]
            ax.plot([i], [p95], marker="_", markersize=30, color="black")
            ax.annotate(
                f"p95 {p95:.0f}",
                (i, p95),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=8,
            )
        ax.set_ylabel("ms")
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(y=0.12)
    if plain:
        axes[0][0].axhline(50, color="red", linestyle=":", linewidth=1)
        axes[0][0].annotate(
            "50 ms goal", (len(plain) - 0.5, 50), color="red", fontsize=8, ha="right", va="bottom"
        )
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(
        f"es-neural search latency: {where} (bars: p50 parts stacked; tick: p95 of the total)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----- main -----


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="elasticsearch")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--build", action="store_true", help="build a missing index")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rerank-queries", type=int, default=10)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per level")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["latency", "rerank", "api", "neural-search"]
    )
    parser.add_argument("--tag", default=None, help="outputs go to bench/out/search-TAG.{json,png}")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads here and in the API server (default: torch's own)",
    )
    parser.add_argument(
        "--neural-search-url",
        default=None,
        help="an OpenSearch node with the neural-search plugin and the index",
    )
    parser.add_argument(
        "--replot", action="store_true", help="redraw the PNG from the JSON of an earlier run"
    )
    args = parser.parse_args(argv)
    stem = f"search-{args.tag}" if args.tag else "search"
    if args.replot:
        done = json.loads((common.OUT_DIR / f"{stem}.json").read_text(encoding="utf-8"))
        rows = {k: v for k, v in done.get("breakdown", {}).items() if k in CONFIGS}
        for key, value in (done.get("rerank") or {}).items():
            if isinstance(value, dict):
                rows[_RERANK_LABELS.get(key, f"hybrid+rerank\n{key}")] = value
        chart(rows, common.OUT_DIR / f"{stem}.png", f"{done['index']} on {done['engine']}")
        return

    from es_neural import NeuralIndex, get_settings
    from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.torch_threads)
    started = time.perf_counter()
    try:
        index, marker = check_index(args.engine, args.docs)
    except SystemExit:
        if not args.build:
            raise
        build_index(args.engine, args.docs)
        index, marker = check_index(args.engine, args.docs)
    settings = get_settings()
    dense = get_dense_encoder(settings.dense)
    sparse = get_sparse_encoder(settings.sparse)
    texts = queries(args.queries + args.warmup)
    warm, measured = texts[: args.warmup], texts[args.warmup :]
    result: dict[str, Any] = {
        "engine": args.engine,
        "index": index,
        "docs": args.docs,
        "index_document_encoders": marker.get("document_encoders"),
        "queries": len(measured),
        "query_source": "SciFact claims (queries.jsonl, first N)",
        "machine": common.cpu_note(),
    }
    breakdown: dict[str, dict[str, Any]] = {}
    if "latency" not in args.skip:
        idx = NeuralIndex(
            index, settings=settings, engine=args.engine, dense=dense, sparse=sparse, reranker=None
        )
        log(f"warm-up: {len(warm)} queries x {len(CONFIGS)} configurations")
        run_configs(idx, warm, list(CONFIGS))
        log(f"measuring: {len(measured)} queries x {len(CONFIGS)} configurations")
        samples = run_configs(idx, measured, list(CONFIGS))
        idx.close()
        for config, values in samples.items():
            breakdown[config] = summarise(values)
        h = breakdown["hybrid"]
        result["legs"] = {
            c: {
                "p50_ms": breakdown[c]["total_ms"]["p50"],
                "p95_ms": breakdown[c]["total_ms"]["p95"],
            }
            for c in CONFIGS
        }
        result["hybrid"] = {
            "p50_ms": h["total_ms"]["p50"],
            "p95_ms": h["total_ms"]["p95"],
            "p95_goal_ms": 50,
            "meets_p95_goal": h["total_ms"]["p95"] <= 50,
            **{
                f"{k}_p50": h[k]["p50"]
                for k in (
                    "encode_ms",
                    "engine_ms",
                    "engine_took_ms",
                    "fetch_ms",
                    "fusion_ms",
                    "overhead_ms",
                )
            },
            **{
                f"{k}_p95": h[k]["p95"]
                for k in (
                    "encode_ms",
                    "engine_ms",
                    "engine_took_ms",
                    "fetch_ms",
                    "fusion_ms",
                    "overhead_ms",
                )
            },
            "overhead_pct": h["overhead_pct"],
            "overhead_goal_pct": 10,
            "meets_overhead_goal": h["overhead_pct"] <= 10,
            "hybrid_without_encoding_p50_ms": Summary.of(
                [x["total_ms"] - x["encode_ms"] for x in samples["hybrid"]]
            ).p50,
            "hybrid_without_encoding_p95_ms": Summary.of(
                [x["total_ms"] - x["encode_ms"] for x in samples["hybrid"]]
            ).p95,
        }
        result["breakdown"] = dict(breakdown)  # the four configurations; rerank has its own key
    if "rerank" not in args.skip:
        result["rerank"] = run_rerank(
            args.engine, index, measured, args.rerank_queries, settings, dense, sparse
        )
        for key, value in result["rerank"].items():
            if isinstance(value, dict):
                breakdown[_RERANK_LABELS.get(key, f"hybrid+rerank\n{key}")] = value
    if "api" not in args.skip:
        levels = [int(c) for c in args.concurrency.split(",")]
        result["api"] = run_api(args.engine, index, measured, levels, args.duration)
    if "neural-search" not in args.skip:
        from es_neural.settings import get_settings as _gs

        version = _gs().opensearch_version
        probe = neural_search_served(version)
        if not probe.get("served"):
            result["neural_search"] = "not served" if probe.get("served") is False else probe
        elif args.neural_search_url is None:
            result["neural_search"] = {
                **probe,
                "compared": False,
                "reason": "served, but no --neural-search-url (an OpenSearch node with the plugin "
                "installed and the index) was given; installing it needs a node restart",
            }
        else:
            result["neural_search"] = {
                **probe,
                "compared": True,
                **run_neural_search(
                    args.neural_search_url, index, measured, dense, sparse, args.warmup
                ),
            }
    result["wall_s"] = time.perf_counter() - started
    common.write_json(f"{stem}.json", result)
    if breakdown:
        chart(breakdown, common.OUT_DIR / f"{stem}.png", f"{index} on {args.engine}")

    print()
    print(f"Search benchmark: {index} on {args.engine} ({common.cpu_note()})")
    if marker.get("document_encoders") == "standin":
        print(
            "(document vectors of this index come from the stand-in encoders of bench/ingest.py;"
            " queries are encoded by the real models)"
        )
    if breakdown:
        print()
        rows = []
        for label, b in breakdown.items():
            rows.append(
                [
                    label.replace("\n", " "),
                    b["n"],
                    b["total_ms"]["p50"],
                    b["total_ms"]["p95"],
                    b["encode_ms"]["p50"],
                    b["engine_ms"]["p50"],
                    b["engine_took_ms"]["p50"],
                    b["fetch_ms"]["p50"],
                    b["rerank_ms"]["p50"],
                    b["overhead_ms"]["p50"],
                    b["overhead_pct"],
                ]
            )
        print(
            common.table(
                [
                    "configuration",
                    "n",
                    "p50 ms",
                    "p95 ms",
                    "encode",
                    "engine rt",
                    "took",
                    "fetch",
                    "rerank",
                    "overhead",
                    "overhead %",
                ],
                rows,
            )
        )
        print("(split columns are p50 ms; overhead % = sum(overhead) / sum(total))")
    if "api" in result:
        print()
        print(
            common.table(
                [
                    "concurrency",
                    "requests",
                    "ok",
                    "req/s",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "statuses",
                ],
                [
                    [
                        int(c),
                        r["requests"],
                        r["ok"],
                        r["rps"],
                        r["p50_ms"],
                        r["p95_ms"],
                        r["p99_ms"],
                        json.dumps(r["statuses"]),
                    ]
                    for c, r in result["api"].items()
                ],
            )
        )
    if "neural_search" in result:
        print()
        print(f"neural-search: {json.dumps(common.rounded(result['neural_search']))[:600]}")
    summary = {k: v for k, v in result.items() if k != "breakdown"}
    if isinstance(summary.get("rerank"), dict):
        summary["rerank"] = {
            k: (
                v
                if not isinstance(v, dict)
                else {
                    "label": v["label"],
                    "top_n": v["top_n"],
                    "queries": v["queries"],
                    "p50_ms": v["total_ms"]["p50"],
                    "p95_ms": v["total_ms"]["p95"],
                    "rerank_p50_ms": v["rerank_ms"]["p50"],
                    "over_default_budget": v["over_default_budget"],
                }
            )
            for k, v in summary["rerank"].items()
        }
    if isinstance(summary.get("neural_search"), dict) and summary["neural_search"].get("compared"):
        ns = summary["neural_search"]
        summary["neural_search"] = {
            "artifact": ns["artifact"],
            "es_neural_hybrid_p50_ms": ns["es_neural_hybrid"]["total_ms"]["p50"],
            "es_neural_hybrid_p95_ms": ns["es_neural_hybrid"]["total_ms"]["p95"],
            "plugin_hybrid_p50_ms": ns["plugin_hybrid"]["total_ms"]["p50"],
            "plugin_hybrid_p95_ms": ns["plugin_hybrid"]["total_ms"]["p95"],
            "plugin_took_p50_ms": ns["plugin_hybrid"]["engine_took_ms"]["p50"],
            "es_neural_took_p50_ms": ns["es_neural_hybrid"]["engine_took_ms"]["p50"],
        }
    if "api" in summary:
        summary["api"] = {
            c: {k: r[k] for k in ("rps", "p50_ms", "p95_ms", "p99_ms", "ok", "requests")}
            for c, r in summary["api"].items()
        }
    common.print_result(summary)


if __name__ == "__main__":
    main()
