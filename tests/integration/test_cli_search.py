"""``es-neural search`` against real engines, once per engine: only the legs asked for are
loaded, ``--api`` sends the search to a running API server, ``--rerank`` uses the embedded
reranker when none is configured, and explain gives the reranker's own rank.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from es_neural.api import create_app
from es_neural.cli import app
from es_neural.neural_index import NeuralIndex
from es_neural.search.rerank import CrossEncoderReranker, embedded_reranker_path
from es_neural.settings import Settings
from es_neural.text import document_text

pytestmark = [pytest.mark.engine]

KEY = "cli-search-key-5d1e"
DOCS = [
    {"id": "coffee", "title": "Coffee", "text": "Coffee is brewed from roasted coffee beans."},
    {"id": "espresso", "title": "Espresso", "text": "Espresso: coffee forced through beans."},
    {
        "id": "beans",
        "title": "Beans",
        "text": "Beans are seeds; coffee beans are roasted, cocoa beans fermented, and green "
        "beans are eaten whole as a vegetable in many countries of the world.",
    },
    {"id": "tea", "title": "Tea", "text": "Tea is an infusion of leaves, not roasted beans."},
    {"id": "roast", "title": "Roasting", "text": "Roasting turns green coffee beans brown."},
    {"id": "bread", "title": "Bread", "text": "Bread is baked from flour and water."},
    {"id": "mars", "title": "Mars", "text": "Mars is the fourth planet from the Sun."},
]
#: No model can be loaded from here: a search that tried to load one would fail.
NO_MODELS = {
    "ES_NEURAL_DENSE__MODEL": "/nonexistent/dense-model",
    "ES_NEURAL_SPARSE__MODEL": "/nonexistent/sparse-model",
    "ES_NEURAL_RERANK__MODEL": "off",
}


@pytest.fixture
def hashed(hashed_index: Callable[..., NeuralIndex]) -> NeuralIndex:
    """``index_name`` holding DOCS, encoded by the hashing test encoder (no SPLADE)."""
    return hashed_index(DOCS)


def _cli(args: Sequence[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def _json(output: str) -> Any:
    return json.loads(output[output.index("{") :])


def test_a_bm25_search_loads_no_model(
    hashed: NeuralIndex, index_name: str, engine_settings: Settings
) -> None:
    args = ["search", "roasted coffee beans", "-i", index_name, "-e", engine_settings.engine.value]
    result = _cli([*args, "--legs", "bm25", "--json", "--explain"], NO_MODELS)
    assert result.exit_code == 0, result.output
    body = _json(result.output)
    expected = hashed.search(
        "roasted coffee beans", dense={"enabled": False}, sparse={"enabled": False}
    )
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected.hits]
    assert body["hits"]
    # the same search with the dense leg needs the dense model: refused, saying why
    dense = _cli([*args, "--legs", "bm25,dense"], NO_MODELS)
    assert dense.exit_code == 1
    assert "/nonexistent/dense-model" in " ".join(dense.output.split())


def test_explain_gives_the_rerankers_own_rank(hashed: NeuralIndex, index_name: str) -> None:
    # weight 0: the final order is the fused order; the reranker's own order is by length
    reranker = _LengthReranker()
    idx = NeuralIndex(
        index_name,
        settings=hashed.settings,
        dialect=hashed.dialect,
        dense=hashed.dense,
        use_sparse=False,
        reranker=reranker,
    )
    response = idx.search(
        "roasted coffee beans",
        size=5,
        explain=True,
        sparse={"enabled": False},
        rerank={"enabled": True, "top_n": 5, "interpolation": 0.0},
    )
    assert response.rerank.applied and response.rerank.interpolation == 0.0
    hits = response.hits
    assert len(hits) == 5 and all(h.explain is not None for h in hits)
    assert [h.explain.fused_rank for h in hits if h.explain] == [1, 2, 3, 4, 5]
    by_length = sorted(hits, key=lambda h: -len(document_text(h.source, ("title", "text"))))
    assert [h.explain.rerank_rank for h in by_length if h.explain] == [1, 2, 3, 4, 5]
    assert any(h.explain and h.explain.rerank_rank != h.rank for h in hits)
    assert by_length[0].id == "beans"


class _LengthReranker:
    """A real (if simple) reranker: longer passages score higher."""

    name = "length"
    max_length = 512
    interpolation = None

    def score(self, query: str, passages: Sequence[str], *, batch_size: int = 32) -> list[float]:
        return [float(len(p)) for p in passages]

    def token_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        return [len(p.split()) for p in passages]


# ----- --api -----


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api_url(hashed: NeuralIndex) -> Iterator[str]:
    """A real API server (uvicorn, in a thread) serving ``hashed`` under the name ``docs``."""
    settings = hashed.settings.with_(api_keys=[KEY])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, indexes={"docs": hashed}),
            host="127.0.0.1",
            port=_free_port(),
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_the_cli_sends_the_search_to_a_running_api(hashed: NeuralIndex, api_url: str) -> None:
    args = ["search", "roasted coffee beans", "-i", "docs", "--api", api_url]
    legs = ["--legs", "bm25,dense", "--fusion", "linear", "--weight", "dense=2"]
    result = _cli([*args, *legs, "--json", "--explain", "--api-key", KEY], NO_MODELS)
    assert result.exit_code == 0, result.output
    body = _json(result.output)
    expected = hashed.search(
        "roasted coffee beans",
        sparse={"enabled": False},
        fusion={"method": "linear"},
        dense={"weight": 2.0},
    )
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected.hits]
    assert body["hits"][0]["explain"]["fusion"] == "linear"
    printed = _cli([*args, *legs, "--explain"], {**NO_MODELS, "ES_NEURAL_API_KEY": KEY})
    assert printed.exit_code == 0, printed.output
    assert "fused = sum over legs of weight * minmax(leg score)  (linear)" in printed.output
    assert f"{expected.hits[0].id}  score=" in printed.output


def test_mmr_flags_here_and_through_the_api(
    hashed: NeuralIndex, index_name: str, engine_settings: Settings, api_url: str
) -> None:
    # a BM25-only search diversifies with the vectors the engine holds: still no model loaded
    expected = hashed.search(
        "roasted coffee beans",
        dense={"enabled": False},
        sparse={"enabled": False},
        diversify={"enabled": True, "lambda": 0.5},
    )
    assert expected.diversify.applied
    here = ["search", "roasted coffee beans", "-i", index_name, "-e", engine_settings.engine.value]
    api = ["search", "roasted coffee beans", "-i", "docs", "--api", api_url, "--api-key", KEY]
    for args in (here, api):
        result = _cli([*args, "--legs", "bm25", "--mmr-lambda", "0.5", "--json"], NO_MODELS)
        assert result.exit_code == 0, result.output
        body = _json(result.output)
        assert body["diversify"]["applied"] and body["diversify"]["lambda"] == 0.5
        assert [h["id"] for h in body["hits"]] == [h.id for h in expected.hits]
    printed = _cli([*here, "--legs", "bm25", "--mmr", "--explain"], NO_MODELS)
    assert printed.exit_code == 0, printed.output
    text = " ".join(printed.output.split())
    assert f"order of the top {expected.diversify.window}: MMR" in text
    assert "mmr from #1 rel=1.0000 max cos=0.0000 -> mmr=0.7000" in text
    assert "mmr: top" in text and "diversified (lambda 0.7)" in text


def test_api_errors_are_said_not_raised(api_url: str) -> None:
    base = ["search", "coffee", "--legs", "bm25", "--api", api_url]
    no_key = _cli([*base, "-i", "docs"], {"ES_NEURAL_API_KEY": ""})
    assert no_key.exit_code == 1 and "answered 401" in no_key.output
    unknown = _cli([*base, "-i", "other", "--api-key", KEY])
    assert unknown.exit_code == 1
    assert "answered 404: index_not_found" in " ".join(unknown.output.split())
    gone = _cli(["search", "coffee", "-i", "docs", "--api", f"http://127.0.0.1:{_free_port()}"])
    assert gone.exit_code == 1 and "cannot reach the API" in gone.output


# ----- rerank -----


@pytest.mark.models
def test_rerank_without_a_configured_reranker_uses_the_embedded_one(
    hashed: NeuralIndex, index_name: str, engine_settings: Settings
) -> None:
    args = ["search", "roasted coffee beans", "-i", index_name, "-e", engine_settings.engine.value]
    result = _cli(
        [*args, "--legs", "bm25", "--rerank", "-n", "5", "--json", "--explain"], NO_MODELS
    )
    assert result.exit_code == 0, result.output
    body = _json(result.output)
    assert body["rerank"]["applied"] and body["rerank"]["model"] == "es-neural embedded reranker"
    hits = body["hits"]
    scored = sorted(hits, key=lambda h: -h["explain"]["rerank_score"])
    assert [h["explain"]["rerank_rank"] for h in scored] == list(range(1, len(hits) + 1))
    without = _cli([*args, "--legs", "bm25", "--json"], NO_MODELS)
    assert without.exit_code == 0 and not _json(without.output)["rerank"]["applied"]


@pytest.mark.models
def test_counting_reranker_tokens_warns_of_nothing(tmp_path: Path) -> None:
    """The reranker counts tokens without truncation (to report truncated passages); the
    tokenizer's "longer than the specified maximum" warning is not shown for it."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("transformers")
    handler = Keep(level=logging.WARNING)
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    logger.addHandler(handler)
    try:
        reranker = CrossEncoderReranker(str(embedded_reranker_path())).load()
        long_text = "coffee beans are roasted " * 200
        lengths = reranker.token_lengths("coffee", [long_text])
        assert lengths[0] > reranker.max_length
        assert not [r for r in records if "longer than" in r.getMessage()]
        reranker.model.tokenizer("coffee", long_text)  # the same call, warnings on: one
        assert [r for r in records if "longer than" in r.getMessage()]
    finally:
        logger.removeHandler(handler)
        hf_logging.set_verbosity(before)
