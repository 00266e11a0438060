"""API security: constant-time key checks, no key in any log, CORS closed, bounded requests.

Complements ``test_api.py`` (which covers the 401/413 answers through the TestClient) with what a
TestClient cannot show: a real uvicorn server on loopback (its access and trace logs, its
header limits), and how the key comparison behaves whatever key is presented.
"""

from __future__ import annotations

import hmac
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from es_neural.api import create_app, guards
from es_neural.api.guards import key_matches
from es_neural.neural_index import NeuralIndex
from es_neural.settings import EngineKind, EngineSettings, Settings, get_settings
from tests.support.fakes import HashingDense
from tests.unit.test_api import (
    KEY_A,
    KEY_B,
    _app_client,
    _closed_port,
    assert_error,
)

WRONG = "wrong-key-3d9e1f7a0c2b"


@pytest.fixture(scope="module")
def dead_settings() -> Settings:
    """Engines on a closed loopback port: a search that passes every check fails with 503."""
    dead = EngineSettings(url=f"http://127.0.0.1:{_closed_port()}", max_retries=0)
    return get_settings(
        elasticsearch=dead,
        opensearch=dead,
        engine=EngineKind.ELASTICSEARCH,
        rerank={"model": "off"},  # no model to load: the server starts in a second
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- constant time


def test_every_configured_key_is_compared_in_full_whatever_is_presented(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No early exit on a match and no length leak: each check compares one fixed-size digest
    with every configured digest through ``hmac.compare_digest``."""
    keys = [KEY_A, KEY_B, "third-key-000"]
    digests = [guards._digest(k) for k in keys]
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(guards.hmac, "compare_digest", counting)
    for candidate in (KEY_A, KEY_B, "third-key-000", WRONG, "", None, "x" * 10_000, "\udcff"):
        calls.clear()
        expected = candidate in keys
        assert key_matches(candidate, digests) is expected
        assert len(calls) == len(keys)  # the first key matching does not stop the loop
        assert set(calls) == {(32, 32)}  # SHA-256 digests: equal lengths, whatever the key


def test_the_middleware_keeps_digests_not_keys(dead_settings: Settings) -> None:
    app = create_app(
        dead_settings.with_(api_keys=[KEY_A]),
        indexes={"docs": NeuralIndex("docs", settings=dead_settings, dense=HashingDense())},
    )
    stack: Any = app.build_middleware_stack()
    found = []
    while stack is not None:
        if isinstance(stack, guards.ApiKeyMiddleware):
            found.append(stack)
        stack = getattr(stack, "app", None)
    (middleware,) = found
    assert KEY_A not in repr(vars(middleware))
    assert all(len(d) == 32 for d in middleware._digests)


# ----------------------------------------------------------------------------- logs


class _Server:
    """The real app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: Settings, *, log_level: str = "trace") -> None:
        idx = NeuralIndex("docs", settings=settings, dense=HashingDense(), use_sparse=False)
        app = create_app(settings, indexes={"docs": idx})
        self.port = _free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level=log_level,
            log_config=None,  # records propagate to the root logger, where caplog listens
            access_log=True,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # reported by __enter__
            self.error = exc

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start: {self.error!r}")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def keyed_server(dead_settings: Settings) -> Iterator[str]:
    with _Server(dead_settings.with_(api_keys=[KEY_A, KEY_B])) as base:
        yield base


def test_no_key_reaches_any_log_of_a_real_server(
    keyed_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn at ``trace`` (it logs every ASGI message) plus its access log, the app at DEBUG:
    requests with right and wrong keys, in both headers, leave no key in any record."""
    caplog.set_level(1)  # everything, trace included
    body = {"index": "docs", "query": "neural search"}
    answers = []
    with httpx.Client(base_url=keyed_server, timeout=30) as http:
        for headers in (
            {"X-API-Key": KEY_A},
            {"Authorization": f"Bearer {KEY_B}"},
            {"X-API-Key": WRONG},
            {"Authorization": f"Bearer {WRONG}"},
            {"Authorization": f"Basic {KEY_A}"},
        ):
            answers.append(http.post("/v1/search", json=body, headers=headers))
    statuses = [r.status_code for r in answers]
    assert statuses[:2] == [503, 503]  # passed the key check; the engine is down
    assert statuses[2:] == [401, 401, 401]
    for response in answers:
        for key in (KEY_A, KEY_B, WRONG):
            assert key not in response.text  # no answer echoes a key either
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "uvicorn.asgi" in {r.name for r in caplog.records}  # trace logging was really on
    assert any(r.name == "uvicorn.access" for r in caplog.records)
    for key in (KEY_A, KEY_B, WRONG):
        assert key not in logged


def test_oversized_headers_are_refused_by_the_server(keyed_server: str) -> None:
    """h11 stops at its header size limit (a 4xx or a closed connection), and the server goes
    on answering others."""
    with httpx.Client(base_url=keyed_server, timeout=30) as http:
        try:
            response = http.get("/healthz", headers={"X-Padding": "p" * 200_000})
        except httpx.TransportError:
            pass  # refused by closing the connection
        else:
            assert response.status_code in (400, 431)
            assert "Traceback" not in response.text
    with httpx.Client(base_url=keyed_server, timeout=30) as http:
        assert http.get("/healthz").status_code == 200


# ----------------------------------------------------------------------------- CORS


def test_cors_stays_closed_without_configuration_even_for_public_paths(
    dead_settings: Settings,
) -> None:
    with _app_client(dead_settings.with_(api_keys=[KEY_A])) as c:
        for method, path in (("GET", "/healthz"), ("GET", "/"), ("POST", "/v1/search")):
            response = c.request(
                method,
                path,
                headers={"Origin": "https://evil.example", "X-API-Key": KEY_A},
                json={"index": "docs"} if method == "POST" else None,
            )
            assert "access-control-allow-origin" not in response.headers
            assert "access-control-allow-credentials" not in response.headers
        preflight = c.options(
            "/v1/search",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type",
            },
        )
        assert preflight.status_code >= 400
        assert "access-control-allow-origin" not in preflight.headers


def test_configured_cors_allows_no_credentials_and_only_get_and_post(
    dead_settings: Settings,
) -> None:
    settings = dead_settings.with_(api={"cors_origins": ["https://search.example"]})
    with _app_client(settings) as c:
        ok = c.options(
            "/v1/search",
            headers={
                "Origin": "https://search.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type",
            },
        )
        assert ok.headers["access-control-allow-origin"] == "https://search.example"
        assert "access-control-allow-credentials" not in ok.headers  # keys, never cookies
        assert set(ok.headers["access-control-allow-methods"].replace(" ", "").split(",")) == {
            "GET",
            "POST",
        }
        delete = c.options(
            "/v1/search",
            headers={"Origin": "https://search.example", "Access-Control-Request-Method": "PUT"},
        )
        assert delete.status_code == 400
        simple = c.get("/healthz", headers={"Origin": "https://search.example.evil"})
        assert "access-control-allow-origin" not in simple.headers


# ----------------------------------------------------------------------------- limits


@pytest.mark.parametrize("length", ["-1", "abc", "1e9", ""])
def test_an_invalid_content_length_is_400(client_with_key: TestClient, length: str) -> None:
    response = client_with_key.post(
        "/v1/search",
        content=b"{}",
        headers={"Content-Length": length, "Content-Type": "application/json", "X-API-Key": KEY_A},
    )
    assert_error(response, 400, "bad_request")


@pytest.fixture
def client_with_key(dead_settings: Settings) -> Iterator[TestClient]:
    with _app_client(dead_settings.with_(api_keys=[KEY_A])) as c:
        yield c


def test_a_large_body_without_a_key_is_refused_before_it_is_read(
    client_with_key: TestClient,
) -> None:
    consumed = 0

    def chunks() -> Iterator[bytes]:
        nonlocal consumed
        for _ in range(64):
            consumed += 1
            yield b"z" * 65_536

    response = client_with_key.post("/v1/search", content=chunks())
    assert_error(response, 401, "unauthorized")
    assert consumed <= 1  # the app answered without reading the 4 MiB


def test_a_body_over_the_limit_is_413_with_a_valid_key(client_with_key: TestClient) -> None:
    body = b'{"index": "docs", "query": "' + b"q" * 70_000 + b'"}'
    response = client_with_key.post(
        "/v1/search",
        content=body,
        headers={"Content-Type": "application/json", "X-API-Key": KEY_A},
    )
    assert_error(response, 413, "body_too_large")


def test_a_real_server_refuses_a_lying_content_length(keyed_server: str) -> None:
    """Declared small, sent big (over a raw socket): the extra bytes are never parsed as JSON
    of the request, and the server answers a typed error or closes the connection."""
    body = b'{"index": "docs", "query": "' + b"q" * 200_000 + b'"}'
    head = (
        f"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY_A}\r\n"
        "Content-Type: application/json\r\nContent-Length: 20\r\n\r\n"
    ).encode()
    port = int(keyed_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        reply = s.recv(65_536).decode("latin-1")
    status = int(reply.split(" ", 2)[1])
    assert status == 422  # the 20 declared bytes are not a valid body; the rest is not read
    assert "Traceback" not in reply
