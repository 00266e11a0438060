"""The torch-free query path (issues 14 and 17): queries through ONNX Runtime and ``tokenizers``
equal the torch encoders' queries, and the encoders keep the torch document encoder's
fingerprint (a lean install: tests/unit/test_lean_install.py).

The tiny random BERT checks the plumbing against torch; tests marked ``models`` hold the
embedded models to the documented tolerance on SciFact claims.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from es_neural.encoders import registry as registry_module
from es_neural.encoders.dense import SentenceTransformerDense
from es_neural.encoders.fast_query import dense_refusal, sparse_refusal
from es_neural.encoders.fingerprint import ModelFingerprint, check_compatible
from es_neural.encoders.sparse import SpladeEncoder
from es_neural.errors import ConfigurationError, ModelMismatchError
from es_neural.settings import DenseModelSettings, SparseModelSettings
from tests.conftest import shared_data
from tests.support.tiny_models import TINY_MAX_SEQ_LENGTH, TINY_VOCAB

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "python programming language",
    "clinical trials of a new drug for cancer patients, e.g. in the u.s.",
    "",
    "50% of the mice, i.e. five of ten",
]
#: Longer than the tiny model's window (32 tokens): truncation must match too.
LONG = " ".join(["cancer patients in a clinical trial of a new drug"] * 8)


def _dense(folder: Path, runtime: str, **options: object) -> SentenceTransformerDense:
    return SentenceTransformerDense(
        folder,
        name="tiny",
        device="cpu",
        query_runtime=runtime,
        **options,  # type: ignore[arg-type]
    )


def _sparse(folder: Path, runtime: str, **options: object) -> SpladeEncoder:
    return SpladeEncoder(
        folder,
        name="tiny",
        device="cpu",
        query_runtime=runtime,
        **options,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- tiny model: dense


def test_dense_queries_equal_torch_and_load_no_torch_model(tiny_model_dir: Path) -> None:
    fast, torch_path = _dense(tiny_model_dir, "auto"), _dense(tiny_model_dir, "torch")
    fast.load()
    assert fast.query_runtime == "onnxruntime" and torch_path.query_runtime == "torch"
    texts = [*TEXTS, LONG]
    got = fast.encode_queries(texts)
    assert not fast.is_loaded  # queries never loaded the sentence-transformers model
    want = torch_path.encode_queries(texts)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)


def test_dense_query_path_reports_the_document_encoders_identity(tiny_model_dir: Path) -> None:
    fast, torch_path = _dense(tiny_model_dir, "auto"), _dense(tiny_model_dir, "torch")
    assert fast.fingerprint == torch_path.fingerprint  # the torch one is read from the model
    assert fast.fingerprint.runtime == "torch" and fast.fingerprint.precision == "fp32"
    assert fast.dims == torch_path.dims and fast.max_seq_length == TINY_MAX_SEQ_LENGTH
    assert fast.cache_key == torch_path.cache_key
    assert fast.token_lengths([*TEXTS, LONG]) == torch_path.token_lengths([*TEXTS, LONG])
    assert not fast.is_loaded
    # documents load the torch model, which agrees with what the query path computed
    np.testing.assert_allclose(
        fast.encode_documents(TEXTS), torch_path.encode_documents(TEXTS), atol=1e-6
    )
    assert fast.is_loaded and fast.query_runtime == "onnxruntime"


def test_dense_query_prompt_and_options_follow_the_torch_encoder(
    tiny_prompt_model_dir: Path, tiny_model_dir: Path
) -> None:
    fast, torch_path = _dense(tiny_prompt_model_dir, "auto"), _dense(tiny_prompt_model_dir, "torch")
    queries = fast.encode_queries(TEXTS[:3])
    np.testing.assert_allclose(queries, torch_path.encode_queries(TEXTS[:3]), atol=2e-6)
    # the prompt is applied to queries only: documents of the same texts differ
    assert (queries * fast.encode_documents(TEXTS[:3])).sum(axis=1).max() < 0.9999
    for options in ({"max_seq_length": 8}, {"similarity": "l2_norm"}):
        a, b = _dense(tiny_model_dir, "auto", **options), _dense(tiny_model_dir, "torch", **options)
        np.testing.assert_allclose(a.encode_queries([LONG]), b.encode_queries([LONG]), atol=2e-6)
        assert a.max_seq_length == b.max_seq_length and a.fingerprint == b.fingerprint


def test_dense_cls_pooling(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cls"
    _copy(tiny_model_dir, folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    fast, torch_path = _dense(folder, "auto"), _dense(folder, "torch")
    assert fast.query_runtime == "onnxruntime" and fast.fingerprint.pooling == "cls"
    assert fast.fingerprint == torch_path.fingerprint
    got, want = fast.encode_queries(TEXTS), torch_path.encode_queries(TEXTS)
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_dense_query_runtime_setting(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "max-pooled"
    _copy(tiny_model_dir, folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    pooling.write_text(json.dumps(config))
    assert dense_refusal(folder) is not None and dense_refusal(tiny_model_dir) is None
    # auto: queries fall back to torch, and say why
    auto = _dense(folder, "auto")
    assert auto.query_runtime == "torch"
    assert "pooling" in (auto.query_path_refusal or "")
    np.testing.assert_allclose(
        auto.encode_queries(TEXTS), _dense(folder, "torch").encode_queries(TEXTS), atol=1e-6
    )
    # onnx: refused with the reason
    with pytest.raises(ConfigurationError, match=r"query_runtime onnx.*pooling"):
        _dense(folder, "onnx").load()
    with pytest.raises(ConfigurationError, match="query_runtime must be one of"):
        _dense(folder, "gpu")


# --------------------------------------------------------------------------- tiny model: SPLADE


def test_splade_queries_equal_torch(tiny_model_dir: Path) -> None:
    options = {"query_top_k": 12, "doc_top_k": 40}
    every = {"query_top_k": len(TINY_VOCAB)}  # every positive weight: special tokens would show
    fast, torch_path = (
        _sparse(tiny_model_dir, "auto", **options),
        _sparse(tiny_model_dir, "torch", **options),
    )
    texts = [*TEXTS, LONG, "a a a a"]
    got, want = fast.encode_queries(texts), torch_path.encode_queries(texts)
    assert not fast.is_loaded and fast.query_runtime == "onnxruntime"
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w)  # same terms, same order (ties broken by key)
        np.testing.assert_allclose(list(g.values()), list(w.values()), rtol=1e-5, atol=1e-6)
        assert 0 < len(g) <= 12
    whole = _sparse(tiny_model_dir, "auto", **every).encode_queries(texts)
    for g, w in zip(
        whole, _sparse(tiny_model_dir, "torch", **every).encode_queries(texts), strict=True
    ):
        assert list(g) == list(w) and len(g) > 12
        assert not {"[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"} & set(g)
    assert any("%2E" in key for vector in got for key in vector)  # keys are sanitised
    assert fast.fingerprint == torch_path.fingerprint and fast.cache_key == torch_path.cache_key
    assert fast.max_seq_length == torch_path.max_seq_length
    assert fast.token_lengths(texts) == torch_path.token_lengths(texts)


def test_splade_query_path_honours_min_weight(tiny_model_dir: Path) -> None:
    fast = _sparse(tiny_model_dir, "auto", query_top_k=50, min_weight=0.5)
    torch_path = _sparse(tiny_model_dir, "torch", query_top_k=50, min_weight=0.5)
    for g, w in zip(fast.encode_queries(TEXTS), torch_path.encode_queries(TEXTS), strict=True):
        assert list(g) == list(w) and min(g.values(), default=1.0) > 0.5


def test_splade_query_runtime_setting(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer-json"
    _copy(tiny_model_dir, folder)
    (folder / "tokenizer.json").unlink()
    assert "tokenizer.json" in (sparse_refusal(folder) or "")
    with pytest.raises(ConfigurationError, match=r"query_runtime onnx.*tokenizer\.json"):
        _sparse(folder, "onnx").load()
    assert _sparse(folder, "auto").query_runtime == "torch"


# --------------------------------------------------------------------------- fingerprints


def test_query_path_searches_indexes_of_the_same_model_only(
    tiny_model_dir: Path, tiny_model_dir_seed1: Path
) -> None:
    fast = _dense(tiny_model_dir, "auto")
    torch_meta = _dense(tiny_model_dir, "torch").fingerprint.to_meta()
    check_compatible(torch_meta, fast.fingerprint)  # an index filled by the torch encoder
    int8_meta = ModelFingerprint.from_meta(
        {**torch_meta, "precision": "int8", "runtime": "onnxruntime"}
    ).to_meta()
    check_compatible(int8_meta, fast.fingerprint)  # ... or by the int8 ONNX document encoder
    other = _dense(tiny_model_dir_seed1, "torch").fingerprint.to_meta()
    with pytest.raises(ModelMismatchError, match="revision"):
        check_compatible(other, fast.fingerprint)
    sparse_meta = _sparse(tiny_model_dir, "torch").fingerprint.to_meta()
    check_compatible(sparse_meta, _sparse(tiny_model_dir, "auto").fingerprint)
    with pytest.raises(ModelMismatchError):
        check_compatible(sparse_meta, _sparse(tiny_model_dir_seed1, "auto").fingerprint)


def test_registry_passes_the_query_settings(tiny_model_dir: Path) -> None:
    registry_module.clear_encoders()
    auto = registry_module.get_dense_encoder(DenseModelSettings(model=str(tiny_model_dir)))
    off = registry_module.get_dense_encoder(
        DenseModelSettings(model=str(tiny_model_dir), query_runtime="torch")
    )
    assert auto.query_runtime == "onnxruntime" and off.query_runtime == "torch"  # type: ignore[attr-defined]
    assert not registry_module.queries_need_torch(DenseModelSettings(model=str(tiny_model_dir)))
    assert registry_module.queries_need_torch(
        SparseModelSettings(model=str(tiny_model_dir), query_runtime="torch")
    )
    assert registry_module.queries_need_torch(DenseModelSettings(model="org/some-hub-model"))
    registry_module.clear_encoders()


# --------------------------------------------------------------------------- embedded models


@pytest.mark.models
def test_embedded_models_query_path_equals_torch_on_scifact_claims() -> None:
    """The documented tolerance: dense cosine >= 0.99999 per claim; SPLADE the same top-20
    terms in the same order, weights within 1e-5 (absolute) on every common term."""
    claims = [
        json.loads(line)["text"]
        for line in shared_data("scifact", "queries.jsonl").open(encoding="utf-8")
    ][:50]
    registry_module.clear_encoders()
    fast_dense = registry_module.get_dense_encoder(DenseModelSettings(device="cpu"))
    torch_dense = registry_module.get_dense_encoder(
        DenseModelSettings(device="cpu", query_runtime="torch")
    )
    assert fast_dense.query_runtime == "onnxruntime"  # type: ignore[attr-defined]
    assert fast_dense.fingerprint == torch_dense.fingerprint
    cosines = (fast_dense.encode_queries(claims) * torch_dense.encode_queries(claims)).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines.min()

    fast_sparse = registry_module.get_sparse_encoder(SparseModelSettings(device="cpu"))
    torch_sparse = registry_module.get_sparse_encoder(
        SparseModelSettings(device="cpu", query_runtime="torch")
    )
    assert fast_sparse.fingerprint == torch_sparse.fingerprint
    for claim, got, want in zip(
        claims, fast_sparse.encode_queries(claims), torch_sparse.encode_queries(claims), strict=True
    ):
        assert list(got)[:20] == list(want)[:20], claim
        common = got.keys() & want.keys()
        assert max(abs(got[k] - want[k]) for k in common) < 1e-5, claim
        # beyond the top 20, only terms tied (within rounding) at the top-64 cut may differ
        cut = min(min(got.values()), min(want.values()))
        for key in got.keys() ^ want.keys():
            assert got.get(key, want.get(key, 0.0)) < cut + 1e-5, (claim, key)
    # an index written by the int8 ONNX document encoder is searched by the query path too
    int8 = registry_module.get_dense_encoder(DenseModelSettings(device="cpu", precision="int8"))
    check_compatible(int8.fingerprint.to_meta(), fast_dense.fingerprint)
    registry_module.clear_encoders()


def _copy(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target)
