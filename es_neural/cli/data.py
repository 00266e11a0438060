"""``es-neural ingest`` and ``es-neural search``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from es_neural.errors import EsNeuralError
from es_neural.ingest.pipeline import IngestInterrupted, IngestOptions, IngestReport
from es_neural.neural_index import NeuralIndex
from es_neural.settings import EngineKind, Settings, get_settings

__all__ = ["EngineOpt", "IndexOption", "fail", "ingest", "report_table", "settings_or_exit"]

_out = Console()
_err = Console(stderr=True)

IndexOption = Annotated[str, typer.Option("--index", "-i", help="Index (alias) name.")]
EngineOpt = Annotated[
    EngineKind | None,
    typer.Option("--engine", "-e", help="Engine (default: ES_NEURAL_ENGINE, elasticsearch)."),
]

RayOpt = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Run on Ray Data (pip install 'es-neural[ray]'): encoding in a pool of --workers "
        "actors, bulk writes in a few more.",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --ray: the Ray cluster to join ('auto', 'host:6379', 'ray://host:10001'); "
        "default: start Ray on this machine.",
    ),
]
GpusPerWorkerOpt = Annotated[
    float,
    typer.Option(
        "--gpus-per-worker", min=0, help="With --ray: GPUs each worker reserves (0.5 shares one)."
    ),
]


#: ``--fields``, the old spelling of ``--text-fields`` (hidden; scripts keep working).
TextFieldsAlias = Annotated[str | None, typer.Option("--fields", hidden=True)]


def fail(message: str, code: int = 1) -> typer.Exit:
    _err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        raise fail(escape(f"invalid settings: {exc}")) from None


def report_table(report: IngestReport) -> Table:
    table = Table(title="ingest report", show_header=False)
    for key, value in report.rows():
        table.add_row(key, value)
    for key, extra in report.extra.items():  # a Ray run's workers, blocks, startup
        shown = f"{extra:.1f}" if isinstance(extra, float) else str(extra)
        table.add_row(key.replace("_", " "), shown)
    return table


def ingest(
    path: Annotated[Path, typer.Argument(help="JSONL, CSV or TSV file.", exists=True)],
    index: IndexOption,
    fields: Annotated[
        str, typer.Option("--text-fields", help="Comma-separated text fields to encode.")
    ] = "title,text",
    fields_alias: TextFieldsAlias = None,
    id_field: Annotated[
        str | None, typer.Option("--id-field", help="Field holding the document id.")
    ] = None,
    engine: EngineOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000)] = 64,
    no_sparse: Annotated[bool, typer.Option("--no-sparse", help="Skip SPLADE.")] = False,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="Ignore an existing checkpoint.")
    ] = False,
    dead_letters: Annotated[
        Path | None, typer.Option("--dead-letters", help="Dead-letter JSONL path.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="With --ray: encoder workers.")
    ] = 1,
    gpus_per_worker: GpusPerWorkerOpt = 0.0,
    block_size: Annotated[
        int, typer.Option("--block-size", min=1, help="With --ray: records per checkpointed block.")
    ] = 10_000,
) -> None:
    """Encode documents (dense + SPLADE) and write them into an es-neural index."""
    settings = settings_or_exit()
    text_fields = tuple(f.strip() for f in (fields_alias or fields).split(",") if f.strip())
    if not text_fields:
        raise fail("--text-fields needs at least one field name")
    options = IngestOptions(
        text_fields=text_fields,
        id_field=id_field,
        batch_size=batch_size,
        resume=not no_resume,
        dead_letter_path=dead_letters,
        progress=sys.stderr.isatty() or not json_out,
    )
    if not ray and (ray_address or workers != 1 or gpus_per_worker or block_size != 10_000):
        raise fail("--ray-address, --workers, --gpus-per-worker and --block-size need --ray")
    use_sparse = not no_sparse
    idx: NeuralIndex | None = None
    if not ray:
        idx = NeuralIndex(index, settings=settings, engine=engine, use_sparse=use_sparse)
    try:
        if idx is None:
            from es_neural.scale import ScaleOptions, ingest_ray

            scale = ScaleOptions(
                address=ray_address,
                workers=workers,
                gpus_per_worker=gpus_per_worker,
                block_size=block_size,
            )
            report = ingest_ray(
                path,
                index,
                settings=settings,
                engine=engine,
                options=options,
                scale=scale,
                use_sparse=use_sparse,
            )
        else:
            report = idx.ingest(path, options=options)
    except IngestInterrupted as exc:
        _err.print(report_table(exc.report))
        raise fail(escape(str(exc)), code=130) from None
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    finally:
        if idx is not None:
            idx.close()
    if json_out:
        _out.print_json(json.dumps({k: v for k, v in report.rows()}))
    else:
        _out.print(report_table(report))
    if report.dead_lettered:
        _err.print(
            f"[yellow]{report.dead_lettered} document(s) dead-lettered:[/yellow] "
            f"{report.dead_letter_path}"
        )
