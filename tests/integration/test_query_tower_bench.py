"""The small CI version of ``bench/query_tower.py``: a 3-layer query tower distilled from the
embedded MiniLM on a few hundred texts of the real training mix (one epoch), stored compactly,
loaded through ``ES_NEURAL_DENSE__QUERY_MODEL``'s path, scored against the full model on a few
test queries of every domain, and timed with both legs side by side. Figures come from the full
run (README, "A distilled query tower"); this checks that every phase runs and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_data

pytestmark = [pytest.mark.models, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DOMAINS = {"scifact", "msmarco", "wikiqa", "trecqa", "stackexchange"}
SIDES = {
    "dense_full",
    "dense_tower",
    "sparse",
    "full_sequential",
    "full_concurrent",
    "tower_sequential",
    "tower_concurrent",
}


def test_the_tower_bench_distils_scores_and_times_a_tower(tmp_path: Path) -> None:
    data = shared_data("train").parent
    shared_data("scifact")
    tower = tmp_path / "tower"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ES_NEURAL_HOME": str(tmp_path / "home"),
        "ES_NEURAL_CACHE_DIR": str(tmp_path / "cache"),
    }
    args = ["--data", str(data), "--limit", "200", "--leads", "20", "--epochs", "1"]
    args += ["--max-test", "8", "--extra-docs", "20", "--queries", "6", "--rounds", "1"]
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "query_tower.py"),
            *args,
            "--save-compact",
            str(tower),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, done.stdout[-2000:]
    result = json.loads(lines[0][len("RESULT ") :])

    distil = result["distil"]
    assert distil["layers"] == [0, 2, 5] and distil["train_texts"] == 200
    assert [e["epoch"] for e in distil["epochs"]] == [0, 1]
    assert all(0.0 < e["val_cosine_mean"] <= 1.0 for e in distil["epochs"])
    # The compact form is what was measured: kept layers only, the embeddings borrowed.
    assert (tower / "tower.safetensors").is_file() and not (tower / "model.safetensors").exists()
    meta = json.loads((tower / "es_neural.json").read_text())
    assert meta["role"] == "query_encoder" and meta["tower"]["teacher_layers"] == 6
    assert "no SciFact" in (tower / "README.md").read_text()
    built = list((tmp_path / "home" / "query-towers").iterdir())
    assert (
        len(built) == 1
        and json.loads((built[0] / "config.json").read_text())["num_hidden_layers"] == 3
    )

    assert set(result["ndcg"]) == DOMAINS
    for name, row in result["ndcg"].items():
        assert row["queries"] == 8, name
        assert 0.0 <= row["full"] <= 1.0 and 0.0 <= row["tower"] <= 1.0
        assert row["delta"] == pytest.approx(row["tower"] - row["full"], abs=1e-3)
        assert -1.0 <= row["cosine_min"] <= row["cosine_mean"] <= 1.0
    assert set(result["latency_ms"]) == SIDES
    for side, q in result["latency_ms"].items():
        assert 0.0 < q["p50_ms"] <= q["p95_ms"], side
    assert result["query_encode_p50_ms"] == result["latency_ms"]["tower_concurrent"]["p50_ms"]
