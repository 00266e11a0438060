"""The recommended configuration ``es-neural eval --recommend FILE`` writes.

Everything here is decided on validation queries (carved from the tuning split, never the
evaluated one), from the figures tuning already measured (:class:`Evidence`):

1. **Fusion and legs**: the configuration without rerank that scores best on validation
   (nDCG@10; first in the standard order on ties) among each leg alone and every pair and
   triple fused by RRF and by linear fusion with its tuned weights and normalisation, **if it
   beats the library's untuned default fusion** (all three legs, min-max, equal weights) by
   more than ``margin``; else the default. Choosing among a dozen configurations on a few
   hundred validation queries is itself tuning, and a small lead there does not survive: on
   SciFact the tuned linear fusion led the default by 0.0049 on validation and trailed it by
   0.016 on test (README, "Evaluation").
2. **Rerank**: the reranker reorders the top-N of the linear fusion of the three legs, at the
   interpolation weight tuned on validation. It is on only when all of these hold, and off,
   with the reason in the file, otherwise:

   * its validation nDCG@10 is above that of the fusion it reorders by more than ``margin``;
   * its p95 cost per validation query (scoring the top-N) is within ``budget_ms``;
   * it beats the best configuration without rerank (step 1) on validation;
   * it beats the untuned default fusion by more than ``margin`` on validation.

   When it is on, the fusion under it is the one it was measured on.

:func:`recommend` is pure: the pipeline gathers the :class:`Evidence` and the models'
fingerprints (:class:`Provenance`), and writes the :class:`~es_neural.search.profile.Profile`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.errors import InvalidInputError
from es_neural.eval.configs import DEFAULT_ROW, LEGS, EvalConfig, rerank_row_name
from es_neural.search.profile import (
    FusionDefaults,
    LegDefaults,
    Profile,
    ProfileIndex,
    ProfileModels,
    RerankDefaults,
    SearchDefaults,
)

__all__ = [
    "DEFAULT_MARGIN",
    "Decision",
    "Evidence",
    "Provenance",
    "RerankEvidence",
    "decide",
    "interpolation_key",
    "recommend",
]

#: Validation nDCG@10 the rerank must add over the fusion it reorders to be turned on, and any
#: configuration over the untuned default fusion to replace it.
DEFAULT_MARGIN = 0.005
METRIC = "ndcg@10"


def interpolation_key(weight: float | None) -> str:
    """How tuning names an interpolation weight (``"rerank"``: the rerank score alone)."""
    return "rerank" if weight is None else f"{weight:g}"


@dataclass(frozen=True, slots=True)
class RerankEvidence:
    """What validation measured of the reranker."""

    #: As given to eval: ``"embedded"``, a CrossEncoder folder or a hub id.
    model: str
    top_n: int
    #: The configuration it reorders (the linear fusion of the three legs) and its score.
    base: str
    fused: float
    #: Validation nDCG@10 per interpolation weight tried (:func:`interpolation_key`).
    by_interpolation: Mapping[str, float]
    #: The weight tuning chose (``None``: the rerank score alone).
    interpolation: float | None
    #: Cost of scoring one validation query's top-N (``mean_ms``, ``p50_ms``, ``p95_ms``).
    latency_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.by_interpolation[interpolation_key(self.interpolation)]


@dataclass(frozen=True, slots=True)
class Evidence:
    """The validation figures a recommendation is made from."""

    #: Every configuration without rerank or leaf filter, with its validation nDCG@10, in the
    #: standard order (:func:`~es_neural.eval.configs.default_configs`).
    configs: Sequence[tuple[EvalConfig, float]]
    rerank: RerankEvidence | None
    #: The validation carve: split, fraction, seed, queries.
    validation: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = ""


@dataclass(frozen=True, slots=True)
class Provenance:
    """The models and index the evidence was measured with."""

    dense: ModelFingerprint
    sparse: ModelFingerprint | None
    reranker: ModelFingerprint | None
    index: str
    concrete: str | None = None
    engine: str | None = None


def _best(configs: Sequence[tuple[EvalConfig, float]]) -> tuple[EvalConfig, float]:
    best: tuple[EvalConfig, float] | None = None
    for config, score in configs:
        if config.rerank or config.tree:
            raise InvalidInputError(f"evidence config {config.name!r} is not a plain fusion")
        if best is None or score > best[1] + 1e-12:
            best = (config, score)
    if best is None:
        raise InvalidInputError("no configuration was measured on validation")
    return best


def _rerank_decision(
    rerank: RerankEvidence | None,
    best: tuple[EvalConfig, float],
    *,
    margin: float,
    budget_ms: float,
    default: tuple[EvalConfig, float] | None = None,
) -> tuple[bool, str, dict[str, Any]]:
    """Whether rerank is on, the reason (with the figures), and the figures as JSON."""
    if rerank is None:
        return False, "rerank off: no reranker was measured (eval ran with --reranker off)", {}
    score, gain = rerank.score, rerank.score - rerank.fused
    p95 = float(rerank.latency_ms.get("p95_ms", math.nan))
    alpha = (
        "the rerank score alone"
        if rerank.interpolation is None
        else f"interpolated {rerank.interpolation:g}"
    )
    figures: dict[str, Any] = {
        "model": rerank.model,
        "top_n": rerank.top_n,
        "base": rerank.base,
        f"val_{METRIC}_fused": rerank.fused,
        f"val_{METRIC}_by_interpolation": dict(rerank.by_interpolation),
        "interpolation": rerank.interpolation,
        f"val_{METRIC}_reranked": score,
        "gain": round(gain, 4),
        "margin": margin,
        "latency_ms": dict(rerank.latency_ms),
        "budget_ms": budget_ms,
    }
    measured = (
        f"on validation the rerank ({alpha}, top {rerank.top_n}) scores {score:.4f} nDCG@10 "
        f"against {rerank.fused:.4f} for the fusion it reorders ({rerank.base})"
    )
    if not gain > margin:
        return (
            False,
            f"rerank off: {measured}, a gain of {gain:+.4f}, not above the margin {margin:g}",
            figures,
        )
    if not p95 <= budget_ms:  # NaN (not measured) counts as over
        return (
            False,
            f"rerank off: it costs {p95:.0f} ms per query at p95 (scoring the top "
            f"{rerank.top_n}), over the budget of {budget_ms:.0f} ms ({measured})",
            figures,
        )
    if best[1] > score + 1e-12:
        return (
            False,
            f"rerank off: {best[0].name} without rerank scores {best[1]:.4f} on validation, "
            f"above the reranked fusion ({measured})",
            figures,
        )
    if default is not None and not score - default[1] > margin:
        return (
            False,
            f"rerank off: {measured}, only {score - default[1]:+.4f} over the untuned default "
            f"fusion ({default[1]:.4f}), not above the margin {margin:g}",
            figures,
        )
    return (
        True,
        f"rerank on: {measured}, a gain of {gain:+.4f} (margin {margin:g}), for {p95:.0f} ms "
        f"per query at p95 (budget {budget_ms:.0f} ms)",
        figures,
    )


def _search_defaults(
    config: EvalConfig, rerank: RerankEvidence | None, on: bool, reason: str
) -> SearchDefaults:
    legs = {
        leg: LegDefaults(
            enabled=leg in config.legs,
            weight=float(config.weights.get(leg, 1.0)) if config.fused else 1.0,
        )
        for leg in LEGS
    }
    fusion = FusionDefaults(
        method=config.fusion, k=config.rrf_k, normalization=config.normalization
    )
    if on and rerank is not None:
        # 1.0 orders by the rerank score alone (a missing weight would mean "the model's own").
        weight = 1.0 if rerank.interpolation is None else rerank.interpolation
        rerank_defaults = RerankDefaults(
            enabled=True,
            model=rerank.model,
            top_n=rerank.top_n,
            interpolation=weight,
            reason=reason,
        )
    else:
        rerank_defaults = RerankDefaults(enabled=False, reason=reason)
    return SearchDefaults(legs=legs, fusion=fusion, rerank=rerank_defaults)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Decision:
    """What validation chose (see the module docstring): the fusion and whether rerank is on,
    with the reasons and the rerank figures."""

    config: EvalConfig
    #: The fusion's validation nDCG@10.
    score: float
    rerank_on: bool
    fusion_reason: str
    rerank_reason: str
    rerank_figures: dict[str, Any]
    #: The name of the evaluation row this is: the fusion's, or its rerank row when on.
    row: str


def decide(
    evidence: Evidence, *, margin: float = DEFAULT_MARGIN, budget_ms: float = 2000.0
) -> Decision:
    """The configuration validation chooses, by the rules of the module docstring. Pure: the
    evaluation report marks this row, and :func:`recommend` writes it."""
    best = _best(evidence.configs)
    default = next(
        ((config, score) for config, score in evidence.configs if config.name == DEFAULT_ROW), None
    )
    on, rerank_reason, rerank_figures = _rerank_decision(
        evidence.rerank, best, margin=margin, budget_ms=budget_ms, default=default
    )
    queries = evidence.validation.get("queries")
    on_what = f"{queries} validation queries" if queries is not None else "validation"
    chosen = best
    row = best[0].name
    if on and evidence.rerank is not None:
        named = {config.name: (config, score) for config, score in evidence.configs}
        if evidence.rerank.base not in named:
            raise InvalidInputError(
                f"the reranked configuration {evidence.rerank.base!r} is not in the evidence"
            )
        chosen = named[evidence.rerank.base]
        row = rerank_row_name(chosen[0].name, evidence.rerank.interpolation)
        fusion_reason = (
            f"fusion: {chosen[0].name}, {chosen[1]:.4f} nDCG@10 on {on_what} (the fusion the "
            f"rerank was measured on; best without rerank: {best[0].name}, {best[1]:.4f})"
        )
    elif (
        default is not None
        and best[0].name != default[0].name
        and not (best[1] - default[1] > margin)
    ):
        chosen = default
        row = default[0].name
        fusion_reason = (
            f"fusion: the untuned default ({default[0].name}), {default[1]:.4f} nDCG@10 on "
            f"{on_what}; the best there, {best[0].name} ({best[1]:.4f}), leads it by only "
            f"{best[1] - default[1]:+.4f}, not above the margin {margin:g}"
        )
    else:
        fusion_reason = (
            f"fusion: {chosen[0].name}, {chosen[1]:.4f} nDCG@10 on {on_what} (the best "
            "without rerank"
            + (
                f", {best[1] - default[1]:+.4f} over the untuned default)"
                if default is not None and best[0].name != default[0].name
                else ")"
            )
        )
    return Decision(
        config=chosen[0],
        score=chosen[1],
        rerank_on=on,
        fusion_reason=fusion_reason,
        rerank_reason=rerank_reason,
        rerank_figures=rerank_figures,
        row=row,
    )


def recommend(
    evidence: Evidence,
    provenance: Provenance,
    *,
    margin: float = DEFAULT_MARGIN,
    budget_ms: float = 2000.0,
) -> Profile:
    """The recommended configuration (:func:`decide`), as a profile."""
    decision = decide(evidence, margin=margin, budget_ms=budget_ms)
    models = ProfileModels(
        dense=provenance.dense.to_meta(),
        sparse=provenance.sparse.to_meta() if provenance.sparse is not None else None,
        rerank=provenance.reranker.to_meta() if provenance.reranker is not None else None,
    )
    return Profile(
        search=_search_defaults(
            decision.config, evidence.rerank, decision.rerank_on, decision.rerank_reason
        ),
        models=models,
        index=ProfileIndex(
            name=provenance.index, concrete=provenance.concrete, engine=provenance.engine
        ),
        reasons=(decision.fusion_reason, decision.rerank_reason),
        evidence={
            "metric": METRIC,
            "dataset": evidence.dataset,
            "validation": dict(evidence.validation),
            "chosen": decision.config.name,
            "configurations": {config.name: score for config, score in evidence.configs},
            "rerank": decision.rerank_figures,
        },
    )
