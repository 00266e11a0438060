"""The one definition of a document's text (es_neural.text)."""

from __future__ import annotations

import pytest

from es_neural.text import DEFAULT_TEXT_FIELDS, document_text, is_text_value


def test_default_fields() -> None:
    assert DEFAULT_TEXT_FIELDS == ("title", "text")
    assert document_text({"title": " T ", "text": "body", "year": 2020}) == "T\nbody"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"title": "a", "text": "b"}, "a\nb"),
        ({"text": "only"}, "only"),
        ({"title": ["a", " b ", ""], "text": "c"}, "a\nb\nc"),  # lists flattened, in order
        ({"title": [["a"], ("b", ["c"])]}, "a\nb\nc"),  # at any depth
        ({"title": 12, "text": 1.5}, "12\n1.5"),  # numbers as their text
        ({"title": True, "text": None}, ""),  # booleans and None add nothing
        ({"title": {"nested": "x"}, "text": "y"}, "y"),  # objects add nothing
        ({"title": "   ", "text": ""}, ""),
        ({}, ""),
    ],
)
def test_document_text_rules(source: dict[str, object], expected: str) -> None:
    assert document_text(source, ("title", "text")) == expected


def test_document_text_follows_the_field_order() -> None:
    assert document_text({"a": "1", "b": "2"}, ("b", "a")) == "2\n1"


def test_a_list_valued_title_is_not_its_python_repr() -> None:
    # what the reranker used to see for a list-valued title: "['a', 'b']"
    assert document_text({"title": ["a", "b"]}) == "a\nb"


def test_a_cycle_ends() -> None:
    loop: list[object] = ["x"]
    loop.append(loop)
    assert document_text({"text": loop}).startswith("x")
    assert is_text_value(loop) is False  # deeper than the limit: not text


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (None, True),
        ("s", True),
        (3, True),
        (["a", 1, ["b"]], True),
        (True, False),
        ({"a": "b"}, False),
        (["a", {"b": 1}], False),
    ],
)
def test_is_text_value(value: object, ok: bool) -> None:
    assert is_text_value(value) is ok
