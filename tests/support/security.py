"""A secured managed Elasticsearch node: own CA, TLS on http, passwords, least privilege.

Test support (``tests/integration/test_security.py``), not part of the package: the layer only
connects to a secured cluster (settings: CA, user and password or API key); making one is the
tests' business.

Everything comes from the installed distribution, nothing is downloaded: certificates from
``bin/elasticsearch-certutil`` (PEM), the ``elastic`` bootstrap password from
``bin/elasticsearch-keystore``. :class:`SecureElasticsearch` holds that material and is the
``configure`` hook of :class:`~es_neural.engines.LocalEngines`. Tools run and modules are
compiled with the package's :mod:`es_neural.engines.javac`.

The integ-test distribution lacks the analysis-common module, and the ``.security`` index
mapping names three of its components (``uax_url_email``, ``pattern_capture``, ``unique``):
without them that index cannot be created, so native users, roles and API keys cannot be
stored. The hook therefore compiles ``java/SecurityIndexAnalysisPlugin.java`` (Lucene's own
implementations, with the JDK's ``javac``) into a module of the install. That changes the
install, so a secured node gets its own ``home`` (own install), never the shared one::

    secure = SecureElasticsearch(folder, elastic_password=SecretStr(...))
    admin = secure.admin_settings("https://127.0.0.1:9460")
    engines = LocalEngines(settings.with_(elasticsearch=admin, home=private_home),
                           instance="secure", node_settings=secure.node_settings,
                           configure=secure.configure)
    engines.up("elasticsearch")
    access = provision_layer_access(SecurityAdmin(admin), index_patterns=["es-neural-*"], ...)

:class:`SecurityAdmin` manages roles, users and API keys over the security REST API with
``urllib`` (engine clients live in the dialects only). Passwords and keys are ``SecretStr``;
no message, log line or ``repr`` here contains one.

OpenSearch: :mod:`tests.support.opensearch_security` (its security plugin, at a version
Maven Central serves), provisioned through the same :func:`provision_layer_access`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from es_neural.dialects.errors import error_from_status
from es_neural.engines.javac import build_module, java_tool_env, run_tool
from es_neural.engines.nodes import NodeSpec
from es_neural.engines.probe import access_for
from es_neural.errors import EngineError, EngineSetupError, EngineTlsError
from es_neural.settings import EngineKind, EngineSettings

__all__ = [
    "CERTS_DIR",
    "LayerAccess",
    "SecureElasticsearch",
    "SecurityAdmin",
    "elasticsearch_security_settings",
    "layer_role",
    "provision_layer_access",
]

#: Folder inside the node's config dir that receives the certificates.
CERTS_DIR = "certs"
#: The module supplying the ``.security`` index's analysis components (see the docstring).
ANALYSIS_MODULE = "es-neural-security-analysis"
_ANALYSIS_SOURCE = Path(__file__).with_name("java") / "SecurityIndexAnalysisPlugin.java"
_ANALYSIS_CLASS = "org.esneural.securityanalysis.SecurityIndexAnalysisPlugin"

#: Cluster privileges of the layer: ``monitor`` covers ``_cluster/health`` and ``_nodes``
#: (capability probe). Closing a point in time needs no cluster privilege.
LAYER_CLUSTER_PRIVILEGES = ("monitor",)
#: Index privileges of a read-only (search / API) user: search, msearch, mget, count, point in
#: time (``read``); alias resolution and ``_meta`` checks (``view_index_metadata``).
SEARCH_INDEX_PRIVILEGES = ("read", "view_index_metadata")
#: Added for ingestion and migration: ``write`` (bulk, and the ``_meta`` mapping update),
#: ``manage`` (the alias swap needs it; it also covers create, refresh and delete) and
#: ``create_index`` (implied by ``manage``; listed so the role reads as meant).
WRITE_INDEX_PRIVILEGES = ("create_index", "write", "manage")


# -- pure builders ---------------------------------------------------------------------------


def elasticsearch_security_settings(certs_dir: str = CERTS_DIR) -> dict[str, str]:
    """``-E`` settings of a single node with security on and TLS on its http layer.

    Transport TLS is not needed: a ``discovery.type=single-node`` node on loopback forms no
    cluster. API keys stay enabled (the default, set explicitly)."""
    return {
        "xpack.security.enabled": "true",
        "xpack.security.http.ssl.enabled": "true",
        "xpack.security.http.ssl.certificate": f"{certs_dir}/node.crt",
        "xpack.security.http.ssl.key": f"{certs_dir}/node.key",
        "xpack.security.http.ssl.certificate_authorities": f"{certs_dir}/ca.crt",
        "xpack.security.http.ssl.client_authentication": "none",
        "xpack.security.authc.api_key.enabled": "true",
        "xpack.security.enrollment.enabled": "false",
    }


def layer_role(index_patterns: Sequence[str], *, write: bool = True) -> dict[str, Any]:
    """The role body (``PUT /_security/role/<name>``) of the layer on ``index_patterns``.

    ``write=False`` is the search-only role of the HTTP API; ``write=True`` adds what ingestion,
    alias swaps and migrations need."""
    if not index_patterns:
        raise ValueError("layer_role needs at least one index name pattern")
    privileges = SEARCH_INDEX_PRIVILEGES + (WRITE_INDEX_PRIVILEGES if write else ())
    return {
        "cluster": list(LAYER_CLUSTER_PRIVILEGES),
        "indices": [{"names": list(index_patterns), "privileges": list(privileges)}],
    }


# -- tools of the distribution ---------------------------------------------------------------


def _run_tool(
    install_dir: Path,
    java_home: Path,
    tool: str,
    args: Sequence[str],
    *,
    conf_dir: Path | None = None,
    stdin: str | None = None,
) -> None:
    """Run ``bin/<tool>`` of the Elasticsearch install; ``stdin`` carries secrets (never argv)."""
    extra = {"ES_JAVA_HOME": str(java_home), "ES_JAVA_OPTS": "-Xms64m -Xmx256m"}
    if conf_dir is not None:
        extra["ES_PATH_CONF"] = str(conf_dir)
    run_tool(
        [str(install_dir / "bin" / tool), *args],
        what=f"{tool} {args[0] if args else ''}".strip(),
        env=java_tool_env(java_home, **extra),
        stdin=stdin,
    )


def _unzip_pem(archive: Path, folder: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            target = folder / Path(info.filename).name
            target.write_bytes(zf.read(info))
            target.chmod(0o600 if target.suffix == ".key" else 0o644)


def generate_ca(
    install_dir: Path, java_home: Path, folder: Path, *, dn: str, days: int = 30
) -> tuple[Path, Path]:
    """A new self-signed CA in ``folder``: ``(ca.crt, ca.key)`` (PEM)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "ca.zip"  # absolute: certutil resolves relative paths elsewhere
        _run_tool(
            install_dir,
            java_home,
            "elasticsearch-certutil",
            ["ca", "--pem", "--silent", "--ca-dn", dn, "--days", str(days), "--out", str(archive)],
        )
        _unzip_pem(archive, folder)
    return folder / "ca.crt", folder / "ca.key"


def generate_node_certificate(
    install_dir: Path,
    java_home: Path,
    folder: Path,
    *,
    ca_cert: Path,
    ca_key: Path,
    name: str = "node",
    ips: Sequence[str] = ("127.0.0.1",),
    dns: Sequence[str] = ("localhost",),
    days: int = 30,
) -> tuple[Path, Path]:
    """A certificate signed by the CA, valid for ``ips`` and ``dns``: ``(name.crt, name.key)``."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "cert.zip"
        args = ["cert", "--pem", "--silent", "--name", name, "--days", str(days)]
        args += ["--ca-cert", str(ca_cert), "--ca-key", str(ca_key), "--out", str(archive)]
        if ips:
            args += ["--ip", ",".join(ips)]
        if dns:
            args += ["--dns", ",".join(dns)]
        _run_tool(install_dir, java_home, "elasticsearch-certutil", args)
        _unzip_pem(archive, folder)
    return folder / f"{name}.crt", folder / f"{name}.key"


def write_keystore(
    install_dir: Path, java_home: Path, conf_dir: Path, entries: Mapping[str, SecretStr]
) -> Path:
    """Create ``conf_dir/elasticsearch.keystore`` holding ``entries`` (values through stdin)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    for name, value in entries.items():
        _run_tool(
            install_dir,
            java_home,
            "elasticsearch-keystore",
            ["add", "-x", "-f", name],
            conf_dir=conf_dir,
            stdin=value.get_secret_value(),
        )
    return conf_dir / "elasticsearch.keystore"


def ensure_analysis_module(install_dir: Path, java_home: Path, version: str) -> Path:
    """Compile and place the ``.security`` index analysis module into ``install_dir/modules``
    unless it is there. Refuses an install whose home has ever run default (non-instance)
    nodes: those share the install and must not change."""
    module = install_dir / "modules" / ANALYSIS_MODULE
    if (module / "plugin-descriptor.properties").is_file():
        return module
    home = install_dir.parent.parent
    if (home / "run" / EngineKind.ELASTICSEARCH.value).exists():
        raise EngineSetupError(
            f"{install_dir} also serves the default Elasticsearch nodes of {home}; a secured "
            "node adds a module to its install, so give it its own settings.home"
        )
    return build_module(
        java_home=java_home,
        install_dir=install_dir,
        source=_ANALYSIS_SOURCE,
        module=module,
        jar_name=f"{ANALYSIS_MODULE}.jar",
        descriptor=(
            "description=Analysis components of the .security index mapping (es-neural)\n"
            f"version={version}\nname={ANALYSIS_MODULE}\nclassname={_ANALYSIS_CLASS}\n"
            f"java.version=21\nelasticsearch.version={version}\n"
        ),
    )


# -- the node hook ---------------------------------------------------------------------------


@dataclass
class SecureElasticsearch:
    """PKI and keystore of a secured node, kept in ``folder`` (mode 0700), made on first use.

    ``configure`` copies them into each node's config folder before it starts. The CA path
    (:attr:`ca_cert`) is known before anything is generated, so settings can name it up front.
    """

    folder: Path
    elastic_password: SecretStr = field(repr=False)
    days: int = 30
    ca_dn: str = "CN=es-neural test CA"
    _tools: tuple[Path, Path] | None = field(default=None, init=False, repr=False)

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca" / "ca.crt"

    @property
    def node_settings(self) -> dict[str, str]:
        return elasticsearch_security_settings()

    def admin_settings(self, url: str) -> EngineSettings:
        """Settings of the ``elastic`` superuser (node management and provisioning only)."""
        return EngineSettings(
            urls=(url,), username="elastic", password=self.elastic_password, ca_certs=self.ca_cert
        )

    def new_ca(self, folder: Path, *, dn: str) -> Path:
        """Another CA (its certificate path), unrelated to the node's: for refusal tests. Uses
        the install of the last :meth:`configure`."""
        if self._tools is None:
            raise EngineSetupError("new_ca needs the install: start a node with this hook first")
        cert, _ = generate_ca(*self._tools, folder, dn=dn, days=self.days)
        return cert

    def ensure_material(self, install_dir: Path, java_home: Path) -> None:
        """Generate the CA, the node certificate and the keystore unless already there."""
        self._tools = (install_dir, java_home)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        ca_dir, node_dir, keystore_dir = (self.folder / n for n in ("ca", "node", "keystore"))
        if not (ca_dir / "ca.crt").is_file() or not (ca_dir / "ca.key").is_file():
            generate_ca(install_dir, java_home, ca_dir, dn=self.ca_dn, days=self.days)
            shutil.rmtree(node_dir, ignore_errors=True)
        if not (node_dir / "node.crt").is_file():
            generate_node_certificate(
                install_dir,
                java_home,
                node_dir,
                ca_cert=ca_dir / "ca.crt",
                ca_key=ca_dir / "ca.key",
                days=self.days,
            )
        if not (keystore_dir / "elasticsearch.keystore").is_file():
            write_keystore(
                install_dir,
                java_home,
                keystore_dir,
                {"bootstrap.password": self.elastic_password},
            )

    def configure(self, spec: NodeSpec) -> None:
        """``LocalEngines`` hook: certificates and keystore into ``spec.config_dir``."""
        if spec.engine is not EngineKind.ELASTICSEARCH:
            raise EngineSetupError(
                f"SecureElasticsearch configures Elasticsearch nodes, not {spec.engine.value}"
            )
        ensure_analysis_module(spec.install_dir, spec.java_home, spec.release.version)
        self.ensure_material(spec.install_dir, spec.java_home)
        certs = spec.config_dir / CERTS_DIR
        certs.mkdir(parents=True, exist_ok=True)
        for source, name in (
            (self.folder / "ca" / "ca.crt", "ca.crt"),
            (self.folder / "node" / "node.crt", "node.crt"),
            (self.folder / "node" / "node.key", "node.key"),
        ):
            shutil.copyfile(source, certs / name)
            (certs / name).chmod(0o600 if name.endswith(".key") else 0o644)
        keystore = spec.config_dir / "elasticsearch.keystore"
        shutil.copyfile(self.folder / "keystore" / "elasticsearch.keystore", keystore)
        keystore.chmod(0o660)


# -- provisioning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerAccess:
    """What the layer connects with: a user (password) and an API key of that user."""

    username: str
    password: SecretStr = field(repr=False)
    #: ``None`` where the engine has no API keys (OpenSearch).
    api_key: SecretStr | None = field(repr=False)
    role: str = ""

    def password_settings(self, base: EngineSettings) -> EngineSettings:
        return base.model_copy(
            update={"username": self.username, "password": self.password, "api_key": None}
        )

    def api_key_settings(self, base: EngineSettings) -> EngineSettings:
        if self.api_key is None:
            raise EngineSetupError(f"{self.username} has no API key (the engine has none)")
        return base.model_copy(update={"username": None, "password": None, "api_key": self.api_key})


class SecurityAdmin:
    """Roles, users and API keys over Elasticsearch's security REST API (a superuser's
    ``settings``). Errors are :class:`EngineError` subclasses naming the call, never a secret."""

    def __init__(self, settings: EngineSettings, *, timeout: float = 30.0) -> None:
        self._settings = settings
        self._timeout = timeout

    @property
    def url(self) -> str:
        return self._settings.urls[0].rstrip("/")

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        access = access_for(self._settings)
        headers = {**access.headers(), "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, headers=headers, method=method
        )
        try:
            with access.opener().open(request, timeout=self._timeout) as response:
                return json.loads(response.read().decode("utf-8") or "null")
        except urllib.error.HTTPError as exc:
            try:
                info = json.loads(exc.read().decode("utf-8") or "{}")
            except (ValueError, OSError):
                info = {}
            error = info.get("error") if isinstance(info, dict) else None
            kind = error.get("type") if isinstance(error, dict) else None
            reason = error.get("reason") if isinstance(error, dict) else None
            raise error_from_status(
                exc.code,
                f"{method} {self.url}{path}: HTTP {exc.code} {kind or ''}: {reason or exc.reason}",
                error_type=kind,
            ) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, OSError) and "CERTIFICATE_VERIFY_FAILED" in str(exc.reason):
                raise EngineTlsError(
                    f"{method} {self.url}{path}: the engine's certificate is not signed by the "
                    f"configured CA (ca_certs={self._settings.ca_certs})"
                ) from None
            raise EngineError(f"{method} {self.url}{path}: {exc.reason}") from None

    def layer_role(self, index_patterns: Sequence[str], *, write: bool) -> dict[str, Any]:
        """The role body of the layer on ``index_patterns`` in this engine's terms."""
        return layer_role(index_patterns, write=write)

    def put_role(self, name: str, body: Mapping[str, Any]) -> None:
        self.request("PUT", f"/_security/role/{name}", body)

    def put_user(self, name: str, *, password: SecretStr, roles: Sequence[str]) -> None:
        body = {"password": password.get_secret_value(), "roles": list(roles)}
        self.request("PUT", f"/_security/user/{name}", body)

    def grant_api_key(
        self, *, username: str, password: SecretStr, name: str, expiration: str = "1d"
    ) -> SecretStr | None:
        """An API key owned by ``username`` with that user's privileges (``encoded`` form, the
        value of ``settings.<engine>.api_key``); the superuser grants it with the user's
        password, so the layer's role needs no API-key privilege."""
        body = {
            "grant_type": "password",
            "username": username,
            "password": password.get_secret_value(),
            "api_key": {"name": name, "expiration": expiration},
        }
        answer = self.request("POST", "/_security/api_key/grant", body)
        if not isinstance(answer, dict) or not isinstance(answer.get("encoded"), str):
            raise EngineError(f"POST {self.url}/_security/api_key/grant: no key in the answer")
        return SecretStr(answer["encoded"])

    def has_privileges(self, settings: EngineSettings, body: Mapping[str, Any]) -> dict[str, Any]:
        """``_security/user/_has_privileges`` as the user of ``settings``."""
        answer = SecurityAdmin(settings, timeout=self._timeout).request(
            "POST", "/_security/user/_has_privileges", body
        )
        return answer if isinstance(answer, dict) else {}


def provision_layer_access(
    admin: SecurityAdmin,
    *,
    index_patterns: Sequence[str],
    username: str,
    password: SecretStr,
    role: str | None = None,
    write: bool = True,
) -> LayerAccess:
    """Create (or update) the layer's role and user and grant it an API key (where the engine
    has them)."""
    role_name = role or f"{username}-role"
    admin.put_role(role_name, admin.layer_role(index_patterns, write=write))
    admin.put_user(username, password=password, roles=[role_name])
    api_key = admin.grant_api_key(username=username, password=password, name=f"{username}-key")
    return LayerAccess(username=username, password=password, api_key=api_key, role=role_name)
