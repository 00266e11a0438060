"""The values of a bulk request and its per-item outcome, shared by the dialects and the
engine-neutral error translation (:func:`es_neural.dialects.errors.translate_bulk_items`).

A leaf module: it imports nothing of the dialects, so both :mod:`.base` and :mod:`.errors` can
import it (the arrows point one way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from es_neural.errors import BulkItemError

__all__ = ["BulkAction", "BulkOp", "BulkResult"]


class BulkOp(StrEnum):
    INDEX = "index"
    CREATE = "create"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class BulkAction:
    index: str
    doc_id: str
    source: Mapping[str, Any] | None = None
    op: BulkOp = BulkOp.INDEX
    #: The document's ``_routing`` (``None``: the engine's default, its ``_id``); a document
    #: written with a routing is read, overwritten and deleted with the same one.
    routing: str | None = None


@dataclass(frozen=True, slots=True)
class BulkResult:
    """Per-item outcome of one bulk request."""

    succeeded: tuple[str, ...]
    failed: tuple[BulkItemError, ...]
    took_ms: int = 0

    @property
    def transient_failures(self) -> tuple[BulkItemError, ...]:
        return tuple(item for item in self.failed if item.transient)

    @property
    def permanent_failures(self) -> tuple[BulkItemError, ...]:
        return tuple(item for item in self.failed if not item.transient)
