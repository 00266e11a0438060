"""``es-neural engines up|down|status``: local nodes without Docker."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from es_neural.engines import LocalEngines, NodeStatus
from es_neural.errors import EsNeuralError
from es_neural.settings import EngineKind, get_settings

__all__ = ["engines_app"]

engines_app = typer.Typer(
    help=(
        "Local Elasticsearch / OpenSearch nodes without Docker: fetched once from Maven "
        "Central, run under settings.home (default ~/.cache/es-neural)."
    ),
    no_args_is_help=True,
)

_console = Console()
_err = Console(stderr=True)
_print_lock = threading.Lock()


class EngineChoice(StrEnum):
    ELASTICSEARCH = "elasticsearch"
    OPENSEARCH = "opensearch"
    BOTH = "both"

    def kinds(self) -> list[EngineKind]:
        return list(EngineKind) if self is EngineChoice.BOTH else [EngineKind(self.value)]


EngineOption = Annotated[
    EngineChoice, typer.Option("--engine", "-e", help="Which engine (default: both).")
]
InstanceOption = Annotated[
    str | None,
    typer.Option(
        "--instance",
        help=(
            "A separate set of nodes (own run folder and data, installs shared), e.g. a 3-node "
            "cluster beside the default single nodes; give it other URLs (ports)."
        ),
    ),
]


def _progress(message: str) -> None:
    with _print_lock:
        _err.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}", highlight=False, soft_wrap=True
        )


def _manager(instance: str | None = None) -> LocalEngines:
    try:
        settings = get_settings()
    except ValidationError as exc:  # the environment / .env
        _err.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(1) from None
    try:
        return LocalEngines(settings, progress=_progress, instance=instance)
    except EsNeuralError as exc:
        _err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


def _table(statuses: list[NodeStatus]) -> Table:
    table = Table(show_edge=False)
    for column in ("engine", "node", "URL", "version", "health", "pid", "note"):
        table.add_column(column)
    colours = {"green": "green", "yellow": "yellow", "red": "red"}
    for s in statuses:
        health = s.cluster_status if s.cluster_status else ("down" if not s.running else "?")
        colour = colours.get(health, "red" if not s.healthy else "white")
        table.add_row(
            s.engine.value,
            str(s.node),
            s.url,
            s.version or "-",
            f"[{colour}]{health}[/{colour}]",
            str(s.pid) if s.pid is not None else "-",
            s.message,
        )
    return table


def _run_each(
    kinds: list[EngineKind], action: Callable[[EngineKind], list[NodeStatus]]
) -> tuple[list[NodeStatus], list[str]]:
    """``action`` for every engine (in parallel); statuses in engine order, and error lines."""
    with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
        futures = {kind: pool.submit(action, kind) for kind in kinds}
    statuses: list[NodeStatus] = []
    errors: list[str] = []
    for kind, future in futures.items():
        try:
            statuses.extend(future.result())
        except (EsNeuralError, OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{kind.value}: {exc}")
    return statuses, errors


def _report_errors(errors: list[str]) -> None:
    for line in errors:
        _err.print(f"[red]error:[/red] {escape(line)}", highlight=False)


@engines_app.command()
def up(
    engine: EngineOption = EngineChoice.BOTH,
    nodes: Annotated[
        int, typer.Option(min=1, max=9, help="Nodes per engine (ports base+10*i).")
    ] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = 180.0,
    instance: InstanceOption = None,
) -> None:
    """Start (or reuse) local nodes and wait until they are healthy."""
    manager = _manager(instance)
    started = time.monotonic()
    statuses, errors = _run_each(
        engine.kinds(), lambda kind: manager.up(kind, nodes=nodes, timeout=timeout)
    )
    if statuses:
        _console.print(_table(statuses))
    if errors:
        _report_errors(errors)
        raise typer.Exit(1)
    _err.print(f"ready in {time.monotonic() - started:.0f} s")


@engines_app.command()
def down(engine: EngineOption = EngineChoice.BOTH, instance: InstanceOption = None) -> None:
    """Stop the local nodes es-neural started (their data is kept)."""
    manager = _manager(instance)
    statuses, errors = _run_each(engine.kinds(), manager.down)
    if statuses:
        _console.print(_table(statuses))
    if errors:
        _report_errors(errors)
        raise typer.Exit(1)


@engines_app.command()
def status(engine: EngineOption = EngineChoice.BOTH, instance: InstanceOption = None) -> None:
    """Show the local nodes; exits 1 when an engine asked for is not healthy."""
    manager = _manager(instance)
    statuses, errors = _run_each(engine.kinds(), manager.status)
    if statuses:
        _console.print(_table(statuses))
    if errors:
        _report_errors(errors)
    if errors or not all(s.healthy for s in statuses):
        raise typer.Exit(1)
