"""Durable run state: the checkpoint (how far the source is safely written) and dead letters.

Both are plain files, written so that a crash at any instant leaves them valid: the checkpoint
is replaced atomically (write, fsync, rename); dead letters are appended one JSON line at a time
and flushed before the checkpoint that covers them moves forward.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "DeadLetter",
    "DeadLetterWriter",
    "read_dead_letters",
]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Every record before ``position`` is written or dead-lettered."""

    source: str
    index: str
    position: int = 0
    complete: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)
    updated_at: float = 0.0

    def advanced(self, position: int, counts: Mapping[str, int]) -> Checkpoint:
        merged = dict(self.counts)
        for key, value in counts.items():
            merged[key] = merged.get(key, 0) + value
        return replace(self, position=position, counts=merged, updated_at=time.time())


class CheckpointStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, *, source: str, index: str) -> Checkpoint | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("source") != source or data.get("index") != index:
            return None
        return Checkpoint(**data)

    def save(self, checkpoint: Checkpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(asdict(checkpoint), f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _shorten(value: Any, limit: int = 4000) -> Any:
    try:
        text = (
            json.dumps(value, ensure_ascii=False, default=str)
            if not isinstance(value, str)
            else value
        )
    except (TypeError, ValueError, RecursionError):  # cycles, huge numbers, deep nesting
        return f"<record not representable as JSON: {type(value).__name__}>"
    if len(text) <= limit:
        return value
    return text[:limit] + f"... [{len(text) - limit} more characters]"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A document (or record) that will not be written, and why.

    ``stage``: ``read`` (unreadable), ``validate`` (refused by preparation), ``encode`` (the
    encoders failed on it) or ``index`` (the engine refused it). ``position``: where it came from
    in its source, ``-1`` where there is no such thing (a migration)."""

    position: int
    doc_id: str | None
    stage: str
    reason: str
    record: Any = None
    error_type: str | None = None


class DeadLetterWriter:
    """Appends one JSON line per document that could not be indexed, with the reason.

    Safe to share between threads (a migration's workers write to one file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._pending: list[bytes] = []
        self._lock = threading.Lock()

    def add(
        self,
        *,
        position: int,
        doc_id: str | None,
        stage: str,
        reason: str,
        record: Any = None,
        error_type: str | None = None,
    ) -> None:
        self.add_all([DeadLetter(position, doc_id, stage, reason, record, error_type)])

    def add_all(self, letters: Iterable[DeadLetter]) -> None:
        lines = []
        for letter in letters:
            entry = {f.name: getattr(letter, f.name) for f in fields(letter)}
            entry["record"] = _shorten(letter.record)
            entry["at"] = time.time()
            line = json.dumps(entry, ensure_ascii=False, default=str)
            # Lone surrogates in raw input must not make the dead-letter file itself unreadable.
            lines.append(line.encode("utf-8", errors="backslashreplace") + b"\n")
        with self._lock:
            self._pending.extend(lines)
            self.count += len(lines)

    def flush(self) -> None:
        """Make every added entry durable (called before a checkpoint moves past them)."""
        with self._lock:
            if not self._pending:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as f:
                f.write(b"".join(self._pending))
                f.flush()
                os.fsync(f.fileno())
            self._pending.clear()


def read_dead_letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
