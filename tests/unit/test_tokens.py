"""Sparse key sanitising and weight cleaning (es_neural.encoders.tokens)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from es_neural.encoders.tokens import (
    MAX_TOKEN_LENGTH,
    MIN_POSITIVE_WEIGHT,
    clean_weights,
    sanitize_token,
    unsanitize_token,
)


@pytest.mark.parametrize(
    ("token", "key"),
    [
        ("python", "python"),
        ("##ing", "##ing"),
        (".", "%2E"),
        ("u.s.", "u%2Es%2E"),
        ("##.", "##%2E"),
        ("...", "%2E%2E%2E"),
        ("100%", "100%25"),
        ("%", "%25"),
        ("%2e", "%252e"),
        ("a b", "a%20b"),
        ("tab\there", "tab%09here"),
        ("line\nbreak", "line%0Abreak"),
        ("nbsp\u00a0x", "nbsp%C2%A0x"),
        ("zero\u200bwidth", "zero%E2%80%8Bwidth"),
        ("é", "é"),
        ("▁sentencepiece", "▁sentencepiece"),
        ("", ""),
    ],
)
def test_sanitize_token_examples(token: str, key: str) -> None:
    assert sanitize_token(token) == key
    assert unsanitize_token(key) == token


@given(st.text(max_size=60))
def test_sanitized_keys_have_no_dots_or_whitespace_and_round_trip(token: str) -> None:
    key = sanitize_token(token)
    assert "." not in key
    assert not any(c.isspace() for c in key)
    assert len(key) <= MAX_TOKEN_LENGTH
    if "%" not in token:  # tokens holding their own %XX sequences are the documented exception
        assert unsanitize_token(key) == token


@given(st.text(max_size=300))
def test_sanitize_is_idempotent(token: str) -> None:
    key = sanitize_token(token)
    assert sanitize_token(key) == key


@given(st.text(alphabet=st.characters(exclude_characters="%"), max_size=40), st.data())
def test_distinct_tokens_without_percent_get_distinct_keys(token: str, data: st.DataObject) -> None:
    other = data.draw(st.text(alphabet=st.characters(exclude_characters="%"), max_size=40))
    if other != token:
        assert sanitize_token(other) != sanitize_token(token)


def test_long_tokens_are_bounded_distinct_and_not_reversible() -> None:
    a, b = "x" * 400 + "a", "x" * 400 + "b"
    key_a, key_b = sanitize_token(a), sanitize_token(b)
    assert len(key_a) == len(key_b) == MAX_TOKEN_LENGTH
    assert key_a != key_b
    assert sanitize_token(key_a) == key_a
    with pytest.raises(ValueError, match="hashing"):
        unsanitize_token(key_a)


def test_long_dotted_token_is_never_cut_inside_an_escape() -> None:
    for pad in range(4):
        key = sanitize_token("y" * pad + "." * 200)
        assert len(key) <= MAX_TOKEN_LENGTH
        assert sanitize_token(key) == key
        with pytest.raises(ValueError):
            unsanitize_token(key)


def test_clean_weights_drops_bad_values_and_keys() -> None:
    cleaned = clean_weights(
        {
            "good": 1.5,
            "zero": 0.0,
            "negative": -2.0,
            "nan": math.nan,
            "inf": math.inf,
            "tiny": MIN_POSITIVE_WEIGHT / 2,
            "": 3.0,
            "u.s": 0.5,
        },
        top_k=None,
    )
    assert cleaned == {"good": 1.5, "u%2Es": 0.5}
    assert all(isinstance(v, float) and v > 0 for v in cleaned.values())


def test_clean_weights_min_weight_is_exclusive() -> None:
    weights = {"a": 0.1, "b": 0.2, "c": 0.3}
    assert clean_weights(weights, top_k=None, min_weight=0.2) == {"c": 0.3}


def test_clean_weights_merges_collisions_by_max() -> None:
    # "." and an already-escaped "%2E" name the same engine feature.
    assert clean_weights({".": 1.0, "%2E": 2.0, "x": 0.5}, top_k=None) == {"%2E": 2.0, "x": 0.5}
    assert clean_weights({".": 3.0, "%2E": 2.0}, top_k=None) == {"%2E": 3.0}


def test_clean_weights_top_k_with_deterministic_ties() -> None:
    weights = {"d": 1.0, "c": 2.0, "b": 2.0, "a": 2.0, "e": 0.5}
    assert list(clean_weights(weights, top_k=2)) == ["a", "b"]
    assert list(clean_weights(dict(reversed(weights.items())), top_k=2)) == ["a", "b"]
    assert list(clean_weights(weights, top_k=None)) == ["a", "b", "c", "d", "e"]
    assert clean_weights(weights, top_k=0) == {}
    assert len(clean_weights(weights, top_k=100)) == 5


def test_clean_weights_is_idempotent_and_does_not_mutate() -> None:
    weights = {"u.s.": 2.0, "50%": 1.0, "x y": 0.5, "neg": -1.0}
    before = dict(weights)
    once = clean_weights(weights, top_k=10)
    assert weights == before
    assert clean_weights(once, top_k=10) == once


def test_clean_weights_caps_values_to_float32() -> None:
    cleaned = clean_weights({"big": 1e300}, top_k=None)
    assert math.isfinite(cleaned["big"]) and cleaned["big"] < 3.5e38


@pytest.mark.parametrize(("top_k", "min_weight"), [(-1, 0.0), (None, -0.1), (None, math.nan)])
def test_clean_weights_refuses_bad_options(top_k: int | None, min_weight: float) -> None:
    with pytest.raises(ValueError):
        clean_weights({"a": 1.0}, top_k=top_k, min_weight=min_weight)
