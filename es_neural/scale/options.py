"""What a scale-out run is given: where Ray runs, how many workers, and which models they load.

Plain, picklable values (no Ray import): the driver builds them and Ray ships them to every
worker, which loads its own models from them (once per worker, when it starts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from es_neural.errors import InvalidInputError

if TYPE_CHECKING:
    from es_neural.encoders.base import DenseEncoder, LeafAssigner, SparseEncoder
    from es_neural.settings import Settings

__all__ = ["LOCAL", "ModelSpec", "ScaleOptions", "SettingsModels"]

#: ``ScaleOptions.address`` that starts a new Ray instance on this machine.
LOCAL = "local"


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    """How a run uses Ray.

    ``address``: ``None`` or ``"local"`` starts Ray on this machine (``local_cpus`` logical CPUs,
    default: this machine's, at least what the workers ask for); anything else is given to
    ``ray.init(address=...)`` (``"auto"``, ``"10.0.0.5:6379"``, ``"ray://head:10001"``). A Ray
    already initialised in this process is used as it is.

    ``workers`` encoder actors, each reserving ``cpus_per_worker`` CPUs and ``gpus_per_worker``
    GPUs (a fraction shares a GPU) and running torch with ``torch_threads`` threads (default:
    its CPUs). ``writers`` bulk-writer actors (default: one per two workers) reserve no CPU:
    they wait on the engine. ``block_size`` records make one checkpointed block of a file.
    """

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    torch_threads: int | None = None
    writers: int | None = None
    block_size: int = 10_000
    local_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InvalidInputError("--workers must be at least 1")
        if self.gpus_per_worker < 0 or self.cpus_per_worker < 0:
            raise InvalidInputError("CPUs and GPUs per worker cannot be negative")
        if self.writers is not None and self.writers < 1:
            raise InvalidInputError("writers must be at least 1")
        if self.block_size < 1:
            raise InvalidInputError("the block size must be at least 1")

    @property
    def local(self) -> bool:
        return self.address in (None, LOCAL)

    @property
    def writer_count(self) -> int:
        return self.writers if self.writers is not None else max(1, (self.workers + 1) // 2)

    @property
    def threads(self) -> int:
        if self.torch_threads is not None:
            return max(1, self.torch_threads)
        return max(1, int(self.cpus_per_worker))


class ModelSpec(Protocol):
    """Something picklable that loads the encoders in a worker (and once in the driver, for the
    fingerprints the index records)."""

    def load(self) -> tuple[DenseEncoder, SparseEncoder | None, LeafAssigner | None]: ...


@dataclass(frozen=True, slots=True)
class SettingsModels:
    """The models the settings name (``dense``, ``sparse`` unless ``use_sparse`` is off, and the
    tree in folder ``tree``, if given), loaded through the encoder registry's one bundle."""

    settings: Settings
    use_sparse: bool = True
    tree: Path | None = None

    def load(self) -> tuple[DenseEncoder, SparseEncoder | None, LeafAssigner | None]:
        from es_neural.encoders.registry import Encoders

        encoders = Encoders.from_settings(self.settings, sparse=self.use_sparse)
        dense, sparse = encoders.dense, encoders.sparse
        leaves = None
        if self.tree is not None:
            from es_neural.tree.artifact import load_tree
            from es_neural.tree.route import TreeLeafAssigner

            leaves = TreeLeafAssigner(load_tree(self.tree), encoder=dense.fingerprint)
        return dense, sparse, leaves
