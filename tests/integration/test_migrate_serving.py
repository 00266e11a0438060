"""A migration that already serves the alias is recognised (``es-neural migrate run`` then does
nothing unless ``--force``), and "the same cluster" does not depend on how its URLs are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from es_neural.dialects import BaseDialect, BulkAction
from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.migrate import MigrationOptions, Migrator, SwitchMode
from es_neural.settings import EngineSettings

pytestmark = pytest.mark.engine

MAPPING = {"properties": {"title": {"type": "text"}, "text": {"type": "text"}}}


def _source(dialect: BaseDialect, index_name: str) -> str:
    old = f"{index_name}-v1"
    dialect.create_index(old, {"mappings": MAPPING})
    dialect.update_aliases([{"add": {"index": old, "alias": index_name}}])
    docs = [BulkAction(old, f"d{i}", {"title": f"t{i}", "text": f"text {i}"}) for i in range(30)]
    assert not dialect.bulk(docs, refresh=True).failed
    return old


def test_a_finished_migration_is_recognised(
    dialect: BaseDialect,
    index_name: str,
    tiny_dense: DenseEncoder,
    tiny_sparse: SparseEncoder,
    tmp_path: Path,
) -> None:
    _source(dialect, index_name)
    options = MigrationOptions(progress=False)
    migrator = Migrator(dialect, dense=tiny_dense, options=options, state_dir=tmp_path)
    assert migrator.serving(index_name) is None  # the alias serves the plain source
    report = migrator.run(index_name)
    assert report.switched
    new = report.plan.target_index
    assert migrator.serving(index_name) == new
    # other models (here: with SPLADE) would make another copy
    other = Migrator(dialect, dense=tiny_dense, sparse=tiny_sparse, options=options,
                     state_dir=tmp_path)  # fmt: skip
    assert other.serving(index_name) is None
    assert migrator.serving(f"{index_name}-missing") is None


def test_the_same_cluster_written_another_way_is_the_same_cluster(
    dialect: BaseDialect, index_name: str, tiny_dense: DenseEncoder, tmp_path: Path
) -> None:
    old = _source(dialect, index_name)
    respelled = EngineSettings(urls=tuple(f"{url}/" for url in dialect.settings.urls))
    assert respelled.urls != dialect.settings.urls
    target = type(dialect)(respelled)
    try:
        options = MigrationOptions(progress=False)
        migrator = Migrator(dialect, target, dense=tiny_dense, options=options, state_dir=tmp_path)
        assert migrator.same_cluster
        plan = migrator.plan(index_name)
        assert plan.ok and plan.same_cluster and not plan.cross_engine
        assert (plan.mode, plan.replaced) == (SwitchMode.SWAP, (old,))
        assert not any(note.startswith("cross-cluster") for note in plan.notes)
    finally:
        target.close()
