"""Training without judgments (issue 18 item 5): the pseudo-query training set built from a corpus
file, the refusals (clear, counted, no traceback), ``train dense --pseudo-queries`` end to end on
a tiny model (no engine needed), and the reranker's epoch chosen on its rerank-only score.

The reranker end to end, through the engine, is tests/integration/test_train_pseudo_engines.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from es_neural.cli import app
from es_neural.errors import InvalidInputError
from es_neural.train import RerankerTrainConfig, ValidationSet, build_examples, train_reranker
from es_neural.train.card import write_card
from es_neural.train.pseudo import pseudo_training_set
from tests.support.corpus import TOPICS

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")


def _doc(i: int, word: str) -> dict[str, str]:
    return {
        "_id": f"d{i}",
        "title": f"The {word} study number {i}",
        "text": (
            f"A new {word} model was tested in the first study. "
            f"The {word} data show a large effect in {i + 2} trials of people. "
            f"Most {word} tests were done in the last year."
        ),
    }


def _corpus(folder: Path, docs: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    docs = [_doc(i, w) for i, w in enumerate(TOPICS[:20])]
    docs.append({"_id": "untitled", "text": "No title here. Just two sentences of body text."})
    return _corpus(tmp_path / "corpus", docs)


@pytest.mark.parametrize("kind", ["title", "lead", "ict"])
def test_pairs_become_queries_qrels_and_trained_texts(corpus: Path, kind: str) -> None:
    ps = pseudo_training_set(corpus, kind, limit=None, val_fraction=0.25)  # type: ignore[arg-type]
    assert (ps.kind, ps.documents, ps.built, ps.used) == (kind, 21, 20, 20)
    assert len(ps.validation) == 5 and len(ps.train) == 15
    assert not set(ps.train) & set(ps.validation)
    for qid, qrels in {**ps.train, **ps.validation}.items():
        ((doc, grade),) = qrels.items()
        assert qid == f"{kind}:{doc}" and grade == 1
        query, text = ps.queries[qid], ps.texts[doc]
        # The positive is trained without the part that became its query, and without the title.
        assert query not in text and "study number" not in text
        assert text.split()[-1].endswith(".")
    # A document without a pair is trained as its body (no title either).
    assert ps.texts["untitled"] == "No title here. Just two sentences of body text."
    assert set(ps.texts) == {f"d{i}" for i in range(20)} | {"untitled"}
    facts = ps.facts()
    assert facts["kind"] == kind and facts["pairs_used"] == 20
    assert facts["judgments"].startswith("none")


def test_the_limit_draws_a_seeded_subset(corpus: Path) -> None:
    a = pseudo_training_set(corpus, "title", limit=12, seed=1, val_fraction=0.25)
    b = pseudo_training_set(corpus, "title", limit=12, seed=1, val_fraction=0.25)
    c = pseudo_training_set(corpus, "title", limit=12, seed=2, val_fraction=0.25)
    assert a.used == 12 and a.built == 20 and a.limit == 12
    assert (a.train, a.validation) == (b.train, b.validation)
    assert set(a.queries) != set(c.queries)
    # Documents left out of the draw are trained as their body, like the unpaired ones.
    left_out = next(d for d in (f"d{i}" for i in range(20)) if f"title:{d}" not in a.queries)
    assert a.texts[left_out].startswith("A new ")


def test_too_few_pairs_are_refused_with_the_count_and_the_reason(tmp_path: Path) -> None:
    docs = [_doc(i, w) for i, w in enumerate(TOPICS[:5])]
    docs += [{"_id": f"s{i}", "title": "Short", "text": "One sentence only."} for i in range(3)]
    path = _corpus(tmp_path / "small", docs)
    with pytest.raises(InvalidInputError) as err:
        pseudo_training_set(path, "title")
    message = str(err.value)
    assert "gave 5 pairs from 8 documents" in message and "at least 20" in message
    assert "5 documents have such a title, 5 of them such a body" in message
    assert "Try another kind (lead, ict)" in message
    with pytest.raises(
        InvalidInputError, match=r"gave 2 pairs from 5 documents.*: 2 documents have two or more"
    ):
        pseudo_training_set(_corpus(tmp_path / "short", docs[3:]), "lead")
    assert pseudo_training_set(path, "title", min_pairs=5).used == 5
    with pytest.raises(InvalidInputError, match="is missing"):
        pseudo_training_set(tmp_path / "nowhere.jsonl", "title")
    with pytest.raises(InvalidInputError, match="kind must be one of"):
        pseudo_training_set(path, "abstract")  # type: ignore[arg-type]


def _cli(args: list[str], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, args, env={"COLUMNS": "200", **(env or {})})


@pytest.mark.parametrize("command", ["reranker", "dense"])
def test_the_cli_refuses_clearly_without_a_traceback(
    command: str, tmp_path: Path, corpus: Path
) -> None:
    small = tmp_path / "small"
    _corpus(small, [_doc(i, w) for i, w in enumerate(TOPICS[:3])])
    out = str(tmp_path / "out")
    result = _cli(["train", command, str(small), "-o", out, "--pseudo-queries", "title"])
    assert result.exit_code == 1, result.output
    assert "gave 3 pairs from 3 documents" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    # Without --pseudo-queries a corpus folder is not enough: judgments are needed.
    result = _cli(["train", command, str(corpus.parent), "-o", out])
    assert result.exit_code == 1 and "queries.jsonl is missing" in result.output
    # No such kind: a usage error naming the choices.
    result = _cli(["train", command, str(corpus.parent), "-o", out, "--pseudo-queries", "body"])
    assert result.exit_code == 2 and "title" in result.output and "ict" in result.output
    # --split names judgments, which pseudo-queries never read: refused, not ignored.
    args = [*["train", command, str(corpus.parent), "-o", out], "--pseudo-queries", "title"]
    result = _cli([*args, "--split", "dev"])
    assert result.exit_code == 1 and "exclude each other" in result.output, result.output
    assert "Traceback" not in result.output
    assert not Path(out).exists()


def test_train_dense_on_pseudo_queries_end_to_end(
    corpus: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "query-model"
    env = {"ES_NEURAL_DENSE__MODEL": str(tiny_model_dir), "ES_NEURAL_CACHE_DIR": str(tmp_path)}
    args = ["train", "dense", str(corpus.parent), "-o", str(out), "--pseudo-queries", "lead"]
    args += ["--pseudo-limit", "16", "--epochs", "2", "--lr", "1e-3", "--batch-size", "4"]
    args += ["--max-length", "16", "--threads", "1", "--val-fraction", "0.25", "--no-progress"]
    result = _cli(args, env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["pseudo_queries"] == {"kind": "lead", "pairs_built": 20, "pairs_used": 16}
    facts = json.loads((out / "training.json").read_text())
    assert facts["data"]["pseudo_queries"]["judgments"].startswith("none")
    assert facts["train_queries"] == 12 and facts["corpus_size"] == 21
    card = (out / "README.md").read_text()
    assert "Trained on pseudo-queries, no judgments" in card and "`lead` pseudo-query" in card
    assert "validation pseudo-queries carved from the same pairs" in card
    assert json.loads((out / "es_neural.json").read_text())["role"] == "query_encoder"


WORDS = "python java rust cell gene protein cancer brain heart water energy virus drug dog cat fox"
TEXTS = {f"d{i}": f"{w} study of the {w} data" for i, w in enumerate(WORDS.split())}
QUERIES = {f"q{i}": f"the {w}" for i, w in enumerate(WORDS.split())}
QRELS = {f"q{i}": {f"d{i}": 1} for i in range(len(TEXTS))}


def test_the_epoch_kept_can_be_chosen_on_the_rerank_only_score(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    ids = sorted(TEXTS, key=lambda d: int(d[1:]))
    ranking = {}
    for qid in QRELS:  # the relevant document third, after two others
        rel = f"d{qid[1:]}"
        others = [d for d in ids if d != rel]
        ranking[qid] = [(d, 1.0 - 0.05 * i) for i, d in enumerate([*others[:2], rel, *others[2:9]])]
    train_q, val_q = sorted(QRELS)[:10], sorted(QRELS)[10:]
    val = ValidationSet(
        {q: QUERIES[q] for q in val_q}, {q: QRELS[q] for q in val_q}, {q: ranking[q] for q in val_q}
    )
    examples = build_examples(QUERIES, {q: QRELS[q] for q in train_q}, ranking)
    config = RerankerTrainConfig(
        epochs=3,
        learning_rate=2e-3,
        negatives=3,
        hard=2,
        hard_depth=4,
        max_length=32,
        val_top_n=10,
        device="cpu",
        threads=1,
        select_on="rerank",
    )
    out = tmp_path / "reranker"
    result = train_reranker(
        tiny_model_dir, examples, TEXTS, val, out, config=config, progress=False
    )
    rerank_only = [e.val_ndcg["rerank"] for e in result.epochs]
    assert result.best_epoch == rerank_only.index(max(rerank_only)) + 1
    kept = result.epochs[result.best_epoch - 1]
    assert (result.best_alpha, result.best_ndcg) == (kept.best_alpha, kept.best_ndcg)
    assert all(math.isfinite(v) for v in rerank_only)

    facts = {"dataset": "tiny", "pseudo_queries": {"kind": "title", "pairs_used": 16}}
    text = write_card(result, backbone="tiny-bert", data=facts, pseudo=True).read_text()
    assert "trained on pseudo-queries (no judgments)" in text
    assert "No relevance judgments were read" in text and "--pseudo-queries title" in text
    assert "best rerank-only validation nDCG@10" in text and "embedded reranker" not in text
    supervised = write_card(result, backbone="tiny-bert", data={"dataset": "tiny"}).read_text()
    assert "# es-neural embedded reranker" in supervised and "pseudo" not in supervised
    assert "Positives: the relevant documents of the training queries' qrels." in supervised
