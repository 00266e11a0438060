"""Search profiles on both engines (issue 18, item 3): a profile's defaults reach the engine
unless the request gives its own, a profile naming other models than the index's is refused,
and the profile ``es-neural eval --recommend`` writes is one the library loads on that index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.errors import ModelMismatchError
from es_neural.eval.pipeline import EvalOptions, run_eval
from es_neural.neural_index import NeuralIndex
from es_neural.search.profile import (
    FusionDefaults,
    LegDefaults,
    Profile,
    ProfileIndex,
    ProfileModels,
    RerankDefaults,
    SearchDefaults,
)
from es_neural.settings import Settings
from tests.integration.test_eval_pipeline import _beir
from tests.support.fakes import HashingDense

pytestmark = [pytest.mark.engine]

DOCS = [
    {"id": "coffee", "title": "Coffee", "text": "Coffee is brewed from roasted coffee beans."},
    {"id": "tea", "title": "Tea", "text": "Green tea is made from unoxidised leaves."},
    {"id": "tiger", "title": "Tiger", "text": "The tiger is the largest living cat species."},
    {"id": "moon", "title": "Moon", "text": "The Moon is Earth's only natural satellite."},
]


def _profile(
    dense: ModelFingerprint, *, sparse: ModelFingerprint | None = None, index: str = "x"
) -> Profile:
    """BM25 alone, RRF (k 10), rerank off: what a user's validation might recommend (RRF, so
    that the profile's method differs from the built-in default, linear)."""
    return Profile(
        search=SearchDefaults(
            legs={
                "bm25": LegDefaults(enabled=True, weight=1.0),
                "dense": LegDefaults(enabled=False),
                "sparse": LegDefaults(enabled=False),
            },
            fusion=FusionDefaults(method="rrf", k=10.0),
            rerank=RerankDefaults(enabled=False, reason="rerank off: no gain on validation"),
        ),
        models=ProfileModels(
            dense=dense.to_meta(), sparse=sparse.to_meta() if sparse is not None else None
        ),
        index=ProfileIndex(name=index),
    )


@pytest.fixture
def hashed(hashed_index: Callable[..., NeuralIndex]) -> NeuralIndex:
    """A small index built with the hashing dense model and no SPLADE field."""
    return hashed_index(DOCS)


def _open(hashed: NeuralIndex, settings: Settings, **kwargs: object) -> NeuralIndex:
    return NeuralIndex(
        hashed.name,
        settings=settings,
        dialect=hashed.dialect,
        dense=HashingDense(),
        use_sparse=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_profile_gives_the_defaults_and_the_request_wins(
    hashed: NeuralIndex, engine_settings: Settings, tmp_path: Path
) -> None:
    path = _profile(HashingDense().fingerprint, index=hashed.name).write(tmp_path / "p.json")
    # The library argument and the setting (ES_NEURAL_PROFILE) alike.
    for idx in (
        _open(hashed, engine_settings, profile=path),
        _open(hashed, engine_settings.with_(profile=path)),
    ):
        response = idx.search("roasted coffee", size=2, explain=True)
        assert set(response.leg_totals) == {"bm25"}  # the profile's legs reached the engine
        assert response.hits[0].id == "coffee"
        assert response.rerank.applied is False
        assert response.rerank.reason == "disabled by the request"  # the profile's "off"
        # The request's own values win: the dense leg it asks for runs too.
        both = idx.search("roasted coffee", size=2, dense={"enabled": True}, explain=True)
        assert set(both.leg_totals) == {"bm25", "dense"}
        explain = both.hits[0].explain
        assert explain is not None and explain.fusion == "rrf"  # the profile's method
        linear = idx.search("roasted coffee", size=2, fusion={"method": "linear"}, explain=True)
        assert linear.hits[0].explain is not None and linear.hits[0].explain.fusion == "linear"
    # Without a profile: the built-in defaults (BM25 and dense on, linear fusion).
    plain = _open(hashed, engine_settings).search(
        "roasted coffee", size=2, explain=True, sparse={"enabled": False}
    )
    assert "dense" in plain.leg_totals
    assert plain.hits[0].explain is not None and plain.hits[0].explain.fusion == "linear"


def test_a_profile_naming_other_models_is_refused(
    hashed: NeuralIndex, engine_settings: Settings, tmp_path: Path
) -> None:
    # Another model: other weights (a revision of its own) under another name.
    other = replace(HashingDense("other-model").fingerprint, revision="2")
    path = _profile(other).write(tmp_path / "other.json")
    with pytest.raises(ModelMismatchError, match="another dense model") as caught:
        _open(hashed, engine_settings, profile=path).search("coffee")
    message = str(caught.value)
    assert "other-model" in message and "hashing-test" in message and str(path) in message
    # Through the setting too.
    with pytest.raises(ModelMismatchError, match="other-model"):
        _open(hashed, engine_settings.with_(profile=path)).search("coffee")
    # A profile measured with a SPLADE model, on an index built without one.
    splade = ModelFingerprint(kind="sparse", name="splade-tiny", revision="s1")
    with_sparse = _profile(HashingDense().fingerprint, sparse=splade)
    with pytest.raises(ModelMismatchError, match="has no sparse model"):
        _open(hashed, engine_settings, profile=with_sparse).search("coffee")
    # The same weights at another precision are the same model: accepted.
    int8 = _profile(replace(HashingDense().fingerprint, precision="int8"))
    assert _open(hashed, engine_settings, profile=int8).search("coffee").hits


@pytest.mark.models
@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")
def test_eval_writes_a_profile_the_library_loads_on_that_index(
    engine_settings: Settings,
    index_name: str,
    tmp_path: Path,
    embedded_dense: DenseEncoder,
    embedded_sparse: SparseEncoder,
) -> None:
    settings = engine_settings.with_(cache_dir=tmp_path / "cache")
    options = EvalOptions(
        data_dir=_beir(tmp_path / "beir"),
        index=index_name,
        val_fraction=0.34,
        progress=False,
        only=("BM25",),
        recommend=tmp_path / "recommended.json",
    )
    report = run_eval(options, settings)
    profile = Profile.load(tmp_path / "recommended.json")
    assert profile.models.dense == embedded_dense.fingerprint.to_meta()
    assert profile.models.sparse == embedded_sparse.fingerprint.to_meta()
    assert profile.models.rerank is not None and profile.models.rerank["kind"] == "rerank"
    assert profile.index is not None and profile.index.name == index_name
    assert profile.index.engine == settings.engine.value
    assert profile.evidence["validation"]["queries"] == 2
    assert len(profile.evidence["configurations"]) == 12  # every plain fusion, not just --only
    rerank = profile.evidence["rerank"]
    assert rerank["top_n"] == settings.rerank.top_n and rerank["latency_ms"]["p95_ms"] > 0
    assert profile.search.rerank.reason.startswith(
        "rerank on" if profile.search.rerank.enabled else "rerank off"
    )
    assert any(str(tmp_path / "recommended.json") in note for note in report.notes)
    # The library loads it on the index it was measured on, with the same models.
    idx = NeuralIndex(
        index_name,
        settings=settings,
        dense=embedded_dense,
        sparse=embedded_sparse,
        profile=tmp_path / "recommended.json",
    )
    try:
        response = idx.search("gene mutations in cancer cells", size=3)
        enabled = {leg for leg, spec in profile.search.legs.items() if spec.enabled}
        assert set(response.leg_totals) == enabled
        assert response.hits
    finally:
        idx.close()
