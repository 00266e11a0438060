"""``es-neural ingest`` and ``es-neural search``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from es_neural.errors import EsNeuralError
from es_neural.ingest.pipeline import IngestInterrupted, IngestOptions, IngestReport
from es_neural.neural_index import NeuralIndex
from es_neural.search.models import SearchRequest, SearchResponse
from es_neural.settings import EngineKind, Settings, get_settings

__all__ = ["fail", "ingest", "print_response", "search", "settings_or_exit"]

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


def fail(message: str, code: int = 1) -> typer.Exit:
    _err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        raise fail(f"invalid settings: {exc}") from None


def report_table(report: IngestReport) -> Table:
    table = Table(title="ingest report", show_header=False)
    for key, value in report.rows():
        table.add_row(key, value)
    return table


def ingest(
    path: Annotated[Path, typer.Argument(help="JSONL, CSV or TSV file.", exists=True)],
    index: IndexOption,
    fields: Annotated[
        str, typer.Option("--fields", help="Comma-separated text fields to encode.")
    ] = "title,text",
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
    text_fields = tuple(f.strip() for f in fields.split(",") if f.strip())
    if not text_fields:
        raise fail("--fields needs at least one field name")
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
        raise fail(str(exc), code=130) from None
    except EsNeuralError as exc:
        raise fail(str(exc)) from None
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


def print_response(response: SearchResponse, *, explain: bool) -> None:
    for hit in response.hits:
        title = str(hit.source.get("title") or "")[:80]
        text = str(hit.source.get("text") or "").replace("\n", " ")[:160]
        _out.print(f"[bold]{hit.rank:>3}. {hit.id}[/bold]  score={hit.score:.4f}  {title}")
        if text:
            _out.print(f"     [dim]{text}[/dim]", highlight=False)
        if explain and hit.explain is not None:
            e = hit.explain
            parts = []
            for leg, info in e.legs.items():
                if info is None:
                    parts.append(f"{leg}: -")
                else:
                    parts.append(
                        f"{leg}: raw={info.score:.4f} rank={info.rank} "
                        f"norm={info.normalized:.4f} +{info.contribution:.4f}"
                    )
            _out.print("     " + " | ".join(parts), highlight=False)
            line = f"     fused({e.fusion})={e.fused_score:.4f} rank={e.fused_rank}"
            if e.rerank_score is not None:
                line += f"  rerank={e.rerank_score:.4f} rank={e.rerank_rank}"
            if e.matched_leaf:
                line += f"  leaf={e.matched_leaf}"
            _out.print(line, highlight=False)
    t = response.timings
    _out.print(
        f"[dim]{len(response.hits)} of {response.window_total} in window; "
        f"encode {t.encode_ms:.1f} ms, engine {t.engine_ms:.1f} ms (took {t.engine_took_ms:.0f}), "
        f"rerank {t.rerank_ms:.1f} ms, total {t.total_ms:.1f} ms; "
        f"rerank: {'applied' if response.rerank.applied else response.rerank.reason}[/dim]",
        highlight=False,
    )
    for warning in response.warnings:
        _err.print(f"[yellow]warning:[/yellow] {warning}")


def search(
    query: Annotated[str, typer.Argument(help="Query text.")],
    index: IndexOption,
    engine: EngineOpt = None,
    size: Annotated[int, typer.Option("--size", "-n", min=1, max=100)] = 10,
    fusion: Annotated[str, typer.Option("--fusion", help="rrf or linear")] = "rrf",
    legs: Annotated[
        str, typer.Option("--legs", help="Comma-separated legs: bm25,dense,sparse")
    ] = "bm25,dense,sparse",
    filter_json: Annotated[
        str | None, typer.Option("--filter", help="Portable filter as JSON.")
    ] = None,
    rerank: Annotated[
        bool | None, typer.Option("--rerank/--no-rerank", help="Force reranking on or off.")
    ] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show every stage's scores.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
) -> None:
    """Hybrid search: BM25 + kNN + SPLADE, fused, optionally reranked."""
    settings = settings_or_exit()
    chosen = {leg.strip() for leg in legs.split(",") if leg.strip()}
    unknown = chosen - {"bm25", "dense", "sparse"}
    if unknown:
        raise fail(f"unknown leg(s) {sorted(unknown)}; use bm25, dense, sparse")
    try:
        filter_value = json.loads(filter_json) if filter_json else None
    except json.JSONDecodeError as exc:
        raise fail(f"--filter is not JSON: {exc}") from None
    try:
        request = SearchRequest.model_validate(
            {
                "query": query,
                "size": size,
                "filter": filter_value,
                "fusion": {"method": fusion},
                "bm25": {"enabled": "bm25" in chosen},
                "dense": {"enabled": "dense" in chosen},
                "sparse": {"enabled": "sparse" in chosen},
                "rerank": {"enabled": rerank},
                "explain": explain,
            }
        )
    except ValidationError as exc:
        raise fail(f"invalid request: {exc}") from None
    idx = NeuralIndex(index, settings=settings, engine=engine, use_sparse="sparse" in chosen)
    try:
        response = idx.search(request)
    except EsNeuralError as exc:
        raise fail(str(exc)) from None
    finally:
        idx.close()
    if json_out:
        _out.print_json(response.model_dump_json())
    else:
        print_response(response, explain=explain)
