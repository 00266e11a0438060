"""Rankings as others read them: BEIR's ``ignore_identical_ids`` and TREC run files.

:func:`drop_identical_ids` is what BEIR's ``EvaluateRetrieval.evaluate(...,
ignore_identical_ids=True)`` and MTEB do for datasets whose queries are themselves corpus
documents (ArguAna, Quora): a hit whose id is the query's id is removed before scoring, so a
query is never counted as its own hit.

:func:`write_trec_run` writes one configuration's ranking in the six-column TREC format
(``qid Q0 docid rank score tag``) that ``trec_eval``, ranx and pyserini read. The score column is
rank-derived (``n - position``, as :func:`~es_neural.eval.runner.to_ranx_run` gives ranx), so a
tool that sorts by score, breaking ties its own way (``trec_eval`` by document id), reads exactly
the order that was evaluated.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from es_neural.errors import InvalidInputError

__all__ = ["drop_identical_ids", "run_file_name", "write_trec_run"]

#: query id -> hits best first, as (doc id, score)
_Ranking = Mapping[str, Sequence[tuple[str, float]]]


def drop_identical_ids(ranking: _Ranking) -> dict[str, list[tuple[str, float]]]:
    """``ranking`` without the hits whose document id is the query's own id (a new value)."""
    return {qid: [hit for hit in hits if hit[0] != qid] for qid, hits in ranking.items()}


def run_file_name(config_name: str) -> str:
    """A file name (and TREC run tag) for a configuration: ``BM25 + dense (RRF)`` ->
    ``bm25-dense-rrf.trec``."""
    slug = re.sub(r"[^a-z0-9.]+", "-", config_name.lower()).strip("-.")
    if not slug:
        raise InvalidInputError(f"configuration name {config_name!r} gives no file name")
    return f"{slug}.trec"


def write_trec_run(ranking: _Ranking, path: str | os.PathLike[str], *, tag: str) -> Path:
    """Write ``ranking`` to ``path`` as a TREC run (queries in id order, hits in rank order)."""
    if not tag or any(c.isspace() for c in tag):
        raise InvalidInputError(f"a TREC run tag has no spaces, got {tag!r}")
    lines = []
    for qid in sorted(ranking):
        if any(c.isspace() for c in qid):
            raise InvalidInputError(f"query id {qid!r} has a space: not writable as a TREC run")
        hits = ranking[qid]
        for rank, (doc, _) in enumerate(hits, start=1):
            if any(c.isspace() for c in doc):
                raise InvalidInputError(f"document id {doc!r} has a space: not a TREC run")
            lines.append(f"{qid} Q0 {doc} {rank} {len(hits) - rank + 1} {tag}\n")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines), encoding="utf-8")
    return out
