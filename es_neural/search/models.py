"""Search requests and responses: validated, immutable, JSON-ready (shared by library and API).

Each retriever has its own small config (no flattened ``top_k_bm25``/``filters_bm25`` soup); the
limits here are the API's limits too.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from es_neural.errors import InvalidInputError
from es_neural.search.filters import compile_filter, is_field_name

__all__ = [
    "BM25Leg",
    "DenseLeg",
    "DiversifyConfig",
    "DiversifyInfo",
    "FusionConfig",
    "Hit",
    "HitExplain",
    "LegExplain",
    "MmrExplain",
    "RerankConfig",
    "RerankInfo",
    "SearchRequest",
    "SearchResponse",
    "ShardStats",
    "SparseLeg",
    "Timings",
    "TreeConfig",
    "search_request",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
MAX_WINDOW = 1000
#: Field names a request may list (BM25 fields, returned fields).
MAX_FIELDS = 64
_BOOST = re.compile(r"\^[0-9]{1,4}(\.[0-9]{1,4})?")
#: The MMR weight is ``lambda`` in JSON (a Python keyword, hence ``lambda_`` in Python).
_LAMBDA = AliasChoices("lambda", "lambda_")


def _field_names(values: tuple[str, ...], *, boost: bool) -> tuple[str, ...]:
    """``values`` if every one is a plain field name (``name^boost`` where ``boost``)."""
    if len(values) > MAX_FIELDS:
        raise ValueError(f"at most {MAX_FIELDS} fields")
    for value in values:
        name, caret, weight = value.partition("^")
        if not is_field_name(name) or name.startswith("_"):
            raise ValueError(
                f"{value[:140]!r} is not a field name (letters, digits, _ . - @; no wildcards)"
            )
        if caret and (not boost or _BOOST.fullmatch(caret + weight) is None):
            raise ValueError(f"{value[:140]!r}: a boost is written name^2 or name^0.5")
    return values


class _Leg(BaseModel):
    model_config = _FROZEN

    enabled: bool = True
    #: How many hits this leg contributes to fusion.
    k: int = Field(default=100, ge=1, le=MAX_WINDOW)
    weight: float = Field(default=1.0, ge=0.0, le=1000.0, allow_inf_nan=False)


class BM25Leg(_Leg):
    #: Fields with optional boosts (``title^2``); empty means the index's encoded text fields.
    fields: tuple[str, ...] = ()

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _field_names(value, boost=True)


class DenseLeg(_Leg):
    num_candidates: int = Field(default=200, ge=1, le=10_000)


class SparseLeg(_Leg):
    #: Query terms kept (by weight); ``None`` keeps the encoder's own query top-k.
    max_terms: int | None = Field(default=None, ge=1, le=1024)


class TreeConfig(BaseModel):
    model_config = _FROZEN

    enabled: bool = False
    #: Route to leaves until their cumulative probability reaches this (with ``min_leaves``).
    threshold: float = Field(default=0.9, gt=0.0, le=1.0)
    min_leaves: int = Field(default=1, ge=1, le=1000)
    max_leaves: int = Field(default=16, ge=1, le=1000)
    #: Legs the leaf filter restricts (the dense kNN by default).
    apply_to: tuple[Literal["bm25", "dense", "sparse"], ...] = ("dense",)
    #: Added to the raw score of documents in the routed leaves on the BM25 and SPLADE legs
    #: that ``apply_to`` does not restrict (0: off). Documents outside the leaves still match.
    boost: float = Field(default=0.0, ge=0.0, le=1000.0)
    #: ``False``: on a leaf-routed index, the ``apply_to`` legs search the whole shards of the
    #: routed leaves' groups (``routing=`` only) instead of filtering on the leaves: coarser,
    #: higher recall, no filtered graph search (:mod:`es_neural.tree.shards`).
    filter: bool = True


class FusionConfig(BaseModel):
    model_config = _FROZEN

    #: Linear fusion of min-max normalised leg scores with equal weights: the most robust
    #: untuned fusion over the five labelled domains measured (README "Default fusion"); RRF
    #: (k 60) scored below it on every one of them.
    method: Literal["rrf", "linear"] = "linear"
    k: float = Field(default=60.0, gt=0.0, le=10_000.0)
    normalization: Literal["minmax", "zscore", "l2", "none"] = "minmax"


class RerankConfig(BaseModel):
    model_config = _FROZEN

    #: ``None``: rerank when a reranker is configured (settings); ``False``: never.
    enabled: bool | None = None
    #: ``None`` (here and for ``budget_ms``): the settings' value (``ES_NEURAL_RERANK__TOP_N``,
    #: ``..._BUDGET_MS``), applied by :func:`es_neural.search.rerank.resolve_rerank`.
    top_n: int | None = Field(default=None, ge=1, le=MAX_WINDOW)
    budget_ms: float | None = Field(default=None, gt=0.0, le=600_000.0)
    #: ``None``: the model's own validated weight when it ships one, else the reranked top-N is
    #: ordered by the rerank score alone. A weight ``a`` orders
    #: it by ``a * minmax(rerank) + (1 - a) * minmax(fused)``, both normalised over the top-N
    #: (interpolating with the first stage, a well-known trick for small rerankers).
    interpolation: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)


class DiversifyConfig(BaseModel):
    """Maximal marginal relevance (MMR) over the top ``window`` of the final order
    (:mod:`es_neural.search.diversify`): each position in turn takes the document with the
    highest ``lambda * relevance - (1 - lambda) * max cosine to the documents placed above it``;
    relevance is the final score (after rerank) min-max normalised over those documents.

    JSON writes the weight as ``lambda`` (Python: ``lambda_``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", serialize_by_alias=True)

    enabled: bool = False
    #: 1.0 keeps the relevance order, 0.0 orders by dissimilarity alone; 0.7 leans on relevance
    #: and pushes near-duplicates down.
    lambda_: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        validation_alias=_LAMBDA,
        serialization_alias="lambda",
    )
    #: How many documents of the top of the final order MMR reorders (the ones below keep their
    #: order after them); at most the request's ``window``, fewer when the window holds fewer,
    #: and at most the reranked candidates when rerank applied (their scores are on another
    #: scale than the fused scores below them).
    window: int = Field(default=50, ge=1, le=MAX_WINDOW)


#: Leg totals are exact up to this count (Elasticsearch's and OpenSearch's own default).
DEFAULT_TRACK_TOTAL_HITS: Final = 10_000
MAX_TRACK_TOTAL_HITS: Final = 2**31 - 1


class SearchRequest(BaseModel):
    model_config = _FROZEN

    #: No length cap here: the models truncate a long query to their window, as they do
    #: documents (the HTTP API caps what clients send: ``ApiSearchRequest``).
    query: str = Field(min_length=1)
    size: int = Field(default=10, ge=1, le=100)
    #: The fused window that pages walk through (fixed by the first page's cursor).
    window: int = Field(default=100, ge=1, le=MAX_WINDOW)
    cursor: str | None = Field(default=None, max_length=65_536)
    filter: dict[str, Any] | None = None
    bm25: BM25Leg = BM25Leg()
    dense: DenseLeg = DenseLeg()
    sparse: SparseLeg = SparseLeg()
    tree: TreeConfig = TreeConfig()
    fusion: FusionConfig = FusionConfig()
    rerank: RerankConfig = RerankConfig()
    diversify: DiversifyConfig = DiversifyConfig()
    explain: bool = False
    #: ``_source`` fields returned with each hit; empty returns the encoded text fields.
    source: tuple[str, ...] = ()
    #: How far each leg counts its matches (``leg_totals``): exactly up to this many, then
    #: ``gte`` (the engines' own default); ``true`` counts them all, which stops the engine
    #: from skipping documents that cannot make the top k (slower on large indices);
    #: ``false`` counts none.
    track_total_hits: bool | int = DEFAULT_TRACK_TOTAL_HITS

    @field_validator("track_total_hits")
    @classmethod
    def _track_total_hits(cls, value: bool | int) -> bool | int:
        if not isinstance(value, bool) and not 1 <= value <= MAX_TRACK_TOTAL_HITS:
            raise ValueError(
                f"track_total_hits is true, false or a count from 1 to {MAX_TRACK_TOTAL_HITS}"
            )
        return value

    @field_validator("query")
    @classmethod
    def _query_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("query is not valid UTF-8") from exc
        return value

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        compile_filter(value)  # raises InvalidInputError (a ValueError) with the reason
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _field_names(value, boost=False)

    @model_validator(mode="after")
    def _diversify_window(self) -> SearchRequest:
        # The default MMR window (50) is cut to a smaller request window; a given one is not.
        given = self.diversify.window
        if "window" in self.diversify.model_fields_set and given > self.window:
            raise ValueError(
                f"diversify.window ({given}) is larger than window ({self.window}): MMR "
                "reorders the top of the window"
            )
        return self

    def legs(self) -> dict[str, _Leg]:
        return {"bm25": self.bm25, "dense": self.dense, "sparse": self.sparse}


def search_request(request: SearchRequest | str, /, **options: Any) -> SearchRequest:
    """``request`` (or the query text) with ``options`` applied, validated like the request.

    An option name that is not a field of the request raises
    :class:`~es_neural.errors.InvalidInputError` (naming the known ones); a bad value raises
    the pydantic ``ValidationError`` that building the request with it would raise. A nested
    option given as a mapping (``rerank={"enabled": True}``) replaces that whole part, with
    defaults for what it leaves out.
    """
    model = SearchRequest if isinstance(request, str) else type(request)
    unknown = sorted(set(options) - set(model.model_fields))
    if unknown:
        known = ", ".join(sorted(model.model_fields))
        raise InvalidInputError(f"unknown search option(s) {unknown}; known: {known}")
    if isinstance(request, str):
        if "query" in options:
            raise InvalidInputError("the query is given twice (as text and as an option)")
        return SearchRequest.model_validate({"query": request, **options})
    if not options:
        return request
    given = {name: getattr(request, name) for name in request.model_fields_set}
    return model.model_validate({**given, **options})


class LegExplain(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float
    rank: int
    normalized: float
    contribution: float


class MmrExplain(BaseModel):
    """Why a hit is where it is after diversification (MMR): its ``mmr_score`` was the highest
    among the documents not yet placed when its position was filled."""

    model_config = ConfigDict(frozen=True)

    #: Its position (1-based) in the final order before diversification.
    rank_before: int
    #: Its final score before diversification, min-max normalised over the MMR window.
    relevance: float
    #: Its highest cosine similarity to the documents placed above it (0 for the first, and for
    #: a document without a dense vector).
    max_similarity: float
    #: The document placed above it that it is most similar to (``None``: the first, or no
    #: dense vector on either side).
    similar_to: str | None = None
    #: ``lambda * relevance - (1 - lambda) * max_similarity``.
    mmr_score: float


class HitExplain(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: Per leg: its raw score, rank, normalised score and contribution; ``None`` if it missed.
    legs: dict[str, LegExplain | None]
    fused_score: float
    fused_rank: int
    fusion: str
    rerank_score: float | None = None
    #: The reranker's own rank among the candidates it scored (not the final position).
    rerank_rank: int | None = None
    leaf_ids: list[str] | None = None
    matched_leaf: str | None = None
    #: The diversification of a hit inside the MMR window (``None``: not diversified, or below
    #: the MMR window, where the order before diversification is kept).
    mmr: MmrExplain | None = None


class Hit(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    rank: int
    score: float
    source: dict[str, Any] = {}
    explain: HitExplain | None = None


class Timings(BaseModel):
    model_config = ConfigDict(frozen=True)

    encode_ms: float = 0.0
    route_ms: float = 0.0
    engine_ms: float = 0.0
    engine_took_ms: float = 0.0
    fusion_ms: float = 0.0
    fetch_ms: float = 0.0
    rerank_ms: float = 0.0
    #: The MMR stage, its fetch of the dense vectors included.
    diversify_ms: float = 0.0
    total_ms: float = 0.0

    @property
    def overhead_ms(self) -> float:
        spent = (
            self.encode_ms
            + self.route_ms
            + self.engine_ms
            + self.fetch_ms
            + self.rerank_ms
            + self.diversify_ms
        )
        return max(self.total_ms - spent, 0.0)


class RerankInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    applied: bool
    reason: str | None = None
    model: str | None = None
    candidates: int = 0
    truncated: int = 0
    #: The weight ``a`` the final score of the reranked candidates used:
    #: ``a * minmax(rerank) + (1 - a) * minmax(fused)``; ``None``: the rerank score alone.
    interpolation: float | None = None


class DiversifyInfo(BaseModel):
    """Whether MMR reordered the top of the window, with which weight and over how many."""

    model_config = ConfigDict(frozen=True, serialize_by_alias=True)

    applied: bool
    #: Why not (disabled, no dense vector field, too few hits).
    reason: str | None = None
    lambda_: float | None = Field(
        default=None, validation_alias=_LAMBDA, serialization_alias="lambda"
    )
    #: Documents MMR reordered (the top of the window).
    window: int = 0
    #: Of them, those without a dense vector (written without text, or gone since the search):
    #: similarity 0 to every other.
    missing_vectors: int = 0
    #: Why the MMR window is smaller than asked (e.g. cut to the reranked candidates).
    note: str | None = None


class ShardStats(BaseModel):
    """The engine's ``_shards`` header of one leg's search: how many shards answered.

    ``missing > 0`` means that leg's hits come from the shards that answered only (a node was
    lost and no other copy of some shard is active); the response is then ``partial``. The
    engines count such a shard differently: Elasticsearch as ``failed``, OpenSearch only as
    absent from ``successful`` (``failed`` stays 0), hence ``missing``.
    """

    model_config = ConfigDict(frozen=True)

    total: int = 0
    successful: int = 0
    skipped: int = 0
    failed: int = 0

    @classmethod
    def from_engine(cls, shards: Any) -> ShardStats:
        if not isinstance(shards, dict):
            return cls()
        return cls(
            **{k: int(shards.get(k) or 0) for k in ("total", "successful", "skipped", "failed")}
        )

    @property
    def missing(self) -> int:
        """Shards that did not answer (failed, or had no active copy to ask)."""
        return max(self.failed, self.total - self.successful - self.skipped, 0)


class SearchResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    hits: list[Hit]
    #: Documents in the fused window (what pagination walks through).
    window_total: int
    #: Per leg: the engine's total hit count and its relation (``eq``/``gte``).
    leg_totals: dict[str, dict[str, Any]]
    offset: int
    next_cursor: str | None
    rerank: RerankInfo
    timings: Timings
    #: Whether the top of the window was diversified (MMR), and why not.
    diversify: DiversifyInfo = DiversifyInfo(applied=False)
    leaves: list[str] | None = None
    #: True when a leg failed, timed out on the engine or got answers from only some shards
    #: (``shards``), or when some hits' fields could not be fetched: the hits are what answered.
    partial: bool = False
    #: Per leg that answered: the engine's shard counts (``missing > 0`` makes it partial).
    shards: dict[str, ShardStats] = {}
    warnings: list[str] = []
