"""Asking a port what answers there, with ``urllib`` (engine clients live in the dialects).

The Elasticsearch integ-test distribution has no ``GET /``, so health comes from
``GET /_cluster/health`` and the version from ``GET /_nodes/_local``; both engines serve those.
Elasticsearch marks every response with ``X-Elastic-Product: Elasticsearch``; OpenSearch does not.
A secured node is probed over https with the CA and credentials of its :class:`EngineSettings`
(:func:`access_for`); nothing here logs or repeats the credentials.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from es_neural.settings import EngineKind, EngineSettings

__all__ = [
    "Probe",
    "ProbeAccess",
    "access_for",
    "identify_engine",
    "parse_nodes_version",
    "port_open",
    "probe",
]

_NO_PROXY = urllib.request.ProxyHandler({})  # loopback: no proxies
_OPENER = urllib.request.build_opener(_NO_PROXY)


@dataclass(frozen=True, slots=True)
class ProbeAccess:
    """How to reach a secured node: TLS (CA file, verification) and the ``Authorization`` value.

    The CA file is read when a request is made, so a probe before the CA exists reports the
    missing file as its error instead of raising."""

    tls: bool = False
    ca_file: Path | None = None
    verify: bool = True
    authorization: SecretStr | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def opener(self) -> urllib.request.OpenerDirector:
        if not self.tls:
            return _OPENER
        return urllib.request.build_opener(
            _NO_PROXY, urllib.request.HTTPSHandler(context=self.ssl_context())
        )

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization.get_secret_value()
        return headers


def access_for(settings: EngineSettings) -> ProbeAccess:
    """The :class:`ProbeAccess` matching the client settings (``ca_certs``, ``verify_certs``,
    ``api_key`` or ``username``/``password``)."""
    authorization: SecretStr | None = None
    if settings.api_key is not None:
        authorization = SecretStr(f"ApiKey {settings.api_key.get_secret_value()}")
    elif settings.username is not None:
        password = settings.password.get_secret_value() if settings.password is not None else ""
        token = base64.b64encode(f"{settings.username}:{password}".encode()).decode("ascii")
        authorization = SecretStr(f"Basic {token}")
    return ProbeAccess(
        tls=any(url.startswith("https://") for url in settings.urls),
        ca_file=settings.ca_certs,
        verify=settings.verify_certs,
        authorization=authorization,
    )


@dataclass(frozen=True, slots=True)
class Probe:
    """What answered at a URL. ``answering`` is False when nothing listens there."""

    answering: bool
    engine: EngineKind | None = None
    version: str | None = None
    cluster_name: str | None = None
    cluster_status: str | None = None
    number_of_nodes: int | None = None
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.cluster_status in ("green", "yellow")

    def describe(self) -> str:
        if not self.answering:
            return "nothing answers"
        if self.engine is None:
            return f"a non-engine server ({self.error or 'unrecognised reply'})"
        version = f" {self.version}" if self.version else ""
        return f"{self.engine.value}{version} (cluster {self.cluster_name!r})"


def identify_engine(headers: Mapping[str, str], health: Mapping[str, Any]) -> EngineKind | None:
    """Which engine sent a ``_cluster/health`` reply: by header, else by the reply's shape."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if lowered.get("x-elastic-product", "").lower() == "elasticsearch":
        return EngineKind.ELASTICSEARCH
    if "cluster_name" in health and "status" in health:
        return EngineKind.OPENSEARCH
    return None


def parse_nodes_version(body: Mapping[str, Any]) -> str | None:
    """The version of the (first) node in a ``GET /_nodes/_local`` reply."""
    nodes = body.get("nodes")
    if not isinstance(nodes, Mapping):
        return None
    for info in nodes.values():
        if isinstance(info, Mapping) and isinstance(info.get("version"), str):
            return str(info["version"])
    return None


def _get(url: str, timeout: float, access: ProbeAccess) -> tuple[dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(url, headers=access.headers())
    with access.opener().open(request, timeout=timeout) as response:
        headers = dict(response.headers.items())
        body = json.loads(response.read().decode("utf-8") or "{}")
    return headers, body if isinstance(body, dict) else {}


def probe(url: str, *, timeout: float = 3.0, access: ProbeAccess | None = None) -> Probe:
    """Ask ``url`` for its cluster health and node version; never raises. ``access`` carries
    the CA and credentials of a secured node."""
    base = url.rstrip("/")
    access = access if access is not None else ProbeAccess()
    try:
        headers, health = _get(f"{base}/_cluster/health", timeout, access)
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read().decode("utf-8") or "{}")
        except (ValueError, OSError):
            body = {}
        engine = identify_engine(dict(exc.headers.items()), {})
        status = body.get("status") if isinstance(body, dict) else None
        return Probe(
            answering=True,
            engine=engine,
            cluster_status=status if isinstance(status, str) else None,
            error=f"HTTP {exc.code} on _cluster/health",
        )
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return Probe(answering=port_open(url), error=str(reason) or type(exc).__name__)
    except ValueError as exc:
        return Probe(answering=True, error=f"not JSON: {exc}")
    engine = identify_engine(headers, health)
    version: str | None = None
    try:
        _, nodes = _get(f"{base}/_nodes/_local?filter_path=nodes.*.version", timeout, access)
        version = parse_nodes_version(nodes)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        pass
    number = health.get("number_of_nodes")
    return Probe(
        answering=True,
        engine=engine,
        version=version,
        cluster_name=str(health.get("cluster_name")) if "cluster_name" in health else None,
        cluster_status=str(health.get("status")) if "status" in health else None,
        number_of_nodes=number if isinstance(number, int) else None,
    )


def port_open(url_or_host: str, port: int | None = None, *, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``url`` (or ``host``, ``port``)."""
    if port is None:
        parts = urlsplit(url_or_host)
        host, port = parts.hostname or "127.0.0.1", parts.port
        if port is None:
            port = 443 if parts.scheme == "https" else 80
    else:
        host = url_or_host
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
