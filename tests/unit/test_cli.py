"""The command line without an engine: help text, option spellings and checks, the search
request the options build, the explain formula, engine memory, instance URLs, quiet loaders."""

from __future__ import annotations

import os
import typing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from es_neural.cli import app
from es_neural.cli.engines import format_bytes, node_memory, process_tree_rss
from es_neural.cli.search import (
    FusionChoice,
    NormalizationChoice,
    _explain_lines,
    build_request,
    score_formula,
)
from es_neural.engines import NodeStatus
from es_neural.search.models import (
    DiversifyConfig,
    DiversifyInfo,
    FusionConfig,
    HitExplain,
    MmrExplain,
    RerankInfo,
    SearchResponse,
    Timings,
)
from es_neural.search.rerank import RerankPlan, ScoreFunction, rerank_window
from es_neural.settings import EngineKind

runner = CliRunner()

COMMANDS = [
    ["search"],
    ["ingest"],
    ["demo"],
    ["serve"],
    ["eval"],
    ["train", "reranker"],
    ["train", "dense"],
    ["train", "query-tower"],
    ["tree", "build"],
    ["tree", "train"],
    ["tree", "assign"],
    ["migrate", "run"],
    ["engines", "up"],
    ["engines", "status"],
]


def _help(command: list[str]) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_flags_are_not_shown_taking_a_value(command: list[str]) -> None:
    text = _help(command)
    assert "--help" in text
    assert "<bool>" not in text


def test_one_spelling_each_in_help_and_the_old_ones_hidden() -> None:
    for command in (["ingest"], ["tree", "build"], ["tree", "assign"]):
        text = _help(command)
        assert "--text-fields" in text and "--fields " not in text
    for command in (["tree", "build"], ["tree", "train"], ["train", "reranker"]):
        text = _help(command)
        assert "--output" in text and "--out " not in text


def test_the_old_spellings_are_still_accepted() -> None:
    # ingest reads --fields before anything is loaded: an empty list is refused by its new name
    result = runner.invoke(app, ["ingest", __file__, "-i", "x", "--fields", " , "])
    assert result.exit_code == 1
    assert "--text-fields needs at least one field name" in result.output
    # tree build: --out and --fields parse (an unknown option would fail before --max-depth)
    result = runner.invoke(
        app, ["tree", "build", __file__, "--out", "/tmp/t", "--fields", "a", "--max-depth", "0"]
    )
    assert result.exit_code == 2
    assert "No such option" not in result.output and "max-depth" in result.output


def test_tree_build_without_output_says_so() -> None:
    result = runner.invoke(app, ["tree", "build", __file__])
    assert result.exit_code == 2
    assert "--output (-o) is required" in result.output


def test_fusion_and_normalization_are_checked_choices() -> None:
    assert {c.value for c in FusionChoice} == set(
        typing.get_args(FusionConfig.model_fields["method"].annotation)
    )
    assert {c.value for c in NormalizationChoice} == set(
        typing.get_args(FusionConfig.model_fields["normalization"].annotation)
    )
    result = runner.invoke(app, ["search", "q", "-i", "x", "--fusion", "borda"])
    assert result.exit_code == 2 and "borda" in result.output
    text = _help(["search"])
    assert "<rrf|linear>" in text and "<minmax|zscore|l2|none>" in text


def test_the_options_build_the_request() -> None:
    request = build_request(
        "q",
        legs="bm25,dense",
        fusion=FusionChoice.LINEAR,
        weights=["bm25=0.5,dense=2"],
        normalization=NormalizationChoice.ZSCORE,
        leg_k=40,
        rerank_top_n=7,
        rerank=True,
    )
    assert request.fusion.method == "linear" and request.fusion.normalization == "zscore"
    assert (request.bm25.weight, request.dense.weight) == (0.5, 2.0)
    assert (request.bm25.k, request.dense.k, request.sparse.k) == (40, 40, 40)
    assert not request.sparse.enabled and request.bm25.enabled and request.dense.enabled
    assert request.rerank.enabled is True and request.rerank.top_n == 7
    assert not request.diversify.enabled and "diversify" not in request.model_fields_set
    rrf = build_request("q", fusion=FusionChoice.RRF, rrf_k=10.0)
    assert rrf.fusion.method == "rrf" and rrf.fusion.k == 10.0
    assert rrf.rerank.enabled is None and rrf.rerank.top_n is None  # the settings decide
    # The default fusion is linear (min-max, equal weights); --rrf-k alone is a contradiction.
    plain = build_request("q")
    assert plain.fusion.method == "linear" and plain.fusion.normalization == "minmax"
    with pytest.raises(typer.Exit):
        build_request("q", rrf_k=10.0)


def test_mmr_options_build_the_diversification() -> None:
    assert build_request("q", mmr=True).diversify == DiversifyConfig(enabled=True)
    # --mmr-lambda and --mmr-window imply --mmr, as --rerank-top-n implies --rerank
    given = build_request("q", mmr_lambda=0.5, mmr_window=20).diversify
    assert given == DiversifyConfig(enabled=True, lambda_=0.5, window=20)
    text = _help(["search"])
    for flag in ("--mmr", "--diversify", "--mmr-lambda", "--mmr-window"):
        assert flag in text
    result = runner.invoke(app, ["search", "q", "-i", "x", "--mmr-lambda", "2"])
    assert result.exit_code == 2 and "--mmr-lambda" in result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"legs": "bm25,vector"}, "unknown leg(s) ['vector']"),
        ({"weights": ["title=2"]}, "write leg=weight"),
        ({"weights": ["dense=heavy"]}, "is no number"),
        ({"legs": "bm25", "weights": ["dense=2"]}, "not in --legs"),
        (
            {"fusion": FusionChoice.RRF, "normalization": NormalizationChoice.L2},
            "--normalization applies to --fusion linear",
        ),
        ({"rrf_k": 10.0}, "--rrf-k applies to --fusion rrf (the default fusion is linear)"),
        ({"fusion": FusionChoice.LINEAR, "rrf_k": 5.0}, "--rrf-k applies to --fusion rrf"),
        ({"rerank": False, "rerank_top_n": 5}, "--rerank-top-n with --no-rerank"),
        ({"filter_json": "{"}, "--filter is not JSON"),
        ({"weights": ["dense=-1"]}, "invalid request"),
        ({"mmr_window": 101}, "diversify.window (101) is larger than window (100)"),
    ],
)
def test_contradictory_options_are_refused(
    options: dict[str, typing.Any], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exc:
        build_request("q", **options)
    assert exc.value.exit_code == 1
    assert message in " ".join(capsys.readouterr().err.split())


def test_rerank_top_n_alone_turns_rerank_on(tmp_path: Path) -> None:
    # --rerank-top-n implies --rerank: with a reranker that cannot load, the search says so
    result = runner.invoke(
        app,
        ["search", "q", "-i", "x", "--legs", "bm25", "--rerank-top-n", "5"],
        env={"ES_NEURAL_RERANK__MODEL": str(tmp_path / "no-model")},
    )
    assert result.exit_code == 1
    assert "cannot load the reranker" in result.output


def test_fusion_and_legs_left_at_their_defaults_are_known_as_such() -> None:
    from es_neural.cli.search import _cli_defaults

    seen: list[list[str]] = []
    probe = typer.Typer()

    @probe.command()
    def command(ctx: typer.Context, fusion: str = "rrf", legs: str = "bm25") -> None:
        seen.append(_cli_defaults(ctx))

    assert runner.invoke(probe, []).exit_code == 0
    assert runner.invoke(probe, ["--fusion", "linear"]).exit_code == 0
    assert runner.invoke(probe, ["--legs", "bm25", "--fusion", "rrf"]).exit_code == 0
    legs = ["bm25.enabled", "dense.enabled", "sparse.enabled"]
    assert seen == [["fusion.method", *legs], legs, []]


# ----- explain -----


def _response(info: RerankInfo) -> SearchResponse:
    return SearchResponse(
        hits=[],
        window_total=0,
        leg_totals={},
        offset=0,
        next_cursor=None,
        rerank=info,
        timings=Timings(),
    )


def test_the_score_formula_says_how_the_final_score_was_made() -> None:
    rrf = FusionConfig(method="rrf")
    linear = FusionConfig(method="linear", normalization="zscore")
    plain = score_formula(_response(RerankInfo(applied=False)), rrf)
    assert plain[0] == "score = fused score (no rerank)"
    assert plain[1].startswith("fused = sum over legs of weight / (60 + leg rank)  (RRF)")
    mixed = score_formula(
        _response(RerankInfo(applied=True, candidates=20, interpolation=0.1)), linear
    )
    assert mixed[0].startswith(
        "score = 0.1 * minmax(rerank) + 0.9 * minmax(fused) over the 20 reranked"
    )
    assert mixed[1].startswith("fused = sum over legs of weight * zscore(leg score)  (linear)")
    alone = score_formula(_response(RerankInfo(applied=True, candidates=5)), rrf)
    assert alone[0] == "score = rerank score for the 5 reranked; fused score below them"


def test_explain_says_how_mmr_placed_each_hit() -> None:
    info = DiversifyInfo(applied=True, lambda_=0.7, window=30)
    response = _response(RerankInfo(applied=False)).model_copy(update={"diversify": info})
    lines = score_formula(response, FusionConfig())
    assert lines[2].startswith(
        "order of the top 30: MMR, each position takes the highest 0.7 * rel - 0.3 * max cos"
    )
    assert len(score_formula(_response(RerankInfo(applied=False)), FusionConfig())) == 2
    mmr = MmrExplain(
        rank_before=4, relevance=0.5, max_similarity=0.25, similar_to="py", mmr_score=0.275
    )
    explain = HitExplain(legs={}, fused_score=0.1, fused_rank=4, fusion="rrf", mmr=mmr)
    assert _explain_lines(explain, set(), linear=False)[2] == (
        "mmr from #4 rel=0.5000 max cos=0.2500 to py -> mmr=0.2750"
    )


def test_the_rerank_stage_records_the_weight_it_used() -> None:
    plan = RerankPlan(enabled=True, top_n=3, budget_ms=60_000.0, batch_size=8, interpolation=0.25)
    window = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    scorer = ScoreFunction(lambda q, ps: [float(len(p)) for p in ps])
    outcome = rerank_window("q", window, reranker=scorer, plan=plan, passages=lambda ids: ids)
    assert outcome.info.applied and outcome.info.interpolation == 0.25
    alone = rerank_window(
        "q",
        window,
        reranker=scorer,
        plan=RerankPlan(True, 3, 60_000.0, 8, None),
        passages=lambda ids: ids,
    )
    assert alone.info.applied and alone.info.interpolation is None


# ----- engines -----


def test_the_memory_of_a_process_tree() -> None:
    own = process_tree_rss(os.getpid())
    assert own is not None and own > 10 * 2**20  # this Python holds more than 10 MB
    assert process_tree_rss(2**22 + 12345) is None  # no such process
    status = NodeStatus(EngineKind.ELASTICSEARCH, 0, "http://x", True, True, "9", "green", None)
    assert node_memory([status]) is None  # not started by es-neural: unknown
    mine = NodeStatus(EngineKind.OPENSEARCH, 0, "http://x", True, True, "3", "green", os.getpid())
    held = node_memory([status, mine])
    assert held is not None and held >= own * 0.5
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**20) == "3.0 MB"
    assert format_bytes(2.5 * 2**30) == "2.5 GB"


def test_an_instance_at_the_default_url_is_not_the_default_nodes(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "ES_NEURAL_HOME": str(tmp_path),
        "ES_NEURAL_ELASTICSEARCH__URL": None,  # unset: the default URLs
        "ES_NEURAL_OPENSEARCH__URL": None,
        "COLUMNS": "250",
    }
    status = runner.invoke(app, ["engines", "status", "--instance", "other"], env=env)
    # the default nodes may well answer at the default URLs: the instance's nodes are down
    assert status.exit_code == 1
    assert "green" not in status.output and "down" in status.output
    assert "no node in instance other (ES_NEURAL_OPENSEARCH__URL not set)" in status.output
    up = runner.invoke(app, ["engines", "up", "--instance", "other"], env=env)
    assert up.exit_code == 1
    assert "instance other needs its own ports" in " ".join(up.output.split())
    assert not (tmp_path / "run").exists()


# ----- loaders -----


def test_quiet_loaders_turn_off_transformers_bars_but_not_the_hubs() -> None:
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    from es_neural.cli.search import quiet_model_loaders

    hf_logging.enable_progress_bar()
    before = hf_logging.get_verbosity()
    try:
        quiet_model_loaders()
        assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        assert not are_progress_bars_disabled()  # downloads keep their bars
    finally:
        hf_logging.set_verbosity(before)
        hf_logging.enable_progress_bar()
        enable_progress_bars()
