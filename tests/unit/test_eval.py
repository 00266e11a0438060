"""The evaluation harness on tiny hand-made fixtures: metrics reproduce hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from es_neural.errors import InvalidInputError
from es_neural.eval import (
    LEGS,
    EvalConfig,
    EvalReport,
    ResultRow,
    TreeOptions,
    carve_validation,
    default_configs,
    drop_identical_ids,
    evaluate,
    fuse_offline,
    latency_summary,
    load_beir,
    rerank_ranking,
    run_file_name,
    select_configs,
    simplex_grid,
    tune_fusion,
    tune_interpolation,
    write_chart,
    write_trec_run,
)
from es_neural.eval.configs import DEFAULT_ROW
from es_neural.eval.pipeline import (
    EvalOptions,
    _configurations,
    _ReadPath,
    _Tuning,
    _validation_scores,
    rerank_top_n,
)
from es_neural.search.fusion import RankedList, fuse
from es_neural.search.models import FusionConfig, SearchRequest
from es_neural.settings import EngineKind, Settings

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")

QRELS = {"q1": {"d1": 1, "d3": 1}, "q2": {"d5": 1}, "q3": {"d7": 1}}
RUN = {
    "q1": [("d1", 3.0), ("d2", 2.0), ("d3", 1.0)],
    "q2": [("d4", 9.0), ("d6", 8.0), ("d5", 7.0)],
    "q3": [],
}


def test_metrics_match_hand_computed_values() -> None:
    # q1: DCG = 1 + 1/log2(4) = 1.5, IDCG = 1 + 1/log2(3); q2: 1/log2(4) = 0.5; q3: no hit.
    ndcg_q1 = 1.5 / (1 + 1 / math.log2(3))
    got = evaluate(QRELS, RUN)
    assert got["ndcg@10"] == pytest.approx((ndcg_q1 + 0.5 + 0.0) / 3, abs=1e-9)
    assert got["recall@100"] == pytest.approx(2 / 3, abs=1e-9)
    assert got["mrr@10"] == pytest.approx((1 + 1 / 3 + 0) / 3, abs=1e-9)


def test_order_not_scores_decides_and_ties_keep_the_given_order() -> None:
    tied = {"q1": [("d2", 1.0), ("d1", 1.0), ("d3", 1.0)]}
    got = evaluate({"q1": QRELS["q1"]}, tied, ("ndcg@10", "mrr@10"))
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    assert got["ndcg@10"] == pytest.approx(dcg / (1 + 1 / math.log2(3)), abs=1e-9)
    assert got["mrr@10"] == pytest.approx(0.5)


def test_queries_missing_from_the_run_score_zero_and_extra_ones_are_ignored() -> None:
    got = evaluate({"q2": {"d5": 1}, "qx": {"d1": 1}}, {"q2": [("d5", 1.0)], "qz": [("d1", 1)]})
    assert got["ndcg@10"] == pytest.approx(0.5)
    with pytest.raises(InvalidInputError):
        evaluate({}, RUN)


def test_recall_counts_only_the_first_100() -> None:
    ranking = {"q": [(f"x{i}", float(-i)) for i in range(100)] + [("rel", -100.0)]}
    assert evaluate({"q": {"rel": 1}}, ranking, ("recall@100",))["recall@100"] == 0.0


def test_carve_validation_is_deterministic_disjoint_and_order_free() -> None:
    qrels = {f"q{i}": {"d": 1} for i in range(50)}
    train, val = carve_validation(qrels, fraction=0.2, seed=13)
    assert len(val) == 10 and len(train) == 40
    assert not set(train) & set(val)
    shuffled = dict(reversed(list(qrels.items())))
    assert carve_validation(shuffled, fraction=0.2, seed=13) == (train, val)
    assert carve_validation(qrels, fraction=0.2, seed=14)[1] != val
    with pytest.raises(InvalidInputError):
        carve_validation(qrels, fraction=1.0)


def test_load_beir(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "body"}\n{"_id": "d2", "title": "", "text": "x"}\n'
    )
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "a claim"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    data = load_beir(tmp_path, ["test"])
    assert data.split("test") == {"q1": {"d1": 1}}
    assert data.queries_of(data.split("test")) == {"q1": "a claim"}
    assert dict(zip(data.corpus.ids, data.corpus.texts, strict=True)) == {
        "d1": "T\nbody",
        "d2": "x",
    }
    with pytest.raises(InvalidInputError):
        data.split("train")
    with pytest.raises(InvalidInputError):
        load_beir(tmp_path, ["train"])


LEG_RUNS = {
    "bm25": {"q1": [("d1", 10.0), ("d2", 5.0)], "q2": [("d4", 3.0), ("d5", 2.0)]},
    "dense": {"q1": [("d2", 0.9), ("d3", 0.8)], "q2": [("d5", 0.7), ("d6", 0.1)]},
}


def test_fuse_offline_is_the_searchers_fusion() -> None:
    config = EvalConfig(
        "x", ("bm25", "dense"), fusion="linear", weights={"bm25": 0.3, "dense": 0.7}
    )
    got = fuse_offline(LEG_RUNS, config)
    expected = fuse(
        [RankedList.from_scores(leg, LEG_RUNS[leg]["q1"]) for leg in ("bm25", "dense")],
        method="linear",
        weights={"bm25": 0.3, "dense": 0.7},
        normalization="minmax",
    )
    assert got["q1"] == [(h.doc_id, h.score) for h in expected.hits]
    # min-max: q1 bm25 d1=1, d2=0; dense d2=1, d3=0 -> d2 0.7, d1 0.3, d3 0.0
    assert [d for d, _ in got["q1"]] == ["d2", "d1", "d3"]
    rrf = fuse_offline(LEG_RUNS, EvalConfig("r", ("bm25", "dense")))
    assert rrf["q1"][0] == ("d2", pytest.approx(1 / 62 + 1 / 61))


def test_tune_fusion_finds_the_weighting_that_wins() -> None:
    qrels = {"q1": {"d2": 1}, "q2": {"d5": 1}}
    found = tune_fusion(
        LEG_RUNS, qrels, EvalConfig("x", ("bm25", "dense"), fusion="linear"), step=0.25
    )
    assert found.score == pytest.approx(1.0)
    assert found.config.weights["dense"] > found.config.weights["bm25"]
    assert found.tried == 2 * 3  # two normalisations x {(.25,.75), (.5,.5), (.75,.25)}
    assert list(simplex_grid(("a", "b"), 0.5)) == [{"a": 0.5, "b": 0.5}]


def test_rerank_ranking_and_interpolation_by_hand() -> None:
    ranking = {"q": [("a", 1.0), ("b", 0.5), ("c", 0.0), ("tail", -1.0)]}
    texts = {"a": "A", "b": "B", "c": "C", "tail": "T"}
    rerank = {"A": 0.0, "B": 2.0, "C": 1.0}

    def score(_q: str, docs: list[str]) -> list[float]:
        return [rerank[d] for d in docs]

    alone = rerank_ranking(ranking, {"q": "?"}, texts, score, top_n=3)
    assert [d for d, _ in alone["q"]] == ["b", "c", "a", "tail"]
    # a: 0.5*0 + 0.5*1 = 0.5; b: 0.5*1 + 0.5*0.5 = 0.75; c: 0.5*0.5 + 0 = 0.25
    mixed = rerank_ranking(ranking, {"q": "?"}, texts, score, top_n=3, interpolation=0.5)
    assert mixed["q"][:3] == [("b", 0.75), ("a", 0.5), ("c", 0.25)]
    best, scores = tune_interpolation({None: alone, 0.5: mixed}, {"q": {"a": 1}})
    assert best == 0.5 and scores["0.5"] > scores["rerank"]


def test_latency_summary() -> None:
    got = latency_summary([5.0, 1.0, 3.0, 2.0, 4.0])
    assert got == {"mean_ms": 3.0, "p50_ms": 3.0, "p95_ms": 5.0}
    assert math.isnan(latency_summary([])["p50_ms"])


def test_default_configs_cover_legs_pairs_all_fusions_tree_and_rerank() -> None:
    configs = default_configs(tree=True, rerank=True, interpolation=0.3)
    names = [c.name for c in configs]
    assert names[:3] == ["BM25", "dense", "SPLADE"]
    assert sum("(RRF)" in n for n in names) == 4
    assert sum(n.endswith("(linear)") for n in names) == 4
    assert names[-3:] == [
        "BM25 + dense + SPLADE (linear) + leaf filter",
        "BM25 + dense + SPLADE (linear) + rerank alone",
        "BM25 + dense + SPLADE (linear) + rerank (interpolated 0.3)",
    ]
    assert len(default_configs()) == 12
    # The library's untuned default fusion of the three legs sits between RRF and tuned linear.
    default = next(c for c in configs if c.name == DEFAULT_ROW)
    assert names.index(DEFAULT_ROW) == names.index("BM25 + dense + SPLADE (RRF)") + 1
    request = default.request("a claim")
    assert request.fusion == FusionConfig() and request.fusion.method == "linear"
    assert all(getattr(request, leg).weight == 1.0 for leg in ("bm25", "dense", "sparse"))


def test_config_request() -> None:
    config = EvalConfig(
        "x",
        ("bm25", "sparse"),
        fusion="linear",
        weights={"sparse": 0.6},
        tree=True,
        rerank=True,
        rerank_top_n=20,
        interpolation=0.4,
    )
    request = config.request("a claim", tree=TreeOptions(threshold=0.8))
    assert not request.dense.enabled and request.bm25.enabled and request.sparse.weight == 0.6
    assert request.bm25.k == 100 and request.window == 100 and request.size == 100
    assert request.fusion.method == "linear" and request.tree.threshold == 0.8
    assert request.rerank.top_n == 20 and request.rerank.interpolation == 0.4
    alone = config.with_(interpolation=None).request("a claim", tree=TreeOptions())
    assert alone.rerank.interpolation == 1.0  # not the model's recommended weight
    with pytest.raises(InvalidInputError):
        config.request("a claim")  # tree options missing
    with pytest.raises(InvalidInputError):
        EvalConfig("bad", ("bm25",), weights={"dense": 1.0})
    with pytest.raises(InvalidInputError):
        EvalConfig("bad", ("colbert",))


def test_report_markdown_json_and_chart(tmp_path: Path) -> None:
    report = EvalReport(
        dataset="scifact", split="test", engine="elasticsearch", index="s", queries=3
    )
    for name, ndcg in (("BM25", 0.6), ("fused", 0.7)):
        report.rows.append(
            ResultRow(
                name=name,
                config={"name": name},
                metrics={"ndcg@10": ndcg, "recall@100": 0.9, "mrr@10": 0.5},
                latency={"mean_ms": 10.0, "p50_ms": 9.0, "p95_ms": 20.0},
                queries=3,
            )
        )
    report.validation = {"BM25": 0.5, "fused": 0.8, "not run": 0.9}
    assert report.choose() == "fused"  # the best run row on validation
    text = report.markdown()
    assert "| **fused** | 0.7000 | 0.9000 | 0.5000 | 9.0 | 10.0 |" in text
    assert "SPLADE++: 0.704" in text
    assert "chosen on validation (nDCG@10 0.8000 there)" in text
    data = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert data["best"] == "fused" and data["rows"][0]["metrics"]["ndcg@10"] == 0.6
    assert data["chosen_on_validation"] == "fused"
    png = write_chart(report, tmp_path / "r.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def _row(name: str, ndcg: float) -> ResultRow:
    return ResultRow(
        name=name,
        config={"name": name},
        metrics={"ndcg@10": ndcg, "recall@100": 0.9, "mrr@10": 0.5},
        latency={"mean_ms": 10.0, "p50_ms": 9.0, "p95_ms": 20.0},
        queries=3,
    )


def test_markdown_bolds_the_row_chosen_on_validation_not_the_best_on_test() -> None:
    report = EvalReport(dataset="x", split="test", engine="elasticsearch", index="x", queries=3)
    report.rows += [_row("BM25", 0.6), _row("fused", 0.7)]
    report.validation = {"BM25": 0.75, "fused": 0.7}
    assert report.choose() == "BM25"
    text = report.markdown()
    assert "| **BM25** | 0.6000 |" in text
    assert "| fused | 0.7000 |" in text and "**fused**" not in text
    assert report.best() is report.rows[1]  # best on test, read only
    untuned = EvalReport(dataset="x", split="test", engine="elasticsearch", index="x", queries=3)
    untuned.rows += [_row("BM25", 0.6), _row("fused", 0.7)]
    assert untuned.choose() is None
    text = untuned.markdown()
    assert "**" not in text.split("No row is bold")[0]
    assert "No row is bold: nothing was chosen on validation" in text


def test_only_takes_exact_names() -> None:
    configs = default_configs(tree=True, rerank=True, interpolation=0.3)
    assert [c.name for c in select_configs(configs, ["BM25"])] == ["BM25"]
    assert sum("BM25" in c.name for c in configs) == 11  # a substring would select them all
    picked = select_configs(configs, ["bm25 + dense  (rrf)", "SPLADE", "BM25"])
    assert [c.name for c in picked] == ["BM25", "SPLADE", "BM25 + dense (RRF)"]  # list order
    # The interpolated row's weight is tuned, so its name answers with or without it.
    tuned = "BM25 + dense + SPLADE (linear) + rerank (interpolated 0.3)"
    for asked in (
        tuned,
        "BM25 + dense + SPLADE (linear) + rerank (interpolated)",
        "BM25 + dense + SPLADE (linear) + rerank (interpolated 0.7)",
    ):
        assert [c.name for c in select_configs(configs, [asked])] == [tuned]
    with pytest.raises(InvalidInputError, match="no configuration named \\['BM2'\\]"):
        select_configs(configs, ["BM2"])
    with pytest.raises(InvalidInputError, match="'BM25 \\+ dense'"):
        select_configs(configs, ["BM25 + dense"])  # a pair is named with its fusion


def test_cli_only_splits_comma_lists_and_repeats() -> None:
    from es_neural.cli.eval import _names

    assert _names(["BM25, dense", "BM25 + dense (RRF)", " ,"]) == (
        "BM25",
        "dense",
        "BM25 + dense (RRF)",
    )
    assert _names(None) == ()
    # the default row's name holds a comma: kept whole, alone or in a list
    default = "BM25 + dense + SPLADE (default, untuned)"
    assert _names([default]) == (default,)
    assert _names([f"BM25,{default}, dense"]) == ("BM25", default, "dense")
    assert _names(["bm25 + dense + splade (default,  untuned)"]) == (
        "bm25 + dense + splade (default,  untuned)",
    )
    assert _names(["BM25 + dense + SPLADE (default, tuned)"]) == (
        "BM25 + dense + SPLADE (default",
        "tuned)",
    )  # no such row: kept as written, and refused by name later


def test_rerank_top_n_defaults_to_the_settings() -> None:
    options = EvalOptions(data_dir=Path("x"))
    assert options.rerank_top_n is None
    settings = Settings()
    assert rerank_top_n(options, settings) == settings.rerank.top_n
    changed = settings.with_(rerank=settings.rerank.model_copy(update={"top_n": 7}))
    assert rerank_top_n(options, changed) == 7
    assert rerank_top_n(EvalOptions(data_dir=Path("x"), rerank_top_n=12), changed) == 12
    best = default_configs(rerank=True, rerank_top_n=7)[-1]
    assert best.rerank and best.request("q").rerank.top_n == 7
    # Not given: the searcher's own default (the request leaves it unset).
    assert EvalConfig("x", LEGS, rerank=True).request("q").rerank.top_n is None


def test_long_queries_reach_the_models_blank_ones_are_typed_errors() -> None:
    long = "an argument " * 1000  # 12,000 characters: the HTTP API caps 2,048, the library not
    assert SearchRequest(query=long).query == long
    assert EvalConfig("BM25", ("bm25",)).request(long).query == long
    with pytest.raises(InvalidInputError, match="query '   ' refused"):
        EvalConfig("BM25", ("bm25",)).request("   ")


def test_ignore_identical_ids_drops_the_query_itself() -> None:
    ranking = {"a1": [("a1", 3.0), ("d2", 2.0), ("d3", 1.0)], "a2": [("d3", 1.0)]}
    assert drop_identical_ids(ranking) == {"a1": [("d2", 2.0), ("d3", 1.0)], "a2": [("d3", 1.0)]}
    assert ranking["a1"][0] == ("a1", 3.0)  # input untouched
    qrels = {"a1": {"d2": 1}}
    assert evaluate(qrels, ranking, ("mrr@10",))["mrr@10"] == pytest.approx(0.5)
    assert evaluate(qrels, drop_identical_ids(ranking), ("mrr@10",))["mrr@10"] == 1.0
    # Tuning scores the fused rankings the same way.
    legs = {
        "bm25": {"a1": [("a1", 9.0), ("d3", 5.0), ("d2", 1.0)]},
        "dense": {"a1": [("a1", 0.9), ("d2", 0.8), ("d3", 0.1)]},
    }
    base = EvalConfig("x", ("bm25", "dense"), fusion="linear")
    plain = tune_fusion(legs, qrels, base, step=0.5)
    dropped = tune_fusion(legs, qrels, base, step=0.5, ignore_identical_ids=True)
    assert plain.score < dropped.score == pytest.approx(1.0)


def test_trec_run_files_hold_the_evaluated_order(tmp_path: Path) -> None:
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    assert run_file_name("BM25 + dense + SPLADE (linear) + rerank (interpolated 0.3)") == (
        "bm25-dense-splade-linear-rerank-interpolated-0.3.trec"
    )
    assert run_file_name("BM25") == "bm25.trec"
    # Tied scores: trec_eval would break the tie by doc id; the file keeps the system's order.
    ranking = {"q2": [("d5", 1.0), ("d4", 1.0), ("d6", 0.5)], "q1": [("d3", 2.0), ("d1", 1.0)]}
    path = write_trec_run(ranking, tmp_path / "runs" / "x.trec", tag="x")
    assert path.read_text().splitlines() == [
        "q1 Q0 d3 1 2 x",
        "q1 Q0 d1 2 1 x",
        "q2 Q0 d5 1 3 x",
        "q2 Q0 d4 2 2 x",
        "q2 Q0 d6 3 1 x",
    ]
    qrels = {"q1": {"d1": 1}, "q2": {"d4": 1}}
    ours = evaluate(qrels, ranking, ("ndcg@10", "mrr@10"))
    theirs = ranx_evaluate(
        Qrels(qrels), Run.from_file(str(path), kind="trec"), ["ndcg@10", "mrr@10"]
    )
    assert theirs == pytest.approx(ours) and ours["mrr@10"] == pytest.approx(0.5)
    with pytest.raises(InvalidInputError):
        write_trec_run({"q 1": [("d", 1.0)]}, tmp_path / "bad.trec", tag="x")
    with pytest.raises(InvalidInputError):
        write_trec_run(ranking, tmp_path / "bad.trec", tag="a tag")


def _read_path(reranker: object | None) -> _ReadPath:
    none = None
    return _ReadPath("x", EngineKind.ELASTICSEARCH, none, none, none, none, reranker, none, none)


class _Card:
    """A reranker as the configuration step sees it: its model card's interpolation weight."""

    def __init__(self, interpolation: float | None) -> None:
        self.interpolation = interpolation


def test_untuned_rerank_rows_include_the_model_cards_interpolation() -> None:
    options = EvalOptions(data_dir=Path("x"), tune_split=None)
    configs, notes = _configurations(options, _read_path(_Card(0.1)), _Tuning(), 20, tree=False)
    rerank = [c for c in configs if c.rerank]
    assert [(c.name, c.interpolation, c.rerank_top_n) for c in rerank] == [
        ("BM25 + dense + SPLADE (linear) + rerank alone", None, 20),
        ("BM25 + dense + SPLADE (linear) + rerank (interpolated 0.1)", 0.1, 20),
    ]
    assert any("weight 0.1 from the reranker's model card" in n for n in notes)
    configs, notes = _configurations(options, _read_path(_Card(None)), _Tuning(), 20, tree=False)
    assert [c.interpolation for c in configs if c.rerank] == [None]
    assert any("names no interpolation weight" in n for n in notes)
    only = EvalOptions(data_dir=Path("x"), tune_split=None, only=("BM25", "dense"))
    configs, _ = _configurations(only, _read_path(None), _Tuning(), 20, tree=False)
    assert [c.name for c in configs] == ["BM25", "dense"]
    gone = EvalOptions(
        data_dir=Path("x"), only=("BM25", "BM25 + dense + SPLADE (linear) + rerank (interpolated)")
    )
    configs, notes = _configurations(gone, _read_path(_Card(None)), _Tuning(), 20, tree=False)
    assert [c.name for c in configs] == ["BM25"] and "not run" in notes[-1]


def test_validation_scores_cover_what_can_be_measured_offline() -> None:
    qrels = {"q1": {"d2": 1}, "q2": {"d5": 1}}
    legs = {**LEG_RUNS, "sparse": {"q1": [("d2", 5.0)], "q2": [("d4", 1.0)]}}
    reranked = {None: {"q1": [("d2", 1.0)], "q2": [("d5", 1.0)]}, 0.2: {"q1": [("d1", 1.0)]}}
    tuning = _Tuning(qrels=qrels, legs=legs, reranked=reranked)
    configs = default_configs(tree=True, rerank=True, interpolation=0.2)
    scores = _validation_scores(configs, tuning, EvalOptions(data_dir=Path("x")))
    assert "BM25 + dense + SPLADE (linear) + leaf filter" not in scores
    assert len(scores) == len(configs) - 1
    assert scores["BM25 + dense + SPLADE (linear) + rerank alone"] == 1.0
    assert scores["BM25 + dense + SPLADE (linear) + rerank (interpolated 0.2)"] == 0.0
    assert scores["SPLADE"] == pytest.approx(0.5)  # q1 found first, q2 missed
    assert _validation_scores(configs, _Tuning(), EvalOptions(data_dir=Path("x"))) == {}
