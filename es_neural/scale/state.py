"""The checkpoint of a scale-out ingest: which blocks of the file are completely written.

One small JSON file beside single-process ingest's checkpoints
(``<home>/state/checkpoints/<index>--<key>.blocks.json``, the key covering the index, the source
file and the models), replaced atomically (write, fsync, rename) so that a crash at any instant
leaves it valid. A block is recorded only after every record of it was written or
dead-lettered and its dead letters were flushed; a run started again skips the recorded blocks
without reading them. A migration's slices are recorded in its own state file
(:mod:`es_neural.migrate.state`), as single-process migration does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["BlockCheckpoint", "BlockCheckpointStore"]


@dataclass(frozen=True, slots=True)
class BlockCheckpoint:
    source: str
    index: str
    block_size: int
    blocks: int
    done: tuple[int, ...] = ()
    #: Records in the done blocks, and the counts of every run's writing so far.
    records: int = 0
    counts: Mapping[str, float] = field(default_factory=dict)
    complete: bool = False
    updated_at: float = 0.0

    def with_block(self, number: int, records: int) -> BlockCheckpoint:
        """Block ``number`` (of ``records`` records) is written."""
        done = tuple(sorted({*self.done, number}))
        return replace(
            self,
            done=done,
            records=self.records + records,
            complete=len(done) == self.blocks,
            updated_at=time.time(),
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["done"] = list(self.done)
        return data


class BlockCheckpointStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, *, source: str, index: str, block_size: int) -> BlockCheckpoint | None:
        """The checkpoint of the same source, index and block size, if there is a readable one."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            checkpoint = BlockCheckpoint(**{**data, "done": tuple(data.get("done", ()))})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return None  # unreadable: start again (content hashes make that cheap)
        if (checkpoint.source, checkpoint.index, checkpoint.block_size) != (
            source,
            index,
            block_size,
        ):
            return None
        return checkpoint

    def save(self, checkpoint: BlockCheckpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(checkpoint.to_json(), f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
