"""Dense bi-encoder on sentence-transformers.

The constructor only records options; the model is loaded by :meth:`SentenceTransformerDense.load`
or, lazily, by the first call that needs it (guarded by a lock, so concurrent first calls load
once). Queries and documents go through ``encode_query`` / ``encode_document``, which apply the
model's query and document prompts when it has them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from es_neural.encoders.base import FloatMatrix, Similarity, local_model_folder, resolve_device
from es_neural.encoders.fingerprint import ModelFingerprint, folder_revision, hub_revision
from es_neural.errors import ConfigurationError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["SentenceTransformerDense"]

_SIMILARITIES: frozenset[str] = frozenset(get_args(Similarity))
#: Similarities whose vectors must be unit length.
_UNIT_SIMILARITIES = frozenset({"cosine", "dot_product"})


@dataclass(frozen=True, slots=True)
class _Loaded:
    model: SentenceTransformer
    device: str
    dims: int
    max_seq_length: int
    fingerprint: ModelFingerprint


class SentenceTransformerDense:
    """A :class:`~es_neural.encoders.base.DenseEncoder` backed by a ``SentenceTransformer``.

    ``model_name_or_path`` is a local sentence-transformers folder (loaded with
    ``local_files_only``) or a hub id. ``normalize`` defaults to what ``similarity`` needs:
    unit vectors for ``cosine`` and ``dot_product``, raw vectors for ``l2_norm``;
    ``normalize=False`` with ``dot_product`` is refused. ``name`` labels the model in its
    fingerprint (default: the hub id, or the folder's name).
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        name: str | None = None,
        device: str | None = None,
        batch_size: int = 32,
        similarity: Similarity = "cosine",
        normalize: bool | None = None,
        max_seq_length: int | None = None,
    ) -> None:
        if similarity not in _SIMILARITIES:
            raise ConfigurationError(
                f"similarity must be one of {sorted(_SIMILARITIES)}, got {similarity!r}"
            )
        if normalize is False and similarity == "dot_product":
            raise ConfigurationError(
                "dot_product similarity needs unit vectors; use normalize=True (or None)"
            )
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        if max_seq_length is not None and max_seq_length < 2:
            raise ConfigurationError(f"max_seq_length must be >= 2, got {max_seq_length}")
        self._model_ref = os.fspath(model_name_or_path)
        self._name = name
        self._device = device
        self._batch_size = batch_size
        self._similarity: Similarity = similarity
        self._normalize = similarity in _UNIT_SIMILARITIES if normalize is None else normalize
        self._max_seq_length = max_seq_length
        self._lock = threading.Lock()
        self._state: _Loaded | None = None

    def __repr__(self) -> str:
        loaded = "loaded" if self._state is not None else "not loaded"
        return f"SentenceTransformerDense({self._model_ref!r}, {loaded})"

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load the model (once; later calls return at once)."""
        self._loaded()

    @property
    def is_loaded(self) -> bool:
        return self._state is not None

    def _loaded(self) -> _Loaded:
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is None:
                self._state = self._load()
            return self._state

    def _load(self) -> _Loaded:
        folder = local_model_folder(self._model_ref)
        from sentence_transformers import SentenceTransformer

        device = resolve_device(self._device)
        try:
            model = SentenceTransformer(
                str(folder) if folder is not None else self._model_ref,
                device=device,
                local_files_only=folder is not None,
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot load the dense model {self._model_ref!r}: {exc}"
            ) from exc
        model.eval()
        if self._max_seq_length is not None:
            model.max_seq_length = self._max_seq_length
        max_seq_length = model.max_seq_length or _tokenizer_limit(model)
        dims = _embedding_dimension(model)
        has_normalize_module = any(type(m).__name__ == "Normalize" for m in model)
        name = self._name or (folder.name if folder is not None else self._model_ref)
        revision = folder_revision(folder) if folder is not None else hub_revision(self._model_ref)
        fingerprint = ModelFingerprint(
            kind="dense",
            name=name,
            revision=revision,
            dims=dims,
            pooling=_pooling_mode(model),
            normalize=self._normalize or has_normalize_module,
        )
        return _Loaded(model, device, dims, int(max_seq_length), fingerprint)

    # ------------------------------------------------------------------ properties

    @property
    def model_name_or_path(self) -> str:
        return self._model_ref

    @property
    def device(self) -> str:
        """The device in use once loaded; before that, the one asked for (or ``"auto"``)."""
        state = self._state
        return state.device if state is not None else (self._device or "auto")

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def normalize(self) -> bool:
        return self._normalize

    @property
    def similarity(self) -> Similarity:
        return self._similarity

    @property
    def dims(self) -> int:
        return self._loaded().dims

    @property
    def max_seq_length(self) -> int:
        return self._loaded().max_seq_length

    @property
    def fingerprint(self) -> ModelFingerprint:
        return self._loaded().fingerprint

    @property
    def cache_key(self) -> str:
        state = self._loaded()
        return f"{state.fingerprint.digest}:len={state.max_seq_length}"

    @property
    def model(self) -> SentenceTransformer:
        """The underlying ``SentenceTransformer`` (loaded on first access)."""
        return self._loaded().model

    # ------------------------------------------------------------------ encoding

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts, query=True)

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts, query=False)

    def _encode(self, texts: Sequence[str], *, query: bool) -> FloatMatrix:
        items = _as_list(texts)
        state = self._loaded()
        if not items:
            return np.empty((0, state.dims), dtype=np.float32)
        model = state.model
        method_name = "encode_query" if query else "encode_document"
        encode = getattr(model, method_name, None) or model.encode
        out: Any = encode(
            items,
            batch_size=self._batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=self._normalize,
        )
        return np.ascontiguousarray(out, dtype=np.float32)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        items = _as_list(texts)
        if not items:
            return []
        tokenizer = self._loaded().model.tokenizer
        encoded = tokenizer(
            items,
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [len(ids) for ids in encoded["input_ids"]]


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a sequence of texts, not a single string")
    return list(texts)


def _embedding_dimension(model: SentenceTransformer) -> int:
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    dims = getter()
    if not dims:
        raise ConfigurationError("the dense model does not report its embedding dimension")
    return int(dims)


def _pooling_mode(model: SentenceTransformer) -> str | None:
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if isinstance(mode, str):
            return mode
        getter = getattr(module, "get_pooling_mode_str", None)
        if callable(getter):
            return str(getter())
    return None


def _tokenizer_limit(model: SentenceTransformer) -> int:
    limit = getattr(model.tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:
        raise ConfigurationError("the dense model has no max_seq_length; set max_seq_length")
    return limit
