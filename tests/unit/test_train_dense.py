"""Query-side dense training on a tiny fixture: the loss falls, the folder loads as the query
tower of its document model (and only of it), queries are cached apart from documents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from es_neural.encoders.cache import CachedDenseEncoder
from es_neural.encoders.dense import SentenceTransformerDense
from es_neural.encoders.query_tuned import QueryTunedDense
from es_neural.encoders.registry import clear_encoders, get_dense_encoder
from es_neural.errors import ConfigurationError
from es_neural.settings import DenseModelSettings
from es_neural.train.dense import (
    DenseTrainConfig,
    DenseTrainResult,
    DenseValidation,
    train_query_encoder,
    write_dense_card,
)
from tests.support.corpus import TOPICS

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")

WORDS = TOPICS[:20]
TEXTS = {f"d{i}": f"{w} study of the {w} data" for i, w in enumerate(WORDS)}
QUERIES = {f"q{i}": f"the {w}" for i, w in enumerate(WORDS)}
QRELS = {f"q{i}": {f"d{i}": 1} for i in range(len(WORDS))}
TRAIN = {q: r for q, r in QRELS.items() if int(q[1:]) < 16}
# Validation on the training queries: a random tiny model generalises to nothing, and what is
# tested here is the plumbing (epoch selection, saving), not effectiveness.
VAL = TRAIN


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DenseTrainResult:
    base = SentenceTransformerDense(tiny_model_dir)
    ids = sorted(TEXTS)
    vectors = base.encode_documents([TEXTS[d] for d in ids])
    out = tmp_path_factory.mktemp("dense") / "query-model"
    config = DenseTrainConfig(
        epochs=4, learning_rate=2e-3, batch_size=4, warmup_ratio=0.0, max_length=16, seed=3
    )
    result = train_query_encoder(
        tiny_model_dir,
        QUERIES,
        TRAIN,
        ids,
        vectors,
        DenseValidation({q: QUERIES[q] for q in VAL}, VAL),
        out,
        document_model=base.fingerprint.to_meta(),
        config=config,
        progress=False,
    )
    write_dense_card(result, base="tiny-bert", data={"dataset": "tiny fixture"})
    return result


def test_training_lowers_the_loss_and_reports_every_epoch(trained: DenseTrainResult) -> None:
    assert [e.epoch for e in trained.epochs] == [1, 2, 3, 4]
    assert trained.train_pairs == 16 and trained.corpus_size == len(TEXTS)
    # Eval-mode loss over the training pairs (no dropout): what the training minimises.
    losses = [trained.base_train_loss, *(e.train_loss for e in trained.epochs)]
    assert losses[-1] < losses[0] * 0.8, losses
    assert trained.best_epoch >= 1
    assert trained.epochs[-1].steps == 16  # 4 steps of 4 pairs per epoch
    # The kept epoch is the best on validation, or the base model (epoch 0) when none beat it.
    best = max([trained.base_ndcg, *(e.val_ndcg for e in trained.epochs)])
    assert trained.best_ndcg == pytest.approx(best)


def test_saved_folder_is_the_query_tower_of_its_document_model(
    trained: DenseTrainResult, tiny_model_dir: Path
) -> None:
    folder = trained.output
    meta = json.loads((folder / "es_neural.json").read_text())
    base = SentenceTransformerDense(tiny_model_dir)
    assert meta["role"] == "query_encoder"
    assert meta["document_model"]["digest"] == base.fingerprint.digest
    card = (folder / "README.md").read_text()
    assert "tiny fixture" in card and "| 0 (base) |" in card

    tuned = QueryTunedDense(base, folder)
    tuned.load()
    assert tuned.fingerprint == base.fingerprint  # the index's document space is unchanged
    docs = [TEXTS["d0"], TEXTS["d1"]]
    np.testing.assert_array_equal(tuned.encode_documents(docs), base.encode_documents(docs))
    q_tuned = tuned.encode_queries([QUERIES["q0"]])
    q_base = base.encode_queries([QUERIES["q0"]])
    assert q_tuned.shape == q_base.shape == (1, base.dims)
    assert not np.allclose(q_tuned, q_base)  # queries go through the trained weights
    assert float(np.linalg.norm(q_tuned)) == pytest.approx(1.0, abs=1e-5)
    if trained.best_epoch:  # (always: asserted above)
        # The trained tower ranks the training positives higher than the base model did.
        ids = sorted(TEXTS)
        dv = base.encode_documents([TEXTS[d] for d in ids])
        qs = [QUERIES[q] for q in sorted(TRAIN)]
        rel = [ids.index(next(iter(TRAIN[q]))) for q in sorted(TRAIN)]

        def mean_rank(qv: np.ndarray) -> float:
            scores = qv @ dv.T
            return float(np.mean([(s > s[r]).sum() for s, r in zip(scores, rel, strict=True)]))

        assert mean_rank(tuned.encode_queries(qs)) < mean_rank(base.encode_queries(qs))


def test_query_model_is_refused_next_to_another_document_model(
    trained: DenseTrainResult, tiny_model_dir_seed1: Path, tmp_path: Path
) -> None:
    other = SentenceTransformerDense(tiny_model_dir_seed1, name="tiny-bert")
    with pytest.raises(ConfigurationError, match="was tuned for the document model"):
        QueryTunedDense(other, trained.output).load()
    base = SentenceTransformerDense(tiny_model_dir_seed1)
    with pytest.raises(ConfigurationError, match="not a query-tuned model"):
        QueryTunedDense(base, tmp_path).load()


def test_registry_and_cache_use_the_query_model(
    trained: DenseTrainResult, tiny_model_dir: Path, tmp_path: Path
) -> None:
    clear_encoders()
    try:
        settings = DenseModelSettings(model=str(tiny_model_dir), query_model=str(trained.output))
        encoder = get_dense_encoder(settings)
        plain = get_dense_encoder(DenseModelSettings(model=str(tiny_model_dir)))
        assert isinstance(encoder, QueryTunedDense)
        assert encoder.base is plain  # one loaded document model per process
        cached = CachedDenseEncoder(encoder, tmp_path / "cache")
        plain_cached = CachedDenseEncoder(plain, cached.cache)
        text = [QUERIES["q3"]]
        np.testing.assert_allclose(cached.encode_queries(text), encoder.encode_queries(text))
        # Same text as a query of the base model: a different cache entry, not the tuned one.
        assert not np.allclose(plain_cached.encode_queries(text), cached.encode_queries(text))
        # Documents are shared with the base model's cache entries.
        cached.encode_documents([TEXTS["d3"]])
        before = plain_cached.stats
        plain_cached.encode_documents([TEXTS["d3"]])
        assert plain_cached.stats.hits == before.hits + 1
    finally:
        clear_encoders()
