"""What the API tells its operators: Prometheus metrics, OpenTelemetry spans, JSON logs.

* :class:`ApiMetrics` holds the API's metrics in a registry of its own (one per app, so two apps
  in a process never share counters) and renders them for ``GET /metrics``:

  ========================================  ===================================================
  ``es_neural_requests_total``              requests by route and HTTP status
  ``es_neural_request_seconds``             request latency by route (histogram)
  ``es_neural_search_stage_seconds``        per search stage: encode, route, engine, fusion,
                                            rerank, diversify, fetch (histogram, from each
                                            response's timings)
  ``es_neural_rerank_total``                rerank outcome: applied, fallback (past its budget
                                            or failed: the fused order was kept), skipped
  ``es_neural_search_partial_total``        searches answered by only some legs or shards
  ``es_neural_engine_errors_total``         failed searches by error type (the es-neural error
                                            class: ``EngineUnavailableError``, ...)
  ``es_neural_search_queue_depth``          searches queued or running (gauge)
  ========================================  ===================================================

* Spans: :func:`es_neural.observability.span` opens one per search stage when an OpenTelemetry
  SDK is configured by the application; without one the API's no-op tracer costs nothing.
* Logs: ``ES_NEURAL_API__LOG_FORMAT=json`` makes ``es-neural serve`` log one JSON object per
  line (:class:`JsonLogFormatter`). Nothing here logs request bodies, headers or keys.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from es_neural.search.models import SearchResponse

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics", "JsonLogFormatter", "MetricsMiddleware"]

#: The search stages timed in every response (``Timings`` fields without ``_ms``).
STAGES = ("encode", "route", "engine", "fusion", "rerank", "diversify", "fetch")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class ApiMetrics:
    """The API's Prometheus metrics, in their own registry."""

    def __init__(self, queue_depth: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "es_neural_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "es_neural_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stages = Histogram(
            "es_neural_search_stage_seconds",
            "Time per search stage",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.rerank = Counter(
            "es_neural_rerank", "Rerank outcome per search", ["outcome"], registry=r
        )
        self.partial = Counter(
            "es_neural_search_partial",
            "Searches answered by only some legs or shards",
            registry=r,
        )
        self.errors = Counter(
            "es_neural_engine_errors", "Failed searches by error type", ["type"], registry=r
        )
        self.queue = Gauge("es_neural_search_queue_depth", "Searches queued or running", registry=r)
        if queue_depth is not None:
            self.queue.set_function(lambda: float(queue_depth()))
        # Labels known in advance appear at 0 before the first search.
        for stage in STAGES:
            self.stages.labels(stage)
        for outcome in ("applied", "fallback", "skipped"):
            self.rerank.labels(outcome)

    def observe_search(self, response: SearchResponse) -> None:
        """Record one answered search: its stage timings, rerank outcome, partiality."""
        timings = response.timings
        for stage in STAGES:
            self.stages.labels(stage).observe(getattr(timings, f"{stage}_ms") / 1000.0)
        self.rerank.labels(rerank_outcome(response)).inc()
        if response.partial:
            self.partial.inc()

    def observe_error(self, exc: BaseException) -> None:
        self.errors.labels(type(exc).__name__).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def rerank_outcome(response: SearchResponse) -> str:
    """``applied``; ``fallback`` when a rerank was asked for but the fused order was kept (past
    its budget, or the model failed); ``skipped`` when no rerank was asked for."""
    info = response.rerank
    if info.applied:
        return "applied"
    return "fallback" if info.candidates > 0 else "skipped"


class MetricsMiddleware:
    """Counts every HTTP request by route template (never the raw path) and status."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = _route(scope)
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route(scope: Scope) -> str:
    """The matched route's template (``/v1/search``), or ``other``: raw paths would let any
    client create unbounded label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception's type and
    message, never its traceback's locals)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["error"] = {"type": type(exc).__name__, "message": str(exc)}
        return json.dumps(entry, ensure_ascii=False, default=str)
