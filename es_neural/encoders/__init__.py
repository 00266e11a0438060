"""Encoders: dense (sentence-transformers), sparse (SPLADE), fingerprints, cache and registry.

Importing this package loads no model and imports neither torch nor transformers (nor, until a
name is used, the settings); models load on :meth:`load` or first use. Use
:func:`get_dense_encoder` / :func:`get_sparse_encoder` to share one loaded model per
configuration across the CLI, the API and ingestion.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from es_neural.encoders.base import (
        DenseEncoder,
        FloatMatrix,
        LeafAssigner,
        LeafAssignment,
        Similarity,
        SparseEncoder,
        SparseVector,
        count_truncated,
    )
    from es_neural.encoders.cache import (
        CachedDenseEncoder,
        CachedSparseEncoder,
        CacheStats,
        EmbeddingCache,
    )
    from es_neural.encoders.dense import SentenceTransformerDense
    from es_neural.encoders.fingerprint import (
        UNKNOWN_REVISION,
        ModelFingerprint,
        check_compatible,
        folder_revision,
    )
    from es_neural.encoders.registry import (
        EMBEDDED,
        Encoders,
        clear_encoders,
        embedded_dense_path,
        embedded_sparse_path,
        get_dense_encoder,
        get_sparse_encoder,
    )
    from es_neural.encoders.sparse import SpladeEncoder
    from es_neural.encoders.tokens import clean_weights, sanitize_token, unsanitize_token

#: Public name -> module (imported on first use, so importing one submodule, for example
#: ``es_neural.encoders.dense``, does not import the settings or the cache).
_PUBLIC = {
    "CacheStats": "es_neural.encoders.cache",
    "CachedDenseEncoder": "es_neural.encoders.cache",
    "CachedSparseEncoder": "es_neural.encoders.cache",
    "DenseEncoder": "es_neural.encoders.base",
    "EMBEDDED": "es_neural.encoders.registry",
    "EmbeddingCache": "es_neural.encoders.cache",
    "Encoders": "es_neural.encoders.registry",
    "FloatMatrix": "es_neural.encoders.base",
    "LeafAssigner": "es_neural.encoders.base",
    "LeafAssignment": "es_neural.encoders.base",
    "ModelFingerprint": "es_neural.encoders.fingerprint",
    "SentenceTransformerDense": "es_neural.encoders.dense",
    "Similarity": "es_neural.encoders.base",
    "SparseEncoder": "es_neural.encoders.base",
    "SparseVector": "es_neural.encoders.base",
    "SpladeEncoder": "es_neural.encoders.sparse",
    "UNKNOWN_REVISION": "es_neural.encoders.fingerprint",
    "check_compatible": "es_neural.encoders.fingerprint",
    "clean_weights": "es_neural.encoders.tokens",
    "clear_encoders": "es_neural.encoders.registry",
    "count_truncated": "es_neural.encoders.base",
    "embedded_dense_path": "es_neural.encoders.registry",
    "embedded_sparse_path": "es_neural.encoders.registry",
    "folder_revision": "es_neural.encoders.fingerprint",
    "get_dense_encoder": "es_neural.encoders.registry",
    "get_sparse_encoder": "es_neural.encoders.registry",
    "sanitize_token": "es_neural.encoders.tokens",
    "unsanitize_token": "es_neural.encoders.tokens",
}

__all__ = [
    "EMBEDDED",
    "UNKNOWN_REVISION",
    "CacheStats",
    "CachedDenseEncoder",
    "CachedSparseEncoder",
    "DenseEncoder",
    "EmbeddingCache",
    "Encoders",
    "FloatMatrix",
    "LeafAssigner",
    "LeafAssignment",
    "ModelFingerprint",
    "SentenceTransformerDense",
    "Similarity",
    "SparseEncoder",
    "SparseVector",
    "SpladeEncoder",
    "check_compatible",
    "clean_weights",
    "clear_encoders",
    "count_truncated",
    "embedded_dense_path",
    "embedded_sparse_path",
    "folder_revision",
    "get_dense_encoder",
    "get_sparse_encoder",
    "sanitize_token",
    "unsanitize_token",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'es_neural.encoders' has no attribute {name!r}")
    return getattr(import_module(module), name)
