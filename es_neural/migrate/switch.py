"""Switch and rollback: atomic alias moves, recorded in the new index's ``_meta``.

Before the alias moves, the new index's ``_meta.migration`` records what the alias pointed at
(``replaced``). The move itself is one ``_aliases`` request (remove from the old indices, add to
the new), so readers see either the old index or the new one, never neither. The old index is kept.
:func:`rollback` reads ``replaced`` back from the index the alias points at now and moves the
alias there in one request: it needs nothing but the engine (no local state), so it works from
any machine. Each rollback undoes one switch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from es_neural.dialects.base import BaseDialect
from es_neural.errors import EsNeuralError, IndexNotFoundError

__all__ = ["RollbackError", "SwitchResult", "alias_status", "point_alias", "rollback", "switch"]


class RollbackError(EsNeuralError):
    """There is nothing to roll back to (or it is gone)."""


@dataclass(frozen=True, slots=True)
class SwitchResult:
    alias: str
    index: str
    replaced: tuple[str, ...]
    at: float


def _migration_meta(dialect: BaseDialect, index: str) -> tuple[dict[str, Any], dict[str, Any]]:
    meta = dict(dialect.get_mapping(index).get("_meta") or {})
    migration = meta.get("migration")
    return meta, dict(migration) if isinstance(migration, Mapping) else {}


def point_alias(dialect: BaseDialect, alias: str, indices: Sequence[str]) -> list[str]:
    """Point ``alias`` at exactly ``indices`` in one atomic request; returns what it left."""
    current = dialect.resolve_alias(alias)
    actions: list[dict[str, Any]] = [
        {"remove": {"index": name, "alias": alias}} for name in current if name not in indices
    ]
    actions.extend({"add": {"index": name, "alias": alias}} for name in indices)
    dialect.update_aliases(actions)
    return [name for name in current if name not in indices]


def switch(dialect: BaseDialect, alias: str, index: str) -> SwitchResult:
    """Move ``alias`` to ``index`` atomically, recording the indices it leaves for rollback."""
    if not dialect.index_exists(index):
        raise IndexNotFoundError(f"cannot switch alias {alias!r} to missing index {index!r}")
    before = [name for name in dialect.resolve_alias(alias) if name != index]
    meta, migration = _migration_meta(dialect, index)
    at = time.time()
    migration.update(
        {"alias": alias, "replaced": before, "switched_at": at, "rolled_back_at": None}
    )
    dialect.put_meta(index, {**meta, "migration": migration})
    left = point_alias(dialect, alias, [index])
    if sorted(left) != sorted(before):  # the alias moved between the two reads: record the truth
        migration["replaced"] = left
        dialect.put_meta(index, {**meta, "migration": migration})
    return SwitchResult(alias=alias, index=index, replaced=tuple(left), at=at)


def rollback(dialect: BaseDialect, alias: str) -> SwitchResult:
    """Point ``alias`` back at what the last switch replaced (the old indices, kept)."""
    current = dialect.resolve_alias(alias)
    if len(current) != 1:
        raise RollbackError(
            f"alias {alias!r} points at {current or 'nothing'}; rollback needs exactly one index"
        )
    index = current[0]
    meta, migration = _migration_meta(dialect, index)
    replaced = [str(name) for name in migration.get("replaced") or []]
    if not migration.get("switched_at"):
        raise RollbackError(f"{index!r} was not switched in by `es-neural migrate`")
    if not replaced:
        source = migration.get("source") or {}
        raise RollbackError(
            f"alias {alias!r} pointed at nothing on this engine before {index!r}; the original "
            f"is {source.get('engine')} index {source.get('index')!r}: point readers back there"
        )
    missing = [name for name in replaced if not dialect.index_exists(name)]
    if missing:
        raise RollbackError(f"cannot roll back: {missing} no longer exist(s)")
    point_alias(dialect, alias, replaced)
    at = time.time()
    migration["rolled_back_at"] = at
    dialect.put_meta(index, {**meta, "migration": migration})
    return SwitchResult(alias=alias, index=replaced[0], replaced=(index,), at=at)


def alias_status(dialect: BaseDialect, alias: str) -> dict[str, Any]:
    """Where ``alias`` points and what the migration that switched it in recorded."""
    current = dialect.resolve_alias(alias)
    out: dict[str, Any] = {"alias": alias, "engine": dialect.engine.value, "indices": current}
    if len(current) == 1:
        meta, migration = _migration_meta(dialect, current[0])
        out["migration"] = migration or None
        out["models"] = {
            "dense": (meta.get("dense") or {}).get("name"),
            "sparse": (meta.get("sparse") or {}).get("name"),
            "tree": (meta.get("tree") or {}).get("version"),
        }
        out["count"] = dialect.count(current[0])
    return out
