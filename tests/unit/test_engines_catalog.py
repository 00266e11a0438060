"""The pure pieces of es_neural.engines: catalog, JDK parsing, node command lines, probing."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from es_neural.engines.catalog import (
    EngineRelease,
    JavaRange,
    MavenArtifact,
    fallback_release,
    parse_pom_dependencies,
    plugin_descriptor,
    release_for,
    version_tuple,
)
from es_neural.engines.install import extract_zip, module_present
from es_neural.engines.jdk import (
    Jdk,
    NoSuitableJdkError,
    choose_jdk,
    discover_jdks,
    java_major,
    parse_java_release,
    require_jdk,
)
from es_neural.engines.local import NodeState
from es_neural.engines.nodes import (
    NodeSpec,
    heap_options,
    node_command,
    node_env,
    node_ports,
    node_settings,
    rewrite_jvm_options,
    url_port,
)
from es_neural.engines.probe import identify_engine, parse_nodes_version, probe
from es_neural.errors import EngineSetupError
from es_neural.settings import EngineKind

ES = EngineKind.ELASTICSEARCH
OS = EngineKind.OPENSEARCH


# -- catalog ---------------------------------------------------------------------------------


def test_elasticsearch_release_coordinates_and_java() -> None:
    release = release_for(ES, "9.5.0")
    assert release.distribution.coordinate == (
        "org.elasticsearch.distribution.integ-test-zip:elasticsearch:9.5.0:zip"
    )
    assert release.distribution.filename == "elasticsearch-9.5.0.zip"
    assert release.java == JavaRange(21)
    assert release.plugins == ()
    assert release.modules == ()
    assert release.name == "elasticsearch-9.5.0"
    assert release_for("elasticsearch", "8.15.0").java == JavaRange(17)


def test_opensearch_release_has_knn_and_modules() -> None:
    release = release_for(OS, "3.6.0")
    assert release.distribution.coordinate == (
        "org.opensearch.distribution.integ-test-zip:opensearch:3.6.0:zip"
    )
    assert [p.coordinate for p in release.plugins] == [
        "org.opensearch.plugin:opensearch-knn:3.6.0.0:zip"
    ]
    assert {m.name for m in release.modules} == {"lang-painless", "mapper-extras"}
    painless = next(m for m in release.modules if m.name == "lang-painless")
    assert painless.jar.coordinate == "org.opensearch.plugin:lang-painless:3.6.0:jar"
    assert release.java.accepts(25) and not release.java.accepts(17)


def test_opensearch_2_needs_the_security_manager() -> None:
    java = release_for(OS, "2.19.1").java
    assert java.accepts(17) and java.accepts(21)
    assert not java.accepts(24) and not java.accepts(25)
    assert java.describe() == "Java 11 to 23"
    assert JavaRange(21).describe() == "Java 21 or newer"


def test_fallback_only_for_opensearch_3() -> None:
    fallback = fallback_release(release_for(OS, "3.6.0"))
    assert fallback is not None and fallback.version == "2.19.1"
    assert fallback_release(fallback) is None
    assert fallback_release(release_for(ES, "9.5.0")) is None


@pytest.mark.parametrize(
    ("engine", "version"), [(ES, "7.17.0"), (OS, "1.3.0"), (ES, "9.5"), (OS, "latest")]
)
def test_unsupported_or_malformed_versions_are_refused(engine: EngineKind, version: str) -> None:
    with pytest.raises(EngineSetupError):
        release_for(engine, version)


def test_version_tuple() -> None:
    assert version_tuple("9.5.0") == (9, 5, 0)
    assert release_for(OS, "3.6.0").major == 3


def test_maven_artifact_packaging_copy() -> None:
    jar = MavenArtifact("org.opensearch.plugin", "lang-painless", "3.6.0")
    pom = jar.with_packaging("pom")
    assert pom.coordinate == "org.opensearch.plugin:lang-painless:3.6.0:pom"
    assert pom.filename == "lang-painless-3.6.0.pom"
    assert jar.packaging == "jar"


POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <dependencies>
    <dependency>
      <groupId>org.antlr</groupId><artifactId>antlr4-runtime</artifactId>
      <version>4.13.1</version><scope>compile</scope>
    </dependency>
    <dependency>
      <groupId>org.ow2.asm</groupId><artifactId>asm</artifactId><version>9.9.1</version>
    </dependency>
    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>opensearch-scripting-painless-spi</artifactId><version>3.6.0</version>
      <scope>runtime</scope>
    </dependency>
    <dependency>
      <groupId>org.opensearch</groupId><artifactId>opensearch</artifactId>
      <version>3.6.0</version>
    </dependency>
    <dependency>
      <groupId>junit</groupId><artifactId>junit</artifactId><version>4.13</version>
      <scope>test</scope>
    </dependency>
    <dependency>
      <groupId>x</groupId><artifactId>opt</artifactId><version>1</version>
      <optional>true</optional>
    </dependency>
  </dependencies>
</project>
"""


def test_parse_pom_dependencies_keeps_runtime_jars_only() -> None:
    deps = parse_pom_dependencies(POM)
    assert [d.coordinate for d in deps] == [
        "org.antlr:antlr4-runtime:4.13.1:jar",
        "org.ow2.asm:asm:9.9.1:jar",
        "org.opensearch.plugin:opensearch-scripting-painless-spi:3.6.0:jar",
    ]


def test_parse_pom_dependencies_refuses_unresolved_versions_and_bad_xml() -> None:
    pom = (
        "<project><dependencies><dependency><groupId>a</groupId><artifactId>b</artifactId>"
        "<version>${v}</version></dependency></dependencies></project>"
    )
    with pytest.raises(EngineSetupError, match="no usable version"):
        parse_pom_dependencies(pom)
    with pytest.raises(EngineSetupError, match="cannot parse"):
        parse_pom_dependencies("<project>")


def test_plugin_descriptor_for_assembled_module() -> None:
    release = release_for(OS, "2.19.1")
    module = next(m for m in release.modules if m.name == "mapper-extras")
    classname = module.classname_in(["org/opensearch/index/mapper/MapperExtrasPlugin.class"])
    text = plugin_descriptor(module, release, classname)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props == {
        "description": "Adds advanced field mappers",
        "version": "2.19.1",
        "name": "mapper-extras",
        "classname": "org.opensearch.index.mapper.MapperExtrasPlugin",
        "java.version": "11",
        "opensearch.version": "2.19.1",
        "custom.foldername": "",
        "extended.plugins": "",
        "has.native.controller": "false",
    }


def test_module_class_name_follows_the_jar() -> None:
    painless = next(m for m in release_for(OS, "3.6.0").modules if m.name == "lang-painless")
    new = ["org/opensearch/painless/PainlessModulePlugin.class", "x/Y.class"]
    old = ["org/opensearch/painless/PainlessPlugin.class"]
    assert painless.classname_in(new) == "org.opensearch.painless.PainlessModulePlugin"
    assert painless.classname_in(old) == "org.opensearch.painless.PainlessPlugin"
    with pytest.raises(EngineSetupError, match="none of the plugin classes"):
        painless.classname_in(["x/Y.class"])


# -- JDKs ------------------------------------------------------------------------------------


def test_parse_java_release() -> None:
    text = 'IMPLEMENTOR="Eclipse Adoptium"\nJAVA_VERSION="25.0.3"\nJAVA_VERSION_DATE="2026"\n'
    assert parse_java_release(text) == "25.0.3"
    assert parse_java_release("JAVA_VERSION=17.0.15\n") == "17.0.15"
    assert parse_java_release('JAVA_RUNTIME_VERSION="17"\n') is None


@pytest.mark.parametrize(
    ("version", "major"), [("1.8.0_292", 8), ("17.0.15", 17), ("25.0.3", 25), ("21-ea", 21)]
)
def test_java_major(version: str, major: int) -> None:
    assert java_major(version) == major


def test_java_major_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        java_major("abc")


def test_choose_jdk_takes_the_newest_accepted() -> None:
    jdks = [Jdk(Path("/j/17"), "17.0.1", 17), Jdk(Path("/j/25"), "25", 25)]
    assert choose_jdk(jdks, JavaRange(21)) == jdks[1]
    assert choose_jdk(jdks, JavaRange(11, 23)) == jdks[0]
    assert choose_jdk(jdks[:1], JavaRange(21)) is None


def _fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    (home / "release").write_text(f'JAVA_VERSION="{version}"\n')
    return home


def test_discover_and_require_jdk(tmp_path: Path) -> None:
    _fake_jdk(tmp_path, "jdk-17", "17.0.15")
    _fake_jdk(tmp_path, "temurin-25", "25.0.3")
    (tmp_path / "not-a-jdk").mkdir()
    (tmp_path / "alias-17").symlink_to(tmp_path / "jdk-17")
    jdks = discover_jdks([tmp_path, tmp_path / "missing"])
    assert sorted(j.major for j in jdks) == [17, 25]  # the symlink collapses
    es = require_jdk(release_for(ES, "9.5.0"), java_home=None, roots=[tmp_path])
    assert es.major == 25
    os2 = require_jdk(release_for(OS, "2.19.1"), java_home=None, roots=[tmp_path])
    assert os2.major == 17


def test_require_jdk_says_what_to_install(tmp_path: Path) -> None:
    _fake_jdk(tmp_path, "jdk-17", "17.0.15")
    with pytest.raises(NoSuitableJdkError, match=r"needs Java 21 or newer.*Temurin 21"):
        require_jdk(release_for(ES, "9.5.0"), java_home=None, roots=[tmp_path])
    with pytest.raises(NoSuitableJdkError, match="is Java 17"):
        require_jdk(release_for(ES, "9.5.0"), java_home=tmp_path / "jdk-17")
    with pytest.raises(EngineSetupError, match="no bin/java"):
        require_jdk(release_for(ES, "9.5.0"), java_home=tmp_path / "nothing")


# -- nodes -----------------------------------------------------------------------------------


def test_url_port() -> None:
    assert url_port("http://127.0.0.1:9200") == 9200
    assert url_port("https://search.example.com") == 443
    assert url_port("http://localhost") == 80
    with pytest.raises(EngineSetupError):
        url_port("localhost:abc")


def test_node_ports() -> None:
    assert node_ports(9200, 0) == (9200, 9300)
    assert node_ports(9200, 2) == (9220, 9320)
    assert node_ports(9201, 1) == (9211, 9311)
    with pytest.raises(ValueError):
        node_ports(9200, -1)
    with pytest.raises(EngineSetupError):
        node_ports(65530, 0)


def test_heap_options() -> None:
    assert heap_options("1g") == "-Xms1g -Xmx1g"
    assert heap_options(" 512m ") == "-Xms512m -Xmx512m"
    with pytest.raises(EngineSetupError):
        heap_options("1 gb")


def _spec(release: EngineRelease, *, node: int = 0, nodes: int = 1) -> NodeSpec:
    return NodeSpec(
        release=release,
        node=node,
        nodes=nodes,
        base_http_port=9200 if release.engine is ES else 9201,
        install_dir=Path("/h/engines") / release.name,
        node_dir=Path("/h/run") / release.engine.value / f"node{node}",
        java_home=Path("/usr/lib/jvm/temurin-25"),
        heap="1g",
    )


def test_single_node_elasticsearch_settings_and_command() -> None:
    spec = _spec(release_for(ES, "9.5.0"))
    assert node_settings(spec) == {
        "cluster.name": "es-neural-elasticsearch",
        "node.name": "elasticsearch-node0",
        "network.host": "127.0.0.1",
        "http.port": "9200",
        "transport.port": "9300",
        "path.data": "/h/run/elasticsearch/node0/data",
        "path.logs": "/h/run/elasticsearch/node0/logs",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        "discovery.type": "single-node",
        "xpack.security.enabled": "false",
    }
    command = node_command(spec)
    assert command[0] == "/h/engines/elasticsearch-9.5.0/bin/elasticsearch"
    assert "-Ediscovery.type=single-node" in command
    assert "-Expack.security.enabled=false" in command


def test_multi_node_opensearch_settings() -> None:
    spec = _spec(release_for(OS, "3.6.0"), node=1, nodes=3)
    settings = node_settings(spec)
    assert settings["http.port"] == "9211"
    assert settings["transport.port"] == "9311"
    assert settings["node.name"] == "opensearch-node1"
    assert "discovery.type" not in settings
    assert "xpack.security.enabled" not in settings
    assert settings["discovery.seed_hosts"] == "127.0.0.1:9301,127.0.0.1:9311,127.0.0.1:9321"
    assert settings["cluster.initial_cluster_manager_nodes"] == (
        "opensearch-node0,opensearch-node1,opensearch-node2"
    )
    es = node_settings(_spec(release_for(ES, "9.5.0"), node=0, nodes=2))
    assert es["cluster.initial_master_nodes"] == "elasticsearch-node0,elasticsearch-node1"


def test_node_env_sets_java_heap_conf_and_drops_java_home() -> None:
    base = {"PATH": "/usr/bin", "JAVA_HOME": "/usr/lib/jvm/java-17", "ES_JAVA_OPTS": "-Xmx8g"}
    env = node_env(_spec(release_for(ES, "9.5.0")), base)
    assert env["ES_JAVA_HOME"] == "/usr/lib/jvm/temurin-25"
    assert env["ES_JAVA_OPTS"] == "-Xms1g -Xmx1g"
    assert env["ES_PATH_CONF"] == "/h/run/elasticsearch/node0/config"
    assert env["ES_TMPDIR"] == "/h/run/elasticsearch/node0/tmp"
    assert env["PATH"] == "/usr/bin"
    assert "JAVA_HOME" not in env
    assert base["ES_JAVA_OPTS"] == "-Xmx8g"  # the caller's mapping is left alone
    os_env = node_env(_spec(release_for(OS, "3.6.0")), {})
    assert os_env["OPENSEARCH_JAVA_OPTS"] == "-Xms1g -Xmx1g"
    assert os_env["OPENSEARCH_PATH_CONF"] == "/h/run/opensearch/node0/config"


def test_rewrite_jvm_options_points_relative_paths_at_the_node() -> None:
    text = (
        "-XX:HeapDumpPath=data\n-XX:ErrorFile=logs/hs_err_pid%p.log\n"
        "9-:-Xlog:gc*,gc+age=trace,safepoint:file=logs/gc.log:utctime,pid,tags\n-Xms1g\n"
    )
    out = rewrite_jvm_options(text, logs_dir=Path("/n/logs"), data_dir=Path("/n/data"))
    assert out == (
        "-XX:HeapDumpPath=/n/data\n-XX:ErrorFile=/n/logs/hs_err_pid%p.log\n"
        "9-:-Xlog:gc*,gc+age=trace,safepoint:file=/n/logs/gc.log:utctime,pid,tags\n-Xms1g\n"
    )


def test_node_state_round_trip() -> None:
    state = NodeState(
        engine="opensearch",
        version="3.6.0",
        node=0,
        nodes=1,
        pid=123,
        pgid=123,
        http_port=9201,
        transport_port=9301,
        url="http://127.0.0.1:9201",
        install_dir="/h/engines/opensearch-3.6.0",
        java_home="/usr/lib/jvm/temurin-25",
        started_at=1.5,
    )
    assert NodeState.from_json(state.to_json()) == state


# -- probing ---------------------------------------------------------------------------------


def test_identify_engine() -> None:
    health = {"cluster_name": "c", "status": "green"}
    assert identify_engine({"X-Elastic-Product": "Elasticsearch"}, health) is ES
    assert identify_engine({"content-type": "application/json"}, health) is OS
    assert identify_engine({}, {"hello": "world"}) is None


def test_parse_nodes_version() -> None:
    assert parse_nodes_version({"nodes": {"abc": {"version": "9.5.0"}}}) == "9.5.0"
    assert parse_nodes_version({"nodes": {}}) is None
    assert parse_nodes_version({}) is None


def test_probe_of_a_closed_port_is_not_answering() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    answer = probe(f"http://127.0.0.1:{port}", timeout=1.0)
    assert not answer.answering
    assert not answer.healthy
    assert answer.describe() == "nothing answers"


# -- install helpers -------------------------------------------------------------------------


def test_extract_zip_strips_top_folder_and_keeps_modes(tmp_path: Path) -> None:
    archive = tmp_path / "e.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        script = zipfile.ZipInfo("engine-1.0/bin/engine")
        script.external_attr = 0o100755 << 16
        zf.writestr(script, "#!/bin/sh\n")
        zf.writestr("engine-1.0/modules/m/m.jar", b"jar")
        zf.writestr("engine-1.0/modules/m/plugin-descriptor.properties", "name=m\n")
        zf.writestr(zipfile.ZipInfo("engine-1.0/modules/empty/"), b"")
    dest = tmp_path / "out"
    extract_zip(archive, dest)
    assert (dest / "bin" / "engine").stat().st_mode & 0o777 == 0o755
    assert module_present(dest / "modules", "m")
    assert not module_present(dest / "modules", "empty")
    assert not module_present(dest / "modules", "absent")


def test_extract_zip_refuses_escaping_paths(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/../../evil", b"x")
    with pytest.raises(EngineSetupError, match="unsafe"):
        extract_zip(archive, tmp_path / "out")


def test_fetch_without_maven_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from es_neural.engines.install import Installer

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    installer = Installer(tmp_path, progress=lambda _msg: None)
    with pytest.raises(EngineSetupError, match=r"apt-get install maven"):
        installer.fetch(release_for(ES, "9.5.0").distribution)


def test_fetch_reuses_a_cached_download_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from es_neural.engines.install import Installer

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    artifact = release_for(ES, "9.5.0").distribution
    (tmp_path / "downloads").mkdir()
    cached = tmp_path / "downloads" / artifact.filename
    cached.write_bytes(b"zip")
    assert Installer(tmp_path, progress=lambda _msg: None).fetch(artifact) == cached
