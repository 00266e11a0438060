"""How one managed node is laid out and launched: ports, ``-E`` settings, command, environment.

Pure: these functions only compute; :mod:`es_neural.engines.local` does the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from es_neural.engines.catalog import EngineRelease
from es_neural.errors import EngineSetupError
from es_neural.settings import EngineKind

__all__ = [
    "HOST",
    "NodeSpec",
    "heap_options",
    "node_command",
    "node_env",
    "node_ports",
    "node_settings",
    "node_url",
    "rewrite_jvm_options",
    "url_port",
]

HOST = "127.0.0.1"
#: Node ``i`` listens on ``base + NODE_PORT_STEP * i`` (http) and ``base + TRANSPORT_OFFSET + ...``.
NODE_PORT_STEP = 10
TRANSPORT_OFFSET = 100


@dataclass(frozen=True, slots=True)
class _Traits:
    script: str
    java_home_env: str
    java_opts_env: str
    conf_env: str
    tmp_env: str
    initial_masters: str
    extra: tuple[tuple[str, str], ...]


_TRAITS: dict[EngineKind, _Traits] = {
    EngineKind.ELASTICSEARCH: _Traits(
        script="elasticsearch",
        java_home_env="ES_JAVA_HOME",
        java_opts_env="ES_JAVA_OPTS",
        conf_env="ES_PATH_CONF",
        tmp_env="ES_TMPDIR",
        initial_masters="cluster.initial_master_nodes",
        extra=(("xpack.security.enabled", "false"),),
    ),
    EngineKind.OPENSEARCH: _Traits(
        script="opensearch",
        java_home_env="OPENSEARCH_JAVA_HOME",
        java_opts_env="OPENSEARCH_JAVA_OPTS",
        conf_env="OPENSEARCH_PATH_CONF",
        tmp_env="OPENSEARCH_TMPDIR",
        initial_masters="cluster.initial_cluster_manager_nodes",
        extra=(),
    ),
}


def url_port(url: str) -> int:
    """The port of ``url`` (scheme default when absent)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise EngineSetupError(f"bad port in engine URL {url!r}: {exc}") from exc
    if port is not None:
        return port
    defaults = {"http": 80, "https": 443}
    if parts.scheme not in defaults:
        raise EngineSetupError(f"engine URL {url!r} has no port and no http(s) scheme")
    return defaults[parts.scheme]


def node_ports(base_http_port: int, node: int) -> tuple[int, int]:
    """``(http, transport)`` ports of node ``node`` (0-based) of a cluster based at ``base``."""
    if node < 0:
        raise ValueError(f"node index must be >= 0, got {node}")
    http = base_http_port + NODE_PORT_STEP * node
    transport = base_http_port + TRANSPORT_OFFSET + NODE_PORT_STEP * node
    if not (0 < http < 65536 and 0 < transport < 65536):
        raise EngineSetupError(f"ports {http}/{transport} of node {node} are out of range")
    return http, transport


def node_url(http_port: int, scheme: str = "http") -> str:
    return f"{scheme}://{HOST}:{http_port}"


_HEAP_RE = re.compile(r"^\d+[kKmMgG]?$")


def heap_options(heap: str) -> str:
    """``"1g"`` -> ``"-Xms1g -Xmx1g"`` (min = max, as both engines recommend)."""
    heap = heap.strip()
    if not _HEAP_RE.match(heap):
        raise EngineSetupError(f"engine_heap must look like 512m or 1g, got {heap!r}")
    return f"-Xms{heap} -Xmx{heap}"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of a managed cluster of ``nodes`` nodes on loopback."""

    release: EngineRelease
    node: int
    nodes: int
    base_http_port: int
    install_dir: Path
    node_dir: Path
    java_home: Path
    heap: str = "1g"
    #: Extra ``-E`` settings, applied last (they may override the defaults, e.g. security).
    extra: tuple[tuple[str, str], ...] = ()
    #: ``https`` when the extra settings turn TLS on for http.
    scheme: str = "http"

    @property
    def engine(self) -> EngineKind:
        return self.release.engine

    @property
    def ports(self) -> tuple[int, int]:
        return node_ports(self.base_http_port, self.node)

    @property
    def http_port(self) -> int:
        return self.ports[0]

    @property
    def transport_port(self) -> int:
        return self.ports[1]

    @property
    def url(self) -> str:
        return node_url(self.http_port, self.scheme)

    @property
    def cluster_name(self) -> str:
        return f"es-neural-{self.engine.value}"

    @property
    def node_name(self) -> str:
        return f"{self.engine.value}-node{self.node}"

    @property
    def data_dir(self) -> Path:
        return self.node_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.node_dir / "logs"

    @property
    def config_dir(self) -> Path:
        return self.node_dir / "config"

    @property
    def tmp_dir(self) -> Path:
        return self.node_dir / "tmp"

    @property
    def stdout_log(self) -> Path:
        return self.logs_dir / "stdout.log"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / f"{self.cluster_name}.log"


def node_settings(spec: NodeSpec) -> dict[str, str]:
    """The ``-E`` settings of ``spec`` (single node: ``discovery.type=single-node``)."""
    traits = _TRAITS[spec.engine]
    settings = {
        "cluster.name": spec.cluster_name,
        "node.name": spec.node_name,
        "network.host": HOST,
        "http.port": str(spec.http_port),
        "transport.port": str(spec.transport_port),
        "path.data": str(spec.data_dir),
        "path.logs": str(spec.logs_dir),
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    if spec.nodes == 1:
        settings["discovery.type"] = "single-node"
    else:
        members = [node_ports(spec.base_http_port, i) for i in range(spec.nodes)]
        settings["discovery.seed_hosts"] = ",".join(f"{HOST}:{t}" for _, t in members)
        settings[traits.initial_masters] = ",".join(
            f"{spec.engine.value}-node{i}" for i in range(spec.nodes)
        )
    settings.update(traits.extra)
    settings.update(spec.extra)
    return settings


def node_command(spec: NodeSpec) -> list[str]:
    """The command line that starts ``spec`` in the foreground."""
    script = spec.install_dir / "bin" / _TRAITS[spec.engine].script
    return [str(script), *(f"-E{key}={value}" for key, value in node_settings(spec).items())]


def node_env(spec: NodeSpec, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` (the caller's environment) plus what the launcher scripts read."""
    traits = _TRAITS[spec.engine]
    env = {k: v for k, v in base.items() if k not in {"JAVA_HOME", "JAVA_TOOL_OPTIONS"}}
    env[traits.java_home_env] = str(spec.java_home)
    env[traits.java_opts_env] = heap_options(spec.heap)
    env[traits.conf_env] = str(spec.config_dir)
    env[traits.tmp_env] = str(spec.tmp_dir)
    return env


def rewrite_jvm_options(text: str, *, logs_dir: Path, data_dir: Path) -> str:
    """Point the relative GC-log, error-file and heap-dump paths of ``jvm.options`` at the node.

    OpenSearch's launcher changes to its install folder, so ``logs/gc.log`` would be shared by
    every node of a cluster (and need a writable install).
    """
    text = re.sub(r"file=logs/gc\.log", f"file={logs_dir}/gc.log", text)
    text = re.sub(r"-XX:ErrorFile=logs/", f"-XX:ErrorFile={logs_dir}/", text)
    text = re.sub(r"-XX:HeapDumpPath=data\b", f"-XX:HeapDumpPath={data_dir}", text)
    return text
