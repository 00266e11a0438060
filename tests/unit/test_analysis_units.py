"""Text analysis without an engine: the analyzer in index bodies, what ``_meta`` records, the
migration plan's view of the english module, and the module's source, descriptor and build
refusals (the build and the probe against real installs and nodes: tests/integration)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from es_neural.dialects import BaseDialect, IndexSpec, dialect_class
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.engines.analysis import (
    ANALYSIS_COMMON,
    ENGLISH_MODULE,
    PROVIDED_ANALYZERS,
    ModuleState,
    english_module_descriptor,
    english_plugin_source,
    ensure_english_module,
    install_english_module,
    needs_english_module,
)
from es_neural.engines.catalog import release_for
from es_neural.errors import ConfigurationError, EngineSetupError
from es_neural.indices import DEFAULT_ANALYZER, TextAnalysis, resolve_text_analyzer
from es_neural.migrate.plan import (
    MODULE_ANALYSIS,
    Models,
    PlanOptions,
    SourceIndex,
    TargetContext,
    build_plan,
)
from es_neural.settings import EngineKind, EngineSettings, Settings

ES, OS = EngineKind.ELASTICSEARCH, EngineKind.OPENSEARCH
ES_MODULES = frozenset({"apm", "transport-netty4", "x-pack-core", "x-pack-security"})


def dialect(engine: EngineKind) -> BaseDialect:
    return dialect_class(engine)(EngineSettings(url="http://127.0.0.1:1"))


# ----- index bodies and _meta -----


@pytest.mark.parametrize("engine", [ES, OS])
def test_text_fields_take_the_spec_analyzer_and_source_fields_keep_theirs(
    engine: EngineKind,
) -> None:
    d = dialect(engine)
    plain = d.index_body(IndexSpec(dims=4))["mappings"]["properties"]
    assert plain["title"] == plain["text"] == {"type": "text", "analyzer": "standard"}
    spec = IndexSpec(
        dims=4,
        text_analyzer="english",
        source_properties={"title": {"type": "text", "analyzer": "whitespace"}},
    )
    props = d.index_body(spec)["mappings"]["properties"]
    assert props["text"] == {"type": "text", "analyzer": "english"}
    assert props["title"] == {"type": "text", "analyzer": "whitespace"}


def test_text_analysis_meta_and_settings() -> None:
    english = TextAnalysis(analyzer="english", requested="english")
    assert english.index_settings() == {}
    assert english.to_meta() == {
        "text_analyzer": "english",
        "requested": "english",
        "fallback_reason": None,
    }
    custom = {"tokenizer": "standard", "filter": ["lowercase", "porter_stem"]}
    mine = TextAnalysis(analyzer="es_neural_text", requested=custom, definition=custom)
    assert mine.index_settings() == {
        "index": {"analysis": {"analyzer": {"es_neural_text": custom}}}
    }
    fallen = mine.fallback("no porter_stem here")
    assert (fallen.analyzer, fallen.definition, fallen.index_settings()) == ("standard", None, {})
    assert fallen.to_meta() == {
        "text_analyzer": "standard",
        "requested": custom,
        "fallback_reason": "no porter_stem here",
    }


def test_the_setting_defaults_to_english_and_takes_a_definition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().analyzer == DEFAULT_ANALYZER == "english"
    monkeypatch.setenv("ES_NEURAL_ANALYZER", '{"tokenizer": "standard", "filter": ["lowercase"]}')
    assert Settings().analyzer == {"tokenizer": "standard", "filter": ["lowercase"]}
    monkeypatch.setenv("ES_NEURAL_ANALYZER", "french")
    assert Settings().analyzer == "french"


def test_standard_needs_no_probe_and_nonsense_is_refused() -> None:
    # the dialect has no reachable engine: asking for the fallback must not call it
    d = dialect(ES)
    assert resolve_text_analyzer(d, "standard") == TextAnalysis("standard", "standard")
    with pytest.raises(ConfigurationError, match="empty"):
        resolve_text_analyzer(d, "  ")
    with pytest.raises(ConfigurationError, match="name or a custom analyzer"):
        resolve_text_analyzer(d, 3)  # type: ignore[arg-type]


# ----- migration plans and the english module -----

DENSE = ModelFingerprint(kind="dense", name="tiny", revision="r1", dims=8)


def _plan(properties: dict[str, Any], settings: dict[str, Any], modules: frozenset[str]) -> Any:
    source = SourceIndex(
        engine=ES,
        name="papers",
        concrete="papers-v1",
        is_alias=True,
        mapping={"properties": properties},
        settings={"number_of_shards": "1", "number_of_replicas": "0", **settings},
        count=10,
    )
    target = TargetContext(
        engine=ES, index="papers-v2", alias="papers", alias_targets=("papers-v1",), modules=modules
    )
    return build_plan(source, target, Models(DENSE, "cosine"), PlanOptions(), dialect(ES))


def test_migration_keeps_the_source_analyzers_and_the_english_module_counts() -> None:
    analysis = {
        "analyzer": {
            "en_keep": {"type": "english", "stem_exclusion": ["running"]},
            "plain": {"tokenizer": "standard", "filter": ["lowercase", "stop"]},
        }
    }
    props = {
        "title": {"type": "text", "analyzer": "plain"},
        "text": {"type": "text", "analyzer": "english", "search_analyzer": "en_keep"},
        "abstract": {"type": "text"},
    }
    bare = _plan(props, {"analysis": analysis}, ES_MODULES)
    assert not bare.ok
    assert any("analyzer 'english'" in p for p in bare.problems)
    assert any("'en_keep' is of type 'english'" in p for p in bare.problems)
    with_module = _plan(props, {"analysis": analysis}, ES_MODULES | {ENGLISH_MODULE}).check()
    body = with_module.body
    assert body["settings"]["index"]["analysis"] == analysis
    kept = body["mappings"]["properties"]
    assert kept["title"] == props["title"] and kept["text"] == props["text"]
    # a source field without an analyzer keeps the engine's default, not es-neural's
    assert kept["abstract"] == {"type": "text"}
    # the module does not stand in for the rest of analysis-common
    stemmer = {"filter": {"s": {"type": "stemmer"}}, "analyzer": {"x": {"filter": ["s"]}}}
    refused = _plan(props, {"analysis": stemmer}, ES_MODULES | {ENGLISH_MODULE})
    assert any("filter 's' is of type 'stemmer'" in p for p in refused.problems)
    # the plan's table names the module es_neural.engines.analysis builds
    assert MODULE_ANALYSIS == {ENGLISH_MODULE: {"analyzer": PROVIDED_ANALYZERS}}


# ----- the module: source, descriptor, build refusals -----


def test_the_plugin_source_per_engine() -> None:
    es = english_plugin_source(ES)
    os_ = english_plugin_source(OS)
    assert "import org.elasticsearch.plugins.AnalysisPlugin;" in es
    assert "import org.opensearch.plugins.AnalysisPlugin;" in os_
    assert not re.search(r"^import org\.elasticsearch\.", os_, re.MULTILINE)
    assert 'Map.of("english"' in es and "new EnglishAnalyzer(" in es
    # the class name matches the file name javac needs
    assert "public class EnglishAnalysisPlugin " in os_


def test_descriptors_name_the_engine_version_and_class() -> None:
    es = english_module_descriptor(release_for(ES, "9.5.0"))
    os_ = english_module_descriptor(release_for(OS, "3.6.0"))
    for text, version_key in (
        (es, "elasticsearch.version=9.5.0"),
        (os_, "opensearch.version=3.6.0"),
    ):
        lines = set(text.splitlines())
        assert version_key in lines
        assert f"name={ENGLISH_MODULE}" in lines
        assert "classname=org.esneural.englishanalysis.EnglishAnalysisPlugin" in lines
        assert "java.version=21" in lines
    assert "extended.plugins=" in os_.splitlines() and "opensearch" not in es


def _fake_install(root: Path, *, analysis_common: bool) -> Path:
    install = root / "engines" / "elasticsearch-9.5.0"
    (install / "modules" / "transport-netty4").mkdir(parents=True)
    (install / "lib").mkdir()
    if analysis_common:
        (install / "modules" / ANALYSIS_COMMON).mkdir()
    return install


def test_not_needed_next_to_analysis_common(tmp_path: Path) -> None:
    install = _fake_install(tmp_path, analysis_common=True)
    assert not needs_english_module(install)
    outcome = ensure_english_module(install, release_for(ES, "9.5.0"), tmp_path / "no-jdk")
    assert outcome.state is ModuleState.NOT_NEEDED and outcome.english_available
    assert not (install / "modules" / ENGLISH_MODULE).exists()


def test_a_failed_build_is_reported_never_raised_by_up(tmp_path: Path) -> None:
    install = _fake_install(tmp_path, analysis_common=False)
    assert needs_english_module(install)
    jre = tmp_path / "jre"
    (jre / "bin").mkdir(parents=True)
    release = release_for(ES, "9.5.0")
    with pytest.raises(EngineSetupError, match="no javac"):
        ensure_english_module(install, release, jre)
    said: list[str] = []
    outcome = install_english_module(install, release, jre, progress=said.append)
    assert outcome.state is ModuleState.FAILED and not outcome.english_available
    assert "no javac" in outcome.reason
    assert any("standard analyzer" in line for line in said)
    # nothing half-built is left in modules/ or beside the install
    assert sorted(p.name for p in (install / "modules").iterdir()) == ["transport-netty4"]
    assert [p.name for p in install.parent.iterdir()] == [install.name]


def test_a_compile_error_is_reported(tmp_path: Path) -> None:
    install = _fake_install(tmp_path, analysis_common=False)
    jdk = tmp_path / "jdk"
    (jdk / "bin").mkdir(parents=True)
    javac = jdk / "bin" / "javac"
    javac.write_text("#!/bin/sh\necho 'EnglishAnalysisPlugin.java:1: error: boom' >&2\nexit 1\n")
    os.chmod(javac, 0o755)
    outcome = install_english_module(install, release_for(ES, "9.5.0"), jdk)
    assert outcome.state is ModuleState.FAILED
    assert "error: boom" in outcome.reason
    assert not (install / "modules" / ENGLISH_MODULE).exists()
