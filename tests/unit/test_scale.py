"""Scale-out pieces that need neither Ray nor an engine: blocks of a file and their rows, the
block checkpoint, options, error unwrapping, and that Ray is imported only when used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from es_neural.errors import ConfigurationError, InvalidInputError, ModelMismatchError
from es_neural.ingest.sources import Record, jsonl_source, open_source
from es_neural.scale.blocks import (
    FileBlock,
    decode_rows,
    encode_rows,
    plan_file_blocks,
    read_file_block,
)
from es_neural.scale.cluster import RayRunError, unwrap_ray_error
from es_neural.scale.options import ScaleOptions
from es_neural.scale.state import BlockCheckpoint, BlockCheckpointStore

pytest.importorskip("pyarrow", reason="pyarrow comes with the ray extra (es-neural[ray])")

ROOT = Path(__file__).resolve().parents[2]


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_bytes("".join(lines).encode("utf-8"))
    return path


def _records(path: Path, blocks: list[FileBlock]) -> list[Record]:
    out: list[Record] = []
    for block in blocks:
        for table in read_file_block(path, block):
            records, per_unit, totals = decode_rows(table)
            out.extend(records)
            assert set(per_unit) <= {block.number}
            if totals:
                assert totals == {block.number: block.count}
    return out


def test_jsonl_blocks_read_exactly_the_file_records(tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"d{i}", "text": f"text {i}"}) + "\n" for i in range(23)]
    lines.insert(5, "\n")  # blank lines take no position
    lines.insert(9, "{not json\n")  # a read error is a record too
    lines.insert(12, "  \n")
    lines.append(json.dumps({"id": "last", "text": "no newline at the end"}))
    path = _jsonl(tmp_path / "docs.jsonl", lines)
    blocks = plan_file_blocks(path, 5)
    expected = list(jsonl_source(path).records())
    assert [b.count for b in blocks] == [5, 5, 5, 5, 5]
    assert [b.first for b in blocks] == [0, 5, 10, 15, 20]
    assert sum(b.count for b in blocks) == len(expected) == 25
    assert _records(path, blocks) == expected
    # one block alone reads only its own records (its task seeks to its bytes)
    assert _records(path, [blocks[2]]) == expected[10:15]


def test_csv_blocks_are_numbered_by_record(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    rows = ["id,text"] + [f'd{i},"line one\nline {i}"' for i in range(7)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    blocks = plan_file_blocks(path, 3)
    assert [(b.first, b.count, b.start) for b in blocks] == [(0, 3, -1), (3, 3, -1), (6, 1, -1)]
    assert _records(path, blocks) == list(open_source(path).records())


def test_unknown_format_and_bad_block_size_are_refused(tmp_path: Path) -> None:
    odd = tmp_path / "docs.xml"
    odd.write_text("<x/>", encoding="utf-8")
    with pytest.raises(InvalidInputError):
        plan_file_blocks(odd, 10)
    with pytest.raises(InvalidInputError):
        plan_file_blocks(odd, 0)


def test_rows_carry_any_record_and_a_unit_marker() -> None:
    records = [
        Record(0, {"id": "a", "text": "x\udcff lone surrogate", "n": [1, {"deep": None}]}),
        Record(1, None, "invalid JSON: Expecting value", "{oops"),
        Record(-1, {"title": "hit"}, source_id="src-7"),
    ]
    tables = list(encode_rows(4, records, chunk=2))
    assert len(tables) == 2  # two rows, then one row and the end marker
    decoded: list[Record] = []
    seen: dict[int, int] = {}
    ends: dict[int, int] = {}
    for table in tables:
        got, per_unit, totals = decode_rows(table)
        decoded.extend(got)
        for unit, n in per_unit.items():
            seen[unit] = seen.get(unit, 0) + n
        ends.update(totals)
    assert decoded == records
    assert seen == {4: 3} and ends == {4: 3}
    # an empty unit is only its marker
    (empty,) = list(encode_rows(9, []))
    assert decode_rows(empty)[1:] == ({}, {9: 0})


def test_a_dataset_of_the_callers_own_is_one_document_per_row() -> None:
    import pyarrow as pa

    table = pa.table({"id": ["a", "b"], "text": ["one", None], "year": [2001, 2002]})
    records, per_unit, totals = decode_rows(table)
    assert (per_unit, totals) == ({}, {})
    assert records == [
        Record(-1, {"id": "a", "text": "one", "year": 2001}),
        Record(-1, {"id": "b", "year": 2002}),  # nulls are left out
    ]


def test_block_checkpoint_round_trip_and_mismatch(tmp_path: Path) -> None:
    store = BlockCheckpointStore(tmp_path / "cp" / "x.blocks.json")
    assert store.load(source="s", index="i", block_size=10) is None
    cp = BlockCheckpoint("s", "i", 10, blocks=3).with_block(2, 10).with_block(0, 10)
    assert (cp.done, cp.records, cp.complete) == ((0, 2), 20, False)
    store.save(cp)
    loaded = store.load(source="s", index="i", block_size=10)
    assert loaded == cp
    assert loaded.with_block(1, 4).complete
    # another source, index or block size does not resume from it
    assert store.load(source="other", index="i", block_size=10) is None
    assert store.load(source="s", index="i", block_size=20) is None
    store.path.write_text("{truncated", encoding="utf-8")
    assert store.load(source="s", index="i", block_size=10) is None


def test_scale_options_validate_and_derive() -> None:
    options = ScaleOptions(workers=3, cpus_per_worker=2)
    assert (options.local, options.writer_count, options.threads) == (True, 2, 2)
    assert ScaleOptions(address="ray://head:10001").local is False
    assert ScaleOptions(torch_threads=1, cpus_per_worker=4).threads == 1
    for bad in ({"workers": 0}, {"gpus_per_worker": -1}, {"writers": 0}, {"block_size": 0}):
        with pytest.raises(InvalidInputError):
            ScaleOptions(**bad)  # type: ignore[arg-type]


def test_the_es_neural_error_behind_a_ray_error_is_found() -> None:
    cause = ModelMismatchError("dense model differs")

    class TaskError(RuntimeError):
        def __init__(self) -> None:
            super().__init__("task failed\ntraceback ...")
            self.cause = cause

    assert unwrap_ray_error(TaskError()) is cause
    chained = RuntimeError("outer")
    chained.__cause__ = ConfigurationError("missing model")
    assert isinstance(unwrap_ray_error(chained), ConfigurationError)
    plain = unwrap_ray_error(RuntimeError("worker died\nmore"))
    assert isinstance(plain, RayRunError) and "worker died" in str(plain)
    assert "more" not in str(plain)


def test_ray_is_not_imported_without_ray() -> None:
    code = (
        "import sys, es_neural.cli, es_neural.scale\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
        "assert 'es_neural.scale.run' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)


def test_scale_out_flags_without_ray_are_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from es_neural.cli import app

    path = _jsonl(tmp_path / "docs.jsonl", ['{"id": "a", "text": "x"}\n'])
    runner = CliRunner()
    for extra in (["--workers", "2"], ["--ray-address", "auto"], ["--gpus-per-worker", "1"]):
        result = runner.invoke(app, ["ingest", str(path), "--index", "i", *extra])
        assert result.exit_code == 1, result.output
        assert "need --ray" in result.output
    result = runner.invoke(app, ["migrate", "run", "src", "--gpus-per-worker", "1", "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "need --ray" in result.output
