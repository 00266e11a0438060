"""Encoders: dense (sentence-transformers), sparse (SPLADE), fingerprints, cache and registry.

Importing this package loads no model and imports neither torch nor transformers; models load on
:meth:`load` or first use. Use :func:`get_dense_encoder` / :func:`get_sparse_encoder` to share one
loaded model per configuration across the CLI, the API and ingestion.
"""

from __future__ import annotations

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
    clear_encoders,
    embedded_dense_path,
    embedded_sparse_path,
    get_dense_encoder,
    get_sparse_encoder,
)
from es_neural.encoders.sparse import SpladeEncoder
from es_neural.encoders.tokens import clean_weights, sanitize_token, unsanitize_token

__all__ = [
    "EMBEDDED",
    "UNKNOWN_REVISION",
    "CacheStats",
    "CachedDenseEncoder",
    "CachedSparseEncoder",
    "DenseEncoder",
    "EmbeddingCache",
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
