"""Exact offline retrieval over a domain's pool: the three legs, their fusion, nDCG@10, rerank.

Used to mine hard negatives for the reranker and to compare fusions on every labelled domain
(:mod:`es_neural.train.mix`) without an engine:

* ``bm25``: :class:`es_neural.train.bm25.BM25` (english-like analysis, Lucene's BM25);
* ``dense``: the project's :class:`~es_neural.encoders.dense.SentenceTransformerDense`, exact
  cosine (unit vectors, so a dot product) over the whole pool;
* ``sparse``: the project's :class:`~es_neural.encoders.sparse.SpladeEncoder`, exact dot product
  of the query and document term weights (what the engines' ``sparse_vector`` /
  ``neural_sparse`` queries score);
* fusion: :func:`es_neural.search.fusion.fuse` with the options of :data:`FUSIONS`.

nDCG@10 here is the usual one (linear gain ``grade / log2(rank + 1)``, as ranx and trec_eval
compute it), averaged over the queries that have a relevant document; a query with no hits
scores 0. Importing this module loads neither torch nor a model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from es_neural.errors import InvalidInputError
from es_neural.search.fusion import RankedList, fuse
from es_neural.search.rerank import interpolate
from es_neural.train.bm25 import BM25, top_k_rows

__all__ = [
    "DEFAULT_FUSION",
    "FUSIONS",
    "LEGS",
    "FusionSpec",
    "Ranking",
    "bm25_search",
    "dense_search",
    "fuse_chunk",
    "fuse_query",
    "fuse_rankings",
    "ndcg_at_k",
    "ndcg_per_query",
    "rerank_ranking",
    "retrieve_legs",
    "sparse_search",
]

Ranking = dict[str, list[tuple[str, float]]]
LEGS: Final = ("bm25", "dense", "sparse")


@dataclass(frozen=True, slots=True)
class FusionSpec:
    """A named fusion configuration (equal leg weights)."""

    name: str
    method: str
    k: float = 60.0
    normalization: str = "min-max"

    def apply(self, lists: Sequence[RankedList]) -> list[tuple[str, float]]:
        if self.method == "rrf":
            fused = fuse(lists, method="rrf", k=self.k)
        else:
            fused = fuse(lists, method="linear", normalization=self.normalization)
        return fused.head()


FUSIONS: Final[dict[str, FusionSpec]] = {
    s.name: s
    for s in (
        FusionSpec("rrf-10", "rrf", k=10.0),
        FusionSpec("rrf-60", "rrf", k=60.0),
        FusionSpec("linear-minmax", "linear", normalization="min-max"),
        FusionSpec("linear-zscore", "linear", normalization="z-score"),
        FusionSpec("linear-l2", "linear", normalization="l2"),
    )
}
#: The library's out-of-the-box fusion (``FusionConfig``: linear, min-max, equal weights).
DEFAULT_FUSION: Final = "linear-minmax"


# Legs =============================================================================================


def dense_search(
    queries: npt.NDArray[np.float32],
    docs: npt.NDArray[np.float32],
    top_k: int,
    *,
    chunk: int = 1024,
) -> list[list[tuple[int, float]]]:
    """Exact top-``top_k`` by dot product (cosine for unit vectors), best first."""
    out: list[list[tuple[int, float]]] = []
    for start in range(0, len(queries), chunk):
        out.extend(top_k_rows(queries[start : start + chunk] @ docs.T, top_k))
    return out


def _sparse_matrix(
    vectors: Sequence[Mapping[str, float]], vocabulary: dict[str, int], grow: bool
) -> Any:
    from scipy import sparse

    indptr = [0]
    indices: list[int] = []
    values: list[float] = []
    for vector in vectors:
        for token, weight in vector.items():
            column = vocabulary.get(token)
            if column is None:
                if not grow:
                    continue
                column = vocabulary[token] = len(vocabulary)
            indices.append(column)
            values.append(float(weight))
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(values, dtype=np.float32), np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(vectors), max(1, len(vocabulary))),
    )


def sparse_search(
    queries: Sequence[Mapping[str, float]],
    docs: Sequence[Mapping[str, float]],
    top_k: int,
    *,
    chunk: int = 512,
) -> list[list[tuple[int, float]]]:
    """Exact top-``top_k`` by the dot product of term weights; only documents sharing a term."""
    vocabulary: dict[str, int] = {}
    doc_matrix = _sparse_matrix(docs, vocabulary, grow=True)
    doc_t = doc_matrix.T.tocsr()
    query_matrix = _sparse_matrix(queries, vocabulary, grow=False)
    if query_matrix.shape[1] != doc_t.shape[0]:  # pragma: no cover - same vocabulary by build
        raise InvalidInputError("sparse vocabulary mismatch")
    out: list[list[tuple[int, float]]] = []
    for start in range(0, len(queries), chunk):
        scores = (query_matrix[start : start + chunk] @ doc_t).toarray()
        out.extend(top_k_rows(scores, top_k, positive_only=True))
    return out


def bm25_search(
    doc_texts: Sequence[str], query_texts: Sequence[str], depth: int
) -> list[list[tuple[int, float]]]:
    """BM25 top ``depth`` ``(document position, score)`` per query (picklable for a pool)."""
    return BM25(doc_texts).search(query_texts, depth)


def retrieve_legs(
    doc_ids: Sequence[str],
    doc_texts: Sequence[str],
    query_ids: Sequence[str],
    query_texts: Sequence[str],
    *,
    dense: Any | None,
    sparse: Any | None,
    depth: int = 100,
    timings: dict[str, float] | None = None,
    bm25_hits: Sequence[Sequence[tuple[int, float]]] | None = None,
) -> dict[str, Ranking]:
    """``leg -> qid -> [(doc id, score), ...]`` (top ``depth``) for the legs that can run.

    ``dense`` and ``sparse`` are the project's encoders (anything with ``encode_queries`` /
    ``encode_documents``); ``None`` skips that leg. ``bm25_hits`` are :func:`bm25_search`'s
    results when computed elsewhere (another process). ``timings`` receives seconds per step.
    """
    if len(doc_ids) != len(doc_texts) or len(query_ids) != len(query_texts):
        raise InvalidInputError("ids and texts differ in length")
    clock = timings if timings is not None else {}

    def tick(name: str, started: float) -> None:
        clock[name] = clock.get(name, 0.0) + time.perf_counter() - started

    def named(hits: Sequence[Sequence[tuple[int, float]]]) -> Ranking:
        return {
            qid: [(doc_ids[i], s) for i, s in row] for qid, row in zip(query_ids, hits, strict=True)
        }

    legs: dict[str, Ranking] = {}
    t0 = time.perf_counter()
    if bm25_hits is None:
        bm25_hits = bm25_search(doc_texts, query_texts, depth)
    legs["bm25"] = named(bm25_hits)
    tick("bm25", t0)
    if dense is not None:
        t0 = time.perf_counter()
        d = np.asarray(dense.encode_documents(list(doc_texts)), dtype=np.float32)
        q = np.asarray(dense.encode_queries(list(query_texts)), dtype=np.float32)
        tick("dense_encode", t0)
        t0 = time.perf_counter()
        legs["dense"] = named(dense_search(q, d, depth))
        tick("dense_search", t0)
    if sparse is not None:
        t0 = time.perf_counter()
        dv = sparse.encode_documents(list(doc_texts))
        qv = sparse.encode_queries(list(query_texts))
        tick("sparse_encode", t0)
        t0 = time.perf_counter()
        legs["sparse"] = named(sparse_search(qv, dv, depth))
        tick("sparse_search", t0)
    return legs


# Fusion ===========================================================================================


def fuse_query(
    per_leg: Mapping[str, Sequence[tuple[str, float]]], spec: FusionSpec, *, depth: int = 100
) -> list[tuple[str, float]]:
    """One query's legs fused with ``spec`` (each leg cut at ``depth``), top ``depth``."""
    lists = [RankedList.from_scores(leg, list(hits)[:depth]) for leg, hits in per_leg.items()]
    return spec.apply(lists)[:depth]


def fuse_rankings(
    legs: Mapping[str, Ranking],
    spec: FusionSpec,
    *,
    qids: Sequence[str] | None = None,
    depth: int = 100,
) -> Ranking:
    """Every query of ``qids`` (default: all of the first leg) fused with ``spec``."""
    names = list(legs)
    if not names:
        raise InvalidInputError("no legs to fuse")
    wanted = list(qids) if qids is not None else list(legs[names[0]])
    return {
        q: fuse_query({leg: legs[leg].get(q, []) for leg in names}, spec, depth=depth)
        for q in wanted
    }


def fuse_chunk(
    chunk: Mapping[str, Mapping[str, Sequence[tuple[str, float]]]],
    specs: Sequence[str],
    depth: int,
    keep: int,
) -> dict[str, Ranking]:
    """``spec name -> qid -> fused top keep`` for ``qid -> leg -> hits`` (a picklable unit of
    work for a process pool)."""
    out: dict[str, Ranking] = {name: {} for name in specs}
    for qid, per_leg in chunk.items():
        lists = [RankedList.from_scores(leg, list(hits)[:depth]) for leg, hits in per_leg.items()]
        for name in specs:
            out[name][qid] = FUSIONS[name].apply(lists)[:keep]
    return out


# Metrics and rerank ===============================================================================


def ndcg_per_query(
    qrels: Mapping[str, Mapping[str, int]],
    ranking: Mapping[str, Sequence[tuple[str, float]]],
    k: int = 10,
) -> dict[str, float]:
    """nDCG@``k`` of each query of ``qrels`` that has a relevant document (linear gain)."""
    out: dict[str, float] = {}
    for qid, judged in qrels.items():
        ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
        if not ideal:
            continue
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        hits = list(ranking.get(qid, ()))[:k]
        dcg = sum(max(0, judged.get(d, 0)) / math.log2(i + 2) for i, (d, _) in enumerate(hits))
        out[qid] = dcg / idcg
    return out


def ndcg_at_k(
    qrels: Mapping[str, Mapping[str, int]],
    ranking: Mapping[str, Sequence[tuple[str, float]]],
    k: int = 10,
) -> float:
    """Mean nDCG@``k`` over the queries of ``qrels`` with a relevant document."""
    per_query = ndcg_per_query(qrels, ranking, k)
    if not per_query:
        raise InvalidInputError("no query with a relevant document to evaluate")
    return math.fsum(per_query.values()) / len(per_query)


def rerank_ranking(
    ranking: Mapping[str, Sequence[tuple[str, float]]],
    score: Callable[[str, str], float],
    *,
    top_n: int,
    interpolation: float | None = None,
) -> Ranking:
    """Reorder each query's top ``top_n`` by ``score(qid, doc)`` as the searcher does.

    ``interpolation`` ``a`` orders by ``a * minmax(rerank) + (1 - a) * minmax(fused)`` over the
    top-N (ties by fused position), ``None`` by the rerank score alone; the rest keeps its
    place after the head (:func:`es_neural.search.rerank.interpolate`, the searcher's formula).
    """
    out: Ranking = {}
    for qid, hits in ranking.items():
        items = list(hits)
        head, tail = items[:top_n], items[top_n:]
        if not head:
            out[qid] = items
            continue
        final = interpolate([score(qid, d) for d, _ in head], [s for _, s in head], interpolation)
        order = sorted(range(len(head)), key=lambda i: (-final[i], i))
        out[qid] = [(head[i][0], float(final[i])) for i in order] + tail
    return out
