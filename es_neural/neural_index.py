"""The library facade: one es-neural index on one engine, in a few lines.

>>> from es_neural import NeuralIndex, get_settings
>>> idx = NeuralIndex("docs", settings=get_settings())          # cheap: nothing loaded yet
>>> report = idx.ingest("corpus.jsonl")                          # creates docs-v1 + alias docs
>>> response = idx.search("what is a neural tree", explain=True)

``profile=`` (a :class:`~es_neural.search.profile.Profile` or its path; by default the setting
``ES_NEURAL_PROFILE``) gives searches the recommended defaults ``es-neural eval --recommend``
wrote; a request's own values still win.

Models are loaded once per process through :mod:`es_neural.encoders.registry` and shared by
every ``NeuralIndex``, the CLI and the HTTP API.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from es_neural.dialects import BaseDialect, get_dialect
from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder
from es_neural.indices import IndexInfo, ensure_index
from es_neural.ingest.pipeline import IngestOptions, Ingestor, IngestReport
from es_neural.ingest.sources import Source, iterable_source, open_source
from es_neural.protocols import QueryRouter, Reranker
from es_neural.search.models import SearchRequest, SearchResponse
from es_neural.search.profile import Profile, load_profile
from es_neural.search.service import HybridSearcher
from es_neural.settings import EngineKind, Settings, get_settings
from es_neural.text import DEFAULT_TEXT_FIELDS

__all__ = ["NeuralIndex"]


class NeuralIndex:
    """An es-neural index ``name`` (an alias over versioned indices) on one engine."""

    def __init__(
        self,
        name: str,
        *,
        settings: Settings | None = None,
        engine: EngineKind | str | None = None,
        dense: DenseEncoder | None = None,
        sparse: SparseEncoder | None = None,
        use_sparse: bool = True,
        reranker: Reranker | None = None,
        router: QueryRouter | None = None,
        leaves: LeafAssigner | None = None,
        dialect: BaseDialect | None = None,
        profile: Profile | str | os.PathLike[str] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.name = self.settings.index_prefix + name
        self.engine = EngineKind(engine) if engine is not None else self.settings.engine
        self._dialect = dialect
        self._dense = dense
        self._sparse = sparse
        self._use_sparse = use_sparse
        self._reranker = reranker
        self.router = router
        self.leaves = leaves
        #: Request defaults (``None``: the settings' profile, ``ES_NEURAL_PROFILE``, if any).
        self.profile: Profile | None = load_profile(profile, self.settings)
        self._searcher: HybridSearcher | None = None
        self._lock = threading.Lock()

    # ----- lazily built parts -----

    @property
    def dialect(self) -> BaseDialect:
        if self._dialect is None:
            self._dialect = get_dialect(self.settings, self.engine)
        return self._dialect

    @property
    def dense(self) -> DenseEncoder:
        if self._dense is None:
            from es_neural.encoders.registry import Encoders

            self._dense = Encoders.from_settings(self.settings, sparse=False).dense
        return self._dense

    @property
    def sparse(self) -> SparseEncoder | None:
        if self._sparse is None and self._use_sparse:
            from es_neural.encoders.registry import Encoders

            self._sparse = Encoders.from_settings(self.settings).sparse
        return self._sparse

    @cached_property
    def reranker(self) -> Reranker | None:
        if self._reranker is not None:
            return self._reranker
        from es_neural.search.rerank import get_reranker

        settings = self.settings.rerank
        if self.profile is not None:  # the profile's reranker when the settings name none
            settings = self.profile.reranker_settings(settings)
        return get_reranker(settings)

    # ----- write -----

    def ensure(self, *, text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS) -> IndexInfo:
        """Create the index (``name-v1`` + alias) if missing; else check its models match."""
        return ensure_index(
            self.dialect,
            self.name,
            dense=self.dense.fingerprint,
            sparse=self.sparse.fingerprint if self.sparse is not None else None,
            text_fields=text_fields,
            similarity=self.dense.similarity,
            quantization=self.settings.quantization,
            shards=self.settings.shards,
            replicas=self.settings.replicas,
            tree_version=self.leaves.tree_version if self.leaves is not None else None,
            analyzer=self.settings.analyzer,
        )

    def ingest(
        self,
        source: Source | str | os.PathLike[str] | Iterable[Mapping[str, Any]],
        *,
        options: IngestOptions | None = None,
    ) -> IngestReport:
        """Encode and write ``source`` (a path, a :class:`Source` or an iterable of dicts)."""
        opts = options or IngestOptions()
        if isinstance(source, str | os.PathLike):
            source = open_source(Path(source))
        elif not isinstance(source, Source):
            source = iterable_source(source)
        info = self.ensure(text_fields=opts.text_fields)
        ingestor = Ingestor(
            self.dialect,
            dense=self.dense,
            sparse=self.sparse,
            leaves=self.leaves,
            options=opts,
            state_dir=self.settings.home / "state",
        )
        with self._lock:
            self._searcher = None  # the index may have just been created
        return ingestor.run(source, info)

    # ----- read -----

    @property
    def searcher(self) -> HybridSearcher:
        with self._lock:
            if self._searcher is None:
                self._searcher = HybridSearcher(
                    self.dialect,
                    self.name,
                    dense=self.dense,
                    sparse=self.sparse,
                    reranker=self.reranker,
                    router=self.router,
                    rerank=self.settings.rerank,
                    profile=self.profile,
                )
            return self._searcher

    def search(self, request: SearchRequest | str, **options: Any) -> SearchResponse:
        return self.searcher.search(request, **options)

    def count(self) -> int:
        return self.dialect.count(self.name)

    def delete(self) -> None:
        """Delete the alias's indices (every version) — for tests and demos."""
        for concrete in self.dialect.resolve_alias(self.name):
            self.dialect.delete_index(concrete)
        self.dialect.delete_index(self.name)
        with self._lock:
            self._searcher = None

    def close(self) -> None:
        if self._dialect is not None:
            self._dialect.close()
