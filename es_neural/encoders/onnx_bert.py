"""BERT encoders on ONNX Runtime, built from a model folder's safetensors without torch.

The query path (:mod:`es_neural.encoders.fast_query`) runs the same BERT checkpoints as the
torch encoders, without torch: this module reads a folder's ``config.json`` and
``model.safetensors`` with numpy, writes the ONNX graph of the encoder itself (a few dozen nodes
in ONNX Runtime's fused BERT operators: ``MultiHeadAttention``, ``SkipLayerNormalization``,
``BiasGelu``) and hands it to ONNX Runtime as bytes. Nothing is exported by torch, nothing is
written to disk, and neither the ``onnx`` package nor torch is needed: the graph is serialised
by the small protobuf writer below (the ONNX format is protobuf; the field numbers are those of
``onnx.proto``).

Three heads:

* ``hidden``: the last hidden states ``[1, tokens, hidden]`` (pooled by the caller);
* ``classify``: a ``BertForSequenceClassification`` cross-encoder: the pooler (dense and tanh
  over the first token) and the classifier, ``[pairs, labels]`` logits of a padded batch of
  tokenized pairs (the reranker's path, :mod:`es_neural.search.rerank_onnx`);
* ``splade``: the masked-LM head's transform, the vocabulary projection, the max over tokens and
  the bias, then ``TopK``: the ``fetch`` largest ``max_t logit[t, v]`` and their ids. Because
  ``log1p(relu(.))`` is non-decreasing, those are the ids of the largest SPLADE weights.

Weights stay the checkpoint's fp32 values, so outputs equal torch's up to float rounding (int8
was measured and left out: ``DynamicQuantizeMatMul`` with per-tensor activation scales gave a
per-query cosine of 0.987 to fp32 on SciFact claims, and 8-bit ``MatMulNBits`` ran slower than
fp32 on AVX2). The embedding sum (a gather and an add) is done in numpy and the graph starts at
the embedding LayerNorm.

``hidden`` and ``splade`` take one text per call (a query is short and encoded alone), so they
have no padding and no attention mask. ``classify`` takes a batch of pairs padded to the
longest, with a key padding mask on every attention, and each pair's token types select its
segment embeddings.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BertRunner",
    "BertWeights",
    "UnsupportedModel",
    "check_bert_folder",
    "load_bert_weights",
    "onnxruntime_module",
]

#: ``hidden_act`` values the graph computes, and the fused operator that adds the bias and
#: applies it (``BiasGelu`` is the exact, erf-based GELU of ``"gelu"``).
_ACTIVATIONS = {"gelu": "BiasGelu", "gelu_new": "FastGelu", "gelu_pytorch_tanh": "FastGelu"}
_MS = "com.microsoft"
_OPSET = 17


class UnsupportedModel(Exception):
    """The folder holds a model this module cannot run (the reason is the message)."""


def onnxruntime_module() -> Any:
    """``onnxruntime``; :class:`UnsupportedModel` when it is not installed (a dependency of
    es-neural: the query path then falls back to torch, or is refused, as for any model)."""
    try:
        import onnxruntime
    except ImportError:
        raise UnsupportedModel(
            "ONNX Runtime is not installed (pip install onnxruntime; es-neural depends on it)"
        ) from None
    return onnxruntime


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True, slots=True)
class BertWeights:
    """A BERT checkpoint read with numpy: its config and its tensors by canonical name
    (no ``bert.`` prefix; LayerNorm ``weight`` / ``bias``, not ``gamma`` / ``beta``)."""

    config: Mapping[str, Any]
    tensors: Mapping[str, npt.NDArray[np.float32]]

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def heads(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def eps(self) -> float:
        return float(self.config.get("layer_norm_eps", 1e-12))

    @property
    def positions(self) -> int:
        return int(self.config.get("max_position_embeddings", 512))

    @property
    def activation(self) -> str:
        return _ACTIVATIONS[str(self.config.get("hidden_act", "gelu"))]

    def get(self, name: str) -> npt.NDArray[np.float32]:
        try:
            return self.tensors[name]
        except KeyError:
            raise UnsupportedModel(f"the checkpoint has no tensor {name!r}") from None

    @property
    def has_mlm_head(self) -> bool:
        return "cls.predictions.bias" in self.tensors


def check_bert_folder(folder: Path) -> dict[str, Any]:
    """``folder``'s ``config.json`` when it holds a plain BERT this module can run (weights in
    safetensors, absolute positions, a known activation); :class:`UnsupportedModel` saying why
    not otherwise. Reads the config only."""
    config_file, weights_file = folder / "config.json", folder / "model.safetensors"
    if not config_file.is_file():
        raise UnsupportedModel(f"no config.json in {folder}")
    if not weights_file.is_file():
        raise UnsupportedModel(f"no model.safetensors in {folder} (torch pickles need torch)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if not isinstance(config, dict) or config.get("model_type") != "bert":
        raise UnsupportedModel(f"model_type {config.get('model_type')!r} is not 'bert'")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel("only absolute position embeddings are supported")
    if str(config.get("hidden_act", "gelu")) not in _ACTIVATIONS:
        raise UnsupportedModel(f"activation {config.get('hidden_act')!r} is not supported")
    if int(config["hidden_size"]) % int(config["num_attention_heads"]):
        raise UnsupportedModel("hidden_size is not a multiple of num_attention_heads")
    return config


def load_bert_weights(folder: Path) -> BertWeights:
    """The BERT checkpoint in ``folder`` (``config.json`` + ``model.safetensors``).

    Raises :class:`UnsupportedModel` when it is not a plain BERT this module can run
    (:func:`check_bert_folder`).
    """
    config = check_bert_folder(folder)
    weights_file = folder / "model.safetensors"
    from safetensors.numpy import load_file

    try:
        raw = load_file(str(weights_file))
    except (TypeError, ValueError) as exc:  # bfloat16 weights: numpy has no such dtype
        raise UnsupportedModel(f"numpy cannot read {weights_file}: {exc}") from None
    tensors: dict[str, npt.NDArray[np.float32]] = {}
    for name, value in raw.items():
        if value.dtype.kind != "f":  # position_ids buffers of older checkpoints
            continue
        key = name.removeprefix("bert.").replace(".gamma", ".weight").replace(".beta", ".bias")
        tensors[key] = np.ascontiguousarray(value, dtype=np.float32)
    weights = BertWeights(config, tensors)
    weights.get("embeddings.word_embeddings.weight")  # a BERT checkpoint, not something else
    return weights


# --------------------------------------------------------------------------- protobuf writer

#: ``TensorProto.DataType`` of the arrays written (FLOAT, INT64).
_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.int64): 7}


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _float(field: int, value: float) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<f", value)


#: A serialised message as pieces (weights stay views of their arrays until the one final join).
_Parts = list[bytes | memoryview]


def _message(field: int, parts: _Parts) -> _Parts:
    """``parts`` as the length-delimited field ``field``."""
    size = sum(len(p) for p in parts)
    return [_varint(field << 3 | 2) + _varint(size), *parts]


def _tensor(name: str, array: npt.NDArray[Any]) -> _Parts:
    """``TensorProto``: dims (1), data_type (2), name (8), raw_data (9)."""
    array = np.ascontiguousarray(array)
    header = b"".join(_int(1, int(d)) for d in array.shape)
    header += _int(2, _DTYPES[array.dtype]) + _bytes(8, name)
    raw = memoryview(array.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    return [header, *_message(9, [raw])]


def _attribute(name: str, value: float | int | list[int]) -> bytes:
    """``AttributeProto``: name (1), f (2), i (3), ints (8), type (20: FLOAT 1, INT 2, INTS 7)."""
    if isinstance(value, float):
        return _bytes(1, name) + _float(2, value) + _int(20, 1)
    if isinstance(value, int):
        return _bytes(1, name) + _int(3, value) + _int(20, 2)
    return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, 7)


def _value_info(name: str, dims: list[int | str], elem_type: int = 1) -> bytes:
    """``ValueInfoProto`` of a tensor: name (1), type (2) > tensor_type (1) > elem_type (1),
    shape (2) > dim (1) > dim_value (1) | dim_param (2)."""
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, elem_type) + _bytes(2, shape)))


class _Graph:
    """Nodes and initializers of one ONNX graph, serialised as a ``ModelProto``."""

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.initializers: list[_Parts] = []
        self._count = 0

    def constant(self, name: str, array: npt.NDArray[Any]) -> str:
        self.initializers.append(_tensor(name, array))
        return name

    def node(
        self,
        op: str,
        inputs: list[str],
        outputs: int | list[str] = 1,
        *,
        domain: str = "",
        **attributes: Any,
    ) -> list[str]:
        """``NodeProto``: input (1), output (2), name (3), op_type (4), attribute (5),
        domain (7). ``outputs`` is a count (names are made up) or the names; returns them.
        An empty input name is an absent optional input."""
        self._count += 1
        if isinstance(outputs, int):
            outputs = [f"{op}_{self._count}_{i}" for i in range(outputs)]
        proto = (
            b"".join(_bytes(1, i) for i in inputs)
            + b"".join(_bytes(2, o) for o in outputs)
            + _bytes(3, f"n{self._count}")
            + _bytes(4, op)
            + b"".join(_bytes(5, _attribute(k, v)) for k, v in attributes.items())
            + (_bytes(7, domain) if domain else b"")
        )
        self.nodes.append(proto)
        return outputs

    def model(self, inputs: list[bytes], outputs: list[bytes]) -> bytes:
        """``ModelProto``: ir_version (1), producer_name (2), graph (7), opset_import (8);
        ``GraphProto``: node (1), name (2), initializer (5), input (11), output (12). The
        weights are copied once, into the returned bytes."""
        graph: _Parts = [b"".join(_bytes(1, n) for n in self.nodes) + _bytes(2, "es_neural")]
        for tensor in self.initializers:
            graph += _message(5, tensor)
        graph.append(
            b"".join(_bytes(11, i) for i in inputs) + b"".join(_bytes(12, o) for o in outputs)
        )
        opsets = _bytes(8, _bytes(1, "") + _int(2, _OPSET)) + _bytes(8, _bytes(1, _MS) + _int(2, 1))
        head = _int(1, 8) + _bytes(2, "es-neural")
        return b"".join([head, *_message(7, graph), opsets])


# --------------------------------------------------------------------------- the graph


class _BertGraph:
    """The encoder graph of one checkpoint (see the module docstring)."""

    def __init__(self, weights: BertWeights) -> None:
        self.w = weights
        self.g = _Graph()

    def linear(self, x: str, name: str) -> str:
        """``x @ weight.T`` of the torch ``Linear`` ``name`` (its bias is added by the caller's
        fused operator)."""
        matrix = np.ascontiguousarray(self.w.get(f"{name}.weight").T)
        return self.matmul(x, matrix, name)

    def matmul(self, x: str, matrix: npt.NDArray[np.float32], name: str) -> str:
        return self.g.node("MatMul", [x, self.g.constant(name, matrix)])[0]

    def vector(self, name: str) -> str:
        return self.g.constant(name, self.w.get(name))

    def layer_norm(self, x: str, name: str) -> str:
        inputs = [x, self.vector(f"{name}.weight"), self.vector(f"{name}.bias")]
        return self.g.node("LayerNormalization", inputs, axis=-1, epsilon=self.w.eps)[0]

    def skip_layer_norm(self, x: str, skip: str, bias: str, norm: str) -> str:
        inputs = [x, skip, self.vector(f"{norm}.weight"), self.vector(f"{norm}.bias")]
        inputs.append(self.vector(bias))
        return self.g.node("SkipLayerNormalization", inputs, domain=_MS, epsilon=self.w.eps)[0]

    def activation(self, x: str, bias: str) -> str:
        return self.g.node(self.w.activation, [x, self.vector(bias)], domain=_MS)[0]

    def encoder(self, mask: str | None = None) -> str:
        """Embedding LayerNorm and every transformer layer: ``[B, T, hidden]``. ``mask``: the
        name of a ``[B, T]`` int32 key padding mask (1: a token, 0: padding)."""
        w, g = self.w, self.g
        width = w.hidden_size
        x = self.layer_norm("embeddings", "embeddings.LayerNorm")
        split = g.constant("qkv.split", np.array([width, width, width], dtype=np.int64))
        for index in range(w.layers):
            p = f"encoder.layer.{index}"
            parts = [f"{p}.attention.self.{n}" for n in ("query", "key", "value")]
            qkv_matrix = np.concatenate([w.get(f"{n}.weight") for n in parts]).T
            qkv_bias = np.concatenate([w.get(f"{n}.bias") for n in parts])
            qkv = self.matmul(x, np.ascontiguousarray(qkv_matrix), f"{p}.qkv")
            q, k, v = g.node("Split", [qkv, split], 3, axis=-1)
            bias = g.constant(f"{p}.qkv.bias", qkv_bias)
            inputs = [q, k, v, bias] + ([mask] if mask is not None else [])
            context = g.node("MultiHeadAttention", inputs, domain=_MS, num_heads=w.heads)
            attended = self.linear(context[0], f"{p}.attention.output.dense")
            x = self.skip_layer_norm(
                attended, x, f"{p}.attention.output.dense.bias", f"{p}.attention.output.LayerNorm"
            )
            inner = self.linear(x, f"{p}.intermediate.dense")
            inner = self.activation(inner, f"{p}.intermediate.dense.bias")
            out = self.linear(inner, f"{p}.output.dense")
            x = self.skip_layer_norm(out, x, f"{p}.output.dense.bias", f"{p}.output.LayerNorm")
        return x

    def hidden_model(self) -> bytes:
        x = self.encoder()
        self.g.node("Identity", [x], ["hidden"])
        return self.g.model(
            [_value_info("embeddings", [1, "tokens", self.w.hidden_size])],
            [_value_info("hidden", [1, "tokens", self.w.hidden_size])],
        )

    def classify_model(self) -> bytes:
        """Encoder over a padded batch (``mask``), then the pooler (``tanh(dense(first
        token))``) and the classifier: ``[B, labels]`` logits, as
        ``BertForSequenceClassification`` computes them."""
        w, g = self.w, self.g
        x = self.encoder(mask="mask")
        first = g.node("Gather", [x, g.constant("first", np.array([0], dtype=np.int64))], axis=1)
        first = g.node("Squeeze", [first[0], g.constant("axis1", np.array([1], np.int64))])
        pooled = self.linear(first[0], "pooler.dense")
        pooled = g.node("Add", [pooled, self.vector("pooler.dense.bias")])[0]
        pooled = g.node("Tanh", [pooled])[0]
        logits = self.linear(pooled, "classifier")
        g.node("Add", [logits, self.vector("classifier.bias")], ["logits"])
        labels = int(w.get("classifier.bias").shape[0])
        return g.model(
            [
                _value_info("embeddings", ["batch", "tokens", w.hidden_size]),
                _value_info("mask", ["batch", "tokens"], elem_type=6),  # int32
            ],
            [_value_info("logits", ["batch", labels])],
        )

    def splade_model(self, *, fetch: int, special_ids: list[int]) -> bytes:
        """Encoder, MLM transform, vocabulary projection (fp32 always), max over tokens, bias,
        ``TopK(fetch)``. Special ids get a bias of the lowest float, so they never score."""
        w, g = self.w, self.g
        x = self.encoder()
        transform = "cls.predictions.transform"
        x = self.linear(x, f"{transform}.dense")
        x = self.activation(x, f"{transform}.dense.bias")
        x = self.layer_norm(x, f"{transform}.LayerNorm")
        decoder = w.tensors.get("cls.predictions.decoder.weight")
        if decoder is None:  # tied to the word embeddings (BERT's default)
            decoder = w.get("embeddings.word_embeddings.weight")
        projection = g.constant("decoder", np.ascontiguousarray(decoder.T))
        logits = g.node("MatMul", [x, projection])[0]
        pooled = g.node("ReduceMax", [logits], axes=[1], keepdims=0)[0]
        bias = w.get("cls.predictions.bias").copy()
        bias[special_ids] = np.finfo(np.float32).min
        scored = g.node("Add", [pooled, g.constant("decoder.bias", bias)])[0]
        k = g.constant("fetch", np.array([fetch], dtype=np.int64))
        g.node("TopK", [scored, k], ["logits", "ids"], axis=-1, largest=1, sorted=1)
        return g.model(
            [_value_info("embeddings", [1, "tokens", w.hidden_size])],
            [_value_info("logits", [1, fetch]), _value_info("ids", [1, fetch], elem_type=7)],
        )


class BertRunner:
    """One ONNX Runtime session of a BERT checkpoint, fed one tokenized text at a time.

    ``head="hidden"``: :meth:`run` returns the last hidden states ``[tokens, hidden]``;
    ``head="splade"``: the ``fetch`` largest pooled logits (``max_t logit[t, v] + b[v]``,
    descending) and their vocabulary ids; ``head="classify"``: :meth:`classify` returns the
    classifier's logits ``[pairs, labels]`` of a sequence-classification checkpoint.
    ``threads`` is ONNX Runtime's intra-op thread count (0: its default, one per physical
    core). Sessions are safe to call from several threads.
    """

    def __init__(
        self,
        weights: BertWeights,
        *,
        head: str = "hidden",
        threads: int = 1,
        fetch: int = 0,
        special_ids: list[int] | None = None,
    ) -> None:
        ort = onnxruntime_module()
        graph = _BertGraph(weights)
        if head == "hidden":
            model = graph.hidden_model()
        elif head == "splade":
            if not weights.has_mlm_head:
                raise UnsupportedModel("the checkpoint has no masked-LM head (cls.predictions)")
            vocab = int(weights.get("cls.predictions.bias").shape[0])
            model = graph.splade_model(fetch=min(fetch, vocab), special_ids=special_ids or [])
        elif head == "classify":
            model = graph.classify_model()
        else:
            raise ValueError(f"head must be 'hidden', 'splade' or 'classify', got {head!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Worker threads sleep between calls instead of spinning on a core (a server's query
        # threads share the CPU with the engines).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        word = weights.get("embeddings.word_embeddings.weight")
        self._word = word
        self._position = weights.get("embeddings.position_embeddings.weight")
        token_types = weights.tensors.get("embeddings.token_type_embeddings.weight")
        self._token_types = (
            token_types if token_types is not None else np.zeros((1, word.shape[1]), np.float32)
        )
        self._token_type = self._token_types[0]
        self.head = head
        self.positions = weights.positions

    def classify(
        self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> npt.NDArray[np.float32]:
        """``head="classify"``: the logits ``[len(pairs), labels]`` of tokenized pairs
        (``(ids, token_types)`` each), run as one batch padded to the longest, the padding
        masked out of attention (a pair's scores do not depend on its batch)."""
        if self.head != "classify":
            raise ValueError("classify() needs head='classify'")
        width = self._word.shape[1]
        longest = max((len(ids) for ids, _ in pairs), default=0)
        if not 0 < longest <= self.positions or any(not ids for ids, _ in pairs):
            raise ValueError(f"every pair needs 1 to {self.positions} tokens")
        embeddings = np.zeros((len(pairs), longest, width), np.float32)
        mask = np.zeros((len(pairs), longest), np.int32)
        for row, (ids, types) in enumerate(pairs):
            count = len(ids)
            kinds = np.asarray(types, dtype=np.int64)
            if len(kinds) != count or kinds.min() < 0 or kinds.max() >= len(self._token_types):
                raise ValueError("token_types must give one known segment per token")
            embeddings[row, :count] = (
                self._word[np.asarray(ids, dtype=np.int64)]
                + self._token_types[kinds]
                + self._position[:count]
            )
            mask[row, :count] = 1
        (logits,) = self.session.run(None, {"embeddings": embeddings, "mask": mask})
        return np.asarray(logits, dtype=np.float32)

    def run(self, ids: list[int] | npt.NDArray[np.int64]) -> list[npt.NDArray[Any]]:
        """The head's outputs for one text's token ids (special tokens included);
        ``head="classify"`` takes pairs through :meth:`classify`."""
        if self.head == "classify":
            raise ValueError("head='classify' scores pairs: use classify()")
        index = np.asarray(ids, dtype=np.int64)
        count = int(index.shape[0])
        if not 0 < count <= self.positions:
            raise ValueError(f"{count} tokens; the model takes 1 to {self.positions}")
        embeddings = self._word[index] + self._token_type
        embeddings += self._position[:count]
        outputs = self.session.run(None, {"embeddings": embeddings[None]})
        return [out[0] for out in outputs]
