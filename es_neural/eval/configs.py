"""Evaluation configurations: which legs, how they are fused, leaf filter, rerank.

An :class:`EvalConfig` is a small immutable value that builds the :class:`SearchRequest` the
runner sends for each query (:meth:`EvalConfig.request`). :func:`default_configs` is the
standard list: each leg alone, each pair and all three fused with RRF and with linear fusion,
all three with the library's untuned default fusion, the best fusion with the leaf filter, and
with the reranker (plain and interpolated). :func:`select_configs` picks configurations by exact
name (``es-neural eval --only``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from types import MappingProxyType
from typing import Any, Literal

from pydantic import ValidationError

from es_neural.errors import InvalidInputError
from es_neural.search.models import (
    BM25Leg,
    DenseLeg,
    FusionConfig,
    RerankConfig,
    SearchRequest,
    SparseLeg,
    TreeConfig,
)

__all__ = [
    "DEFAULT_ROW",
    "LEGS",
    "EvalConfig",
    "TreeOptions",
    "config_key",
    "default_configs",
    "rerank_row_name",
    "select_configs",
    "split_names",
]

#: Retrieval legs, in display order.
LEGS: tuple[str, ...] = ("bm25", "dense", "sparse")
#: The row of the library's default fusion of all three legs, untuned (no labels).
DEFAULT_ROW = "BM25 + dense + SPLADE (default, untuned)"
_LEG_LABEL = {"bm25": "BM25", "dense": "dense", "sparse": "SPLADE"}


@dataclass(frozen=True, slots=True)
class TreeOptions:
    """How the router picks leaves for the leaf-filter configurations."""

    threshold: float = 0.9
    min_leaves: int = 1
    max_leaves: int = 16
    apply_to: tuple[Literal["bm25", "dense", "sparse"], ...] = ("dense",)


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """One configuration of the read path.

    ``weights`` are per-leg fusion weights (missing legs weigh 1.0). ``interpolation`` (with
    ``rerank``) mixes the min-max normalised rerank and fused scores over the reranked top-N;
    ``None`` orders the top-N by the rerank score alone.
    """

    name: str
    legs: tuple[str, ...]
    fusion: Literal["rrf", "linear"] = "rrf"
    weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    normalization: Literal["minmax", "zscore", "l2", "none"] = "minmax"
    rrf_k: float = 60.0
    tree: bool = False
    rerank: bool = False
    #: Candidates reranked; ``None``: the searcher's own default (``settings.rerank.top_n``).
    rerank_top_n: int | None = None
    interpolation: float | None = None
    #: Hits each leg contributes (and the fused window evaluated).
    depth: int = 100

    def __post_init__(self) -> None:
        if not self.legs or any(leg not in LEGS for leg in self.legs):
            raise InvalidInputError(f"config {self.name!r}: legs must be among {LEGS}")
        if len(set(self.legs)) != len(self.legs):
            raise InvalidInputError(f"config {self.name!r}: a leg is listed twice")
        unknown = sorted(set(self.weights) - set(self.legs))
        if unknown:
            raise InvalidInputError(f"config {self.name!r}: weights of unused legs {unknown}")
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))

    @property
    def fused(self) -> bool:
        return len(self.legs) > 1

    def with_(self, **changes: Any) -> EvalConfig:
        return replace(self, **changes)

    def request(self, query: str, *, tree: TreeOptions | None = None) -> SearchRequest:
        """The search request for ``query`` (the top ``depth`` hits, no rerank unless asked).

        Any query length is accepted (the models truncate to their window); a query the request
        model refuses (blank) raises :class:`InvalidInputError`."""
        tree_config = TreeConfig(enabled=False)
        if self.tree:
            if tree is None:
                raise InvalidInputError(f"config {self.name!r} needs tree options")
            tree_config = TreeConfig(
                enabled=True,
                threshold=tree.threshold,
                min_leaves=tree.min_leaves,
                max_leaves=tree.max_leaves,
                apply_to=tree.apply_to,
            )
        rerank = (
            RerankConfig(
                enabled=True,
                top_n=self.rerank_top_n,
                # ``None`` means the rerank score alone; the searcher would otherwise use the
                # model's own recommended weight, so ask for 1.0 (same order as the score).
                interpolation=1.0 if self.interpolation is None else self.interpolation,
                # Evaluation reranks every query: a time budget would make results vary.
                budget_ms=600_000.0,
            )
            if self.rerank
            else RerankConfig(enabled=False)
        )
        try:
            return self._request(query, tree_config, rerank)
        except ValidationError as exc:
            reason = "; ".join(str(e.get("msg", e)) for e in exc.errors())
            raise InvalidInputError(
                f"config {self.name!r}: query {query[:60]!r} refused: {reason}"
            ) from None

    def _request(self, query: str, tree: TreeConfig, rerank: RerankConfig) -> SearchRequest:
        w = self.weights

        def leg_kwargs(name: str) -> dict[str, Any]:
            return {"enabled": name in self.legs, "k": self.depth, "weight": w.get(name, 1.0)}

        return SearchRequest(
            query=query,
            size=min(self.depth, 100),
            window=self.depth,
            bm25=BM25Leg(**leg_kwargs("bm25")),
            dense=DenseLeg(**leg_kwargs("dense"), num_candidates=max(200, self.depth)),
            sparse=SparseLeg(**leg_kwargs("sparse")),
            fusion=FusionConfig(method=self.fusion, k=self.rrf_k, normalization=self.normalization),
            tree=tree,
            rerank=rerank,
            source=("content_hash",),
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for reports)."""
        return {
            "name": self.name,
            "legs": list(self.legs),
            "fusion": self.fusion if self.fused else None,
            "weights": {leg: self.weights.get(leg, 1.0) for leg in self.legs}
            if self.fused
            else None,
            "normalization": self.normalization if self.fused and self.fusion == "linear" else None,
            "rrf_k": self.rrf_k if self.fused and self.fusion == "rrf" else None,
            "tree": self.tree,
            "rerank": self.rerank,
            "rerank_top_n": self.rerank_top_n if self.rerank else None,
            "interpolation": self.interpolation if self.rerank else None,
        }


def _label(legs: Sequence[str]) -> str:
    return " + ".join(_LEG_LABEL[leg] for leg in legs)


def default_configs(
    *,
    linear_weights: Mapping[tuple[str, ...], Mapping[str, float]] | None = None,
    normalization: Mapping[tuple[str, ...], str] | None = None,
    tree: bool = False,
    rerank: bool = False,
    rerank_top_n: int | None = None,
    interpolation: float | None = None,
) -> list[EvalConfig]:
    """The standard list. ``linear_weights`` / ``normalization`` per leg tuple (as tuned on
    validation) default to equal weights and min-max. The leaf-filter and rerank variants are
    built on linear fusion of all three legs; the interpolated rerank row is there when an
    ``interpolation`` weight is given (tuned on validation, or the model card's)."""
    weights = linear_weights or {}
    norms = normalization or {}
    configs = [EvalConfig(_label([leg]), (leg,)) for leg in LEGS]
    groups = [c for size in (2, 3) for c in combinations(LEGS, size)]
    for method in ("rrf", "linear"):
        for legs in groups:
            if method == "rrf":
                configs.append(EvalConfig(f"{_label(legs)} (RRF)", legs, fusion="rrf"))
            else:
                configs.append(
                    EvalConfig(
                        f"{_label(legs)} (linear)",
                        legs,
                        fusion="linear",
                        weights=weights.get(legs, {}),
                        normalization=norms.get(legs, "minmax"),  # type: ignore[arg-type]
                    )
                )
    best = configs[-1]
    # The library's out-of-the-box fusion (FusionConfig's defaults), never tuned: what a user
    # gets without labels, next to the RRF and tuned linear rows.
    out_of_the_box = FusionConfig()
    configs.insert(
        len(configs) - len(groups),
        EvalConfig(
            DEFAULT_ROW,
            LEGS,
            fusion=out_of_the_box.method,
            normalization=out_of_the_box.normalization,
        ),
    )
    if tree:
        configs.append(best.with_(name=f"{best.name} + leaf filter", tree=True))
    if rerank:
        configs.append(
            best.with_(
                name=rerank_row_name(best.name, None), rerank=True, rerank_top_n=rerank_top_n
            )
        )
        if interpolation is not None:
            configs.append(
                best.with_(
                    name=rerank_row_name(best.name, interpolation),
                    rerank=True,
                    rerank_top_n=rerank_top_n,
                    interpolation=interpolation,
                )
            )
    return configs


def rerank_row_name(base: str, interpolation: float | None) -> str:
    """The name of the row that reranks ``base``: by the rerank score alone (``None``) or
    interpolated with the fused score at ``interpolation``."""
    if interpolation is None:
        return f"{base} + rerank alone"
    return f"{base} + rerank (interpolated {interpolation:g})"


_INTERPOLATED = re.compile(r"\(interpolated [^)]*\)")


def config_key(name: str) -> str:
    """How ``--only`` compares names: case and runs of spaces ignored, and the interpolated
    rerank row's weight left out (it is tuned, so its name is known only after tuning)."""
    key = " ".join(name.lower().split())
    return _INTERPOLATED.sub("(interpolated)", key)


def split_names(values: Iterable[str], names: Iterable[str]) -> tuple[str, ...]:
    """``--only`` values, each one name or several separated by commas, as names: a name that
    holds a comma itself (``BM25 + dense + SPLADE (default, untuned)``) is kept whole when
    ``names`` (the configurations there can be) know it. What matches none is kept as written,
    for :func:`select_configs` to refuse by name."""
    keys = {config_key(n) for n in names}
    out: list[str] = []
    for value in values:
        pieces = value.split(",")
        start = 0
        while start < len(pieces):
            for end in range(len(pieces), start, -1):  # the longest run that names a row
                joined = ",".join(pieces[start:end]).strip()
                if end - start > 1 and config_key(joined) in keys:
                    out.append(joined)
                    start = end
                    break
            else:
                if pieces[start].strip():
                    out.append(pieces[start].strip())
                start += 1
    return tuple(out)


def select_configs(configs: Sequence[EvalConfig], names: Iterable[str]) -> list[EvalConfig]:
    """The configurations named ``names`` exactly (see :func:`config_key`), in list order.

    A name that matches none of ``configs`` is an :class:`InvalidInputError` listing the names
    there are: ``BM25`` selects the BM25 row only, never every row that mentions BM25.
    """
    wanted = {config_key(n): n for n in names}
    keys = {config_key(c.name) for c in configs}
    unknown = [name for key, name in wanted.items() if key not in keys]
    if unknown:
        known = ", ".join(repr(c.name) for c in configs)
        raise InvalidInputError(f"no configuration named {unknown}; the configurations: {known}")
    return [c for c in configs if config_key(c.name) in wanted]
