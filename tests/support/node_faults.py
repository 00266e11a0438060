"""Fault injection on managed nodes (tests and bench only): kill or restart one node.

These used to be methods of :class:`~es_neural.engines.LocalEngines`, shipped to users who have
no use for them. They work with the manager's own bookkeeping (its state files, lock, process
groups, and the reaping of the node processes it started, without which a killed node would
linger as a zombie), so they reach into :mod:`es_neural.engines.local`; that coupling is kept
to this one file.
"""

from __future__ import annotations

import signal

from es_neural.engines import local
from es_neural.engines.install import file_lock
from es_neural.engines.local import LocalEngines, NodeStatus
from es_neural.errors import EngineSetupError
from es_neural.settings import EngineKind

__all__ = ["kill_node", "restart_node"]


def kill_node(
    manager: LocalEngines, engine: EngineKind | str, node: int, sig: int = signal.SIGKILL
) -> None:
    """Send ``sig`` to node ``node``'s process group; waits for the group to exit when ``sig``
    is SIGKILL or SIGTERM. ``manager.up`` restarts the node afterwards."""
    kind = EngineKind(engine)
    with file_lock(manager._lock(kind)):
        state = manager._read_states(kind).get(node)
        if state is None or not local._group_alive(state):
            raise EngineSetupError(f"{kind.value} node{node} is not running")
        local._signal_group(state.pgid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            limit = local._KILL_WAIT_S if sig == signal.SIGKILL else local._STOP_GRACE_S
            manager._wait_gone([state], limit)


def restart_node(
    manager: LocalEngines, engine: EngineKind | str, node: int, *, timeout: float = 180.0
) -> list[NodeStatus]:
    """Stop node ``node`` (if it runs) and bring the set back to its node count."""
    kind = EngineKind(engine)
    with file_lock(manager._lock(kind)):
        state = manager._read_states(kind).get(node)
        if state is None:
            raise EngineSetupError(f"{kind.value} node{node} was never started here")
        if local._group_alive(state):
            manager._stop_many(kind, [state])
    return manager.up(kind, nodes=state.nodes, timeout=timeout)
