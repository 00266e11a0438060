"""``es-neural demo``: engines up, the bundled stdlib-docstring corpus ingested, hybrid queries
with explain, on the embedded offline models.

Every phase says what it does while it runs (model loading with its time, engine downloads and
start-up, an ingest bar that moves every few documents), and the demo ends with how to stop the
engines it leaves running and how much memory they hold.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from es_neural.cli.data import fail, report_table, settings_or_exit
from es_neural.cli.engines import EngineChoice, format_bytes, node_memory
from es_neural.cli.search import print_response, quiet_model_loaders
from es_neural.demo import DEMO_QUERIES, write_corpus
from es_neural.engines import LocalEngines
from es_neural.errors import EsNeuralError
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex

__all__ = ["demo"]

_out = Console()
#: Documents per ingest batch: small, so that the bar moves every few seconds on a CPU.
_BATCH = 16


def demo(
    engine: Annotated[
        EngineChoice, typer.Option("--engine", "-e", help="Which engine(s).")
    ] = EngineChoice.BOTH,
    queries: Annotated[int, typer.Option("--queries", min=1, max=len(DEMO_QUERIES))] = 3,
    size: Annotated[int, typer.Option("--size", "-n", min=1, max=20)] = 3,
    rerank: Annotated[
        bool,
        typer.Option(
            "--rerank/--no-rerank",
            help="Rerank the fused top ES_NEURAL_RERANK__TOP_N (default 50) with the embedded "
            "cross-encoder (unless ES_NEURAL_RERANK__MODEL names another one).",
        ),
    ] = True,
) -> None:
    """Run the whole path on the embedded defaults (no internet, no Docker)."""
    settings = settings_or_exit()
    if not rerank:
        settings = settings.with_(rerank={**settings.rerank.model_dump(), "model": "off"})
    elif settings.rerank.model == "off":
        # The library's default is off (the embedded reranker is trained on one domain); the
        # demo shows every stage, the rerank included.
        settings = settings.with_(rerank={**settings.rerank.model_dump(), "model": "embedded"})
    manager = LocalEngines(settings, progress=lambda m: _out.print(f"[dim]{m}[/dim]"))
    corpus = settings.home / "demo" / "stdlib-docstrings.jsonl"
    n = write_corpus(corpus)
    _out.print(f"demo corpus: {n} docstrings of the Python standard library -> {corpus}")
    # The corpus is fixed: its encodings are cached (by model fingerprint + text hash), so the
    # second engine and later runs do not encode it again.
    from es_neural.encoders.registry import Encoders

    reranker = "" if settings.rerank.model == "off" else f", reranker {settings.rerank.model}"
    started = time.monotonic()
    _out.print(f"loading the embedded models (dense MiniLM-L6, SPLADE-tiny{reranker})...")
    with _out.status("loading the models (a minute or so on a small CPU)..."):
        quiet_model_loaders()
        encoders = Encoders.from_settings(settings, cached=True)
        dense, sparse = encoders.dense, encoders.required_sparse
    _out.print(f"models loaded in {time.monotonic() - started:.0f} s")
    rankings: dict[str, list[list[str]]] = {}
    for kind in engine.kinds():
        _out.print(Rule(f"{kind.value}"))
        try:
            for status in manager.up(kind):
                _out.print(f"{kind.value} {status.version} healthy at {status.url}")
            idx = NeuralIndex(
                "es-neural-demo", settings=settings, engine=kind, dense=dense, sparse=sparse
            )
            report = idx.ingest(corpus, options=IngestOptions(batch_size=_BATCH))  # title, text
            _out.print(report_table(report))
            rankings[kind.value] = []
            for query in DEMO_QUERIES[:queries]:
                _out.print(Rule(f"[bold]{query}[/bold]", style="dim"))
                response = idx.search(query, size=size, explain=True)
                print_response(response, explain=True)
                rankings[kind.value].append([h.id for h in response.hits])
            idx.close()
        except EsNeuralError as exc:
            raise fail(escape(f"{kind.value}: {exc}")) from None
    if len(rankings) == 2:
        a, b = rankings.values()
        same = sum(x == y for x, y in zip(a, b, strict=True))
        _out.print(Rule())
        _out.print(f"same top-{size} on both engines for {same} of {len(a)} queries")
    _say_how_to_stop(manager, engine)


def _say_how_to_stop(manager: LocalEngines, engine: EngineChoice) -> None:
    """The engines stay up (the next run reuses them): what they hold and how to stop them."""
    statuses = [s for kind in engine.kinds() for s in manager.status(kind)]
    memory = node_memory(statuses)
    held = f" hold {format_bytes(memory)} of memory" if memory is not None else " keep running"
    _out.print(Rule())
    _out.print(
        f"The engines{held} and stay up for the next run. Stop them with:\n"
        f"  es-neural engines down --engine {engine.value}",
        highlight=False,
    )
