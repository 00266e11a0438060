"""Typed protocols of the read path's pluggable stages (router, reranker).

They sit below both the search stages that call them and the tree that implements the router, so
neither package imports the other to share them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["QueryRouter", "Reranker", "Route"]


@dataclass(frozen=True, slots=True)
class Route:
    """Leaves a query was routed to, with their path probabilities (best first)."""

    leaf_ids: tuple[str, ...]
    probabilities: tuple[float, ...]
    tree_version: str
    #: True when low confidence widened the filter to ancestors of the leaves.
    widened: bool = False
    #: What the filter matches: leaf ids, or ancestor ids when widened.
    filter_ids: tuple[str, ...] = ()
    filter_field: str = "leaf_ids"


@runtime_checkable
class QueryRouter(Protocol):
    tree_version: str

    def route(
        self,
        query_vector: np.ndarray,
        *,
        threshold: float,
        min_leaves: int,
        max_leaves: int,
    ) -> Route: ...


@runtime_checkable
class Reranker(Protocol):
    name: str
    max_length: int

    def score(self, query: str, passages: Sequence[str], *, batch_size: int = 32) -> list[float]:
        """Relevance of each passage to the query (higher is better)."""
        ...

    def token_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        """Tokens of each (query, passage) pair, to report truncation."""
        ...
