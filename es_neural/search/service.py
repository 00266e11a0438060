"""The read path: query -> encoders -> legs in one multi-search -> fusion -> rerank -> page.

:class:`HybridSearcher` is built once per index (it checks that the query encoders match the
models recorded in the index ``_meta``) and is safe to share between threads: it holds no
per-request state. A search runs four named stages:

* **legs** (:meth:`HybridSearcher._legs`): encode the query, route it to tree leaves when asked,
  send every enabled leg in one multi-search, collect each leg's ranked list;
* **fusion** (:func:`_fuse`): RRF or linear, :mod:`es_neural.search.fusion`;
* **rerank** (:func:`es_neural.search.rerank.rerank_window`, the stage ``es-neural eval`` uses
  too), with the request's options resolved against the settings
  (:func:`es_neural.search.rerank.resolve_rerank`);
* **diversify** (:meth:`HybridSearcher._diversify`, when the request asks for it): MMR over the
  top of the window with the documents' dense vectors, fetched in one engine request
  (:mod:`es_neural.search.diversify`);
* **page / explain** (:meth:`HybridSearcher._page`): fetch the page's fields, explain each hit
  when asked, and write the cursor of the next page.

Pages after the first come from a cursor that freezes the fused (reranked, diversified) order of
the window, so later pages never reshuffle; it keeps what explains the MMR positions too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from es_neural.dialects import jsonio
from es_neural.dialects.base import BaseDialect
from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.encoders.legs import encode_query_legs
from es_neural.errors import EngineError, InvalidInputError
from es_neural.indices import IndexInfo, read_index_info, verify_models
from es_neural.observability import span, traced
from es_neural.protocols import QueryRouter, Reranker, Route
from es_neural.queries import bm25_body, boost_clause, combine_filters, knn_body, sparse_body
from es_neural.search.diversify import diversify_window, explain_steps
from es_neural.search.filters import compile_filter
from es_neural.search.fusion import FusedList, RankedList, fuse
from es_neural.search.models import (
    MAX_WINDOW,
    DiversifyInfo,
    Hit,
    HitExplain,
    LegExplain,
    MmrExplain,
    RerankInfo,
    SearchRequest,
    SearchResponse,
    ShardStats,
    Timings,
    search_request,
)
from es_neural.search.profile import Profile
from es_neural.search.rerank import RerankOutcome, WindowEntry, rerank_window, resolve_rerank
from es_neural.settings import RerankSettings
from es_neural.text import DEFAULT_TEXT_FIELDS, document_text
from es_neural.tree.shards import ShardPlacement

__all__ = ["HybridSearcher", "leg_bodies"]

#: 2: the window's diversification (MMR) is kept too.
_CURSOR_VERSION = 2
#: A cursor inflates to at most this many bytes (a full window of the longest ids fits, with
#: its MMR explanations).
_MAX_CURSOR_BYTES = 2 * MAX_WINDOW * 600


@dataclass(frozen=True, slots=True)
class _LegAnswers:
    """What the legs answered: one ranked list per leg that answered, and how they answered."""

    ranked: tuple[RankedList, ...]
    route: Route | None
    #: Per leg: the engine's total hit count and its relation (``eq``/``gte``).
    totals: dict[str, dict[str, Any]]
    #: Per leg that answered: the engine's shard counts.
    shards: dict[str, ShardStats]
    #: A leg failed, timed out or missed shards.
    partial: bool
    warnings: tuple[str, ...]
    #: The slowest leg's engine-side ``took``.
    took_ms: float
    #: ``_routing`` of the hits that carry one (a leaf-routed index): how to fetch them by id.
    routing: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Retrieved:
    """What retrieval found: the legs' answers and their fusion."""

    legs: _LegAnswers
    fused: FusedList


@dataclass(frozen=True, slots=True)
class _Window:
    """The window in its final order, the leaves it was routed to, and its diversification
    (kept by the cursor)."""

    entries: tuple[WindowEntry, ...]
    leaves: tuple[str, ...] | None
    #: Why each of the top ``len(mmr)`` entries is where it is (MMR); empty: not diversified.
    mmr: tuple[MmrExplain, ...]
    diversify: DiversifyInfo


def _request_key(request: SearchRequest) -> str:
    data = request.model_dump(mode="json", exclude={"cursor", "size", "explain", "source"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _encode_cursor(key: str, offset: int, window: _Window) -> str:
    # Per MMR position: its rank before, its max similarity and the position of that document
    # (relevance and MMR score are computed again from the scores: explain_steps).
    position = {doc_id: i for i, (doc_id, _, _) in enumerate(window.entries[: len(window.mmr)])}
    payload = {
        "v": _CURSOR_VERSION,
        "k": key,
        "o": offset,
        "w": [list(e) for e in window.entries],
        "l": list(window.leaves) if window.leaves is not None else None,
        "d": window.diversify.model_dump(mode="json"),
        "m": [
            [
                s.rank_before,
                s.max_similarity,
                position[s.similar_to] if s.similar_to is not None else None,
            ]
            for s in window.mmr
        ],
    }
    # Level 1: a 1,000-entry window compresses in 1.4 ms instead of 3.4 (level 6), 6% larger.
    raw = zlib.compress(_cursor_json(payload, window), 1)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_json(payload: dict[str, Any], window: _Window) -> bytes:
    """The cursor's JSON: orjson (a 1,000-entry window in 0.08 ms instead of 1.16 with
    :func:`json.dumps`), unless a score is not finite: orjson writes those as ``null``, which
    would not read back, so the standard library writes them (``NaN``, ``Infinity``) instead."""
    floats: list[float] = [score for _, score, _ in window.entries]
    floats += [rerank for _, _, rerank in window.entries if rerank is not None]
    floats += [m.max_similarity for m in window.mmr]
    if all(map(math.isfinite, floats)):
        return orjson.dumps(payload)
    return json.dumps(payload, separators=(",", ":")).encode()


def _decode_cursor(cursor: str, key: str) -> tuple[int, _Window]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        inflater = zlib.decompressobj()
        # Bounded: a forged cursor must not inflate to gigabytes (a zlib bomb).
        data = inflater.decompress(raw, _MAX_CURSOR_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("cursor too large or truncated")
        payload = jsonio.loads(data)
        if payload["v"] != _CURSOR_VERSION:
            raise ValueError("version")
        offset = int(payload["o"])
        entries = tuple(
            (str(d), float(s), None if r is None else float(r)) for d, s, r in payload["w"]
        )
        leaves = payload.get("l")
        if len(entries) > MAX_WINDOW:
            raise ValueError("cursor window too large")
        diversify = DiversifyInfo.model_validate(payload["d"])
        mmr = _decode_mmr(payload["m"], entries, diversify)
    except Exception as exc:
        raise InvalidInputError("cursor is not valid (corrupt or from another version)") from exc
    if payload["k"] != key:
        raise InvalidInputError("cursor belongs to a different query or options")
    if offset < 0 or offset > len(entries):
        raise InvalidInputError("cursor offset is out of range")
    return offset, _Window(entries, tuple(leaves) if leaves is not None else None, mmr, diversify)


def _decode_mmr(
    kept: Any, entries: Sequence[WindowEntry], info: DiversifyInfo
) -> tuple[MmrExplain, ...]:
    """The MMR explanations a cursor keeps (:func:`_encode_cursor`), checked and rebuilt."""
    if not isinstance(kept, list) or len(kept) > len(entries):
        raise ValueError("cursor MMR window")
    if not kept:
        return ()
    if not info.applied or info.lambda_ is None or info.window != len(kept):
        raise ValueError("cursor MMR info")
    steps: list[tuple[int, float, int | None]] = []
    for j, (rank_before, max_similarity, similar) in enumerate(kept):
        rank, sim = int(rank_before), float(max_similarity)
        if not 1 <= rank <= len(kept) or not -1.0 - 1e-6 <= sim <= 1.0 + 1e-6:
            raise ValueError("cursor MMR step")
        if similar is not None and not 0 <= int(similar) < j:
            raise ValueError("cursor MMR step")
        steps.append((rank, sim, None if similar is None else int(similar)))
    return explain_steps(entries, steps, lambda_=info.lambda_)


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
            fields = request.bm25.fields or info.text_fields or DEFAULT_TEXT_FIELDS
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
        bodies[name]["track_total_hits"] = request.track_total_hits
    return bodies


class HybridSearcher:
    """Hybrid search over one es-neural index.

    ``rerank`` holds the rerank options a request leaves unset (its defaults are the
    settings' defaults). A ``profile`` (:mod:`es_neural.search.profile`) comes before them: its
    values fill what a request leaves unset; it is refused when it names other models.
    """

    def __init__(
        self,
        dialect: BaseDialect,
        index: str,
        *,
        dense: DenseEncoder | None,
        sparse: SparseEncoder | None = None,
        reranker: Reranker | None = None,
        router: QueryRouter | None = None,
        rerank: RerankSettings | None = None,
        profile: Profile | None = None,
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
        self.rerank_settings = rerank if rerank is not None else RerankSettings()
        if profile is not None:
            profile.verify(self.info, reranker=reranker)
        self.profile = profile
        #: The leaf placement of a leaf-routed index (:mod:`es_neural.tree.shards`), or ``None``.
        self.placement = ShardPlacement.from_meta(self.info.meta)

    # ----- public -----

    def search(self, request: SearchRequest | str, **options: Any) -> SearchResponse:
        """Search; ``request`` is a :class:`SearchRequest` or the query text, plus options.

        ``options`` are validated as the request's fields are
        (:func:`~es_neural.search.models.search_request`): an unknown name raises
        :class:`~es_neural.errors.InvalidInputError`, a bad value pydantic's ``ValidationError``.
        """
        request = search_request(request, **options)
        if self.profile is not None:  # the profile's defaults, before the settings'
            request = self.profile.apply(request)
        started = time.perf_counter()
        key = _request_key(request)
        timings: dict[str, float] = {}
        if request.cursor is not None:
            offset, window = _decode_cursor(request.cursor, key)
            # A later page: legs and fusion again for the explanation only; the order is frozen.
            retrieved = self._retrieve(request, timings) if request.explain else None
            return self._page(
                request,
                key,
                window,
                offset,
                retrieved=retrieved,
                rerank_info=None,
                timings=timings,
                started=started,
            )
        retrieved = self._retrieve(request, timings)
        outcome = self._rerank(request, retrieved.fused, timings, retrieved.legs)
        entries, mmr, diversify = self._diversify(request, outcome, timings)
        route = retrieved.legs.route
        window = _Window(entries, route.leaf_ids if route is not None else None, mmr, diversify)
        return self._page(
            request,
            key,
            window,
            0,
            retrieved=retrieved,
            rerank_info=outcome.info,
            timings=timings,
            started=started,
        )

    # ----- stages -----

    def _retrieve(self, request: SearchRequest, timings: dict[str, float]) -> _Retrieved:
        """The legs, then their fusion."""
        legs = self._legs(request, timings)
        timings["engine_took_ms"] = legs.took_ms
        return _Retrieved(legs, _fuse(request, legs.ranked, timings))

    def _legs(self, request: SearchRequest, timings: dict[str, float]) -> _LegAnswers:
        """Encode the query, route it, send every enabled leg in one multi-search."""
        legs = self._check_legs(request)
        vector, weights = self._encode(request, legs, timings)
        route, leaf_clause = self._route(request, vector, timings)
        bodies = leg_bodies(
            request,
            dialect=self.dialect,
            info=self.info,
            vector=vector.tolist() if vector is not None else None,
            weights=weights,
            leaf_clause=leaf_clause,
        )
        routing = self._leg_routing(request, route, bodies)
        t0 = time.perf_counter()
        with span("engine", legs=len(bodies)):
            responses = self.dialect.msearch(self.index, list(bodies.values()), routing=routing)
        timings["engine_ms"] = (time.perf_counter() - t0) * 1000
        return _collect(dict(zip(bodies, responses, strict=True)), route)

    def _leg_routing(
        self, request: SearchRequest, route: Route | None, bodies: Mapping[str, Any]
    ) -> list[Sequence[str] | None] | None:
        """On a leaf-routed index, the routing keys of each leg the leaf filter restricts (the
        shards holding the routed leaves' groups); the other legs go to every shard."""
        if self.placement is None or route is None:
            return None
        keys = self.placement.keys_for_route(route)
        if keys is None:
            return None
        return [keys if name in request.tree.apply_to else None for name in bodies]

    def _check_legs(self, request: SearchRequest) -> dict[str, Any]:
        legs = {name: leg for name, leg in request.legs().items() if leg.enabled}
        if "dense" in legs and self.dense is None:
            raise InvalidInputError("the dense leg needs a dense encoder")
        if "sparse" in legs and self.sparse is None:
            raise InvalidInputError("the sparse leg needs a sparse encoder")
        if request.tree.enabled and self.router is None:
            raise InvalidInputError("leaf filtering needs a tree router (none is loaded)")
        if not legs:
            raise InvalidInputError("every leg is disabled")
        return legs

    @traced("encode")
    def _encode(
        self, request: SearchRequest, legs: Mapping[str, Any], timings: dict[str, float]
    ) -> tuple[np.ndarray | None, Mapping[str, float] | None]:
        t0 = time.perf_counter()
        # Both encodings at once on two threads when both are needed (es_neural.encoders.legs).
        vector, weights = encode_query_legs(
            request.query,
            self.dense if "dense" in legs or request.tree.enabled else None,
            self.sparse if "sparse" in legs else None,
        )
        timings["encode_ms"] = (time.perf_counter() - t0) * 1000
        return vector, weights

    @traced("route")
    def _route(
        self, request: SearchRequest, vector: np.ndarray | None, timings: dict[str, float]
    ) -> tuple[Route | None, dict[str, Any] | None]:
        if not request.tree.enabled or self.router is None or vector is None:
            return None, None
        t0 = time.perf_counter()
        route = self.router.route(
            vector,
            threshold=request.tree.threshold,
            min_leaves=request.tree.min_leaves,
            max_leaves=request.tree.max_leaves,
        )
        ids = route.filter_ids or route.leaf_ids
        timings["route_ms"] = (time.perf_counter() - t0) * 1000
        if not request.tree.filter:
            if self.placement is None:
                raise InvalidInputError("tree.filter=false needs a leaf-routed index")
            return route, None  # the legs are restricted by routing= alone
        return route, {"terms": {route.filter_field: sorted(ids)}}

    @traced("rerank")
    def _rerank(
        self,
        request: SearchRequest,
        fused: FusedList,
        timings: dict[str, float],
        legs: _LegAnswers | None = None,
    ) -> RerankOutcome:
        """The rerank stage over the fused window (:mod:`es_neural.search.rerank`)."""
        routing = self._fetch_routing(legs)
        outcome = rerank_window(
            request.query,
            fused.head(request.window),
            reranker=self.reranker,
            plan=resolve_rerank(request.rerank, self.rerank_settings),
            passages=lambda ids: self._passages(ids, routing),
        )
        timings["fetch_ms"] = timings.get("fetch_ms", 0.0) + outcome.fetch_ms
        timings["rerank_ms"] = outcome.rerank_ms
        return outcome

    @traced("diversify")
    def _diversify(
        self, request: SearchRequest, outcome: RerankOutcome, timings: dict[str, float]
    ) -> tuple[tuple[WindowEntry, ...], tuple[MmrExplain, ...], DiversifyInfo]:
        """MMR over the top of the window in its final order (:mod:`es_neural.search.diversify`)
        with the documents' dense vectors, fetched in one engine request; the window as it
        was, with the reason, when the request does not ask for it or it cannot apply."""
        config = request.diversify
        entries = outcome.entries
        if not config.enabled:
            return entries, (), DiversifyInfo(applied=False, reason="disabled by the request")
        t0 = time.perf_counter()
        field = self.info.fields.dense
        if field not in self.info.properties:
            reason = f"index {self.info.concrete!r} has no dense vector field {field!r}"
            return entries, (), DiversifyInfo(applied=False, reason=reason)
        size = min(config.window, len(entries))
        note = None
        if outcome.info.applied and outcome.info.candidates < size:
            size = outcome.info.candidates
            note = (
                f"cut to the {size} reranked candidates: the fused scores below them are on "
                "another scale"
            )
        if size < 2:
            reason = f"{size} hit(s) in the MMR window: nothing to diversify"
            return entries, (), DiversifyInfo(applied=False, reason=reason, note=note)
        ids = [doc_id for doc_id, _, _ in entries[:size]]
        vectors = self.dialect.dense_vectors(self.index, ids, field=field)
        done = diversify_window(entries, vectors, lambda_=config.lambda_, size=size)
        timings["diversify_ms"] = (time.perf_counter() - t0) * 1000
        info = DiversifyInfo(
            applied=True,
            lambda_=config.lambda_,
            window=size,
            missing_vectors=done.missing_vectors,
            note=note,
        )
        return done.entries, done.steps, info

    def _fetch_routing(self, legs: _LegAnswers | None) -> dict[str, str | None] | None:
        """How to fetch hits by id: ``None`` (plain ids) on an unrouted index; on a routed one
        the ``_routing`` the legs saw (ids without one are found by a search by ids)."""
        if self.placement is None:
            return None
        return dict(legs.routing) if legs is not None else {}

    def _passages(
        self, ids: Sequence[str], routing: Mapping[str, str | None] | None = None
    ) -> list[str]:
        """What the reranker reads of each id: what the encoders read (:mod:`es_neural.text`)."""
        fields = list(self.info.text_fields)
        sources = self.dialect.get_documents(
            self.index, list(ids), fields=fields or None, routing=routing
        )
        return [document_text(sources.get(d, {}), fields) for d in ids]

    @traced("fetch")
    def _page(
        self,
        request: SearchRequest,
        key: str,
        window: _Window,
        offset: int,
        *,
        retrieved: _Retrieved | None,
        rerank_info: RerankInfo | None,
        timings: dict[str, float],
        started: float,
    ) -> SearchResponse:
        """One page of the window: its fields, each hit explained when asked, the next cursor."""
        page = window.entries[offset : offset + request.size]
        f = self.info.fields
        source_fields = list(request.source) or list(self.info.text_fields)
        leaf_field = f.leaf_ids if request.explain and window.leaves is not None else None
        extra = [leaf_field] if leaf_field is not None else []
        t0 = time.perf_counter()
        sources = self.dialect.get_documents(
            self.index,
            [d for d, _, _ in page],
            fields=list(dict.fromkeys(source_fields + extra)),
            routing=self._fetch_routing(retrieved.legs if retrieved is not None else None),
        )
        timings["fetch_ms"] = timings.get("fetch_ms", 0.0) + (time.perf_counter() - t0) * 1000
        explainer = (
            _Explainer(request, retrieved, window)
            if request.explain and retrieved is not None
            else None
        )
        hits: list[Hit] = []
        for i, (doc_id, score, rerank_score) in enumerate(page):
            source = dict(sources.get(doc_id, {}))
            doc_leaves = source.pop(leaf_field, None) if leaf_field is not None else None
            explain = (
                explainer.explain(doc_id, rerank_score, doc_leaves, offset + i)
                if explainer is not None
                else None
            )
            hits.append(
                Hit(id=doc_id, rank=offset + i + 1, score=score, source=source, explain=explain)
            )
        next_offset = offset + len(page)
        next_cursor = (
            _encode_cursor(key, next_offset, window) if next_offset < len(window.entries) else None
        )
        legs = retrieved.legs if retrieved is not None else None
        partial = legs.partial if legs is not None else False
        warnings = list(legs.warnings) if legs is not None else []
        missing = [doc_id for doc_id, _, _ in page if doc_id not in sources]
        if missing:
            # gone since the search, or its shard lost meanwhile: the hit is kept without fields
            partial = True
            warnings.append(f"fields of {len(missing)} hit(s) could not be fetched")
        timings["total_ms"] = (time.perf_counter() - started) * 1000
        return SearchResponse(
            hits=hits,
            window_total=len(window.entries),
            leg_totals=legs.totals if legs is not None else {},
            offset=offset,
            next_cursor=next_cursor,
            rerank=rerank_info
            or RerankInfo(applied=any(r is not None for _, _, r in window.entries)),
            timings=Timings(**timings),
            diversify=window.diversify,
            leaves=list(window.leaves) if window.leaves is not None else None,
            partial=partial,
            shards=legs.shards if legs is not None else {},
            warnings=warnings,
        )


def _collect(
    responses: Mapping[str, dict[str, Any] | EngineError], route: Route | None
) -> _LegAnswers:
    """Each leg's ranked list, totals and shard counts; a failed leg becomes a warning (all
    legs failing raises the first failure)."""
    ranked: list[RankedList] = []
    totals: dict[str, dict[str, Any]] = {}
    shards: dict[str, ShardStats] = {}
    warnings: list[str] = []
    partial = False
    took = 0.0
    failures: list[EngineError] = []
    routing: dict[str, str] = {}
    for name, response in responses.items():
        if isinstance(response, EngineError):
            failures.append(response)
            warnings.append(f"leg {name} failed: {response}")
            partial = True
            continue
        took = max(took, float(response.get("took", 0)))
        stats = ShardStats.from_engine(response.get("_shards"))
        shards[name] = stats
        if stats.missing:
            partial = True
            warnings.append(
                f"leg {name}: {stats.missing} of {stats.total} shard(s) did not answer "
                "(results from the shards that answered)"
            )
        if response.get("timed_out"):
            partial = True
            warnings.append(f"leg {name} timed out on the engine")
        hits = response["hits"]["hits"]
        routing.update((h["_id"], h["_routing"]) for h in hits if "_routing" in h)
        ranked.append(RankedList.from_scores(name, [(h["_id"], float(h["_score"])) for h in hits]))
        # no total when the request tracks none: at least the hits returned
        total = response["hits"].get("total") or {"value": len(hits), "relation": "gte"}
        totals[name] = {"value": total["value"], "relation": total["relation"]}
    if failures and len(failures) == len(responses):
        raise failures[0]
    return _LegAnswers(
        tuple(ranked), route, totals, shards, partial, tuple(warnings), took, routing
    )


@traced("fusion")
def _fuse(
    request: SearchRequest, ranked: Sequence[RankedList], timings: dict[str, float]
) -> FusedList:
    """The fusion stage: the legs that answered, weighted as the request says."""
    t0 = time.perf_counter()
    fusion = request.fusion
    legs = request.legs()
    weights = {r.leg: legs[r.leg].weight for r in ranked}
    # Only the window is kept (ranked, reranked, paged and explained): the fused documents
    # below it are counted, not built.
    if fusion.method == "rrf":
        fused = fuse(ranked, method="rrf", weights=weights, k=fusion.k, limit=request.window)
    else:
        fused = fuse(
            ranked,
            method="linear",
            weights=weights,
            normalization=fusion.normalization,
            limit=request.window,
        )
    timings["fusion_ms"] = (time.perf_counter() - t0) * 1000
    return fused


class _Explainer:
    """Builds each hit's :class:`HitExplain` from the retrieval and the window's order."""

    def __init__(self, request: SearchRequest, retrieved: _Retrieved, window: _Window) -> None:
        self.request = request
        self.fused = retrieved.fused
        # The reranker's own rank: by its score among the candidates it scored (the final
        # order differs when the rerank score is interpolated with the fused one).
        scored = sorted(
            ((r, d) for d, _, r in window.entries if r is not None), key=lambda e: -e[0]
        )
        self.rerank_rank = {d: i + 1 for i, (_, d) in enumerate(scored)}
        self.leaves = set(window.leaves) if window.leaves else None
        self.mmr = window.mmr

    def explain(
        self, doc_id: str, rerank_score: float | None, doc_leaves: Any, position: int
    ) -> HitExplain:
        """The explanation of the hit at ``position`` (0-based) of the window."""
        fh = self.fused.get(doc_id)
        legs: dict[str, LegExplain | None] = {}
        for leg_name in self.request.legs():
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
        if leaf_list and self.leaves:
            matched = next((leaf for leaf in leaf_list if leaf in self.leaves), None)
        return HitExplain(
            legs=legs,
            fused_score=fh.score if fh is not None else float("nan"),
            fused_rank=fh.rank if fh is not None else 0,
            fusion=self.fused.method.value,
            rerank_score=rerank_score,
            rerank_rank=self.rerank_rank.get(doc_id),
            leaf_ids=leaf_list,
            matched_leaf=matched,
            mmr=self.mmr[position] if position < len(self.mmr) else None,
        )
