"""``es-neural eval``, ``es-neural train reranker`` and ``es-neural train dense``.

``eval`` ingests a BEIR folder, tunes fusion (and the rerank interpolation) on validation
queries carved from the training split, runs every configuration on the evaluated split and
prints a table (Markdown), with ``--json`` / ``--markdown`` / ``--chart`` outputs, and with
``--recommend FILE`` the configuration chosen on validation (a search profile).
``train reranker`` fine-tunes the project's cross-encoder on the training split with hard
negatives mined from the engine (see :mod:`es_neural.train`); with ``--pseudo-queries KIND``
(``train reranker`` and ``train dense``) it trains on pseudo-queries built from the corpus
instead of judgments (a folder holding only ``corpus.jsonl`` will do).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from es_neural.cli.data import EngineOpt, fail, settings_or_exit
from es_neural.errors import EsNeuralError
from es_neural.train.pseudo import DEFAULT_PSEUDO_LIMIT

if TYPE_CHECKING:
    from es_neural.train.pipeline import PseudoOptions

__all__ = ["eval_command", "train_app"]

_out = Console()
_err = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Argument(
        help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).",
        exists=True,
        file_okay=False,
    ),
]
IndexOpt = Annotated[
    str | None, typer.Option("--index", "-i", help="Index name (default: the folder's name).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the validation carve.")]
ValOpt = Annotated[
    float,
    typer.Option(
        "--val-fraction", min=0.01, max=0.99, help="Share of train queries for validation."
    ),
]


class PseudoChoice(StrEnum):
    """``--pseudo-queries``: which pseudo-queries (:data:`es_neural.train.pseudo.KINDS`)."""

    TITLE = "title"
    LEAD = "lead"
    ICT = "ict"


PseudoOpt = Annotated[
    PseudoChoice | None,
    typer.Option(
        "--pseudo-queries",
        help=(
            "Train without judgments on pseudo-queries built from the corpus: 'title' (a "
            "title asks for its body), 'lead' (the first sentence asks for the rest) or 'ict' "
            "(another sentence asks for the body without it). Reads only corpus.jsonl."
        ),
        case_sensitive=False,
    ),
]
PseudoLimitOpt = Annotated[
    int,
    typer.Option(
        "--pseudo-limit",
        min=0,
        help="Pseudo-query pairs trained on (drawn by a hash of the id and seed; 0 = all).",
    ),
]


def _pseudo(kind: PseudoChoice | None, limit: int, split: str | None) -> PseudoOptions | None:
    """The pseudo-query options; ``--split`` names judgments, which pseudo-queries never read."""
    from es_neural.train.pipeline import PseudoOptions

    if kind is None:
        return None
    if split is not None:
        raise fail(
            f"--split {escape(split)} and --pseudo-queries exclude each other: pseudo-queries "
            "are built from corpus.jsonl and no split's judgments are read"
        )
    return PseudoOptions(kind.value, limit=limit or None)


def _pseudo_summary(pseudo: PseudoOptions | None, output: Path) -> dict[str, object]:
    """The pseudo-query facts of a run for its printed summary (from its training.json)."""
    if pseudo is None:
        return {}
    facts = json.loads((output / "training.json").read_text(encoding="utf-8"))
    p = facts["data"]["pseudo_queries"]
    return {"pseudo_queries": {k: p[k] for k in ("kind", "pairs_built", "pairs_used")}}


def _log(message: str) -> None:
    _err.print(f"[dim]{escape(message)}[/dim]", highlight=False)


def _names(values: list[str] | None) -> tuple[str, ...]:
    """``--only`` values: each may list several names, comma-separated (a row whose name holds
    a comma is kept whole)."""
    from es_neural.eval.configs import default_configs, split_names

    rows = default_configs(tree=True, rerank=True, interpolation=0.5)
    return split_names(values or (), [c.name for c in rows])


def eval_command(
    data: DataDir,
    split: Annotated[str, typer.Option("--split", help="Split to evaluate.")] = "test",
    tune_split: Annotated[
        str, typer.Option("--tune-split", help="Split validation is carved from ('' = no tuning).")
    ] = "train",
    index: IndexOpt = None,
    engine: EngineOpt = None,
    reranker: Annotated[
        str,
        typer.Option(
            "--reranker",
            help="'embedded', a CrossEncoder folder or hub id, or 'off' (no rerank rows).",
        ),
    ] = "embedded",
    rerank_top_n: Annotated[
        int | None,
        typer.Option(
            "--rerank-top-n",
            min=1,
            max=1000,
            help="Candidates reranked per query (default: settings, ES_NEURAL_RERANK__TOP_N).",
        ),
    ] = None,
    tree: Annotated[
        Path | None,
        typer.Option(
            "--tree", help="Tree folder (es-neural tree) for the leaf-filter configuration."
        ),
    ] = None,
    tree_threshold: Annotated[float, typer.Option("--tree-threshold", min=0.01, max=1.0)] = 0.9,
    tree_min_leaves: Annotated[int, typer.Option("--tree-min-leaves", min=1)] = 1,
    tree_max_leaves: Annotated[int, typer.Option("--tree-max-leaves", min=1)] = 16,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help=(
                "Run only the configurations of these exact names (case-insensitive), "
                "comma-separated or repeated, e.g. --only 'BM25,BM25 + dense (RRF)'. The "
                "interpolated rerank row's weight may be left out of its name."
            ),
        ),
    ] = None,
    ignore_identical_ids: Annotated[
        bool,
        typer.Option(
            "--ignore-identical-ids",
            help=(
                "Do not count a hit whose id is the query's own (BEIR's ignore_identical_ids: "
                "sets whose queries are corpus documents, e.g. ArguAna, Quora)."
            ),
        ),
    ] = False,
    runs: Annotated[
        Path | None,
        typer.Option(
            "--runs",
            file_okay=False,
            help="Folder for one TREC run file per configuration (qid Q0 doc rank score tag).",
        ),
    ] = None,
    recommend: Annotated[
        Path | None,
        typer.Option(
            "--recommend",
            dir_okay=False,
            help=(
                "Write the recommended configuration (JSON), chosen on validation: fusion, legs, "
                "rerank on or off with the reason. Load it with ES_NEURAL_PROFILE=FILE, "
                "es-neural search --profile FILE or NeuralIndex(..., profile=FILE)."
            ),
        ),
    ] = None,
    recommend_margin: Annotated[
        float,
        typer.Option(
            "--recommend-margin",
            min=0.0,
            help="Validation nDCG@10 the rerank must add over the fusion to be recommended.",
        ),
    ] = 0.005,
    recommend_budget_ms: Annotated[
        float | None,
        typer.Option(
            "--recommend-budget-ms",
            min=0.0,
            help="Rerank p95 cost per query above which it is not recommended "
            "(default: ES_NEURAL_RERANK__BUDGET_MS).",
        ),
    ] = None,
    max_queries: Annotated[int | None, typer.Option("--max-queries", min=1)] = None,
    val_fraction: ValOpt = 0.2,
    seed: SeedOpt = 13,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
    markdown_path: Annotated[
        Path | None, typer.Option("--markdown", help="Write the table as Markdown.")
    ] = None,
    chart_path: Annotated[Path | None, typer.Option("--chart", help="Write a PNG chart.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Evaluate BM25, dense, SPLADE, their fusions, leaf filter and rerank on a BEIR dataset."""
    from es_neural.eval.configs import TreeOptions
    from es_neural.eval.pipeline import EvalOptions, run_eval
    from es_neural.eval.report import write_chart

    settings = settings_or_exit()
    options = EvalOptions(
        data_dir=data,
        split=split,
        tune_split=tune_split or None,
        val_fraction=val_fraction,
        seed=seed,
        index=index,
        engine=engine,
        reranker=None if reranker == "off" else reranker,
        rerank_top_n=rerank_top_n,
        tree=tree,
        tree_options=TreeOptions(
            threshold=tree_threshold, min_leaves=tree_min_leaves, max_leaves=tree_max_leaves
        ),
        only=_names(only),
        ignore_identical_ids=ignore_identical_ids,
        runs_dir=runs,
        recommend=recommend,
        recommend_margin=recommend_margin,
        recommend_budget_ms=recommend_budget_ms,
        max_queries=max_queries,
        progress=progress,
    )
    try:
        report = run_eval(options, settings, log=_log)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    text = report.markdown()
    _out.print(text, markup=False, highlight=False)
    if json_path is not None:
        report.write_json(json_path)
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(text, encoding="utf-8")
    if chart_path is not None:
        write_chart(report, chart_path)


train_app = typer.Typer(
    help="Train the project's models (the embedded reranker, a query-tuned dense encoder).",
    no_args_is_help=True,
)


@train_app.command("reranker")
def train_reranker_command(
    data: DataDir,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    backbone: Annotated[
        str,
        typer.Option(
            "--backbone", help="'splade-tiny', 'minilm-l6' (embedded weights) or a BERT folder."
        ),
    ] = "splade-tiny",
    split: Annotated[
        str | None,
        typer.Option("--split", help="Training split (default: train; not with --pseudo-queries)."),
    ] = None,
    index: IndexOpt = None,
    engine: EngineOpt = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 4,
    learning_rate: Annotated[float, typer.Option("--lr", min=0.0)] = 1e-4,
    negatives: Annotated[int, typer.Option("--negatives", min=1)] = 5,
    hard: Annotated[int, typer.Option("--hard", min=0, help="Negatives from the top 20.")] = 4,
    batch_groups: Annotated[int, typer.Option("--batch-groups", min=1)] = 4,
    max_length: Annotated[int, typer.Option("--max-length", min=16)] = 256,
    distill: Annotated[
        float, typer.Option("--distill", min=0.0, help="Weight of distillation from fused scores.")
    ] = 0.0,
    val_top_n: Annotated[int, typer.Option("--val-top-n", min=1)] = 20,
    fp32: Annotated[bool, typer.Option("--fp32", help="Save float32 (default float16).")] = False,
    val_fraction: ValOpt = 0.2,
    seed: SeedOpt = 13,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu / cuda (default: auto).")
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="CPU threads.")] = 2,
    pseudo_queries: PseudoOpt = None,
    pseudo_limit: PseudoLimitOpt = DEFAULT_PSEUDO_LIMIT,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Fine-tune a CrossEncoder reranker on qrels + hard negatives mined through the engine.

    With --pseudo-queries no judgments are read: queries come from the corpus itself.
    """
    from es_neural.train.pipeline import TrainOptions, run_training
    from es_neural.train.reranker import RerankerTrainConfig

    settings = settings_or_exit()
    config = RerankerTrainConfig(
        epochs=epochs,
        learning_rate=learning_rate,
        negatives=negatives,
        hard=min(hard, negatives),
        batch_groups=batch_groups,
        max_length=max_length,
        distill=distill,
        val_top_n=val_top_n,
        half=not fp32,
        seed=seed,
        device=device,
        threads=threads,
    )
    options = TrainOptions(
        data_dir=data,
        output=output,
        backbone=backbone,
        split=split or "train",
        val_fraction=val_fraction,
        seed=seed,
        index=index,
        engine=engine,
        config=config,
        progress=progress,
        pseudo=_pseudo(pseudo_queries, pseudo_limit, split),
    )
    try:
        result = run_training(options, settings, log=_log)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    summary = {
        "output": str(result.output),
        "best_epoch": result.best_epoch,
        "val_ndcg@10_fused": round(result.base_ndcg, 4),
        "val_ndcg@10_best": round(result.best_ndcg, 4),
        "interpolation": result.best_alpha,
        "minutes": round(result.seconds / 60, 1),
        **_pseudo_summary(options.pseudo, result.output),
    }
    _out.print_json(json.dumps(summary))


@train_app.command("dense")
def train_dense_command(
    data: DataDir,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    split: Annotated[
        str | None,
        typer.Option("--split", help="Training split (default: train; not with --pseudo-queries)."),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 4,
    learning_rate: Annotated[float, typer.Option("--lr", min=0.0)] = 2e-5,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    scale: Annotated[
        float, typer.Option("--scale", min=0.0, help="Inverse temperature on cosine.")
    ] = 20.0,
    max_length: Annotated[int, typer.Option("--max-length", min=8, help="Query tokens.")] = 64,
    val_fraction: ValOpt = 0.2,
    seed: SeedOpt = 13,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu / cuda (default: auto).")
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="CPU threads.")] = 2,
    pseudo_queries: PseudoOpt = None,
    pseudo_limit: PseudoLimitOpt = DEFAULT_PSEUDO_LIMIT,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Tune the dense model's query tower on qrels (documents keep their embeddings).

    With --pseudo-queries no judgments are read: queries come from the corpus itself.

    Use the result with ES_NEURAL_DENSE__QUERY_MODEL=<output>; the index is not rebuilt.
    """
    from es_neural.train.dense import DenseTrainConfig
    from es_neural.train.pipeline import DenseTrainOptions, run_dense_training

    settings = settings_or_exit()
    config = DenseTrainConfig(
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        scale=scale,
        max_length=max_length,
        seed=seed,
        device=device,
        threads=threads,
    )
    options = DenseTrainOptions(
        data_dir=data,
        output=output,
        split=split or "train",
        val_fraction=val_fraction,
        seed=seed,
        config=config,
        progress=progress,
        pseudo=_pseudo(pseudo_queries, pseudo_limit, split),
    )
    try:
        result = run_dense_training(options, settings, log=_log)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    summary = {
        "output": str(result.output),
        "best_epoch": result.best_epoch,
        "val_ndcg@10_base": round(result.base_ndcg, 4),
        "val_ndcg@10_best": round(result.best_ndcg, 4),
        "minutes": round(result.seconds / 60, 1),
        "use_with": f"ES_NEURAL_DENSE__QUERY_MODEL={result.output}",
        **_pseudo_summary(options.pseudo, result.output),
    }
    _out.print_json(json.dumps(summary))


@train_app.command("query-tower")
def train_query_tower_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="Unlabelled text: a BEIR folder (its queries, then document openings) or a "
            "text file with one query per line.",
            exists=True,
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Tower folder to write.")],
    layers: Annotated[
        str,
        typer.Option(
            "--layers", help="Layers of the dense model kept: indices (0,2,5) or a count."
        ),
    ] = "0,2,5",
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 3,
    learning_rate: Annotated[float, typer.Option("--lr", min=0.0)] = 1e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    max_length: Annotated[int, typer.Option("--max-length", min=8, help="Tokens per text.")] = 64,
    limit: Annotated[
        int | None, typer.Option("--limit", min=100, help="Read at most this many texts.")
    ] = None,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Texts held out to validate on.")
    ] = 0.05,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact/--full",
            help="Store the kept layers only (float16; the embeddings stay the dense model's).",
        ),
    ] = True,
    seed: Annotated[int, typer.Option("--seed")] = 13,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu / cuda (default: auto).")
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="CPU threads.")] = 2,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Distil a shallow query tower of the dense model (no judgments needed).

    A few of the model's layers are trained to reproduce its query embeddings: queries encode
    faster, documents keep their embeddings. Use it with ES_NEURAL_DENSE__QUERY_MODEL=<output>.
    """
    from es_neural.train.distil import DistilConfig, parse_layers
    from es_neural.train.pipeline import TowerOptions, run_tower_distillation

    settings = settings_or_exit()
    try:
        config = DistilConfig(
            layers=parse_layers(layers),
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_length=max_length,
            seed=seed,
            device=device,
            threads=threads,
        )
        if not 0.0 < val_fraction < 0.5:
            raise fail("--val-fraction must be in (0, 0.5)")
        options = TowerOptions(
            source=source,
            output=output,
            limit=limit,
            val_fraction=val_fraction,
            compact=compact,
            progress=progress,
            config=config,
        )
        result = run_tower_distillation(options, settings, log=_log)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    best = result.best
    summary = {
        "output": str(result.output),
        "layers": list(result.layers),
        "best_epoch": result.best_epoch,
        "val_cosine_untrained": round(result.epochs[0].val_cosine_mean, 4),
        "val_cosine_best": round(best.val_cosine_mean, 4),
        "val_cosine_min": round(best.val_cosine_min, 4),
        "minutes": round(result.seconds / 60, 1),
        "use_with": f"ES_NEURAL_DENSE__QUERY_MODEL={result.output}",
    }
    _out.print_json(json.dumps(summary))
