"""A query's dense and SPLADE encodings at once, on two threads.

A hybrid search needs both encodings of the same short text before it can send its legs. Each
runs single-threaded on the query path (ONNX Runtime releases the GIL while it computes), so on a
machine with two or more cores the two run side by side and the search waits for the slower one,
not for their sum. With one core, or when only one leg is needed, they run in the caller's thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from es_neural.encoders.base import DenseEncoder, SparseEncoder

__all__ = ["encode_query_legs"]

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            # A few workers: concurrent searches (the HTTP API) each hand one leg over.
            _POOL = ThreadPoolExecutor(
                max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="es-neural-legs"
            )
        return _POOL


def encode_query_legs(
    text: str,
    dense: DenseEncoder | None,
    sparse: SparseEncoder | None,
    *,
    concurrent: bool | None = None,
) -> tuple[np.ndarray | None, Mapping[str, float] | None]:
    """``(dense vector, SPLADE weights)`` of one query; ``None`` for an encoder not given.

    ``concurrent``: run the SPLADE encoding on a worker thread while the dense one runs here
    (``None``: when this machine has more than one core and both are asked for)."""
    if concurrent is None:
        concurrent = (os.cpu_count() or 1) > 1
    if dense is None or sparse is None or not concurrent:
        vector = None if dense is None else _dense(dense, text)
        weights = None if sparse is None else sparse.encode_queries([text])[0]
        return vector, weights
    future: Future[Any] = _pool().submit(sparse.encode_queries, [text])
    try:
        vector = _dense(dense, text)
    except BaseException:
        future.cancel()
        raise
    return vector, future.result()[0]


def _dense(dense: DenseEncoder, text: str) -> np.ndarray:
    return np.asarray(dense.encode_queries([text])[0], dtype=np.float32)
