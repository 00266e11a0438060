"""Neural tree: build, train, route, optimize and artifact on small synthetic data (fast, CPU)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from es_neural.dialects.base import FieldNames
from es_neural.encoders.base import LeafAssigner
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.errors import ConfigurationError, InvalidInputError, ModelMismatchError
from es_neural.indices import IndexInfo, neural_meta, verify_models
from es_neural.protocols import QueryRouter
from es_neural.tree import (
    COUNT_CAP,
    BuildConfig,
    TrainConfig,
    TreeLeafAssigner,
    TreeModel,
    TreeRouter,
    add_cooccurrence_leaves,
    add_routed_leaves,
    beam_search,
    build_tree,
    cooccurrence_counts,
    leaf_recall,
    load_tree,
    path_log_probs,
    saturating_add,
    save_tree,
    select_count,
    train_tree,
    vector_keys,
)

DIMS = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Data(NamedTuple):
    docs: np.ndarray
    queries: np.ndarray
    #: (query row, relevant document id)
    pairs: list[tuple[int, str]]


@pytest.fixture(scope="module")
def data() -> Data:
    """600 documents around 12 topics; 300 queries near a document each."""
    rng = np.random.default_rng(7)
    topics = rng.normal(size=(12, DIMS))
    topic_of = rng.integers(12, size=600)
    docs = _unit(topics[topic_of] + 0.6 * rng.normal(size=(600, DIMS)))
    relevant = rng.integers(600, size=300)
    queries = _unit(docs[relevant] + 0.25 * rng.normal(size=(300, DIMS)))
    return Data(docs, queries, [(i, str(int(d))) for i, d in enumerate(relevant)])


_BUILD = BuildConfig(branching=4, max_leaf_size=25)


@pytest.fixture(scope="module")
def tree(data: Data) -> TreeModel:
    return build_tree(data.docs, version="v3", config=_BUILD)


def _quick() -> TrainConfig:
    return TrainConfig(epochs=15, batch_size=64, learning_rate=0.02, progress=False)


# ---------------------------------------------------------------------------------- build


def test_build_is_deterministic(data: Data, tree: TreeModel) -> None:
    again = build_tree(data.docs, version="v3", config=_BUILD)
    assert np.array_equal(again.parents, tree.parents)
    assert np.array_equal(again.centroids, tree.centroids)
    assert np.array_equal(again.doc_leaf_nodes, tree.doc_leaf_nodes)
    assert again.node_ids == tree.node_ids


def test_build_puts_every_document_in_one_small_leaf(tree: TreeModel) -> None:
    assert tree.n_documents == 600
    assert np.array_equal(np.diff(tree.doc_leaf_ptr), np.ones(600))
    sizes = tree.leaf_sizes()
    assert sizes.sum() == 600 and sizes.max() <= 25 and sizes.min() >= 1
    assert tree.is_leaf[tree.doc_leaf_nodes].all()


@pytest.mark.parametrize("branching", range(2, 13))
def test_node_ids_are_unique_and_encode_the_path(branching: int) -> None:
    rng = np.random.default_rng(branching)
    docs = _unit(rng.normal(size=(400, 8)))
    model = build_tree(docs, version="v9", config=BuildConfig(branching=branching, max_leaf_size=5))
    ids = model.node_ids
    assert len(set(ids)) == model.n_nodes
    assert ids[0] == "v9" and all(i.startswith("v9:") for i in ids[1:])
    assert model.max_depth >= 2 and model.max_branching <= branching
    for node in range(1, model.n_nodes):
        steps = ids[node].split(":", 1)[1].split("/")
        assert len(steps) == model.depth[node]
        walk = 0
        for step in steps:  # following the path from the root reaches the node
            walk = int(model.children_table[walk, int(step)])
        assert walk == node
        assert model.node_index(ids[node]) == node
    leaf = int(model.leaf_nodes[-1])
    assignment = model.assignment([leaf])
    path = ids[leaf].split(":", 1)[1].split("/")
    assert assignment.ancestors == tuple(f"v9:{'/'.join(path[:k])}" for k in range(1, len(path)))


def test_all_duplicates_terminate_with_bounded_leaves() -> None:
    docs = np.tile(_unit(np.ones((1, DIMS))), (1000, 1))
    model = build_tree(docs, config=BuildConfig(branching=3, max_leaf_size=10))
    assert model.leaf_sizes().max() <= 10 and model.leaf_sizes().sum() == 1000
    assert model.max_depth <= 6  # ceil(log3(100)) + 1: equal chunks shrink every level


def test_max_depth_bounds_the_tree_even_when_leaves_stay_big() -> None:
    docs = np.tile(_unit(np.ones((1, DIMS))), (500, 1))
    model = build_tree(docs, config=BuildConfig(branching=2, max_leaf_size=1, max_depth=3))
    assert model.max_depth == 3
    assert model.leaf_sizes().sum() == 500


def test_a_small_corpus_is_a_single_leaf_root() -> None:
    docs = _unit(np.random.default_rng(0).normal(size=(5, DIMS)))
    model = build_tree(docs, config=BuildConfig(max_leaf_size=10))
    assert model.n_nodes == 1 and model.is_leaf[0]
    route = TreeRouter(model).route(docs[0])
    assert route.leaf_ids == (model.version,) and route.probabilities == (1.0,)


@pytest.mark.parametrize(
    "bad",
    [
        {"branching": 1},
        {"max_leaf_size": 0},
        {"max_depth": 0},
        {"scale": 0.0},
    ],
)
def test_build_config_is_validated(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        BuildConfig(**bad)


@pytest.mark.parametrize("version", ["", "v:1", "a/b", "-v", "v 1"])
def test_versions_that_would_break_ids_are_refused(version: str) -> None:
    with pytest.raises(ConfigurationError):
        build_tree(np.eye(4, dtype=np.float32), version=version)


# ---------------------------------------------------------------------------------- route


def test_beam_probabilities_are_a_distribution(data: Data, tree: TreeModel) -> None:
    queries = data.queries
    narrow = beam_search(tree, queries, beam=2, top=8).probabilities()
    assert (narrow.sum(1) <= 1 + 1e-9).all()
    assert (np.diff(narrow, axis=1) <= 1e-12).all()  # best first
    full = beam_search(tree, queries, beam=tree.n_nodes, top=len(tree.leaf_nodes))
    np.testing.assert_allclose(full.probabilities().sum(1), 1.0, atol=1e-9)
    # The beam's path probabilities are the products of per-level softmaxes.
    expected = path_log_probs(tree, queries[:20], full.leaves[:20])
    np.testing.assert_allclose(full.log_probs[:20], expected, rtol=1e-4, atol=1e-4)


def test_pruning_beams_report_true_path_probabilities(data: Data, tree: TreeModel) -> None:
    queries = data.queries[:40]
    exhaustive = beam_search(tree, queries, beam=tree.widest_level, top=5)
    assert tree.widest_level > 2
    for beam in (1, 2, tree.widest_level - 1):
        found = beam_search(tree, queries, beam=beam, top=5)
        expected = path_log_probs(tree, queries, found.leaves)
        np.testing.assert_allclose(found.log_probs, expected, rtol=1e-4, atol=1e-4)
        # A pruning beam can only miss leaves: its best leaf is never better.
        assert (found.log_probs[:, 0] <= exhaustive.log_probs[:, 0] + 1e-9).all()
    wide = beam_search(tree, queries, beam=tree.widest_level - 1, top=5)
    agree = (wide.leaves[:, 0] == exhaustive.leaves[:, 0]).mean()
    assert agree > 0.9


def test_routing_is_deterministic(data: Data, tree: TreeModel) -> None:
    router = TreeRouter(tree)
    queries = data.queries
    first = router.route_many(queries, threshold=0.8, max_leaves=5)
    assert first == TreeRouter(tree).route_many(queries, threshold=0.8, max_leaves=5)
    # One at a time gives the same leaves (BLAS may differ in the last bits between shapes).
    single = [router.route(q, threshold=0.8, max_leaves=5) for q in queries]
    assert [r.leaf_ids for r in single] == [r.leaf_ids for r in first]
    for a, b in zip(single, first, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-9)


def test_select_count_threshold_floor_and_cap() -> None:
    probs = [0.5, 0.3, 0.1, 0.05]
    assert select_count(probs, threshold=0.5, min_leaves=1, max_leaves=4) == 1
    assert select_count(probs, threshold=0.8, min_leaves=1, max_leaves=4) == 2
    assert select_count(probs, threshold=0.81, min_leaves=1, max_leaves=4) == 3
    assert select_count(probs, threshold=0.5, min_leaves=3, max_leaves=4) == 3  # floor
    assert select_count(probs, threshold=1.0, min_leaves=1, max_leaves=2) == 2  # cap
    assert select_count(probs, threshold=1.0, min_leaves=1, max_leaves=10) == 4  # what exists
    with pytest.raises(InvalidInputError):
        select_count(probs, threshold=0.0, min_leaves=1, max_leaves=2)
    with pytest.raises(InvalidInputError):
        select_count(probs, threshold=0.5, min_leaves=3, max_leaves=2)


def test_route_adapts_the_number_of_leaves(data: Data, tree: TreeModel) -> None:
    router = TreeRouter(tree)
    queries = data.queries
    routes = router.route_many(queries, threshold=0.9, min_leaves=2, max_leaves=6)
    counts = {len(r.leaf_ids) for r in routes}
    assert min(counts) >= 2 and max(counts) <= 6 and len(counts) > 1
    for r in routes:
        assert r.tree_version == "v3" and not r.widened and r.filter_field == "leaf_ids"
        assert list(r.probabilities) == sorted(r.probabilities, reverse=True)
        assert sum(r.probabilities) <= 1 + 1e-9


def test_low_confidence_widens_to_parents(data: Data, tree: TreeModel) -> None:
    queries = data.queries
    route = TreeRouter(tree, widen_below=1.0).route(queries[0], threshold=0.3)
    assert route.widened
    parents = {int(tree.parents[tree.node_index(leaf)]) for leaf in route.leaf_ids}
    if 0 in parents:
        assert route.filter_field == "tree_version" and route.filter_ids == ("v3",)
    else:
        assert route.filter_field == "leaf_ancestors"
        assert set(route.filter_ids) == {tree.node_ids[p] for p in parents}
    confident = TreeRouter(tree, widen_below=0.0).route(queries[0])
    assert not confident.widened and confident.filter_ids == ()


def test_widening_reaches_the_tree_version_field_for_top_level_leaves() -> None:
    rng = np.random.default_rng(3)
    docs = _unit(rng.normal(size=(40, DIMS)))
    model = build_tree(docs, version="w1", config=BuildConfig(branching=8, max_leaf_size=39))
    assert model.max_depth == 1
    route = TreeRouter(model, widen_below=1.0, fields=FieldNames(tree_version="tv")).route(docs[0])
    assert route.widened and route.filter_field == "tv" and route.filter_ids == ("w1",)


def test_router_and_assigner_satisfy_the_protocols(tree: TreeModel) -> None:
    assert isinstance(TreeRouter(tree), QueryRouter)
    assert isinstance(TreeLeafAssigner(tree), LeafAssigner)


# ---------------------------------------------------------------------------------- train


def test_training_is_deterministic(data: Data, tree: TreeModel) -> None:
    queries, pairs = data.queries, data.pairs
    a, report_a = train_tree(tree, queries, pairs[:250], config=_quick())
    b, report_b = train_tree(tree, queries, pairs[:250], config=_quick())
    assert np.array_equal(a.centroids, b.centroids)
    assert report_a.epoch_losses == report_b.epoch_losses
    assert a.version == tree.version and np.array_equal(a.parents, tree.parents)
    assert not np.array_equal(a.centroids, tree.centroids)
    reseeded = dataclasses.replace(_quick(), seed=1)
    other, _ = train_tree(tree, queries, pairs[:250], config=reseeded)
    assert not np.array_equal(other.centroids, a.centroids)


def test_leaf_recall_on_training_pairs_rises(data: Data, tree: TreeModel) -> None:
    queries, pairs = data.queries, data.pairs
    train_pairs = pairs[:250]

    def recall(model: TreeModel) -> float:
        routes = TreeRouter(model).route_many(queries, threshold=0.5, max_leaves=2)
        return leaf_recall(model, [r.leaf_ids for r in routes], train_pairs)

    trained, report = train_tree(tree, queries, train_pairs, config=_quick())
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    assert report.pairs == 250 and report.skipped == 0 and report.device == "cpu"
    before, after = recall(tree), recall(trained)
    assert after > before + 0.1, (before, after)


def test_training_skips_pairs_of_unknown_documents(data: Data, tree: TreeModel) -> None:
    queries = data.queries
    config = TrainConfig(epochs=1, progress=False)
    _, report = train_tree(tree, queries, [(0, "0"), (1, "nope")], config=config)
    assert report.pairs == 1 and report.skipped == 1
    with pytest.raises(InvalidInputError):
        train_tree(tree, queries, [(0, "nope")], config=config)


def test_self_pairs_need_document_vectors(data: Data, tree: TreeModel) -> None:
    queries, docs = data.queries, data.docs
    config = TrainConfig(epochs=1, self_weight=0.5, progress=False)
    with pytest.raises(InvalidInputError):
        train_tree(tree, queries, [(0, "0")], config=config)
    _, report = train_tree(tree, queries, [(0, "0")], doc_vectors=docs, config=config)
    assert report.self_pairs == 600


# ---------------------------------------------------------------------------------- documents


def test_assigner_gives_known_documents_their_stored_leaves(data: Data, tree: TreeModel) -> None:
    docs = data.docs
    extended, _ = add_routed_leaves(tree, docs, threshold=0.99, max_leaves=3)
    assigner = TreeLeafAssigner(extended)
    assignments = assigner.assign(docs[:50])
    for row, a in enumerate(assignments):
        assert a.leaf_ids == extended.document_leaves(str(row))
        assert a.tree_version == "v3"
        expected = sorted(
            {x for leaf in a.leaf_ids for x in extended.ancestors(extended.node_index(leaf))}
        )
        assert a.ancestors == tuple(extended.node_ids[x] for x in expected)
    # Last-bit noise does not change the key; an unseen vector is routed (1..3 leaves).
    noisy = docs[:5] * np.float32(1 + 1e-7)
    assert np.array_equal(vector_keys(noisy), vector_keys(docs[:5]))
    fresh = _unit(np.random.default_rng(99).normal(size=(20, DIMS)))
    for a in assigner.assign(fresh):
        assert 1 <= len(a.leaf_ids) <= 3 and all(x.startswith("v3:") for x in a.leaf_ids)


def test_routed_leaves_keep_the_primary_leaf_first(data: Data, tree: TreeModel) -> None:
    docs = data.docs
    extended, info = add_routed_leaves(tree, docs, threshold=0.95, max_leaves=2)
    per_doc = np.diff(extended.doc_leaf_ptr)
    assert per_doc.min() == 1 and per_doc.max() == 2 and info["added"] == int((per_doc - 1).sum())
    for row in range(tree.n_documents):
        assert extended.leaves_of_row(row)[0] == tree.leaves_of_row(row)[0]


def test_saturating_add_never_wraps() -> None:
    big = np.array([COUNT_CAP - 1, 5, COUNT_CAP], dtype=np.int64)
    out = saturating_add(big, np.array([10, 5, COUNT_CAP], dtype=np.int64))
    assert out.tolist() == [COUNT_CAP, 10, COUNT_CAP]
    assert saturating_add([200], [100], cap=255).tolist() == [255]
    with pytest.raises(InvalidInputError):
        saturating_add([-1], [1])


def test_cooccurrence_counts_past_int8_and_across_chunks() -> None:
    # 300 queries route to leaf 2 and retrieve doc 1: an int8 counter would have wrapped.
    query_leaves = [[2, 3]] * 300 + [[3]]
    retrieved = [[1, 1, 0]] * 300 + [[1]]
    co = cooccurrence_counts(query_leaves, retrieved, n_documents=2, n_nodes=4, chunk_queries=7)
    table = {
        (int(d), int(n)): int(c) for d, n, c in zip(co.doc_rows, co.leaves, co.counts, strict=True)
    }
    assert table == {(0, 2): 300, (0, 3): 300, (1, 2): 300, (1, 3): 301}
    capped = cooccurrence_counts(
        query_leaves, retrieved, n_documents=2, n_nodes=4, cap=100, chunk_queries=7
    )
    assert capped.counts.max() == 100
    with pytest.raises(InvalidInputError):
        cooccurrence_counts([[5]], [[0]], n_documents=1, n_nodes=4)


def test_cooccurrence_adds_the_most_frequent_leaves(tree: TreeModel) -> None:
    leaves = [int(n) for n in tree.leaf_nodes]
    own = int(tree.leaves_of_row(0)[0])
    others = [n for n in leaves if n != own]
    query_leaves = [[others[0]]] * 5 + [[others[1]]] * 3 + [[others[2]]] * 1 + [[own]] * 9
    retrieved = [[0]] * 18
    extended, info = add_cooccurrence_leaves(
        tree, query_leaves, retrieved, per_document=2, max_leaves=3
    )
    assert extended.leaves_of_row(0).tolist() == [own, others[0], others[1]]
    assert info["documents_touched"] == 1 and info["added"] == 2 and info["max_count"] == 9
    one, _ = add_cooccurrence_leaves(tree, query_leaves, retrieved, per_document=1)
    assert one.leaves_of_row(0).tolist() == [own, others[0]]
    capped, _ = add_cooccurrence_leaves(tree, query_leaves, retrieved, max_leaves=2)
    assert capped.leaves_of_row(0).tolist() == [own, others[0]]
    strict, _ = add_cooccurrence_leaves(tree, query_leaves, retrieved, min_count=6)
    assert strict.leaves_of_row(0).tolist() == [own]


# ---------------------------------------------------------------------------------- artifact


def test_save_load_round_trips_exactly(data: Data, tree: TreeModel, tmp_path: Path) -> None:
    queries, pairs, docs = data.queries, data.pairs, data.docs
    trained, _ = train_tree(
        tree, queries, pairs[:100], config=TrainConfig(epochs=2, progress=False)
    )
    fingerprint = ModelFingerprint(kind="dense", name="toy", revision="r1", dims=DIMS)
    model, _ = add_routed_leaves(trained.with_encoder(fingerprint), docs, threshold=0.9)
    save_tree(model, tmp_path / "tree")
    loaded = load_tree(tmp_path / "tree")
    assert loaded.version == model.version and loaded.scale == model.scale
    assert loaded.doc_ids == model.doc_ids and loaded.node_ids == model.node_ids
    for name in ("parents", "centroids", "doc_leaf_ptr", "doc_leaf_nodes", "doc_keys"):
        a, b = getattr(loaded, name), getattr(model, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert loaded.hyperparameters == model.hyperparameters
    assert loaded.encoder == fingerprint.to_meta()
    meta = json.loads((tmp_path / "tree" / "tree.json").read_text())
    assert meta["documents"]["0"] == list(model.document_leaves("0"))
    # Saving the loaded tree gives the same bytes.
    save_tree(loaded, tmp_path / "again")
    for name in ("tree.json", "arrays.npz"):
        assert (tmp_path / "tree" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_load_refuses_missing_or_tampered_trees(tree: TreeModel, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        load_tree(tmp_path / "nothing")
    save_tree(tree, tmp_path)
    arrays = tmp_path / "arrays.npz"
    raw = bytearray(arrays.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    arrays.write_bytes(bytes(raw))
    with pytest.raises(ConfigurationError, match="checksum"):
        load_tree(tmp_path)


def test_encoder_mismatch_is_refused(tree: TreeModel) -> None:
    recorded = ModelFingerprint(kind="dense", name="toy", revision="r1", dims=DIMS)
    model = tree.with_encoder(recorded)
    TreeRouter(model, encoder=recorded)
    with pytest.raises(ModelMismatchError):
        other = ModelFingerprint(kind="dense", name="other", revision="r2", dims=DIMS)
        TreeRouter(model, encoder=other)


def test_version_is_part_of_every_id_and_checked(tree: TreeModel) -> None:
    renamed = tree.with_version("v4")
    assert renamed.node_ids[1] == "v4:0" and tree.node_ids[1] == "v3:0"
    with pytest.raises(ModelMismatchError):
        renamed.node_index("v3:0")
    fingerprint = ModelFingerprint(kind="dense", name="toy", revision="r1", dims=DIMS)
    info = IndexInfo(
        name="docs",
        concrete="docs-v1",
        meta=neural_meta(dense=fingerprint, sparse=None, text_fields=["text"], tree_version="v3"),
        properties={},
    )
    verify_models(info, tree_version=TreeRouter(tree).tree_version)
    with pytest.raises(ModelMismatchError):
        verify_models(info, tree_version=TreeRouter(renamed).tree_version)


def test_leaf_recall_counts_unknown_documents_as_misses(tree: TreeModel) -> None:
    leaf = tree.document_leaves("0")
    assert leaf_recall(tree, [leaf, leaf], [(0, "0"), (1, "missing")]) == 0.5
    with pytest.raises(InvalidInputError):
        leaf_recall(tree, [], [])


def test_importing_the_package_loads_neither_torch_nor_models() -> None:
    code = (
        "import sys, es_neural.tree, es_neural.cli.tree; "
        "print(any(m == 'torch' or m.startswith('sentence_transformers') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------- CLI


def test_cli_stats_reads_a_saved_tree(tree: TreeModel, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from es_neural.cli.tree import tree_app

    save_tree(tree, tmp_path / "t")
    result = CliRunner().invoke(tree_app, ["stats", str(tmp_path / "t"), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["version"] == "v3" and stats["documents"] == 600
    missing = CliRunner().invoke(tree_app, ["stats", str(tmp_path / "nothing")])
    assert missing.exit_code == 1


@pytest.mark.models
def test_cli_build_train_assign_on_a_tiny_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole CLI path with the embedded MiniLM (a few dozen short texts)."""
    from typer.testing import CliRunner

    from es_neural.cli.tree import tree_app

    monkeypatch.setenv("ES_NEURAL_CACHE_DIR", str(tmp_path / "cache"))
    topics = ["heart disease", "gene expression", "vaccine trial", "brain imaging"]
    corpus = tmp_path / "corpus.jsonl"
    queries = tmp_path / "queries.jsonl"
    qrels = tmp_path / "qrels.tsv"
    with corpus.open("w") as c, queries.open("w") as q:
        for i in range(40):
            topic = topics[i % 4]
            c.write(json.dumps({"_id": f"d{i}", "title": topic, "text": f"study {i} of {topic}"}))
            c.write("\n")
            q.write(json.dumps({"_id": f"q{i}", "text": f"what about {topic} {i}"}) + "\n")
    qrels.write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(40))
    )
    runner = CliRunner()
    tree_dir = str(tmp_path / "tree")
    steps = [
        ["build", str(corpus), "--out", tree_dir, "--version", "c1", "--branching", "2",
         "--max-leaf-size", "8"],
        ["train", tree_dir, "--queries", str(queries), "--qrels", str(qrels), "--epochs", "3"],
        ["assign", tree_dir, "--corpus", str(corpus), "--version", "c2"],
        ["stats", tree_dir, "--json"],
    ]  # fmt: skip
    for args in steps:
        result = runner.invoke(tree_app, args)
        assert result.exit_code == 0, (args, result.output)
    model = load_tree(tmp_path / "tree")
    assert model.version == "c2" and model.n_documents == 40
    assert model.encoder is not None and model.encoder["dims"] == 384
    assert 1 <= np.diff(model.doc_leaf_ptr).max() <= 3
    assert "train" in model.hyperparameters and "routed_leaves" in model.hyperparameters
