"""MMR (es_neural/search/diversify.py) on hand-checked cases and against a plain-Python oracle,
and the cursor that keeps a diversified window (es_neural/search/service.py). No engine:
tests/integration/test_diversify.py runs the stage on both engines."""

from __future__ import annotations

import base64
import itertools
import json
import math
import random
import zlib
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from es_neural.errors import InvalidInputError
from es_neural.search.diversify import diversify_window, explain_steps, mmr
from es_neural.search.models import DiversifyConfig, DiversifyInfo, SearchRequest
from es_neural.search.service import _decode_cursor, _encode_cursor, _Window


def _unit(angle_deg: float) -> list[float]:
    a = math.radians(angle_deg)
    return [math.cos(a), math.sin(a)]


def _oracle(
    scores: Sequence[float], vectors: Sequence[Sequence[float] | None], lam: float
) -> list[int]:
    """MMR written out plainly: every step recomputes every candidate's value from scratch."""
    lo, hi = min(scores), max(scores)
    rel = [1.0 if hi == lo else (s - lo) / (hi - lo) for s in scores]

    def cos(i: int, j: int) -> float:
        u, v = vectors[i], vectors[j]
        if u is None or v is None:
            return 0.0
        nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
        if nu == 0 or nv == 0:
            return 0.0
        return sum(x * y for x, y in zip(u, v, strict=True)) / (nu * nv)

    picked: list[int] = []
    left = list(range(len(scores)))
    while left:
        values = [
            lam * rel[d] - (1 - lam) * (max(cos(d, s) for s in picked) if picked else 0.0)
            for d in left
        ]
        best = max(values)
        pick = left[values.index(best)]  # the first of equal values
        picked.append(pick)
        left.remove(pick)
    return picked


def test_a_hand_checked_case() -> None:
    # a and b point the same way (duplicates), c elsewhere; rel = (1, 0.8, 0)
    scores = [1.0, 0.9, 0.5]
    vectors = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]
    picks = mmr(scores, vectors, lambda_=0.5)
    assert [p.index for p in picks] == [0, 2, 1]
    a, c, b = picks
    assert (a.relevance, a.max_similarity, a.similar_to, a.score) == (1.0, 0.0, None, 0.5)
    # c: 0.5 * 0 - 0.5 * cos(c, a) = 0 beats b: 0.5 * 0.8 - 0.5 * 1 = -0.1
    assert c.max_similarity == pytest.approx(0.0) and c.score == pytest.approx(0.0)
    assert b.relevance == pytest.approx(0.8) and b.max_similarity == pytest.approx(1.0)
    assert b.similar_to == 0 and b.score == pytest.approx(-0.1)
    # leaning on relevance (0.7 * 0.8 - 0.3 * 1 = 0.26 > 0), the duplicate keeps its place
    assert [p.index for p in mmr(scores, vectors, lambda_=0.7)] == [0, 1, 2]


def test_lambda_one_keeps_the_order() -> None:
    rng = random.Random(7)
    for _ in range(20):
        n = rng.randint(1, 30)
        scores = sorted((rng.choice([rng.random(), 0.5]) for _ in range(n)), reverse=True)
        vectors = [[rng.gauss(0, 1) for _ in range(8)] for _ in range(n)]
        assert [p.index for p in mmr(scores, vectors, lambda_=1.0)] == list(range(n))


def test_lambda_zero_spreads_as_far_as_it_can() -> None:
    vectors = [_unit(0), _unit(10), _unit(20), _unit(90)]
    picks = mmr([4.0, 3.0, 2.0, 1.0], vectors, lambda_=0.0)
    # the first is the most relevant (every penalty is 0: the tie goes to the first), then the
    # farthest from it (90), then 20 degrees (max cos 0.94) before 10 (max cos 0.98)
    assert [p.index for p in picks] == [0, 3, 2, 1]
    assert picks[2].similar_to == 0 and picks[2].max_similarity == pytest.approx(
        math.cos(math.radians(20))
    )


def test_ties_are_deterministic() -> None:
    same = [[1.0, 0.0]] * 4
    assert [p.index for p in mmr([1.0] * 4, same, lambda_=0.3)] == [0, 1, 2, 3]
    # b and c are equally far from a and equally relevant: the first of them wins
    vectors = [_unit(0), _unit(90), _unit(-90)]
    assert [p.index for p in mmr([2.0, 1.0, 1.0], vectors, lambda_=0.5)] == [0, 1, 2]
    assert [p.index for p in mmr([1.0, 1.0, 1.0], vectors, lambda_=0.5)] == [0, 1, 2]


def test_near_duplicates_are_pushed_down() -> None:
    # two topics, each written three times over; plain relevance puts one topic's copies first
    vectors = [_unit(0), _unit(1), _unit(2), _unit(90), _unit(91), _unit(92)]
    scores = [1.0, 0.99, 0.98, 0.9, 0.89, 0.88]
    picks = mmr(scores, vectors, lambda_=0.5)
    # the other topic's best comes second; once both are shown, relevance decides again
    assert [p.index for p in picks] == [0, 3, 1, 2, 4, 5]
    assert picks[2].similar_to == 0 and picks[2].max_similarity > 0.99


def test_documents_without_a_vector_are_similar_to_nothing() -> None:
    vectors: list[list[float] | None] = [[1.0, 0.0], None, [1.0, 0.0], [0.0, 0.0]]
    picks = mmr([1.0, 0.9, 0.8, 0.7], vectors, lambda_=0.6)
    by_index = {p.index: p for p in picks}
    for missing in (1, 3):
        assert by_index[missing].max_similarity == 0.0
        assert by_index[missing].similar_to is None
    assert by_index[2].similar_to == 0 and by_index[2].max_similarity == pytest.approx(1.0)
    assert [p.index for p in picks] == _oracle([1.0, 0.9, 0.8, 0.7], vectors, 0.6)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_random_windows_agree_with_the_plain_oracle(lam: float) -> None:
    rng = random.Random(int(lam * 100))
    for _ in range(15):
        n = rng.randint(2, 25)
        scores = sorted((rng.random() for _ in range(n)), reverse=True)
        vectors: list[list[float] | None] = [
            None if rng.random() < 0.1 else [rng.gauss(0, 1) for _ in range(6)] for _ in range(n)
        ]
        picks = mmr(scores, vectors, lambda_=lam)
        assert [p.index for p in picks] == _oracle(scores, vectors, lam)
        # each pick's score is its formula, and never rises after the first pick (whose
        # penalty is 0, where later ones may be negative cosines: a bonus)
        for p in picks:
            assert p.score == lam * p.relevance - (1 - lam) * p.max_similarity
        assert all(a.score >= b.score - 1e-12 for a, b in itertools.pairwise(picks[1:]))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="lambda"):
        mmr([1.0], [[1.0]], lambda_=1.5)
    with pytest.raises(InvalidInputError, match="2 scores but 1 vectors"):
        mmr([1.0, 0.5], [[1.0]], lambda_=0.5)
    with pytest.raises(InvalidInputError, match="different lengths"):
        mmr([1.0, 0.5], [[1.0], [1.0, 0.0]], lambda_=0.5)
    with pytest.raises(InvalidInputError, match="finite"):
        mmr([1.0, math.nan], [[1.0], [1.0]], lambda_=0.5)
    assert mmr([], [], lambda_=0.5) == ()


def test_the_window_below_keeps_its_order_and_scores() -> None:
    entries = [("a", 0.9, None), ("b", 0.8, None), ("c", 0.7, None), ("d", 0.6, None)]
    vectors = {"a": [1.0, 0.0], "b": [1.0, 0.0], "c": [0.0, 1.0], "d": [1.0, 0.0]}
    done = diversify_window(entries, vectors, lambda_=0.3, size=3)
    assert [e[0] for e in done.entries] == ["a", "c", "b", "d"]
    assert dict((d, s) for d, s, _ in done.entries) == {d: s for d, s, _ in entries}
    assert [s.rank_before for s in done.steps] == [1, 3, 2]
    assert done.steps[2].similar_to == "a" and done.missing_vectors == 0
    kept = [
        (s.rank_before, s.max_similarity, None if s.similar_to is None else 0) for s in done.steps
    ]
    assert explain_steps(done.entries, kept, lambda_=0.3) == done.steps


def test_diversify_options_are_validated() -> None:
    request = SearchRequest.model_validate(
        {"query": "q", "diversify": {"enabled": True, "lambda": 0.4, "window": 20}}
    )
    assert request.diversify == DiversifyConfig(enabled=True, lambda_=0.4, window=20)
    assert request.model_dump(mode="json")["diversify"] == {
        "enabled": True,
        "lambda": 0.4,
        "window": 20,
    }
    # the default MMR window (50) fits any request window; a larger window given is refused
    assert SearchRequest(query="q", window=10, diversify={"enabled": True}).window == 10
    with pytest.raises(ValidationError, match=r"diversify.window \(30\) is larger than window"):
        SearchRequest(query="q", window=20, diversify={"window": 30})
    for bad in ({"lambda": 1.5}, {"lambda": -0.1}, {"window": 0}, {"mmr": True}):
        with pytest.raises(ValidationError):
            SearchRequest.model_validate({"query": "q", "diversify": bad})


# ----- the cursor -----


def _window(n: int, mmr_size: int) -> _Window:
    rng = random.Random(n)
    entries = tuple(
        (f"doc-{i:04d}-{rng.getrandbits(64):016x}", 1.0 / (i + 1), None) for i in range(n)
    )
    vectors = {d: [rng.gauss(0, 1) for _ in range(8)] for d, _, _ in entries}
    done = diversify_window(entries, vectors, lambda_=0.6, size=mmr_size)
    info = DiversifyInfo(applied=True, lambda_=0.6, window=mmr_size)
    return _Window(done.entries, None, done.steps, info)


def test_the_cursor_keeps_the_diversified_order_and_its_explanations() -> None:
    window = _window(40, 25)
    offset, back = _decode_cursor(_encode_cursor("key", 10, window), "key")
    assert offset == 10
    assert back.entries == window.entries
    assert back.mmr == window.mmr  # relevance and MMR score computed again: the same floats
    assert back.diversify == window.diversify


def test_a_full_window_cursor_fits_the_request_limit() -> None:
    cursor = _encode_cursor("key", 10, _window(1000, 1000))
    assert len(cursor) <= SearchRequest.model_fields["cursor"].metadata[0].max_length
    assert _decode_cursor(cursor, "key")[1].mmr


def test_a_cursor_keeps_scores_exactly_and_non_finite_ones_too() -> None:
    # orjson writes the usual window (shortest round-trip floats); a score that is not finite
    # (which orjson would write as null) goes through the standard library instead.
    rng = random.Random(7)
    scores = [rng.random() * 10 ** rng.randint(-12, 12) for _ in range(200)]
    entries = tuple((f"d{i}", s, s / 3) for i, s in enumerate(scores))
    window = _Window(entries, ("a", "b"), (), DiversifyInfo(applied=False))
    assert _decode_cursor(_encode_cursor("key", 3, window), "key")[1].entries == entries
    odd = tuple((f"d{i}", s, None) for i, s in enumerate([1.0, math.inf, -math.inf]))
    back = _decode_cursor(
        _encode_cursor("key", 0, _Window(odd, None, (), DiversifyInfo(applied=False))), "key"
    )
    assert back[1].entries == odd
    nan = _Window((("d0", math.nan, None),), None, (), DiversifyInfo(applied=False))
    assert math.isnan(_decode_cursor(_encode_cursor("key", 0, nan), "key")[1].entries[0][1])


def _forge(window: _Window, **changes: object) -> str:
    raw = base64.urlsafe_b64decode(_encode_cursor("key", 0, window) + "==")
    payload = json.loads(zlib.decompress(raw))
    payload.update(changes)
    return base64.urlsafe_b64encode(zlib.compress(json.dumps(payload).encode())).decode()


def test_a_forged_or_older_cursor_is_refused() -> None:
    window = _window(6, 4)
    good = json.loads(
        zlib.decompress(base64.urlsafe_b64decode(_encode_cursor("key", 0, window) + "=="))
    )
    steps = good["m"]
    forged = [
        {"v": 1},
        {"m": [*steps[:3], [4, 0.5, 3]]},  # similar to itself
        {"m": [*steps[:3], [9, 0.5, 0]]},  # a rank before outside the MMR window
        {"m": [*steps[:3], [4, 7.0, 0]]},  # a cosine above 1
        {"m": steps[:3]},  # fewer steps than the window it says
        {"d": {**good["d"], "applied": False}},
    ]
    for changes in forged:
        with pytest.raises(InvalidInputError, match="cursor is not valid"):
            _decode_cursor(_forge(window, **changes), "key")
