"""Tracing hooks: one OpenTelemetry span per stage, a no-op unless the application configures
an SDK.

es-neural depends only on the OpenTelemetry *API* (the optional extra ``otel``); without it,
or without an SDK's tracer provider, :func:`span` costs a context manager and nothing else.
The application that embeds es-neural (or ``es-neural serve`` with the standard
``OTEL_*`` environment and an SDK installed) decides where spans go.

Spans are named ``es_neural.<stage>``: ``es_neural.search`` around a whole search, with
``encode``, ``route``, ``engine``, ``fusion``, ``rerank`` and ``fetch`` inside it. Attributes
carry counts and names (index, legs, candidates), never query text or document contents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from typing import Any, ParamSpec, TypeVar

from es_neural._version import __version__

__all__ = ["span", "traced"]

P = ParamSpec("P")
R = TypeVar("R")


@cache
def _tracer() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer("es_neural", __version__)


@contextmanager
def span(stage: str, **attributes: str | int | float | bool) -> Iterator[Any]:
    """A span ``es_neural.<stage>`` around the block (``None`` without OpenTelemetry)."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(f"es_neural.{stage}", attributes=attributes) as current:
        yield current


def traced(stage: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a stage function: each call runs inside :func:`span` ``stage``."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with span(stage):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
