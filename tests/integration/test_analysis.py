"""Text analysis on real engines: the analyzer probe, what new indices get (english where the
engine has it, standard and the reason where not), custom analyzers, migration keeping the
source's analyzers, and the english module compiled against both engines' installs.

Whether the shared nodes have ``english`` depends on their modules (OpenSearch's
``analysis-common``; on the Elasticsearch test distribution, es-neural's module, loaded from the
node's next start after ``engines up`` built it): each test reads the node's modules and checks
the probe and the index against them.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import pytest

from es_neural.dialects import BaseDialect, BulkAction
from es_neural.encoders.base import DenseEncoder
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.engines import LocalEngines
from es_neural.engines.analysis import (
    ANALYSIS_COMMON,
    ENGLISH_MODULE,
    ModuleState,
    ensure_english_module,
)
from es_neural.engines.install import Installer
from es_neural.engines.jdk import require_jdk
from es_neural.indices import ensure_index, read_index_info
from es_neural.migrate import MigrationOptions, Migrator
from es_neural.settings import EngineKind, Settings

pytestmark = pytest.mark.engine

FP = ModelFingerprint(kind="dense", name="analysis-test", revision="1", dims=4)
CORE_CUSTOM = {"tokenizer": "standard", "filter": ["lowercase", "stop"]}


def _has_english_module(dialect: BaseDialect) -> bool:
    modules = set(dialect.probe().details.get("modules", ()))
    return ANALYSIS_COMMON in modules or ENGLISH_MODULE in modules


def _ensure(dialect: BaseDialect, name: str, analyzer: Any = "english") -> Any:
    return ensure_index(
        dialect,
        name,
        dense=FP,
        sparse=None,
        text_fields=("title", "text"),
        similarity="cosine",
        analyzer=analyzer,
    )


def _hits(dialect: BaseDialect, index: str, field: str, text: str) -> list[str]:
    body = {"query": {"match": {field: text}}, "_source": False}
    return [h["_id"] for h in dialect.search(index, body)["hits"]["hits"]]


def test_the_probe_agrees_with_the_nodes_modules(dialect: BaseDialect) -> None:
    missing = dialect.analyzer_missing("english")
    assert (missing is None) == _has_english_module(dialect), missing
    if missing is not None:
        assert "english" in missing
    assert dialect.analyzer_missing("standard") is None
    assert "es_neural_no_such" in (dialect.analyzer_missing("es_neural_no_such") or "")
    assert dialect.analyzer_missing(CORE_CUSTOM) is None
    bad_filter = {"tokenizer": "standard", "filter": ["es_neural_no_such_filter"]}
    assert "es_neural_no_such_filter" in (dialect.analyzer_missing(bad_filter) or "")


def test_a_new_index_gets_english_where_the_engine_has_it(
    dialect: BaseDialect, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    has = _has_english_module(dialect)
    with caplog.at_level(logging.WARNING, logger="es_neural.indices"):
        info = _ensure(dialect, index_name)
    expected = "english" if has else "standard"
    assert info.text_analyzer == expected
    assert info.properties["title"]["analyzer"] == info.properties["text"]["analyzer"] == expected
    reason = info.meta["analysis"]["fallback_reason"]
    assert info.meta["analysis"]["requested"] == "english"
    ours = [r.getMessage() for r in caplog.records if r.name == "es_neural.indices"]
    if has:
        assert reason is None and not ours
    else:
        assert "english" in reason
        assert any("english" in m for m in ours)
    doc = {"title": "Marathons", "text": "She runs long distances"}
    assert not dialect.bulk([BulkAction(info.concrete, "d1", doc)], refresh=True).failed
    # stemming: "running" finds "runs" only with english
    assert _hits(dialect, index_name, "text", "running") == (["d1"] if has else [])
    # an existing index keeps what it was created with
    assert _ensure(dialect, index_name, analyzer="standard").text_analyzer == expected


def test_an_analyzer_the_engine_lacks_falls_back_to_standard_with_the_reason(
    dialect: BaseDialect, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="es_neural.indices"):
        info = _ensure(dialect, index_name, analyzer="es_neural_no_such")
    assert info.text_analyzer == "standard"
    assert info.properties["text"]["analyzer"] == "standard"
    assert "es_neural_no_such" in info.meta["analysis"]["fallback_reason"]
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "es_neural.indices" and r.levelno == logging.WARNING
    ]
    assert any("es_neural_no_such" in m and "'standard'" in m for m in warned)


def test_a_custom_analyzer_is_defined_in_the_index(dialect: BaseDialect, index_name: str) -> None:
    info = _ensure(dialect, index_name, analyzer=CORE_CUSTOM)
    assert info.text_analyzer == "es_neural_text"
    assert info.properties["text"]["analyzer"] == "es_neural_text"
    analysis = dialect.get_settings(info.concrete)["analysis"]
    assert analysis["analyzer"]["es_neural_text"] == CORE_CUSTOM
    doc = {"title": "x", "text": "The Quick fox"}
    assert not dialect.bulk([BulkAction(info.concrete, "d1", doc)], refresh=True).failed
    assert _hits(dialect, index_name, "text", "quick") == ["d1"]
    assert _hits(dialect, index_name, "text", "the") == []  # the stop filter


def test_a_definition_the_engine_refuses_at_creation_falls_back(
    dialect: BaseDialect, index_name: str
) -> None:
    # the probe (tokenizer and filters only) passes; creating the index refuses the setting
    refused = {"tokenizer": "standard", "position_increment_gap": "not-a-number"}
    assert dialect.analyzer_missing(refused) is None
    info = _ensure(dialect, index_name, analyzer=refused)
    assert info.text_analyzer == "standard"
    assert "index creation refused it" in info.meta["analysis"]["fallback_reason"]
    assert "analysis" not in dialect.get_settings(info.concrete)


def test_migration_keeps_the_source_analyzers(
    dialect: BaseDialect, index_name: str, tiny_dense: DenseEncoder, tmp_path: Path
) -> None:
    has = _has_english_module(dialect)
    old = f"{index_name}-v1"
    properties: dict[str, Any] = {
        "title": {"type": "text", "analyzer": "plain"},
        "text": {"type": "text", "analyzer": "whitespace"},
    }
    if has:
        properties["abstract"] = {"type": "text", "analyzer": "english"}
    analysis = {"analyzer": {"plain": CORE_CUSTOM}}
    body = {"settings": {"analysis": analysis}, "mappings": {"properties": properties}}
    dialect.create_index(old, body)
    dialect.update_aliases([{"add": {"index": old, "alias": index_name}}])
    doc = {"title": "The survey", "text": "runs fast", "abstract": "She runs"}
    assert not dialect.bulk([BulkAction(old, "d1", doc)], refresh=True).failed

    migrator = Migrator(
        dialect, dense=tiny_dense, options=MigrationOptions(progress=False), state_dir=tmp_path
    )
    report = migrator.run(index_name)
    assert report.switched
    info = read_index_info(dialect, index_name)
    assert info.concrete == f"{index_name}-v2"
    for name, prop in properties.items():
        assert info.properties[name] == prop, name
    assert dialect.get_settings(info.concrete)["analysis"] == dialect.get_settings(old)["analysis"]
    # the analyzers act as before: whitespace keeps case, plain drops stop words
    for index in (old, info.concrete):
        assert _hits(dialect, index, "text", "RUNS") == []
        assert _hits(dialect, index, "text", "runs") == ["d1"]
        assert _hits(dialect, index, "title", "the") == []
        if has:
            assert _hits(dialect, index, "abstract", "running") == ["d1"]


def test_the_module_compiles_against_both_installs(
    running_engines: dict[EngineKind, Settings], settings: Settings, tmp_path: Path
) -> None:
    """Built for each engine against its installed jars (lucene-analysis-common among them), in
    a stand-in install that links the real ``lib/``: once, then found current."""
    manager = LocalEngines(settings)
    for engine in (EngineKind.ELASTICSEARCH, EngineKind.OPENSEARCH):
        release = manager.release(engine)
        real = Installer(settings.home, progress=lambda _m: None).install_dir(release)
        assert any((real / "lib").glob("lucene-analysis-common-*.jar")), real
        install = tmp_path / "engines" / release.name
        (install / "modules").mkdir(parents=True)
        (install / "lib").symlink_to(real / "lib")
        jdk = require_jdk(release, java_home=None)
        built = ensure_english_module(install, release, jdk.home)
        assert built.state is ModuleState.BUILT and built.path is not None
        with zipfile.ZipFile(built.path / f"{ENGLISH_MODULE}.jar") as jar:
            assert "org/esneural/englishanalysis/EnglishAnalysisPlugin.class" in jar.namelist()
        descriptor = (built.path / "plugin-descriptor.properties").read_text()
        assert f"{engine.value}.version={release.version}" in descriptor
        assert ensure_english_module(install, release, jdk.home).state is ModuleState.PRESENT
