"""``es-neural train reranker`` end to end: data, hard negatives from the engine, training, card.

1. Load the BEIR folder's training split and carve validation queries out of it (the same
   deterministic carve :mod:`es_neural.eval` tunes on).
2. Ingest the corpus (through the embedding cache; unchanged documents are skipped).
3. Retrieve the top ``depth`` of every training and validation query per leg through the
   engine, tune the linear fusion of BM25 + dense + SPLADE on validation, and fuse: the fused
   lists give the hard negatives (training queries) and the order to rerank (validation).
4. Train (:func:`~es_neural.train.reranker.train_reranker`) and write the model card.

``es-neural train dense`` (:func:`run_dense_training`) needs no engine: it tunes the dense
model's query tower against the corpus's cached document embeddings (:mod:`.dense`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_neural.settings import EngineKind, Settings
from es_neural.train.dense import DenseTrainConfig, DenseTrainResult
from es_neural.train.reranker import RerankerTrainConfig, TrainResult

__all__ = [
    "DenseTrainOptions",
    "TrainOptions",
    "backbone_path",
    "run_dense_training",
    "run_training",
]

BACKBONES = ("splade-tiny", "minilm-l6")


@dataclass(frozen=True)
class TrainOptions:
    data_dir: Path
    output: Path
    #: ``splade-tiny`` / ``minilm-l6`` (the embedded models' BERT weights) or a local folder.
    backbone: str = "splade-tiny"
    split: str = "train"
    val_fraction: float = 0.2
    seed: int = 13
    index: str | None = None
    engine: EngineKind | None = None
    depth: int = 100
    config: RerankerTrainConfig = field(default_factory=RerankerTrainConfig)
    progress: bool = True


def backbone_path(backbone: str) -> Path:
    """The folder of a named embedded backbone, or ``backbone`` itself as a folder."""
    from es_neural.encoders.registry import embedded_dense_path, embedded_sparse_path

    named: dict[str, Callable[[], Path]] = {
        "splade-tiny": embedded_sparse_path,
        "minilm-l6": embedded_dense_path,
    }
    if backbone in named:
        return named[backbone]()
    return Path(backbone)


def run_training(
    options: TrainOptions, settings: Settings, *, log: Callable[[str], None] | None = None
) -> TrainResult:
    from es_neural.encoders.registry import Encoders
    from es_neural.eval.configs import LEGS, EvalConfig
    from es_neural.eval.data import carve_validation, load_beir
    from es_neural.eval.runner import fuse_offline, run_config
    from es_neural.eval.tune import tune_fusion
    from es_neural.ingest.pipeline import IngestOptions
    from es_neural.neural_index import NeuralIndex
    from es_neural.train.card import write_card
    from es_neural.train.data import build_examples
    from es_neural.train.reranker import ValidationSet, train_reranker

    say = log or (lambda _m: None)
    data = load_beir(options.data_dir, [options.split])
    train_qrels, val_qrels = carve_validation(
        data.split(options.split), fraction=options.val_fraction, seed=options.seed
    )
    name = options.index or options.data_dir.resolve().name
    engine = options.engine or settings.engine
    encoders = Encoders.from_settings(settings, cached=True)
    dense, sparse = encoders.dense, encoders.required_sparse
    index = NeuralIndex(name, settings=settings, engine=engine, dense=dense, sparse=sparse)
    index.ingest(data.corpus_path, options=IngestOptions(progress=options.progress))
    queries = data.queries_of({**train_qrels, **val_qrels})
    say(f"retrieving {len(queries)} queries per leg from {engine.value} index {name!r}")
    legs = {
        leg: run_config(
            index, queries, EvalConfig(leg, (leg,), depth=options.depth), progress=options.progress
        ).ranking
        for leg in LEGS
    }
    tuned = tune_fusion(
        legs, val_qrels, EvalConfig("fused", LEGS, fusion="linear", depth=options.depth)
    )
    say(
        f"fusion tuned on validation: {dict(tuned.config.weights)} "
        f"{tuned.config.normalization}, nDCG@10 {tuned.score:.4f}"
    )
    fused = fuse_offline(legs, tuned.config)
    texts = dict(zip(data.corpus.ids, data.corpus.texts, strict=True))
    examples = build_examples(data.queries, train_qrels, fused, depth=options.depth)
    val = ValidationSet(
        data.queries_of(val_qrels), val_qrels, {q: fused.get(q, []) for q in val_qrels}
    )
    backbone = backbone_path(options.backbone)
    result = train_reranker(
        backbone,
        examples,
        texts,
        val,
        options.output,
        config=options.config,
        progress=options.progress,
        log=say,
    )
    facts: dict[str, Any] = {
        "dataset": f"BEIR {data.root.name} (corpus {len(texts)} documents)",
        "split": options.split,
        "training_queries": len(train_qrels),
        "validation_queries": len(val_qrels),
        "validation_carve": {"fraction": options.val_fraction, "seed": options.seed},
        "negatives_from": (
            f"{engine.value} index {name!r}, linear fusion {dict(tuned.config.weights)} "
            f"({tuned.config.normalization}), top {options.depth}"
        ),
    }
    write_card(result, backbone=options.backbone, data=facts)
    return result


@dataclass(frozen=True)
class DenseTrainOptions:
    data_dir: Path
    output: Path
    split: str = "train"
    val_fraction: float = 0.2
    seed: int = 13
    config: DenseTrainConfig = field(default_factory=DenseTrainConfig)
    progress: bool = True


def run_dense_training(
    options: DenseTrainOptions, settings: Settings, *, log: Callable[[str], None] | None = None
) -> DenseTrainResult:
    """``es-neural train dense``: tune the query tower of ``settings.dense.model`` on a BEIR split.

    Needs no engine: the corpus's document embeddings come from the embedding cache (encoded
    with the base model when missing, exactly as ingestion would), and validation is an exact
    search over them.
    """
    from es_neural.encoders.cache import CachedDenseEncoder
    from es_neural.encoders.registry import EMBEDDED, embedded_dense_path, get_dense_encoder
    from es_neural.eval.data import carve_validation, load_beir
    from es_neural.train.dense import DenseValidation, train_query_encoder, write_dense_card

    say = log or (lambda _m: None)
    data = load_beir(options.data_dir, [options.split])
    train_qrels, val_qrels = carve_validation(
        data.split(options.split), fraction=options.val_fraction, seed=options.seed
    )
    base_settings = settings.dense.model_copy(update={"query_model": None})
    encoder = CachedDenseEncoder(get_dense_encoder(base_settings), settings.embedding_cache_dir)
    say(f"document embeddings of {len(data.corpus.ids)} documents (embedding cache)")
    vectors = encoder.encode_documents(list(data.corpus.texts))
    say(f"{encoder.stats.hits} from the cache, {encoder.stats.misses} encoded")
    base = (
        embedded_dense_path(hub_default=base_settings.hub_default)
        if base_settings.model == EMBEDDED
        else Path(base_settings.model)
    )
    result = train_query_encoder(
        base,
        data.queries,
        train_qrels,
        list(data.corpus.ids),
        vectors,
        DenseValidation(data.queries_of(val_qrels), val_qrels),
        options.output,
        document_model=encoder.fingerprint.to_meta(),
        config=options.config,
        progress=options.progress,
        log=say,
    )
    facts: dict[str, Any] = {
        "dataset": f"BEIR {data.root.name} (corpus {len(data.corpus.ids)} documents)",
        "split": options.split,
        "training_queries": len(train_qrels),
        "validation_queries": len(val_qrels),
        "validation_carve": {"fraction": options.val_fraction, "seed": options.seed},
    }
    name = "embedded" if base_settings.model == EMBEDDED else base_settings.model
    write_dense_card(result, base=f"{name} ({encoder.fingerprint.name})", data=facts)
    return result
