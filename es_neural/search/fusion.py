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

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass
from enum import Enum, StrEnum
from itertools import chain, repeat
from numbers import Real
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Self, TypeVar

import numpy as np

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
        pairs = list(scores.items()) if isinstance(scores, Mapping) else list(scores)
        # below _FAST_MIN hits numpy's fixed cost per call is more than the plain loop
        hits = _ranked_fast(pairs) if len(pairs) >= _FAST_MIN else None
        if hits is None:  # short, duplicates, a bad id or score, unusual types: checked path
            hits = _ranked_checked(leg, pairs)
        # Sorted, unique and ranked by construction: the checks of __post_init__ would only
        # repeat them (a search builds three of these per query).
        ranked = object.__new__(cls)
        object.__setattr__(ranked, "leg", leg)
        object.__setattr__(ranked, "hits", hits)
        return ranked

    def __len__(self) -> int:
        return len(self.hits)


def _ranked_checked(leg: str, pairs: Iterable[tuple[str, float]]) -> tuple[LegHit, ...]:
    """Rank ``(doc_id, score)`` pairs one by one: refuses a non-string id or a non-finite
    score, keeps a duplicate's best score."""
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
    return tuple(
        LegHit(doc_id, -negative, rank) for rank, (negative, doc_id) in enumerate(ordered, start=1)
    )


_new_tuple: Final = tuple.__new__
#: Legs shorter than this are ranked by :func:`_ranked_checked` (faster there).
_FAST_MIN = 48


def _ranked_fast(pairs: Sequence[tuple[str, float]]) -> tuple[LegHit, ...] | None:
    """What :func:`_ranked_checked` gives for the usual input (unique string ids, finite
    scores, as an engine returns them: already best first), without a Python loop per hit;
    ``None`` sends anything else to the checked path."""
    try:
        ids = [doc_id for doc_id, _ in pairs]
        values = np.array([raw for _, raw in pairs], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if values.ndim != 1 or (ids and set(map(type, ids)) != {str}):
        return None
    if not np.isfinite(values).all() or len(set(ids)) != len(ids):
        return None
    steps = np.diff(values)
    ties = np.flatnonzero(steps == 0.0)
    if (steps > 0.0).any() or any(ids[i] > ids[i + 1] for i in ties.tolist()):
        ordered = sorted(zip((-values).tolist(), ids, strict=True))
        ids = [doc_id for _, doc_id in ordered]
        values = -np.array([negative for negative, _ in ordered], dtype=np.float64)
    # tuple.__new__ straight from C: a LegHit per hit without a Python frame each
    return tuple(
        map(
            _new_tuple,
            repeat(LegHit),
            zip(ids, values.tolist(), range(1, len(ids) + 1), strict=True),
        )
    )


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


class _Table:
    """What a fusion computed, kept as arrays: the kept documents in order, and per leg what
    it gave each document. :class:`FusedHit` values are built from it only when asked for
    (a search keeps a window of hundreds of documents and explains a page of ten)."""

    __slots__ = ("_positions", "_rank_of", "doc_ids", "legs", "rows", "scores")

    def __init__(
        self,
        doc_ids: list[str],
        scores: list[float],
        rows: list[int],
        legs: list[tuple[str, tuple[LegHit, ...], list[float], list[float]]],
        positions: np.ndarray,
    ) -> None:
        #: The kept documents, best first, their fused scores and their rows in ``positions``.
        self.doc_ids, self.scores, self.rows = doc_ids, scores, rows
        #: Per leg: its name, its hits, their normalised values and weighted contributions.
        self.legs = legs
        #: ``[leg, row]``: the position of a document in that leg's hits, -1 when absent.
        self._positions = positions
        self._rank_of: dict[str, int] | None = None

    def hit(self, position: int) -> FusedHit:
        row = self.rows[position]
        contributions = {}
        for (leg, hits, values, weighted), where in zip(
            self.legs, self._positions[:, row].tolist(), strict=True
        ):
            if where >= 0:
                hit = hits[where]
                contributions[leg] = LegContribution(
                    hit.score, hit.rank, values[where], weighted[where]
                )
        return FusedHit(
            self.doc_ids[position],
            self.scores[position],
            position + 1,
            MappingProxyType(contributions),
        )

    def position_of(self, doc_id: str) -> int | None:
        if self._rank_of is None:
            self._rank_of = {d: i for i, d in enumerate(self.doc_ids)}
        return self._rank_of.get(doc_id)


class FusedList:
    """Fused hits, best first, with the options that produced them.

    ``k`` is set for RRF only, ``normalization`` for linear fusion only. ``weights`` has one
    entry per input leg (1.0 where none was given). Immutable, compared by value.

    :func:`fuse` builds the :class:`FusedHit` values only when they are read: :meth:`head`
    (ids and scores) and :meth:`get` (one hit) build nothing else, ``hits`` builds them all.
    """

    __slots__ = ("_hits", "_table", "k", "method", "normalization", "total", "weights")

    _hits: tuple[FusedHit, ...] | None
    _table: _Table | None
    method: FusionMethod
    weights: Mapping[str, float]
    k: float | None
    normalization: Normalization | None
    #: How many distinct documents were fused: ``hits`` holds the best ``limit`` of them when
    #: fusion was limited.
    total: int

    def __init__(
        self,
        method: FusionMethod,
        hits: Iterable[FusedHit] = (),
        weights: Mapping[str, float] | None = None,
        k: float | None = None,
        normalization: Normalization | None = None,
        total: int | None = None,
        *,
        _table: _Table | None = None,
    ) -> None:
        built = tuple(hits) if _table is None else None
        init = object.__setattr__
        init(self, "method", method)
        init(self, "_hits", built)
        init(self, "_table", _table)
        init(self, "weights", weights if weights is not None else MappingProxyType({}))
        init(self, "k", k)
        init(self, "normalization", normalization)
        size = len(built) if built is not None else len(_table.doc_ids)  # type: ignore[union-attr]
        init(self, "total", size if total is None else total)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    @property
    def hits(self) -> tuple[FusedHit, ...]:
        """Every kept hit, built on first use."""
        if self._hits is None:
            table = self._table
            assert table is not None
            object.__setattr__(self, "_hits", tuple(map(table.hit, range(len(table.doc_ids)))))
        return self._hits  # type: ignore[return-value]

    def head(self, size: int | None = None) -> list[tuple[str, float]]:
        """``(doc_id, score)`` of the best ``size`` hits (all when ``None``)."""
        if self._table is not None:
            return list(zip(self._table.doc_ids[:size], self._table.scores[:size], strict=True))
        return [(h.doc_id, h.score) for h in self.hits[:size]]

    def get(self, doc_id: str) -> FusedHit | None:
        """The hit of ``doc_id``, or ``None`` when it is not among the kept hits."""
        if self._table is not None:
            position = self._table.position_of(doc_id)
            return self._table.hit(position) if position is not None else None
        return next((h for h in self.hits if h.doc_id == doc_id), None)

    def __len__(self) -> int:
        return len(self._hits) if self._hits is not None else len(self._table.doc_ids)  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[FusedHit]:
        return iter(self.hits)

    def __getitem__(self, index: int) -> FusedHit:
        return self.hits[index]

    @property
    def doc_ids(self) -> tuple[str, ...]:
        if self._table is not None:
            return tuple(self._table.doc_ids)
        return tuple(hit.doc_id for hit in self.hits)

    def _key(self) -> tuple[object, ...]:
        return (
            self.method,
            self.hits,
            dict(self.weights),
            self.k,
            self.normalization,
            self.total,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FusedList):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"FusedList(method={self.method!r}, hits=<{len(self)} hits>, "
            f"weights={dict(self.weights)!r}, k={self.k!r}, "
            f"normalization={self.normalization!r}, total={self.total!r})"
        )


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


def _normalize_array(scores: np.ndarray, method: Normalization) -> np.ndarray:
    """:func:`normalize` of a leg's finite scores as an array, the same floats: min-max and
    none element-wise (the same IEEE operations), z-score and L2 through :func:`normalize`
    (their fsum and hypot reductions)."""
    if scores.size == 0:
        return scores
    if method is Normalization.MINMAX:
        low, high = scores.min(), scores.max()
        spread = high - low
        if spread == 0.0:
            return np.ones_like(scores)
        return (scores - low) / spread
    if method is Normalization.NONE:
        return scores
    return np.array(_NORMALIZERS[method](scores.tolist()), dtype=np.float64)


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


_DOC_ID: Final = attrgetter("doc_id")


def _combine(
    lists: Sequence[RankedList],
    weights: Mapping[str, float],
    per_leg: Callable[[RankedList], np.ndarray],
    limit: int | None,
) -> tuple[_Table, int]:
    """Sum weighted per-leg values; ``per_leg`` gives one value per hit of a leg, in hit order.

    Returns the best ``limit`` fused documents (all when ``None``) as a :class:`_Table`, and
    how many documents were fused. The sums are exact (:func:`math.fsum`): a document that
    one or two legs returned is summed by one float addition (correctly rounded, like fsum),
    one that three or more returned by fsum itself, so leg order never changes a score.
    """
    leg_ids = [list(map(_DOC_ID, ranked.hits)) for ranked in lists]
    # each document's row: the order in which the legs first name it
    row_of = {doc_id: row for row, doc_id in enumerate(dict.fromkeys(chain(*leg_ids)))}
    rows = [np.array(list(map(row_of.__getitem__, ids)), dtype=np.intp) for ids in leg_ids]
    n = len(row_of)
    weighted = np.zeros((len(lists), n))
    positions = np.full((len(lists), n), -1, dtype=np.intp)
    legs: list[tuple[str, tuple[LegHit, ...], list[float], list[float]]] = []
    for i, (ranked, leg_rows) in enumerate(zip(lists, rows, strict=True)):
        values = np.asarray(per_leg(ranked), dtype=np.float64)
        contributions = weights[ranked.leg] * values
        weighted[i, leg_rows] = contributions
        positions[i, leg_rows] = np.arange(len(leg_rows))
        legs.append((ranked.leg, ranked.hits, values.tolist(), contributions.tolist()))
    totals = weighted.sum(axis=0) if len(lists) else np.zeros(0)
    many = np.flatnonzero((positions >= 0).sum(axis=0) >= 3)
    if many.size:
        fsum = math.fsum
        totals[many] = [fsum(column) for column in weighted[:, many].T.tolist()]
    negatives = -totals
    if limit is not None and limit < n:
        # every document scoring at least the limit-th best (ties included), then the exact order
        kept = np.flatnonzero(negatives <= np.partition(negatives, limit - 1)[limit - 1])
    else:
        kept = np.arange(n)
    doc_ids = list(row_of)
    rows_kept = kept.tolist()
    order = sorted(
        zip(negatives[kept].tolist(), [doc_ids[r] for r in rows_kept], rows_kept, strict=True)
    )[:limit]
    table = _Table(
        [doc_id for _, doc_id, _ in order],
        [-negative for negative, _, _ in order],
        [row for _, _, row in order],
        legs,
        positions,
    )
    return table, n


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

    def reciprocal_ranks(ranked: RankedList) -> np.ndarray:
        return 1.0 / (k_value + np.arange(1, len(ranked.hits) + 1, dtype=np.float64))

    table, total = _combine(legs, resolved, reciprocal_ranks, _check_limit(limit))
    return FusedList(FusionMethod.RRF, weights=resolved, k=k_value, total=total, _table=table)


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

    def normalised(ranked: RankedList) -> np.ndarray:
        return _normalize_array(np.array([hit.score for hit in ranked.hits]), method)

    table, total = _combine(legs, resolved, normalised, _check_limit(limit))
    return FusedList(
        FusionMethod.LINEAR, weights=resolved, normalization=method, total=total, _table=table
    )


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
