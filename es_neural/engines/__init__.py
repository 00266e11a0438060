"""Managed local engines (no Docker): fetch from Maven Central, install, start, stop.

>>> from es_neural.engines import LocalEngines
>>> LocalEngines(get_settings()).up(EngineKind.ELASTICSEARCH)  # doctest: +SKIP
"""

from __future__ import annotations

from es_neural.engines.catalog import EngineRelease, JavaRange, MavenArtifact, release_for
from es_neural.engines.local import LocalEngines, NodeState, NodeStatus

__all__ = [
    "EngineRelease",
    "JavaRange",
    "LocalEngines",
    "MavenArtifact",
    "NodeState",
    "NodeStatus",
    "release_for",
]
