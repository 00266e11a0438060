"""SPLADE on transformers: ``AutoTokenizer`` + ``AutoModelForMaskedLM``, tuned for CPU ingestion.

Term weights are ``w[v] = max_t log(1 + relu(logit[t, v]))`` over the tokens ``t`` under the
attention mask. Because ``log1p(relu(.))`` is non-decreasing, this equals
``log1p(relu(max_t logit[t, v]))`` exactly, and because adding the decoder bias is monotone too,
``max_t logit[t, v] = max_t (h[t] . W[v]) + b[v]``. So the encoder never materialises the
``[batch, seq, vocab]`` logits of the MLM head (1 GB for 32 x 256 x 30522 floats, then copied by
every element-wise op): the model's output projection is replaced by a pass-through so the
forward pass returns the transformed hidden states ``h``, and the vocabulary projection is done
here in chunks of a few documents into one reused buffer, immediately max-reduced. Padded
positions are filled with the document's first token, which leaves every maximum unchanged.

Texts are tokenized once per chunk, sorted by token length (so batches carry little padding),
encoded in batches and returned in the caller's order. The vocabulary projection dominates the
cost for small SPLADE models (for SPLADE-tiny it is ~10x the transformer layers).

``precision`` (see :mod:`es_neural.encoders.precision`): at ``bf16`` / ``fp16`` the transformer
and the vocabulary projection (and its max-reduction) run in that precision, and the bias,
``relu`` and ``log1p`` in float32. On CUDA a batch is sized by tokens from the free GPU memory
and projected at once; inputs are pinned and copied with ``non_blocking``, and each batch's
top-k ids and weights come back to the host once.

Queries take the torch-free query path (:mod:`es_neural.encoders.fast_query`: ONNX Runtime and
``tokenizers``, the same weights in fp32) when the model folder allows it and
``query_runtime`` is ``auto`` (the default) or ``onnx``; the torch model is then loaded only
when documents are encoded. The encoder's fingerprint is the document encoder's either way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from es_neural.encoders.base import (
    SparseVector,
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
from es_neural.encoders.tokens import MIN_POSITIVE_WEIGHT, clean_weights, sanitize_token
from es_neural.errors import ConfigurationError

if TYPE_CHECKING:
    import torch

    from es_neural.encoders.fast_query import OnnxSpladeQueries

__all__ = ["QUERY_RUNTIMES", "SpladeEncoder", "top_rows_to_vectors"]

#: ``query_runtime`` values: ``auto`` takes the torch-free query path when the model allows it,
#: ``onnx`` requires it, ``torch`` never takes it.
QUERY_RUNTIMES = ("auto", "onnx", "torch")

#: Tokens per chunk of the vocabulary projection; the buffer is ``vocab x budget`` floats
#: (~63 MB for a 30522-token vocabulary).
_PROJECTION_TOKEN_BUDGET = 512
#: Extra candidates fetched beyond top-k so that ties at the cut are broken by token, not by id.
_TIE_MARGIN = 16
#: Texts tokenized at once (then sorted by length and cut into batches).
_CHUNK_TEXTS = 8192


@dataclass(frozen=True, slots=True)
class _Loaded:
    tokenizer: Any
    model: Any
    device: str
    #: Output projection ``[vocab, hidden]`` and bias ``[vocab]`` when the fast path applies;
    #: ``None`` when the model's own logits are used.
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    special_ids: torch.Tensor
    vocab: list[str]
    #: Engine key of every vocabulary id when they are all distinct and non-empty (outside the
    #: special tokens), so a sorted, tie-free top-k row needs no merging; else ``None``.
    keys: np.ndarray | None
    input_names: tuple[str, ...]
    max_seq_length: int
    fingerprint: ModelFingerprint
    precision: Precision
    bytes_per_token: int


class SpladeEncoder:
    """A :class:`~es_neural.encoders.base.SparseEncoder` computing SPLADE max-pooled weights.

    ``model_name_or_path`` is a local folder with an MLM checkpoint and its tokenizer (loaded
    with ``local_files_only``) or a hub id. Documents keep their ``doc_top_k`` largest weights,
    queries their ``query_top_k``; weights ``<= min_weight`` are dropped. Special tokens
    (``[CLS]``, ``[SEP]``, ``[PAD]``, ...) never appear in the output. Keys are sanitised by
    :func:`~es_neural.encoders.tokens.clean_weights`. ``precision`` is ``auto``, ``fp32``,
    ``int8`` (CPU), ``bf16`` or ``fp16``; on CUDA ``batch_size`` is replaced by a token budget.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        name: str | None = None,
        device: str | None = None,
        batch_size: int = 32,
        max_seq_length: int = 256,
        doc_top_k: int = 256,
        query_top_k: int = 64,
        min_weight: float = 0.0,
        precision: str = "auto",
        query_runtime: str = "auto",
        query_threads: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        if max_seq_length < 3:
            raise ConfigurationError(f"max_seq_length must be >= 3, got {max_seq_length}")
        if doc_top_k < 1 or query_top_k < 1:
            raise ConfigurationError("doc_top_k and query_top_k must be >= 1")
        if not min_weight >= 0.0:
            raise ConfigurationError(f"min_weight must be >= 0, got {min_weight}")
        if query_runtime not in QUERY_RUNTIMES:
            raise ConfigurationError(
                f"query_runtime must be one of {', '.join(QUERY_RUNTIMES)}, got {query_runtime!r}"
            )
        self._model_ref = os.fspath(model_name_or_path)
        self._name = name
        self._device = device
        self._batch_size = batch_size
        self._max_seq_length = max_seq_length
        self._doc_top_k = doc_top_k
        self._query_top_k = query_top_k
        self._min_weight = float(min_weight)
        self._precision_setting = precision
        resolve_precision(precision, "cpu" if precision == "int8" else "cuda")  # validate early
        self._query_threads = query_threads
        self._lock = threading.Lock()
        self._state: _Loaded | None = None
        self._query = LazyQueryPath[_QueryPath](
            query_runtime, f"the SPLADE model {self._model_ref!r}", self._build_query_path
        )

    def __repr__(self) -> str:
        loaded = "loaded" if self._state is not None else "not loaded"
        return f"SpladeEncoder({self._model_ref!r}, {loaded})"

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load what queries need (once; later calls return at once): the torch-free query path
        when it applies, else the tokenizer and model. Documents load the model on first use."""
        if self._query_path() is None:
            self._loaded()

    @property
    def is_loaded(self) -> bool:
        """Whether the torch model is loaded (the query path alone leaves it unloaded)."""
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
        from es_neural.encoders.fast_query import (
            OnnxSpladeQueries,
            read_sparse_layout,
        )

        folder = local_model_folder(self._model_ref)
        if folder is None:
            raise UnsupportedModel(f"{self._model_ref!r} is a hub id, not a local folder")
        layout = read_sparse_layout(folder, max_seq_length=self._max_seq_length)
        queries = OnnxSpladeQueries(
            layout, fetch=self._query_top_k + _TIE_MARGIN, threads=self._query_threads
        )
        precision = resolve_precision(self._precision_setting, resolve_device(self._device))
        fingerprint = _fingerprint(
            self._name or folder.name, folder_revision(folder), layout.vocab_size, precision
        )
        return _QueryPath(
            queries,
            _vocabulary_keys(queries.vocab, layout.special_ids),
            layout.max_seq_length,
            fingerprint,
        )

    def _loaded(self) -> _Loaded:
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is None:
                state = self._load()
                query = self._query.value
                if query is not None and query.fingerprint != state.fingerprint:
                    raise ConfigurationError(
                        f"the SPLADE query path reads {query.fingerprint.describe()} but the "
                        f"torch model is {state.fingerprint.describe()}; set "
                        "ES_NEURAL_SPARSE__QUERY_RUNTIME=torch"
                    )
                self._state = state
            return self._state

    def _load(self) -> _Loaded:
        folder = local_model_folder(self._model_ref)
        require_torch_stack("encoding documents with SPLADE")
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        device = resolve_device(self._device)
        precision = resolve_precision(self._precision_setting, device)
        source = str(folder) if folder is not None else self._model_ref
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=folder is not None)
            model = AutoModelForMaskedLM.from_pretrained(
                source, local_files_only=folder is not None
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot load the SPLADE model {self._model_ref!r}: {exc}"
            ) from exc
        model.eval()
        tokenizer.padding_side = "right"
        dtype = torch_dtype(precision)
        model.to(device=device, dtype=dtype)

        weight, bias = _detach_output_projection(model)
        if weight is not None:
            weight = weight.to(dtype=dtype).contiguous()
            bias = bias.float()
        if precision == "int8":
            model = _quantized(model)
        vocab_size = int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)
        vocab = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
        vocab = [token if isinstance(token, str) else "" for token in vocab]
        special = sorted(i for i in set(tokenizer.all_special_ids) if 0 <= i < vocab_size)
        input_names = tuple(
            n
            for n in getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"])
            if n in ("input_ids", "attention_mask", "token_type_ids")
        )
        if "attention_mask" not in input_names:
            input_names = (*input_names, "attention_mask")
        if tokenizer.pad_token_id is None:
            raise ConfigurationError(f"the tokenizer of {self._model_ref!r} has no pad token")
        model_limit = getattr(tokenizer, "model_max_length", None)
        max_seq_length = self._max_seq_length
        if isinstance(model_limit, int) and 0 < model_limit < max_seq_length:
            max_seq_length = model_limit
        name = self._name or (folder.name if folder is not None else self._model_ref)
        revision = folder_revision(folder) if folder is not None else hub_revision(self._model_ref)
        fingerprint = _fingerprint(name, revision, vocab_size, precision)
        element_bytes = 2 if precision in ("bf16", "fp16") else 4
        per_token = activation_bytes_per_token(
            model.config, element_bytes=element_bytes, extra=vocab_size * element_bytes
        )
        return _Loaded(
            tokenizer=tokenizer,
            model=model,
            device=device,
            weight=weight,
            bias=bias,
            special_ids=torch.tensor(special, dtype=torch.long, device=device),
            vocab=vocab,
            keys=_vocabulary_keys(vocab, special),
            input_names=input_names,
            max_seq_length=max_seq_length,
            fingerprint=fingerprint,
            precision=precision,
            bytes_per_token=per_token,
        )

    # ------------------------------------------------------------------ properties

    @property
    def model_name_or_path(self) -> str:
        return self._model_ref

    @property
    def device(self) -> str:
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
    def doc_top_k(self) -> int:
        return self._doc_top_k

    @property
    def query_top_k(self) -> int:
        return self._query_top_k

    @property
    def min_weight(self) -> float:
        return self._min_weight

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
        return (
            f"{self.fingerprint.digest}:len={self.max_seq_length}:q={self._query_top_k}"
            f":d={self._doc_top_k}:min={self._min_weight!r}"
        )

    # ------------------------------------------------------------------ encoding

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        query = self._query_path()
        if query is None:
            return self._encode(texts, top_k=self._query_top_k)
        items = _as_list(texts)
        if not items:
            return []
        values, ids = query.encoder.top(items)
        return top_rows_to_vectors(
            values,
            ids,
            keys=query.keys,
            vocab=query.encoder.vocab,
            top_k=self._query_top_k,
            min_weight=self._min_weight,
        )

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return self._encode(texts, top_k=self._doc_top_k)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        items = _as_list(texts)
        if not items:
            return []
        query = self._query_path()
        if query is not None:
            return query.encoder.token_lengths(items)
        encoded = self._loaded().tokenizer(
            items,
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def _encode(self, texts: Sequence[str], *, top_k: int) -> list[SparseVector]:
        items = _as_list(texts)
        if not items:
            return []
        state = self._loaded()
        import torch

        device = state.device
        if device.startswith("cuda"):
            budget = gpu_token_budget(device, state.bytes_per_token)
            max_texts, projection_budget = MAX_GPU_BATCH_TEXTS, budget
        else:
            budget = self._batch_size * state.max_seq_length
            max_texts, projection_budget = self._batch_size, _PROJECTION_TOKEN_BUDGET
        fetch = min(len(state.vocab), top_k + _TIE_MARGIN)
        results: list[SparseVector] = []
        pending: tuple[Any, Any, Any] | None = None
        with torch.inference_mode():
            for first in range(0, len(items), _CHUNK_TEXTS):
                chunk = items[first : first + _CHUNK_TEXTS]
                encoded = state.tokenizer(
                    chunk,
                    add_special_tokens=True,
                    truncation=True,
                    max_length=state.max_seq_length,
                    padding="longest",
                    return_tensors="np",
                    return_attention_mask=True,
                    return_token_type_ids="token_type_ids" in state.input_names,
                )
                padded = {
                    name: np.asarray(encoded[name], dtype=np.int64) for name in state.input_names
                }
                lengths = padded["attention_mask"].sum(axis=1)
                order = np.argsort(lengths, kind="stable")
                batches = plan_batches(lengths[order], token_budget=budget, max_texts=max_texts)
                flat, offsets = pack_batches(padded, order, batches)
                host = host_tensors(flat, device)
                values = host_buffer((len(chunk), fetch), torch.float32, device)
                ids = host_buffer((len(chunk), fetch), torch.int64, device)
                if pending is not None:
                    results.extend(self._collect(pending, state, top_k, device))
                for batch, offset in zip(batches, offsets, strict=True):
                    inputs = to_device(host, batch, offset, device)
                    widths = lengths[order[batch.start : batch.stop]].tolist()
                    weights = self._term_weights(
                        inputs, state, projection_budget, torch, lengths=widths
                    )
                    top_values, top_ids = torch.topk(weights, fetch, dim=1, sorted=True)
                    values[batch.start : batch.stop].copy_(top_values, non_blocking=True)
                    ids[batch.start : batch.stop].copy_(top_ids, non_blocking=True)
                pending = (order, values, ids)
            if pending is not None:
                results.extend(self._collect(pending, state, top_k, device))
        return results

    def _collect(
        self, pending: tuple[Any, Any, Any], state: _Loaded, top_k: int, device: str
    ) -> list[SparseVector]:
        """The vectors of one chunk in the caller's order, once its copies have landed."""
        order, values, ids = pending
        synchronize(device)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return self._to_vectors(values.numpy()[inverse], ids.numpy()[inverse], state, top_k)

    def _term_weights(
        self,
        inputs: dict[str, torch.Tensor],
        state: _Loaded,
        budget: int,
        torch: Any,
        *,
        lengths: list[int] | None = None,
    ) -> Any:
        """``[batch, vocab]`` float32 SPLADE weights, special tokens zeroed. ``lengths`` (the
        token count of each row, known on the host) saves a device-to-host copy."""
        mask = inputs["attention_mask"].bool()
        output = state.model(**inputs).logits
        if state.weight is None:  # generic path: the model computed full logits
            output = output.masked_fill(~mask.unsqueeze(-1), float("-inf"))
            pooled = output.amax(dim=1).float()
        else:
            pooled = _project_max(
                output, mask, state.weight, torch, budget=budget, lengths=lengths
            ).float()
            pooled += state.bias
        torch.relu_(pooled)
        torch.log1p_(pooled)
        if state.special_ids.numel():
            pooled[:, state.special_ids] = 0.0
        return pooled

    def _to_vectors(
        self,
        values: np.ndarray,
        ids: np.ndarray,
        state: _Loaded,
        top_k: int,
    ) -> list[SparseVector]:
        return top_rows_to_vectors(
            values,
            ids,
            keys=state.keys,
            vocab=state.vocab,
            top_k=top_k,
            min_weight=self._min_weight,
        )


@dataclass(frozen=True, slots=True)
class _QueryPath:
    encoder: OnnxSpladeQueries
    keys: np.ndarray | None
    max_seq_length: int
    fingerprint: ModelFingerprint


def _fingerprint(
    name: str, revision: str, vocab_size: int, precision: Precision
) -> ModelFingerprint:
    """The fingerprint of a SPLADE document encoder (torch) of these weights."""
    return ModelFingerprint(
        kind="sparse",
        name=name,
        revision=revision,
        dims=vocab_size,
        pooling="max",
        normalize=None,
        extra=(("activation", "log1p_relu"),),
        precision=precision,
        runtime="torch",
    )


def top_rows_to_vectors(
    values: np.ndarray,
    ids: np.ndarray,
    *,
    keys: np.ndarray | None,
    vocab: list[str],
    top_k: int,
    min_weight: float,
) -> list[SparseVector]:
    """Rows of descending top weights and their ids to engine-ready vectors.

    A row whose kept weights hold no tie goes straight to a dict through the precomputed
    ``keys`` (:func:`_vocabulary_keys`); any other row (ties, colliding keys) goes through
    :func:`clean_weights`, which breaks ties by key. Both give the same result.
    """
    floor = max(min_weight, MIN_POSITIVE_WEIGHT)
    finite = np.isfinite(values)
    kept = (finite & (values > min_weight) & (values >= floor)).sum(axis=1)
    ties = (values[:, 1:] == values[:, :-1]) & finite[:, 1:]
    vectors: list[SparseVector] = []
    for row in range(values.shape[0]):
        count = int(kept[row])
        cut = min(count, top_k)
        # a tie among the kept weights, or at the cut, changes order or membership
        tied = count > 1 and bool(ties[row, : min(count, top_k + 1) - 1].any())
        if keys is not None and not tied and count <= values.shape[1]:
            row_ids = ids[row, :cut]
            vectors.append(
                dict(zip(keys[row_ids].tolist(), values[row, :cut].tolist(), strict=True))
            )
            continue
        raw: dict[str, float] = {}
        for value, token_id in zip(values[row].tolist(), ids[row].tolist(), strict=True):
            if value <= 0.0:
                break  # sorted: the rest are zero
            token = vocab[token_id]
            if value > raw.get(token, 0.0):
                raw[token] = value
        vectors.append(clean_weights(raw, top_k=top_k, min_weight=min_weight))
    return vectors


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a sequence of texts, not a single string")
    return list(texts)


def _vocabulary_keys(vocab: list[str], special: list[int]) -> np.ndarray | None:
    """Sanitised keys by id, when every non-special token has its own non-empty key."""
    keys = [sanitize_token(token) for token in vocab]
    skipped = set(special)
    regular = [key for i, key in enumerate(keys) if i not in skipped]
    if any(not key for key in regular) or len(set(regular)) != len(regular):
        return None
    return np.array(keys, dtype=object)


def _quantized(model: Any) -> Any:
    """``model`` with its linear layers dynamically quantised to int8 (CPU)."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _detach_output_projection(model: Any) -> tuple[Any, Any]:
    """Swap the MLM output projection for a pass-through; return its weight and bias.

    Returns ``(None, None)`` (and leaves the model as it is) when the projection is not a plain
    linear layer with a bias, in which case the model's own logits are used.
    """
    from torch import nn

    decoder = model.get_output_embeddings()
    hidden = getattr(model.config, "hidden_size", None)
    if (
        not isinstance(decoder, nn.Linear)
        or decoder.bias is None
        or hidden is None
        or decoder.weight.shape[1] != hidden
    ):
        return None, None

    class _PassThrough(nn.Module):
        """Stands in for the output projection: returns the hidden states it is given."""

        def __init__(self, original: nn.Linear) -> None:
            super().__init__()
            self.weight = original.weight
            self.bias = original.bias

        def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
            return hidden_states

    weight = decoder.weight.detach().contiguous()
    bias = decoder.bias.detach().clone()
    model.set_output_embeddings(_PassThrough(decoder))
    return weight, bias


def _project_max(
    hidden: Any,
    mask: Any,
    weight: Any,
    torch: Any,
    *,
    budget: int = _PROJECTION_TOKEN_BUDGET,
    lengths: list[int] | None = None,
) -> Any:
    """``max_t hidden[b, t] . weight[v]`` over unmasked ``t``: ``[batch, vocab]``, no bias.

    Padded positions are replaced by the first token of their row (a duplicate never changes a
    maximum); rows are projected a few at a time into one reused ``[rows, vocab, len]`` buffer
    and reduced over the contiguous last axis.
    """
    batch = hidden.shape[0]
    vocab = weight.shape[0]
    if lengths is None:
        lengths = mask.sum(dim=1).tolist()
    hidden = torch.where(mask.unsqueeze(-1), hidden, hidden[:, :1, :])
    budget = max(budget, max(lengths))
    buffer = torch.empty(vocab * budget, dtype=hidden.dtype, device=hidden.device)
    pooled = torch.empty(batch, vocab, dtype=hidden.dtype, device=hidden.device)
    start = 0
    while start < batch:
        stop = start + 1
        longest = lengths[start]
        while stop < batch and max(longest, lengths[stop]) * (stop + 1 - start) <= budget:
            longest = max(longest, lengths[stop])
            stop += 1
        rows = stop - start
        chunk = hidden[start:stop, :longest, :].transpose(1, 2)  # [rows, width, len]
        scores = buffer[: rows * vocab * longest].view(rows, vocab, longest)
        torch.matmul(weight, chunk, out=scores)
        torch.amax(scores, dim=2, out=pooled[start:stop])
        start = stop
    return pooled
