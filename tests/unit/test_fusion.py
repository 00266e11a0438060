"""Rank fusion: hand-computed examples, invariants, validation, and ranx 0.3.21 as an oracle.

ranx is imported lazily by a module fixture (it is slow to import and JIT-compiles with numba the
first time), and only the oracle tests call it. Doc ids given to ranx all have 3 characters:
numba specialises ranx's Run constructor on the string length, and each new length compiles anew.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any

import pytest

from es_neural.errors import InvalidInputError
from es_neural.search import fusion
from es_neural.search.fusion import (
    DEFAULT_K,
    FusedList,
    FusionMethod,
    LegHit,
    Normalization,
    RankedList,
    fuse,
    linear,
    normalize,
    rrf,
)

# numba warns about an unsafe uint64 cast while compiling ranx's rrf on a cold cache.
pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaWarning")


def ranked(leg: str, scores: Mapping[str, float]) -> RankedList:
    return RankedList.from_scores(leg, scores)


def scores_of(fused: FusedList) -> dict[str, float]:
    return {hit.doc_id: hit.score for hit in fused}


# Random cases shared by the invariant and oracle tests ===========================================


@dataclass(frozen=True)
class Case:
    name: str
    lists: tuple[RankedList, ...]
    weights: Mapping[str, float]


def random_case(seed: int) -> Case:
    """2-3 legs of 1-15 docs from a pool of 30, scores on a 0.5 grid in [-2, 10] (ties likely)."""
    rng = random.Random(seed)
    pool = [f"d{i:02d}" for i in range(30)]
    legs = []
    for leg in ("bm25", "dense", "splade")[: rng.randint(2, 3)]:
        docs = rng.sample(pool, rng.randint(1, 15))
        legs.append(ranked(leg, {d: round(rng.uniform(-2, 10) * 2) / 2 for d in docs}))
    weights = {r.leg: round(rng.uniform(0, 2), 3) for r in legs}
    return Case(f"seed{seed}", tuple(legs), weights)


FIXED_CASES = [
    Case(
        "disjoint",
        (
            ranked("bm25", {"d01": 3.0, "d02": 1.5, "d03": 0.2}),
            ranked("dense", {"d41": 0.9, "d42": 0.8, "d43": -0.1, "d44": -0.4}),
        ),
        {"bm25": 0.4, "dense": 1.6},
    ),
    Case(
        "lengths-1-and-20",
        (
            ranked("bm25", {"d07": 12.5}),
            ranked("dense", {f"d{i:02d}": 1.0 - i / 40 for i in range(20)}),
        ),
        {"bm25": 1.0, "dense": 0.0},
    ),
    Case(
        "ties-and-constant-leg",
        (
            ranked("bm25", {"d01": 2.0, "d02": 2.0, "d03": 2.0, "d04": 1.0}),
            ranked("dense", {"d02": 0.5, "d03": 0.5, "d05": 0.5}),
            ranked("splade", {"d05": 7.0, "d01": 3.0, "d03": 3.0}),
        ),
        {"bm25": 1.0, "dense": 2.0, "splade": 0.5},
    ),
]
CASES = [random_case(seed) for seed in range(6)] + FIXED_CASES
CASE_IDS = [case.name for case in CASES]


# ranx oracle ======================================================================================


@pytest.fixture(scope="module")
def ranx() -> ModuleType:
    import ranx

    return ranx


def has_ties(leg: RankedList) -> bool:
    return len({hit.score for hit in leg.hits}) < len(leg.hits)


def ranx_run(ranx: ModuleType, leg: RankedList, *, order_only: bool = False) -> Any:
    """A one-query ranx Run of a leg.

    With ``order_only`` and ties in the leg, ranx gets ``n + 1 - rank`` as scores: ranx orders
    ties with an unstable argsort, so its RRF ranks among equal scores are unspecified, while ours
    break ties by doc_id. Without ties ranx sorts the raw scores itself.
    """
    if order_only and has_ties(leg):
        scores = {hit.doc_id: float(len(leg.hits) + 1 - hit.rank) for hit in leg.hits}
    else:
        scores = {hit.doc_id: hit.score for hit in leg.hits}
    return ranx.Run({"q": scores}, name=leg.leg)


def assert_matches_ranx(ours: FusedList, run: Any) -> None:
    """Same documents, same scores (to float noise), and our order agrees with ranx's scores."""
    theirs: dict[str, float] = run.to_dict()["q"]
    assert set(theirs) == set(ours.doc_ids)
    for hit in ours:
        assert hit.score == pytest.approx(theirs[hit.doc_id], rel=1e-9, abs=1e-12), hit.doc_id
    for better, worse in zip(ours.hits, ours.hits[1:], strict=False):
        assert theirs[better.doc_id] >= theirs[worse.doc_id] - 1e-12


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_rrf_matches_ranx(ranx: ModuleType, case: Case) -> None:
    runs = [ranx_run(ranx, leg, order_only=True) for leg in case.lists]
    expected = ranx.fuse(runs, norm=None, method="rrf", params={"k": 60})
    assert_matches_ranx(rrf(case.lists), expected)


@pytest.mark.parametrize("case", [*CASES[:3], FIXED_CASES[-1]], ids=[*CASE_IDS[:3], "ties"])
def test_weighted_rrf_matches_ranx_rrf_per_leg_then_wsum(ranx: ModuleType, case: Case) -> None:
    from ranx.fusion import rrf as ranx_rrf
    from ranx.fusion import wsum as ranx_wsum

    per_leg = [ranx_rrf([ranx_run(ranx, leg, order_only=True)], k=10) for leg in case.lists]
    weights = [float(case.weights[leg.leg]) for leg in case.lists]
    expected = ranx_wsum(per_leg, weights)
    assert_matches_ranx(rrf(case.lists, k=10, weights=case.weights), expected)


@pytest.mark.parametrize(
    ("normalization", "ranx_norm"),
    [(Normalization.MINMAX, "min-max"), (Normalization.ZSCORE, "zmuv")],
)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_linear_matches_ranx_wsum(
    ranx: ModuleType, case: Case, normalization: Normalization, ranx_norm: str
) -> None:
    runs = [ranx_run(ranx, leg) for leg in case.lists]
    weights = [float(case.weights[leg.leg]) for leg in case.lists]
    expected = ranx.fuse(runs, norm=ranx_norm, method="wsum", params={"weights": weights})
    expected = constant_legs_as_one(ranx, expected, case)
    ours = linear(case.lists, weights=case.weights, normalization=normalization)
    assert_matches_ranx(ours, expected)


def constant_legs_as_one(ranx: ModuleType, run: Any, case: Case) -> Any:
    """ranx's min-max and zmuv give 0.0 to a leg whose scores are all equal; we give 1.0
    (documented)."""
    scores = dict(run.to_dict()["q"])
    for leg in case.lists:
        if leg.hits and len({hit.score for hit in leg.hits}) == 1:
            for hit in leg.hits:
                scores[hit.doc_id] += float(case.weights[leg.leg])
    return ranx.Run({"q": scores})


def test_single_leg_matches_ranx(ranx: ModuleType) -> None:
    from ranx.fusion import rrf as ranx_rrf
    from ranx.normalization import min_max_norm, zmuv_norm

    leg = ranked("dense", {"d01": 0.9, "d02": 0.4, "d03": 0.4, "d04": -0.3, "d05": 0.1})
    assert_matches_ranx(rrf([leg]), ranx_rrf([ranx_run(ranx, leg, order_only=True)]))
    assert_matches_ranx(linear([leg]), min_max_norm(ranx_run(ranx, leg)))
    assert_matches_ranx(
        linear([leg], normalization=Normalization.ZSCORE), zmuv_norm(ranx_run(ranx, leg))
    )


def test_a_one_hit_leg_counts_fully_under_min_max_unlike_ranx(ranx: ModuleType) -> None:
    one = ranked("bm25", {"d01": 4.2})
    other = ranked("dense", {"d02": 0.9, "d03": 0.1})
    expected = ranx.fuse(
        [ranx_run(ranx, one), ranx_run(ranx, other)],
        norm="min-max",
        method="wsum",
        params={"weights": [1.0, 1.0]},
    )
    assert expected.to_dict()["q"]["d01"] == 0.0
    ours = linear([one, other])
    assert scores_of(ours) == {"d01": 1.0, "d02": 1.0, "d03": 0.0}
    assert ours.doc_ids == ("d01", "d02", "d03")


def test_a_one_hit_leg_counts_under_z_score_unlike_ranx(ranx: ModuleType) -> None:
    one = ranked("bm25", {"d01": 4.2})
    other = ranked("dense", {"d02": 0.9, "d03": 0.1, "d04": 0.5})
    expected = ranx.fuse(
        [ranx_run(ranx, one), ranx_run(ranx, other)],
        norm="zmuv",
        method="wsum",
        params={"weights": [1.0, 1.0]},
    )
    assert expected.to_dict()["q"]["d01"] == 0.0  # ranx: as if BM25 had not found it
    ours = linear([one, other], normalization=Normalization.ZSCORE)
    # BM25's only hit ranks with the dense leg's best (+1.2247 std), above its mean (d04: 0.0)
    assert scores_of(ours)["d01"] == 1.0
    assert ours.doc_ids == ("d02", "d01", "d04", "d03")


# Hand-computed examples ===========================================================================


def test_rrf_by_hand() -> None:
    a = ranked("bm25", {"x": 3.0, "y": 2.0, "z": 1.0})
    b = ranked("dense", {"y": 5.0, "w": 1.0})
    fused = rrf([a, b])
    assert fused.doc_ids == ("y", "x", "w", "z")
    assert scores_of(fused) == {
        "y": math.fsum([1 / 62, 1 / 61]),
        "x": 1 / 61,
        "w": 1 / 62,
        "z": 1 / 63,
    }
    assert [hit.rank for hit in fused] == [1, 2, 3, 4]
    y = fused[0].legs
    assert list(y) == ["bm25", "dense"]
    assert (y["bm25"].raw_score, y["bm25"].rank, y["bm25"].normalized_score) == (2.0, 2, 1 / 62)
    assert (y["dense"].raw_score, y["dense"].rank, y["dense"].contribution) == (5.0, 1, 1 / 61)
    assert fused.k == 60.0 and fused.normalization is None
    assert dict(fused.weights) == {"bm25": 1.0, "dense": 1.0}


def test_weighted_rrf_by_hand() -> None:
    a = ranked("bm25", {"x": 3.0, "y": 2.0})
    b = ranked("dense", {"y": 5.0})
    fused = rrf([a, b], k=1, weights={"bm25": 2.0, "dense": 0.5})
    assert scores_of(fused) == {"x": 2 / 2, "y": math.fsum([2 / 3, 0.5 / 2])}
    assert fused.doc_ids == ("x", "y")
    assert fused[1].legs["dense"].normalized_score == 1 / 2
    assert fused[1].legs["dense"].contribution == 0.5 / 2


def test_rrf_ranks_leg_ties_by_doc_id() -> None:
    leg = ranked("bm25", {"b": 1.0, "a": 1.0, "c": 2.0})
    assert [(h.doc_id, h.rank) for h in leg.hits] == [("c", 1), ("a", 2), ("b", 3)]
    assert rrf([leg]).doc_ids == ("c", "a", "b")


def test_fused_ties_broken_by_doc_id_whatever_the_leg_order() -> None:
    a = ranked("bm25", {"q": 1.0})
    b = ranked("dense", {"p": 1.0})
    assert rrf([a, b]).doc_ids == ("p", "q")
    assert rrf([b, a]).doc_ids == ("p", "q")
    assert linear([a, b], normalization="none").doc_ids == ("p", "q")


def test_linear_min_max_by_hand() -> None:
    a = ranked("bm25", {"x": 10.0, "y": 5.0, "z": 0.0})
    b = ranked("dense", {"y": 4.0, "w": 2.0})
    fused = linear([a, b], weights={"bm25": 0.3, "dense": 0.7})
    assert fused.doc_ids == ("y", "x", "w", "z")
    assert scores_of(fused) == pytest.approx({"y": 0.85, "x": 0.3, "w": 0.0, "z": 0.0})
    assert fused[0].legs["bm25"] == fused[0].legs["bm25"]._replace(
        raw_score=5.0, rank=2, normalized_score=0.5
    )
    assert fused[0].legs["bm25"].contribution == pytest.approx(0.15)
    assert fused.normalization is Normalization.MINMAX and fused.k is None


def test_linear_l2_by_hand() -> None:
    a = ranked("bm25", {"x": 3.0, "y": 4.0})
    b = ranked("dense", {"x": -1.0})
    fused = linear([a, b], normalization=Normalization.L2, weights={"dense": 2.0})
    assert scores_of(fused) == pytest.approx({"y": 0.8, "x": 0.6 - 2.0})
    assert fused.doc_ids == ("y", "x")


def test_linear_without_normalisation_is_a_weighted_sum_of_raw_scores() -> None:
    a = ranked("bm25", {"x": 3.0, "y": 4.0})
    b = ranked("dense", {"x": 0.5})
    fused = linear([a, b], normalization="none", weights={"bm25": 0.5})
    assert scores_of(fused) == {"x": 2.0, "y": 2.0}
    assert fused.doc_ids == ("x", "y")


@pytest.mark.parametrize(
    ("method", "scores", "expected"),
    [
        (Normalization.MINMAX, [1.0, 3.0, 5.0], (0.0, 0.5, 1.0)),
        (Normalization.MINMAX, [5.0, -5.0], (1.0, 0.0)),
        (Normalization.MINMAX, [2.0, 2.0, 2.0], (1.0, 1.0, 1.0)),
        (Normalization.MINMAX, [7.0], (1.0,)),
        (Normalization.ZSCORE, [1.0, 2.0, 3.0], (-math.sqrt(1.5), 0.0, math.sqrt(1.5))),
        (Normalization.ZSCORE, [0.1, 0.1, 0.1], (1.0, 1.0, 1.0)),
        (Normalization.ZSCORE, [4.0], (1.0,)),
        (Normalization.L2, [3.0, 4.0], (0.6, 0.8)),
        (Normalization.L2, [-3.0, 4.0], (-0.6, 0.8)),
        (Normalization.L2, [0.0, 0.0], (0.0, 0.0)),
        (Normalization.L2, [1e200, 1e200], (math.sqrt(0.5), math.sqrt(0.5))),
        (Normalization.NONE, [3.0, -1.0], (3.0, -1.0)),
        (Normalization.MINMAX, [], ()),
        (Normalization.ZSCORE, [], ()),
        (Normalization.L2, [], ()),
    ],
)
def test_normalize_by_hand(
    method: Normalization, scores: list[float], expected: tuple[float, ...]
) -> None:
    before = list(scores)
    result = normalize(scores, method)
    assert isinstance(result, tuple)
    assert result == pytest.approx(expected)
    assert scores == before


def test_normalize_accepts_spellings() -> None:
    assert normalize([1.0, 2.0], "min_max") == (0.0, 1.0)
    assert normalize(iter([3.0, 4.0]), "L2") == pytest.approx((0.6, 0.8))


# Invariants over the shared cases =================================================================

FUSERS: dict[str, Callable[[Case], FusedList]] = {
    "rrf": lambda c: rrf(c.lists),
    "weighted-rrf": lambda c: rrf(c.lists, k=5, weights=c.weights),
    "min-max": lambda c: linear(c.lists, weights=c.weights),
    "z-score": lambda c: linear(c.lists, weights=c.weights, normalization="z-score"),
    "l2": lambda c: linear(c.lists, weights=c.weights, normalization="l2"),
    "none": lambda c: linear(c.lists, weights=c.weights, normalization="none"),
}


@pytest.mark.parametrize("fuser", FUSERS.values(), ids=list(FUSERS))
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_hit_explains_its_score(case: Case, fuser: Callable[[Case], FusedList]) -> None:
    fused = fuser(case)
    by_leg = {leg.leg: {hit.doc_id: hit for hit in leg.hits} for leg in case.lists}
    returned = {hit.doc_id for leg in case.lists for hit in leg.hits}
    assert set(fused.doc_ids) == returned
    assert [hit.rank for hit in fused] == list(range(1, len(fused) + 1))
    assert [(-h.score, h.doc_id) for h in fused] == sorted((-h.score, h.doc_id) for h in fused)
    for hit in fused:
        assert set(hit.legs) == {leg for leg, hits in by_leg.items() if hit.doc_id in hits}
        assert math.fsum(c.contribution for c in hit.legs.values()) == hit.score
        assert sum(c.contribution for c in hit.legs.values()) == pytest.approx(hit.score)
        for leg, contribution in hit.legs.items():
            source = by_leg[leg][hit.doc_id]
            assert (contribution.raw_score, contribution.rank) == (source.score, source.rank)
            weight = fused.weights[leg]
            assert contribution.contribution == weight * contribution.normalized_score


@pytest.mark.parametrize("fuser", FUSERS.values(), ids=list(FUSERS))
@pytest.mark.parametrize("case", CASES[:4], ids=CASE_IDS[:4])
def test_leg_order_does_not_change_the_result(
    case: Case, fuser: Callable[[Case], FusedList]
) -> None:
    forward = fuser(case)
    backward = fuser(dataclasses.replace(case, lists=case.lists[::-1]))
    assert forward.doc_ids == backward.doc_ids
    assert scores_of(forward) == scores_of(backward)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_inputs_are_not_mutated(case: Case) -> None:
    lists = list(case.lists)
    weights = dict(case.weights)
    snapshot = (copy.deepcopy(lists), copy.deepcopy(weights))
    for method in FusionMethod:
        fuse(lists, method=method, weights=weights)
    assert (lists, weights) == snapshot


def test_from_scores_does_not_mutate_and_keeps_the_best_duplicate() -> None:
    pairs = [("b", 1.0), ("a", 3.0), ("b", 4.0), ("c", 1.0), ("a", 2.0)]
    before = list(pairs)
    leg = RankedList.from_scores("bm25", pairs)
    assert pairs == before
    assert leg.hits == (LegHit("b", 4.0, 1), LegHit("a", 3.0, 2), LegHit("c", 1.0, 3))
    mapping = {"x": 1, "y": 2}
    assert RankedList.from_scores("dense", mapping).hits[0] == LegHit("y", 2.0, 1)
    assert mapping == {"x": 1, "y": 2}
    assert RankedList.from_scores("dense", (p for p in pairs)) == leg.__class__("dense", leg.hits)


def test_values_are_immutable() -> None:
    fused = rrf([ranked("bm25", {"a": 1.0})], weights={"bm25": 1.0})
    with pytest.raises(AttributeError):
        fused.hits[0].score = 2.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        fused.hits[0].legs["bm25"].contribution = 2.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ranked("bm25", {"a": 1.0}).hits[0].rank = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        fused.hits[0].legs["dense"] = fused.hits[0].legs["bm25"]  # type: ignore[index]
    with pytest.raises(TypeError):
        fused.weights["bm25"] = 3.0  # type: ignore[index]
    assert isinstance(fused.hits[0].legs, MappingProxyType)
    leg = RankedList("bm25", [LegHit("a", 1.0, 1)])  # type: ignore[arg-type]
    assert leg.hits == (LegHit("a", 1.0, 1),)


# Entry point and dispatch =========================================================================


def test_fuse_dispatches_with_method_defaults() -> None:
    case = CASES[0]
    assert fuse(case.lists, method="rrf") == rrf(case.lists)
    assert fuse(case.lists, method=FusionMethod.RRF).k == DEFAULT_K
    assert fuse(case.lists, method="weighted_rrf", weights=case.weights, k=5) == rrf(
        case.lists, k=5, weights=case.weights
    )
    assert fuse(case.lists, method="linear") == linear(case.lists)
    assert fuse(case.lists, method="wsum", normalization="zmuv") == linear(
        case.lists, normalization=Normalization.ZSCORE
    )


def test_zero_weight_is_a_weight_not_a_missing_option() -> None:
    a = ranked("bm25", {"x": 1.0})
    b = ranked("dense", {"y": 1.0})
    fused = fuse([a, b], method="rrf", weights={"bm25": 0.0})
    assert scores_of(fused) == {"y": 1 / 61, "x": 0.0}
    assert fused.doc_ids == ("y", "x")


@pytest.mark.parametrize("method", list(FusionMethod))
def test_empty_input_gives_an_empty_result(method: FusionMethod) -> None:
    assert len(fuse([], method=method)) == 0
    empty = fuse([RankedList("bm25"), RankedList("dense", ())], method=method)
    assert empty.hits == () and list(empty) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("min-max", Normalization.MINMAX),
        ("minmax", Normalization.MINMAX),
        ("min_max", Normalization.MINMAX),
        (" Min-Max ", Normalization.MINMAX),
        ("z-score", Normalization.ZSCORE),
        ("zscore", Normalization.ZSCORE),
        ("z_score", Normalization.ZSCORE),
        ("zmuv", Normalization.ZSCORE),
        ("l2", Normalization.L2),
        ("none", Normalization.NONE),
        (Normalization.L2, Normalization.L2),
    ],
)
def test_normalization_from_str(text: str, expected: Normalization) -> None:
    assert Normalization.from_str(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rrf", FusionMethod.RRF),
        ("RRF", FusionMethod.RRF),
        ("weighted_rrf", FusionMethod.RRF),
        ("reciprocal rank fusion", FusionMethod.RRF),
        ("linear", FusionMethod.LINEAR),
        ("wsum", FusionMethod.LINEAR),
        ("weighted-sum", FusionMethod.LINEAR),
    ],
)
def test_fusion_method_from_str(text: str, expected: FusionMethod) -> None:
    assert FusionMethod.from_str(text) is expected


# Validation =======================================================================================

A = ranked("bm25", {"x": 1.0, "y": 0.5})
B = ranked("dense", {"y": 0.9})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rrf([A, B], weights={"bm25": -0.5}), r"weight of leg 'bm25' is -0.5"),
        (lambda: linear([A, B], weights={"dense": math.nan}), r"weight of leg 'dense' is nan"),
        (lambda: rrf([A], weights={"bm25": "1"}), r"weights must be finite numbers"),  # type: ignore[dict-item]
        (lambda: rrf([A, B], weights={"sparse": 1.0}), r"unknown legs \['sparse'\]"),
        (lambda: fuse([], method="rrf", weights={"bm25": 1.0}), r"unknown legs"),
        (lambda: rrf([A], k=0), r"k must be finite and > 0, got 0"),
        (lambda: rrf([A], k=-60), r"k must be finite and > 0"),
        (lambda: rrf([A], k=math.inf), r"k must be finite"),
        (lambda: fuse([A], method="rrf", k=0), r"k must be finite and > 0, got 0"),
        (lambda: rrf([A], k=True), r"k must be a number"),
        (lambda: rrf([A, A]), r"leg 'bm25' is given more than once"),
        (lambda: rrf([{"x": 1.0}]), r"expected RankedList"),  # type: ignore[list-item]
        (lambda: fuse([A], method="linear", k=60), r"\['k'\] do not apply to .*'linear'"),
        (
            lambda: fuse([A], method="rrf", normalization="min-max"),
            r"\['normalization'\] do not apply to .*'rrf'",
        ),
        (lambda: fuse([A], method="borda"), r"unknown FusionMethod 'borda'; accepted: "),
        (lambda: linear([A], normalization="softmax"), r"unknown Normalization 'softmax'"),
        (lambda: Normalization.from_str(3), r"must be a string"),  # type: ignore[arg-type]
        (lambda: RankedList.from_scores("bm25", {"x": math.nan}), r"'x' is nan"),
        (lambda: RankedList.from_scores("bm25", [("x", -math.inf)]), r"must be finite"),
        (lambda: RankedList.from_scores("bm25", [(1, 1.0)]), r"doc_id must be"),  # type: ignore[list-item]
        (lambda: RankedList.from_scores("", {}), r"leg name must be a non-empty string"),
        (lambda: RankedList("bm25", (LegHit("x", math.nan, 1),)), r"'x' is nan"),
        (
            lambda: RankedList("bm25", (LegHit("x", 1.0, 1), LegHit("y", 2.0, 2))),
            r"not sorted",
        ),
        (lambda: RankedList("bm25", (LegHit("x", 1.0, 0),)), r"rank 0, expected 1"),
        (
            lambda: RankedList("bm25", (LegHit("x", 1.0, 1), LegHit("x", 1.0, 2))),
            r"duplicate document 'x'",
        ),
        (lambda: normalize([1.0, math.nan], "min-max"), r"position 1 is nan"),
    ],
)
def test_invalid_input_is_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call()


def test_invalid_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        rrf([A], k=0)


@pytest.mark.parametrize("method", ["rrf", "linear"])
def test_a_limited_fusion_is_the_head_of_the_whole_one(method: str) -> None:
    rng = random.Random(21)
    lists = [
        ranked(leg, {f"d{rng.randrange(60)}": rng.random() * 10 for _ in range(40)})
        for leg in ("bm25", "dense", "sparse")
    ]
    whole = fuse(lists, method=method, weights={"bm25": 0.5, "dense": 1.0, "sparse": 2.0})
    assert whole.total == len(whole.hits) > 10
    for limit in (1, 10, len(whole.hits), len(whole.hits) + 5):
        head = fuse(
            lists, method=method, weights={"bm25": 0.5, "dense": 1.0, "sparse": 2.0}, limit=limit
        )
        assert head.hits == whole.hits[:limit]
        assert head.total == whole.total


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "3"])
def test_a_limit_must_be_a_whole_number_of_at_least_one(limit: object) -> None:
    with pytest.raises(InvalidInputError, match="limit must be"):
        fuse([ranked("bm25", {"a": 1.0})], method="rrf", limit=limit)  # type: ignore[arg-type]


# The lazily built hits and the fast ranking path ==================================================


def _checked_ranking(pairs: list[tuple[Any, Any]]) -> tuple[LegHit, ...]:
    """The ranking rule written out plainly: best score per id, then score descending, id."""
    best: dict[str, float] = {}
    for doc_id, raw in pairs:
        best[doc_id] = max(float(raw), best.get(doc_id, -math.inf))
    ordered = sorted(best.items(), key=lambda item: (-item[1], item[0]))
    return tuple(LegHit(d, s, r) for r, (d, s) in enumerate(ordered, start=1))


class _Id(str):
    """A str subclass (the fast path takes exact strings only; this one takes the other)."""


@pytest.mark.parametrize("fast_min", [0, 48])  # 0: every leg through the numpy path
@pytest.mark.parametrize("seed", range(40))
def test_from_scores_matches_the_ranking_rule_on_any_input(
    seed: int, fast_min: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fusion, "_FAST_MIN", fast_min)
    rng = random.Random(seed)
    size = rng.randrange(0, 40)
    pool = [f"d{i:02d}" for i in range(rng.choice([size + 1, 12]))]
    # odd seeds: unique ids (what an engine returns, so what the numpy path takes)
    ids = (
        rng.sample(pool, min(size, len(pool)))
        if seed % 2
        else [rng.choice(pool) for _ in range(size)]
    )
    pairs: list[tuple[Any, Any]] = [
        (doc_id, rng.choice([rng.random() * 10, float(rng.randrange(4)), rng.randrange(3)]))
        for doc_id in ids
    ]
    if seed % 3 == 0:  # the engine's order: best first (ties in the engine's own order)
        pairs.sort(key=lambda p: -float(p[1]))
    if seed % 5 == 0 and pairs:
        pairs[0] = (_Id(pairs[0][0]), pairs[0][1])
    leg = RankedList.from_scores("bm25", pairs)
    assert leg.hits == _checked_ranking(pairs)
    assert all(type(h.score) is float and type(h.rank) is int for h in leg.hits)
    assert RankedList("bm25", leg.hits) == leg  # the constructor's checks agree


@pytest.mark.parametrize("fast_min", [0, 48])
def test_from_scores_orders_engine_ties_by_doc_id(
    fast_min: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fusion, "_FAST_MIN", fast_min)
    pairs = [("c", 3.0), ("b", 2.0), ("a", 2.0), ("d", 1.0)]
    assert [h.doc_id for h in RankedList.from_scores("bm25", pairs).hits] == ["c", "a", "b", "d"]


def test_three_leg_sums_are_exact_whatever_the_leg_order() -> None:
    # (0.1 + 0.2) + 0.3 == 0.6000000000000001 in floats; the exact sum rounds to 0.6
    legs = [ranked(name, {"x": s}) for name, s in (("a", 0.1), ("b", 0.2), ("c", 0.3))]
    for order in (legs, legs[::-1], [legs[1], legs[2], legs[0]]):
        fused = linear(order, normalization="none")
        assert fused.hits[0].score == math.fsum([0.1, 0.2, 0.3]) == 0.6
        assert fused.head() == [("x", 0.6)]


@pytest.mark.parametrize("method", ["rrf", "linear"])
@pytest.mark.parametrize("limit", [None, 1, 7, 1000])
def test_head_and_get_agree_with_the_hits(method: str, limit: int | None) -> None:
    rng = random.Random(5)
    lists = [
        ranked(leg, {f"d{rng.randrange(40)}": float(rng.randrange(6)) for _ in range(25)})
        for leg in ("bm25", "dense", "sparse")
    ]
    lazy = fuse(lists, method=method, limit=limit)
    # read before anything builds the hits
    assert len(lazy) == min(limit or lazy.total, lazy.total)
    head = lazy.head()
    one = {doc_id: lazy.get(doc_id) for doc_id, _ in head}
    assert lazy.get("not-there") is None
    built = fuse(lists, method=method, limit=limit)
    assert head == [(h.doc_id, h.score) for h in built.hits]
    assert lazy.head(3) == head[:3]
    assert list(one.values()) == list(built.hits)
    assert lazy.doc_ids == built.doc_ids == tuple(d for d, _ in head)
    assert lazy == built


def test_a_fused_list_is_immutable_and_compared_by_value() -> None:
    fused = rrf([ranked("bm25", {"a": 1.0, "b": 0.5})])
    with pytest.raises(AttributeError):
        fused.total = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        fused.hits = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del fused.method
    assert fused == rrf([ranked("bm25", {"a": 1.0, "b": 0.5})])
    assert fused != rrf([ranked("bm25", {"a": 1.0, "b": 0.5})], k=10)
    assert "2 hits" in repr(fused)
    built = FusedList(FusionMethod.RRF, fused.hits, fused.weights, k=fused.k, total=2)
    assert built == fused and built.head() == fused.head() and built.get("b") == fused.hits[1]
