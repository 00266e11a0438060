"""The restartable point-in-time scan, shared by the copy and the verification.

A point in time lives on the nodes that hold the index's shards: when one restarts, the scan
fails with a missing index (the point in time is gone) or missing shards. The scan is then read
again from a new point in time, after a short wait for replicas of the lost node's shards to be
promoted, up to ``max_restarts`` times, and only while the index itself still exists. The reader
must tolerate a restart from the beginning (the copy's content hashes make that cheap; the
verification rebuilds its digests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from es_neural.dialects.base import BaseDialect
from es_neural.errors import IndexNotFoundError, ShardsUnavailableError

__all__ = ["LOST_SCAN", "ScanRetry", "ScanSpec", "restart_backoff_s", "restartable_scan"]

T = TypeVar("T")

#: What a scan raises when its point in time died (wholly or in part) with the node that held
#: it, or the index is gone.
LOST_SCAN = (IndexNotFoundError, ShardsUnavailableError)


def restart_backoff_s(restart: int) -> float:
    """Seconds to wait before the ``restart``-th new point in time (1-based): 0.5 s doubling,
    at most 8 s."""
    return min(0.5 * 2 ** (restart - 1), 8.0)


@dataclass(frozen=True, slots=True)
class ScanSpec:
    """What a scan reads (see :meth:`BaseDialect.scan`); :meth:`open` starts one."""

    query: Mapping[str, Any] | None = None
    page_size: int = 500
    slice_id: int | None = None
    slice_max: int | None = None
    source_excludes: Sequence[str] = ()
    include_vectors: bool = False
    keep_alive: str = "10m"

    def open(self, dialect: BaseDialect, index: str) -> Iterator[dict[str, Any]]:
        return dialect.scan(
            index,
            query=self.query,
            page_size=self.page_size,
            slice_id=self.slice_id,
            slice_max=self.slice_max,
            source_excludes=self.source_excludes,
            include_vectors=self.include_vectors,
            keep_alive=self.keep_alive,
        )


@dataclass(slots=True)
class ScanRetry:
    """The restart policy of one scan: a lost point in time is read again from a new one, up to
    ``max_restarts`` times and only while the index exists."""

    dialect: BaseDialect
    index: str
    max_restarts: int = 5
    on_restart: Callable[[], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    restarts: int = 0

    def after_loss(self, exc: Exception) -> None:
        """Raises ``exc`` when the scan may not start again; otherwise calls ``on_restart`` and
        waits for replicas of the lost node's shards to be promoted."""
        self.restarts += 1
        if self.restarts > self.max_restarts or not self.dialect.index_exists(self.index):
            raise exc
        if self.on_restart is not None:
            self.on_restart()
        self.sleep(restart_backoff_s(self.restarts))


def restartable_scan(
    dialect: BaseDialect,
    index: str,
    read: Callable[[Iterator[dict[str, Any]]], T],
    *,
    query: Mapping[str, Any] | None = None,
    page_size: int = 500,
    slice_id: int | None = None,
    slice_max: int | None = None,
    source_excludes: Sequence[str] = (),
    include_vectors: bool = False,
    keep_alive: str = "10m",
    max_restarts: int = 5,
    on_restart: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``read(hits)`` over a point-in-time scan of ``index`` (see :meth:`BaseDialect.scan`),
    called again on a new scan when the point in time is lost; returns what ``read`` returns.
    ``on_restart`` is called before each new scan."""
    spec = ScanSpec(
        query, page_size, slice_id, slice_max, source_excludes, include_vectors, keep_alive
    )
    retry = ScanRetry(dialect, index, max_restarts, on_restart, sleep)
    while True:
        try:
            return read(spec.open(dialect, index))
        except LOST_SCAN as exc:
            retry.after_loss(exc)
