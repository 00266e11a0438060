"""The HTTP API: ``POST /v1/search``, ``GET /healthz``, ``GET /readyz``, a search page at ``/``.

>>> app = create_app(get_settings())          # nothing loaded, nothing connected yet
>>> uvicorn.run(app)                           # the lifespan loads the models once

Clients send a :class:`ApiSearchRequest`: the library's :class:`SearchRequest` plus the index
name (and optionally the engine). User text only ever becomes the query of the match, kNN and
sparse bodies that the search service builds; clients cannot send DSL (unknown keys are refused,
filters use the closed portable format of :mod:`es_neural.search.filters`).

Searches are blocking (encoders, engine client), so they run in a bounded pool of threads
(:class:`~es_neural.api.guards.SearchGate`) with a per-request timeout; when the pool and its
small queue are full the API answers 503 with ``Retry-After``. Errors are mapped to JSON in one
place (:mod:`es_neural.api.errors`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from es_neural._version import __version__
from es_neural.api.errors import ApiError, CatchAllMiddleware, ErrorBody, install_error_handlers
from es_neural.api.guards import ApiKeyMiddleware, BodyLimitMiddleware, SearchGate
from es_neural.api.observability import CONTENT_TYPE_LATEST, ApiMetrics, MetricsMiddleware
from es_neural.dialects import BaseDialect, RetryPolicy, dialect_class
from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.errors import ConfigurationError, EsNeuralError
from es_neural.neural_index import NeuralIndex
from es_neural.observability import span
from es_neural.protocols import Reranker
from es_neural.search.models import SearchRequest, SearchResponse
from es_neural.search.profile import load_profile
from es_neural.search.rerank import cap_budget
from es_neural.settings import EngineKind, Settings, get_settings

__all__ = ["INDEX_NAME", "ApiSearchRequest", "create_app"]

log = logging.getLogger("es_neural.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Index (alias) names clients may ask for: lowercase, no wildcards, commas or leading dots.
INDEX_NAME = r"^[a-z0-9][a-z0-9_.\-]{0,99}$"
_INDEX_NAME = re.compile(INDEX_NAME)
#: NeuralIndex objects kept for names not fixed at startup (cheap; encoders and clients shared).
_MAX_CACHED_INDEXES = 256
#: The longest query a client may send (the library itself takes any length).
MAX_QUERY_CHARS = 2048
#: Seconds a readiness answer is reused, so that /readyz cannot be used to flood the engine.
_READY_TTL_S = 1.0
_HEALTH_TIMEOUT_S = 2.0
_PUBLIC_PATHS = ("/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json")
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class ApiSearchRequest(SearchRequest):
    """The body of ``POST /v1/search``: a :class:`SearchRequest` plus where to search."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    index: str = Field(
        pattern=INDEX_NAME,
        description="Index (alias) name: lowercase letters, digits, '_', '.', '-'.",
    )
    engine: EngineKind | None = Field(
        default=None, description="Engine to search; the server's default when omitted."
    )

    def search_request(self) -> SearchRequest:
        """The library request (everything but ``index`` and ``engine``)."""
        fields = {name: getattr(self, name) for name in SearchRequest.model_fields}
        return SearchRequest.model_validate(fields)


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    models: Literal["loaded", "loading", "failed"]
    #: Per engine: its cluster status (green/yellow/red) or ``unavailable``.
    engines: dict[str, str]


def _bounded_dialect(settings: Settings, kind: EngineKind) -> BaseDialect:
    """A dialect whose engine calls, retries included, end about when the request times out.

    Each engine request is cut at the API's request timeout, and retries stop at that deadline
    too: a search the client was already told had timed out (504) does not keep retrying
    against a slow engine (several times its load) while holding its worker thread.
    """
    engine = settings.engine_settings(kind)
    timeout = min(engine.request_timeout, settings.api.request_timeout_s)
    dialect = dialect_class(kind)(engine.model_copy(update={"request_timeout": timeout}))
    policy = RetryPolicy(
        attempts=engine.max_retries + 1,
        initial_wait_s=min(0.25, timeout / 8),
        max_wait_s=max(timeout / 4, 0.01),
        budget_s=timeout,
    )
    return dialect.with_retry(policy)


class _Runtime:
    """What the app holds between requests: encoders, dialects, indexes, the search gate."""

    def __init__(self, settings: Settings, indexes: Mapping[str, NeuralIndex] | None) -> None:
        self.settings = settings
        self.fixed = dict(indexes) if indexes is not None else None
        for name in self.fixed or ():
            if not _INDEX_NAME.match(name):
                raise ConfigurationError(f"index name {name!r} does not match {INDEX_NAME}")
        self.gate = SearchGate(
            max_concurrency=settings.api.max_concurrency,
            max_queue=settings.api.max_queue,
            timeout_s=settings.api.request_timeout_s,
        )
        self.dense: DenseEncoder | None = None
        self.sparse: SparseEncoder | None = None
        self.reranker: Reranker | None = None
        #: The search profile of every request (``ES_NEURAL_PROFILE``), read once at startup.
        self.profile = load_profile(None, settings)
        self.models: Literal["loaded", "loading", "failed"] = "loading"
        self._cache: OrderedDict[tuple[str, EngineKind], NeuralIndex] = OrderedDict()
        self._dialects: dict[EngineKind, BaseDialect] = {}
        self._lock = threading.Lock()
        self._health_lock = threading.Lock()
        self._ready: tuple[float, Readiness] | None = None

    # ----- startup and shutdown -----

    def load_models(self) -> None:
        """Load every encoder (and the reranker) once, so the first search is not slow."""
        try:
            for kind in EngineKind:
                # Import the engine clients here (a startup thread): the first search would
                # otherwise import one inside the event loop, stalling every request for ~1 s.
                dialect_class(kind)
            if self.fixed is not None:
                for idx in self.fixed.values():
                    idx.dense.load()
                    if idx.sparse is not None:
                        idx.sparse.load()
                    load_reranker = getattr(idx.reranker, "load", None)
                    if callable(load_reranker):  # the Reranker protocol does not promise one
                        load_reranker()
            else:
                # Imported here: building the app stays free of torch and model code.
                from es_neural.encoders.registry import Encoders
                from es_neural.search.rerank import get_reranker

                s = self.settings
                encoders = Encoders.from_settings(s)  # loaded, shared per configuration
                self.dense, self.sparse = encoders.dense, encoders.required_sparse
                rerank = s.rerank
                if self.profile is not None:  # its reranker when the settings name none
                    rerank = self.profile.reranker_settings(rerank)
                reranker = get_reranker(rerank)
                if reranker is not None:
                    reranker.load()
                self.reranker = reranker
        except BaseException:
            self.models = "failed"
            raise
        self.models = "loaded"

    def close(self) -> None:
        self.gate.close()
        with self._lock:
            dialects = list(self._dialects.values())
            self._dialects.clear()
            self._cache.clear()
        for dialect in dialects:
            dialect.close()

    # ----- indexes -----

    def dialect(self, kind: EngineKind) -> BaseDialect:
        with self._lock:
            if kind not in self._dialects:
                self._dialects[kind] = _bounded_dialect(self.settings, kind)
            return self._dialects[kind]

    def index(self, name: str, engine: EngineKind | None) -> NeuralIndex:
        """The index a request names, refused (404) when it is not served here."""
        if self.models != "loaded":
            raise ApiError(503, "starting", "the server is still loading its models", retry_after=5)
        if self.fixed is not None:
            fixed = self.fixed.get(name)
            if fixed is None or (engine is not None and fixed.engine is not engine):
                raise ApiError(404, "index_not_found", "index not found")
            return fixed
        allowed = self.settings.api.allowed_indexes
        if allowed and name not in allowed:
            raise ApiError(404, "index_not_found", "index not found")
        kind = engine or self.settings.engine
        key = (name, kind)
        dialect = self.dialect(kind)
        with self._lock:
            idx = self._cache.get(key)
            if idx is None:
                idx = NeuralIndex(
                    name,
                    settings=self.settings,
                    engine=kind,
                    dense=self.dense,
                    sparse=self.sparse,
                    use_sparse=self.sparse is not None,
                    reranker=self.reranker,
                    dialect=dialect,
                    profile=self.profile,
                )
                self._cache[key] = idx
                while len(self._cache) > _MAX_CACHED_INDEXES:
                    self._cache.popitem(last=False)  # shares the dialect: nothing to close
            else:
                self._cache.move_to_end(key)
            return idx

    # ----- readiness -----

    def _engines(self) -> dict[EngineKind, BaseDialect]:
        if self.fixed is not None:
            engines: dict[EngineKind, BaseDialect] = {}
            for idx in self.fixed.values():
                engines.setdefault(idx.engine, idx.dialect)
            return engines
        return {self.settings.engine: self.dialect(self.settings.engine)}

    def _check(self) -> Readiness:
        with self._health_lock:  # one check at a time; the others reuse its answer
            now = time.monotonic()
            if self._ready is not None and now - self._ready[0] < _READY_TTL_S:
                return self._ready[1]
            engines: dict[str, str] = {}
            for kind, dialect in self._engines().items():
                try:
                    health = dialect.health(timeout_s=_HEALTH_TIMEOUT_S)
                    engines[kind.value] = str(health.get("status", "unknown"))
                except EsNeuralError as exc:
                    log.info("readiness: %s: %s", kind.value, type(exc).__name__)
                    engines[kind.value] = "unavailable"
            ok = self.models == "loaded" and all(
                status in ("green", "yellow") for status in engines.values()
            )
            ready = Readiness(
                status="ready" if ok else "not_ready", models=self.models, engines=engines
            )
            self._ready = (time.monotonic(), ready)
            return ready

    async def readiness(self) -> Readiness:
        if self.models != "loaded":
            return Readiness(status="not_ready", models=self.models, engines={})
        with anyio.move_on_after(_HEALTH_TIMEOUT_S * 2):
            return await anyio.to_thread.run_sync(self._check, abandon_on_cancel=True)
        return Readiness(status="not_ready", models=self.models, engines={"health": "timeout"})


def _runtime(request: Request) -> _Runtime:
    runtime: _Runtime = request.app.state.runtime
    return runtime


def _with_security(app: FastAPI) -> None:
    """Describe the API-key schemes in the OpenAPI document (the check is in the middleware)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "Missing or invalid API key",
        404: "Index not served or not found",
        409: "The index was built with other models",
        413: "Request body too large",
        422: "Invalid request (limits, unknown fields, bad filter)",
        502: "The engine failed",
        503: "Engine unavailable or server saturated (see Retry-After)",
        504: "The search timed out (see Retry-After)",
    }.items()
}


def create_app(
    settings: Settings | None = None,
    *,
    indexes: Mapping[str, NeuralIndex] | None = None,
) -> FastAPI:
    """The API application. Nothing is loaded or connected until its lifespan starts.

    ``indexes`` fixes the indexes served (by public name, each with its own engine and
    encoders); without it any index name (optionally limited by ``settings.api.allowed_indexes``)
    is served on the server's engines with the encoders of ``settings``.
    """
    settings = settings or get_settings()
    if any(not key.get_secret_value().strip() for key in settings.api_keys):
        raise ConfigurationError("api_keys holds an empty key")
    runtime = _Runtime(settings, indexes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        await anyio.to_thread.run_sync(runtime.load_models)
        log.info("models loaded in %.1f s", time.perf_counter() - started)
        try:
            yield
        finally:
            runtime.close()

    app = FastAPI(
        title="es-neural",
        version=__version__,
        description=(
            "Hybrid search (BM25 + dense kNN + SPLADE, fused, optionally reranked) over "
            "Elasticsearch and OpenSearch."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.runtime = runtime
    install_error_handlers(app)

    # Middleware: the last added runs first. CORS (only when configured) must answer preflights
    # before the key check; the key check runs before any body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    if settings.api_keys:
        app.add_middleware(
            ApiKeyMiddleware,
            keys=settings.api_keys,
            public_paths=_PUBLIC_PATHS,
            public_prefixes=("/static/",),
        )
        _with_security(app)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(CatchAllMiddleware)
    # Outermost: every request is counted with the status the client got, 500s included.
    metrics = ApiMetrics(queue_depth=lambda: runtime.gate.pending)
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.post(
        "/v1/search",
        response_model=SearchResponse,
        responses=_ERRORS,
        summary="Hybrid search",
        tags=["search"],
    )
    async def search(body: ApiSearchRequest, request: Request) -> Response:
        """Search one index: BM25, dense kNN and SPLADE legs fused (RRF or linear), optionally
        reranked; ``explain: true`` adds every leg's raw score and rank per hit. Page with
        ``cursor`` (the previous response's ``next_cursor``) and the same options."""
        rt = _runtime(request)
        idx = rt.index(body.index, body.engine)
        # Clients may lower the rerank budget, never raise it past the server's (cap_budget).
        search_request = cap_budget(body.search_request(), rt.settings.rerank.budget_ms)
        try:
            with span("search", index=body.index, engine=idx.engine.value):
                response = await rt.gate.run(lambda: idx.search(search_request))
        except EsNeuralError as exc:
            metrics.observe_error(exc)
            raise
        metrics.observe_search(response)
        # model_dump_json writes NaN/inf as null, where JSONResponse would fail.
        return Response(response.model_dump_json(), media_type="application/json")

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> Health:
        """The process is alive (no engine call)."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready (see Retry-After)"}},
        tags=["ops"],
    )
    async def readyz(request: Request) -> JSONResponse:
        """Models loaded and the engine(s) reachable (cluster status green or yellow)."""
        ready = await _runtime(request).readiness()
        if ready.status == "ready":
            return JSONResponse(ready.model_dump())
        return JSONResponse(ready.model_dump(), status_code=503, headers={"Retry-After": "5"})

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics (requests, latency, per-stage time, rerank outcomes, engine
        errors, queue depth). Behind the API key when keys are configured."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
