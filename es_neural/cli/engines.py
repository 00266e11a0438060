"""``es-neural engines up|down|status``: local nodes without Docker."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from es_neural.engines import LocalEngines, NodeStatus
from es_neural.errors import EsNeuralError
from es_neural.settings import EngineKind, get_settings

__all__ = ["EngineChoice", "engines_app", "format_bytes", "node_memory", "process_tree_rss"]

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


def process_tree_rss(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Resident memory (bytes) of ``pid`` and every process below it; ``None`` where ``/proc``
    cannot tell (not Linux, or the process is gone). A node's JVM runs below its launcher."""
    if not (proc / str(pid)).is_dir():
        return None
    children: dict[int, list[int]] = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _rss(proc / str(current) / "status")
        todo.extend(children.get(current, ()))
    return total


def _rss(status: Path) -> int:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


def node_memory(statuses: Iterable[NodeStatus]) -> int | None:
    """Resident memory of the nodes es-neural started among ``statuses`` (``None``: none)."""
    sizes = [process_tree_rss(s.pid) for s in statuses if s.pid is not None]
    known = [size for size in sizes if size is not None]
    return sum(known) if known else None


def format_bytes(size: float) -> str:
    """``1.4 GB``, ``512.0 MB``, ``12 KB``."""
    for unit in ("B", "KB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} MB" if size < 1024 else f"{size / 1024:.1f} GB"


def _table(statuses: list[NodeStatus]) -> Table:
    table = Table(show_edge=False)
    for column in ("engine", "node", "URL", "version", "health", "pid", "memory", "note"):
        table.add_column(column, no_wrap=column != "note")  # only the note wraps
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
            _memory_cell(s),
            s.message,
        )
    return table


def _memory_cell(status: NodeStatus) -> str:
    size = process_tree_rss(status.pid) if status.pid is not None else None
    return format_bytes(size) if size is not None else "-"


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
    if instance is not None:
        # at the default URL, the instance's nodes would be the default nodes (reused)
        unset = [kind for kind in engine.kinds() if manager.url_is_default(kind)]
        if unset:
            names = ", ".join(f"ES_NEURAL_{kind.value.upper()}__URL" for kind in unset)
            _err.print(
                f"[red]error:[/red] instance {instance} needs its own ports: set {names} "
                "(e.g. http://127.0.0.1:9400)",
                highlight=False,
            )
            raise typer.Exit(1)
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
