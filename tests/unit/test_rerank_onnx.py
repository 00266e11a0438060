"""The reranker on ONNX Runtime (:mod:`es_neural.search.rerank_onnx`): the same scores as
sentence-transformers' ``CrossEncoder`` on torch, the same truncation and token counts, and a
clear refusal of what it cannot run."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from es_neural.errors import ConfigurationError
from es_neural.search import rerank
from es_neural.search.rerank import CrossEncoderReranker, embedded_reranker_path, get_reranker
from es_neural.search.rerank_onnx import onnx_refusal
from es_neural.settings import RerankSettings
from tests.conftest import shared_data


def _pairs(count: int = 12, seed: int = 3) -> tuple[list[str], list[str]]:
    """SciFact claims and abstracts (some longer than the reranker's 192 tokens)."""
    data = shared_data("scifact")
    with (data / "corpus.jsonl").open(encoding="utf-8") as handle:
        docs = [json.loads(line) for line, _ in zip(handle, range(300), strict=False)]
    with (data / "queries.jsonl").open(encoding="utf-8") as handle:
        claims = [json.loads(line)["text"] for line, _ in zip(handle, range(50), strict=False)]
    rng = random.Random(seed)
    passages = [f"{d['title']} {d['text']}" for d in rng.sample(docs, count)]
    return rng.sample(claims, 4), passages


def test_the_embedded_reranker_scores_as_torch_does_without_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = str(embedded_reranker_path())
    assert onnx_refusal(path) is None
    monkeypatch.setattr(rerank, "_nvidia_gpu_visible", lambda: False)  # as on this CPU machine
    onnx = CrossEncoderReranker(path, runtime="auto", threads=1)  # one pair per run
    batched = CrossEncoderReranker(path, runtime="onnx", threads=2)  # one padded batch
    torch = CrossEncoderReranker(path, runtime="torch")
    assert not onnx.needs_torch() and torch.needs_torch()  # decided before loading
    assert onnx.runtime == "onnxruntime" and torch.runtime == "torch"
    assert batched.load()._onnx is not None and not batched._onnx.per_pair
    claims, passages = _pairs()
    passages.append("coffee beans are roasted " * 300)  # far past 192 tokens: truncated alike
    passages += ["", "Vitamin D and bone density."]  # short ones: padding in the batch
    for claim in claims:
        theirs = torch.score(claim, passages)
        ours = onnx.score(claim, passages)
        assert ours == pytest.approx(theirs, abs=1e-5)
        assert batched.score(claim, passages) == pytest.approx(theirs, abs=1e-5)
        assert all(0.0 < s < 1.0 for s in ours)  # the model's sigmoid, as CrossEncoder applies
        assert onnx.token_lengths(claim, passages) == torch.token_lengths(claim, passages)
    # More pairs than one run takes: the same scores, in order.
    many = passages * 6
    assert len(many) > 32
    assert batched.score(claims[1], many) == pytest.approx(torch.score(claims[1], many), abs=1e-5)
    # A pair's score does not depend on the batch it is padded in.
    alone = batched.score(claims[0], passages[-1:])
    assert alone == pytest.approx(batched.score(claims[0], passages)[-1:], abs=1e-6)
    assert max(onnx.token_lengths(claims[0], passages)) > onnx.max_length
    assert onnx.score("q", []) == []


def test_a_model_it_cannot_run_goes_to_torch_or_is_refused_by_name(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plain BertModel (no classifier): auto falls back to torch, onnx says why it cannot.
    reason = onnx_refusal(str(tiny_model_dir))
    assert reason is not None and "BertForSequenceClassification" in reason
    assert CrossEncoderReranker(str(tiny_model_dir), runtime="auto")._wants_onnx() is False
    with pytest.raises(ConfigurationError, match="BertForSequenceClassification"):
        CrossEncoderReranker(str(tiny_model_dir), runtime="onnx").load()
    assert "not a local model folder" in (onnx_refusal("cross-encoder/ms-marco-MiniLM-L6-v2") or "")
    # An activation the path does not apply, or a GPU named: not the ONNX path.
    folder = tmp_path / "reranker"
    shutil.copytree(embedded_reranker_path(), folder)
    config = folder / "config_sentence_transformers.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "activation_fn": "torch.nn.modules.activation.Tanh"}))
    assert "activation" in (onnx_refusal(str(folder)) or "")
    gpu = CrossEncoderReranker(str(embedded_reranker_path()), runtime="onnx", device="cuda")
    with pytest.raises(ConfigurationError, match="not the CPU"):
        gpu.load()
    # auto with no device set leaves a visible NVIDIA GPU to torch (when torch is installed).
    monkeypatch.setattr(rerank, "_nvidia_gpu_visible", lambda: True)
    assert CrossEncoderReranker(str(embedded_reranker_path())).needs_torch()
    assert not CrossEncoderReranker(str(embedded_reranker_path()), device="cpu").needs_torch()
    assert not CrossEncoderReranker(str(embedded_reranker_path()), runtime="onnx").needs_torch()
    with pytest.raises(ConfigurationError, match="rerank runtime must be one of"):
        CrossEncoderReranker(str(embedded_reranker_path()), runtime="tensorrt")


def test_the_settings_choose_the_runtime() -> None:
    auto = get_reranker(RerankSettings(model="embedded"))
    forced = get_reranker(RerankSettings(model="embedded", runtime="torch"))
    assert auto is not None and forced is not None and auto is not forced
    assert (auto.runtime_setting, forced.runtime_setting) == ("auto", "torch")
    assert RerankSettings().runtime == "auto" and RerankSettings().threads == 0
