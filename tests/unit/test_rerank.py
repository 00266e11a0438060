"""The one rerank stage (es_neural.search.rerank): options resolved against the settings, the
stage's fallbacks with their reasons, the budget, the interpolation formula, the API's cap.

No engine and no model: the rerankers here are small real scorers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from es_neural.search.models import RerankConfig, SearchRequest
from es_neural.search.rerank import (
    NO_RERANKER_REASON,
    CrossEncoderReranker,
    RerankPlan,
    ScoreFunction,
    cap_budget,
    interpolate,
    rerank_window,
    resolve_rerank,
)
from es_neural.settings import RerankSettings

WINDOW = [("a", 3.0), ("b", 2.0), ("c", 1.0), ("tail", 0.5)]
TEXTS = {"a": "alpha", "b": "bravo bravo", "c": "charlie", "tail": "tail"}
#: What the scorer below gives each passage.
RERANK = {"alpha": 0.0, "bravo bravo": 2.0, "charlie": 1.0, "tail": 9.0}


class TableReranker:
    """Scores passages from a table; counts its calls; may sleep per call."""

    name = "table"
    max_length = 2

    def __init__(self, *, interpolation: float | None = None, sleep_s: float = 0.0) -> None:
        self.interpolation = interpolation
        self.sleep_s = sleep_s
        self.calls: list[list[str]] = []

    def score(self, query: str, passages: Sequence[str], *, batch_size: int = 32) -> list[float]:
        self.calls.append(list(passages))
        time.sleep(self.sleep_s)
        return [RERANK[p] for p in passages]

    def token_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        return [len(p.split()) + 1 for p in passages]


def passages(ids: Sequence[str]) -> list[str]:
    return [TEXTS[d] for d in ids]


def plan(**changes: object) -> RerankPlan:
    values: dict[str, object] = {
        "enabled": True,
        "top_n": 3,
        "budget_ms": 60_000.0,
        "batch_size": 32,
        "interpolation": None,
    }
    values.update(changes)
    return RerankPlan(**values)  # type: ignore[arg-type]


# ----- options -----


def test_unset_options_take_the_settings_values_and_set_ones_win() -> None:
    settings = RerankSettings(top_n=7, budget_ms=123.0, batch_size=5)
    resolved = resolve_rerank(RerankConfig(), settings)
    assert resolved == RerankPlan(
        enabled=True, top_n=7, budget_ms=123.0, batch_size=5, interpolation=None
    )
    asked = resolve_rerank(RerankConfig(top_n=2, budget_ms=9.0, interpolation=0.25), settings)
    assert (asked.top_n, asked.budget_ms, asked.interpolation) == (2, 9.0, 0.25)
    assert asked.batch_size == 5
    assert resolve_rerank(RerankConfig(enabled=False), settings).enabled is False
    assert resolve_rerank(RerankConfig(enabled=True), settings).enabled is True


def test_the_defaults_are_the_settings_defaults() -> None:
    resolved = resolve_rerank(RerankConfig(), RerankSettings())
    assert (resolved.top_n, resolved.budget_ms, resolved.batch_size) == (50, 2000.0, 32)


def test_a_server_caps_the_budget_without_touching_the_rest() -> None:
    request = SearchRequest(query="q", size=3, rerank={"enabled": True, "budget_ms": 9000.0})
    capped = cap_budget(request, 1500.0)
    assert capped.rerank.budget_ms == 1500.0
    assert capped.rerank.enabled is True and capped.size == 3 and capped.query == "q"
    lower = SearchRequest(query="q", rerank={"budget_ms": 50.0})
    assert cap_budget(lower, 1500.0) is lower
    unset = SearchRequest(query="q")
    assert cap_budget(unset, 1500.0).rerank.budget_ms is None


# ----- the stage -----


def test_reranks_the_top_n_and_keeps_the_tail() -> None:
    reranker = TableReranker()
    outcome = rerank_window("q", WINDOW, reranker=reranker, plan=plan(), passages=passages)
    assert outcome.applied and outcome.info.reason is None
    assert outcome.entries == (
        ("b", 2.0, 2.0),
        ("c", 1.0, 1.0),
        ("a", 0.0, 0.0),
        ("tail", 0.5, None),
    )
    assert outcome.info.candidates == 3 and outcome.info.model == "table"
    assert outcome.info.truncated == 1  # "bravo bravo" + query: 3 tokens > max_length 2
    assert reranker.calls == [["alpha", "bravo bravo", "charlie"]]


def test_interpolation_from_the_request_else_the_model_else_the_score_alone() -> None:
    # rerank minmax: a 0, b 1, c 0.5; fused minmax over the top 3: a 1, b 0.5, c 0
    asked = rerank_window(
        "q", WINDOW, reranker=TableReranker(), plan=plan(interpolation=0.5), passages=passages
    )
    assert [(d, s) for d, s, _ in asked.entries[:3]] == [("b", 0.75), ("a", 0.5), ("c", 0.25)]
    model = rerank_window(
        "q", WINDOW, reranker=TableReranker(interpolation=0.0), plan=plan(), passages=passages
    )
    assert [d for d, _, _ in model.entries] == ["a", "b", "c", "tail"]  # weight 0: fused order
    overridden = rerank_window(
        "q",
        WINDOW,
        reranker=TableReranker(interpolation=0.0),
        plan=plan(interpolation=1.0),
        passages=passages,
    )
    assert [d for d, _, _ in overridden.entries] == ["b", "c", "a", "tail"]
    assert interpolate([1.0, 3.0], [5.0, 5.0], None) == [1.0, 3.0]
    assert interpolate([1.0, 3.0], [5.0, 4.0], 0.25) == [0.75, 0.25]


@pytest.mark.parametrize(
    ("reranker", "the_plan", "window", "reason"),
    [
        (TableReranker(), plan(enabled=False), WINDOW, "disabled by the request"),
        (None, plan(), WINDOW, NO_RERANKER_REASON),
        (TableReranker(), plan(), [], "no candidates"),
    ],
)
def test_falls_back_to_the_window_order_with_the_reason(
    reranker: TableReranker | None,
    the_plan: RerankPlan,
    window: list[tuple[str, float]],
    reason: str,
) -> None:
    outcome = rerank_window("q", window, reranker=reranker, plan=the_plan, passages=passages)
    assert not outcome.applied and outcome.info.reason == reason
    assert outcome.entries == tuple((d, s, None) for d, s in window)
    assert reranker is None or reranker.calls == []


def test_over_its_budget_the_window_keeps_its_order() -> None:
    reranker = TableReranker(sleep_s=0.02)
    outcome = rerank_window(
        "q",
        WINDOW,
        reranker=reranker,
        plan=plan(top_n=4, batch_size=1, budget_ms=1.0),
        passages=passages,
    )
    assert not outcome.applied
    assert outcome.info.reason == "rerank exceeded its 1 ms budget: fused order kept"
    assert outcome.info.candidates == 4 and outcome.info.model == "table"
    assert outcome.entries == tuple((d, s, None) for d, s in WINDOW)
    assert len(reranker.calls) == 1  # stopped after the first batch
    assert outcome.rerank_ms >= 20.0


def test_the_last_batch_finishes_even_past_the_budget() -> None:
    reranker = TableReranker(sleep_s=0.02)
    outcome = rerank_window(
        "q", WINDOW, reranker=reranker, plan=plan(budget_ms=1.0), passages=passages
    )
    assert outcome.applied and len(reranker.calls) == 1


def test_a_score_function_is_a_reranker_without_a_weight_or_a_tokenizer() -> None:
    scorer = ScoreFunction(lambda _q, docs: [RERANK[d] for d in docs])
    outcome = rerank_window("q", WINDOW, reranker=scorer, plan=plan(), passages=passages)
    assert [d for d, _, _ in outcome.entries] == ["b", "c", "a", "tail"]
    assert outcome.info.truncated == 0 and outcome.info.model == "score function"


def test_the_max_length_is_the_models_validated_one_unless_set(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    # No es_neural.json: 256 tokens per pair.
    assert CrossEncoderReranker(str(folder)).max_length == 256
    (folder / "es_neural.json").write_text(json.dumps({"interpolation": 0.2, "max_length": 192}))
    assert CrossEncoderReranker(str(folder)).max_length == 192
    assert CrossEncoderReranker(str(folder), max_length=64).max_length == 64  # set: it wins
    # A nonsense value is ignored, not trusted.
    (folder / "es_neural.json").write_text(json.dumps({"max_length": "long"}))
    assert CrossEncoderReranker(str(folder)).max_length == 256
    assert RerankSettings().max_length is None  # the settings leave it to the model
