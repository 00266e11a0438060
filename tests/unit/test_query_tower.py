"""Distilled query towers on the tiny fixture: layer choice, text sources, the distillation's
loss falls, the compact form round-trips to the same vectors through torch and the query path,
and a tower is refused next to another document model. Also: a query's two legs encoded side by
side give what they give one after the other."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from es_neural.encoders.dense import SentenceTransformerDense
from es_neural.encoders.legs import encode_query_legs
from es_neural.encoders.query_tuned import QueryTunedDense
from es_neural.encoders.sparse import SpladeEncoder
from es_neural.encoders.tower import (
    TOWER_META,
    TOWER_WEIGHTS,
    compact_tower,
    is_compact_tower,
    materialize_tower,
)
from es_neural.errors import ConfigurationError, InvalidInputError
from es_neural.train.distil import (
    DistilConfig,
    DistilResult,
    distil_query_tower,
    parse_layers,
    read_texts,
    spread_layers,
    write_tower_card,
)
from tests.support.corpus import TOPICS

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")

ALL = [f"the {a} {b} of {c} data" for a in TOPICS[:14] for b in TOPICS[14:22] for c in ("x", "y")]
# Validation texts from the same distribution, held out of training.
TEXTS, VAL = [t for i, t in enumerate(ALL) if i % 5], ALL[::5]


# Layers and texts =================================================================================


def test_layer_counts_spread_over_the_teacher_first_and_last_kept() -> None:
    assert parse_layers("3") == 3 and spread_layers(3, 6) == (0, 2, 5)
    assert spread_layers(parse_layers("2"), 6) == (0, 5)
    assert spread_layers(parse_layers("1"), 6) == (5,)
    assert spread_layers(parse_layers("0,2,5"), 6) == (0, 2, 5)
    assert parse_layers(" 1,3 ") == (1, 3)


@pytest.mark.parametrize("spec", ["x", "5,2", "1,1", "-1,2", "0,6", "6", "0", "", "0,1,2,3,4,5"])
def test_bad_layer_choices_are_refused(spec: str) -> None:
    with pytest.raises(InvalidInputError, match="layers"):
        spread_layers(parse_layers(spec), 6)


def test_texts_from_a_beir_folder_are_queries_then_openings(tmp_path: Path) -> None:
    (tmp_path / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": str(i), "text": f"question {i}"}) + "\n" for i in range(40))
    )
    (tmp_path / "corpus.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "_id": f"d{i}",
                    "title": f"Title {i}",
                    "text": f"An opening sentence number {i} that is long enough. More text.",
                }
            )
            + "\n"
            for i in range(30)
        )
    )
    texts = read_texts(tmp_path, seed=1)
    assert len(texts) == 40 + 30 + 30
    assert "question 7" in texts and "Title 3" in texts
    assert "An opening sentence number 4 that is long enough." in texts
    assert read_texts(tmp_path, seed=1) == texts  # seeded order
    assert len(read_texts(tmp_path, limit=60)) == 60


def test_texts_from_a_file_and_the_refusals(tmp_path: Path) -> None:
    lines = tmp_path / "log.txt"
    lines.write_text("\n".join([f"query {i}" for i in range(80)] + ["query 1", ""]))
    assert sorted(read_texts(lines)) == sorted(f"query {i}" for i in range(80))
    few = tmp_path / "few.txt"
    few.write_text("one\ntwo\n")
    with pytest.raises(InvalidInputError, match="at least 50"):
        read_texts(few)
    with pytest.raises(InvalidInputError, match="no such file"):
        read_texts(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="neither"):
        read_texts(empty)


# Distillation =====================================================================================


@pytest.fixture(scope="module")
def distilled(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DistilResult:
    base = SentenceTransformerDense(tiny_model_dir)
    out = tmp_path_factory.mktemp("tower") / "full"
    result = distil_query_tower(
        tiny_model_dir,
        TEXTS,
        VAL,
        out,
        document_model=base.fingerprint.to_meta(),
        config=DistilConfig(
            layers=(1,), epochs=3, learning_rate=3e-3, batch_size=16, max_length=16, seed=5
        ),
        progress=False,
    )
    write_tower_card(result, base="tiny-bert", data={"dataset": "tiny fixture"})
    return result


def test_distillation_moves_the_tower_towards_the_teacher(distilled: DistilResult) -> None:
    untrained, best = distilled.epochs[0], distilled.best
    assert distilled.teacher_layers == 2 and distilled.layers == (1,)
    assert len(distilled.epochs) == 4 and distilled.best_epoch >= 1
    assert best.val_cosine_mean > untrained.val_cosine_mean + 0.01
    assert distilled.epochs[-1].mean_loss < distilled.epochs[1].mean_loss
    meta = json.loads((distilled.output / TOWER_META).read_text())
    assert meta["role"] == "query_encoder" and meta["tower"]["layers"] == [1]
    config = json.loads((distilled.output / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    card = (distilled.output / "README.md").read_text()
    assert "1 of 2 layers" in card and "No relevance judgments" in card
    assert json.loads((distilled.output / "training.json").read_text())["best_epoch"] == (
        distilled.best_epoch
    )


def _tuned(base_dir: Path, tower: Path, runtime: str = "auto") -> QueryTunedDense:
    return QueryTunedDense(SentenceTransformerDense(base_dir, query_runtime=runtime), tower)


def test_the_compact_tower_gives_the_full_towers_vectors(
    distilled: DistilResult,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ES_NEURAL_HOME", str(tmp_path / "home"))
    compact = compact_tower(distilled.output, tmp_path / "compact")
    assert is_compact_tower(compact) and not is_compact_tower(distilled.output)
    assert sorted(p.name for p in compact.iterdir()) == sorted(
        ["README.md", TOWER_META, "training.json", TOWER_WEIGHTS]
    )
    full = _tuned(tiny_model_dir, distilled.output).encode_queries(VAL[:8])
    for runtime in ("torch", "onnx"):
        got = _tuned(tiny_model_dir, compact, runtime).encode_queries(VAL[:8])
        cos = (got * full).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(full, axis=1))
        assert cos.min() > 0.999, runtime  # float16 storage of the kept layers
    # Built once under ES_NEURAL_HOME, then reused.
    built = list((tmp_path / "home" / "query-towers").iterdir())
    assert len(built) == 1
    stamp = (built[0] / "model.safetensors").stat().st_mtime_ns
    assert materialize_tower(compact, tiny_model_dir, tmp_path / "home") == built[0]
    assert (built[0] / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_tower_is_refused_next_to_another_document_model(
    distilled: DistilResult,
    tiny_model_dir_seed1: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ES_NEURAL_HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigurationError, match="tuned for the document model"):
        _tuned(tiny_model_dir_seed1, distilled.output).load()
    compact = compact_tower(distilled.output, tmp_path / "compact")
    with pytest.raises(ConfigurationError, match="borrows the embeddings"):
        _tuned(tiny_model_dir_seed1, compact)


def test_compacting_needs_a_tower(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / TOWER_META).write_text(json.dumps({"role": "query_encoder"}))
    with pytest.raises(InvalidInputError, match="not a distilled query tower"):
        compact_tower(folder, tmp_path / "out")


# Both legs at once ================================================================================


def test_legs_side_by_side_equal_legs_one_after_the_other(tiny_model_dir: Path) -> None:
    dense = SentenceTransformerDense(tiny_model_dir)
    sparse = SpladeEncoder(tiny_model_dir)
    for text in VAL[:5]:
        v1, w1 = encode_query_legs(text, dense, sparse, concurrent=False)
        v2, w2 = encode_query_legs(text, dense, sparse, concurrent=True)
        assert v1 is not None and v2 is not None
        np.testing.assert_allclose(v1, v2, rtol=1e-6, atol=1e-7)
        assert w1 == pytest.approx(w2)
    vector, weights = encode_query_legs("the data", None, sparse)
    assert vector is None and weights
    vector, weights = encode_query_legs("the data", dense, None)
    assert weights is None and vector is not None and vector.shape == (dense.dims,)


class _Slow:
    """A sparse encoder that records the thread it ran on."""

    def __init__(self) -> None:
        self.thread: str | None = None

    def encode_queries(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.thread = threading.current_thread().name
        return [{"x": 1.0} for _ in texts]


class _Broken:
    def encode_queries(self, texts: Sequence[str]) -> list[list[float]]:
        raise RuntimeError("dense failed")


def test_the_sparse_leg_runs_on_a_worker_and_errors_reach_the_caller() -> None:
    class _Dense:
        def encode_queries(self, texts: Sequence[str]) -> list[list[float]]:
            return [[1.0, 0.0] for _ in texts]

    slow = _Slow()
    vector, weights = encode_query_legs("q", _Dense(), slow, concurrent=True)  # type: ignore[arg-type]
    assert weights == {"x": 1.0} and vector is not None and list(vector) == [1.0, 0.0]
    assert slow.thread is not None and slow.thread.startswith("es-neural-legs")
    with pytest.raises(RuntimeError, match="dense failed"):
        encode_query_legs("q", _Broken(), _Slow(), concurrent=True)  # type: ignore[arg-type]


# The command ======================================================================================


def _cli(args: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from es_neural.cli import app
    from es_neural.encoders.registry import clear_encoders

    clear_encoders()
    try:
        return CliRunner().invoke(app, args, env=env)
    finally:
        clear_encoders()


def test_train_query_tower_end_to_end_and_its_refusals(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ES_NEURAL_HOME", str(tmp_path / "h"))
    source = tmp_path / "queries.txt"
    source.write_text("\n".join(ALL) + "\n")
    env = {"ES_NEURAL_DENSE__MODEL": str(tiny_model_dir), "ES_NEURAL_HOME": str(tmp_path / "h")}
    out = tmp_path / "tower"
    args = ["train", "query-tower", str(source), "-o", str(out), "--layers", "1", "--epochs", "2"]
    args += ["--lr", "3e-3", "--batch-size", "16", "--max-length", "16", "--threads", "1"]
    result = _cli([*args, "--val-fraction", "0.2", "--no-progress"], env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["layers"] == [1] and summary["use_with"].endswith(str(out))
    assert summary["val_cosine_best"] > summary["val_cosine_untrained"]
    assert is_compact_tower(out)
    assert json.loads((out / "training.json").read_text())["data"]["validation"] == 50
    # The written tower encodes queries next to its document model.
    tuned = _tuned(tiny_model_dir, out)
    assert tuned.encode_queries(["the data"]).shape == (1, tuned.dims)
    # Refusals: one line each, no traceback.
    again = _cli([*args, "--no-progress"], env)
    assert again.exit_code == 1 and "not empty" in again.output
    bad = _cli([*args[:4], str(tmp_path / "bad"), "--layers", "2,1"], env)
    assert bad.exit_code == 1 and "increasing" in bad.output
    deep = _cli([*args[:4], str(tmp_path / "deep"), "--layers", "0,1,2", "--no-progress"], env)
    assert deep.exit_code == 1 and "layers 0..1 only" in deep.output
    for failed in (again, bad, deep):
        assert "Traceback" not in failed.output
