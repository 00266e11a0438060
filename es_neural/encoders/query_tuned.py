"""A dense encoder whose queries go through a query-tuned copy of the document model.

``es-neural train dense`` tunes the query tower only (:mod:`es_neural.train.dense`): documents
keep the base model's embeddings, so an index built with the base model stays valid and its
fingerprint is unchanged. :class:`QueryTunedDense` pairs the two: ``encode_documents`` and the
fingerprint come from the base encoder, ``encode_queries`` from the tuned folder. The folder's
``es_neural.json`` names the document model it was tuned for; any other base is refused.

Cached query embeddings are keyed apart from the base model's (:attr:`query_cache_key`), cached
document embeddings are shared with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from es_neural.encoders.base import FloatMatrix, Similarity, local_model_folder
from es_neural.encoders.dense import SentenceTransformerDense
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.encoders.tower import cache_root, is_compact_tower, materialize_tower
from es_neural.errors import ConfigurationError

__all__ = ["QUERY_MODEL_META", "QueryTunedDense"]

#: Same name as :data:`es_neural.train.dense.QUERY_MODEL_META` (kept here to avoid importing
#: the training package from the encoders).
QUERY_MODEL_META = "es_neural.json"


class QueryTunedDense:
    """Documents through ``base``, queries through the tuned ``query_folder``."""

    def __init__(
        self,
        base: SentenceTransformerDense,
        query_folder: str | os.PathLike[str],
        *,
        max_seq_length: int | None = None,
    ) -> None:
        self._base = base
        self._folder = Path(query_folder)
        self._source = self._folder
        if is_compact_tower(self._folder):
            # A compact distilled tower: its kept layers over the document model's embeddings.
            base_folder = local_model_folder(base.model_name_or_path)
            if base_folder is None:
                raise ConfigurationError(
                    f"the query tower {self._folder} borrows the document model's embeddings, "
                    f"which needs that model as a local folder, not {base.model_name_or_path!r}"
                )
            self._source = materialize_tower(self._folder, base_folder, cache_root())
        self._query = SentenceTransformerDense(
            self._source,
            device=None if base.device == "auto" else base.device,
            batch_size=base.batch_size,
            similarity=base.similarity,
            normalize=base.normalize,
            max_seq_length=max_seq_length,
            query_runtime=base.query_runtime_setting,
            query_threads=base.query_threads,
        )
        self._checked = False

    def __repr__(self) -> str:
        return f"QueryTunedDense({self._base!r}, queries={str(self._folder)!r})"

    @property
    def base(self) -> SentenceTransformerDense:
        return self._base

    @property
    def query_folder(self) -> Path:
        return self._folder

    def load(self) -> None:
        self._base.load()
        if not self._checked:
            self._check()
        self._query.load()

    def _check(self) -> None:
        meta_path = self._source / QUERY_MODEL_META
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"{self._folder} is not a query-tuned model (no readable {QUERY_MODEL_META}); "
                "make one with `es-neural train dense`"
            ) from exc
        recorded = meta.get("document_model") or {}
        expected = self._base.fingerprint.digest
        # The same weights at another precision are the same document space.
        accepted = {expected, self._base.fingerprint.same_space().digest}
        if meta.get("role") != "query_encoder" or recorded.get("digest") not in accepted:
            name = recorded.get("name", "?")
            raise ConfigurationError(
                f"the query model {self._folder} was tuned for the document model {name!r} "
                f"(fingerprint {recorded.get('digest')}), not for "
                f"{self._base.fingerprint.describe()} ({expected})"
            )
        self._checked = True

    @property
    def dims(self) -> int:
        return self._base.dims

    @property
    def similarity(self) -> Similarity:
        return self._base.similarity

    @property
    def max_seq_length(self) -> int:
        return self._base.max_seq_length

    @property
    def fingerprint(self) -> ModelFingerprint:
        """The document space: the base model's fingerprint."""
        return self._base.fingerprint

    @property
    def cache_key(self) -> str:
        """Key of document embeddings (shared with the base model)."""
        return self._base.cache_key

    @property
    def query_cache_key(self) -> str:
        """Key of query embeddings: the base key plus the tuned folder's fingerprint."""
        self.load()
        return f"{self._base.cache_key}|query={self._query.cache_key}"

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return self._base.token_lengths(texts)

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        self.load()
        return self._query.encode_queries(texts)

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        return self._base.encode_documents(texts)
