"""The HTTP API against real engines and the embedded models, once per engine.

The app is built the way ``es-neural serve`` builds it (no fixed indexes: the lifespan loads the
settings' encoders through the registry), and the documents are ingested with the same shared
encoders, so query and document vectors come from one model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from es_neural.api import create_app
from es_neural.dialects import BaseDialect
from es_neural.indices import read_index_info
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex
from es_neural.settings import Settings
from tests.support.fakes import HashingDense

pytestmark = [pytest.mark.engine, pytest.mark.models]

KEY = "integration-key-7c2f4e1a"
AUTH = {"Authorization": f"Bearer {KEY}"}

TOPICS = [
    ("Rivers", "a river carries water from mountain springs down to the sea"),
    ("Volcanoes", "a volcano erupts molten rock, ash and gas from deep under the crust"),
    ("Bread", "bread is baked from flour, water, salt and yeast in a hot oven"),
    ("Chess", "chess is a board game of strategy played by two players"),
    ("Bees", "honey bees collect nectar from flowers and make honey in the hive"),
    ("Tides", "ocean tides rise and fall because of the pull of the moon"),
]


def _docs() -> list[dict[str, Any]]:
    docs = []
    for i in range(30):
        title, text = TOPICS[i % len(TOPICS)]
        docs.append({"id": f"d{i}", "title": f"{title} {i}", "text": f"{text}; note {i}.", "n": i})
    # one document holds a word no other has
    docs[17]["text"] += " The zanzibar archipelago lies off the coast of east africa."
    return docs


def _options(tmp_path: Path) -> IngestOptions:
    return IngestOptions(
        progress=False,
        checkpoint_path=tmp_path / "checkpoint.json",
        dead_letter_path=tmp_path / "dead.jsonl",
    )


@pytest.fixture
def served(engine_settings: Settings, dialect: BaseDialect, index_name: str, tmp_path: Path) -> str:
    """``index_name`` filled with 30 documents by the settings' (embedded) encoders."""
    idx = NeuralIndex(index_name, settings=engine_settings, dialect=dialect)
    report = idx.ingest(_docs(), options=_options(tmp_path))
    assert report.indexed == 30
    return index_name


@pytest.fixture
def client(engine_settings: Settings) -> Iterator[TestClient]:
    settings = engine_settings.with_(api_keys=[KEY])
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _search(client: TestClient, index: str, **body: Any) -> Any:
    return client.post("/v1/search", json={"index": index, **body}, headers=AUTH)


def test_search_finds_the_unique_document_with_every_legs_scores(
    client: TestClient, served: str
) -> None:
    response = _search(client, served, query="zanzibar archipelago", size=5, explain=True)
    assert response.status_code == 200, response.text
    data = response.json()
    top = data["hits"][0]
    assert top["id"] == "d17"
    assert "zanzibar" in top["source"]["text"]
    assert set(top["source"]) <= {"title", "text"}  # no vectors or hashes leave the API
    explain = top["explain"]
    assert set(explain["legs"]) == {"bm25", "dense", "sparse"}
    bm25 = explain["legs"]["bm25"]
    assert bm25["rank"] == 1 and bm25["score"] > 0
    assert explain["legs"]["dense"] is not None and explain["legs"]["dense"]["rank"] >= 1
    assert explain["legs"]["sparse"] is not None
    assert explain["fusion"] == "linear" and explain["fused_rank"] == 1
    assert explain["fused_score"] > 0
    assert set(data["leg_totals"]) == {"bm25", "dense", "sparse"}
    assert data["timings"]["engine_ms"] > 0
    assert data["rerank"]["applied"] is False


def test_legs_and_fusion_are_chosen_per_request(client: TestClient, served: str) -> None:
    response = _search(
        client,
        served,
        query="honey bees",
        size=3,
        explain=True,
        dense={"enabled": False},
        sparse={"enabled": False},
        fusion={"method": "linear"},
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data["leg_totals"]) == {"bm25"}
    for hit in data["hits"]:
        assert hit["explain"]["fusion"] == "linear"
        assert hit["explain"]["legs"]["dense"] is None
        assert "Bees" in hit["source"]["title"]


def test_pages_through_next_cursor_are_disjoint_and_cover_the_window(
    client: TestClient, served: str
) -> None:
    body: dict[str, Any] = {"query": "water", "size": 7, "window": 25}
    seen: list[str] = []
    ranks: list[int] = []
    pages = 0
    cursor = None
    while True:
        response = _search(client, served, **body, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        data = response.json()
        pages += 1
        seen.extend(hit["id"] for hit in data["hits"])
        ranks.extend(hit["rank"] for hit in data["hits"])
        cursor = data["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 4  # 7 + 7 + 7 + 4
    assert len(seen) == len(set(seen)) == 25
    assert ranks == list(range(1, 26))
    # a cursor only continues the query it came from
    first = _search(client, served, **body).json()
    other = _search(client, served, query="chess", size=7, window=25, cursor=first["next_cursor"])
    assert other.status_code == 422
    assert other.json()["error"]["type"] == "invalid_request"


def test_keys_are_enforced(client: TestClient, served: str) -> None:
    body = {"index": served, "query": "chess"}
    assert client.post("/v1/search", json=body).status_code == 401
    wrong = client.post("/v1/search", json=body, headers={"X-API-Key": KEY + "x"})
    assert wrong.status_code == 401
    assert client.post("/v1/search", json=body, headers={"X-API-Key": KEY}).status_code == 200


def test_ready_when_the_engine_is_up(client: TestClient, engine_settings: Settings) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["status"] == "ready" and data["models"] == "loaded"
    assert data["engines"][engine_settings.engine.value] in ("green", "yellow")


def test_a_missing_index_is_404(client: TestClient, index_name: str) -> None:
    response = _search(client, index_name + "-missing", query="anything")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "index_not_found"
    assert index_name not in response.text


def test_filters_apply_and_bad_ones_are_refused(
    client: TestClient, served: str, dialect: BaseDialect
) -> None:
    # (es-neural maps source fields other than the text fields only when told to, so the filter
    # uses the analysed title: "Rivers 6" holds the token "rivers", or "river" with english)
    analyzer = read_index_info(dialect, served).properties["title"]["analyzer"]
    token = dialect.analyze({"analyzer": analyzer, "text": "Rivers"})["tokens"][0]["token"]
    response = _search(
        client,
        served,
        query="water",
        size=30,
        filter={"term": {"field": "title", "value": token}},
    )
    assert response.status_code == 200, response.text
    ids = {hit["id"] for hit in response.json()["hits"]}
    assert ids == {f"d{i}" for i in range(0, 30, len(TOPICS))}  # on every leg, dense included
    # the vector field is not filterable (checked against the index's own field names)
    denied = _search(client, served, query="water", filter={"exists": {"field": "embedding"}})
    assert denied.status_code == 422
    assert denied.json()["error"]["type"] == "invalid_request"
    assert "embedding" in denied.json()["error"]["message"]


def test_an_index_built_with_other_models_is_409(
    client: TestClient,
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tmp_path: Path,
) -> None:
    other = NeuralIndex(
        index_name, settings=engine_settings, dialect=dialect,
        dense=HashingDense("hashing", normalize=None), use_sparse=False,  # other models
    )  # fmt: skip
    other.ingest(_docs()[:5], options=_options(tmp_path))
    response = _search(client, index_name, query="chess")
    assert response.status_code == 409, response.text
    assert response.json()["error"]["type"] == "model_mismatch"


def test_a_search_slower_than_the_timeout_gets_retry_after(
    engine_settings: Settings, served: str
) -> None:
    settings = engine_settings.with_(api={"request_timeout_s": 0.001, "max_concurrency": 1})
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        response = c.post("/v1/search", json={"index": served, "query": "volcano ash"})
        assert response.status_code in (503, 504), response.text
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["type"] in ("timeout", "engine_unavailable")
        gate = c.app.state.runtime.gate  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while gate.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate.pending == 0  # the abandoned search ended and gave its slot back
