"""Search profiles (issue 18, item 3): what ``es-neural eval --recommend`` writes, read back,
applied to requests under the request's own values, and refused for other models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.errors import ConfigurationError, InvalidInputError, ModelMismatchError
from es_neural.eval.configs import DEFAULT_ROW, EvalConfig, default_configs
from es_neural.eval.pipeline import EvalOptions, _evidence, _ReadPath, _Tuning, run_eval
from es_neural.eval.recommend import Evidence, Provenance, RerankEvidence, decide, recommend
from es_neural.eval.report import EvalReport, ResultRow
from es_neural.indices import IndexInfo
from es_neural.search.models import search_request
from es_neural.search.profile import (
    PROFILE_VERSION,
    Profile,
    leave_unset,
    load_profile,
    reranker_fingerprint,
)
from es_neural.settings import EngineKind, RerankSettings, Settings

DENSE = ModelFingerprint(kind="dense", name="minilm", revision="r1", dims=384, normalize=True)
SPARSE = ModelFingerprint(kind="sparse", name="splade-tiny", revision="s1")
RERANKER = ModelFingerprint(kind="rerank", name="embedded", revision="x1")
FUSED = "BM25 + dense + SPLADE (linear)"
WEIGHTS = {
    ("bm25", "dense"): {"bm25": 0.4, "dense": 0.6},
    ("bm25", "sparse"): {"bm25": 0.5, "sparse": 0.5},
    ("dense", "sparse"): {"dense": 0.7, "sparse": 0.3},
    ("bm25", "dense", "sparse"): {"bm25": 0.2, "dense": 0.5, "sparse": 0.3},
}
NORMS = {legs: "zscore" for legs in WEIGHTS}


# ----- a synthetic eval: the validation figures a report holds -----


def _configs(scores: dict[str, float]) -> list[tuple[EvalConfig, float]]:
    """The standard configurations with tuned weights, each scored on validation (0.3 unless
    ``scores`` names it)."""
    configs = default_configs(linear_weights=WEIGHTS, normalization=NORMS)
    return [(c, scores.get(c.name, 0.3)) for c in configs]


def _evidence_of(
    *,
    fused: float,
    by_alpha: dict[str, float],
    alpha: float | None,
    p95_ms: float = 40.0,
    scores: dict[str, float] | None = None,
) -> Evidence:
    return Evidence(
        configs=_configs({FUSED: fused, **(scores or {})}),
        rerank=RerankEvidence(
            model="embedded",
            top_n=20,
            base=FUSED,
            fused=fused,
            by_interpolation=by_alpha,
            interpolation=alpha,
            latency_ms={"mean_ms": p95_ms / 2, "p50_ms": p95_ms / 2, "p95_ms": p95_ms},
        ),
        validation={"split": "train", "fraction": 0.2, "seed": 13, "queries": 160},
        dataset="synthetic",
    )


PROVENANCE = Provenance(
    dense=DENSE, sparse=SPARSE, reranker=RERANKER, index="docs", concrete="docs-v1", engine="es"
)


def test_rerank_off_when_validation_shows_no_gain() -> None:
    # The issue's off-domain case: interpolated 0.352 against fused 0.353, alone 0.169.
    evidence = _evidence_of(
        fused=0.353, by_alpha={"rerank": 0.169, "0.1": 0.350, "0.2": 0.352}, alpha=0.2
    )
    profile = recommend(evidence, PROVENANCE, margin=0.005, budget_ms=2000)
    rerank = profile.search.rerank
    assert rerank.enabled is False and rerank.top_n is None and rerank.interpolation is None
    assert "rerank off" in rerank.reason and "-0.0010" in rerank.reason
    assert "not above the margin 0.005" in rerank.reason
    # The fusion chosen on validation, with its tuned weights and normalisation.
    assert profile.evidence["chosen"] == FUSED
    assert profile.search.fusion.method == "linear"
    assert profile.search.fusion.normalization == "zscore"
    assert {leg: s.weight for leg, s in profile.search.legs.items()} == WEIGHTS[
        ("bm25", "dense", "sparse")
    ]
    assert profile.evidence["rerank"]["gain"] == pytest.approx(-0.001)
    assert profile.reasons[1] == rerank.reason


def test_rerank_off_when_the_gain_is_within_the_margin() -> None:
    evidence = _evidence_of(fused=0.50, by_alpha={"rerank": 0.3, "0.3": 0.503}, alpha=0.3)
    assert recommend(evidence, PROVENANCE, margin=0.005).search.rerank.enabled is False
    assert recommend(evidence, PROVENANCE, margin=0.001).search.rerank.enabled is True


def test_rerank_on_with_its_depth_and_tuned_interpolation() -> None:
    evidence = _evidence_of(fused=0.50, by_alpha={"rerank": 0.45, "0.3": 0.53}, alpha=0.3)
    profile = recommend(evidence, PROVENANCE)
    rerank = profile.search.rerank
    assert (rerank.enabled, rerank.top_n, rerank.interpolation) == (True, 20, 0.3)
    assert rerank.model == "embedded" and rerank.reason.startswith("rerank on")
    assert profile.models.rerank == RERANKER.to_meta()
    # The rerank score alone won: written as weight 1.0 (None would mean "the model's own").
    alone = _evidence_of(fused=0.50, by_alpha={"rerank": 0.6, "0.3": 0.53}, alpha=None)
    assert recommend(alone, PROVENANCE).search.rerank.interpolation == 1.0


def test_rerank_off_over_the_latency_budget_or_below_a_plain_fusion() -> None:
    slow = _evidence_of(fused=0.5, by_alpha={"0.3": 0.6}, alpha=0.3, p95_ms=450.0)
    profile = recommend(slow, PROVENANCE, budget_ms=150.0)
    assert profile.search.rerank.enabled is False
    assert "450 ms per query at p95" in profile.search.rerank.reason
    # A fusion without rerank scores above the reranked one: it is chosen, rerank off.
    beaten = _evidence_of(
        fused=0.5, by_alpha={"0.3": 0.52}, alpha=0.3, scores={"BM25 + dense (RRF)": 0.55}
    )
    profile = recommend(beaten, PROVENANCE)
    assert profile.search.rerank.enabled is False
    assert profile.evidence["chosen"] == "BM25 + dense (RRF)"
    assert profile.search.fusion.method == "rrf"
    assert {leg for leg, s in profile.search.legs.items() if s.enabled} == {"bm25", "dense"}
    assert all(s.weight == 1.0 for s in profile.search.legs.values())


def test_no_reranker_measured_and_a_single_leg_chosen() -> None:
    evidence = Evidence(configs=_configs({"dense": 0.9}), rerank=None)
    profile = recommend(evidence, PROVENANCE)
    assert profile.search.rerank.enabled is False
    assert "no reranker was measured" in profile.search.rerank.reason
    assert {leg for leg, s in profile.search.legs.items() if s.enabled} == {"dense"}
    with pytest.raises(InvalidInputError):
        recommend(Evidence(configs=[], rerank=None), PROVENANCE)


def _scifact() -> Evidence:
    """SciFact's figures: tuned linear 0.7580 on validation (0.7161 on test), the untuned
    default 0.7531 (0.7324 on test); rerank +0.0023 over the tuned fusion."""
    return _evidence_of(
        fused=0.7580,
        by_alpha={"rerank": 0.6149, "0.1": 0.7603},
        alpha=0.1,
        scores={DEFAULT_ROW: 0.7531},
    )


def test_the_untuned_default_stays_unless_beaten_by_more_than_the_margin() -> None:
    scifact = _scifact()
    profile = recommend(scifact, PROVENANCE, margin=0.005)
    assert profile.evidence["chosen"] == DEFAULT_ROW
    assert profile.search.fusion.method == "linear"
    assert profile.search.fusion.normalization == "minmax"
    assert all(s.enabled and s.weight == 1.0 for s in profile.search.legs.values())
    assert "untuned default" in profile.reasons[0] and "+0.0049" in profile.reasons[0]
    assert profile.search.rerank.enabled is False
    # A lead above the margin: the tuned fusion, and the reason says by how much.
    plain = Evidence(configs=_configs({FUSED: 0.7580, DEFAULT_ROW: 0.7531}), rerank=None)
    tuned = recommend(plain, PROVENANCE, margin=0.001)
    assert tuned.evidence["chosen"] == FUSED
    assert tuned.search.fusion.normalization == "zscore"
    assert "+0.0049 over the untuned default" in tuned.reasons[0]
    assert recommend(plain, PROVENANCE, margin=0.005).evidence["chosen"] == DEFAULT_ROW


def test_rerank_must_also_beat_the_untuned_default_by_the_margin() -> None:
    # +0.02 over the tuned fusion it reorders, but only +0.003 over the untuned default.
    evidence = _evidence_of(
        fused=0.50, by_alpha={"rerank": 0.4, "0.2": 0.52}, alpha=0.2, scores={DEFAULT_ROW: 0.517}
    )
    profile = recommend(evidence, PROVENANCE, margin=0.005)
    assert profile.search.rerank.enabled is False
    assert "over the untuned default" in profile.search.rerank.reason
    assert profile.evidence["chosen"] == DEFAULT_ROW
    clear = _evidence_of(
        fused=0.50, by_alpha={"rerank": 0.4, "0.2": 0.53}, alpha=0.2, scores={DEFAULT_ROW: 0.517}
    )
    assert recommend(clear, PROVENANCE, margin=0.005).search.rerank.enabled is True


def test_the_decision_names_the_row_the_report_marks() -> None:
    # SciFact's figures: the default row, not the tuned fusion that led it by 0.0049.
    scifact = _scifact()
    assert decide(scifact).row == DEFAULT_ROW
    on = _evidence_of(fused=0.50, by_alpha={"rerank": 0.45, "0.3": 0.53}, alpha=0.3)
    assert decide(on).row == f"{FUSED} + rerank (interpolated 0.3)"
    assert decide(on).config.name == FUSED and decide(on).rerank_on
    alone = _evidence_of(fused=0.50, by_alpha={"rerank": 0.6, "0.3": 0.53}, alpha=None)
    assert decide(alone).row == f"{FUSED} + rerank alone"
    # The report bolds the decided row, not the best on validation, and says why.
    report = EvalReport(dataset="x", split="test", engine="elasticsearch", index="x", queries=3)
    for name, ndcg in ((FUSED, 0.72), (DEFAULT_ROW, 0.73)):
        report.rows.append(
            ResultRow(
                name=name,
                config={},
                metrics={"ndcg@10": ndcg, "recall@100": 0.9, "mrr@10": 0.5},
                latency={"mean_ms": 1.0, "p50_ms": 1.0, "p95_ms": 1.0},
                queries=3,
            )
        )
    report.validation = {FUSED: 0.7580, DEFAULT_ROW: 0.7531}
    decision = decide(scifact)
    assert report.choose(decision.row, (decision.fusion_reason,)) == DEFAULT_ROW
    text = report.markdown()
    assert f"| **{DEFAULT_ROW}** |" in text and f"**{FUSED}**" not in text
    assert "rules of `--recommend`" in text and "leads it by only +0.0049" in text
    assert report.to_dict()["chosen_on_validation"] == DEFAULT_ROW
    # Decided but not run here (--only): no row is bold, and the line names it.
    report.rows.pop()
    assert report.choose(decision.row) is None
    assert "**" not in report.markdown().split("No row is bold")[0]
    assert f"validation chose {DEFAULT_ROW}, which was not run here" in report.markdown()
    assert report.to_dict()["chosen_on_validation"] == DEFAULT_ROW


def test_the_pipeline_gathers_evidence_from_tuning_on_validation_only() -> None:
    """``_evidence`` on a synthetic tuning: every plain configuration scored on the validation
    qrels, the rerank figures as tuning measured them; the writer then turns rerank off."""
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    legs = {
        "bm25": {"q1": [("d1", 3.0), ("d2", 1.0)], "q2": [("d1", 2.0), ("d2", 1.0)]},
        "dense": {"q1": [("d1", 0.9)], "q2": [("d2", 0.8)]},
        "sparse": {"q1": [("d3", 2.0)], "q2": [("d3", 1.0)]},
    }
    tuning = _Tuning(qrels=qrels, legs=legs, weights=dict(WEIGHTS), norms=dict(NORMS))
    tuning.interpolation = 0.2
    tuning.info = {
        "validation": {"split": "train", "fraction": 0.2, "seed": 13, "queries": 2},
        "rerank": {
            "top_n": 20,
            "val_ndcg@10_fused": 1.0,
            "val_ndcg@10_by_interpolation": {"rerank": 0.5, "0.2": 1.0},
            "latency_ms": {"mean_ms": 5.0, "p50_ms": 5.0, "p95_ms": 6.0},
        },
    }
    none: Any = None
    path = _ReadPath("x", EngineKind.ELASTICSEARCH, none, none, none, none, object(), none, none)
    options = EvalOptions(data_dir=Path("scifact"), only=("BM25",))
    evidence = _evidence(options, tuning, path, 20)
    scores = dict((c.name, s) for c, s in evidence.configs)
    assert len(scores) == 12  # every plain configuration, whatever --only ran
    assert scores["dense"] == 1.0 and scores["SPLADE"] == 0.0
    assert evidence.rerank is not None and evidence.rerank.base == FUSED
    assert evidence.rerank.score == 1.0
    profile = recommend(evidence, PROVENANCE)
    assert profile.search.rerank.enabled is False  # no gain over the fused 1.0
    assert profile.evidence["chosen"] == "dense"  # first of the best on validation


def test_recommend_needs_a_tuning_split() -> None:
    options = EvalOptions(data_dir=Path("x"), tune_split=None, recommend=Path("r.json"))
    with pytest.raises(InvalidInputError, match="tuning split"):
        run_eval(options, Settings())


# ----- the file -----


def _profile(**rerank: Any) -> Profile:
    evidence = _evidence_of(fused=0.50, by_alpha={"rerank": 0.45, "0.3": 0.53}, alpha=0.3)
    profile = recommend(evidence, PROVENANCE)
    if rerank:
        search = profile.search.model_copy(
            update={"rerank": profile.search.rerank.model_copy(update=rerank)}
        )
        profile = profile.model_copy(update={"search": search})
    return profile


def test_the_file_round_trips(tmp_path: Path) -> None:
    profile = _profile()
    path = profile.write(tmp_path / "sub" / "recommended.json")
    data = json.loads(path.read_text())
    assert data["format"] == "es-neural/profile" and data["version"] == PROFILE_VERSION
    assert data["models"]["dense"]["digest"] == DENSE.digest
    assert data["index"] == {"name": "docs", "concrete": "docs-v1", "engine": "es"}
    loaded = Profile.load(path)
    assert loaded == profile
    assert loaded.to_dict() == profile.to_dict()
    assert ModelFingerprint.from_meta(loaded.models.sparse or {}) == SPARSE
    assert loaded.evidence["rerank"]["latency_ms"]["p95_ms"] == 40.0
    # Through the setting (ES_NEURAL_PROFILE) and the library argument alike.
    assert load_profile(None, Settings(profile=path)) == profile
    assert load_profile(str(path)) == profile
    assert load_profile(None, Settings()) is None


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ES_NEURAL_PROFILE", str(tmp_path / "p.json"))
    assert Settings().profile == tmp_path / "p.json"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"version": 1}', "not an es-neural profile"),
        ('{"format": "es-neural/profile", "version": 99}', "newer es-neural"),
        ('{"format": "es-neural/profile", "version": 1}', "invalid (search: Field required"),
    ],
)
def test_bad_files_are_configuration_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        Profile.load(path)


def test_an_invalid_value_or_a_missing_file_is_said(tmp_path: Path) -> None:
    data = _profile().to_dict()
    data["search"]["rerank"]["interpolation"] = 1.5
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match=r"search\.rerank\.interpolation"):
        Profile.load(path)
    data = _profile().to_dict()
    data["models"]["dense"] = {"kind": "dense"}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match=r"models\.dense"):
        Profile.load(path)
    with pytest.raises(ConfigurationError, match="cannot read it"):
        Profile.load(tmp_path / "missing.json")


# ----- requests: the request's own values win -----


def test_unset_values_come_from_the_profile() -> None:
    request = _profile().apply(search_request("q"))
    assert request.fusion.method == "linear" and request.fusion.normalization == "zscore"
    assert (request.bm25.weight, request.dense.weight, request.sparse.weight) == (0.2, 0.5, 0.3)
    assert (request.rerank.enabled, request.rerank.top_n, request.rerank.interpolation) == (
        True,
        20,
        0.3,
    )
    assert request.rerank.budget_ms is None  # left to the settings
    assert _profile().apply(request) == request  # idempotent


def test_explicit_request_values_beat_the_profile() -> None:
    profile = _profile()
    request = profile.apply(
        search_request(
            "q",
            dense={"weight": 2.0},
            fusion={"normalization": "minmax"},
            rerank={"enabled": False},
        )
    )
    assert request.dense.weight == 2.0 and request.bm25.weight == 0.2
    assert request.fusion.normalization == "minmax" and request.fusion.method == "linear"
    assert request.rerank.enabled is False
    top_n = profile.apply(search_request("q", rerank={"top_n": 5, "interpolation": 0.0}))
    assert (top_n.rerank.enabled, top_n.rerank.top_n, top_n.rerank.interpolation) == (True, 5, 0.0)
    # Unset (None) rerank values are "the default": the profile's.
    unset = profile.apply(search_request("q", rerank={"enabled": None, "top_n": None}))
    assert (unset.rerank.enabled, unset.rerank.top_n) == (True, 20)


def test_tuned_fusion_values_apply_only_to_the_profiles_legs_and_method() -> None:
    profile = _profile()
    other_method = profile.apply(search_request("q", fusion={"method": "rrf"}))
    assert other_method.fusion.method == "rrf" and other_method.fusion.k == 60.0
    assert other_method.bm25.weight == 1.0 and other_method.dense.weight == 1.0
    other_legs = profile.apply(search_request("q", sparse={"enabled": False}))
    assert other_legs.fusion.method == "linear" and other_legs.fusion.normalization == "minmax"
    assert other_legs.bm25.weight == 1.0 and not other_legs.sparse.enabled


def test_a_profile_with_rerank_off_turns_unset_rerank_off() -> None:
    off = _profile(enabled=False, top_n=None, interpolation=None, reason="rerank off: no gain")
    assert off.apply(search_request("q")).rerank.enabled is False
    on = off.apply(search_request("q", rerank={"enabled": True}))
    assert on.rerank.enabled is True and on.rerank.top_n is None  # the settings' top-N


def test_leave_unset_lets_the_profile_fill_front_end_defaults() -> None:
    request = search_request("q", size=3, fusion={"method": "rrf"}, bm25={"enabled": True, "k": 7})
    bare = leave_unset(request, ["fusion.method", "bm25.enabled", "dense.enabled"])
    assert bare.size == 3 and bare.bm25.k == 7
    assert "method" not in bare.fusion.model_fields_set
    assert "enabled" not in bare.bm25.model_fields_set
    assert _profile().apply(bare).fusion.method == "linear"
    assert _profile().apply(request).fusion.method == "rrf"


def test_a_profile_leaves_the_diversification_as_the_request_says() -> None:
    # a profile tunes legs, fusion and rerank: MMR stays what the request (or the CLI) asked
    asked = search_request("q", diversify={"enabled": True, "lambda": 0.4, "window": 20})
    applied = _profile().apply(leave_unset(asked, ["fusion.method", "bm25.enabled"]))
    assert applied.diversify == asked.diversify
    assert applied.fusion.method == "linear"
    assert not _profile().apply(search_request("q")).diversify.enabled


def test_the_profiles_reranker_when_the_settings_name_none() -> None:
    profile = _profile()
    assert profile.reranker_settings(RerankSettings()).model == "embedded"
    mine = RerankSettings(model="/my/reranker")
    assert profile.reranker_settings(mine) is mine
    off = _profile(enabled=False, top_n=None, interpolation=None)
    assert off.reranker_settings(RerankSettings()).model == "off"


# ----- refusal: other models -----


def _info(dense: ModelFingerprint, sparse: ModelFingerprint | None) -> IndexInfo:
    meta = {
        "created_by": "es-neural",
        "dense": dense.to_meta(),
        "sparse": sparse.to_meta() if sparse is not None else None,
    }
    return IndexInfo(name="docs", concrete="docs-v2", meta=meta, properties={})


def test_verify_refuses_other_models_and_names_them() -> None:
    profile = _profile()
    profile.verify(_info(DENSE, SPARSE))  # the models it was measured with
    # The same weights at another precision are the same space (as for encoders).
    from dataclasses import replace

    profile.verify(_info(replace(DENSE, precision="int8"), SPARSE))
    other = ModelFingerprint(kind="dense", name="e5-small", revision="r9", dims=384)
    with pytest.raises(ModelMismatchError, match="another dense model") as caught:
        profile.verify(_info(other, SPARSE))
    assert "minilm" in str(caught.value) and "e5-small" in str(caught.value)
    other_sparse = ModelFingerprint(kind="sparse", name="splade-v3", revision="s9")
    with pytest.raises(ModelMismatchError, match=r"another sparse model.*splade-v3"):
        profile.verify(_info(DENSE, other_sparse))
    with pytest.raises(ModelMismatchError, match="has no sparse model"):
        profile.verify(_info(DENSE, None))


class _Reranker:
    def __init__(self, folder: Path) -> None:
        self.model_name_or_path = str(folder)
        self.name = "my reranker"


def test_verify_refuses_another_reranker_when_rerank_is_on(tmp_path: Path) -> None:
    folder = tmp_path / "reranker"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    fingerprint = reranker_fingerprint(_Reranker(folder))
    assert fingerprint is not None and fingerprint.kind == "rerank"
    assert reranker_fingerprint(object()) is None
    profile = _profile()
    models = profile.models.model_copy(update={"rerank": fingerprint.to_meta()})
    profile = profile.model_copy(update={"models": models})
    profile.verify(_info(DENSE, SPARSE), reranker=_Reranker(folder))
    (folder / "model.safetensors").write_bytes(b"other weights")
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(ModelMismatchError, match="another rerank model"):
        profile.verify(_info(DENSE, SPARSE), reranker=_Reranker(other))
    # With rerank off the reranker does not matter.
    off = profile.model_copy(
        update={
            "search": profile.search.model_copy(
                update={"rerank": _profile(enabled=False).search.rerank}
            )
        }
    )
    off.verify(_info(DENSE, SPARSE), reranker=_Reranker(other))


# ----- the command line -----


def test_search_command_profile_errors_are_said_not_raised(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from es_neural.cli import app

    runner = CliRunner()
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "es-neural/profile", "version": 7}')
    result = runner.invoke(app, ["search", "q", "-i", "docs", "--profile", str(bad)])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "newer es-neural" in result.output
    good = _profile().write(tmp_path / "good.json")
    result = runner.invoke(
        app, ["search", "q", "-i", "docs", "--api", "http://127.0.0.1:9", "--profile", str(good)]
    )
    assert result.exit_code != 0
    assert "--profile applies to a search run here" in result.output
