"""Pseudo-queries from a corpus with no judgments: (pseudo-query, document) training pairs.

Three builders, each giving the query and the text the document is *trained* as (the stored
document is unchanged; only the training positive drops the part that became the query, so the
model cannot succeed by spotting a verbatim copy):

* ``title``: the document's title asks for its body (a title of at least ``min_query_words``
  words; the body must keep ``min_doc_words``);
* ``lead``: the body's first sentence asks for the rest of the body;
* ``ict``: inverse cloze (Lee, Chang & Toutanova, ACL 2019): a random sentence other than the
  first asks for the body without that sentence.

Everything is deterministic: the random sentence of ``ict`` is drawn from a generator seeded by
``seed`` and the document id. A query text produced for more than one document is dropped (it
would make two contradictory positives).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from es_neural.errors import InvalidInputError

__all__ = ["KINDS", "PseudoKind", "PseudoPair", "build_pseudo_pairs", "split_sentences"]

PseudoKind = Literal["title", "lead", "ict"]
KINDS: Final[tuple[PseudoKind, ...]] = ("title", "lead", "ict")

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class PseudoPair:
    """One pseudo-labelled pair: ``query`` should retrieve ``doc_id``, trained as ``text``."""

    query: str
    doc_id: str
    kind: PseudoKind
    text: str


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (a light rule: ``.``, ``!`` or ``?`` then a capital or a digit)."""
    clean = _SPACES.sub(" ", text).strip()
    if not clean:
        return []
    return [s.strip() for s in _SENTENCE_END.split(clean) if s.strip()]


def _words(text: str) -> int:
    return len(text.split())


def build_pseudo_pairs(
    documents: Iterable[tuple[str, str | None, str]],
    *,
    kinds: Sequence[PseudoKind] = KINDS,
    per_doc: int = 1,
    seed: int = 13,
    min_query_words: int = 3,
    max_query_words: int = 64,
    min_doc_words: int = 10,
) -> list[PseudoPair]:
    """Pairs from ``(doc_id, title, body)`` triples, at most ``per_doc`` per document.

    For each document the builders are tried in the order of ``kinds``; the first ``per_doc``
    that apply give its pairs. Queries longer than ``max_query_words`` are cut to that many
    words.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise InvalidInputError(f"pseudo-query kinds must be among {list(KINDS)}, got {kinds}")
    if per_doc < 1 or min_query_words < 1 or max_query_words < min_query_words:
        raise InvalidInputError("per_doc and min_query_words must be >= 1, max >= min")
    pairs: list[PseudoPair] = []
    for doc_id, title, body in documents:
        sentences = split_sentences(body)
        made = 0
        for kind in kinds:
            if made >= per_doc:
                break
            pair = _build(
                kind, doc_id, title, body, sentences, seed, min_query_words, min_doc_words
            )
            if pair is not None:
                words = pair.query.split()
                if len(words) > max_query_words:
                    pair = PseudoPair(" ".join(words[:max_query_words]), doc_id, kind, pair.text)
                pairs.append(pair)
                made += 1
    counts = Counter(p.query.lower() for p in pairs)
    return [p for p in pairs if counts[p.query.lower()] == 1]


def _build(
    kind: PseudoKind,
    doc_id: str,
    title: str | None,
    body: str,
    sentences: list[str],
    seed: int,
    min_query_words: int,
    min_doc_words: int,
) -> PseudoPair | None:
    if kind == "title":
        query = _SPACES.sub(" ", title or "").strip()
        text = _SPACES.sub(" ", body).strip()
        if _words(query) >= min_query_words and _words(text) >= min_doc_words:
            return PseudoPair(query, doc_id, kind, text)
        return None
    if len(sentences) < 2:
        return None
    if kind == "lead":
        index = 0
    else:  # ict: any sentence but the first (the lead builder owns that one)
        rng = random.Random(f"{seed}:{doc_id}")
        candidates = [
            i for i in range(1, len(sentences)) if _words(sentences[i]) >= min_query_words
        ]
        if not candidates:
            return None
        index = rng.choice(candidates)
    query = sentences[index]
    rest = " ".join(s for i, s in enumerate(sentences) if i != index)
    if _words(query) < min_query_words or _words(rest) < min_doc_words:
        return None
    return PseudoPair(query, doc_id, kind, rest)
