"""The shipped reranker beats the order it reranks, on a held-out slice of its training mix.

The shipped model is trained on the mix of ``es_neural/train/mix.py`` (MS MARCO, WikiQA, TrecQA,
StackExchange, SciFact train less its validation carve). The candidates here are the fused
top-20 (BM25 + dense + SPLADE-tiny, linear fusion, from an Elasticsearch index) of SciFact's
validation carve (``carve_validation(fraction=0.2, seed=13)``), stored in ``data/`` so the test
needs no engine. These queries took no gradient step; with the other domains' dev splits they
chose the interpolation weight, as a validation split does. No test split is used here (the
model card reports them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from es_neural.eval import carve_validation, evaluate, rerank_ranking
from es_neural.search.rerank import embedded_reranker_path, get_reranker
from es_neural.settings import RerankSettings
from es_neural.tree.corpus import read_corpus, read_qrels, read_queries
from tests.conftest import shared_data

pytestmark = [
    pytest.mark.models,
    pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning"),
]

CANDIDATES = Path(__file__).parent / "data" / "scifact_val_fused_top20.json"
#: Validation queries used: all 162 of the carve (the tiny model scores them in seconds).
N_QUERIES = 162
MAX_BYTES = 50 * 1024 * 1024


def test_shipped_reranker_is_small_and_documented() -> None:
    folder = embedded_reranker_path()
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "SciFact" in card or "scifact" in card
    assert "test split was never used" in card
    # The card states every training source and the terms they carry (MS MARCO's: research).
    for source in ("MS MARCO", "WikiQA", "TrecQA", "StackExchange", "CC BY-SA 3.0"):
        assert source in card, source
    assert "non-commercial research" in card and "license: other" in card


def test_shipped_reranker_improves_ndcg_over_the_fused_order() -> None:
    data = json.loads(CANDIDATES.read_text(encoding="utf-8"))
    candidates = {q: [(d, float(s)) for d, s in hits] for q, hits in data["candidates"].items()}
    _, val = carve_validation(
        read_qrels(shared_data("scifact") / "qrels" / "train.tsv"), fraction=0.2, seed=13
    )
    assert set(candidates) == set(val)  # the stored file matches the carve
    qids = sorted(val)[:N_QUERIES]
    qrels = {q: val[q] for q in qids}
    fused = {q: candidates[q] for q in qids}
    queries = read_queries(shared_data("scifact") / "queries.jsonl")
    corpus = read_corpus(shared_data("scifact") / "corpus.jsonl")
    texts = dict(zip(corpus.ids, corpus.texts, strict=True))

    reranker = get_reranker(RerankSettings(model="embedded", device="cpu"))
    assert reranker is not None
    assert reranker.max_length == 192  # the length it was trained and validated with
    alpha = reranker.interpolation
    reranked = rerank_ranking(fused, queries, texts, reranker.score, top_n=20, interpolation=alpha)
    before = evaluate(qrels, fused, ("ndcg@10",))["ndcg@10"]
    after = evaluate(qrels, reranked, ("ndcg@10",))["ndcg@10"]
    assert after > before + 0.005, (before, after, alpha)
