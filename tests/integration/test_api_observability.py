"""Metrics and traces of the HTTP API against both real engines: after real searches the
Prometheus counters and histograms have moved, per-stage spans are captured by the SDK's
in-memory exporter, and an engine failure is counted by its type."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from es_neural.api import create_app
from es_neural.dialects import BaseDialect
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex
from es_neural.settings import EngineSettings, Settings
from tests.support.fakes import HashingDense

pytestmark = [pytest.mark.engine]

DOCS = [
    {"id": f"d{i}", "title": f"topic {i % 3}", "text": f"river volcano bread number {i}"}
    for i in range(12)
]


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition ``text`` (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "{}")[1:-1].split(","))) if m.group(2) else ""
        if got == wanted:
            return float(m.group(3))
    return 0.0


@pytest.fixture
def served(
    engine_settings: Settings, dialect: BaseDialect, index_name: str
) -> Iterator[tuple[TestClient, str]]:
    dense = HashingDense()
    idx = NeuralIndex(
        index_name, settings=engine_settings, dialect=dialect, dense=dense, use_sparse=False
    )
    idx.ingest(DOCS, options=IngestOptions(progress=False, batch_size=6))
    app = create_app(engine_settings, indexes={index_name: idx})
    with TestClient(app) as client:
        yield client, index_name


def test_metrics_move_after_searches(served: tuple[TestClient, str]) -> None:
    client, name = served
    before = client.get("/metrics").text
    for query in ("river", "volcano bread", "number 7"):
        r = client.post(
            "/v1/search", json={"index": name, "query": query, "sparse": {"enabled": False}}
        )
        assert r.status_code == 200, r.text
    r = client.post("/v1/search", json={"index": name, "query": "x", "size": 1000})
    assert r.status_code == 422
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    ok = _sample(text, "es_neural_requests_total", route="/v1/search", status="200")
    assert ok - _sample(before, "es_neural_requests_total", route="/v1/search", status="200") == 3
    assert _sample(text, "es_neural_requests_total", route="/v1/search", status="422") == 1
    assert _sample(text, "es_neural_search_stage_seconds_count", stage="engine") == 3
    assert _sample(text, "es_neural_search_stage_seconds_sum", stage="engine") > 0
    assert _sample(text, "es_neural_search_stage_seconds_count", stage="encode") == 3
    assert _sample(text, "es_neural_rerank_total", outcome="skipped") == 3
    assert _sample(text, "es_neural_request_seconds_count", route="/v1/search") == 4
    assert "es_neural_search_queue_depth 0.0" in text


def test_spans_per_stage_with_the_sdk(served: tuple[TestClient, str]) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("es_neural")
    client, name = served
    import es_neural.observability as obs

    obs._tracer.cache_clear()
    original = trace.get_tracer
    trace.get_tracer = lambda *a, **k: tracer  # type: ignore[assignment]
    try:
        r = client.post(
            "/v1/search", json={"index": name, "query": "river", "sparse": {"enabled": False}}
        )
        assert r.status_code == 200
    finally:
        trace.get_tracer = original  # type: ignore[assignment]
        obs._tracer.cache_clear()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert "es_neural.search" in spans
    root = spans["es_neural.search"]
    assert root.attributes["index"] == name
    stages = {n for n in spans if n != "es_neural.search"}
    assert {"es_neural.encode", "es_neural.engine", "es_neural.fusion"} <= stages
    for stage in stages:
        assert spans[stage].parent is not None


def test_engine_errors_are_counted_by_type(engine_settings: Settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    kind = engine_settings.engine
    closed = EngineSettings(url=f"http://127.0.0.1:{port}", max_retries=0, request_timeout=2.0)
    settings = engine_settings.with_(**{kind.value: closed})
    idx = NeuralIndex("nowhere", settings=settings, dense=HashingDense(), use_sparse=False)
    with TestClient(create_app(settings, indexes={"nowhere": idx})) as client:
        r = client.post("/v1/search", json={"index": "nowhere", "query": "river"})
        assert r.status_code == 503
        text = client.get("/metrics").text
    assert _sample(text, "es_neural_engine_errors_total", type="EngineUnavailableError") == 1
    assert _sample(text, "es_neural_requests_total", route="/v1/search", status="503") == 1
