"""Integration fixtures beyond tests/conftest.py: the 3-node fault-test clusters (issue 7).

``cluster3`` starts a 3-node Elasticsearch and a 3-node OpenSearch cluster on loopback (200
ports above the configured engine URLs; see ``tests/support/cluster_faults.py``) the first time
a test asks for it, both at once, and stops them when the session ends. The shared single
nodes of the other tests are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from es_neural.settings import Settings
from tests.support.cluster_faults import Clusters


@pytest.fixture(scope="session")
def cluster3(settings: Settings) -> Iterator[Clusters]:
    """Both 3-node clusters, starting in the background; ``cluster3.get(engine)`` waits."""
    clusters = Clusters(settings).start()
    try:
        yield clusters
    finally:
        clusters.stop()
