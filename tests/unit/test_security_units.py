"""Pure parts of the engine security support: role bodies, node settings, error messages,
probe credentials (the engine behaviour itself is tested in tests/integration/test_security.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import SecretStr

from es_neural.dialects.errors import auth_error, error_from_status, redact_url, tls_error
from es_neural.engines.javac import build_module, java_tool_env, run_tool
from es_neural.engines.probe import access_for
from es_neural.errors import (
    AuthenticationError,
    EngineSetupError,
    EngineTlsError,
    PermissionDeniedError,
)
from es_neural.settings import EngineSettings
from tests.support.opensearch_security import (
    opensearch_layer_role,
)
from tests.support.security import (
    ANALYSIS_MODULE,
    LayerAccess,
    elasticsearch_security_settings,
    ensure_analysis_module,
    layer_role,
)

SECRET = "s3cret-Passw0rd-xyz"
KEY = base64.b64encode(b"key-id-123:key-secret-456789").decode()


def test_layer_roles() -> None:
    assert layer_role(["es-neural-*"]) == {
        "cluster": ["monitor"],
        "indices": [
            {
                "names": ["es-neural-*"],
                "privileges": ["read", "view_index_metadata", "create_index", "write", "manage"],
            }
        ],
    }
    search = layer_role(["a-*", "b"], write=False)
    assert search["indices"] == [
        {"names": ["a-*", "b"], "privileges": ["read", "view_index_metadata"]}
    ]
    with pytest.raises(ValueError):
        layer_role([])


def test_opensearch_layer_roles() -> None:
    writer = opensearch_layer_role(["es-neural-*"])
    assert writer["cluster_permissions"] == ["cluster_monitor", "cluster_composite_ops"]
    (grant,) = writer["index_permissions"]
    assert grant["index_patterns"] == ["es-neural-*"]
    assert grant["allowed_actions"] == [
        "read",
        "indices:admin/mappings/get",
        "indices:admin/aliases/get",
        "write",
        "create_index",
        "manage",
    ]
    reader = opensearch_layer_role(["a-*"], write=False)
    assert reader["cluster_permissions"] == ["cluster_monitor", "cluster_composite_ops_ro"]
    assert "write" not in reader["index_permissions"][0]["allowed_actions"]
    assert "manage" not in reader["index_permissions"][0]["allowed_actions"]
    with pytest.raises(ValueError):
        opensearch_layer_role([])


def test_node_settings_turn_on_security_and_http_tls() -> None:
    settings = elasticsearch_security_settings()
    assert settings["xpack.security.enabled"] == "true"
    assert settings["xpack.security.http.ssl.enabled"] == "true"
    assert settings["xpack.security.http.ssl.certificate_authorities"] == "certs/ca.crt"
    assert settings["xpack.security.authc.api_key.enabled"] == "true"
    assert not any("transport.ssl" in key for key in settings)  # single node: not needed


def test_redact_url() -> None:
    assert redact_url("https://u:pw@h:9200") == "https://h:9200"
    assert redact_url("http://a:1, https://x:y@b:2/p") == "http://a:1,https://b:2/p"
    assert redact_url("https://h:9200") == "https://h:9200"


def test_status_403_is_permission_denied_and_an_authentication_error() -> None:
    error = error_from_status(403, "no")
    assert isinstance(error, PermissionDeniedError) and isinstance(error, AuthenticationError)
    assert type(error_from_status(401, "no")) is AuthenticationError


def test_auth_error_messages_name_url_and_user_never_secrets() -> None:
    by_password = EngineSettings(
        url=f"https://layer:{SECRET}@h:9200", username="layer", password=SecretStr(SECRET)
    )
    refused = auth_error("Elasticsearch", by_password, 401, "security_exception: unable")
    assert type(refused) is AuthenticationError and refused.status == 401
    assert str(refused).startswith("Elasticsearch at https://h:9200 refused the credentials")
    assert "user 'layer'" in str(refused) and SECRET not in str(refused)
    by_key = EngineSettings(url="https://h:9200", api_key=SecretStr(KEY))
    denied = auth_error("OpenSearch", by_key, 403, "action [indices:admin/create] ...")
    assert isinstance(denied, PermissionDeniedError)
    assert "permission denied for the API key (HTTP 403)" in str(denied)
    assert KEY not in str(denied) + repr(denied)


@pytest.mark.parametrize(
    ("detail", "ca", "expected"),
    [
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local "
            "issuer certificate (_ssl.c:1006)",
            Path("/etc/ca.crt"),
            "not signed by the configured CA (ca_certs=/etc/ca.crt)",
        ),
        (
            "certificate verify failed: self-signed certificate in certificate chain",
            None,
            "not signed by a CA this machine trusts: set ca_certs",
        ),
        (
            "certificate verify failed: Hostname mismatch, certificate is not valid for 'x'",
            Path("/etc/ca.crt"),
            "not valid for this host name",
        ),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number", None, "does not speak TLS"),
        ("something else entirely", None, "the TLS handshake failed"),
    ],
)
def test_tls_error_says_what_went_wrong(detail: str, ca: Path | None, expected: str) -> None:
    error = tls_error("Elasticsearch", EngineSettings(url="https://h:1", ca_certs=ca), detail)
    assert isinstance(error, EngineTlsError) and not error.transient
    assert expected in str(error) and "https://h:1" in str(error)


def test_probe_access_from_settings() -> None:
    basic = access_for(
        EngineSettings(url="https://h:1", username="u", password=SecretStr(SECRET), ca_certs=None)
    )
    assert basic.tls and basic.verify
    expected = base64.b64encode(f"u:{SECRET}".encode()).decode()
    assert basic.headers()["Authorization"] == f"Basic {expected}"
    assert SECRET not in repr(basic) and expected not in repr(basic)
    key = access_for(EngineSettings(url="http://h:1", api_key=SecretStr(KEY)))
    assert not key.tls and key.headers()["Authorization"] == f"ApiKey {KEY}"
    assert "Authorization" not in access_for(EngineSettings(url="http://h:1")).headers()
    unverified = access_for(EngineSettings(url="https://h:1", verify_certs=False))
    assert not unverified.ssl_context().check_hostname


def test_layer_access_settings_and_repr() -> None:
    access = LayerAccess("layer", SecretStr(SECRET), SecretStr(KEY), role="r")
    base = EngineSettings(url="https://h:1", ca_certs=Path("/ca.crt"))
    by_password = access.password_settings(base)
    assert by_password.username == "layer" and by_password.api_key is None
    assert by_password.ca_certs == Path("/ca.crt") and by_password.verify_certs
    by_key = access.api_key_settings(base)
    assert by_key.username is None and by_key.password is None
    assert by_key.api_key is not None and by_key.api_key.get_secret_value() == KEY
    text = repr(access) + str(access) + repr(by_password) + repr(by_key)
    assert SECRET not in text and KEY not in text


def test_analysis_module_never_goes_into_an_install_of_default_nodes(tmp_path: Path) -> None:
    install = tmp_path / "engines" / "elasticsearch-9.5.0"
    (install / "modules").mkdir(parents=True)
    (tmp_path / "run" / "elasticsearch").mkdir(parents=True)  # default nodes ran from this home
    with pytest.raises(EngineSetupError, match=r"give it its own settings\.home"):
        ensure_analysis_module(install, tmp_path / "jdk", "9.5.0")
    assert not (install / "modules" / ANALYSIS_MODULE).exists()
    # an install that has the module already is left as it is (no JDK needed)
    (install / "modules" / ANALYSIS_MODULE).mkdir()
    (install / "modules" / ANALYSIS_MODULE / "plugin-descriptor.properties").write_text("x")
    assert ensure_analysis_module(install, tmp_path / "jdk", "9.5.0").name == ANALYSIS_MODULE


def test_java_tool_helpers_stay_in_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``es_neural.engines.javac`` (used by the secured test nodes and the ``english`` module):
    a tool's stdout, or a typed error with its last lines and no Java stack frames."""
    monkeypatch.setenv("JAVA_HOME", "/somewhere")
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-Xmx1g")
    env = java_tool_env(tmp_path, ES_JAVA_HOME=str(tmp_path))
    assert "JAVA_HOME" not in env and "JAVA_TOOL_OPTIONS" not in env
    assert env["ES_JAVA_HOME"] == str(tmp_path) and env["PATH"]
    assert run_tool(["sh", "-c", "cat"], what="cat", stdin="through stdin") == "through stdin"
    script = "echo first; echo 'Exception: it broke'; echo '    at org.x.Y(Y.java:1)'; exit 3"
    with pytest.raises(EngineSetupError) as e:
        run_tool(["sh", "-c", script], what="tool")
    assert str(e.value) == "tool failed (exit 3): first\nException: it broke"  # no stack frame
    with pytest.raises(EngineSetupError, match="could not run"):
        run_tool([str(tmp_path / "missing")], what="missing")
    with pytest.raises(EngineSetupError, match="has no javac: a JDK"):
        build_module(
            java_home=tmp_path,
            install_dir=tmp_path,
            source=tmp_path / "X.java",
            module=tmp_path / "modules" / "x",
            jar_name="x.jar",
            descriptor="",
        )
