"""Rank fusion: pure functions over small immutable values.

Every retrieval leg (BM25, dense kNN, SPLADE, ...) returns a :class:`RankedList`; :func:`fuse`
combines several into one :class:`FusedList`. Each :class:`FusedHit` carries, per leg that
returned it, the raw score, the leg rank, the normalised score and the weighted contribution, so a
result can be explained; the contributions add up to the fused score (exactly, with
:func:`math.fsum`, which is also how the fused score is computed, so leg order never matters).

Methods (:class:`FusionMethod`):

* ``rrf``: Reciprocal Rank Fusion, ``score(d) = sum_leg w_leg / (k + rank_leg(d))`` with 1-based
  ranks and ``k = 60`` by default (Cormack, Clarke & Büttcher, SIGIR 2009). Weights default to 1,
  which is plain RRF; other weights give weighted RRF.
* ``linear``: each leg's scores are normalised (:func:`normalize`) and summed with weights.

Conventions, checked against ranx 0.3.21 (``ranx.fuse``), which the unit tests use as an oracle:

* RRF ranks are 1-based positions in the leg's list (ranx: ``1 / (k + i + 1)``); a document
  missing from a leg gets nothing from it (ranx ``comb_sum`` uses ``0.0``).
* Ties in a leg are broken by ``doc_id`` ascending, so tied documents get consecutive, distinct
  ranks. ranx orders ties with an unstable ``argsort``, so its ranks among equal scores are
  unspecified; for untied scores the two agree.
* Linear fusion is ranx ``wsum``: a document missing from a leg contributes 0 from that leg,
  after normalisation (so, under min-max, the same as that leg's worst document; under z-score,
  the same as its mean).
* Min-max of a leg whose scores are all equal (one hit, or a constant scorer) gives 1.0 to every
  document the leg returned: each of them is that leg's best hit. Here we differ from ranx on
  purpose (ranx divides by ``max(max - min, 1e-9)`` and so gives 0.0): with ranx's convention a
  BM25 leg that finds exactly one document would add nothing for it. The zero range is tested
  exactly; legs whose scores span less than 1e-9 are otherwise normalised as by ranx.
* Z-score uses the population standard deviation (ranx ``zmuv``, ``np.std``). All-equal scores
  give 1.0, one standard deviation above the 0.0 that documents missing from the leg get: again
  each is the leg's best hit (ranx gives 0.0, so its one-hit leg adds nothing for that hit).
  ranx 0.3.21 names it ``"zmuv"``.
* L2 divides by the Euclidean norm of the leg's scores (ranx has no counterpart); a zero norm
  gives 0.0.
* Fused ties are broken by ``doc_id`` ascending.

Scores must be finite, weights finite and non-negative, ``k`` finite and positive; anything else
raises :class:`~es_neural.errors.InvalidInputError`. No function mutates its inputs.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from numbers import Real
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Self, TypeVar

from es_neural.errors import InvalidInputError

__all__ = [
    "DEFAULT_K",
    "UNSET",
    "FusedHit",
    "FusedList",
    "FusionMethod",
    "LegContribution",
    "LegHit",
    "Normalization",
    "RankedList",
    "fuse",
    "linear",
    "normalize",
    "rrf",
]

#: The RRF constant of Cormack et al. (2009).
DEFAULT_K: Final = 60


class _Unset(Enum):
    """Type of :data:`UNSET`, the "option not given" sentinel (``0`` and ``None`` can be values)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET

_E = TypeVar("_E", bound=StrEnum)


def _canonical(text: str) -> str:
    return text.strip().lower().replace("_", "-").replace(" ", "-")


class FusionMethod(StrEnum):
    """How legs are combined. ``rrf`` with weights is weighted RRF."""

    RRF = "rrf"
    LINEAR = "linear"

    @classmethod
    def from_str(cls, value: str | FusionMethod) -> FusionMethod:
        """Parse a common spelling (``"rrf"``, ``"weighted-rrf"``, ``"linear"``, ``"wsum"``...)."""
        return _parse(cls, value, _METHOD_ALIASES)


class Normalization(StrEnum):
    """Per-leg score normalisation applied before linear fusion."""

    MINMAX = "min-max"
    ZSCORE = "z-score"
    L2 = "l2"
    NONE = "none"

    @classmethod
    def from_str(cls, value: str | Normalization) -> Normalization:
        """Parse a common spelling (``"min-max"``, ``"minmax"``, ``"min_max"``, ``"zmuv"``, ...)."""
        return _parse(cls, value, _NORMALIZATION_ALIASES)


_METHOD_ALIASES: Final[Mapping[str, FusionMethod]] = MappingProxyType(
    {
        "rrf": FusionMethod.RRF,
        "weighted-rrf": FusionMethod.RRF,
        "wrrf": FusionMethod.RRF,
        "reciprocal-rank-fusion": FusionMethod.RRF,
        "linear": FusionMethod.LINEAR,
        "wsum": FusionMethod.LINEAR,
        "weighted-sum": FusionMethod.LINEAR,
        "linear-combination": FusionMethod.LINEAR,
    }
)

_NORMALIZATION_ALIASES: Final[Mapping[str, Normalization]] = MappingProxyType(
    {
        "min-max": Normalization.MINMAX,
        "minmax": Normalization.MINMAX,
        "z-score": Normalization.ZSCORE,
        "zscore": Normalization.ZSCORE,
        "zmuv": Normalization.ZSCORE,
        "standard": Normalization.ZSCORE,
        "l2": Normalization.L2,
        "l2-norm": Normalization.L2,
        "none": Normalization.NONE,
        "raw": Normalization.NONE,
        "identity": Normalization.NONE,
    }
)


def _parse(cls: type[_E], value: str | _E, aliases: Mapping[str, _E]) -> _E:
    if isinstance(value, cls):
        return value
    if not isinstance(value, str):
        raise InvalidInputError(f"{cls.__name__} must be a string, got {value!r}")
    try:
        return aliases[_canonical(value)]
    except KeyError:
        accepted = ", ".join(sorted(aliases))
        raise InvalidInputError(f"unknown {cls.__name__} {value!r}; accepted: {accepted}") from None


# Values ===========================================================================================


class LegHit(NamedTuple):
    """One document of one leg: its raw score and 1-based rank in that leg.

    The per-hit values (this, :class:`LegContribution`, :class:`FusedHit`) are named tuples:
    immutable like frozen dataclasses, and built in half the time (a search builds one per
    hit per leg, so this time grows with k).
    """

    doc_id: str
    score: float
    rank: int


def _hit_order(doc_id: str, score: float) -> tuple[float, str]:
    return (-score, doc_id)


def _check_score(leg: str, doc_id: object, score: float) -> None:
    if not math.isfinite(score):
        raise InvalidInputError(
            f"leg {leg!r}: score of document {doc_id!r} is {score!r}; scores must be finite"
        )


@dataclass(frozen=True, slots=True)
class RankedList:
    """The hits of one leg, best first (score descending, ties by ``doc_id``), ranks 1..n.

    Build one with :meth:`from_scores`; the constructor only checks that ``hits`` already
    satisfy those rules.
    """

    leg: str
    hits: tuple[LegHit, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.leg, str) or not self.leg:
            raise InvalidInputError(f"leg name must be a non-empty string, got {self.leg!r}")
        if not isinstance(self.hits, tuple):  # a list would leave the value mutable
            object.__setattr__(self, "hits", tuple(self.hits))
        seen: set[str] = set()
        previous: tuple[float, str] | None = None
        for position, hit in enumerate(self.hits, start=1):
            _check_score(self.leg, hit.doc_id, hit.score)
            if hit.doc_id in seen:
                raise InvalidInputError(f"leg {self.leg!r}: duplicate document {hit.doc_id!r}")
            seen.add(hit.doc_id)
            if hit.rank != position:
                raise InvalidInputError(
                    f"leg {self.leg!r}: document {hit.doc_id!r} has rank {hit.rank}, "
                    f"expected {position} (ranks are 1-based positions)"
                )
            order = _hit_order(hit.doc_id, hit.score)
            if previous is not None and order < previous:
                raise InvalidInputError(
                    f"leg {self.leg!r}: hits are not sorted by score descending, then doc_id "
                    f"(at {hit.doc_id!r}); use RankedList.from_scores"
                )
            previous = order

    @classmethod
    def from_scores(
        cls, leg: str, scores: Mapping[str, float] | Iterable[tuple[str, float]]
    ) -> Self:
        """Sort ``(doc_id, score)`` pairs and assign 1-based ranks.

        A document listed more than once keeps its best score. The input is not modified.
        """
        if not isinstance(leg, str) or not leg:
            raise InvalidInputError(f"leg name must be a non-empty string, got {leg!r}")
        pairs = scores.items() if isinstance(scores, Mapping) else scores
        best: dict[str, float] = {}
        isfinite = math.isfinite
        for doc_id, raw in pairs:
            if not isinstance(doc_id, str):
                raise InvalidInputError(f"leg {leg!r}: doc_id must be a string, got {doc_id!r}")
            score = float(raw)
            if not isfinite(score):
                _check_score(leg, doc_id, score)
            if doc_id not in best or score > best[doc_id]:
                best[doc_id] = score
        ordered = sorted([(-score, doc_id) for doc_id, score in best.items()])
        hits = tuple(
            LegHit(doc_id, -negative, rank)
            for rank, (negative, doc_id) in enumerate(ordered, start=1)
        )
        # Sorted, unique and ranked by construction: the checks of __post_init__ would only
        # repeat them (a search builds three of these per query).
        ranked = object.__new__(cls)
        object.__setattr__(ranked, "leg", leg)
        object.__setattr__(ranked, "hits", hits)
        return ranked

    def __len__(self) -> int:
        return len(self.hits)


class LegContribution(NamedTuple):
    """What one leg gave one fused document.

    ``normalized_score`` is the per-leg value before weighting: ``1 / (k + rank)`` for RRF, the
    normalised score for linear fusion. ``contribution`` is ``weight * normalized_score``.
    """

    raw_score: float
    rank: int
    normalized_score: float
    contribution: float


class FusedHit(NamedTuple):
    """One fused document. ``legs`` holds only the legs that returned it, in input order."""

    doc_id: str
    score: float
    rank: int
    legs: Mapping[str, LegContribution]


@dataclass(frozen=True, slots=True)
class FusedList:
    """Fused hits, best first, with the options that produced them.

    ``k`` is set for RRF only, ``normalization`` for linear fusion only. ``weights`` has one
    entry per input leg (1.0 where none was given).
    """

    method: FusionMethod
    hits: tuple[FusedHit, ...]
    weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    k: float | None = None
    normalization: Normalization | None = None
    #: How many distinct documents were fused: ``hits`` holds the best ``limit`` of them when
    #: fusion was limited (``None``: unknown, taken as ``len(hits)``).
    total: int | None = None

    def __post_init__(self) -> None:
        if self.total is None:
            object.__setattr__(self, "total", len(self.hits))

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[FusedHit]:
        return iter(self.hits)

    def __getitem__(self, index: int) -> FusedHit:
        return self.hits[index]

    @property
    def doc_ids(self) -> tuple[str, ...]:
        return tuple(hit.doc_id for hit in self.hits)


# Normalisation ====================================================================================


def _minmax(scores: Sequence[float]) -> tuple[float, ...]:
    low, high = min(scores), max(scores)
    spread = high - low
    if spread == 0.0:  # one hit or a constant scorer: every hit is the leg's best (not ranx's 0.0)
        return tuple(1.0 for _ in scores)
    return tuple((s - low) / spread for s in scores)


def _zscore(scores: Sequence[float]) -> tuple[float, ...]:
    if min(scores) == max(scores):  # decided before the mean, whose rounding could fake a spread
        return tuple(1.0 for _ in scores)  # every hit is the leg's best (not ranx's 0.0)
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / len(scores))
    if std == 0.0:
        return tuple(0.0 for _ in scores)
    return tuple((s - mean) / std for s in scores)


def _l2(scores: Sequence[float]) -> tuple[float, ...]:
    norm = math.hypot(*scores)
    if norm == 0.0:
        return tuple(0.0 for _ in scores)
    return tuple(s / norm for s in scores)


def _identity(scores: Sequence[float]) -> tuple[float, ...]:
    return tuple(scores)


_NORMALIZERS: Final[Mapping[Normalization, Callable[[Sequence[float]], tuple[float, ...]]]] = (
    MappingProxyType(
        {
            Normalization.MINMAX: _minmax,
            Normalization.ZSCORE: _zscore,
            Normalization.L2: _l2,
            Normalization.NONE: _identity,
        }
    )
)


def normalize(scores: Iterable[float], method: Normalization | str) -> tuple[float, ...]:
    """Normalise one leg's scores; returns a new tuple in the same order.

    * ``min-max``: ``(s - min) / (max - min)``; all-equal scores give 1.0 (ranx gives 0.0).
    * ``z-score``: ``(s - mean) / std`` with the population std; all-equal scores give 1.0
      (ranx gives 0.0).
    * ``l2``: ``s / ||scores||_2``; a zero norm gives 0.0.
    * ``none``: the scores unchanged.

    An empty input gives an empty tuple. Non-finite scores raise ``InvalidInputError``.
    """
    normalization = Normalization.from_str(method)
    values = tuple(float(s) for s in scores)
    for position, value in enumerate(values):
        if not math.isfinite(value):
            raise InvalidInputError(f"score at position {position} is {value!r}; must be finite")
    if not values:
        return ()
    return _NORMALIZERS[normalization](values)


# Fusion ===========================================================================================


def _check_legs(lists: Sequence[RankedList]) -> None:
    seen: set[str] = set()
    for ranked in lists:
        if not isinstance(ranked, RankedList):
            raise InvalidInputError(f"expected RankedList values, got {type(ranked).__name__}")
        if ranked.leg in seen:
            raise InvalidInputError(f"leg {ranked.leg!r} is given more than once")
        seen.add(ranked.leg)


def _resolve_weights(
    lists: Sequence[RankedList], weights: Mapping[str, float] | None
) -> Mapping[str, float]:
    given: Mapping[str, float] = weights if weights is not None else {}
    legs = [ranked.leg for ranked in lists]
    unknown = sorted(set(given) - set(legs))
    if unknown:
        raise InvalidInputError(f"weights name unknown legs {unknown}; legs are {legs}")
    resolved: dict[str, float] = {}
    for leg in legs:
        raw = given.get(leg, 1.0)
        weight = float(raw) if isinstance(raw, Real) and not isinstance(raw, bool) else None
        if weight is None or not math.isfinite(weight) or weight < 0:
            raise InvalidInputError(
                f"weight of leg {leg!r} is {raw!r}; weights must be finite numbers >= 0"
            )
        resolved[leg] = weight
    return MappingProxyType(resolved)


def _check_k(k: float) -> float:
    if isinstance(k, bool) or not isinstance(k, Real):
        raise InvalidInputError(f"k must be a number, got {k!r}")
    value = float(k)
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"k must be finite and > 0, got {k!r}")
    return value


#: Sort key of ``(-score, doc_id, ...)`` entries: best score first, ties by id.
_BY_SCORE_THEN_ID: Final = itemgetter(0, 1)


def _combine(
    lists: Sequence[RankedList],
    weights: Mapping[str, float],
    per_leg: Callable[[RankedList], Sequence[float]],
    limit: int | None,
) -> tuple[tuple[FusedHit, ...], int]:
    """Sum weighted per-leg values; ``per_leg`` gives one value per hit of a leg, in hit order.

    Returns the best ``limit`` fused hits (all when ``None``) and how many documents were fused:
    what one leg gave one document is kept as a plain tuple, and only the hits returned are
    built as objects (a search keeps its window, not every document of every leg).
    """
    given: dict[str, list[tuple[str, float, int, float, float]]] = {}
    for ranked in lists:
        leg = ranked.leg
        weight = weights[leg]
        values = per_leg(ranked)
        for hit, value in zip(ranked.hits, values, strict=True):
            item = (leg, hit.score, hit.rank, value, weight * value)
            found = given.get(hit.doc_id)
            if found is None:
                given[hit.doc_id] = [item]
            else:
                found.append(item)
    fsum = math.fsum
    scored = [
        (-fsum([item[4] for item in items]), doc_id, items) for doc_id, items in given.items()
    ]
    if limit is not None and limit < len(scored):
        scored = heapq.nsmallest(limit, scored, key=_BY_SCORE_THEN_ID)
    else:
        scored.sort(key=_BY_SCORE_THEN_ID)
    hits = tuple(
        FusedHit(
            doc_id,
            -negative,
            rank,
            MappingProxyType({i[0]: LegContribution(i[1], i[2], i[3], i[4]) for i in items}),
        )
        for rank, (negative, doc_id, items) in enumerate(scored, start=1)
    )
    return hits, len(given)


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInputError(f"limit must be a whole number >= 1 or None, got {limit!r}")
    return limit


def rrf(
    lists: Iterable[RankedList],
    *,
    k: float = DEFAULT_K,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> FusedList:
    """Reciprocal Rank Fusion (Cormack, Clarke & Büttcher, "Reciprocal rank fusion outperforms
    Condorcet and individual rank learning methods", SIGIR 2009, pp. 758-759).

    ``score(d) = sum over legs returning d of weight_leg / (k + rank_leg(d))`` with 1-based ranks.
    ``weights`` maps leg names to non-negative weights (missing legs weigh 1.0); all-1 weights
    are the paper's RRF. Scores are ignored apart from ordering each leg. ``limit`` keeps the
    best ``limit`` fused hits (``total`` still counts every document fused).
    """
    legs = tuple(lists)
    _check_legs(legs)
    k_value = _check_k(k)
    resolved = _resolve_weights(legs, weights)

    def reciprocal_ranks(ranked: RankedList) -> tuple[float, ...]:
        return tuple(1.0 / (k_value + hit.rank) for hit in ranked.hits)

    hits, total = _combine(legs, resolved, reciprocal_ranks, _check_limit(limit))
    return FusedList(FusionMethod.RRF, hits, resolved, k=k_value, total=total)


def linear(
    lists: Iterable[RankedList],
    *,
    weights: Mapping[str, float] | None = None,
    normalization: Normalization | str = Normalization.MINMAX,
    limit: int | None = None,
) -> FusedList:
    """Weighted sum of per-leg normalised scores (ranx ``wsum``).

    Each leg is normalised on its own (:func:`normalize`); a document missing from a leg gets 0
    from it. ``weights`` maps leg names to non-negative weights (missing legs weigh 1.0).
    ``limit`` keeps the best ``limit`` fused hits (``total`` still counts every document fused).
    """
    legs = tuple(lists)
    _check_legs(legs)
    method = Normalization.from_str(normalization)
    resolved = _resolve_weights(legs, weights)

    def normalised(ranked: RankedList) -> tuple[float, ...]:
        return normalize((hit.score for hit in ranked.hits), method)

    hits, total = _combine(legs, resolved, normalised, _check_limit(limit))
    return FusedList(FusionMethod.LINEAR, hits, resolved, normalization=method, total=total)


#: Per method: the function and the options it accepts besides ``weights``.
_FUSERS: Final[Mapping[FusionMethod, tuple[Callable[..., FusedList], frozenset[str]]]] = (
    MappingProxyType(
        {
            FusionMethod.RRF: (rrf, frozenset({"k"})),
            FusionMethod.LINEAR: (linear, frozenset({"normalization"})),
        }
    )
)


def fuse(
    lists: Iterable[RankedList],
    *,
    method: FusionMethod | str,
    weights: Mapping[str, float] | None = None,
    k: float | _Unset = UNSET,
    normalization: Normalization | str | _Unset = UNSET,
    limit: int | None = None,
) -> FusedList:
    """Fuse ranked lists with ``method``; options left :data:`UNSET` take the method's default.

    ``k`` applies to RRF only (default 60), ``normalization`` to linear fusion only (default
    min-max); giving an option the method does not use raises ``InvalidInputError``. ``limit``
    keeps the best ``limit`` fused hits (all when ``None``).
    """
    fusion = FusionMethod.from_str(method)
    function, accepted = _FUSERS[fusion]
    given: dict[str, Any] = {
        name: value
        for name, value in (("k", k), ("normalization", normalization))
        if value is not UNSET
    }
    unused = sorted(set(given) - accepted)
    if unused:
        raise InvalidInputError(
            f"option(s) {unused} do not apply to fusion method {fusion.value!r}"
        )
    return function(lists, weights=weights, limit=limit, **given)
