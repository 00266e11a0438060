"""The read path: query -> encoders -> legs in one multi-search -> fusion -> rerank -> page.

:class:`HybridSearcher` is built once per index (it checks that the query encoders match the
models recorded in the index ``_meta``) and is safe to share between threads: it holds no
per-request state. Pages after the first come from a cursor that freezes the fused (and
reranked) order of the window, so later pages never reshuffle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from es_neural.dialects.base import BaseDialect
from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.errors import EngineError, InvalidInputError
from es_neural.indices import IndexInfo, read_index_info, verify_models
from es_neural.queries import bm25_body, boost_clause, combine_filters, knn_body, sparse_body
from es_neural.search.filters import compile_filter
from es_neural.search.fusion import FusedList, Normalization, RankedList, fuse, normalize
from es_neural.search.models import (
    MAX_WINDOW,
    Hit,
    HitExplain,
    LegExplain,
    RerankInfo,
    SearchRequest,
    SearchResponse,
    ShardStats,
    Timings,
)
from es_neural.search.protocols import QueryRouter, Reranker, Route

__all__ = ["HybridSearcher", "leg_bodies"]

_CURSOR_VERSION = 1
#: A cursor inflates to at most this many bytes (a full window of the longest ids fits).
_MAX_CURSOR_BYTES = 2 * MAX_WINDOW * 600

#: What retrieval found: fused list, route, per-leg totals, partial, warnings, per-leg shards.
_Retrieved = tuple[
    FusedList,
    Route | None,
    dict[str, dict[str, Any]],
    bool,
    list[str],
    dict[str, ShardStats],
]


@dataclass(frozen=True, slots=True)
class _Ranked:
    """The window in its final order: (doc_id, final score, rerank score or None)."""

    entries: tuple[tuple[str, float, float | None], ...]


def _request_key(request: SearchRequest) -> str:
    data = request.model_dump(mode="json", exclude={"cursor", "size", "explain", "source"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _encode_cursor(key: str, offset: int, ranked: _Ranked, leaves: Sequence[str] | None) -> str:
    payload = {
        "v": _CURSOR_VERSION,
        "k": key,
        "o": offset,
        "w": [list(e) for e in ranked.entries],
        "l": list(leaves) if leaves is not None else None,
    }
    raw = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, key: str) -> tuple[int, _Ranked, list[str] | None]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        inflater = zlib.decompressobj()
        # Bounded: a forged cursor must not inflate to gigabytes (a zlib bomb).
        data = inflater.decompress(raw, _MAX_CURSOR_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("cursor too large or truncated")
        payload = json.loads(data)
        if payload["v"] != _CURSOR_VERSION:
            raise ValueError("version")
        offset = int(payload["o"])
        entries = tuple(
            (str(d), float(s), None if r is None else float(r)) for d, s, r in payload["w"]
        )
        leaves = payload.get("l")
        if len(entries) > MAX_WINDOW:
            raise ValueError("cursor window too large")
    except Exception as exc:
        raise InvalidInputError("cursor is not valid (corrupt or from another version)") from exc
    if payload["k"] != key:
        raise InvalidInputError("cursor belongs to a different query or options")
    if offset < 0 or offset > len(entries):
        raise InvalidInputError("cursor offset is out of range")
    return offset, _Ranked(entries), leaves


def leg_bodies(
    request: SearchRequest,
    *,
    dialect: BaseDialect,
    info: IndexInfo,
    vector: Sequence[float] | None,
    weights: Mapping[str, float] | None,
    leaf_clause: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The engine body of every enabled leg of ``request``: pure, no encoder or engine call.

    What the client wrote reaches these bodies only as the BM25 query text, as filter values
    (under field names checked by :func:`~es_neural.search.filters.compile_filter`) and as the
    BM25 field names it lists (checked by :class:`~es_neural.search.models.BM25Leg`, and never
    one of es-neural's own fields). The kNN leg gets the query's vector and the sparse leg the
    encoder's cleaned tokens, never the text itself.
    """
    f = info.fields
    user = compile_filter(request.filter, denied_fields=(f.dense, f.sparse, f.content_hash))
    own = set(f.neural())
    bodies: dict[str, dict[str, Any]] = {}
    for name, leg in request.legs().items():
        if not leg.enabled:
            continue
        restricted = name in request.tree.apply_to
        leg_filter = combine_filters(user, leaf_clause if restricted else None)
        leg_boost = (
            boost_clause(leaf_clause, request.tree.boost)
            if leaf_clause is not None and not restricted and request.tree.boost > 0
            else None
        )
        if name == "bm25":
            named = [field.partition("^")[0] for field in request.bm25.fields]
            if own.intersection(named):
                raise InvalidInputError(
                    f"bm25.fields: {sorted(own.intersection(named))} are es-neural's own fields, "
                    "not text"
                )
            fields = request.bm25.fields or info.text_fields or ("title", "text")
            bodies[name] = bm25_body(
                request.query, fields=fields, size=leg.k, filter=leg_filter, boost=leg_boost
            )
        elif name == "dense":
            if vector is None:
                raise InvalidInputError("the dense leg needs a query vector")
            bodies[name] = knn_body(
                dialect,
                vector,
                field=f.dense,
                k=leg.k,
                num_candidates=request.dense.num_candidates,
                filter=leg_filter,
            )
            bodies[name]["track_total_hits"] = True
        else:
            bodies[name] = sparse_body(
                dialect,
                weights or {},
                field=f.sparse,
                size=leg.k,
                filter=leg_filter,
                top_k=request.sparse.max_terms,
                boost=leg_boost,
            )
    return bodies


class HybridSearcher:
    """Hybrid search over one es-neural index."""

    def __init__(
        self,
        dialect: BaseDialect,
        index: str,
        *,
        dense: DenseEncoder | None,
        sparse: SparseEncoder | None = None,
        reranker: Reranker | None = None,
        router: QueryRouter | None = None,
        rerank_top_n: int = 50,
        rerank_budget_ms: float = 2000.0,
        rerank_batch_size: int = 32,
    ) -> None:
        self.dialect = dialect
        self.index = index
        self.info: IndexInfo = read_index_info(dialect, index)
        verify_models(
            self.info,
            dense=dense.fingerprint if dense is not None else None,
            sparse=sparse.fingerprint if sparse is not None else None,
            tree_version=router.tree_version if router is not None else None,
        )
        self.dense = dense
        self.sparse = sparse
        self.reranker = reranker
        self.router = router
        self.rerank_top_n = rerank_top_n
        self.rerank_budget_ms = rerank_budget_ms
        self.rerank_batch_size = rerank_batch_size

    # ----- public -----

    def search(self, request: SearchRequest | str, **options: Any) -> SearchResponse:
        """Search; ``request`` is a :class:`SearchRequest` or the query text plus options."""
        if isinstance(request, str):
            request = SearchRequest(query=request, **options)
        elif options:
            request = request.model_copy(update=options)
        started = time.perf_counter()
        key = _request_key(request)
        if request.cursor is not None:
            offset, ranked, leaves = _decode_cursor(request.cursor, key)
            return self._page(request, key, ranked, offset, leaves, started, explained=None)
        timings: dict[str, float] = {}
        explained = self._retrieve(request, timings)
        fused, route = explained[0], explained[1]
        ranked, rerank_info = self._rerank(request, fused, timings)
        leaves = list(route.leaf_ids) if route is not None else None
        return self._page(
            request,
            key,
            ranked,
            0,
            leaves,
            started,
            explained=explained,
            timings=timings,
            rerank_info=rerank_info,
        )

    # ----- stages -----

    def _retrieve(self, request: SearchRequest, timings: dict[str, float]) -> _Retrieved:
        legs = {name: leg for name, leg in request.legs().items() if leg.enabled}
        if "dense" in legs and self.dense is None:
            raise InvalidInputError("the dense leg needs a dense encoder")
        if "sparse" in legs and self.sparse is None:
            raise InvalidInputError("the sparse leg needs a sparse encoder")
        if request.tree.enabled and self.router is None:
            raise InvalidInputError("leaf filtering needs a tree router (none is loaded)")
        if not legs:
            raise InvalidInputError("every leg is disabled")
        t0 = time.perf_counter()
        vector: np.ndarray | None = None
        if self.dense is not None and ("dense" in legs or request.tree.enabled):
            vector = np.asarray(self.dense.encode_queries([request.query])[0], dtype=np.float32)
        weights: Mapping[str, float] | None = None
        if "sparse" in legs and self.sparse is not None:
            weights = self.sparse.encode_queries([request.query])[0]
        timings["encode_ms"] = (time.perf_counter() - t0) * 1000
        route: Route | None = None
        leaf_clause: dict[str, Any] | None = None
        if request.tree.enabled and self.router is not None and vector is not None:
            t1 = time.perf_counter()
            route = self.router.route(
                vector,
                threshold=request.tree.threshold,
                min_leaves=request.tree.min_leaves,
                max_leaves=request.tree.max_leaves,
            )
            ids = route.filter_ids or route.leaf_ids
            leaf_clause = {"terms": {route.filter_field: sorted(ids)}}
            timings["route_ms"] = (time.perf_counter() - t1) * 1000
        bodies = leg_bodies(
            request,
            dialect=self.dialect,
            info=self.info,
            vector=vector.tolist() if vector is not None else None,
            weights=weights,
            leaf_clause=leaf_clause,
        )
        t2 = time.perf_counter()
        responses = self.dialect.msearch(self.index, list(bodies.values()))
        timings["engine_ms"] = (time.perf_counter() - t2) * 1000
        ranked: list[RankedList] = []
        leg_totals: dict[str, dict[str, Any]] = {}
        leg_shards: dict[str, ShardStats] = {}
        warnings: list[str] = []
        partial = False
        took = 0.0
        failures: list[EngineError] = []
        for name, response in zip(bodies, responses, strict=True):
            if isinstance(response, EngineError):
                failures.append(response)
                warnings.append(f"leg {name} failed: {response}")
                partial = True
                continue
            took = max(took, float(response.get("took", 0)))
            shards = ShardStats.from_engine(response.get("_shards"))
            leg_shards[name] = shards
            if shards.missing:
                partial = True
                warnings.append(
                    f"leg {name}: {shards.missing} of {shards.total} shard(s) did not answer "
                    "(results from the shards that answered)"
                )
            if response.get("timed_out"):
                partial = True
                warnings.append(f"leg {name} timed out on the engine")
            hits = response["hits"]["hits"]
            ranked.append(
                RankedList.from_scores(name, [(h["_id"], float(h["_score"])) for h in hits])
            )
            total = response["hits"].get("total") or {"value": len(hits), "relation": "eq"}
            leg_totals[name] = {"value": total["value"], "relation": total["relation"]}
        if failures and len(failures) == len(bodies):
            raise failures[0]
        timings["engine_took_ms"] = took
        t3 = time.perf_counter()
        fusion = request.fusion
        weights_by_leg = {name: legs[name].weight for name in (r.leg for r in ranked)}
        if fusion.method == "rrf":
            fused = fuse(ranked, method="rrf", weights=weights_by_leg, k=fusion.k)
        else:
            fused = fuse(
                ranked,
                method="linear",
                weights=weights_by_leg,
                normalization=fusion.normalization,
            )
        timings["fusion_ms"] = (time.perf_counter() - t3) * 1000
        return fused, route, leg_totals, partial, warnings, leg_shards

    def _texts(self, ids: Sequence[str], extra: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        fields = list(dict.fromkeys([*self.info.text_fields, *extra]))
        return self.dialect.get_documents(self.index, list(ids), fields=fields or None)

    def _passage(self, source: Mapping[str, Any]) -> str:
        parts = [str(source[f]).strip() for f in self.info.text_fields if source.get(f)]
        return "\n".join(p for p in parts if p)

    def _rerank(
        self, request: SearchRequest, fused: FusedList, timings: dict[str, float]
    ) -> tuple[_Ranked, RerankInfo]:
        window = fused.hits[: request.window]
        plain = _Ranked(tuple((h.doc_id, h.score, None) for h in window))
        wanted = request.rerank.enabled
        if wanted is False:
            return plain, RerankInfo(applied=False, reason="disabled by the request")
        if self.reranker is None:
            reason = (
                "no reranker configured (set ES_NEURAL_RERANK__MODEL to a CrossEncoder path or "
                "hub id, or 'embedded' for the project's trained reranker)"
            )
            return plain, RerankInfo(applied=False, reason=reason)
        top_n = min(request.rerank.top_n or self.rerank_top_n, len(window))
        if top_n == 0:
            return plain, RerankInfo(applied=False, reason="no candidates")
        budget_ms = request.rerank.budget_ms or self.rerank_budget_ms
        t0 = time.perf_counter()
        candidates = [h.doc_id for h in window[:top_n]]
        sources = self._texts(candidates)
        timings["fetch_ms"] = timings.get("fetch_ms", 0.0) + (time.perf_counter() - t0) * 1000
        passages = [self._passage(sources.get(d, {})) for d in candidates]
        truncated = sum(
            1
            for n in self.reranker.token_lengths(request.query, passages)
            if n > self.reranker.max_length
        )
        scores: list[float] = []
        t1 = time.perf_counter()
        step = self.rerank_batch_size
        over_budget = False
        for start in range(0, len(passages), step):
            scores.extend(self.reranker.score(request.query, passages[start : start + step]))
            if (time.perf_counter() - t0) * 1000 > budget_ms and start + step < len(passages):
                over_budget = True
                break
        timings["rerank_ms"] = (time.perf_counter() - t1) * 1000
        if over_budget:
            info = RerankInfo(
                applied=False,
                reason=f"rerank exceeded its {budget_ms:.0f} ms budget: fused order kept",
                model=self.reranker.name,
                candidates=top_n,
                truncated=truncated,
            )
            return plain, info
        alpha = request.rerank.interpolation
        if alpha is None:  # the model's own validated weight, if it ships one
            alpha = getattr(self.reranker, "interpolation", None)
        if alpha is None:
            final = [float(s) for s in scores]
        else:
            rerank_norm = normalize(scores, Normalization.MINMAX)
            fused_norm = normalize((h.score for h in window[:top_n]), Normalization.MINMAX)
            final = [
                alpha * r + (1.0 - alpha) * f for r, f in zip(rerank_norm, fused_norm, strict=True)
            ]
        order = sorted(range(top_n), key=lambda i: (-final[i], i))
        head = tuple((candidates[i], final[i], float(scores[i])) for i in order)
        tail = tuple((h.doc_id, h.score, None) for h in window[top_n:])
        info = RerankInfo(
            applied=True, model=self.reranker.name, candidates=top_n, truncated=truncated
        )
        return _Ranked(head + tail), info

    def _page(
        self,
        request: SearchRequest,
        key: str,
        ranked: _Ranked,
        offset: int,
        leaves: Sequence[str] | None,
        started: float,
        *,
        explained: _Retrieved | None,
        timings: dict[str, float] | None = None,
        rerank_info: RerankInfo | None = None,
    ) -> SearchResponse:
        timings = dict(timings or {})
        if explained is None and request.explain:
            # A later page: recompute legs and fusion for the explanation; the order stays frozen.
            explained = self._retrieve(request, timings)
        page = ranked.entries[offset : offset + request.size]
        source_fields = list(request.source) or list(self.info.text_fields)
        f = self.info.fields
        extra = [f.leaf_ids] if request.explain and leaves is not None else []
        t0 = time.perf_counter()
        sources = self.dialect.get_documents(
            self.index, [d for d, _, _ in page], fields=list(dict.fromkeys(source_fields + extra))
        )
        timings["fetch_ms"] = timings.get("fetch_ms", 0.0) + (time.perf_counter() - t0) * 1000
        fused_by_id = {h.doc_id: h for h in explained[0]} if explained is not None else {}
        rerank_rank = {d: i + 1 for i, (d, _, r) in enumerate(ranked.entries) if r is not None}
        hits: list[Hit] = []
        for i, (doc_id, score, rerank_score) in enumerate(page):
            source = dict(sources.get(doc_id, {}))
            doc_leaves = source.pop(f.leaf_ids, None) if extra else None
            explain = None
            if request.explain and explained is not None:
                fused_list = explained[0]
                fh = fused_by_id.get(doc_id)
                legs: dict[str, LegExplain | None] = {}
                for leg_name in request.legs():
                    c = fh.legs.get(leg_name) if fh is not None else None
                    legs[leg_name] = (
                        LegExplain(
                            score=c.raw_score,
                            rank=c.rank,
                            normalized=c.normalized_score,
                            contribution=c.contribution,
                        )
                        if c is not None
                        else None
                    )
                leaf_list = list(doc_leaves) if isinstance(doc_leaves, list) else None
                matched = None
                if leaf_list and leaves:
                    matched = next((leaf for leaf in leaf_list if leaf in set(leaves)), None)
                explain = HitExplain(
                    legs=legs,
                    fused_score=fh.score if fh is not None else float("nan"),
                    fused_rank=fh.rank if fh is not None else 0,
                    fusion=fused_list.method.value,
                    rerank_score=rerank_score,
                    rerank_rank=rerank_rank.get(doc_id),
                    leaf_ids=leaf_list,
                    matched_leaf=matched,
                )
            hits.append(
                Hit(id=doc_id, rank=offset + i + 1, score=score, source=source, explain=explain)
            )
        next_offset = offset + len(page)
        next_cursor = (
            _encode_cursor(key, next_offset, ranked, leaves)
            if next_offset < len(ranked.entries)
            else None
        )
        timings["total_ms"] = (time.perf_counter() - started) * 1000
        leg_totals = explained[2] if explained is not None else {}
        partial = explained[3] if explained is not None else False
        warnings = list(explained[4]) if explained is not None else []
        leg_shards = explained[5] if explained is not None else {}
        missing = [doc_id for doc_id, _, _ in page if doc_id not in sources]
        if missing:
            # gone since the search, or its shard lost meanwhile: the hit is kept without fields
            partial = True
            warnings.append(f"fields of {len(missing)} hit(s) could not be fetched")
        return SearchResponse(
            hits=hits,
            window_total=len(ranked.entries),
            leg_totals=leg_totals,
            offset=offset,
            next_cursor=next_cursor,
            rerank=rerank_info
            or RerankInfo(applied=any(r is not None for _, _, r in ranked.entries)),
            timings=Timings(**timings),
            leaves=list(leaves) if leaves is not None else None,
            partial=partial,
            shards=leg_shards,
            warnings=warnings,
        )
