"""``ShardStats``: a shard without an answer is counted alike from both engines' headers."""

from __future__ import annotations

from es_neural.search.models import ShardStats


def test_elasticsearch_counts_a_lost_shard_as_failed() -> None:
    stats = ShardStats.from_engine({"total": 3, "successful": 2, "skipped": 0, "failed": 1})
    assert stats.missing == 1


def test_opensearch_leaves_a_lost_shard_out_of_successful_only() -> None:
    # what OpenSearch 3.6 answers for an index whose shard has no active copy (red)
    stats = ShardStats.from_engine({"total": 3, "successful": 2, "skipped": 0, "failed": 0})
    assert stats.failed == 0 and stats.missing == 1


def test_complete_and_skipped_shards_are_not_missing() -> None:
    assert ShardStats.from_engine({"total": 3, "successful": 3, "failed": 0}).missing == 0
    assert ShardStats.from_engine({"total": 5, "successful": 2, "skipped": 3}).missing == 0
    assert ShardStats.from_engine(None) == ShardStats()
