"""The query path: dense and SPLADE query encoding without torch.

A search encodes one short text per leg. Through sentence-transformers and transformers that
costs far more than the model's arithmetic: Python dispatch over torch modules, tokenizer
wrappers, padding to the tokenizer's fixed length. Here a query goes through

* the model folder's ``tokenizer.json`` with the ``tokenizers`` package (no padding, truncation
  at the encoder's ``max_seq_length``), and
* one ONNX Runtime session of the same checkpoint's fp32 weights, built from the folder's
  ``model.safetensors`` by :mod:`es_neural.encoders.onnx_bert` (no torch, no export step).

The outputs are the torch encoders' outputs up to float rounding: the same weights, the same
tokens, fp32 throughout (measured on the embedded models over SciFact claims: dense cosine to
the torch vector >= 0.99999; SPLADE the same top terms, weights within 1e-5). So a query
encoded here searches an index filled by the torch (or ONNX int8) document encoder of the same
model, and the encoders report the document encoder's fingerprint.

Which folders qualify (:func:`read_dense_layout`, :func:`read_sparse_layout`): a BERT checkpoint
(``model_type`` ``bert``, absolute positions) in safetensors with a ``tokenizer.json``; for
dense, a sentence-transformers folder of Transformer + Pooling (``mean`` or ``cls``) + optional
Normalize; for SPLADE, a ``BertForMaskedLM``. Any other folder raises :class:`UnsupportedModel`
and the encoders keep torch for queries (``query_runtime=auto``) or refuse
(``query_runtime=onnx``). Nothing here imports torch, transformers or sentence-transformers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from es_neural.encoders.base import FloatMatrix
from es_neural.encoders.onnx_bert import (
    BertRunner,
    UnsupportedModel,
    check_bert_folder,
    load_bert_weights,
)
from es_neural.errors import ConfigurationError

__all__ = [
    "DenseLayout",
    "LazyQueryPath",
    "OnnxDenseQueries",
    "OnnxSpladeQueries",
    "SparseLayout",
    "UnsupportedModel",
    "dense_refusal",
    "read_dense_layout",
    "read_sparse_layout",
    "sparse_refusal",
]

Q = TypeVar("Q")


class LazyQueryPath(Generic[Q]):
    """An encoder's torch-free query path, built once on first use, or why it does not apply.

    ``runtime`` is the encoder's ``query_runtime``: ``torch`` never builds it; ``auto`` builds it
    and records why when the model is one it cannot run (or tokenizers / safetensors are
    missing); ``onnx`` raises :class:`~es_neural.errors.ConfigurationError` instead. ``what``
    names the model in that message (``the dense model 'x'``).
    """

    def __init__(self, runtime: str, what: str, build: Callable[[], Q]) -> None:
        self.runtime = runtime
        self.what = what
        self._build = build
        self._lock = threading.Lock()
        #: The built query path (``None``: not built yet, or it does not apply).
        self.value: Q | None = None
        #: Why the query path does not apply (``None``: not decided yet, or it applies).
        self.refusal: str | None = None

    def get(self) -> Q | None:
        """The query path, built on first call; ``None`` when it does not apply."""
        if self.runtime == "torch":
            return None
        if self.value is not None or self.refusal is not None:
            return self.value
        with self._lock:
            if self.value is None and self.refusal is None:
                try:
                    self.value = self._build()
                except ImportError as exc:  # tokenizers or safetensors missing: as unsupported
                    self._refuse(UnsupportedModel(f"{exc.name or exc} is not installed"))
                except UnsupportedModel as exc:
                    self._refuse(exc)
            return self.value

    def _refuse(self, exc: UnsupportedModel) -> None:
        if self.runtime == "onnx":
            raise ConfigurationError(
                f"query_runtime onnx: {self.what} cannot run on the torch-free query path "
                f"({exc}); use query_runtime auto or torch"
            ) from None
        self.refusal = str(exc)


#: Module types of a sentence-transformers folder the dense query path computes, by class name.
_DENSE_MODULES = ("Transformer", "Pooling", "Normalize")
#: Legacy ``1_Pooling/config.json`` flags and the mode each stands for.
_LEGACY_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}
_OTHER_LEGACY_POOLING = (
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _tokenizer(folder: Path, max_length: int | None) -> Any:
    """``folder``'s ``tokenizer.json``, unpadded, truncating at ``max_length`` (``None``: never),
    right side unless the tokenizer config says left."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UnsupportedModel(f"no tokenizer.json in {folder}")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    if max_length is None:
        tokenizer.no_truncation()
    else:
        side = str(_json(folder / "tokenizer_config.json").get("truncation_side", "right"))
        tokenizer.enable_truncation(max_length, direction=side)
    return tokenizer


def _special_ids(folder: Path) -> list[int]:
    """Ids of the special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ...) in ``tokenizer.json``."""
    added = _json(folder / "tokenizer.json").get("added_tokens") or []
    return sorted(int(t["id"]) for t in added if isinstance(t, dict) and t.get("special"))


def _model_limit(folder: Path) -> int | None:
    limit = _json(folder / "tokenizer_config.json").get("model_max_length")
    return limit if isinstance(limit, int) and 0 < limit <= 100_000 else None


def dense_refusal(folder: Path, *, max_seq_length: int | None = None) -> str | None:
    """Why the dense query path cannot run the sentence-transformers folder ``folder``
    (``None``: it can). Reads configs only."""
    try:
        layout = read_dense_layout(folder, max_seq_length=max_seq_length)
        check_bert_folder(layout.transformer)
        if not (layout.transformer / "tokenizer.json").is_file():
            raise UnsupportedModel(f"no tokenizer.json in {layout.transformer}")
    except UnsupportedModel as exc:
        return str(exc)
    return None


def sparse_refusal(folder: Path, *, max_seq_length: int = 256) -> str | None:
    """Why the SPLADE query path cannot run the MLM folder ``folder`` (``None``: it can)."""
    try:
        read_sparse_layout(folder, max_seq_length=max_seq_length)
        check_bert_folder(folder)
    except UnsupportedModel as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- dense


@dataclass(frozen=True, slots=True)
class DenseLayout:
    """What a sentence-transformers folder says about its encoder, read without loading it."""

    transformer: Path
    dims: int
    pooling: str
    normalize_module: bool
    max_seq_length: int
    do_lower_case: bool
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None

    @property
    def query_prompt(self) -> str | None:
        """The prompt ``encode_query`` prepends (as :func:`es_neural.encoders.dense._prompt`)."""
        if "query" in self.prompts:
            return self.prompts["query"]
        if self.default_prompt_name is not None and self.default_prompt_name in self.prompts:
            return self.prompts[self.default_prompt_name]
        return None


def read_dense_layout(folder: Path, *, max_seq_length: int | None = None) -> DenseLayout:
    """The layout of the sentence-transformers folder ``folder``; :class:`UnsupportedModel`
    when the query path cannot compute what the folder's modules compute."""
    listing = folder / "modules.json"
    modules = json.loads(listing.read_text(encoding="utf-8")) if listing.is_file() else None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise UnsupportedModel(f"{folder} is not a sentence-transformers folder")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if (
        len(kinds) < 2
        or kinds[:2] != ["Transformer", "Pooling"]
        or any(kind not in _DENSE_MODULES for kind in kinds)
        or kinds.count("Normalize") > 1
    ):
        raise UnsupportedModel(f"modules {kinds} (the query path runs Transformer + Pooling)")
    transformer = folder / str(modules[0].get("path") or "")
    pooling_config = _json(folder / str(modules[1].get("path") or "") / "config.json")
    pooling = _pooling_mode(pooling_config)
    if pooling_config.get("include_prompt") is False:
        raise UnsupportedModel("pooling without the prompt's tokens is not supported")
    config = _json(transformer / "config.json")
    dims = int(
        pooling_config.get("embedding_dimension")
        or pooling_config.get("word_embedding_dimension")
        or config.get("hidden_size")
        or 0
    )
    if dims != int(config.get("hidden_size") or -1):
        raise UnsupportedModel(f"pooled dimension {dims} is not the hidden size")
    st_config = _json(transformer / "sentence_bert_config.json")
    length = max_seq_length or st_config.get("max_seq_length")
    if not isinstance(length, int) or length < 2:
        limits = [config.get("max_position_embeddings"), _model_limit(transformer)]
        length = min(int(v) for v in limits if isinstance(v, int) and v > 0)
    extras = _json(folder / "config_sentence_transformers.json")
    prompts = extras.get("prompts") or {}
    return DenseLayout(
        transformer=transformer,
        dims=dims,
        pooling=pooling,
        normalize_module="Normalize" in kinds,
        max_seq_length=int(length),
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        prompts={str(k): str(v) for k, v in prompts.items()},
        default_prompt_name=extras.get("default_prompt_name"),
    )


def _pooling_mode(config: dict[str, Any]) -> str:
    mode = config.get("pooling_mode")
    if mode is None:  # the legacy flags
        if any(config.get(flag) for flag in _OTHER_LEGACY_POOLING):
            raise UnsupportedModel("only mean or CLS pooling is supported")
        modes = [name for flag, name in _LEGACY_POOLING.items() if config.get(flag)]
        mode = modes[0] if len(modes) == 1 else None
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if mode not in ("mean", "cls"):
        raise UnsupportedModel(f"pooling {mode!r} (the query path pools by mean or CLS)")
    return str(mode)


class OnnxDenseQueries:
    """Dense query vectors of a sentence-transformers BERT folder on ONNX Runtime."""

    def __init__(self, layout: DenseLayout, *, normalize: bool, threads: int = 1) -> None:
        self.layout = layout
        self.normalize = normalize
        self._tokenizer = _tokenizer(layout.transformer, layout.max_seq_length)
        self._counter: Any = None
        self._runner = BertRunner(load_bert_weights(layout.transformer), threads=threads)
        self._prompt = layout.query_prompt or ""

    def token_ids(self, text: str) -> list[int]:
        """The token ids of a query (prompt, special tokens, truncation included)."""
        text = self._prompt + text
        if self.layout.do_lower_case:
            text = text.lower()
        return list(self._tokenizer.encode(text).ids)

    def encode(self, texts: Sequence[str]) -> FloatMatrix:
        result = np.empty((len(texts), self.layout.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            hidden = self._runner.run(self.token_ids(text))[0]
            pooled = hidden.mean(axis=0) if self.layout.pooling == "mean" else hidden[0]
            if self.normalize:
                pooled = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
            result[row] = pooled
        return result

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Untruncated token counts (special tokens included), no prompt."""
        if self._counter is None:  # a race builds two; either is right
            self._counter = _tokenizer(self.layout.transformer, None)
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]


# --------------------------------------------------------------------------- SPLADE


@dataclass(frozen=True, slots=True)
class SparseLayout:
    """A masked-LM folder's vocabulary and limits, read without loading the model."""

    folder: Path
    vocab_size: int
    max_seq_length: int
    special_ids: list[int]


def read_sparse_layout(folder: Path, *, max_seq_length: int) -> SparseLayout:
    """The layout of the SPLADE folder ``folder``; :class:`UnsupportedModel` when the query path
    cannot run it. ``max_seq_length`` is cut to the tokenizer's limit, as the torch encoder does."""
    config = _json(folder / "config.json")
    architectures = config.get("architectures") or []
    if "BertForMaskedLM" not in architectures:
        raise UnsupportedModel(f"architectures {architectures} (the query path runs BERT MLMs)")
    limit = _model_limit(folder)
    if limit is not None and limit < max_seq_length:
        max_seq_length = limit
    if not (folder / "tokenizer.json").is_file():
        raise UnsupportedModel(f"no tokenizer.json in {folder}")
    return SparseLayout(
        folder=folder,
        vocab_size=int(config["vocab_size"]),
        max_seq_length=max_seq_length,
        special_ids=_special_ids(folder),
    )


class OnnxSpladeQueries:
    """SPLADE query term weights of a BERT MLM folder on ONNX Runtime.

    :meth:`top` returns, per text, the ``fetch`` largest weights ``log1p(relu(.))`` (descending)
    and their vocabulary ids, special tokens excluded: the input of
    :func:`es_neural.encoders.sparse.top_rows_to_vectors`, as the torch encoder's top-k is.
    """

    def __init__(self, layout: SparseLayout, *, fetch: int, threads: int = 1) -> None:
        self.layout = layout
        self.fetch = min(fetch, layout.vocab_size)
        self._tokenizer = _tokenizer(layout.folder, layout.max_seq_length)
        self._counter: Any = None
        weights = load_bert_weights(layout.folder)
        vocab = int(weights.get("cls.predictions.bias").shape[0])
        if vocab != layout.vocab_size:
            raise UnsupportedModel(
                f"the MLM head has {vocab} outputs, the config says {layout.vocab_size}"
            )
        self._runner = BertRunner(
            weights,
            head="splade",
            threads=threads,
            fetch=self.fetch,
            special_ids=layout.special_ids,
        )
        self.vocab = [self._tokenizer.id_to_token(i) or "" for i in range(layout.vocab_size)]

    def token_ids(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text).ids)

    def top(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        values = np.empty((len(texts), self.fetch), dtype=np.float32)
        ids = np.empty((len(texts), self.fetch), dtype=np.int64)
        for row, text in enumerate(texts):
            logits, top_ids = self._runner.run(self.token_ids(text))
            np.log1p(np.maximum(logits, 0.0), out=values[row])
            ids[row] = top_ids
        return values, ids

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        if self._counter is None:
            self._counter = _tokenizer(self.layout.folder, None)
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]
