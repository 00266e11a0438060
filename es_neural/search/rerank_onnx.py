"""The reranker on ONNX Runtime: a BERT cross-encoder scored without torch.

:class:`~es_neural.search.rerank.CrossEncoderReranker` takes this path when its model folder
allows it (``ES_NEURAL_RERANK__RUNTIME=auto``, the default; ``onnx`` requires it, ``torch``
turns it off): a local sentence-transformers ``CrossEncoder`` folder holding a
``BertForSequenceClassification`` with one label in safetensors, its ``tokenizer.json``, and a
sigmoid or identity activation. The graph is the one the query path builds
(:mod:`es_neural.encoders.onnx_bert`, head ``classify``), from the same weights in fp32, so the
scores are torch's up to float rounding; the pairs of a call run as one batch padded to the
longest, the padding masked out of attention (one pair per run on a single thread). The
pair is tokenized by ``tokenizers`` from the folder's ``tokenizer.json`` with the same
``longest_first`` truncation at ``max_length`` that ``CrossEncoder.predict`` applies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from es_neural.encoders.onnx_bert import (
    BertRunner,
    UnsupportedModel,
    check_bert_folder,
    load_bert_weights,
)

__all__ = ["RERANK_RUNTIMES", "OnnxCrossEncoder", "onnx_refusal"]

#: ``ES_NEURAL_RERANK__RUNTIME`` values.
RERANK_RUNTIMES = ("auto", "onnx", "torch")

#: sentence-transformers' activation functions the path applies, by their recorded name.
_ACTIVATIONS = {
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.linear.Identity": "identity",
}


#: Pairs per ONNX Runtime run (the searcher's calls are at most ``rerank.batch_size``, 32).
_BATCH = 32


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _activation(folder: Path) -> str:
    """What ``CrossEncoder.predict`` applies to a one-label model's logit."""
    config = _json(folder / "config_sentence_transformers.json") or {}
    name = config.get("activation_fn") if isinstance(config, dict) else None
    if name is None:
        return "sigmoid"  # sentence-transformers' default for one label
    if name not in _ACTIVATIONS:
        raise UnsupportedModel(f"activation {name!r} is not one the ONNX path applies")
    return _ACTIVATIONS[name]


def _check(folder: Path) -> str:
    """The folder's activation when the path can score it; :class:`UnsupportedModel` else."""
    if not folder.is_dir():
        raise UnsupportedModel(f"{str(folder)!r} is not a local model folder")
    config = check_bert_folder(folder)
    if "BertForSequenceClassification" not in (config.get("architectures") or []):
        raise UnsupportedModel("the checkpoint is not a BertForSequenceClassification")
    if len(config.get("id2label") or {"0": "LABEL_0"}) != 1:
        raise UnsupportedModel("the classifier has more than one label")
    if not (folder / "tokenizer.json").is_file():
        raise UnsupportedModel(f"no tokenizer.json in {folder}")
    modules = _json(folder / "modules.json")
    if modules is not None and (
        len(modules) != 1 or not str(modules[0].get("type", "")).endswith("Transformer")
    ):
        raise UnsupportedModel("modules.json names modules beyond the transformer")
    return _activation(folder)


def onnx_refusal(model: str) -> str | None:
    """Why the ONNX path cannot score ``model`` (a folder or hub id); ``None`` when it can."""
    try:
        _check(Path(model).expanduser())
    except UnsupportedModel as exc:
        return str(exc)
    return None


class OnnxCrossEncoder:
    """Scores (query, passage) pairs of one cross-encoder folder: one padded batch per run of
    at most 32 pairs, or one pair per run on a single thread."""

    def __init__(self, folder: Path, *, max_length: int, threads: int = 0) -> None:
        from tokenizers import Tokenizer

        self.activation = _check(folder)
        weights = load_bert_weights(folder)
        self.max_length = min(max_length, weights.positions)
        self.runner = BertRunner(weights, head="classify", threads=threads)
        #: One pair per run on one thread (a padded batch was slower there); one padded batch
        #: otherwise (ONNX Runtime's threads share its larger products better):
        #: ``bench/rerank_latency.py``.
        self.per_pair = threads == 1
        self._truncating = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._truncating.no_padding()
        self._truncating.enable_truncation(self.max_length, strategy="longest_first")
        self._whole = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._whole.no_padding()
        self._whole.no_truncation()

    def _score(self, logit: float) -> float:
        if self.activation == "identity":
            return logit
        # 1 / (1 + e^-x) without overflow for large negative logits
        if logit >= 0:
            return 1.0 / (1.0 + math.exp(-logit))
        z = math.exp(logit)
        return z / (1.0 + z)

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        encodings = self._truncating.encode_batch([(query, p) for p in passages])
        pairs = [(e.ids, e.type_ids) for e in encodings]
        if self.per_pair:
            logits = [self.runner.classify([pair])[0] for pair in pairs]
        else:  # batches of at most _BATCH pairs bound the attention's memory at long lengths
            logits = [
                row
                for start in range(0, len(pairs), _BATCH)
                for row in self.runner.classify(pairs[start : start + _BATCH])
            ]
        return [self._score(float(row[-1])) for row in logits]

    def token_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._whole.encode_batch([(query, p) for p in passages])]
