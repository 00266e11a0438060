"""``run_eval`` end to end on a tiny BEIR folder, on both engines, with the embedded models.

The folder holds what broke or misled the tool before (issue 18): a query that is itself a
corpus document (BEIR's ``ignore_identical_ids``), a query far longer than the HTTP API's 2,048
characters and than the models' window, and names that ``--only`` once matched as substrings.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ranx import Qrels, Run
from ranx import evaluate as ranx_evaluate

from es_neural.eval.pipeline import EvalOptions, run_eval
from es_neural.eval.runs import run_file_name
from es_neural.settings import Settings

pytestmark = [
    pytest.mark.engine,
    pytest.mark.models,
    pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning"),
]

DOCS = {
    "a1": "Nuclear power is the safest source of energy per unit of electricity produced.",
    "d1": "Reactor accidents are rare and nuclear plants emit almost no carbon dioxide.",
    "d2": "Wind turbines and solar panels produce cheap renewable energy for the grid.",
    "d3": "Python is a programming language used for data science and machine learning.",
    "d4": "The quick brown fox jumps over the lazy dog in the green field.",
    "d5": "Cancer cells grow when gene mutations switch off the proteins that stop them.",
    "d6": "Clinical trials test whether a new drug dose is safe for patients.",
    "d7": "Elasticsearch and OpenSearch rank documents with BM25 and vector search.",
    "d8": "Coffee contains caffeine, which keeps people awake during the day.",
    "d9": "Heart disease risk rises with blood pressure and cholesterol.",
    "d10": "Brown bears eat fish from rivers in the autumn before they sleep.",
    "d11": "Rust is a programming language that prevents memory errors at compile time.",
}
LONG = " ".join(["Nuclear reactors produce energy without burning coal or gas."] * 60)
QUERIES = {
    "a1": DOCS["a1"],  # the query is itself a corpus document
    "t1": "which programming language prevents memory errors",
    "t2": "gene mutations in cancer cells",
    "t3": LONG,  # ~3,700 characters: above the API's cap and the models' 256 tokens
    "t4": "fox jumping over a dog",
    "r1": "is nuclear energy safe",
    "r2": "renewable wind and solar power",
    "r3": "python for machine learning",
    "r4": "side effects of drugs in clinical trials",
    "r5": "bears eating fish",
    "r6": "caffeine keeps you awake",
}
TEST = {"a1": "d1", "t1": "d11", "t2": "d5", "t3": "d1", "t4": "d4"}
TRAIN = {"r1": "d1", "r2": "d2", "r3": "d3", "r4": "d6", "r5": "d10", "r6": "d8"}
FUSED = "BM25 + dense + SPLADE (linear)"


def _beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
        for doc_id, text in DOCS.items():
            out.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as out:
        for qid, text in QUERIES.items():
            out.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, qrels in (("test", TEST), ("train", TRAIN)):
        rows = "".join(f"{q}\t{d}\t1\n" for q, d in qrels.items())
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def _options(tmp_path: Path, index: str, **changes: Any) -> EvalOptions:
    base = EvalOptions(
        data_dir=_beir(tmp_path / "beir"),
        index=index,
        val_fraction=0.34,
        progress=False,
        runs_dir=tmp_path / "runs",
    )
    return replace(base, **changes)


def test_tuned_run_with_identical_ids_long_queries_and_run_files(
    engine_settings: Settings, index_name: str, tmp_path: Path
) -> None:
    settings = engine_settings.with_(cache_dir=tmp_path / "cache")
    wanted = ("bm25", FUSED, f"{FUSED} + rerank alone")  # exact names, any case
    options = _options(tmp_path, index_name, only=wanted, ignore_identical_ids=True)
    report = run_eval(options, settings)

    assert [r.name for r in report.rows] == ["BM25", FUSED, f"{FUSED} + rerank alone"]
    assert report.queries == len(TEST)
    assert report.queries_truncated["dense"] >= 1 and report.queries_truncated["sparse"] >= 1
    rerank_row = report.rows[-1]
    assert rerank_row.config["rerank_top_n"] == settings.rerank.top_n
    assert report.tuning["validation"]["queries"] == 2

    # Chosen on validation by the rules of --recommend (every plain fusion is measured there,
    # not just the rows run); the Markdown bolds that row when it was run here.
    assert set(report.validation) == {r.name for r in report.rows}
    assert report.decided is not None and report.decided_reasons[0].startswith("fusion: ")
    if report.decided in report.validation:
        assert report.chosen == report.decided
        assert f"| **{report.chosen}** |" in report.markdown()
    else:
        assert report.chosen is None
        assert f"validation chose {report.decided}, which was not run" in report.markdown()

    # One TREC run per configuration, which another tool scores exactly as the report did.
    qrels = Qrels({q: {d: 1} for q, d in TEST.items()})
    runs = tmp_path / "runs"
    for row in report.rows:
        path = runs / run_file_name(row.name)
        lines = path.read_text().splitlines()
        assert lines and all(len(line.split()) == 6 for line in lines)
        # ignore_identical_ids: the query "a1" never counts document "a1" (BM25 ranks it first).
        assert not any(line.startswith("a1 Q0 a1 ") for line in lines)
        assert any(line.startswith("a1 Q0 ") for line in lines)
        theirs = ranx_evaluate(qrels, Run.from_file(str(path), kind="trec"), "ndcg@10")
        assert theirs == pytest.approx(row.metrics["ndcg@10"], abs=1e-4)
    assert sorted(p.name for p in runs.iterdir()) == sorted(
        run_file_name(r.name) for r in report.rows
    )


def test_untuned_run_adds_the_interpolated_row_at_the_model_cards_weight(
    engine_settings: Settings, index_name: str, tmp_path: Path
) -> None:
    settings = engine_settings.with_(cache_dir=tmp_path / "cache")
    options = _options(
        tmp_path,
        index_name,
        tune_split=None,
        only=(f"{FUSED} + rerank alone", f"{FUSED} + rerank (interpolated)"),
        runs_dir=None,
    )
    report = run_eval(options, settings)
    assert [r.name for r in report.rows] == [
        f"{FUSED} + rerank alone",
        f"{FUSED} + rerank (interpolated 0.1)",  # es_neural/models/reranker/es_neural.json
    ]
    assert report.rows[1].config["interpolation"] == 0.1
    assert report.chosen is None and report.validation == {}
    assert "No row is bold" in report.markdown()
    assert any("from the reranker's model card" in n for n in report.notes)
