"""Reranker training on a tiny fixture: data building, a run end to end, a loadable model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from es_neural.train import (
    RerankerTrainConfig,
    ValidationSet,
    build_examples,
    sample_groups,
    train_reranker,
)
from es_neural.train.card import write_card

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")

WORDS = "python java rust cell gene protein cancer brain heart water energy virus drug dog cat fox"
TEXTS = {f"d{i}": f"{w} study of the {w} data" for i, w in enumerate(WORDS.split())}
QUERIES = {f"q{i}": f"the {w}" for i, w in enumerate(WORDS.split())}
QRELS = {f"q{i}": {f"d{i}": 1} for i in range(len(TEXTS))}


def _ranking(qids: list[str]) -> dict[str, list[tuple[str, float]]]:
    """Each query's relevant document at rank 3, after two others (a fused order to improve)."""
    ids = sorted(TEXTS, key=lambda d: int(d[1:]))
    out = {}
    for qid in qids:
        rel = f"d{qid[1:]}"
        others = [d for d in ids if d != rel]
        order = [*others[:2], rel, *others[2:8]]
        out[qid] = [(d, 1.0 - 0.1 * i) for i, d in enumerate(order)]
    return out


def test_build_examples_drops_positives_from_negatives() -> None:
    ranking = _ranking(["q0", "q1"])
    examples = build_examples(QUERIES, {"q0": {"d0": 1}, "q1": {"d1": 0}}, ranking)
    assert [e.qid for e in examples] == ["q0"]  # q1 has no positive
    assert examples[0].positives == ("d0",)
    assert "d0" not in [d for d, _ in examples[0].negatives]
    assert len(examples[0].negatives) == 8


def test_sample_groups_is_seeded_and_mixes_hard_and_easy() -> None:
    examples = build_examples(QUERIES, QRELS, _ranking(sorted(QRELS)))
    a = sample_groups(examples, TEXTS, negatives=3, hard=2, hard_depth=2, seed=5)
    b = sample_groups(examples, TEXTS, negatives=3, hard=2, hard_depth=2, seed=5)
    c = sample_groups(examples, TEXTS, negatives=3, hard=2, hard_depth=2, seed=6)

    def key(groups: list) -> list:  # type: ignore[type-arg]
        return [(g.query, g.docs) for g in groups]  # teacher scores hold NaN (never equal)

    assert key(a) == key(b) and key(a) != key(c)
    assert len(a) == len(QRELS) and all(len(g.docs) == 4 for g in a)
    for group in a:
        qid = next(q for q, t in QUERIES.items() if t == group.query)
        assert group.docs[0] == TEXTS[f"d{qid[1:]}"]  # the positive comes first
        assert math.isnan(group.teacher[0])


def test_training_runs_and_saves_a_loadable_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    from es_neural.search.rerank import CrossEncoderReranker

    train_q = [f"q{i}" for i in range(12)]
    val_q = [f"q{i}" for i in range(12, len(QRELS))]
    ranking = _ranking(sorted(QRELS))
    examples = build_examples(QUERIES, {q: QRELS[q] for q in train_q}, ranking)
    val = ValidationSet(
        {q: QUERIES[q] for q in val_q}, {q: QRELS[q] for q in val_q}, {q: ranking[q] for q in val_q}
    )
    config = RerankerTrainConfig(
        epochs=2,
        learning_rate=1e-3,
        batch_groups=4,
        negatives=3,
        hard=2,
        hard_depth=4,
        max_length=32,
        val_top_n=5,
        distill=0.5,
        device="cpu",
        threads=1,
    )
    out = tmp_path / "reranker"
    result = train_reranker(
        tiny_model_dir, examples, TEXTS, val, out, config=config, progress=False
    )
    assert [e.epoch for e in result.epochs] == [1, 2]
    assert result.epochs[-1].steps == 2 * math.ceil(len(examples) / 4)
    assert all(math.isfinite(e.mean_loss) for e in result.epochs)
    assert result.best_epoch in (1, 2)
    assert 0.0 <= result.base_ndcg <= 1.0 and result.best_ndcg >= 0.0
    card = write_card(result, backbone="tiny-bert", data={"dataset": "tiny fixture"})
    text = card.read_text()
    assert "tiny fixture" in text and "epoch" in text and "float16" in text
    meta = json.loads((out / "es_neural.json").read_text())
    assert meta["interpolation"] == result.best_alpha
    assert meta["max_length"] == config.max_length  # the length it was validated with
    assert json.loads((out / "training.json").read_text())["best_epoch"] == result.best_epoch

    reranker = CrossEncoderReranker(str(out), max_length=32, device="cpu")
    assert reranker.interpolation == result.best_alpha
    scores = reranker.score("the cell", [TEXTS["d3"], TEXTS["d0"]])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)
    assert next(reranker.model.model.parameters()).dtype.is_floating_point
    assert str(next(reranker.model.model.parameters()).dtype) == "torch.float32"
