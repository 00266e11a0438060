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

:func:`pseudo_training_set` turns a corpus file into what ``es-neural train reranker
--pseudo-queries KIND`` (and ``train dense``) train on in place of judgments: queries, training
and validation qrels (carved as :func:`es_neural.eval.data.carve_validation` carves a labelled
split) and the text each document is trained as.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from es_neural.errors import InvalidInputError

__all__ = [
    "DEFAULT_PSEUDO_LIMIT",
    "KINDS",
    "MIN_PSEUDO_PAIRS",
    "PseudoKind",
    "PseudoPair",
    "PseudoSet",
    "build_pseudo_pairs",
    "pseudo_training_set",
    "split_sentences",
]

PseudoKind = Literal["title", "lead", "ict"]
KINDS: Final[tuple[PseudoKind, ...]] = ("title", "lead", "ict")

#: Pairs trained on when nothing else is said (drawn by a hash of the document id and seed).
DEFAULT_PSEUDO_LIMIT: Final = 1000
#: Fewer pairs than this are refused: too few to train on and validate with.
MIN_PSEUDO_PAIRS: Final = 20

#: What each kind asks for (in messages and the model card).
KIND_NOTES: Final[dict[str, str]] = {
    "title": "a document's title asks for its body",
    "lead": "the body's first sentence asks for the rest of the body",
    "ict": "a sentence other than the first asks for the body without it (inverse cloze)",
}

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


@dataclass(frozen=True)
class PseudoSet:
    """Pseudo-labelled training data from a corpus: what replaces queries.jsonl and qrels.

    ``texts`` holds the text every document of the corpus is *trained* as: a document with a pair
    in the set as its :attr:`PseudoPair.text` (the part that became its query removed, so it is
    the same text whether it is the positive of its own query or a negative of another's), any
    other as its body (without the title, as every paired text is). The index keeps the stored
    documents; only training and validation see ``texts``.
    """

    kind: PseudoKind
    corpus: Path
    documents: int
    #: Pairs the corpus gave before ``limit`` (after dropping queries shared by documents).
    built: int
    limit: int | None
    seed: int
    queries: dict[str, str]
    train: dict[str, dict[str, int]]
    validation: dict[str, dict[str, int]]
    texts: dict[str, str] = field(repr=False)
    val_fraction: float = 0.2

    @property
    def used(self) -> int:
        return len(self.train) + len(self.validation)

    def facts(self) -> dict[str, Any]:
        """What the model card records about the data."""
        return {
            "kind": self.kind,
            "asks": KIND_NOTES[self.kind],
            "corpus": str(self.corpus),
            "corpus_documents": self.documents,
            "pairs_built": self.built,
            "pairs_used": self.used,
            "limit": self.limit,
            "training_queries": len(self.train),
            "validation_queries": len(self.validation),
            "validation_carve": {"fraction": self.val_fraction, "seed": self.seed},
            "judgments": "none (no queries or qrels were read)",
        }


def _draw_key(seed: int, doc_id: str) -> str:
    return hashlib.sha256(f"{seed}:{doc_id}".encode()).hexdigest()


def _why_few(
    kind: PseudoKind, triples: Sequence[tuple[str, str | None, str]], min_q: int, min_doc: int
) -> str:
    if kind == "title":
        titled = [b for _, t, b in triples if _words(t or "") >= min_q]
        bodies = sum(1 for b in titled if _words(b) >= min_doc)
        return (
            f"A pair needs a title of at least {min_q} words and a body of at least {min_doc}: "
            f"{len(titled)} documents have such a title, {bodies} of them such a body"
        )
    multi = sum(1 for _, _, b in triples if len(split_sentences(b)) >= 2)
    return (
        f"A pair needs a body of two or more sentences, one of at least {min_q} words taken as "
        f"the query and {min_doc} words left: {multi} documents have two or more sentences"
    )


def pseudo_training_set(
    corpus: str | os.PathLike[str],
    kind: PseudoKind,
    *,
    limit: int | None = DEFAULT_PSEUDO_LIMIT,
    seed: int = 13,
    val_fraction: float = 0.2,
    min_pairs: int = MIN_PSEUDO_PAIRS,
    min_query_words: int = 3,
    min_doc_words: int = 10,
) -> PseudoSet:
    """Pseudo-queries of ``kind`` over the JSONL ``corpus`` (fields ``title`` and ``text``).

    At most ``limit`` pairs are kept (``None``: all), drawn by ``sha256(seed:doc id)``; their
    queries are named ``<kind>:<doc id>`` and carved into training and validation by
    :func:`~es_neural.eval.data.carve_validation` (``val_fraction``, ``seed``). Fewer than
    ``min_pairs`` pairs is an :class:`InvalidInputError` that says how many and why.
    """
    from es_neural.eval.data import carve_validation
    from es_neural.tree.corpus import read_titled_corpus

    if kind not in KINDS:
        raise InvalidInputError(f"pseudo-query kind must be one of {list(KINDS)}, got {kind!r}")
    if limit is not None and limit < 1:
        raise InvalidInputError(f"the pseudo-pair limit must be >= 1, got {limit}")
    path = Path(corpus)
    if not path.is_file():
        raise InvalidInputError(f"no corpus to build pseudo-queries from: {path} is missing")
    triples = read_titled_corpus(path)
    pairs = build_pseudo_pairs(
        triples,
        kinds=(kind,),
        seed=seed,
        min_query_words=min_query_words,
        min_doc_words=min_doc_words,
    )
    floor = max(min_pairs, 2)
    if len(pairs) < floor:
        raise InvalidInputError(
            f"{path}: {kind!r} pseudo-queries ({KIND_NOTES[kind]}) gave {len(pairs)} pairs from "
            f"{len(triples)} documents; training needs at least {floor}. "
            f"{_why_few(kind, triples, min_query_words, min_doc_words)}. "
            f"Try another kind ({', '.join(k for k in KINDS if k != kind)})."
        )
    chosen = sorted(pairs, key=lambda p: _draw_key(seed, p.doc_id))
    if limit is not None:
        chosen = chosen[:limit]
    qrels = {f"{kind}:{p.doc_id}": {p.doc_id: 1} for p in chosen}
    train, validation = carve_validation(qrels, fraction=val_fraction, seed=seed)
    texts = {doc_id: _SPACES.sub(" ", body).strip() or title for doc_id, title, body in triples}
    texts.update({p.doc_id: p.text for p in chosen})
    return PseudoSet(
        kind=kind,
        corpus=path,
        documents=len(triples),
        built=len(pairs),
        limit=limit,
        seed=seed,
        queries={f"{kind}:{p.doc_id}": p.query for p in chosen},
        train=train,
        validation=validation,
        texts=texts,
        val_fraction=val_fraction,
    )
