"""The node fault helpers of the tests (``tests/support/node_faults.py``) on a home without nodes:
they refuse with a typed error instead of signalling anything. Killing real nodes is exercised by
the ingest, migration and 3-node cluster fault tests."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from es_neural.engines import LocalEngines
from es_neural.errors import EngineSetupError
from es_neural.settings import Settings
from tests.support.node_faults import kill_node, restart_node


def test_kill_and_restart_refuse_nodes_this_home_never_started(tmp_path: Path) -> None:
    manager = LocalEngines(Settings(home=tmp_path), instance="faults")
    with pytest.raises(EngineSetupError, match="elasticsearch node0 is not running"):
        kill_node(manager, "elasticsearch", 0)
    with pytest.raises(EngineSetupError, match="opensearch node2 is not running"):
        kill_node(manager, "opensearch", 2, signal.SIGTERM)
    with pytest.raises(EngineSetupError, match="elasticsearch node1 was never started here"):
        restart_node(manager, "elasticsearch", 1)
    assert not (tmp_path / "run" / "instances" / "faults" / "elasticsearch" / "node0").exists()
