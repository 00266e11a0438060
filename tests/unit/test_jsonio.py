"""Engine responses are parsed by orjson, and by the standard library where orjson refuses."""

from __future__ import annotations

import json
import math

import pytest

from es_neural.dialects import jsonio
from es_neural.dialects.elasticsearch import ElasticsearchDialect
from es_neural.dialects.opensearch import OpenSearchDialect
from es_neural.settings import EngineSettings


def test_loads_reads_what_json_reads() -> None:
    body = {"hits": {"hits": [{"_id": "a", "_score": 1.25, "_source": {"t": "é ✓"}}]}, "n": 3}
    raw = json.dumps(body, ensure_ascii=False).encode()
    assert jsonio.loads(raw) == jsonio.loads(raw.decode()) == body


def test_what_orjson_refuses_is_read_by_the_standard_library() -> None:
    # a document's _source may hold an integer beyond 64 bits or a NaN literal
    value = jsonio.loads(b'{"big": 123456789012345678901234567890, "nan": NaN}')
    assert value["big"] == 123456789012345678901234567890 and math.isnan(value["nan"])


def test_invalid_json_is_still_an_error() -> None:
    with pytest.raises(ValueError):
        jsonio.loads(b'{"a": ')


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What went through :func:`jsonio.loads`."""
    seen: list[object] = []
    real = jsonio.loads

    def spy(data: bytes | str) -> object:
        seen.append(data)
        return real(data)

    monkeypatch.setattr(jsonio, "loads", spy)
    return seen


@pytest.mark.parametrize("mimetype", ["application/json", "application/vnd.elasticsearch+json"])
def test_the_elasticsearch_client_parses_responses_with_it(
    mimetype: str, parsed: list[object]
) -> None:
    dialect = ElasticsearchDialect(EngineSettings(urls=["http://127.0.0.1:1"]))
    serializer = dialect.client.transport.serializers.get_serializer(mimetype)
    assert serializer.loads(b'{"x": 18446744073709551616}') == {"x": 2**64}
    assert parsed == [b'{"x": 18446744073709551616}']


def test_the_opensearch_client_parses_responses_with_it(parsed: list[object]) -> None:
    dialect = OpenSearchDialect(EngineSettings(urls=["http://127.0.0.1:1"]))
    deserializer = dialect.client.transport.deserializer
    assert deserializer.loads('{"x": 18446744073709551616}', "application/json") == {"x": 2**64}
    assert parsed == ['{"x": 18446744073709551616}']
