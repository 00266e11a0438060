"""Settings: engine URLs are parsed once (comma-joined or JSON list) and compared as node sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from es_neural.dialects.errors import redact_url
from es_neural.settings import EngineSettings, Settings, node_identity, parse_urls


def test_comma_joined_environment_variable_becomes_a_tuple(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("ES_NEURAL_OPENSEARCH__URL", raising=False)
    monkeypatch.setenv("ES_NEURAL_ELASTICSEARCH__URL", "http://a:9200, http://b:9200,")
    settings = Settings()
    assert settings.elasticsearch.urls == ("http://a:9200", "http://b:9200")
    assert settings.opensearch.urls == ("http://127.0.0.1:9201",)
    # a derived copy keeps the parsed tuple (the environment is read again underneath it)
    assert settings.with_(replicas=1).elasticsearch.urls == ("http://a:9200", "http://b:9200")
    moved = settings.with_(elasticsearch=EngineSettings(url="http://c:9200").model_dump())
    assert moved.elasticsearch.urls == ("http://c:9200",)


def test_json_list_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ES_NEURAL_OPENSEARCH__URL", '["https://a:9201", "https://b:9201"]')
    assert Settings().opensearch.urls == ("https://a:9201", "https://b:9201")


def test_one_string_a_sequence_or_urls_by_name() -> None:
    assert EngineSettings(url="http://h:1").urls == ("http://h:1",)
    assert EngineSettings(url=["http://h:1", "http://g:2"]).urls == ("http://h:1", "http://g:2")
    assert EngineSettings(urls=("http://h:1",)).urls == ("http://h:1",)
    assert parse_urls("http://a:1,http://b:2") == parse_urls(["http://a:1", " http://b:2 "])


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "at least one"),
        (" , ", "at least one"),
        ("localhost:9200", "not an http"),
        ("ftp://h:21", "not an http"),
        ('["http://a:1"', "JSON list"),
        ('{"url": 1}', "not an http"),
    ],
)
def test_bad_urls_are_refused_when_settings_are_read(value: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        EngineSettings(url=value)


def test_node_identity_ignores_case_credentials_and_trailing_slash() -> None:
    assert node_identity("HTTP://user:pw@Node-1:9200/") == "http://node-1:9200"
    assert node_identity("https://[::1]:9201") == "https://[::1]:9201"
    assert node_identity("http://h:9200/proxy/") == "http://h:9200/proxy"
    assert node_identity("http://h:9200") != node_identity("https://h:9200")


def test_same_cluster_compares_node_sets_not_strings() -> None:
    abc = EngineSettings(url="http://a:9200,http://b:9200,http://c:9200")
    reordered = EngineSettings(url="http://c:9200, http://A:9200/,http://b:9200")
    assert abc.same_cluster(reordered) and reordered.same_cluster(abc)
    assert abc.cluster_key == reordered.cluster_key == "http://a:9200,http://b:9200,http://c:9200"
    assert abc.same_cluster(EngineSettings(url="http://b:9200"))  # one node of it
    assert not abc.same_cluster(EngineSettings(url="http://d:9200"))
    assert not abc.same_cluster(EngineSettings(url="https://a:9200,https://b:9200"))


def test_redact_url_takes_the_tuple_and_the_written_form() -> None:
    creds = EngineSettings(url="https://u:secret@h:9200,http://g:1")
    assert redact_url(creds.urls) == "https://h:9200,http://g:1"
    assert redact_url("https://u:secret@h:9200") == "https://h:9200"
