"""Authenticated TLS to the engine (issue 7): a secured node of each engine, started by the project.

Each node (``LocalEngines(instance="secure")``, own home, http port = the configured engine port
+ 260, 512 MB heap) has TLS on http with a CA and node certificate generated for this session,
and least-privileged users made through the engine's security API: ``es-neural-layer`` (ingest +
search on ``es-neural-*``) and ``es-neural-search`` (search only).

* Elasticsearch 9.5.0: x-pack security; certificates from ``elasticsearch-certutil``, the
  ``elastic`` password in its keystore, plus an API key of each user.
* OpenSearch 3.4.0 (the newest version whose security plugin Maven Central serves; the default
  nodes run 3.6.0): the security plugin, keystores from the JDK's ``keytool``, an administrator
  whose hash comes from the plugin's ``hash.sh``. OpenSearch has no API keys of that kind.

If a node cannot start, its tests fail. Secrets never appear in logs (every logger at DEBUG),
captured stdout/stderr, error messages, tracebacks or reprs: checked after every test and over
each engine's tests.
"""

from __future__ import annotations

import base64
import logging
import secrets
import shutil
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from es_neural.dialects.base import BaseDialect
from es_neural.dialects.elasticsearch import ElasticsearchDialect
from es_neural.dialects.opensearch import OpenSearchDialect
from es_neural.encoders.base import DenseEncoder, SparseEncoder
from es_neural.engines import LocalEngines
from es_neural.engines.nodes import url_port
from es_neural.engines.probe import access_for, probe
from es_neural.errors import AuthenticationError, EngineTlsError, PermissionDeniedError
from es_neural.ingest.pipeline import IngestOptions
from es_neural.neural_index import NeuralIndex
from es_neural.settings import EngineKind, EngineSettings, Settings
from tests.support.opensearch_security import (
    SECURED_OPENSEARCH_VERSION,
    OpenSearchSecurityAdmin,
    SecureOpenSearch,
)
from tests.support.security import (
    LayerAccess,
    SecureElasticsearch,
    SecurityAdmin,
    provision_layer_access,
)

pytestmark = pytest.mark.engine

ES = EngineKind.ELASTICSEARCH
OS = EngineKind.OPENSEARCH
DIALECTS: dict[EngineKind, type[BaseDialect]] = {ES: ElasticsearchDialect, OS: OpenSearchDialect}
PORT_OFFSET = 260
PATTERN = "es-neural-*"
DOCS = [
    {"id": "1", "title": "python", "text": "python programming language code"},
    {"id": "2", "title": "search", "text": "neural search engine retrieval ranking"},
    {"id": "3", "title": "cells", "text": "cancer cells gene protein study"},
    {"id": "4", "title": "fox", "text": "the quick brown fox jumps over the lazy dog"},
    {"id": "5", "title": "water", "text": "water energy light heart blood"},
]


@dataclass
class SecureNode:
    engine: EngineKind
    version: str
    url: str
    admin: EngineSettings  # superuser: node management and provisioning only
    layer: LayerAccess  # ingest + search on es-neural-*
    searcher: LayerAccess  # search only
    other_ca: Path  # a CA that did not sign the node's certificate
    secrets: list[str]  # every secret of the session, to look for where it must not be
    home: Path

    @property
    def dialect_class(self) -> type[BaseDialect]:
        return DIALECTS[self.engine]

    def base(self) -> EngineSettings:
        """Client settings of the node without credentials, trusting its CA."""
        return EngineSettings(url=self.url, ca_certs=self.admin.ca_certs)

    def credentials(self, access: LayerAccess) -> list[tuple[str, EngineSettings]]:
        """Every way ``access`` can connect: its password, and its API key where there is one."""
        out = [("password", access.password_settings(self.base()))]
        if access.api_key is not None:
            out.append(("api_key", access.api_key_settings(self.base())))
        return out

    def node_settings(
        self, settings: Settings, creds: EngineSettings, **changes: object
    ) -> Settings:
        version = {"opensearch_version": self.version} if self.engine is OS else {}
        return settings.with_(**{self.engine.value: creds}, home=self.home, **version, **changes)

    def whoami(self, creds: EngineSettings) -> tuple[str, str]:
        """(user name, how it authenticated) as the engine sees ``creds``."""
        if self.engine is ES:
            who = SecurityAdmin(creds).request("GET", "/_security/_authenticate")
            return who["username"], who["authentication_type"]
        info = OpenSearchSecurityAdmin(creds).authenticate()
        return info["user_name"], "realm"


class _Collector(logging.Handler):
    """Every log record of the module, formatted with its exception, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _secret_forms(value: str) -> list[str]:
    """A secret and the encodings it could leak in (an API key's id:key halves, Basic auth)."""
    forms = [value]
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if ":" in decoded:
        forms.append(decoded.split(":", 1)[1])
    return [f for f in forms if len(f) >= 8]


def _leaks(text: str, node: SecureNode) -> list[str]:
    return [s[:4] + "..." for s in node.secrets if s in text]


@pytest.fixture(scope="module")
def log_collector() -> Iterator[_Collector]:
    collector = _Collector()
    root = logging.getLogger()
    level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(level)


def _start_elasticsearch(
    settings: Settings, url: str, home: Path, pki: Path
) -> tuple[LocalEngines, EngineSettings, SecurityAdmin, Path, list[SecretStr]]:
    secure = SecureElasticsearch(pki, elastic_password=SecretStr(secrets.token_urlsafe(18)))
    admin = secure.admin_settings(url)
    manager = LocalEngines(
        settings.with_(elasticsearch=admin, home=home, engine_heap="512m"),
        instance="secure",
        node_settings=secure.node_settings,
        configure=secure.configure,
    )
    _fresh_up(manager, ES)
    other_ca = secure.new_ca(pki / "other-ca", dn="CN=some other CA")
    return manager, admin, SecurityAdmin(admin), other_ca, [secure.elastic_password]


def _start_opensearch(
    settings: Settings, url: str, home: Path, pki: Path
) -> tuple[LocalEngines, EngineSettings, SecurityAdmin, Path, list[SecretStr]]:
    secure = SecureOpenSearch(pki, admin_password=SecretStr(secrets.token_urlsafe(18)))
    admin = secure.admin_settings(url)
    manager = LocalEngines(
        settings.with_(
            opensearch=admin,
            home=home,
            engine_heap="512m",
            opensearch_version=SECURED_OPENSEARCH_VERSION,
        ),
        instance="secure",
        configure=secure.configure,
    )
    _fresh_up(manager, OS)
    other_ca = secure.new_ca(pki / "other-ca", dn="CN=some other CA")
    return manager, admin, OpenSearchSecurityAdmin(admin), other_ca, [secure.admin_password]


def _fresh_up(manager: LocalEngines, engine: EngineKind) -> None:
    manager.down(engine)  # a node left over by an interrupted session
    shutil.rmtree(manager.node_dir(engine, 0) / "data", ignore_errors=True)
    statuses = manager.up(engine, timeout=300)
    if not all(s.healthy for s in statuses):
        raise RuntimeError(f"not healthy: {statuses}")


@pytest.fixture(scope="module", params=[ES, OS], ids=lambda e: e.value)
def secure_node(
    request: pytest.FixtureRequest,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    log_collector: _Collector,
) -> Iterator[SecureNode]:
    """The secured node of one engine, fresh (new CA, passwords, data); stopped afterwards."""
    engine: EngineKind = request.param
    port = url_port(settings.engine_settings(engine).urls[0]) + PORT_OFFSET
    url = f"https://127.0.0.1:{port}"
    # own install: the security pieces are added to it
    home = settings.home / ("secure" if engine is ES else "secure-opensearch")
    pki = tmp_path_factory.mktemp(f"pki-{engine.value}")
    start = _start_elasticsearch if engine is ES else _start_opensearch
    manager: LocalEngines | None = None
    try:
        manager, admin, security, other_ca, own = start(settings, url, home, pki)
        layer = provision_layer_access(
            security,
            index_patterns=[PATTERN],
            username="es-neural-layer",
            password=SecretStr(secrets.token_urlsafe(18)),
        )
        searcher = provision_layer_access(
            security,
            index_patterns=[PATTERN],
            username="es-neural-search",
            password=SecretStr(secrets.token_urlsafe(18)),
            write=False,
        )
    except Exception as exc:  # the tests must fail loudly, with the reason
        if manager is not None:
            manager.down(engine)
        pytest.fail(f"the secured {engine.value} node could not be set up: {exc}", pytrace=False)
    raw = [
        s.get_secret_value()
        for s in (*own, layer.password, layer.api_key, searcher.password, searcher.api_key)
        if s is not None
    ]
    log_collector.lines.clear()  # the log test covers this node's tests
    try:
        yield SecureNode(
            engine=engine,
            version=(
                settings.elasticsearch_version if engine is ES else SECURED_OPENSEARCH_VERSION
            ),
            url=url,
            admin=admin,
            layer=layer,
            searcher=searcher,
            other_ca=other_ca,
            secrets=[form for value in raw for form in _secret_forms(value)],
            home=home,
        )
    finally:
        manager.down(engine)


@pytest.fixture(autouse=True)
def _no_secret_in_output(
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    node: SecureNode | None = request.node.funcargs.get("secure_node")
    if node is None:
        return
    out, err = capfd.readouterr()
    leaks = _leaks(caplog.text + out + err, node)
    if leaks:
        pytest.fail(f"secrets in the log or captured output: {leaks}")


def _neural_index(
    node: SecureNode,
    settings: Settings,
    creds: EngineSettings,
    name: str,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    home: Path,
) -> NeuralIndex:
    return NeuralIndex(
        name,
        settings=node.node_settings(settings, creds, engine=node.engine, index_prefix="").with_(
            home=home
        ),
        dense=dense,
        sparse=sparse,
    )


def _ingest_and_search(index: NeuralIndex) -> None:
    report = index.ingest(DOCS, options=IngestOptions(progress=False))
    assert report.indexed == len(DOCS) and report.dead_lettered == 0
    assert index.count() == len(DOCS)
    response = index.search("python programming code", size=3)
    assert response.hits, "no hits"
    assert response.hits[0].id == "1"  # BM25 alone puts it first; fusion keeps it there


def _unique(prefix: str = "es-neural-sec") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _drop(node: SecureNode, name: str) -> None:
    admin = node.dialect_class(node.admin)
    try:
        for concrete in admin.resolve_alias(name):
            admin.delete_index(concrete)
        admin.delete_index(name)
    finally:
        admin.close()


# ----- the layer with least privilege -----


def test_least_privileged_layer_ingests_and_searches(
    secure_node: SecureNode,
    settings: Settings,
    tiny_dense: DenseEncoder,
    tiny_sparse: SparseEncoder,
    tmp_path: Path,
) -> None:
    ways = secure_node.credentials(secure_node.layer)
    assert [w for w, _ in ways] == (
        ["password", "api_key"] if secure_node.engine is ES else ["password"]
    )
    for credential, creds in ways:
        assert creds.verify_certs and creds.ca_certs is not None
        name = _unique()
        index = _neural_index(secure_node, settings, creds, name, tiny_dense, tiny_sparse, tmp_path)
        try:
            _ingest_and_search(index)
            # who the engine saw: the layer user, authenticated by password or API key
            assert secure_node.whoami(creds) == (
                "es-neural-layer",
                "realm" if credential == "password" else "api_key",
            )
            # the alias swap of a new version works with the layer's privileges
            dialect = index.dialect
            dialect.create_index(f"{name}-v2", {"settings": {"number_of_replicas": 0}})
            assert dialect.swap_alias(name, f"{name}-v2") == [f"{name}-v1"]
            dialect.delete_index(f"{name}-v1")
            index.delete()
            assert not dialect.index_exists(f"{name}-v1") and not dialect.index_exists(name)
        finally:
            index.close()
            _drop(secure_node, name)


def test_search_only_user_searches_but_cannot_write(
    secure_node: SecureNode,
    settings: Settings,
    tiny_dense: DenseEncoder,
    tiny_sparse: SparseEncoder,
    tmp_path: Path,
) -> None:
    name = _unique()
    writer_creds = secure_node.credentials(secure_node.layer)[0][1]
    reader_creds = secure_node.credentials(secure_node.searcher)[-1][1]  # its API key on ES
    writer = _neural_index(
        secure_node, settings, writer_creds, name, tiny_dense, tiny_sparse, tmp_path
    )
    reader = _neural_index(
        secure_node, settings, reader_creds, name, tiny_dense, tiny_sparse, tmp_path
    )
    try:
        writer.ingest(DOCS, options=IngestOptions(progress=False))
        response = reader.search("neural search engine", size=3)
        assert response.hits[0].id == "2"
        with pytest.raises(PermissionDeniedError) as caught:
            reader.ingest(
                [{"id": "9", "title": "x", "text": "more text"}],
                options=IngestOptions(progress=False),
            )
        message = str(caught.value)
        assert secure_node.url in message and "HTTP 403" in message
        assert "indices:data/write/bulk" in message and "es-neural-search" in message
        assert writer.count() == len(DOCS)
    finally:
        writer.close()
        reader.close()
        _drop(secure_node, name)


def test_index_outside_the_pattern_is_refused(secure_node: SecureNode) -> None:
    for _, creds in secure_node.credentials(secure_node.layer):
        dialect = secure_node.dialect_class(creds)
        name = _unique("other")
        try:
            with pytest.raises(PermissionDeniedError) as caught:
                dialect.create_index(name, {})
            message = str(caught.value)
            assert caught.value.status == 403
            assert f"permission denied for {'user' if creds.username else 'the API key'}" in message
            assert "indices:admin/create" in message
            if secure_node.engine is ES:  # OpenSearch names the action and the user, not the index
                assert name in message
            assert not secure_node.dialect_class(secure_node.admin).index_exists(name)
        finally:
            dialect.close()


# ----- refusals: typed, clear, without secrets -----


@pytest.mark.parametrize("dialect_class", [ElasticsearchDialect, OpenSearchDialect])
def test_wrong_password_is_a_clear_authentication_error(
    secure_node: SecureNode, dialect_class: type[BaseDialect]
) -> None:
    wrong = SecretStr("not-the-password-" + secrets.token_hex(6))
    creds = EngineSettings(
        url=secure_node.url,
        username="es-neural-layer",
        password=wrong,
        ca_certs=secure_node.admin.ca_certs,
    )
    dialect = dialect_class(creds)
    try:
        with pytest.raises(AuthenticationError) as caught:
            dialect.count("es-neural-anything")
    finally:
        dialect.close()
    error = caught.value
    assert not isinstance(error, PermissionDeniedError) and error.status == 401
    message = str(error)
    assert secure_node.url in message and "'es-neural-layer'" in message
    assert "refused the credentials" in message
    text = message + repr(error) + "".join(traceback.format_exception(error))
    assert wrong.get_secret_value() not in text
    assert not _leaks(text, secure_node)


@pytest.mark.parametrize("dialect_class", [ElasticsearchDialect, OpenSearchDialect])
def test_wrong_api_key_is_a_clear_authentication_error(
    secure_node: SecureNode, dialect_class: type[BaseDialect]
) -> None:
    fake = base64.b64encode(f"{secrets.token_hex(10)}:{secrets.token_hex(11)}".encode()).decode()
    creds = EngineSettings(
        url=secure_node.url, api_key=SecretStr(fake), ca_certs=secure_node.admin.ca_certs
    )
    # (the OpenSearch dialect sends a key as "Bearer", OpenSearch's token scheme, which
    # Elasticsearch reads as an OAuth token: a 401 all the same)
    dialect = dialect_class(creds)
    try:
        with pytest.raises(AuthenticationError) as caught:
            dialect.health()
    finally:
        dialect.close()
    message = str(caught.value)
    assert caught.value.status == 401 and secure_node.url in message
    assert "the API key" in message
    text = message + repr(caught.value) + "".join(traceback.format_exception(caught.value))
    assert fake not in text and base64.b64decode(fake).decode().split(":")[1] not in text


@pytest.mark.parametrize("dialect_class", [ElasticsearchDialect, OpenSearchDialect])
def test_unknown_ca_is_a_clear_tls_error(
    secure_node: SecureNode, dialect_class: type[BaseDialect]
) -> None:
    for ca_certs, expected in (
        (
            secure_node.other_ca,
            "the engine's certificate is not signed by the configured CA "
            f"(ca_certs={secure_node.other_ca})",
        ),
        (None, "not signed by a CA this machine trusts: set ca_certs"),
    ):
        creds = secure_node.layer.password_settings(
            EngineSettings(url=secure_node.url, ca_certs=ca_certs)
        )
        dialect = dialect_class(creds)
        try:
            with pytest.raises(EngineTlsError) as caught:
                dialect.health()
        finally:
            dialect.close()
        message = str(caught.value)
        assert expected in message and secure_node.url in message
        assert not caught.value.transient
        assert not _leaks(message + "".join(traceback.format_exception(caught.value)), secure_node)


@pytest.mark.parametrize("dialect_class", [ElasticsearchDialect, OpenSearchDialect])
def test_plain_http_to_the_https_node_is_refused(
    secure_node: SecureNode, dialect_class: type[BaseDialect]
) -> None:
    plain = secure_node.url.replace("https://", "http://")
    for creds in (
        secure_node.layer.password_settings(EngineSettings(url=plain)),  # checked before sending
        EngineSettings(url=plain),  # no credentials: the failed request is explained
    ):
        dialect = dialect_class(creds)
        try:
            with pytest.raises(EngineTlsError) as caught:
                dialect.health()
        finally:
            dialect.close()
        message = str(caught.value)
        assert f"{plain} serves https, but the URL says http://" in message
        if creds.username is not None:
            assert "no credentials were sent" in message


def test_https_to_a_plain_http_node_is_a_clear_tls_error(
    secure_node: SecureNode, settings: Settings, running_engines: dict[EngineKind, Settings]
) -> None:
    """The shared node speaks plain http: asking it for TLS fails with a message saying so."""
    url = settings.engine_settings(secure_node.engine).urls[0].replace("http://", "https://")
    dialect = secure_node.dialect_class(EngineSettings(url=url))
    try:
        with pytest.raises(EngineTlsError, match="does not speak TLS on this port"):
            dialect.health()
    finally:
        dialect.close()


# ----- the manager's probe, reprs, logs -----


def test_probe_and_status_over_tls(secure_node: SecureNode, settings: Settings) -> None:
    answer = probe(secure_node.url, access=access_for(secure_node.admin))
    assert answer.healthy and answer.engine is secure_node.engine
    assert answer.version == secure_node.version
    # a layer user with cluster:monitor probes too
    base = EngineSettings(url=secure_node.url, ca_certs=secure_node.admin.ca_certs)
    assert probe(
        secure_node.url, access=access_for(secure_node.layer.password_settings(base))
    ).healthy
    # without credentials: answering, refused; without the CA: the TLS failure is the error
    anonymous = probe(secure_node.url, access=access_for(base))
    assert anonymous.answering and not anonymous.healthy and "401" in (anonymous.error or "")
    untrusted = probe(secure_node.url)
    assert untrusted.answering and not untrusted.healthy
    assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.error or "")
    manager = LocalEngines(
        secure_node.node_settings(settings, secure_node.admin), instance="secure"
    )
    (status,) = manager.status(secure_node.engine)
    assert status.healthy and status.running and status.url == secure_node.url


def test_secrets_stay_out_of_reprs(secure_node: SecureNode, settings: Settings) -> None:
    base = EngineSettings(url=secure_node.url, ca_certs=secure_node.admin.ca_certs)
    objects: list[object] = [
        secure_node.layer,
        secure_node.searcher,
        secure_node.admin,
        access_for(secure_node.admin),
    ]
    for _, creds in secure_node.credentials(secure_node.layer):
        objects += [creds, secure_node.node_settings(settings, creds)]
    # (the Elasticsearch client refuses an OpenSearch node's answers: its product check)
    classes = DIALECTS.values() if secure_node.engine is ES else [OpenSearchDialect]
    for dialect_class in classes:
        dialect = dialect_class(secure_node.layer.password_settings(base))
        objects += [dialect, dialect.client]
        dialect.health()
        dialect.close()
    text = "\n".join(repr(o) + str(o) for o in objects)
    assert not _leaks(text, secure_node)


def test_no_secret_in_any_log_of_the_module(
    secure_node: SecureNode, log_collector: _Collector
) -> None:
    """Runs last: every record since the node was set up (engine clients at DEBUG included)."""
    assert log_collector.lines, "the collector saw no log records at all"
    assert any("127.0.0.1" in line for line in log_collector.lines)
    assert not _leaks("\n".join(log_collector.lines), secure_node)
