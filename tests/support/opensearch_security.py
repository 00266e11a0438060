"""A secured managed OpenSearch node: the security plugin, own CA, TLS, passwords, least privilege.

Test support, as :mod:`tests.support.security` is. The counterpart of
:class:`~tests.support.security.SecureElasticsearch` for OpenSearch. The
security plugin is fetched from Maven Central at the node's version
(``org.opensearch.plugin:opensearch-security:<v>.0:zip``); it is served for some versions only
(3.4.0.0 and 2.19.x, not 3.6.0.0 on 2026-11-24), so a secured node may run another version than
the default nodes (``settings.opensearch_version``). The plugin extends the ``rule-framework``
module, which the integ-test distribution lacks and Maven Central does not serve: the hook
compiles an empty stand-in (``java/RuleFrameworkStubPlugin.java``) next to the framework's one
dependency (commons-collections4). Both change the install, so a secured node gets its own
``home``, never the shared one::

    secure = SecureOpenSearch(folder, admin_password=SecretStr(...))
    admin = secure.admin_settings("https://127.0.0.1:9461")
    engines = LocalEngines(settings.with_(opensearch=admin, home=private_home,
                                          opensearch_version="3.4.0"),
                           instance="secure", configure=secure.configure)
    engines.up("opensearch")
    access = provision_layer_access(OpenSearchSecurityAdmin(admin), index_patterns=[...], ...)

Certificates come from the JDK's ``keytool`` (PKCS#12 keystores for the node, the CA in PEM for
clients); the administrator's password hash from the plugin's own ``tools/hash.sh`` (the
password through the environment, never argv); users and roles are then made over the security
REST API. The demo users and their known passwords of the plugin's sample configuration are
replaced: the only user at start is the administrator. OpenSearch has no API keys of the
Elasticsearch kind: :class:`LayerAccess` of this engine carries a password only.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from es_neural.engines.catalog import MavenArtifact
from es_neural.engines.install import ArtifactNotServedError, Installer
from es_neural.engines.javac import build_module, java_tool_env, run_tool
from es_neural.engines.nodes import NodeSpec
from es_neural.errors import EngineError, EngineSetupError
from es_neural.settings import EngineKind, EngineSettings
from tests.support.security import SecurityAdmin

__all__ = [
    "ADMIN_USER",
    "SECURED_OPENSEARCH_VERSION",
    "OpenSearchSecurityAdmin",
    "SecureOpenSearch",
    "opensearch_layer_role",
]

#: The newest OpenSearch whose security plugin Maven Central was seen serving (2026-11-24; the
#: default nodes run 3.6.0, whose plugin is not served).
SECURED_OPENSEARCH_VERSION = "3.4.0"
#: The administrator made at start (all_access; provisioning only, never the layer).
ADMIN_USER = "es-neural-admin"
PLUGIN = "opensearch-security"
STUB_MODULE = "rule-framework"
_STUB_SOURCE = Path(__file__).with_name("java") / "RuleFrameworkStubPlugin.java"
_STUB_CLASS = "org.esneural.rulestub.RuleFrameworkStubPlugin"
#: The rule framework's dependency that the security plugin uses too.
_COLLECTIONS = MavenArtifact("org.apache.commons", "commons-collections4", "4.4")
_NODE_DN = "CN=node.es-neural.test"
_ADMIN_DN = "CN=admin.es-neural.test"

#: Cluster permissions of the layer: health and node info (capability probe), and the
#: multi-index operations (bulk, msearch, mget, alias reads) that the plugin checks at cluster
#: level (its ``cluster_composite_ops`` action group; ``_ro`` for a search-only user).
_CLUSTER_WRITE = ("cluster_monitor", "cluster_composite_ops")
_CLUSTER_READ = ("cluster_monitor", "cluster_composite_ops_ro")
#: Index permissions: reading (search, point in time, count) and the ``_meta``/alias reads...
_INDEX_READ = ("read", "indices:admin/mappings/get", "indices:admin/aliases/get")
#: ...plus writing, creating indices, the ``_meta`` mapping update and alias swaps (``manage``
#: covers ``indices:admin/*``, creation, refresh and deletion included).
_INDEX_WRITE = ("write", "create_index", "manage")


def opensearch_layer_role(index_patterns: Sequence[str], *, write: bool = True) -> dict[str, Any]:
    """The role body (``PUT _plugins/_security/api/roles/<name>``) of the layer."""
    if not index_patterns:
        raise ValueError("opensearch_layer_role needs at least one index name pattern")
    return {
        "cluster_permissions": list(_CLUSTER_WRITE if write else _CLUSTER_READ),
        "index_permissions": [
            {
                "index_patterns": list(index_patterns),
                "allowed_actions": list(_INDEX_READ + (_INDEX_WRITE if write else ())),
            }
        ],
    }


class _KeyTool:
    """The JDK's ``keytool``: a CA, a node keystore signed by it, a truststore (PKCS#12)."""

    def __init__(self, java_home: Path, store_password: SecretStr, days: int) -> None:
        self.tool = java_home / "bin" / "keytool"
        if not self.tool.is_file():
            raise EngineSetupError(f"{java_home} has no bin/keytool")
        self.days = days
        # keytool reads ``-storepass:env NAME``: the password stays out of argv.
        self.env = java_tool_env(java_home, ESN_STORE_PASS=store_password.get_secret_value())

    def __call__(self, *args: str) -> str:
        return run_tool([str(self.tool), *args], what=f"keytool {args[0]}", env=self.env)

    def store(self, path: Path) -> list[str]:
        return ["-keystore", str(path), "-storetype", "PKCS12", "-storepass:env", "ESN_STORE_PASS"]

    def new_ca(self, folder: Path, dn: str) -> Path:
        """``folder/ca.p12`` (key and certificate) and ``folder/ca.pem``; the PEM's path."""
        folder.mkdir(parents=True, exist_ok=True)
        store = folder / "ca.p12"
        store.unlink(missing_ok=True)
        self("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-dname", dn,
             "-ext", "bc:c", "-validity", str(self.days), *self.store(store))  # fmt: skip
        self("-exportcert", "-rfc", "-alias", "ca", "-file", str(folder / "ca.pem"),
             *self.store(store))  # fmt: skip
        return folder / "ca.pem"

    def node_keystore(self, ca_dir: Path, node_dir: Path) -> None:
        """``node_dir/node.p12`` (the node's key, its certificate signed by the CA for
        127.0.0.1/localhost, the chain) and ``node_dir/truststore.p12`` (the CA)."""
        node_dir.mkdir(parents=True, exist_ok=True)
        node, trust = node_dir / "node.p12", node_dir / "truststore.p12"
        for path in (node, trust):
            path.unlink(missing_ok=True)
        ca_store, ca_pem = ca_dir / "ca.p12", ca_dir / "ca.pem"
        with tempfile.TemporaryDirectory() as tmp:
            csr, signed, chain = (Path(tmp) / n for n in ("node.csr", "node.pem", "chain.pem"))
            self("-genkeypair", "-alias", "node", "-keyalg", "RSA", "-keysize", "2048",
                 "-dname", _NODE_DN, "-validity", str(self.days), *self.store(node))  # fmt: skip
            self("-certreq", "-alias", "node", "-file", str(csr), *self.store(node))
            self("-gencert", "-alias", "ca", "-infile", str(csr), "-outfile", str(signed), "-rfc",
                 "-validity", str(self.days), "-ext", "SAN=ip:127.0.0.1,dns:localhost",
                 "-ext", "KU=digitalSignature,keyEncipherment",
                 "-ext", "EKU=serverAuth,clientAuth", *self.store(ca_store))  # fmt: skip
            self("-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem),
                 *self.store(node))  # fmt: skip
            chain.write_text(signed.read_text() + ca_pem.read_text())
            self("-importcert", "-noprompt", "-alias", "node", "-file", str(chain),
                 *self.store(node))  # fmt: skip
            self("-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem),
                 *self.store(trust))  # fmt: skip


def ensure_security_plugin(
    spec: NodeSpec, *, progress: Callable[[str], None] = lambda _m: None
) -> Path:
    """Install the security plugin (and the rule-framework stand-in it needs) into the install
    of ``spec`` unless there. Refuses an install whose home has ever run default (non-instance)
    nodes: those share the install and must not change."""
    install = spec.install_dir
    plugin_dir = install / "plugins" / PLUGIN
    if (plugin_dir / "plugin-descriptor.properties").is_file():
        return plugin_dir
    home = install.parent.parent
    if (home / "run" / EngineKind.OPENSEARCH.value).exists():
        raise EngineSetupError(
            f"{install} also serves the default OpenSearch nodes of {home}; a secured node adds "
            "the security plugin to its install, so give it its own settings.home"
        )
    version = spec.release.version
    installer = Installer(home, progress=progress)
    artifact = MavenArtifact("org.opensearch.plugin", PLUGIN, f"{version}.0", "zip")
    try:
        plugin_zip = installer.fetch(artifact)
    except ArtifactNotServedError as exc:
        raise EngineSetupError(
            f"{exc}: a secured OpenSearch node needs the security plugin of its own version; "
            "run it at a version whose plugin is served (e.g. opensearch_version=3.4.0)"
        ) from None
    stub = install / "modules" / STUB_MODULE
    if not (stub / "plugin-descriptor.properties").is_file():
        _build_stub_module(spec, stub, installer.fetch(_COLLECTIONS))
    progress(f"installing {plugin_zip.name} into {install}")
    tool = install / "bin" / "opensearch-plugin"
    env = java_tool_env(
        spec.java_home,
        OPENSEARCH_JAVA_HOME=str(spec.java_home),
        OPENSEARCH_PATH_CONF=str(install / "config"),
    )
    run_tool(
        [str(tool), "install", "--batch", plugin_zip.resolve().as_uri()], what=tool.name, env=env
    )
    return plugin_dir


def _build_stub_module(spec: NodeSpec, module: Path, collections_jar: Path) -> None:
    version = spec.release.version
    build_module(
        java_home=spec.java_home,
        install_dir=spec.install_dir,
        source=_STUB_SOURCE,
        module=module,
        jar_name="rule-framework-stub.jar",
        extra_jars=[collections_jar],
        descriptor=(
            "description=Stand-in for the rule-framework module (es-neural)\n"
            f"version={version}\nname={STUB_MODULE}\nclassname={_STUB_CLASS}\n"
            f"java.version=21\nopensearch.version={version}\nextended.plugins=\n"
            "has.native.controller=false\n"
        ),
    )


@dataclass
class SecureOpenSearch:
    """PKI of a secured OpenSearch node, kept in ``folder`` (mode 0700), made on first use;
    ``configure`` is the :class:`~es_neural.engines.LocalEngines` hook."""

    folder: Path
    admin_password: SecretStr = field(repr=False)
    days: int = 30
    ca_dn: str = "CN=es-neural test CA"
    progress: Callable[[str], None] = field(default=lambda _m: None, repr=False)
    _java_home: Path | None = field(default=None, init=False, repr=False)

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca" / "ca.pem"

    def admin_settings(self, url: str) -> EngineSettings:
        """Settings of the administrator (node management and provisioning only)."""
        return EngineSettings(
            urls=(url,), username=ADMIN_USER, password=self.admin_password, ca_certs=self.ca_cert
        )

    def _store_password(self) -> SecretStr:
        path = self.folder / "keystore-password"
        if not path.is_file():
            path.write_text(secrets.token_urlsafe(18))
            path.chmod(0o600)
        return SecretStr(path.read_text().strip())

    def _keytool(self, java_home: Path) -> _KeyTool:
        return _KeyTool(java_home, self._store_password(), self.days)

    def new_ca(self, folder: Path, *, dn: str) -> Path:
        """Another CA's certificate (PEM), unrelated to the node's: for refusal tests."""
        if self._java_home is None:
            raise EngineSetupError("new_ca needs the JDK: start a node with this hook first")
        return self._keytool(self._java_home).new_ca(folder, dn)

    def ensure_material(self, java_home: Path) -> None:
        """The CA, the node keystore and the truststore, unless already there."""
        self._java_home = java_home
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        keytool = self._keytool(java_home)
        ca_dir, node_dir = self.folder / "ca", self.folder / "node"
        if not self.ca_cert.is_file() or not (ca_dir / "ca.p12").is_file():
            keytool.new_ca(ca_dir, self.ca_dn)
            shutil.rmtree(node_dir, ignore_errors=True)
        if not (node_dir / "node.p12").is_file() or not (node_dir / "truststore.p12").is_file():
            keytool.node_keystore(ca_dir, node_dir)

    def _admin_hash(self, spec: NodeSpec) -> str:
        tool = spec.install_dir / "plugins" / PLUGIN / "tools" / "hash.sh"
        env = java_tool_env(
            spec.java_home,
            OPENSEARCH_JAVA_HOME=str(spec.java_home),
            ESN_ADMIN_PASSWORD=self.admin_password.get_secret_value(),
        )
        out = run_tool(["bash", str(tool), "-env", "ESN_ADMIN_PASSWORD"], what="hash.sh", env=env)
        hashes = [line.strip() for line in out.splitlines() if line.strip().startswith("$2")]
        if not hashes:
            raise EngineSetupError("hash.sh printed no password hash")
        return hashes[-1]

    def node_config(self) -> dict[str, str]:
        """The ``opensearch.yml`` lines of the node (keystore passwords included: the file is
        the node's own, readable by its user only)."""
        store = self._store_password().get_secret_value()
        config: dict[str, str] = {}
        for layer in ("transport", "http"):
            prefix = f"plugins.security.ssl.{layer}"
            config |= {
                f"{prefix}.keystore_type": "PKCS12",
                f"{prefix}.keystore_filepath": "certs/node.p12",
                f"{prefix}.keystore_alias": "node",
                f"{prefix}.keystore_password": store,
                f"{prefix}.truststore_type": "PKCS12",
                f"{prefix}.truststore_filepath": "certs/truststore.p12",
                f"{prefix}.truststore_password": store,
            }
        return config | {
            "plugins.security.ssl.transport.enforce_hostname_verification": "false",
            "plugins.security.ssl.http.enabled": "true",
            "plugins.security.allow_default_init_securityindex": "true",
            "plugins.security.nodes_dn": f'["{_NODE_DN}"]',
            "plugins.security.authcz.admin_dn": f'["{_ADMIN_DN}"]',
            "plugins.security.restapi.roles_enabled": '["all_access"]',
            "plugins.security.audit.type": "noop",
        }

    def configure(self, spec: NodeSpec) -> None:
        """``LocalEngines`` hook: plugin, keystores, users and settings into the node's config."""
        if spec.engine is not EngineKind.OPENSEARCH:
            raise EngineSetupError(
                f"SecureOpenSearch configures OpenSearch nodes, not {spec.engine.value}"
            )
        plugin = ensure_security_plugin(spec, progress=self.progress)
        self.ensure_material(spec.java_home)
        certs = spec.config_dir / "certs"
        certs.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in ("node.p12", "truststore.p12"):
            shutil.copyfile(self.folder / "node" / name, certs / name)
            (certs / name).chmod(0o600)
        # The plugin's configuration files (config.yml: basic auth against the internal users;
        # action groups, roles, ...): the node's config folder was copied from the install
        # before this hook could add the plugin to it.
        security = spec.config_dir / "opensearch-security"
        shipped = spec.install_dir / "config" / "opensearch-security"
        if not shipped.is_dir():
            raise EngineSetupError(f"{plugin} left no configuration in {shipped}")
        shutil.copytree(shipped, security, dirs_exist_ok=True)
        # Only the administrator: none of the sample configuration's demo users.
        (security / "internal_users.yml").write_text(
            '---\n_meta:\n  type: "internalusers"\n  config_version: 2\n'
            f'{ADMIN_USER}:\n  hash: "{self._admin_hash(spec)}"\n  reserved: true\n'
            '  backend_roles: ["admin"]\n  description: "es-neural administrator"\n'
        )
        (security / "roles_mapping.yml").write_text(
            '---\n_meta:\n  type: "rolesmapping"\n  config_version: 2\n'
            'all_access:\n  reserved: false\n  backend_roles: ["admin"]\n'
        )
        security.chmod(0o700)
        for path in security.iterdir():
            path.chmod(0o600)
        config = spec.config_dir / "opensearch.yml"
        with config.open("a", encoding="utf-8") as out:
            out.write("\n# es-neural: security\n")
            out.writelines(f"{key}: {value}\n" for key, value in self.node_config().items())
        config.chmod(0o600)


class OpenSearchSecurityAdmin(SecurityAdmin):
    """Roles and users over the OpenSearch security plugin's REST API (an administrator's
    ``settings``). Users get their role directly (``opendistro_security_roles``)."""

    def put_role(self, name: str, body: Mapping[str, Any]) -> None:
        self.request("PUT", f"/_plugins/_security/api/roles/{name}", body)

    def put_user(self, name: str, *, password: SecretStr, roles: Sequence[str]) -> None:
        body = {"password": password.get_secret_value(), "opendistro_security_roles": list(roles)}
        self.request("PUT", f"/_plugins/_security/api/internalusers/{name}", body)

    def layer_role(self, index_patterns: Sequence[str], *, write: bool) -> dict[str, Any]:
        return opensearch_layer_role(index_patterns, write=write)

    def grant_api_key(
        self, *, username: str, password: SecretStr, name: str, expiration: str = "1d"
    ) -> SecretStr | None:
        """OpenSearch has no API keys of the Elasticsearch kind: ``None``."""
        return None

    def authenticate(self) -> dict[str, Any]:
        """Who the engine sees for these settings (``user_name``, roles)."""
        answer = self.request("GET", "/_plugins/_security/authinfo")
        if not isinstance(answer, dict):
            raise EngineError(f"GET {self.url}/_plugins/_security/authinfo: no answer")
        return answer
