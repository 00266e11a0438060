"""Dense bi-encoder on sentence-transformers.

The constructor only records options; the model is loaded by :meth:`SentenceTransformerDense.load`
or, lazily, by the first call that needs it (guarded by a lock, so concurrent first calls load
once). Queries and documents go through ``encode_query`` / ``encode_document``, which apply the
model's query and document prompts when it has them.

Queries take the torch-free query path (:mod:`es_neural.encoders.fast_query`: ONNX Runtime and
``tokenizers``, the same weights in fp32) when the model folder allows it and
``query_runtime`` is ``auto`` (the default) or ``onnx``; the sentence-transformers model is then
loaded only when documents are encoded. The fingerprint is the document encoder's either way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from es_neural.encoders.base import (
    FloatMatrix,
    Similarity,
    local_model_folder,
    require_torch_stack,
    resolve_device,
)
from es_neural.encoders.fast_query import LazyQueryPath
from es_neural.encoders.fingerprint import ModelFingerprint, folder_revision, hub_revision
from es_neural.encoders.onnx_bert import UnsupportedModel
from es_neural.encoders.precision import (
    MAX_GPU_BATCH_TEXTS,
    Precision,
    activation_bytes_per_token,
    gpu_token_budget,
    host_buffer,
    host_tensors,
    pack_batches,
    plan_batches,
    resolve_precision,
    synchronize,
    to_device,
    torch_dtype,
)
from es_neural.errors import ConfigurationError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from es_neural.encoders.fast_query import OnnxDenseQueries

__all__ = ["QUERY_RUNTIMES", "SentenceTransformerDense"]

#: ``query_runtime`` values: ``auto`` takes the torch-free query path when the model allows it,
#: ``onnx`` requires it, ``torch`` never takes it.
QUERY_RUNTIMES = ("auto", "onnx", "torch")

_SIMILARITIES: frozenset[str] = frozenset(get_args(Similarity))
#: Similarities whose vectors must be unit length.
_UNIT_SIMILARITIES = frozenset({"cosine", "dot_product"})
#: Texts tokenized at once by the batched path (then sorted by length and cut into batches).
_CHUNK_TEXTS = 8192


@dataclass(frozen=True, slots=True)
class _Loaded:
    model: SentenceTransformer
    device: str
    dims: int
    max_seq_length: int
    fingerprint: ModelFingerprint
    precision: Precision
    #: Whether the batched path applies (a plain Transformer + Pooling model); otherwise
    #: sentence-transformers' own ``encode_query`` / ``encode_document`` run.
    batched: bool
    bytes_per_token: int
    #: ONNX Runtime session when ``precision`` is ``int8`` (an int8 ONNX export of the model).
    onnx: Any = None


class SentenceTransformerDense:
    """A :class:`~es_neural.encoders.base.DenseEncoder` backed by a ``SentenceTransformer``.

    ``model_name_or_path`` is a local sentence-transformers folder (loaded with
    ``local_files_only``) or a hub id. ``normalize`` defaults to what ``similarity`` needs:
    unit vectors for ``cosine`` and ``dot_product``, raw vectors for ``l2_norm``;
    ``normalize=False`` with ``dot_product`` is refused. ``name`` labels the model in its
    fingerprint (default: the hub id, or the folder's name). ``precision`` is ``auto``, ``fp32``,
    ``int8`` (CPU), ``bf16`` or ``fp16`` (see :mod:`es_neural.encoders.precision`); on CUDA
    batches are sized by tokens from the free GPU memory and ``batch_size`` applies on the CPU.
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
        precision: str = "auto",
        onnx_model: str | os.PathLike[str] | None = None,
        query_runtime: str = "auto",
        query_threads: int = 1,
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
        if query_runtime not in QUERY_RUNTIMES:
            raise ConfigurationError(
                f"query_runtime must be one of {', '.join(QUERY_RUNTIMES)}, got {query_runtime!r}"
            )
        self._model_ref = os.fspath(model_name_or_path)
        self._name = name
        self._device = device
        self._batch_size = batch_size
        self._similarity: Similarity = similarity
        self._normalize = similarity in _UNIT_SIMILARITIES if normalize is None else normalize
        self._max_seq_length = max_seq_length
        self._precision_setting = precision
        self._onnx_model = onnx_model
        resolve_precision(precision, "cpu" if precision == "int8" else "cuda")  # validate early
        self._query_threads = query_threads
        self._lock = threading.Lock()
        self._state: _Loaded | None = None
        self._query = LazyQueryPath[_QueryPath](
            query_runtime, f"the dense model {self._model_ref!r}", self._build_query_path
        )

    def __repr__(self) -> str:
        loaded = "loaded" if self._state is not None else "not loaded"
        return f"SentenceTransformerDense({self._model_ref!r}, {loaded})"

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load what queries need (once; later calls return at once): the torch-free query path
        when it applies, else the model. Documents load the model on first use."""
        if self._query_path() is None:
            self._loaded()

    @property
    def is_loaded(self) -> bool:
        """Whether the sentence-transformers model is loaded (the query path alone leaves it
        unloaded)."""
        return self._state is not None

    @property
    def query_runtime(self) -> str:
        """What encodes queries: ``onnxruntime`` (the query path) or ``torch``. Decides (and
        loads the query path) on first access."""
        return "onnxruntime" if self._query_path() is not None else "torch"

    @property
    def query_path_refusal(self) -> str | None:
        """Why queries go through torch although ``query_runtime`` is ``auto`` (else ``None``)."""
        self._query_path()
        return self._query.refusal

    def _query_path(self) -> _QueryPath | None:
        """The torch-free query encoder, built on first call, or ``None`` when it does not apply
        (``query_runtime=torch``, or ``auto`` and the model is one it cannot run)."""
        return self._query.get()

    def _build_query_path(self) -> _QueryPath:
        from es_neural.encoders.fast_query import OnnxDenseQueries, read_dense_layout

        folder = local_model_folder(self._model_ref)
        if folder is None:
            raise UnsupportedModel(f"{self._model_ref!r} is a hub id, not a local folder")
        layout = read_dense_layout(folder, max_seq_length=self._max_seq_length)
        queries = OnnxDenseQueries(
            layout,
            normalize=self._normalize or layout.normalize_module,
            threads=self._query_threads,
        )
        precision = resolve_precision(self._precision_setting, resolve_device(self._device))
        fingerprint = ModelFingerprint(
            kind="dense",
            name=self._name or folder.name,
            revision=folder_revision(folder),
            dims=layout.dims,
            pooling=layout.pooling,
            normalize=self._normalize or layout.normalize_module,
            precision=precision,
            runtime="onnxruntime" if precision == "int8" else "torch",
        )
        return _QueryPath(queries, layout.max_seq_length, fingerprint)

    def _loaded(self) -> _Loaded:
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is None:
                state = self._load()
                query = self._query.value
                if query is not None and (
                    query.fingerprint != state.fingerprint
                    or query.max_seq_length != state.max_seq_length
                ):
                    raise ConfigurationError(
                        f"the dense query path reads {query.fingerprint.describe()} "
                        f"(max_seq_length {query.max_seq_length}) but the model is "
                        f"{state.fingerprint.describe()} (max_seq_length "
                        f"{state.max_seq_length}); set ES_NEURAL_DENSE__QUERY_RUNTIME=torch"
                    )
                self._state = state
            return self._state

    def _load(self) -> _Loaded:
        folder = local_model_folder(self._model_ref)
        require_torch_stack("encoding documents with the dense model")
        from sentence_transformers import SentenceTransformer

        device = resolve_device(self._device)
        precision = resolve_precision(self._precision_setting, device)
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
        onnx = None
        if precision == "int8":
            onnx = _onnx_session(self._onnx_model, folder, model)
        else:
            model = _with_precision(model, precision)
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
            precision=precision,
            runtime="torch" if onnx is None else "onnxruntime",
        )
        config = getattr(getattr(model[0], "auto_model", None), "config", None)
        element_bytes = 2 if precision in ("bf16", "fp16") else 4
        return _Loaded(
            model,
            device,
            dims,
            int(max_seq_length),
            fingerprint,
            precision,
            _batchable(model),
            activation_bytes_per_token(config, element_bytes=element_bytes),
            onnx,
        )

    # ------------------------------------------------------------------ properties

    @property
    def model_name_or_path(self) -> str:
        return self._model_ref

    @property
    def query_runtime_setting(self) -> str:
        """``query_runtime`` as given (``auto``, ``onnx`` or ``torch``); :attr:`query_runtime`
        is what it resolved to."""
        return self._query.runtime

    @property
    def query_threads(self) -> int:
        return self._query_threads

    @property
    def device(self) -> str:
        """The device in use once loaded; before that, the one asked for (or ``"auto"``)."""
        state = self._state
        return state.device if state is not None else (self._device or "auto")

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def precision(self) -> str:
        """The document encoder's precision once known (loaded, or the query path built); before
        that, the setting (``auto`` by default)."""
        state = self._state
        if state is not None:
            return state.precision
        query = self._query.value
        return query.fingerprint.precision if query is not None else self._precision_setting

    @property
    def normalize(self) -> bool:
        return self._normalize

    @property
    def similarity(self) -> Similarity:
        return self._similarity

    @property
    def dims(self) -> int:
        query = self._query_path()
        return query.encoder.layout.dims if query is not None else self._loaded().dims

    @property
    def max_seq_length(self) -> int:
        query = self._query_path()
        return query.max_seq_length if query is not None else self._loaded().max_seq_length

    @property
    def fingerprint(self) -> ModelFingerprint:
        """The document encoder's fingerprint (computed from the folder when the query path
        applies, so searching loads no torch model)."""
        query = self._query_path()
        return query.fingerprint if query is not None else self._loaded().fingerprint

    @property
    def cache_key(self) -> str:
        return f"{self.fingerprint.digest}:len={self.max_seq_length}"

    @property
    def model(self) -> SentenceTransformer:
        """The underlying ``SentenceTransformer`` (loaded on first access)."""
        return self._loaded().model

    # ------------------------------------------------------------------ encoding

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        query = self._query_path()
        if query is None:
            return self._encode(texts, query=True)
        return query.encoder.encode(_as_list(texts))

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts, query=False)

    def _encode(self, texts: Sequence[str], *, query: bool) -> FloatMatrix:
        items = _as_list(texts)
        state = self._loaded()
        if not items:
            return np.empty((0, state.dims), dtype=np.float32)
        model = state.model
        if state.onnx is not None:
            return self._encode_onnx(items, state, _prompt(model, query=query))
        if state.batched:
            batched = self._encode_batched(items, state, _prompt(model, query=query))
            if batched is not None:
                return batched
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

    def _encode_batched(
        self, items: list[str], state: _Loaded, prompt: str | None
    ) -> FloatMatrix | None:
        """Tokenize in chunks, sort by length, run token-budget batches, restore the order.
        ``None`` when the model's inputs are not all ``[texts, tokens]`` tensors.

        On CUDA the inputs of a chunk are pinned once and copied with ``non_blocking``, results
        land in a pinned host buffer, and the next chunk is tokenized while the GPU works.
        """
        import torch

        device = state.device
        if device.startswith("cuda"):
            budget = gpu_token_budget(device, state.bytes_per_token)
            max_texts = MAX_GPU_BATCH_TEXTS
        else:
            budget = self._batch_size * state.max_seq_length
            max_texts = self._batch_size
        result = np.empty((len(items), state.dims), dtype=np.float32)
        pending: tuple[int, Any, Any] | None = None
        with torch.inference_mode():
            for first in range(0, len(items), _CHUNK_TEXTS):
                chunk = items[first : first + _CHUNK_TEXTS]
                features = state.model.preprocess(chunk, prompt=prompt)
                mask = features["attention_mask"]
                lengths = mask.sum(dim=1).numpy()
                order = np.argsort(lengths, kind="stable")
                padded = {n: v.numpy() for n, v in features.items() if isinstance(v, torch.Tensor)}
                if any(v.shape != mask.shape for v in padded.values()):
                    return None
                others = {n: v for n, v in features.items() if n not in padded}
                batches = plan_batches(lengths[order], token_budget=budget, max_texts=max_texts)
                flat, offsets = pack_batches(padded, order, batches)
                host = host_tensors(flat, device)
                out = host_buffer((len(chunk), state.dims), torch.float32, device)
                if pending is not None:
                    self._collect(result, pending, device)
                for batch, offset in zip(batches, offsets, strict=True):
                    inputs: dict[str, Any] = to_device(host, batch, offset, device)
                    inputs.update(others)
                    embeddings = state.model(inputs)["sentence_embedding"].float()
                    if self._normalize:
                        embeddings = torch.nn.functional.normalize(embeddings, p=2.0, dim=1)
                    out[batch.start : batch.stop].copy_(embeddings, non_blocking=True)
                pending = (first, order, out)
            if pending is not None:
                self._collect(result, pending, device)
        return result

    def _encode_onnx(self, items: list[str], state: _Loaded, prompt: str | None) -> FloatMatrix:
        """int8 through ONNX Runtime: length-sorted batches, mean pooling, optional unit norm.
        A single text (a query) is one unpadded call."""
        texts = [prompt + text for text in items] if prompt else items
        tokenizer = state.model.tokenizer
        session, input_names = state.onnx
        result = np.empty((len(texts), state.dims), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for first in range(0, len(order), self._batch_size):
            rows = order[first : first + self._batch_size]
            encoded = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=state.max_seq_length,
                return_tensors="np",
            )
            feeds = {name: encoded[name].astype(np.int64) for name in input_names}
            hidden = session.run(None, feeds)[0]
            mask = encoded["attention_mask"][:, :, None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            if self._normalize:
                pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            result[rows] = pooled
        return result

    @staticmethod
    def _collect(result: FloatMatrix, pending: tuple[int, Any, Any], device: str) -> None:
        first, order, out = pending
        synchronize(device)
        result[first + order] = out.numpy()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        items = _as_list(texts)
        if not items:
            return []
        query = self._query_path()
        if query is not None:
            return query.encoder.token_lengths(items)
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


@dataclass(frozen=True, slots=True)
class _QueryPath:
    encoder: OnnxDenseQueries
    max_seq_length: int
    fingerprint: ModelFingerprint


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a sequence of texts, not a single string")
    return list(texts)


#: Names of an int8 ONNX export inside a sentence-transformers folder (its ``onnx/`` folder, as
#: ``SentenceTransformer(..., backend="onnx")`` exports and quantises them).
_ONNX_INT8_NAMES = (
    "onnx/model_qint8_avx2.onnx",
    "onnx/model_qint8_avx512.onnx",
    "onnx/model_qint8_avx512_vnni.onnx",
    "onnx/model_quint8_avx2.onnx",
    "onnx/model_int8.onnx",
)


def _onnx_session(
    onnx_model: str | os.PathLike[str] | None, folder: Any, model: SentenceTransformer
) -> tuple[Any, tuple[str, ...]]:
    """An ONNX Runtime session of the model's int8 export and the inputs it takes.

    The export is ``onnx_model`` when given, else one of :data:`_ONNX_INT8_NAMES` in the model
    folder. The model must mean-pool token states (what the session's output is pooled with).
    """
    from pathlib import Path

    candidates = [Path(onnx_model)] if onnx_model is not None else []
    if folder is not None:
        candidates += [Path(folder) / name for name in _ONNX_INT8_NAMES]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise ConfigurationError(
            "precision int8 runs an int8 ONNX export of the dense model through ONNX Runtime, "
            f"and none was found ({', '.join(str(c) for c in candidates) or 'no model folder'}); "
            "export one (sentence-transformers `export_dynamic_quantized_onnx_model`) or use fp32"
        )
    if _pooling_mode(model) not in ("mean", "mean_tokens"):
        raise ConfigurationError(
            f"precision int8 (ONNX) supports mean pooling only, not {_pooling_mode(model)!r}"
        )
    try:
        import onnxruntime
    except ImportError:
        raise ConfigurationError(
            "precision int8 needs onnxruntime: pip install 'es-neural[onnx]'"
        ) from None
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = tuple(i.name for i in session.get_inputs())
    unknown = set(names) - {"input_ids", "attention_mask", "token_type_ids"}
    if unknown or "input_ids" not in names or "attention_mask" not in names:
        raise ConfigurationError(f"the ONNX model {path} takes unexpected inputs {names}")
    return session, names


def _with_precision(model: SentenceTransformer, precision: Precision) -> SentenceTransformer:
    """``model`` with its weights in ``precision`` (int8: dynamically quantised linear layers)."""
    if precision == "int8":
        import warnings

        import torch
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
            warnings.simplefilter("ignore")
            quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        return quantized
    if precision != "fp32":
        model.to(torch_dtype(precision))
    return model


def _batchable(model: SentenceTransformer) -> bool:
    """Whether the batched path computes what ``encode`` would: a text Transformer first, no
    router, no truncation of the output dimension."""
    names = [type(module).__name__ for module in model]
    return (
        bool(names)
        and names[0] == "Transformer"
        and "Router" not in names
        and getattr(model, "truncate_dim", None) is None
        and callable(getattr(model, "preprocess", None))
        and all(name in _BATCHABLE_MODULES for name in names)
    )


_BATCHABLE_MODULES = frozenset({"Transformer", "Pooling", "Normalize", "Dense", "LayerNorm"})


def _prompt(model: SentenceTransformer, *, query: bool) -> str | None:
    """The prompt ``encode_query`` / ``encode_document`` would prepend (``None``: none)."""
    prompts = getattr(model, "prompts", None) or {}
    role = "query" if query else "document"
    if role in prompts:
        return str(prompts[role])
    default = getattr(model, "default_prompt_name", None)
    if default is not None and default in prompts:
        return str(prompts[default])
    return None


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
