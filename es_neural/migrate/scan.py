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
from typing import Any, TypeVar

from es_neural.dialects.base import BaseDialect
from es_neural.errors import IndexNotFoundError, ShardsUnavailableError

__all__ = ["restart_backoff_s", "restartable_scan"]

T = TypeVar("T")


def restart_backoff_s(restart: int) -> float:
    """Seconds to wait before the ``restart``-th new point in time (1-based): 0.5 s doubling,
    at most 8 s."""
    return min(0.5 * 2 ** (restart - 1), 8.0)


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
    restarts = 0
    while True:
        hits = dialect.scan(
            index,
            query=query,
            page_size=page_size,
            slice_id=slice_id,
            slice_max=slice_max,
            source_excludes=source_excludes,
            include_vectors=include_vectors,
            keep_alive=keep_alive,
        )
        try:
            return read(hits)
        except (IndexNotFoundError, ShardsUnavailableError):
            # The point in time died (wholly or in part) with the node that held it, or the
            # index is gone.
            restarts += 1
            if restarts > max_restarts or not dialect.index_exists(index):
                raise
            if on_restart is not None:
                on_restart()
            sleep(restart_backoff_s(restarts))
