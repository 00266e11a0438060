"""``es-neural serve``: the HTTP API and search page under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from es_neural.cli.data import EngineOpt, fail, settings_or_exit
from es_neural.errors import EsNeuralError

__all__ = ["json_log_config", "serve"]


def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default: settings, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", "-p", min=0, max=65535, help="Port (default: settings, 8000)."),
    ] = None,
    index: Annotated[
        list[str] | None,
        typer.Option(
            "--index",
            "-i",
            help="Serve only this index (repeatable); default: any index the engine has.",
        ),
    ] = None,
    engine: EngineOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve POST /v1/search, /healthz, /readyz, the OpenAPI docs (/docs) and a search page (/).

    Configure keys, limits and CORS with ES_NEURAL_API_KEYS='["key"]' and ES_NEURAL_API__*
    variables (for example ES_NEURAL_API__MAX_CONCURRENCY=8).
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from es_neural.api import create_app

    settings = settings_or_exit()
    api = settings.api.model_dump()
    if host is not None:
        api["host"] = host
    if port is not None:
        api["port"] = port
    if index:
        api["allowed_indexes"] = tuple(index)
    changes: dict[str, object] = {"api": api}
    if engine is not None:
        changes["engine"] = engine
    settings = settings.with_(**changes)
    try:
        app = create_app(settings)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    a = settings.api
    log_config = json_log_config(log_level) if a.log_format == "json" else None
    uvicorn.run(
        app,
        host=a.host,
        port=a.port,
        log_level=log_level,
        server_header=False,
        # Connections beyond this get 503 from uvicorn itself, before any parsing.
        limit_concurrency=max(64, 4 * (a.max_concurrency + a.max_queue)),
        timeout_keep_alive=5,
        log_config=log_config if log_config is not None else LOGGING_CONFIG,
    )


def json_log_config(level: str) -> dict[str, object]:
    """A logging configuration writing uvicorn's and es-neural's records as JSON lines."""
    formatter = {"()": "es_neural.api.observability.JsonLogFormatter"}
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = ("uvicorn", "uvicorn.error", "uvicorn.access", "es_neural")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "handlers": {"json": handler},
        "loggers": {
            name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
            for name in loggers
        },
    }
