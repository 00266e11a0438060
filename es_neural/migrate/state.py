"""A migration's durable state: which phase it reached and which slices are copied.

One small JSON file per target engine and alias (``<home>/state/migrations``), replaced atomically
(write, fsync, rename) so that a crash at any instant leaves it valid. A run that finds an
unfinished state for the same source, alias and models resumes it: the target index is reused,
copied slices are skipped, and documents of the other slices that are already in the target with
the same content hash are not encoded again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = ["MigrationState", "Phase", "StateStore"]


class Phase(StrEnum):
    PLANNED = "planned"
    COPY = "copy"
    CATCH_UP = "catch-up"
    VERIFY = "verify"
    SWITCH = "switch"
    SWITCHED = "switched"
    FAILED_VERIFY = "failed-verify"

    @property
    def finished(self) -> bool:
        return self is Phase.SWITCHED


@dataclass(frozen=True, slots=True)
class MigrationState:
    source_engine: str
    source_url: str
    source_index: str
    target_engine: str
    target_index: str
    alias: str
    models_key: str
    #: Wall-clock start (epoch ms) on this machine: catch-up re-reads from here minus a margin.
    started_at_ms: int
    phase: Phase = Phase.PLANNED
    slices: int = 1
    slices_done: tuple[int, ...] = ()
    #: Start of the last timestamp catch-up pass (epoch ms).
    caught_up_from_ms: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    updated_at: float = 0.0

    def same_migration(self, *, source_engine: str, source_url: str, source_index: str) -> bool:
        return (self.source_engine, self.source_url, self.source_index) == (
            source_engine,
            source_url,
            source_index,
        )

    def at(self, phase: Phase, **changes: Any) -> MigrationState:
        return replace(self, phase=phase, updated_at=time.time(), **changes)

    def slice_done(self, slice_id: int, counts: Mapping[str, int]) -> MigrationState:
        merged = dict(self.counts)
        for key, value in counts.items():
            merged[key] = merged.get(key, 0) + value
        done = tuple(sorted({*self.slices_done, slice_id}))
        return replace(self, slices_done=done, counts=merged, updated_at=time.time())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["phase"] = self.phase.value
        data["slices_done"] = list(self.slices_done)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MigrationState:
        values = dict(data)
        values["phase"] = Phase(values.get("phase", Phase.PLANNED))
        values["slices_done"] = tuple(values.get("slices_done", ()))
        return cls(**values)


class StateStore:
    """The state files of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, target_engine: str, alias: str) -> Path:
        return self.directory / f"{target_engine}--{alias}.json"

    def load(self, target_engine: str, alias: str) -> MigrationState | None:
        try:
            data = json.loads(self.path(target_engine, alias).read_text(encoding="utf-8"))
            return MigrationState.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return None  # unreadable: treated as no state (the target index is checked anyway)

    def save(self, state: MigrationState) -> None:
        path = self.path(state.target_engine, state.alias)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(state.to_json(), f, sort_keys=True, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def clear(self, target_engine: str, alias: str) -> None:
        self.path(target_engine, alias).unlink(missing_ok=True)
