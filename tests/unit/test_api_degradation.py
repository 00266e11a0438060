"""The API in front of an engine that stops answering: bounded time, bounded engine load.

The "engine" is a real TCP listener on loopback that accepts connections, reads the requests
and never answers (what a hung or overloaded node looks like from the client side). The app is
built as ``es-neural serve`` builds it (no fixed indexes, so its engine clients are the API's own
bounded ones), with the tiny test models.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from es_neural.api import create_app
from es_neural.errors import EngineUnavailableError
from es_neural.neural_index import NeuralIndex
from es_neural.search.models import SearchRequest, SearchResponse
from es_neural.settings import EngineKind, EngineSettings, Settings, get_settings
from tests.support.fakes import HashingDense

_REQUEST_LINE = re.compile(rb"(?:GET|POST|PUT|HEAD|DELETE) /[^ ]* HTTP/1\.[01]\r\n")


class BlackHole:
    """Accepts, reads and never answers; counts the HTTP requests it received."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.requests = 0
        self.stamps: list[float] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            found = len(_REQUEST_LINE.findall(buffer))
            if found:
                with self._lock:
                    self.requests += found
                    self.stamps.extend([time.monotonic()] * found)
                buffer = buffer[buffer.rfind(b"\r\n\r\n") + 4 :] if b"\r\n\r\n" in buffer else b""

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


def _settings(tiny_model_dir: Path, port: int, timeout_s: float) -> Settings:
    engine = EngineSettings(url=f"http://127.0.0.1:{port}", max_retries=3, request_timeout=30.0)
    return get_settings(
        elasticsearch=engine,
        opensearch=engine,
        engine=EngineKind.ELASTICSEARCH,
        dense={"model": str(tiny_model_dir)},
        sparse={"model": str(tiny_model_dir)},
        rerank={"model": "off"},
        api={"request_timeout_s": timeout_s, "max_concurrency": 2, "max_queue": 2},
    )


def test_a_search_on_a_hung_engine_ends_at_the_timeout_without_retry_storm(
    tiny_model_dir: Path, black_hole: BlackHole
) -> None:
    """The engine call is cut at the API timeout and not retried past it: one engine request
    per search, the worker thread free again right after the client's answer."""
    timeout_s = 0.5
    app = create_app(_settings(tiny_model_dir, black_hole.port, timeout_s))
    with TestClient(app, raise_server_exceptions=False) as client:
        started = time.monotonic()
        response = client.post("/v1/search", json={"index": "docs", "query": "rivers"})
        elapsed = time.monotonic() - started
        assert response.status_code in (503, 504), response.text
        assert response.headers["retry-after"]
        assert response.json()["error"]["type"] in ("engine_unavailable", "timeout")
        assert elapsed < timeout_s + 1.0
        gate = app.state.runtime.gate
        deadline = time.monotonic() + 3.0
        while gate.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate.pending == 0  # the search's thread is done, not retrying in the background
        time.sleep(2 * timeout_s)  # anything still retrying would reach the engine by now
    # Without the budget: 4 attempts (max_retries 3) over ~3 s after the client got its 504.
    assert black_hole.requests == 1, black_hole.requests


def test_searches_on_a_hung_engine_never_queue_past_the_gate(
    tiny_model_dir: Path, black_hole: BlackHole
) -> None:
    """Many clients at once: each is answered within about the timeout (503 at once when the
    gate is full, 504/503 at the timeout otherwise), all with Retry-After, and the engine never
    sees more requests at a time than the gate has threads."""
    timeout_s = 0.6
    app = create_app(_settings(tiny_model_dir, black_hole.port, timeout_s))
    answers: list[tuple[int, float, str | None]] = []
    lock = threading.Lock()
    # released together: on a loaded machine, threads started one by one could arrive more
    # than the timeout apart and be admitted as earlier ones left (what a CI run once saw)
    together = threading.Barrier(12)
    with TestClient(app, raise_server_exceptions=False) as client:

        def call() -> None:
            together.wait(timeout=30)
            t0 = time.monotonic()
            r = client.post("/v1/search", json={"index": "docs", "query": "bees"})
            with lock:
                answers.append((r.status_code, time.monotonic() - t0, r.headers.get("retry-after")))

        threads = [threading.Thread(target=call) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    statuses = sorted(s for s, _, _ in answers)
    assert set(statuses) <= {503, 504}, statuses
    assert statuses.count(503) >= 12 - 4  # max_concurrency 2 + max_queue 2 admitted at most
    assert all(retry for _, _, retry in answers)
    assert max(t for _, t, _ in answers) < timeout_s + 1.5
    assert black_hole.requests <= 2 * 2  # 2 threads; at most one retry each within the budget


class RecordingIndex(NeuralIndex):
    """Records the library request the API hands it (then fails like a down engine)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.requests: list[SearchRequest] = []

    def search(self, request: SearchRequest | str, **options: Any) -> SearchResponse:
        assert isinstance(request, SearchRequest)
        self.requests.append(request)
        raise EngineUnavailableError("not searched")


@pytest.mark.parametrize(
    ("asked", "expected"),
    [(None, None), (50.0, 50.0), (1500.0, 1500.0), (600_000.0, 1500.0)],
)
def test_a_client_may_lower_the_rerank_budget_but_not_raise_it(
    asked: float | None, expected: float | None
) -> None:
    settings = get_settings(rerank={"model": "off", "budget_ms": 1500.0})
    idx = RecordingIndex("docs", settings=settings, dense=HashingDense(), use_sparse=False)
    body: dict[str, Any] = {"index": "docs", "query": "q", "rerank": {"enabled": True}}
    if asked is not None:
        body["rerank"]["budget_ms"] = asked
    with TestClient(
        create_app(settings, indexes={"docs": idx}), raise_server_exceptions=False
    ) as c:
        assert c.post("/v1/search", json=body).status_code == 503
    (request,) = idx.requests
    assert request.rerank.budget_ms == expected
    assert request.rerank.enabled is True
