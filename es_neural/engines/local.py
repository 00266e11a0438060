"""Managed local engines without Docker: ``LocalEngines.up / down / status``.

Runtime state lives under ``settings.home/run/<engine>/node<i>/``: ``data/``, ``logs/``
(``stdout.log`` holds the launcher's console), a per-node copy of ``config/``, ``tmp/``, a
``pid`` file and ``state.json``. Each node runs in its own process group (the launcher starts a
child JVM), so it is stopped by signalling the group. As root, nodes run as the ``es-neural``
service user: both engines refuse to run as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from es_neural.engines.analysis import install_english_module
from es_neural.engines.catalog import EngineRelease, fallback_release, release_for
from es_neural.engines.install import (
    SERVICE_USER,
    ArtifactNotServedError,
    Installer,
    ServiceUser,
    chown_tree,
    ensure_service_user,
    file_lock,
    grant_traverse,
)
from es_neural.engines.jdk import DEFAULT_JDK_ROOTS, Jdk, NoSuitableJdkError, require_jdk
from es_neural.engines.nodes import (
    HOST,
    NodeSpec,
    node_command,
    node_env,
    node_ports,
    node_url,
    rewrite_jvm_options,
    url_port,
)
from es_neural.engines.probe import Probe, ProbeAccess, access_for, port_open, probe
from es_neural.errors import EngineSetupError
from es_neural.settings import EngineKind, Settings

__all__ = ["LocalEngines", "NodeState", "NodeStatus"]

Progress = Callable[[str], None]

_STOP_GRACE_S = 30.0
_KILL_WAIT_S = 10.0
_POLL_S = 1.0
_REPORT_EVERY_S = 15.0

# Popen objects of the nodes this process started, kept so that they are reaped (a dead child
# would otherwise stay a zombie and look alive) and never garbage-collected while running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


def _reap() -> None:
    with _CHILDREN_LOCK:
        for pid, proc in list(_CHILDREN.items()):
            if proc.poll() is not None:
                del _CHILDREN[pid]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What ``up`` / ``down`` / ``status`` found for one node."""

    engine: EngineKind
    node: int
    url: str
    running: bool
    healthy: bool
    version: str | None
    cluster_status: str | None
    pid: int | None
    message: str = ""


@dataclass(frozen=True, slots=True)
class NodeState:
    """``state.json`` of a node this package started."""

    engine: str
    version: str
    node: int
    nodes: int
    pid: int
    pgid: int
    http_port: int
    transport_port: int
    url: str
    install_dir: str
    java_home: str
    started_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> NodeState:
        data = json.loads(text)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


# -- processes -------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state letter, process group)`` of ``pid`` from ``/proc``, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    _reap()
    if not Path("/proc/self/stat").exists():  # no procfs: ask the kernel about the group
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        info = _proc_stat(int(entry.name))
        if info is not None and info[1] == pgid and info[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


def _group_alive(state: NodeState) -> bool:
    """Whether the node's process group still runs, and runs our install (pid reuse guard)."""
    members = _group_members(state.pgid)
    if not Path("/proc/self/stat").exists():
        return bool(members)
    return any(state.install_dir in _cmdline(pid) for pid in members)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` without Java stack frames."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64_000))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if not re.match(r"^\s+(at |\.\.\. \d+ more)", line)]
    return "\n".join(kept[-lines:])


# -- the manager -----------------------------------------------------------------------------


class LocalEngines:
    """Starts, reuses and stops local Elasticsearch / OpenSearch nodes for ``settings``.

    The constructor does no I/O. ``up`` fetches (Maven Central), unpacks and starts what is
    missing, reuses what answers healthy, and restarts nodes whose process died.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        progress: Progress | None = None,
        java_home: Path | None = None,
        jdk_roots: Sequence[Path] = DEFAULT_JDK_ROOTS,
        service_user: str = SERVICE_USER,
        instance: str | None = None,
        node_settings: Mapping[str, str] | None = None,
        configure: Callable[[NodeSpec], None] | None = None,
    ) -> None:
        """``instance`` names a separate set of nodes (own run folder and state; downloads and
        installs shared), e.g. a 3-node test cluster beside the default nodes. ``node_settings``
        are extra ``-E`` settings of every node started; ``configure(spec)`` runs after a node's
        config folder is written and before the node starts (certificates, keystore)."""
        if instance is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", instance):
            raise EngineSetupError(f"instance must match [a-z0-9][a-z0-9_-]*, got {instance!r}")
        self._settings = settings
        self._instance = instance
        self._node_settings = tuple((node_settings or {}).items())
        self._configure = configure
        self._progress: Progress = progress if progress is not None else (lambda _msg: None)
        self._java_home = java_home
        self._jdk_roots = tuple(jdk_roots)
        self._service_user_name = service_user

    # -- paths and configuration --------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self._settings.home

    def run_dir(self, engine: EngineKind) -> Path:
        run = self.home / "run"
        if self._instance is not None:
            run = run / "instances" / self._instance
        return run / EngineKind(engine).value

    def node_dir(self, engine: EngineKind, node: int) -> Path:
        return self.run_dir(engine) / f"node{node}"

    def base_port(self, engine: EngineKind) -> int:
        """The http port of node 0: the port of the engine's (first) URL in the settings."""
        # ``urls`` may list every node of a cluster: node 0 comes first
        return url_port(self._settings.engine_settings(engine).urls[0])

    def url_is_default(self, engine: EngineKind) -> bool:
        """Whether the engine's URL in the settings is the default nodes' one (not set)."""
        field = type(self._settings).model_fields[EngineKind(engine).value]
        return bool(self._settings.engine_settings(engine).urls == field.default.urls)

    def url(self, engine: EngineKind, node: int = 0) -> str:
        return node_url(node_ports(self.base_port(engine), node)[0], self.scheme(engine))

    def scheme(self, engine: EngineKind) -> str:
        """``https`` when the engine's URL in the settings says so (a node with TLS on)."""
        scheme = urlsplit(self._settings.engine_settings(engine).urls[0]).scheme
        return "https" if scheme == "https" else "http"

    def _probe(self, engine: EngineKind, url: str) -> Probe:
        """``probe(url)`` with the CA and credentials of the engine's settings."""
        access: ProbeAccess = access_for(self._settings.engine_settings(engine))
        return probe(url, access=access)

    def release(self, engine: EngineKind) -> EngineRelease:
        """The configured release of ``engine`` (before any fallback)."""
        versions = {
            EngineKind.ELASTICSEARCH: self._settings.elasticsearch_version,
            EngineKind.OPENSEARCH: self._settings.opensearch_version,
        }
        kind = EngineKind(engine)
        return release_for(kind, versions[kind])

    def _say(self, engine: EngineKind, message: str) -> None:
        self._progress(f"{engine.value}: {message}")

    def _installer(self, engine: EngineKind) -> Installer:
        return Installer(self.home, progress=lambda msg: self._say(engine, msg))

    def _lock(self, engine: EngineKind) -> Path:
        return self.run_dir(engine) / ".lock"

    def _service_user(self) -> ServiceUser | None:
        return ensure_service_user(self._service_user_name) if os.geteuid() == 0 else None

    def _accepted_versions(self, engine: EngineKind) -> set[str]:
        """Versions a running node may have: the configured one, or its fallback when that is
        what is installed."""
        primary = self.release(engine)
        accepted = {primary.version}
        fallback = fallback_release(primary)
        installer = self._installer(engine)
        if (
            fallback is not None
            and installer.is_installed(fallback)
            and not installer.is_installed(primary)
        ):
            accepted.add(fallback.version)
        return accepted

    # -- state files -------------------------------------------------------------------------

    def _read_states(self, engine: EngineKind) -> dict[int, NodeState]:
        states: dict[int, NodeState] = {}
        run = self.run_dir(engine)
        if not run.is_dir():
            return states
        for folder in sorted(run.glob("node*")):
            path = folder / "state.json"
            if not path.is_file():
                continue
            try:
                state = NodeState.from_json(path.read_text())
            except (ValueError, KeyError, TypeError):
                self._say(engine, f"ignoring unreadable {path}")
                continue
            states[state.node] = state
        return states

    def _clear_state(self, engine: EngineKind, node: int) -> None:
        folder = self.node_dir(engine, node)
        for name in ("state.json", "pid"):
            (folder / name).unlink(missing_ok=True)

    # -- public API ---------------------------------------------------------------------------

    def up(
        self, engine: EngineKind | str, *, nodes: int = 1, timeout: float = 180.0
    ) -> list[NodeStatus]:
        """Make ``nodes`` healthy nodes of ``engine`` answer; reuse, restart or start them.

        Raises :class:`EngineSetupError` with what to do when that is impossible (no Java, no
        Maven, version not served, port taken by something else, node failed: log tail).
        """
        kind = EngineKind(engine)
        if nodes < 1:
            raise EngineSetupError(f"nodes must be >= 1, got {nodes}")
        with file_lock(self._lock(kind), lambda m: self._say(kind, m)):
            self._up_locked(kind, nodes, timeout)
        return self.status(kind)

    def down(self, engine: EngineKind | str) -> list[NodeStatus]:
        """Stop the nodes of ``engine`` this package started (data is kept)."""
        kind = EngineKind(engine)
        with file_lock(self._lock(kind), lambda m: self._say(kind, m)):
            states = self._read_states(kind)
            live = [s for s in states.values() if _group_alive(s)]
            for state in live:
                self._say(kind, f"stopping node{state.node} (pid {state.pid})")
            self._stop_many(kind, live)
            for state in states.values():
                self._clear_state(kind, state.node)
        return self.status(kind)

    def status(self, engine: EngineKind | str) -> list[NodeStatus]:
        """The nodes of ``engine``: those with state files, else node 0 at the configured URL.

        An instance without state files whose URL is still the default one is reported down
        without asking that URL: what answers there are the default nodes, not the instance's.
        """
        kind = EngineKind(engine)
        states = self._read_states(kind)
        if not states and self._instance is not None and self.url_is_default(kind):
            hint = f"ES_NEURAL_{kind.value.upper()}__URL"
            message = f"no node in instance {self._instance} ({hint} not set)"
            return [NodeStatus(kind, 0, self.url(kind), False, False, None, None, None, message)]
        accepted = self._accepted_versions(kind)
        result = []
        for node in sorted(states) or [0]:
            result.append(self._node_status(kind, node, states.get(node), accepted))
        return result

    # -- up ----------------------------------------------------------------------------------

    def _up_locked(self, engine: EngineKind, nodes: int, timeout: float) -> None:
        states = self._read_states(engine)
        self._check_layout(engine, states, nodes)
        states = self._read_states(engine)
        accepted = self._accepted_versions(engine)
        base = self.base_port(engine)
        to_start: list[int] = []
        for node in range(nodes):
            http, transport = node_ports(base, node)
            url = node_url(http, self.scheme(engine))
            state = states.get(node)
            alive = state is not None and _group_alive(state)
            answer = self._probe(engine, url)
            if alive and state is not None:
                if state.version not in accepted:
                    raise EngineSetupError(
                        f"{engine.value} node{node} runs {state.version}, the settings ask for "
                        f"{'/'.join(sorted(accepted))}: run `es-neural engines down --engine "
                        f"{engine.value}` first"
                    )
                if answer.answering or time.time() - state.started_at < timeout:
                    continue  # running, or still starting: wait for it below
                self._say(engine, f"node{node} (pid {state.pid}) does not answer: restarting it")
                self._stop_many(engine, [state])
                self._clear_state(engine, node)
                to_start.append(node)
                continue
            if state is not None:
                self._say(engine, f"node{node} (pid {state.pid}) is gone: restarting it")
                _signal_group(state.pgid, signal.SIGKILL)
                self._clear_state(engine, node)
            if answer.answering:
                if answer.engine is engine and answer.version in accepted:
                    self._say(engine, f"reusing {answer.describe()} at {url}")
                    continue
                raise EngineSetupError(
                    f"port {http} is taken by {answer.describe()}, not {engine.value} "
                    f"{'/'.join(sorted(accepted))}: stop it, or point settings."
                    f"{engine.value}.url at another port"
                )
            if port_open(HOST, transport):
                raise EngineSetupError(
                    f"transport port {transport} of {engine.value} node{node} is taken by "
                    f"another program: free it or change settings.{engine.value}.url"
                )
            to_start.append(node)

        if to_start:
            release, jdk = self._resolve_release(engine)
            user = self._service_user()
            install = self._installer(engine).ensure_installed(
                release, java_home=jdk.home, owner=user
            )
            # the english analyzer where the install lacks analysis-common; never fails ``up``
            install_english_module(
                install, release, jdk.home, owner=user, progress=lambda m: self._say(engine, m)
            )
            for node in to_start:
                spec = NodeSpec(
                    release=release,
                    node=node,
                    nodes=nodes,
                    base_http_port=base,
                    install_dir=install,
                    node_dir=self.node_dir(engine, node),
                    java_home=jdk.home,
                    heap=self._settings.engine_heap,
                    extra=self._node_settings,
                    scheme=self.scheme(engine),
                )
                self._start_node(spec, user)
            accepted = accepted | {release.version}
        self._wait_healthy(engine, nodes, timeout, accepted)

    def _check_layout(self, engine: EngineKind, states: dict[int, NodeState], nodes: int) -> None:
        """A cluster keeps its node count; a different count needs ``down`` and fresh data."""
        layouts = {s.nodes for s in states.values()}
        if not states or layouts == {nodes}:
            return
        running = sorted(s.node for s in states.values() if _group_alive(s))
        if running:
            raise EngineSetupError(
                f"{engine.value} runs as a {max(layouts)}-node cluster here; run "
                f"`es-neural engines down --engine {engine.value}` before asking for {nodes}"
            )
        self._say(
            engine,
            f"node count changes from {max(layouts)} to {nodes}: clearing the old nodes' data",
        )
        for state in states.values():
            shutil.rmtree(self.node_dir(engine, state.node), ignore_errors=True)

    def _resolve_release(self, engine: EngineKind) -> tuple[EngineRelease, Jdk]:
        """The release to install and its JDK; OpenSearch 3.x falls back to 2.19.1 on Java 17
        when its artifacts are not served or no Java 21+ is installed."""
        primary = self.release(engine)
        installer = self._installer(engine)
        try:
            jdk = require_jdk(primary, java_home=self._java_home, roots=self._jdk_roots)
            if not installer.is_installed(primary):
                for artifact in (primary.distribution, *primary.plugins):
                    installer.fetch(artifact)
            return primary, jdk
        except (ArtifactNotServedError, NoSuitableJdkError) as exc:
            fallback = fallback_release(primary)
            if fallback is None:
                raise
            jdk = require_jdk(fallback, java_home=self._java_home, roots=self._jdk_roots)
            self._say(
                engine,
                f"{exc}; falling back to {engine.value} {fallback.version} "
                f"on Java {jdk.major} ({jdk.home})",
            )
            return fallback, jdk

    def _start_node(self, spec: NodeSpec, user: ServiceUser | None) -> None:
        engine = spec.engine
        for folder in (spec.node_dir, spec.data_dir, spec.logs_dir, spec.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(spec.config_dir, ignore_errors=True)
        shutil.copytree(spec.install_dir / "config", spec.config_dir, symlinks=True)
        jvm_options = spec.config_dir / "jvm.options"
        if jvm_options.is_file():
            jvm_options.write_text(
                rewrite_jvm_options(
                    jvm_options.read_text(), logs_dir=spec.logs_dir, data_dir=spec.data_dir
                )
            )
        if self._configure is not None:
            self._configure(spec)
        env = node_env(spec, os.environ)
        if user is not None:
            grant_traverse(spec.install_dir, user, lambda m: self._say(engine, m))
            grant_traverse(spec.node_dir, user, lambda m: self._say(engine, m))
            for folder in (spec.node_dir, spec.logs_dir, spec.tmp_dir, spec.data_dir):
                os.chown(folder, user.uid, user.gid)
            chown_tree(spec.config_dir, user)
            env.update(HOME=str(user.home), USER=user.name, LOGNAME=user.name)
        command = node_command(spec)
        self._say(engine, f"starting node{spec.node} on {spec.url} (logs: {spec.logs_dir})")
        with open(spec.stdout_log, "ab") as log:
            log.write(f"\n=== es-neural {time.ctime()}: {' '.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                command,
                env=env,
                cwd=spec.node_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user.uid if user is not None else None,
                group=user.gid if user is not None else None,
                extra_groups=[] if user is not None else None,
            )
        with _CHILDREN_LOCK:
            _CHILDREN[proc.pid] = proc
        state = NodeState(
            engine=engine.value,
            version=spec.release.version,
            node=spec.node,
            nodes=spec.nodes,
            pid=proc.pid,
            pgid=proc.pid,
            http_port=spec.http_port,
            transport_port=spec.transport_port,
            url=spec.url,
            install_dir=str(spec.install_dir),
            java_home=str(spec.java_home),
            started_at=time.time(),
        )
        (spec.node_dir / "pid").write_text(f"{proc.pid}\n")
        tmp = spec.node_dir / "state.json.tmp"
        tmp.write_text(state.to_json())
        os.replace(tmp, spec.node_dir / "state.json")

    def _wait_healthy(
        self, engine: EngineKind, nodes: int, timeout: float, accepted: set[str]
    ) -> None:
        base = self.base_port(engine)
        urls = [node_url(node_ports(base, i)[0], self.scheme(engine)) for i in range(nodes)]
        started = time.monotonic()
        last_report = started
        answers: list[Probe] = []
        while True:
            states = self._read_states(engine)
            for node, state in states.items():
                if node < nodes and not _group_alive(state):
                    self._clear_state(engine, node)
                    raise EngineSetupError(
                        f"{engine.value} node{node} exited during startup; last lines of "
                        f"{self.node_dir(engine, node) / 'logs' / 'stdout.log'}:\n"
                        f"{self._log_tail(engine, node)}"
                    )
            answers = [self._probe(engine, url) for url in urls]
            if all(
                a.healthy
                and a.engine is engine
                and a.version in accepted
                and (a.number_of_nodes or 0) >= nodes
                for a in answers
            ):
                elapsed = time.monotonic() - started
                self._say(engine, f"healthy ({answers[0].cluster_status}) after {elapsed:.0f} s")
                return
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                detail = "; ".join(
                    f"{url}: {a.describe()} status={a.cluster_status} nodes={a.number_of_nodes}"
                    for url, a in zip(urls, answers, strict=True)
                )
                raise EngineSetupError(
                    f"{engine.value} not healthy after {timeout:.0f} s ({detail}); last log "
                    f"lines of node0:\n{self._log_tail(engine, 0)}"
                )
            if time.monotonic() - last_report >= _REPORT_EVERY_S:
                last_report = time.monotonic()
                self._say(engine, f"waiting for health ({elapsed:.0f} s)")
            time.sleep(_POLL_S)

    def _log_tail(self, engine: EngineKind, node: int, lines: int = 30) -> str:
        logs = self.node_dir(engine, node) / "logs"
        text = _tail(logs / "stdout.log", lines)
        if not text.strip():
            text = _tail(logs / f"es-neural-{engine.value}.log", lines)
        return text or "(no log output)"

    # -- stopping ----------------------------------------------------------------------------

    def _wait_gone(self, states: Sequence[NodeState], limit: float) -> bool:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not any(_group_members(s.pgid) for s in states):
                return True
            time.sleep(0.2)
        return not any(_group_members(s.pgid) for s in states)

    def _stop_many(self, engine: EngineKind, states: Sequence[NodeState]) -> None:
        """SIGTERM the nodes' groups, SIGKILL what is left after a grace period."""
        if not states:
            return
        for state in states:
            _signal_group(state.pgid, signal.SIGTERM)
        if self._wait_gone(states, _STOP_GRACE_S):
            return
        self._say(engine, f"still running after {_STOP_GRACE_S:.0f} s: sending SIGKILL")
        for state in states:
            _signal_group(state.pgid, signal.SIGKILL)
        if not self._wait_gone(states, _KILL_WAIT_S):
            pgids = ", ".join(str(s.pgid) for s in states)
            raise EngineSetupError(f"{engine.value}: process groups {pgids} survive SIGKILL")

    # -- status ------------------------------------------------------------------------------

    def _node_status(
        self, engine: EngineKind, node: int, state: NodeState | None, accepted: set[str]
    ) -> NodeStatus:
        url = state.url if state is not None else self.url(engine, node)
        alive = state is not None and _group_alive(state)
        answer = self._probe(engine, url)
        right_engine = answer.engine is engine and (
            answer.version is None or answer.version in accepted
        )
        healthy = answer.healthy and right_engine
        message = ""
        if state is not None and not alive:
            message = "process gone (`up` restarts it)"
        elif state is None and answer.answering:
            message = "not started by es-neural"
        elif alive and not answer.answering:
            message = "starting (not answering yet)"
        if answer.answering and not right_engine:
            message = f"port answered by {answer.describe()}"
        elif answer.answering and not answer.healthy:
            message = message or f"cluster status {answer.cluster_status or answer.error}"
        return NodeStatus(
            engine=engine,
            node=node,
            url=url,
            running=alive or (state is None and answer.answering),
            healthy=healthy,
            version=answer.version,
            cluster_status=answer.cluster_status,
            pid=state.pid if alive and state is not None else None,
            message=message,
        )
