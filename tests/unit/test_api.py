"""The HTTP API without an engine: everything refused before a search reaches one.

Requests go through the real app (FastAPI's TestClient). Where a search must fail on the engine,
the settings point at a closed loopback port, so the refusal is a real ``connection refused``.
The dense encoder here is a small hashing encoder (a real implementation of the protocol that
needs no model files): these tests never encode a query.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from es_neural.api import ApiSearchRequest, create_app
from es_neural.api.errors import ApiError, rule_for
from es_neural.api.guards import SearchGate, key_matches
from es_neural.errors import (
    BadRequestError,
    ConfigurationError,
    EngineError,
    EngineUnavailableError,
    IndexNotFoundError,
    InvalidInputError,
    ModelMismatchError,
)
from es_neural.neural_index import NeuralIndex
from es_neural.search.models import SearchRequest, SearchResponse
from es_neural.settings import EngineKind, EngineSettings, Settings, get_settings
from tests.support.fakes import HashingDense

KEY_A = "key-a-5f1d0c3e9b7a4d2c"
KEY_B = "key-b-0e8d7c6b5a4f3e2d"


class RaisingIndex(NeuralIndex):
    """An index whose search fails with ``error`` (after ``delay_s``): drives the error mapping."""

    def __init__(self, *args: Any, error: BaseException | None, delay_s: float = 0.0, **kw: Any):
        super().__init__(*args, **kw)
        self.error = error
        self.delay_s = delay_s
        self.calls = 0

    def search(self, request: SearchRequest | str, **options: Any) -> SearchResponse:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        raise EngineUnavailableError("never reached an engine")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dead_settings() -> Settings:
    """Settings whose engines are a closed loopback port (connection refused at once)."""
    port = _closed_port()
    dead = EngineSettings(url=f"http://127.0.0.1:{port}", max_retries=0, request_timeout=2.0)
    return get_settings(elasticsearch=dead, opensearch=dead, engine=EngineKind.ELASTICSEARCH)


def _app_client(settings: Settings, **indexes: NeuralIndex) -> TestClient:
    mapping = indexes or {
        "docs": NeuralIndex("docs", settings=settings, dense=HashingDense(), use_sparse=False)
    }
    return TestClient(create_app(settings, indexes=mapping), raise_server_exceptions=False)


@pytest.fixture
def client(dead_settings: Settings) -> Iterator[TestClient]:
    with _app_client(dead_settings) as c:
        yield c


@pytest.fixture
def keyed(dead_settings: Settings) -> Iterator[TestClient]:
    settings = dead_settings.with_(api_keys=[KEY_A, KEY_B])
    with _app_client(settings) as c:
        yield c


def assert_error(response: Any, status: int, type_: str | None = None) -> dict[str, Any]:
    """An error answer: the status, the one JSON shape, and nothing internal in it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str)
    if type_ is not None:
        assert error["type"] == type_, error
    text = response.text
    for leak in ("Traceback", 'File "', ".py", "/work/", "site-packages", "127.0.0.1"):
        assert leak not in text, f"{leak!r} leaked into {text}"
    return error


def search_body(**overrides: Any) -> dict[str, Any]:
    return {"index": "docs", "query": "neural search", **overrides}


# ----------------------------------------------------------------------------- ops endpoints


def test_healthz_needs_no_engine_and_no_key(keyed: TestClient) -> None:
    response = keyed.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_with_retry_after_when_the_engine_is_down(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body == {
        "status": "not_ready",
        "models": "loaded",
        "engines": {"elasticsearch": "unavailable"},
    }


def test_openapi_lists_the_endpoints_and_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/v1/search", "/healthz", "/readyz"} <= set(schema["paths"])
    operation = schema["paths"]["/v1/search"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ApiSearchRequest")
    assert {"401", "413", "422", "503", "504"} <= set(operation["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_openapi_describes_the_key_schemes_when_keys_are_configured(keyed: TestClient) -> None:
    schema = keyed.get("/openapi.json").json()  # public, like /docs
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/v1/search"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]


def test_models_are_loaded_once_at_startup(dead_settings: Settings) -> None:
    dense = HashingDense()
    idx = NeuralIndex("docs", settings=dead_settings, dense=dense, use_sparse=False)
    app = create_app(dead_settings, indexes={"docs": idx})
    assert dense.loads == 0  # creating the app loads and connects nothing
    with TestClient(app) as c:
        assert dense.loads == 1
        c.get("/healthz")
    assert dense.loads == 1


def test_search_before_startup_is_503(dead_settings: Settings) -> None:
    app = create_app(dead_settings, indexes={})
    c = TestClient(app, raise_server_exceptions=False)  # no `with`: the lifespan never ran
    response = c.post("/v1/search", json=search_body())
    assert_error(response, 503, "starting")
    assert response.headers["retry-after"] == "5"


# ----------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY_A}"},
        {"Authorization": f"Bearer {KEY_A}x"},
        {"X-API-Key": KEY_A[:-1]},
        {"X-API-Key": ""},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong", "basic", "longer", "shorter", "empty", "empty-bearer"],
)
def test_search_without_a_valid_key_is_401(keyed: TestClient, headers: dict[str, str]) -> None:
    response = keyed.post("/v1/search", json=search_body(), headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY_A}"},
        {"authorization": f"bearer {KEY_B}"},
        {"X-API-Key": KEY_B},
    ],
    ids=["bearer-a", "bearer-b-lowercase", "x-api-key-b"],
)
def test_a_valid_key_passes(keyed: TestClient, headers: dict[str, str]) -> None:
    # Past the key check the body is validated: a missing query is a 422, not a 401.
    response = keyed.post("/v1/search", json={"index": "docs"}, headers=headers)
    assert_error(response, 422, "invalid_request")


def test_the_key_is_checked_before_the_body_is_read(keyed: TestClient) -> None:
    response = keyed.post(
        "/v1/search", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 401)


def test_page_and_static_files_are_public_but_other_paths_need_a_key(keyed: TestClient) -> None:
    assert keyed.get("/").status_code == 200
    assert keyed.get("/static/app.js").status_code == 200
    assert_error(keyed.get("/no-such-path"), 401)
    assert_error(keyed.get("/no-such-path", headers={"X-API-Key": KEY_A}), 404, "not_found")


def test_key_matches_every_configured_key_and_nothing_else() -> None:
    digests = [hashlib.sha256(k.encode()).digest() for k in (KEY_A, KEY_B)]
    assert key_matches(KEY_A, digests)
    assert key_matches(KEY_B, digests)
    assert not key_matches(None, digests)
    assert not key_matches("", digests)
    assert not key_matches(KEY_A + KEY_B, digests)
    assert not key_matches(KEY_A, [])


def test_keys_never_reach_the_logs(keyed: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keyed.post("/v1/search", json=search_body(), headers={"X-API-Key": KEY_A})
    keyed.post("/v1/search", json=search_body(), headers={"Authorization": f"Bearer {KEY_B}"})
    keyed.post("/v1/search", json=search_body(), headers={"X-API-Key": "guess-" + KEY_A})
    assert caplog.records  # something was logged (the engine failure) ...
    assert KEY_A not in caplog.text and KEY_B not in caplog.text  # ... but no key


def test_an_empty_configured_key_is_refused(dead_settings: Settings) -> None:
    with pytest.raises(ConfigurationError):
        create_app(dead_settings.with_(api_keys=[" "]))


# ----------------------------------------------------------------------------- body and limits


def test_a_body_over_the_limit_is_413_by_content_length(client: TestClient) -> None:
    body = json.dumps(search_body(query="x" * 70_000)).encode()
    response = client.post("/v1/search", content=body, headers={"Content-Type": "application/json"})
    error = assert_error(response, 413, "body_too_large")
    assert "65536" in error["message"]


def test_a_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"index": "docs", "query": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}'

    response = client.post(
        "/v1/search", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "body_too_large")


def test_a_small_limit_from_settings_applies(dead_settings: Settings) -> None:
    settings = dead_settings.with_(api={"max_body_bytes": 1024})
    with _app_client(settings) as c:
        response = c.post("/v1/search", json=search_body(query="z" * 1100))
        assert_error(response, 413)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[]", b'"just a string"', b"\xff\xfe"],
    ids=["broken", "empty", "array", "string", "not-utf8"],
)
def test_invalid_json_is_422(client: TestClient, content: bytes) -> None:
    response = client.post(
        "/v1/search", content=content, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize(
    "overrides",
    [
        {"size": 101},
        {"size": 0},
        {"window": 1001},
        {"query": "q" * 2049},
        {"query": "   "},
        {"query": ""},
        {"bm25": {"k": 1001}},
        {"dense": {"k": 0}},
        {"dense": {"num_candidates": 10_001}},
        {"sparse": {"max_terms": 5000}},
        {"fusion": {"method": "max"}},
        {"engine": "solr"},
        {"diversify": {"lambda": 1.5}},
        {"diversify": {"window": 1001}},
        {"diversify": {"enabled": True, "mmr": 1}},
        {"window": 20, "diversify": {"window": 21}},
    ],
    ids=lambda o: next(iter(o)) + "=" + str(next(iter(o.values())))[:12],
)
def test_over_limit_or_invalid_options_are_422(
    client: TestClient, overrides: dict[str, Any]
) -> None:
    response = client.post("/v1/search", json=search_body(**overrides))
    assert_error(response, 422, "invalid_request")


def test_a_cursor_over_its_limit_is_422_when_the_body_limit_allows_it(
    dead_settings: Settings,
) -> None:
    settings = dead_settings.with_(api={"max_body_bytes": 200_000})
    with _app_client(settings) as c:
        response = c.post("/v1/search", json=search_body(cursor="c" * 70_000))
    error = assert_error(response, 422, "invalid_request")
    assert error["message"].startswith("cursor:")


@pytest.mark.parametrize(
    "body",
    [
        {"index": "docs", "query": {"match_all": {}}},
        {"index": "docs", "query": "x", "knn": {"field": "embedding", "k": 1}},
        {"index": "docs", "query": "x", "aggs": {"a": {"terms": {"field": "tenant"}}}},
        {"index": "docs", "query": "x", "script": {"source": "1"}},
        {"index": "docs", "query": "x", "bm25": {"query": {"match_all": {}}}},
        {"index": "docs", "query": "x", "dense": {"query_vector": [0.1, 0.2]}},
        {"index": "docs", "query": "x", "_source": ["*"]},
        {"index": "docs", "query": "x", "sort": ["_doc"]},
    ],
    ids=["query-dsl", "knn", "aggs", "script", "leg-query", "leg-vector", "_source", "sort"],
)
def test_client_supplied_dsl_and_unknown_keys_are_refused(
    client: TestClient, body: dict[str, Any]
) -> None:
    error = assert_error(client.post("/v1/search", json=body), 422, "invalid_request")
    assert error["details"]


@pytest.mark.parametrize(
    "filter_",
    [
        {"script": {"script": "doc['x'].value > 1"}},
        {"match_all": {}},
        {"term": {"field": "_id", "value": "1"}},
        {"term": {"field": "tenant"}},
        {"range": {"field": "year", "gte": float("inf")}},
        {"bool": {"must": [{"bool": {"must": [{"bool": {"must": [{"bool": {}}]}}]}}]}}
        | {"nonsense": 1},
    ],
    ids=["script", "match_all", "_id", "no-value", "inf", "unknown-key"],
)
def test_bad_filters_are_422(client: TestClient, filter_: dict[str, Any]) -> None:
    content = json.dumps(search_body(filter=filter_), allow_nan=True).replace("Infinity", "1e999")
    response = client.post(
        "/v1/search", content=content, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 422, "invalid_request")
    assert "filter" in error["message"]


@pytest.mark.parametrize(
    "name", ["Docs", "*", "docs,other", "../etc", "_all", ".security", "-x", "a" * 101, ""]
)
def test_index_names_are_validated(client: TestClient, name: str) -> None:
    assert_error(client.post("/v1/search", json=search_body(index=name)), 422, "invalid_request")


def test_an_index_not_served_is_404(client: TestClient) -> None:
    response = client.post("/v1/search", json=search_body(index="other"))
    assert_error(response, 404, "index_not_found")
    # the fixed index lives on Elasticsearch: asking for it on OpenSearch is not served either
    response = client.post("/v1/search", json=search_body(engine="opensearch"))
    assert_error(response, 404, "index_not_found")


def test_the_allow_list_refuses_other_indexes_before_any_engine_call(
    dead_settings: Settings,
) -> None:
    settings = dead_settings.with_(api={"allowed_indexes": ["docs"]})
    app = create_app(settings)  # no fixed indexes: the settings' models would be loaded ...
    runtime = app.state.runtime
    runtime.models = "loaded"  # ... skip that (no lifespan): this test never encodes
    c = TestClient(app, raise_server_exceptions=False)
    assert_error(c.post("/v1/search", json=search_body(index="secret")), 404, "index_not_found")


def test_api_request_splits_into_the_library_request() -> None:
    body = ApiSearchRequest.model_validate(
        search_body(size=3, fusion={"method": "linear"}, engine="opensearch")
    )
    request = body.search_request()
    assert type(request) is SearchRequest
    assert request.size == 3 and request.fusion.method == "linear"
    assert not hasattr(request, "index")
    mmr = ApiSearchRequest.model_validate(
        search_body(diversify={"enabled": True, "lambda": 0.5, "window": 30})
    ).search_request()
    assert mmr.diversify.enabled and (mmr.diversify.lambda_, mmr.diversify.window) == (0.5, 30)


# ----------------------------------------------------------------------------- engine errors


def test_engine_down_is_503_with_retry_after(client: TestClient) -> None:
    started = time.perf_counter()
    response = client.post("/v1/search", json=search_body())
    assert_error(response, 503, "engine_unavailable")
    assert response.headers["retry-after"] == "5"
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    ("error", "status", "type_"),
    [
        (InvalidInputError("cursor belongs to a different query"), 422, "invalid_request"),
        (IndexNotFoundError("no such index [secret-v1]", status=404), 404, "index_not_found"),
        (ModelMismatchError("model /srv/models/x differs"), 409, "model_mismatch"),
        (EngineError("Elasticsearch at http://10.0.0.5:9200 said no", status=500), 502, None),
        (
            BadRequestError("Elasticsearch: failed to create query: secret-v1", status=400),
            400,
            "query_rejected",
        ),
        (ConfigurationError("cannot read /etc/es-neural/key.pem"), 500, "configuration_error"),
        (RuntimeError("boom in /work/main/es_neural/x.py"), 500, "internal_error"),
        (KeyError("hits"), 500, "internal_error"),
    ],
    ids=[
        "invalid",
        "not-found",
        "mismatch",
        "engine",
        "engine-400",
        "config",
        "runtime",
        "keyerror",
    ],
)
def test_errors_map_to_safe_json(
    dead_settings: Settings,
    caplog: pytest.LogCaptureFixture,
    error: BaseException,
    status: int,
    type_: str | None,
) -> None:
    idx = RaisingIndex(
        "docs", settings=dead_settings, dense=HashingDense(), use_sparse=False, error=error
    )
    with _app_client(dead_settings, docs=idx) as c:
        response = c.post("/v1/search", json=search_body())
    body = assert_error(response, status, type_)
    for secret in ("/srv/models", "/etc/es-neural", "10.0.0.5", "boom", "secret-v1"):
        assert secret not in body["message"]
    if status == 500:
        assert body["message"] in ("internal error", "the server is misconfigured; see its log")
        assert any(r.exc_info for r in caplog.records)  # logged server side, with traceback


def test_rule_for_picks_the_most_specific_class() -> None:
    assert rule_for(EngineUnavailableError("x")).status == 503
    assert rule_for(EngineUnavailableError("x")).retry_after == 5
    assert rule_for(EngineError("x")).status == 502
    assert rule_for(ValueError("x")).type == "internal_error"


# ----------------------------------------------------------------------------- concurrency


def test_a_slow_search_times_out_with_504_and_retry_after(dead_settings: Settings) -> None:
    settings = dead_settings.with_(api={"request_timeout_s": 0.2})
    idx = RaisingIndex(
        "docs", settings=settings, dense=HashingDense(), use_sparse=False, error=None, delay_s=1.0
    )
    with _app_client(settings, docs=idx) as c:
        started = time.perf_counter()
        response = c.post("/v1/search", json=search_body())
        elapsed = time.perf_counter() - started
    error = assert_error(response, 504, "timeout")
    assert response.headers["retry-after"] == "1"
    assert "0.2 s" in error["message"]
    assert elapsed < 0.9


def test_a_saturated_server_answers_503_instead_of_queueing(dead_settings: Settings) -> None:
    settings = dead_settings.with_(
        api={"max_concurrency": 1, "max_queue": 1, "request_timeout_s": 5.0}
    )
    idx = RaisingIndex(
        "docs", settings=settings, dense=HashingDense(), use_sparse=False, error=None, delay_s=0.6
    )
    results: list[Any] = []
    with _app_client(settings, docs=idx) as c:

        def call() -> None:
            results.append(c.post("/v1/search", json=search_body()))

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.2)  # both admitted: one running, one queued
        overflow = c.post("/v1/search", json=search_body())
        for t in threads:
            t.join()
    assert_error(overflow, 503, "overloaded")
    assert overflow.headers["retry-after"] == "1"
    assert sorted(r.status_code for r in results) == [503, 503]  # (engine_unavailable)
    assert all(r.json()["error"]["type"] == "engine_unavailable" for r in results)
    assert idx.calls == 2


def test_the_gate_bounds_threads_even_after_timeouts() -> None:
    release = threading.Event()
    running = 0
    peak = 0
    lock = threading.Lock()

    def blocking() -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(5)
        with lock:
            running -= 1
        return "done"

    async def scenario() -> None:
        gate = SearchGate(max_concurrency=2, max_queue=1, timeout_s=0.1)
        try:
            outcomes = await asyncio.gather(
                *(gate.run(blocking) for _ in range(5)), return_exceptions=True
            )
            statuses = sorted(o.status for o in outcomes if isinstance(o, ApiError))
            # 3 admitted (2 running + 1 queued) time out; 2 refused at once
            assert statuses == [503, 503, 504, 504, 504]
            # the two timed-out running calls still hold their slots (the queued one was dropped)
            assert gate.pending == 2
            with pytest.raises(ApiError) as refused:
                await gate.run(blocking)
            assert refused.value.status in (503, 504)
            release.set()
            for _ in range(100):
                if gate.pending == 0:
                    break
                await asyncio.sleep(0.02)
            assert gate.pending == 0
            assert await gate.run(lambda: "after") == "after"
        finally:
            release.set()
            gate.close()

    asyncio.run(scenario())
    assert peak <= 2


# ----------------------------------------------------------------------------- CORS and page


def test_cors_is_closed_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/v1/search",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = client.post(
        "/v1/search", json={"index": "docs"}, headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_configured_origins(dead_settings: Settings) -> None:
    settings = dead_settings.with_(
        api={"cors_origins": ["https://search.example"]}, api_keys=[KEY_A]
    )
    with _app_client(settings) as c:
        ok = c.options(
            "/v1/search",
            headers={
                "Origin": "https://search.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://search.example"
        other = c.options(
            "/v1/search",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in other.headers


def test_the_page_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert 'id="query"' in page.text and 'id="api-key"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert "innerHTML" not in script.text.replace("never innerHTML", "")
    # MMR: a switch on the page, and each hit's diversification explain rendered.
    assert 'id="diversify"' in page.text
    assert "body.diversify" in script.text and "e.mmr" in script.text
    assert client.get("/static/app.css").status_code == 200
