"""The small CI version of ``bench/reranker_gpu.py`` (the job behind the shipped reranker).

``--tiny`` runs every phase on a few queries per domain of the real training mix with the real
embedded models: mining (BM25, dense, SPLADE), every fusion on test and dev, leave-one-domain-out
training of SPLADE-tiny models for two steps each, their reranking, the saved all-data model;
then a second run reads the cached legs (no encoding) and scores the saved model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from es_neural.encoders.registry import embedded_dense_path, embedded_sparse_path
from tests.conftest import shared_data

pytestmark = [pytest.mark.models, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FAMILIES = {"scifact", "msmarco", "wikiqa", "trecqa", "stackexchange"}


def _run(args: list[str], cwd: Path, script: str = "reranker_gpu.py") -> dict[str, object]:
    """Runs ``bench/<script>`` and returns its one ``RESULT`` line, parsed."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, done.stdout[-2000:]
    return json.loads(lines[0][len("RESULT ") :])  # type: ignore[no-any-return]


def test_the_cpu_plan_runs_end_to_end_and_reuses_its_mined_legs(tmp_path: Path) -> None:
    train, scifact = shared_data("train"), shared_data("scifact")
    pack, models, out = tmp_path / "pack", tmp_path / "models", tmp_path / "out"
    packed = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "pack_device_train.py"),
            *("--train-root", str(train), "--scifact", str(scifact), "--out", str(pack)),
            *("--stackexchange-limit", "400"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert packed.returncode == 0, packed.stderr[-2000:]
    models.mkdir()
    (models / "minilm").symlink_to(embedded_dense_path())
    (models / "splade-tiny").symlink_to(embedded_sparse_path())
    cache = tmp_path / "legs.json.gz"
    common = ["--data", str(pack), "--models", str(models), "--tiny", "--workers", "1"]
    first = _run(
        [*common, "--out", str(out), "--backbone", "tiny", "--legs-cache", str(cache)], tmp_path
    )
    assert first["errors"] == [], first["errors"]
    summary = first["summary"]
    assert isinstance(summary, dict)
    assert set(summary["lodo"]) == FAMILIES  # one held-out model per labelled domain
    assert "tiny-all" in summary["models"]
    for split in ("test", "dev"):
        assert summary["most_robust_fusion"][split] in {
            "rrf-10",
            "rrf-60",
            "linear-minmax",
            "linear-zscore",
            "linear-l2",
        }
    assert cache.is_file()
    full = json.loads((out / "reranker_gpu.json").read_text())
    assert set(full["retrieval"]) == FAMILIES
    for row in full["retrieval"].values():
        assert {"bm25", "dense", "sparse", "linear-minmax", "rrf-60"} <= set(row["test"])
    parts = sorted((out / "reranker").glob("tiny-all.tar.*"))
    assert parts
    with tarfile.open(parts[0]) as tar:
        # the "data" filter where this Python has it (3.11.4+; Debian's 3.11.2 does not)
        safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path / "saved", **safe)
    saved = tmp_path / "saved" / "tiny-all"
    meta = json.loads((saved / "es_neural.json").read_text())
    assert meta["validated_top_n"] == 20 and meta["max_length"] == 64

    # The cached legs: no encoding the second time, and a saved model scored on them.
    second_out = tmp_path / "out2"
    second_args = ["--out", str(second_out), "--legs-cache", str(cache), "--no-train"]
    second = _run([*common, *second_args, "--score", str(saved)], tmp_path)
    assert second["errors"] == [], second["errors"]
    again = json.loads((second_out / "reranker_gpu.json").read_text())
    assert again["legs_cache"] == str(cache) and "mining_timings_s" not in again
    assert again["retrieval"] == full["retrieval"]  # the same legs, the same figures
    scored = again["scored"][str(saved)]
    assert set(scored["test"]) == FAMILIES and scored["pairs_scored"] > 0

    # bench/fusion_adaptive.py reads the same cache: its equal-weight row is the default fusion.
    figures: dict[str, Any] = _run(
        ["--data", str(pack), "--legs-cache", str(cache)], tmp_path, "fusion_adaptive.py"
    )
    for split in ("test", "dev"):
        assert {"default (equal, min-max)", "agreement@10", "peakedness"} <= set(figures[split])
        default = figures[split]["default (equal, min-max)"]["by_domain"]
        assert set(default) == FAMILIES
        for name, value in default.items():
            assert value == full["retrieval"][name][split]["linear-minmax"], (split, name)
