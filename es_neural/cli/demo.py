"""``es-neural demo``: engines up, the bundled stdlib-docstring corpus ingested, hybrid queries
with explain, on the embedded offline models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.rule import Rule

from es_neural.cli.data import fail, print_response, report_table, settings_or_exit
from es_neural.cli.engines import EngineChoice
from es_neural.demo import DEMO_QUERIES, write_corpus
from es_neural.engines import LocalEngines
from es_neural.errors import EsNeuralError
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex

__all__ = ["demo"]

_out = Console()


def demo(
    engine: Annotated[
        EngineChoice, typer.Option("--engine", "-e", help="Which engine(s).")
    ] = EngineChoice.BOTH,
    queries: Annotated[int, typer.Option("--queries", min=1, max=len(DEMO_QUERIES))] = 3,
    size: Annotated[int, typer.Option("--size", "-n", min=1, max=20)] = 3,
) -> None:
    """Run the whole path on the embedded defaults (no internet, no Docker)."""
    settings = settings_or_exit()
    manager = LocalEngines(settings, progress=lambda m: _out.print(f"[dim]{m}[/dim]"))
    corpus = settings.home / "demo" / "stdlib-docstrings.jsonl"
    n = write_corpus(corpus)
    _out.print(f"demo corpus: {n} docstrings of the Python standard library -> {corpus}")
    # The corpus is fixed: its encodings are cached (by model fingerprint + text hash), so the
    # second engine and later runs do not encode it again.
    from es_neural.encoders.cache import CachedDenseEncoder, CachedSparseEncoder
    from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder

    _out.print("loading the embedded models (dense MiniLM-L6, SPLADE-tiny)...")
    dense = CachedDenseEncoder(get_dense_encoder(settings.dense), settings.embedding_cache_dir)
    sparse = CachedSparseEncoder(get_sparse_encoder(settings.sparse), settings.embedding_cache_dir)
    rankings: dict[str, list[list[str]]] = {}
    for kind in engine.kinds():
        _out.print(Rule(f"{kind.value}"))
        try:
            for status in manager.up(kind):
                _out.print(f"{kind.value} {status.version} healthy at {status.url}")
            idx = NeuralIndex(
                "es-neural-demo", settings=settings, engine=kind, dense=dense, sparse=sparse
            )
            report = idx.ingest(corpus, options=IngestOptions(text_fields=("title", "text")))
            _out.print(report_table(report))
            rankings[kind.value] = []
            for query in DEMO_QUERIES[:queries]:
                _out.print(Rule(f"[bold]{query}[/bold]", style="dim"))
                response = idx.search(query, size=size, explain=True)
                print_response(response, explain=True)
                rankings[kind.value].append([h.id for h in response.hits])
            idx.close()
        except EsNeuralError as exc:
            raise fail(f"{kind.value}: {exc}") from None
    if len(rankings) == 2:
        a, b = rankings.values()
        same = sum(x == y for x, y in zip(a, b, strict=True))
        _out.print(Rule())
        _out.print(f"same fused top-{size} on both engines for {same} of {len(a)} queries")
