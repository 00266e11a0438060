"""A Ray Data source with one read task per unit of work (a block of a file, a slice of an index).

Imports Ray: loaded only by a run that uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

__all__ = ["UnitRead", "UnitsDatasource"]


@dataclass(frozen=True, slots=True)
class UnitRead:
    """How to read one unit: ``read()`` yields its Arrow tables; ``rows`` if known."""

    read: Callable[[], Iterable[pa.Table]]
    rows: int | None = None


class UnitsDatasource(Datasource):
    """One read task per unit, whatever parallelism Ray asks for: a unit is the checkpointed
    piece of work, so it is never split or merged here."""

    def __init__(self, units: Sequence[UnitRead], name: str) -> None:
        super().__init__()
        self.units = list(units)
        self.name = name

    def get_name(self) -> str:
        return self.name

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: object = None
    ) -> list[ReadTask]:
        return [
            ReadTask(
                unit.read,
                BlockMetadata(
                    num_rows=unit.rows, size_bytes=None, exec_stats=None, input_files=None
                ),
            )
            for unit in self.units
        ]
