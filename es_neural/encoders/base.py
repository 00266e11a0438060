"""Typed protocols of the encoding stage.

Ingestion, search and the API depend on these protocols only; implementations live in
:mod:`.dense` (sentence-transformers), :mod:`.sparse` (SPLADE on transformers) and :mod:`.cache`
(a persistent cache in front of either). Encoders are asymmetric: queries and documents go
through separate methods, since a model may encode them differently (prompts, pruning).

Every encoder may be shared by threads once loaded; ``load()`` is idempotent and thread-safe, and
any ``encode_*`` call loads the model first when ``load()`` was not called.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.errors import ConfigurationError

__all__ = [
    "TORCH_EXTRA",
    "DenseEncoder",
    "FloatMatrix",
    "LeafAssigner",
    "LeafAssignment",
    "Similarity",
    "SparseEncoder",
    "SparseVector",
    "count_truncated",
    "local_model_folder",
    "require_torch_stack",
    "resolve_device",
]

Similarity = Literal["cosine", "dot_product", "l2_norm"]
#: ``float32`` array of shape ``[n, dims]``.
FloatMatrix = npt.NDArray[np.float32]
#: Engine-ready ``token -> weight`` map: sanitised keys, weights > 0, at most top-k entries,
#: ordered by descending weight.
SparseVector = dict[str, float]


@runtime_checkable
class DenseEncoder(Protocol):
    """Texts to fixed-size float32 vectors."""

    @property
    def dims(self) -> int: ...

    @property
    def similarity(self) -> Similarity:
        """The similarity the vectors are made for; ``cosine`` and ``dot_product`` imply unit
        vectors (Elasticsearch refuses non-unit vectors for ``dot_product``)."""
        ...

    @property
    def max_seq_length(self) -> int:
        """Tokens (special tokens included) the model sees; longer texts are truncated."""
        ...

    @property
    def fingerprint(self) -> ModelFingerprint: ...

    @property
    def cache_key(self) -> str:
        """Changes whenever the output for a text would change: the fingerprint digest plus the
        options that alter outputs without changing the space (truncation, pruning)."""
        ...

    def load(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix: ...

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix: ...

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Untruncated token counts (special tokens included), one per text."""
        ...


@runtime_checkable
class SparseEncoder(Protocol):
    """Texts to sparse ``token -> weight`` maps (SPLADE), cleaned by
    :func:`es_neural.encoders.tokens.clean_weights`."""

    @property
    def max_seq_length(self) -> int: ...

    @property
    def fingerprint(self) -> ModelFingerprint: ...

    @property
    def cache_key(self) -> str: ...

    def load(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def token_lengths(self, texts: Sequence[str]) -> list[int]: ...


def count_truncated(encoder: DenseEncoder | SparseEncoder, texts: Sequence[str]) -> int:
    """How many of ``texts`` are longer than the encoder's window (and so lose their tail)."""
    limit = encoder.max_seq_length
    return sum(1 for length in encoder.token_lengths(texts) if length > limit)


@dataclass(frozen=True, slots=True)
class LeafAssignment:
    """Where one document sits in a routing tree: its leaves and their ancestors."""

    leaf_ids: tuple[str, ...]
    ancestors: tuple[str, ...]
    tree_version: str


@runtime_checkable
class LeafAssigner(Protocol):
    """Hook for a tree router: assigns documents (by embedding) to leaves of a versioned tree.

    No implementation ships yet; ingestion stores the assignments and the tree version when one
    is configured.
    """

    @property
    def tree_version(self) -> str: ...

    def assign(self, embeddings: FloatMatrix) -> list[LeafAssignment]: ...


# --------------------------------------------------------------------------- shared helpers

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def local_model_folder(model: str | os.PathLike[str]) -> Path | None:
    """The model folder ``model`` names, or ``None`` when it is a hub id.

    Raises :class:`ConfigurationError` when ``model`` looks like a path (absolute, ``./``, ``~``
    or several ``/``) but no such folder exists, or is neither a folder nor a valid hub id.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    text = os.fspath(model)
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        return None
    raise ConfigurationError(
        f"model {text!r} is neither an existing model folder nor a hub id ('org/name')"
    )


def resolve_device(device: str | None) -> str:
    """``device``, or ``"cuda"`` when a GPU is available, else ``"cpu"``.

    torch is imported only when it may find a GPU: it is installed and the CUDA driver library
    loads (so a CPU-only machine, or a lean install, answers ``"cpu"`` without importing it).
    """
    if device:
        return device
    if importlib.util.find_spec("torch") is None or not _cuda_driver_present():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cuda_driver_present() -> bool:
    """Whether the CUDA driver library loads (torch needs it to see any GPU)."""
    import ctypes
    import sys

    name = {"linux": "libcuda.so.1", "win32": "nvcuda.dll"}.get(sys.platform)
    if name is None:
        return False
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


#: The extra that installs torch, transformers and sentence-transformers.
TORCH_EXTRA = "torch"
_TORCH_STACK = ("torch", "transformers", "sentence_transformers")


def require_torch_stack(feature: str) -> None:
    """Raise :class:`ConfigurationError` when ``feature`` (for example "document encoding")
    cannot run because the install leaves torch, transformers or sentence-transformers out.

    The lean install (``pip install es-neural``) serves and searches: its query encoders run on
    ONNX Runtime. Encoding documents with the torch models, training and the cross-encoder need
    the ``torch`` extra.
    """
    missing = [name for name in _TORCH_STACK if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigurationError(
            f"{feature} needs {', '.join(m.replace('_', '-') for m in missing)}, which this "
            f"install leaves out (the lean install serves and searches only): "
            f"pip install 'es-neural[{TORCH_EXTRA}]'"
        )
