"""Small real implementations of the encoder protocols for tests (no model files, instant).

Not mocks: :class:`HashingDense` really encodes, deterministically, so documents it encodes can
be written to an engine and searched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from es_neural.encoders.base import FloatMatrix, Similarity
from es_neural.encoders.fingerprint import ModelFingerprint

__all__ = ["HashingDense"]


class HashingDense:
    """Token hashes summed into 16 unit-length dims: deterministic, instant, no files.

    ``name`` and ``normalize`` go into the fingerprint (two names: two incompatible models);
    ``loads`` counts :meth:`load` calls."""

    dims = 16
    similarity: Similarity = "cosine"
    max_seq_length = 64

    def __init__(self, name: str = "hashing-test", *, normalize: bool | None = True) -> None:
        self.fingerprint = ModelFingerprint(
            kind="dense", name=name, revision="1", dims=self.dims, normalize=normalize
        )
        self.cache_key = self.fingerprint.digest
        self.loads = 0

    def load(self) -> None:
        self.loads += 1

    def _encode(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in text.lower().split():
                h = hashlib.sha256(token.encode()).digest()
                out[row, h[0] % self.dims] += 1.0
            norm = float(np.linalg.norm(out[row])) or 1.0
            out[row] /= norm
        return out

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts)

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]
