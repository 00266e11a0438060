"""A persistent cache of encodings of fixed texts (benchmark corpora, test fixtures, re-ingestion).

Entries are keyed by the encoder's :attr:`cache_key` (fingerprint digest plus the options that
change outputs, such as truncation and pruning), the role (``query`` or ``document``: a model may
encode them differently) and the sha256 of the text. They live in one sqlite3 file
(:data:`DB_NAME`) under the cache directory, one table per kind, in WAL mode so that several
processes can read and write it at once.

:class:`CachedDenseEncoder` and :class:`CachedSparseEncoder` wrap an encoder and implement the
same protocol: hits are read back bit-for-bit, misses are encoded by the wrapped encoder (each
distinct text once) and stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from es_neural.encoders.base import (
    DenseEncoder,
    FloatMatrix,
    Similarity,
    SparseEncoder,
    SparseVector,
)
from es_neural.encoders.fingerprint import ModelFingerprint

__all__ = [
    "DB_NAME",
    "CacheStats",
    "CachedDenseEncoder",
    "CachedSparseEncoder",
    "EmbeddingCache",
    "text_digest",
]

#: File name of the cache database inside the cache directory.
DB_NAME = "embeddings.sqlite3"
Role = Literal["query", "document"]
_SQL_CHUNK = 500
_SCHEMA = """
CREATE TABLE IF NOT EXISTS dense (
    model TEXT NOT NULL, role TEXT NOT NULL, text_sha TEXT NOT NULL,
    dims INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (model, role, text_sha)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sparse (
    model TEXT NOT NULL, role TEXT NOT NULL, text_sha TEXT NOT NULL,
    weights TEXT NOT NULL,
    PRIMARY KEY (model, role, text_sha)
) WITHOUT ROWID;
"""

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int


def text_digest(text: str) -> str:
    """The cache key of a text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    """The sqlite3 store under ``cache_dir`` (created on first use). Safe to share by threads."""

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self._path = Path(cache_dir).expanduser() / DB_NAME
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def get_dense(self, model: str, role: Role, digests: Sequence[str]) -> dict[str, FloatMatrix]:
        rows = self._select("dense", "dims, vector", model, role, digests)
        return {
            digest: np.frombuffer(blob, dtype=np.float32, count=dims).copy()
            for digest, dims, blob in rows
        }

    def put_dense(self, model: str, role: Role, items: Iterable[tuple[str, FloatMatrix]]) -> None:
        rows = []
        for digest, vector in items:
            array = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            rows.append((model, role, digest, int(array.shape[0]), array.tobytes()))
        self._insert("INSERT OR REPLACE INTO dense VALUES (?, ?, ?, ?, ?)", rows)

    def get_sparse(self, model: str, role: Role, digests: Sequence[str]) -> dict[str, SparseVector]:
        rows = self._select("sparse", "weights", model, role, digests)
        return {digest: dict(json.loads(weights)) for digest, weights in rows}

    def put_sparse(self, model: str, role: Role, items: Iterable[tuple[str, SparseVector]]) -> None:
        rows = [
            (model, role, digest, json.dumps(list(vector.items()), separators=(",", ":")))
            for digest, vector in items
        ]
        self._insert("INSERT OR REPLACE INTO sparse VALUES (?, ?, ?, ?)", rows)

    def _select(
        self, table: str, columns: str, model: str, role: Role, digests: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        unique = list(dict.fromkeys(digests))
        found: list[tuple[Any, ...]] = []
        with self._lock:
            conn = self._connection()
            for start in range(0, len(unique), _SQL_CHUNK):
                chunk = unique[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                found.extend(
                    conn.execute(
                        f"SELECT text_sha, {columns} FROM {table} "
                        f"WHERE model = ? AND role = ? AND text_sha IN ({marks})",
                        (model, role, *chunk),
                    )
                )
        return found

    def _insert(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        with self._lock:
            conn = self._connection()
            with conn:
                conn.executemany(sql, rows)


def _through_cache(
    texts: Sequence[str],
    get: Callable[[Sequence[str]], dict[str, V]],
    encode: Callable[[list[str]], Sequence[V]],
    put: Callable[[Iterable[tuple[str, V]]], None],
) -> tuple[list[V], int]:
    """Values for ``texts``: cached ones read, the rest encoded once each and stored."""
    if isinstance(texts, str):
        raise TypeError("pass a sequence of texts, not a single string")
    digests = [text_digest(t) for t in texts]
    found = get(digests)
    missing: dict[str, str] = {}
    for digest, text in zip(digests, texts, strict=True):
        if digest not in found:
            missing.setdefault(digest, text)
    if missing:
        encoded = encode(list(missing.values()))
        fresh = list(zip(missing.keys(), encoded, strict=True))
        put(fresh)
        found.update(fresh)
    return [found[d] for d in digests], len(missing)


class _CachedBase:
    def __init__(self, cache_dir: str | os.PathLike[str] | EmbeddingCache) -> None:
        self._cache = (
            cache_dir if isinstance(cache_dir, EmbeddingCache) else EmbeddingCache(cache_dir)
        )
        self._hits = 0
        self._misses = 0
        self._stats_lock = threading.Lock()

    @property
    def cache(self) -> EmbeddingCache:
        return self._cache

    @property
    def stats(self) -> CacheStats:
        """Texts served from the cache and texts encoded, since construction."""
        with self._stats_lock:
            return CacheStats(hits=self._hits, misses=self._misses)

    def _count(self, total: int, misses: int) -> None:
        with self._stats_lock:
            self._hits += total - misses
            self._misses += misses

    def close(self) -> None:
        self._cache.close()


class CachedDenseEncoder(_CachedBase):
    """A :class:`~es_neural.encoders.base.DenseEncoder` that caches ``inner``'s encodings."""

    def __init__(
        self, inner: DenseEncoder, cache_dir: str | os.PathLike[str] | EmbeddingCache
    ) -> None:
        super().__init__(cache_dir)
        self._inner = inner

    @property
    def inner(self) -> DenseEncoder:
        return self._inner

    @property
    def dims(self) -> int:
        return self._inner.dims

    @property
    def similarity(self) -> Similarity:
        return self._inner.similarity

    @property
    def max_seq_length(self) -> int:
        return self._inner.max_seq_length

    @property
    def fingerprint(self) -> ModelFingerprint:
        return self._inner.fingerprint

    @property
    def cache_key(self) -> str:
        return self._inner.cache_key

    def load(self) -> None:
        self._inner.load()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return self._inner.token_lengths(texts)

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts, "query", self._inner.encode_queries)

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts, "document", self._inner.encode_documents)

    def _encode(
        self, texts: Sequence[str], role: Role, encode: Callable[[list[str]], FloatMatrix]
    ) -> FloatMatrix:
        dims = self._inner.dims
        if len(texts) == 0:
            return np.empty((0, dims), dtype=np.float32)
        key = self._inner.cache_key
        if role == "query":
            # A query-tuned encoder (QueryTunedDense) keys its query embeddings apart.
            key = getattr(self._inner, "query_cache_key", key)
        vectors, misses = _through_cache(
            texts,
            lambda digests: self._cache.get_dense(key, role, digests),
            lambda batch: list(encode(batch)),
            lambda items: self._cache.put_dense(key, role, items),
        )
        self._count(len(texts), misses)
        return np.stack(vectors).astype(np.float32, copy=False)


class CachedSparseEncoder(_CachedBase):
    """A :class:`~es_neural.encoders.base.SparseEncoder` that caches ``inner``'s encodings."""

    def __init__(
        self, inner: SparseEncoder, cache_dir: str | os.PathLike[str] | EmbeddingCache
    ) -> None:
        super().__init__(cache_dir)
        self._inner = inner

    @property
    def inner(self) -> SparseEncoder:
        return self._inner

    @property
    def max_seq_length(self) -> int:
        return self._inner.max_seq_length

    @property
    def fingerprint(self) -> ModelFingerprint:
        return self._inner.fingerprint

    @property
    def cache_key(self) -> str:
        return self._inner.cache_key

    def load(self) -> None:
        self._inner.load()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return self._inner.token_lengths(texts)

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return self._encode(texts, "query", self._inner.encode_queries)

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return self._encode(texts, "document", self._inner.encode_documents)

    def _encode(
        self,
        texts: Sequence[str],
        role: Role,
        encode: Callable[[list[str]], list[SparseVector]],
    ) -> list[SparseVector]:
        if len(texts) == 0:
            return []
        key = self._inner.cache_key
        vectors, misses = _through_cache(
            texts,
            lambda digests: self._cache.get_sparse(key, role, digests),
            encode,
            lambda items: self._cache.put_sparse(key, role, items),
        )
        self._count(len(texts), misses)
        # Each caller gets its own dicts: a repeated text must not share one mutable value.
        return [dict(vector) for vector in vectors]
