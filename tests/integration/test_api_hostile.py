"""Hostile requests against the real app and the real engines, property-based, once per engine.

Arbitrary JSON bodies (valid searches with hostile text, invalid shapes, unknown keys, DSL),
arbitrary bytes, odd headers and oversized bodies go through ``POST /v1/search`` of the app
``es-neural serve`` runs (FastAPI TestClient, tiny models, an index of a few documents, an API
key): every answer is a 2xx or a typed 4xx JSON error (503/504 only with ``Retry-After``),
never a 500, never a traceback, a server path or a Python repr.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from es_neural.api import create_app
from es_neural.dialects import BaseDialect
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex
from es_neural.settings import Settings
from tests.unit.test_hostile_input import hostile_request_bodies, valid_request_bodies

pytestmark = [pytest.mark.engine]

KEY = "hostile-key-51c0de"
AUTH = {"X-API-Key": KEY}
LEAKS = re.compile(
    r"Traceback|File \"|site-packages|/work/|/tmp/|\.py\b|object at 0x|<class '|"
    r"[A-Za-z]+Error\(|127\.0\.0\.1|ApiError|EsNeuralError"
)
PROPS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one app per test, shared by its examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

DOCS = [
    {
        "id": f"h{i}",
        "title": f"{topic} {i}",
        "text": f"{topic} text about neural search and rivers, number {i}",
        "tenant": "acme" if i % 2 else "globex",
        "year": 2000 + i,
        "tags": ["a", "b"] if i % 3 else ["c"],
    }
    for i, topic in enumerate(["Rivers", "Bees", "Chess", "Bread", "Tides", "Volcanoes"] * 3)
]


@pytest.fixture
def client(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tiny_dense: Any,
    tiny_sparse: Any,
    tmp_path: Path,
) -> Iterator[TestClient]:
    settings = engine_settings.with_(api_keys=[KEY], rerank={"model": "off"})
    idx = NeuralIndex(
        index_name, settings=settings, dense=tiny_dense, sparse=tiny_sparse, dialect=dialect
    )
    report = idx.ingest(
        DOCS,
        options=IngestOptions(
            progress=False,
            checkpoint_path=tmp_path / "checkpoint.json",
            dead_letter_path=tmp_path / "dead.jsonl",
        ),
    )
    assert report.indexed == len(DOCS)
    app = create_app(settings, indexes={"docs": idx})
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def check_answer(response: Any, sent: bytes = b"") -> dict[str, Any]:
    """A success or a typed error; nothing internal in either (bar what the client sent)."""
    status = response.status_code
    text = response.text
    assert status < 500 or (status in (503, 504) and response.headers.get("retry-after")), (
        f"{status}: {text[:500]}"
    )
    assert response.headers["content-type"].startswith("application/json"), text[:200]
    body = response.json()
    if status >= 400:
        assert set(body) == {"error"}, text[:500]
        assert isinstance(body["error"]["type"], str) and body["error"]["type"]
        assert isinstance(body["error"]["message"], str)
    else:
        assert {"hits", "window_total", "rerank", "timings"} <= set(body)
        for hit in body["hits"]:
            assert not {"embedding", "splade", "content_hash"} & set(hit["source"])
    echoed = sent.decode("utf-8", "replace") + json.dumps(sent.decode("utf-8", "replace"))
    for leak in LEAKS.finditer(text):
        # A 422 may quote the client's own text back; anything else is internal.
        assert leak.group(0) in echoed, f"{leak.group(0)!r} leaked: {text[:500]}"
    return body


def _ascii(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=max_size)


headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "*/*"]
        )
        | _ascii(),
        "Authorization": st.sampled_from([f"Bearer {KEY}", "Bearer ", "Basic x", ""]) | _ascii(),
        "X-API-Key": st.sampled_from([KEY, KEY + " ", ""]) | _ascii(),
        "Accept": _ascii(),
        "X-Forwarded-For": _ascii(),
        "Origin": st.sampled_from(["https://evil.example", "null"]),
        "Transfer-Encoding": st.sampled_from(["chunked", "gzip"]),
        "Content-Encoding": st.sampled_from(["gzip", "br", "identity"]),
    },
)


def _docs_index(body: Any) -> Any:
    if isinstance(body, dict) and "index" in body:
        return {**body, "index": "docs"}
    return body


@PROPS
@given(
    body=st.one_of(
        valid_request_bodies.map(_docs_index),
        hostile_request_bodies,
        hostile_request_bodies.map(_docs_index),
    )
)
@example(
    body={
        "index": "docs",
        "query": "rivers",
        "filter": {"term": {"field": "tenant", "value": "acme"}},
    }
)
@example(
    body={"index": "docs", "query": "rivers", "filter": {"range": {"field": "year", "gte": "abc"}}}
)
@example(
    body={
        "index": "docs",
        "query": "rivers",
        "filter": {"term": {"field": "year", "value": "x" * 1000}},
    }
)
@example(body={"index": "docs", "query": "rivers", "cursor": "eJzLSM3JyQcABiwCFQ"})
@example(body={"index": "docs", "query": "rivers", "bm25": {"fields": ["tags", "year"]}})
@example(body={"index": "docs", "query": '{"script": {"source": "ctx"}}', "source": ["tenant"]})
@example(body={"index": "docs", "query": "rivers", "query_string": {"query": "*:*"}})
def test_any_json_body_gets_a_typed_answer(client: TestClient, body: Any) -> None:
    try:
        content = json.dumps(body).encode()
    except (ValueError, TypeError):  # NaN is valid here (json.dumps writes it); cycles cannot be
        return
    response = client.post(
        "/v1/search", content=content, headers={**AUTH, "Content-Type": "application/json"}
    )
    check_answer(response, content)


def test_valid_searches_answer_200(client: TestClient) -> None:
    """The property above is not vacuous: ordinary bodies do reach the engine and succeed."""
    for body in (
        {"index": "docs", "query": "rivers"},
        {
            "index": "docs",
            "query": "bees",
            "filter": {"term": {"field": "tenant", "value": "acme"}},
        },
        {"index": "docs", "query": '{"script": {"source": "1"}}', "explain": True},
        {"index": "docs", "query": "\u202e\x00 ñandú 🦆", "bm25": {"fields": ["title^2"]}},
    ):
        response = client.post("/v1/search", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        check_answer(response)
    hits = client.post(
        "/v1/search",
        json={
            "index": "docs",
            "query": "text",
            "size": 20,
            "source": ["tenant"],
            "filter": {"term": {"field": "tenant", "value": "acme"}},
        },
        headers=AUTH,
    ).json()["hits"]
    assert hits and all(h["source"] == {"tenant": "acme"} for h in hits)


@PROPS
@given(raw=st.binary(max_size=300), extra=headers)
@example(raw=b"{" * 50_000, extra={})
@example(raw=b'{"index": "docs", "query": "q"}', extra={"Content-Encoding": "gzip"})
@example(raw=b'{"index": "docs", "query": "q"}', extra={"Content-Type": "text/plain"})
@example(raw=b'{"index": "docs", "query": "' + b"\xed\xa0\x80" + b'"}', extra={})
def test_any_bytes_and_headers_get_a_typed_answer(
    client: TestClient, raw: bytes, extra: dict[str, str]
) -> None:
    sent = {"Content-Type": "application/json", **AUTH, **extra}
    sent.pop("Transfer-Encoding", None)  # the client sets framing itself
    response = client.post("/v1/search", content=raw, headers=sent)
    check_answer(response, raw)
    if response.status_code == 401:
        assert KEY not in response.text


@pytest.mark.parametrize("size", [70_000, 1_000_000])
def test_oversized_bodies_are_413(client: TestClient, size: int) -> None:
    body = json.dumps({"index": "docs", "query": "q" * size}).encode()
    response = client.post(
        "/v1/search", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    check_answer(response)

    def chunks() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        yield body[len(body) // 2 :]

    streamed = client.post(
        "/v1/search", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    check_answer(streamed)
