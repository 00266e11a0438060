"""Unit-test fixtures: tiny random models written once per session (no network, no engines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_models import make_tiny_bert_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (hidden 32, seed 0): loads as dense, SPLADE and cross-encoder."""
    return make_tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_model_dir_seed1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny architecture with other weights (seed 1)."""
    return make_tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert-seed1"), seed=1)


@pytest.fixture(scope="session")
def tiny_prompt_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed-0 model with a sentence-transformers query prompt (queries != documents)."""
    return make_tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert-prompt"), query_prompt="query: ")
