"""Reduced-precision encoders (issue 14): every precision loads and encodes, the fingerprint
records precision and runtime, batches are planned by tokens, and the bundle of encoders is built
once from settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from es_neural.encoders import registry as registry_module
from es_neural.encoders.dense import SentenceTransformerDense
from es_neural.encoders.fingerprint import ModelFingerprint, check_compatible
from es_neural.encoders.precision import (
    pack_batches,
    plan_batches,
    resolve_precision,
)
from es_neural.encoders.registry import Encoders
from es_neural.encoders.sparse import SpladeEncoder
from es_neural.errors import ConfigurationError, ModelMismatchError
from es_neural.settings import DenseModelSettings, Settings, SparseModelSettings

TEXTS = [
    "python is a programming language",
    "the quick brown fox jumps over the lazy dog",
    "cancer patients in a clinical trial",
    "dense and sparse vectors for search",
]


# --------------------------------------------------------------------------- precision rules


def test_resolve_precision() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision(None, "cuda") == "bf16"
    assert resolve_precision("auto", "cuda:1") == "bf16"
    assert resolve_precision("INT8", "cpu") == "int8"
    assert resolve_precision("fp16", "cpu") == "fp16"
    with pytest.raises(ConfigurationError, match="CPU only"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ConfigurationError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ConfigurationError):
        SpladeEncoder("unused", precision="half")


def test_plan_batches_respects_the_token_budget_and_the_text_cap() -> None:
    lengths = [3, 3, 4, 5, 8, 8, 9, 30]
    batches = plan_batches(lengths, token_budget=20, max_texts=3)
    assert (batches[0].start, batches[0].stop) == (0, 3)
    assert batches[-1].start == 7 and batches[-1].width == 30  # longer than the budget: alone
    covered = [i for b in batches for i in range(b.start, b.stop)]
    assert covered == list(range(len(lengths)))
    for b in batches:
        assert b.size <= 3
        assert b.width == max(lengths[b.start : b.stop])
        assert b.size == 1 or b.size * b.width <= 20


def test_pack_batches_round_trip() -> None:
    padded = np.array([[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 0, 0]], dtype=np.int64)
    lengths = np.array([3, 1, 2])
    order = np.argsort(lengths, kind="stable")
    batches = plan_batches(lengths[order], token_budget=4, max_texts=8)
    flat, offsets = pack_batches({"input_ids": padded}, order, batches)
    for batch, offset in zip(batches, offsets, strict=True):
        block = flat["input_ids"][offset : offset + batch.size * batch.width]
        block = block.reshape(batch.size, batch.width)
        for row, index in zip(block, order[batch.start : batch.stop], strict=True):
            assert row.tolist() == padded[index, : batch.width].tolist()


# --------------------------------------------------------------------------- each precision


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "int8"])
def test_each_precision_loads_and_encodes_the_tiny_splade(
    tiny_model_dir: Path, precision: str
) -> None:
    reference = SpladeEncoder(tiny_model_dir, device="cpu", precision="fp32", doc_top_k=16)
    encoder = SpladeEncoder(tiny_model_dir, device="cpu", precision=precision, doc_top_k=16)
    vectors = encoder.encode_documents(TEXTS)
    assert encoder.precision == precision
    assert encoder.fingerprint.precision == precision
    assert encoder.fingerprint.runtime == "torch"
    assert len(vectors) == len(TEXTS)
    expected = reference.encode_documents(TEXTS)
    for got, want in zip(vectors, expected, strict=True):
        assert got and all(w > 0 for w in got.values())
        overlap = len(set(got) & set(want)) / len(want)
        assert overlap >= (1.0 if precision == "fp32" else 0.5)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_loads_and_encodes_the_tiny_dense(
    tiny_model_dir: Path, precision: str
) -> None:
    reference = SentenceTransformerDense(tiny_model_dir, device="cpu", precision="fp32")
    encoder = SentenceTransformerDense(tiny_model_dir, device="cpu", precision=precision)
    vectors = encoder.encode_documents(TEXTS)
    assert vectors.shape == (len(TEXTS), encoder.dims) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    cosines = (vectors * reference.encode_documents(TEXTS)).sum(axis=1)
    assert cosines.min() > (0.99999 if precision == "fp32" else 0.99)
    assert encoder.fingerprint.precision == precision


def test_dense_batched_path_equals_sentence_transformers(tiny_model_dir: Path) -> None:
    encoder = SentenceTransformerDense(tiny_model_dir, device="cpu", batch_size=2)
    plain = encoder.model.encode_document(TEXTS, normalize_embeddings=True, batch_size=2)
    np.testing.assert_allclose(encoder.encode_documents(TEXTS), plain, atol=1e-5)


def test_dense_int8_needs_an_onnx_export(tiny_model_dir: Path) -> None:
    encoder = SentenceTransformerDense(tiny_model_dir, device="cpu", precision="int8")
    encoder.load()  # queries take the torch-free query path: the document model is not loaded
    with pytest.raises(ConfigurationError, match="int8 ONNX export"):
        encoder.encode_documents(["a document"])
    torch_queries = SentenceTransformerDense(
        tiny_model_dir, device="cpu", precision="int8", query_runtime="torch"
    )
    with pytest.raises(ConfigurationError, match="int8 ONNX export"):
        torch_queries.load()


def test_splade_fast_vectors_equal_the_clean_weights_path(tiny_model_dir: Path) -> None:
    fast = SpladeEncoder(tiny_model_dir, device="cpu", doc_top_k=8)
    slow = SpladeEncoder(tiny_model_dir, device="cpu", doc_top_k=8)
    fast.load()
    slow.load()
    assert fast._loaded().keys is not None
    object.__setattr__(slow._loaded(), "keys", None)  # force clean_weights for every row
    texts = [*TEXTS, "a a a a", "e.g. 50% of u.s. patients"]
    for got, want in zip(fast.encode_documents(texts), slow.encode_documents(texts), strict=True):
        assert list(got.items()) == list(want.items())


# --------------------------------------------------------------------------- fingerprint


def _fingerprint(**changes: object) -> ModelFingerprint:
    base: dict[str, object] = {
        "kind": "dense",
        "name": "m",
        "revision": "abc",
        "dims": 384,
        "pooling": "mean",
        "normalize": True,
    }
    base.update(changes)
    return ModelFingerprint(**base)  # type: ignore[arg-type]


def test_fingerprint_records_precision_and_runtime() -> None:
    plain = _fingerprint()
    int8 = _fingerprint(precision="int8", runtime="onnxruntime")
    meta = int8.to_meta()
    assert meta["precision"] == "int8" and meta["runtime"] == "onnxruntime"
    assert ModelFingerprint.from_meta(meta) == int8
    assert int8.digest != plain.digest
    assert int8.same_space() == plain
    # a fingerprint stored before precision existed reads as fp32 / torch, same digest
    legacy = {k: v for k, v in plain.to_meta().items() if k not in ("precision", "runtime")}
    assert ModelFingerprint.from_meta(legacy) == plain
    assert ModelFingerprint.from_meta(legacy).digest == plain.digest
    assert "int8" in int8.describe()


def test_precisions_of_the_same_weights_share_the_index() -> None:
    index = _fingerprint().to_meta()
    check_compatible(index, _fingerprint(precision="int8", runtime="onnxruntime"))
    check_compatible(_fingerprint(precision="bf16").to_meta(), _fingerprint())


def test_fingerprint_refuses_a_mismatched_index() -> None:
    index = _fingerprint(precision="int8", runtime="onnxruntime").to_meta()
    with pytest.raises(ModelMismatchError, match="revision"):
        check_compatible(index, _fingerprint(revision="other", precision="int8"))
    with pytest.raises(ModelMismatchError, match="dims"):
        check_compatible(index, _fingerprint(dims=768))
    with pytest.raises(ModelMismatchError, match="precision"):
        check_compatible(_fingerprint(precision="binary").to_meta(), _fingerprint())


# --------------------------------------------------------------------------- the bundle


def test_encoders_from_settings(tiny_model_dir: Path, tmp_path: Path) -> None:
    registry_module.clear_encoders()
    settings = Settings(
        dense=DenseModelSettings(model=str(tiny_model_dir), device="cpu"),
        sparse=SparseModelSettings(model=str(tiny_model_dir), device="cpu"),
        cache_dir=tmp_path,
    )
    both = Encoders.from_settings(settings)
    assert both.dense is registry_module.get_dense_encoder(settings.dense)
    assert both.sparse is registry_module.get_sparse_encoder(settings.sparse)
    assert both.required_sparse is both.sparse
    dense_only = Encoders.from_settings(settings, sparse=False)
    assert dense_only.sparse is None and dense_only.dense is both.dense
    with pytest.raises(ConfigurationError, match="without its SPLADE"):
        _ = dense_only.required_sparse
    cached = Encoders.from_settings(settings, cached=True)
    assert type(cached.dense).__name__ == "CachedDenseEncoder"
    assert type(cached.sparse).__name__ == "CachedSparseEncoder"
    assert cached.dense.fingerprint == both.dense.fingerprint
    other = Encoders.from_settings(
        settings.with_(dense={**settings.dense.model_dump(), "precision": "bf16"})
    )
    assert other.dense is not both.dense and other.dense.fingerprint.precision == "bf16"
    registry_module.clear_encoders()


# --------------------------------------------------------------------------- embedded models


@pytest.mark.models
def test_int8_and_fp32_agree_on_the_embedded_models() -> None:
    registry_module.clear_encoders()
    corpus = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact" / "corpus.jsonl"
    if corpus.is_file():
        with corpus.open(encoding="utf-8") as handle:
            records = [json.loads(next(handle)) for _ in range(12)]
        texts = [f"{r['title']}\n{r['text']}" for r in records]
    else:
        texts = [*TEXTS] * 3
    fp32 = registry_module.get_dense_encoder(DenseModelSettings(device="cpu", precision="fp32"))
    int8 = registry_module.get_dense_encoder(DenseModelSettings(device="cpu", precision="int8"))
    assert int8.fingerprint.runtime == "onnxruntime"
    check_compatible(fp32.fingerprint.to_meta(), int8.fingerprint)
    cosines = (fp32.encode_documents(texts) * int8.encode_documents(texts)).sum(axis=1)
    assert cosines.min() > 0.998
    queries = ["what is python programming language", "vitamin d and bone density"]
    q_cos = (fp32.encode_queries(queries) * int8.encode_queries(queries)).sum(axis=1)
    assert q_cos.min() > 0.998

    sparse32 = registry_module.get_sparse_encoder(SparseModelSettings(device="cpu"))
    sparse8 = registry_module.get_sparse_encoder(
        SparseModelSettings(device="cpu", precision="int8")
    )
    overlaps = []
    for a, b in zip(sparse32.encode_documents(texts), sparse8.encode_documents(texts), strict=True):
        top_a, top_b = list(a)[:64], list(b)[:64]
        overlaps.append(len(set(top_a) & set(top_b)) / max(1, min(len(top_a), len(top_b))))
    assert np.mean(overlaps) > 0.9
    registry_module.clear_encoders()
