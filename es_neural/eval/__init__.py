"""Evaluation on BEIR-format data: ``es-neural eval``.

:mod:`.data` loads corpus, queries and qrels and carves validation queries out of a split;
:mod:`.configs` describes configurations (legs, fusion, leaf filter, rerank) and selects them by
name; :mod:`.runner` runs them through the read path and scores them with ranx; :mod:`.runs`
drops a query's own id (BEIR's ``ignore_identical_ids``) and writes TREC run files; :mod:`.tune`
tunes fusion weights and the rerank interpolation on validation; :mod:`.report` writes Markdown,
JSON and a PNG chart; :mod:`.pipeline` ties it together. Importing this package loads neither
torch nor a model.
"""

from __future__ import annotations

from es_neural.eval.configs import (
    LEGS,
    EvalConfig,
    TreeOptions,
    config_key,
    default_configs,
    select_configs,
)
from es_neural.eval.data import BeirData, carve_validation, load_beir
from es_neural.eval.report import ANCHORS, EvalReport, ResultRow, write_chart
from es_neural.eval.runner import (
    DEFAULT_METRICS,
    ConfigRun,
    evaluate,
    fuse_offline,
    latency_summary,
    rerank_ranking,
    run_config,
    to_ranx_run,
)
from es_neural.eval.runs import drop_identical_ids, run_file_name, write_trec_run
from es_neural.eval.tune import TuneResult, simplex_grid, tune_fusion, tune_interpolation

__all__ = [
    "ANCHORS",
    "DEFAULT_METRICS",
    "LEGS",
    "BeirData",
    "ConfigRun",
    "EvalConfig",
    "EvalReport",
    "ResultRow",
    "TreeOptions",
    "TuneResult",
    "carve_validation",
    "config_key",
    "default_configs",
    "drop_identical_ids",
    "evaluate",
    "fuse_offline",
    "latency_summary",
    "load_beir",
    "rerank_ranking",
    "run_config",
    "run_file_name",
    "select_configs",
    "simplex_grid",
    "to_ranx_run",
    "tune_fusion",
    "tune_interpolation",
    "write_chart",
    "write_trec_run",
]
