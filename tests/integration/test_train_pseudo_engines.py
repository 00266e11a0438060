"""``es-neural train reranker --pseudo-queries title`` end to end through the CLI, on both engines:
a folder holding only ``corpus.jsonl`` (no queries, no qrels), tiny random models for the legs
and the backbone. The corpus is ingested as stored (titles included), the hard negatives come
from the engine's fused retrieval, the card says the model was trained on pseudo-queries with
no judgments, and the saved model loads and scores as a reranker.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from es_neural.cli import app
from es_neural.dialects import BaseDialect
from es_neural.search.rerank import CrossEncoderReranker
from es_neural.settings import Settings
from tests.support.corpus import TOPICS

pytestmark = [
    pytest.mark.engine,
    pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning"),
]


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
        for i, word in enumerate(TOPICS):
            doc = {
                "_id": f"d{i}",
                "title": f"The {word} study of {TOPICS[(i + 1) % len(TOPICS)]}",
                "text": (
                    f"A new {word} model was tested in the first study. "
                    f"The {word} data show a large effect in {i + 2} trials of people."
                ),
            }
            out.write(json.dumps(doc) + "\n")
    return folder


def test_train_reranker_on_title_pseudo_queries_with_no_judgments(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    data = _corpus(tmp_path / "mycorpus")
    out = tmp_path / "reranker"
    env = {
        "COLUMNS": "200",
        "ES_NEURAL_DENSE__MODEL": str(tiny_model_dir),
        "ES_NEURAL_SPARSE__MODEL": str(tiny_model_dir),
        "ES_NEURAL_CACHE_DIR": str(tmp_path / "cache"),
    }
    args = ["train", "reranker", str(data), "-o", str(out), "--pseudo-queries", "title"]
    args += ["--engine", engine_settings.engine.value, "--index", index_name]
    args += ["--backbone", str(tiny_model_dir), "--epochs", "2", "--lr", "1e-3"]
    args += ["--negatives", "3", "--hard", "2", "--max-length", "32", "--val-top-n", "5"]
    args += ["--val-fraction", "0.25", "--threads", "1", "--no-progress"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["pseudo_queries"] == {"kind": "title", "pairs_built": 22, "pairs_used": 22}

    # The index holds the stored documents, titles included (only training drops them).
    dialect.refresh(index_name)
    assert dialect.count(index_name) == len(TOPICS)
    stored = dialect.get_documents(index_name, ["d3"])["d3"]
    assert stored["title"] == "The cell study of gene"

    facts = json.loads((out / "training.json").read_text())
    pseudo = facts["data"]["pseudo_queries"]
    assert (pseudo["kind"], pseudo["training_queries"], pseudo["validation_queries"]) == (
        "title",
        16,
        6,
    )
    assert pseudo["judgments"].startswith("none")
    assert f"{engine_settings.engine.value} index {index_name!r}" in facts["data"]["negatives_from"]
    assert facts["config"]["select_on"] == "rerank"
    card = (out / "README.md").read_text()
    assert "trained on pseudo-queries (no judgments)" in card
    assert "No relevance judgments were read" in card and "--pseudo-queries title" in card

    reranker = CrossEncoderReranker(str(out), max_length=32, device="cpu")
    assert reranker.interpolation == facts["best_alpha"]
    scores = reranker.score("the cell study", ["A new cell model.", "The fox data."])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)
