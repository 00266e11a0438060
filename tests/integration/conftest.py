"""Integration fixtures beyond tests/conftest.py: the 3-node fault-test clusters (issue 7).

``cluster3`` starts a 3-node Elasticsearch and a 3-node OpenSearch cluster on loopback (200
ports above the configured engine URLs; see ``tests/support/cluster_faults.py``) the first time
a test asks for it, both at once, and stops them when the session ends. The shared single
nodes of the other tests are never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from es_neural.dialects import BaseDialect
from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex
from es_neural.settings import Settings
from tests.support.cluster_faults import Clusters
from tests.support.fakes import HashingDense


@pytest.fixture(scope="session")
def cluster3(settings: Settings) -> Iterator[Clusters]:
    """Both 3-node clusters, starting in the background; ``cluster3.get(engine)`` waits."""
    clusters = Clusters(settings).start()
    try:
        yield clusters
    finally:
        clusters.stop()


@pytest.fixture
def embedded_index(
    engine_settings: Settings,
    dialect: BaseDialect,
    index_name: str,
    embedded_dense: DenseEncoder,
    embedded_sparse: SparseEncoder,
) -> Callable[[Sequence[Mapping[str, Any]], int], NeuralIndex]:
    """Ingest documents into this test's index with the embedded models; returns the index."""

    def make(docs: Sequence[Mapping[str, Any]], batch_size: int) -> NeuralIndex:
        idx = NeuralIndex(
            index_name,
            settings=engine_settings,
            dialect=dialect,
            dense=embedded_dense,
            sparse=embedded_sparse,
        )
        report = idx.ingest(docs, options=IngestOptions(progress=False, batch_size=batch_size))
        assert report.indexed == len(docs)
        return idx

    return make


@pytest.fixture
def hashed_index(
    engine_settings: Settings, dialect: BaseDialect, index_name: str
) -> Callable[..., NeuralIndex]:
    """Ingest documents into this test's index with the hashing test encoder (``dense``: another
    one) and no SPLADE field; returns the index."""

    def make(docs: Sequence[Mapping[str, Any]], dense: DenseEncoder | None = None) -> NeuralIndex:
        idx = NeuralIndex(
            index_name,
            settings=engine_settings,
            dialect=dialect,
            dense=dense if dense is not None else HashingDense(),
            use_sparse=False,
        )
        report = idx.ingest(docs, options=IngestOptions(progress=False))
        assert report.indexed == len(docs)
        return idx

    return make
