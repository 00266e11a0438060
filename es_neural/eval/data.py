"""BEIR-format evaluation data: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Readers are the ones tree building uses (:mod:`es_neural.tree.corpus`), so a document's text here
is the text ingestion encodes. Validation queries are carved out of a split deterministically
(:func:`carve_validation`): the same ids, seed and fraction always give the same split, whatever
order the ids come in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from es_neural.errors import InvalidInputError
from es_neural.tree.corpus import Corpus, read_corpus, read_qrels, read_queries

__all__ = ["BeirData", "Qrels", "carve_validation", "load_beir"]

#: query id -> {doc id: relevance grade}
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class BeirData:
    """One BEIR folder: its path, all queries and the qrels of the splits asked for."""

    root: Path
    queries: Mapping[str, str]
    qrels: Mapping[str, Qrels]

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.jsonl"

    @cached_property
    def corpus(self) -> Corpus:
        """Document ids and texts (title and text joined as ingestion does); read on first use."""
        return read_corpus(self.corpus_path)

    def split(self, name: str) -> Qrels:
        try:
            return self.qrels[name]
        except KeyError:
            raise InvalidInputError(
                f"split {name!r} not loaded from {self.root}; loaded: {sorted(self.qrels)}"
            ) from None

    def queries_of(self, qrels: Mapping[str, object]) -> dict[str, str]:
        """Texts of the queries in ``qrels`` (sorted by id); a query without text is an error."""
        missing = sorted(set(qrels) - set(self.queries))
        if missing:
            raise InvalidInputError(f"qrels name queries missing from queries.jsonl: {missing[:5]}")
        return {qid: self.queries[qid] for qid in sorted(qrels)}


def load_beir(root: str | os.PathLike[str], splits: Iterable[str] = ("test",)) -> BeirData:
    """Read ``queries.jsonl`` and ``qrels/<split>.tsv`` for each split (the corpus lazily).

    Qrels rows with grade 0 are kept (ranx treats them as non-relevant).
    """
    folder = Path(root)
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / name).is_file():
            raise InvalidInputError(f"{folder} is not a BEIR folder: {name} is missing")
    qrels: dict[str, Qrels] = {}
    for split in dict.fromkeys(splits):
        path = folder / "qrels" / f"{split}.tsv"
        if not path.is_file():
            raise InvalidInputError(f"no qrels for split {split!r}: {path} is missing")
        qrels[split] = read_qrels(path)
    return BeirData(folder, read_queries(folder / "queries.jsonl"), qrels)


def _rank_key(seed: int, qid: str) -> str:
    return hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()


def carve_validation(
    qrels: Mapping[str, Mapping[str, int]], *, fraction: float = 0.2, seed: int = 13
) -> tuple[Qrels, Qrels]:
    """Split ``qrels`` into (training, validation) by query, deterministically.

    Queries are ordered by ``sha256(f"{seed}:{qid}")`` and the first ``round(fraction * n)``
    (at least one when ``n > 1``) go to validation: the split depends only on the ids, the seed
    and the fraction.
    """
    if not 0.0 < fraction < 1.0:
        raise InvalidInputError(f"fraction must be in (0, 1), got {fraction}")
    ids = sorted(qrels, key=lambda q: _rank_key(seed, q))
    n_val = round(fraction * len(ids))
    if len(ids) > 1:
        n_val = min(max(n_val, 1), len(ids) - 1)
    val = set(ids[:n_val])
    train = {q: dict(qrels[q]) for q in sorted(qrels) if q not in val}
    valid = {q: dict(qrels[q]) for q in sorted(qrels) if q in val}
    return train, valid
