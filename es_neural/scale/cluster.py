"""Connecting to Ray: the only module that calls ``ray.init``.

Ray is an optional extra (``pip install 'es-neural[ray]'``); it is imported here, when a run
asks for it, and nowhere at import time.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from es_neural.errors import ConfigurationError, EsNeuralError
from es_neural.scale.options import LOCAL, ScaleOptions

__all__ = ["RayRunError", "connected", "require_ray", "unwrap_ray_error"]


class RayRunError(EsNeuralError):
    """A scale-out run failed in Ray (a worker could not start, a task kept failing)."""


def require_ray() -> Any:
    """The ``ray`` module; :class:`ConfigurationError` saying how to install it when missing."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigurationError(
            f"scale-out needs Ray Data ({exc}): pip install 'es-neural[ray]' "
            "(on the driver and on every Ray worker)"
        ) from None
    return ray


@contextlib.contextmanager
def connected(options: ScaleOptions) -> Iterator[Any]:
    """Ray, initialised for the run (and shut down after it when this call started it).

    A Ray already initialised in this process is used as it is. ``options.address`` local (or
    unset) starts Ray here with enough logical CPUs for the workers; any other address joins
    that cluster. Either way the cluster must have the CPUs and GPUs the workers reserve, else
    the run would wait forever: that is refused up front.
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        try:
            if options.local:
                wanted = options.workers * options.cpus_per_worker
                cpus = options.local_cpus or max(os.cpu_count() or 1, int(wanted + 0.999))
                ray.init(address=LOCAL, num_cpus=cpus, **kwargs)
            else:
                ray.init(address=options.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayRunError(f"cannot start or join Ray at {options.address!r}: {exc}") from None
        started = True
    try:
        _quiet(ray)
        _check_resources(ray, options)
        yield ray
    finally:
        if started:
            ray.shutdown()


def _quiet(ray: Any) -> None:
    """es-neural draws its own progress bar and report; Ray Data's are turned off."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _check_resources(ray: Any, options: ScaleOptions) -> None:
    have = ray.cluster_resources()
    cpus = options.workers * options.cpus_per_worker
    gpus = options.workers * options.gpus_per_worker
    if cpus > float(have.get("CPU", 0)) + 1e-9:
        raise ConfigurationError(
            f"{options.workers} worker(s) x {options.cpus_per_worker} CPU need {cpus:g} CPUs; "
            f"the Ray cluster has {have.get('CPU', 0):g}"
        )
    if gpus > float(have.get("GPU", 0)) + 1e-9:
        raise ConfigurationError(
            f"{options.workers} worker(s) x {options.gpus_per_worker} GPU need {gpus:g} GPUs; "
            f"the Ray cluster has {have.get('GPU', 0):g}"
        )


def unwrap_ray_error(exc: BaseException) -> EsNeuralError:
    """The es-neural error behind what Ray raised (a worker's own error travels wrapped in
    Ray's task, actor and user-code errors), else a :class:`RayRunError` with Ray's message."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # Ray may hand back a class mixing its task error into ours: only our own classes count.
        if isinstance(current, EsNeuralError) and type(current).__module__.startswith("es_neural"):
            return current
        for name in ("cause", "creation_task_error", "__cause__", "__context__"):
            inner = getattr(current, name, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
    first = str(exc).strip().splitlines()
    return RayRunError(f"the Ray run failed: {first[0] if first else type(exc).__name__}")
