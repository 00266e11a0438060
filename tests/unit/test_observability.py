"""The API's observability pieces without an engine: JSON log lines, the rerank outcome of a
response, the logging configuration `es-neural serve` uses, and the no-op span."""

from __future__ import annotations

import json
import logging
import logging.config

from es_neural.api.observability import ApiMetrics, JsonLogFormatter, rerank_outcome
from es_neural.cli.serve import json_log_config
from es_neural.observability import span
from es_neural.search.models import RerankInfo, SearchResponse, Timings


def _response(rerank: RerankInfo, *, partial: bool = False) -> SearchResponse:
    return SearchResponse(
        hits=[],
        window_total=0,
        leg_totals={},
        offset=0,
        next_cursor=None,
        rerank=rerank,
        timings=Timings(encode_ms=2.0, engine_ms=5.0),
        partial=partial,
    )


def test_json_formatter_writes_one_object_with_the_error_type() -> None:
    record = logging.LogRecord(
        "es_neural.api", logging.WARNING, __file__, 1, "slow %s", ("x",), None
    )
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonLogFormatter().format(record))
    assert entry["level"] == "warning"
    assert entry["message"] == "slow x"
    assert entry["error"] == {"type": "ValueError", "message": "boom"}
    assert "Traceback" not in json.dumps(entry)


def test_rerank_outcomes() -> None:
    assert rerank_outcome(_response(RerankInfo(applied=True, candidates=20))) == "applied"
    assert rerank_outcome(_response(RerankInfo(applied=False, candidates=20))) == "fallback"
    assert rerank_outcome(_response(RerankInfo(applied=False))) == "skipped"


def test_metrics_observe_a_response() -> None:
    metrics = ApiMetrics(queue_depth=lambda: 3)
    metrics.observe_search(_response(RerankInfo(applied=True, candidates=5), partial=True))
    text = metrics.render().decode()
    assert 'es_neural_search_stage_seconds_count{stage="engine"} 1.0' in text
    assert 'es_neural_search_stage_seconds_sum{stage="engine"} 0.005' in text
    assert 'es_neural_rerank_total{outcome="applied"} 1.0' in text
    assert "es_neural_search_partial_total 1.0" in text
    assert "es_neural_search_queue_depth 3.0" in text


def test_the_diversify_stage_has_its_histogram() -> None:
    metrics = ApiMetrics()
    text = metrics.render().decode()
    assert 'es_neural_search_stage_seconds_count{stage="diversify"} 0.0' in text
    response = _response(RerankInfo(applied=False)).model_copy(
        update={"timings": Timings(diversify_ms=3.0)}
    )
    metrics.observe_search(response)
    text = metrics.render().decode()
    assert 'es_neural_search_stage_seconds_sum{stage="diversify"} 0.003' in text


def test_serve_json_logging_configuration_applies(capsys) -> None:  # type: ignore[no-untyped-def]
    config = json_log_config("info")
    logging.config.dictConfig(config)
    try:
        logging.getLogger("es_neural").info("models loaded in %.1f s", 1.25)
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(line)["message"] == "models loaded in 1.2 s"
    finally:
        logging.getLogger("es_neural").handlers.clear()
        logging.getLogger("es_neural").propagate = True


def test_span_is_a_no_op_without_an_sdk() -> None:
    with span("encode", legs=2) as current:
        assert current is not None  # the API's non-recording span
        assert not current.is_recording()
