"""Pseudo-query builder (issue 18 item 5) on a tiny corpus: titles, leading sentences, ICT."""

from __future__ import annotations

import pytest

from es_neural.errors import InvalidInputError
from es_neural.train.pseudo import build_pseudo_pairs, split_sentences

BODY_A = (
    "Glacier caves form when meltwater carves tunnels into the ice. "
    "Warm air flowing through them widens the passages every summer. "
    "Most of these caves collapse within a few decades of forming."
)
BODY_B = (
    "Protein clearance declines with age in most organisms studied. "
    "Autophagy removes damaged proteins and whole organelles from cells. "
    "Its failure is linked to several neurodegenerative diseases."
)
CORPUS = [
    ("a", "How glacier caves are formed", BODY_A),
    ("b", "Protein clearance and ageing", BODY_B),
    ("c", "Too short", "One sentence only, and a short one."),
    ("d", None, "Untitled notes on caves. The second sentence is long enough to leave ten words."),
]


def test_split_sentences_on_terminal_punctuation_before_a_capital() -> None:
    assert split_sentences("One. Two? Three! four. 5 items.") == [
        "One.",
        "Two?",
        "Three! four.",
        "5 items.",
    ]
    assert split_sentences("  \n ") == []
    assert split_sentences("e.g. the cell. The end") == ["e.g. the cell.", "The end"]


def test_title_pairs_ask_for_the_body() -> None:
    pairs = build_pseudo_pairs(CORPUS, kinds=("title",))
    assert [(p.doc_id, p.query, p.kind) for p in pairs] == [
        ("a", "How glacier caves are formed", "title"),
        ("b", "Protein clearance and ageing", "title"),
    ]  # c: body under min_doc_words; d: no title
    assert pairs[0].text == BODY_A


def test_lead_pairs_drop_the_first_sentence_from_the_positive() -> None:
    pairs = build_pseudo_pairs(CORPUS, kinds=("lead",))
    by_doc = {p.doc_id: p for p in pairs}
    assert by_doc["a"].query == "Glacier caves form when meltwater carves tunnels into the ice."
    assert by_doc["a"].text.startswith("Warm air flowing")
    assert by_doc["a"].query not in by_doc["a"].text
    assert "c" not in by_doc  # a single sentence has nothing left to retrieve


def test_ict_pairs_are_seeded_and_never_the_lead() -> None:
    a = build_pseudo_pairs(CORPUS, kinds=("ict",), seed=1)
    b = build_pseudo_pairs(CORPUS, kinds=("ict",), seed=1)
    assert a == b
    for pair in a:
        body = dict((d, t) for d, _, t in CORPUS)[pair.doc_id]
        sentences = split_sentences(body)
        assert pair.query in sentences[1:]
        assert pair.query not in pair.text
        assert pair.text == " ".join(s for s in sentences if s != pair.query)
    seeds = {
        tuple(p.query for p in build_pseudo_pairs(CORPUS, kinds=("ict",), seed=s)) for s in range(8)
    }
    assert len(seeds) > 1  # the sentence drawn depends on the seed


def test_kinds_are_tried_in_order_up_to_per_doc() -> None:
    one = build_pseudo_pairs(CORPUS)
    assert [(p.doc_id, p.kind) for p in one] == [("a", "title"), ("b", "title"), ("d", "lead")]
    two = build_pseudo_pairs(CORPUS, per_doc=2)
    assert [(p.doc_id, p.kind) for p in two] == [
        ("a", "title"),
        ("a", "lead"),
        ("b", "title"),
        ("b", "lead"),
        ("d", "lead"),
    ]


def test_long_queries_are_cut_and_duplicates_dropped() -> None:
    corpus = [
        ("x", "same title here", BODY_A),
        ("y", "Same title here", BODY_B),
        ("z", "a very long title " * 10, BODY_A),
    ]
    pairs = build_pseudo_pairs(corpus, kinds=("title",), max_query_words=5)
    assert [(p.doc_id, p.query) for p in pairs] == [("z", "a very long title a")]


@pytest.mark.parametrize(
    "options",
    [
        {"kinds": ("titles",)},
        {"kinds": ()},
        {"per_doc": 0},
        {"min_query_words": 5, "max_query_words": 4},
    ],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        build_pseudo_pairs(CORPUS, **options)  # type: ignore[arg-type]
