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

With :class:`PseudoOptions` (``--pseudo-queries KIND``) no judgments are read: the queries and
the qrels of training and validation are pseudo-queries built from the corpus
(:func:`~es_neural.train.pseudo.pseudo_training_set`; a folder holding only ``corpus.jsonl``
will do), each positive is trained as its document without the part that became the query, and
everything else (ingestion, hard negatives from the engine, training) is the supervised path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from es_neural.errors import InvalidInputError
from es_neural.settings import EngineKind, Settings
from es_neural.train.dense import DenseTrainConfig, DenseTrainResult
from es_neural.train.pseudo import DEFAULT_PSEUDO_LIMIT, MIN_PSEUDO_PAIRS, PseudoKind, PseudoSet
from es_neural.train.reranker import RerankerTrainConfig, TrainResult

__all__ = [
    "DenseTrainOptions",
    "PseudoOptions",
    "TowerOptions",
    "TrainOptions",
    "backbone_path",
    "run_dense_training",
    "run_tower_distillation",
    "run_training",
]

BACKBONES = ("splade-tiny", "minilm-l6")


@dataclass(frozen=True)
class PseudoOptions:
    """Train on pseudo-queries of ``kind`` built from the corpus instead of judgments."""

    kind: PseudoKind
    #: Pairs kept (``None``: all the corpus gives), drawn by a hash of the document id and seed.
    limit: int | None = DEFAULT_PSEUDO_LIMIT
    min_pairs: int = MIN_PSEUDO_PAIRS


@dataclass(frozen=True)
class _Data:
    """What a training run reads, from judgments or from pseudo-queries."""

    corpus_path: Path
    #: query id -> text (at least every query of ``train`` and ``validation``).
    queries: Mapping[str, str]
    train: dict[str, dict[str, int]]
    validation: dict[str, dict[str, int]]
    #: doc id -> the text the reranker is trained and validated on (with judgments: the stored
    #: text; with pseudo-queries: :attr:`PseudoSet.texts`).
    texts: Mapping[str, str]
    #: The model card's data facts.
    facts: dict[str, Any]
    pseudo: PseudoSet | None = None


def _load_data(
    data_dir: Path,
    split: str,
    pseudo: PseudoOptions | None,
    *,
    val_fraction: float,
    seed: int,
    say: Callable[[str], None],
) -> _Data:
    from es_neural.eval.data import carve_validation, load_beir
    from es_neural.train.pseudo import pseudo_training_set

    if pseudo is None:
        data = load_beir(data_dir, [split])
        train, val = carve_validation(data.split(split), fraction=val_fraction, seed=seed)
        texts = dict(zip(data.corpus.ids, data.corpus.texts, strict=True))
        facts: dict[str, Any] = {
            "dataset": f"BEIR {data.root.name} (corpus {len(texts)} documents)",
            "split": split,
            "training_queries": len(train),
            "validation_queries": len(val),
            "validation_carve": {"fraction": val_fraction, "seed": seed},
        }
        return _Data(data.corpus_path, data.queries, train, val, texts, facts)
    corpus_path = data_dir / "corpus.jsonl"
    if not corpus_path.is_file():
        raise InvalidInputError(f"{data_dir} holds no corpus.jsonl to build pseudo-queries from")
    say(f"building {pseudo.kind!r} pseudo-queries from {corpus_path}")
    ps = pseudo_training_set(
        corpus_path,
        pseudo.kind,
        limit=pseudo.limit,
        seed=seed,
        val_fraction=val_fraction,
        min_pairs=pseudo.min_pairs,
    )
    say(
        f"{ps.built} {ps.kind!r} pseudo-queries from {ps.documents} documents; using {ps.used} "
        f"({len(ps.train)} training, {len(ps.validation)} validation); no judgments read"
    )
    facts = {
        "dataset": f"corpus {data_dir.resolve().name} ({ps.documents} documents), no judgments",
        "pseudo_queries": ps.facts(),
        "training_queries": len(ps.train),
        "validation_queries": len(ps.validation),
        "validation_carve": {"fraction": val_fraction, "seed": seed},
    }
    return _Data(corpus_path, ps.queries, ps.train, ps.validation, ps.texts, facts, ps)


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
    #: Pseudo-queries from the corpus instead of the split's judgments.
    pseudo: PseudoOptions | None = None


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
    from es_neural.encoders.base import require_torch_stack

    require_torch_stack("training the reranker")
    from es_neural.encoders.registry import Encoders
    from es_neural.eval.configs import LEGS, EvalConfig
    from es_neural.eval.runner import fuse_offline, run_config
    from es_neural.eval.tune import tune_fusion
    from es_neural.ingest.pipeline import IngestOptions
    from es_neural.neural_index import NeuralIndex
    from es_neural.train.card import write_card
    from es_neural.train.data import build_examples
    from es_neural.train.reranker import ValidationSet, train_reranker

    say = log or (lambda _m: None)
    data = _load_data(
        options.data_dir,
        options.split,
        options.pseudo,
        val_fraction=options.val_fraction,
        seed=options.seed,
        say=say,
    )
    train_qrels, val_qrels = data.train, data.validation
    name = options.index or options.data_dir.resolve().name
    engine = options.engine or settings.engine
    encoders = Encoders.from_settings(settings, cached=True)
    dense, sparse = encoders.dense, encoders.required_sparse
    index = NeuralIndex(name, settings=settings, engine=engine, dense=dense, sparse=sparse)
    index.ingest(data.corpus_path, options=IngestOptions(progress=options.progress))
    queries = _queries_of(data.queries, {**train_qrels, **val_qrels})
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
    config = options.config
    if data.pseudo is not None:
        # The fused order is optimistic here (the index holds every query inside its document):
        # keep the epoch whose reranking alone validates best.
        config = replace(options.config, select_on="rerank")
        say("pseudo-queries: the epoch kept is the one whose rerank-only nDCG@10 is best")
    examples = build_examples(data.queries, train_qrels, fused, depth=options.depth)
    val = ValidationSet(
        _queries_of(data.queries, val_qrels), val_qrels, {q: fused.get(q, []) for q in val_qrels}
    )
    backbone = backbone_path(options.backbone)
    result = train_reranker(
        backbone,
        examples,
        data.texts,
        val,
        options.output,
        config=config,
        progress=options.progress,
        log=say,
    )
    facts: dict[str, Any] = {
        **data.facts,
        "negatives_from": (
            f"{engine.value} index {name!r}, linear fusion {dict(tuned.config.weights)} "
            f"({tuned.config.normalization}), top {options.depth}"
        ),
    }
    write_card(result, backbone=options.backbone, data=facts, pseudo=data.pseudo is not None)
    return result


def _queries_of(queries: Mapping[str, str], qrels: Mapping[str, object]) -> dict[str, str]:
    """Texts of the queries in ``qrels`` (sorted by id); a query without text is an error."""
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise InvalidInputError(f"qrels name queries missing from queries.jsonl: {missing[:5]}")
    return {qid: queries[qid] for qid in sorted(qrels)}


@dataclass(frozen=True)
class DenseTrainOptions:
    data_dir: Path
    output: Path
    split: str = "train"
    val_fraction: float = 0.2
    seed: int = 13
    config: DenseTrainConfig = field(default_factory=DenseTrainConfig)
    progress: bool = True
    #: Pseudo-queries from the corpus instead of the split's judgments.
    pseudo: PseudoOptions | None = None


def run_dense_training(
    options: DenseTrainOptions, settings: Settings, *, log: Callable[[str], None] | None = None
) -> DenseTrainResult:
    """``es-neural train dense``: tune the query tower of ``settings.dense.model`` on a BEIR split
    (or on pseudo-queries from the corpus, ``options.pseudo``).

    Needs no engine: the corpus's document embeddings come from the embedding cache (encoded
    with the base model when missing, exactly as ingestion would), and validation is an exact
    search over them.
    """
    from es_neural.encoders.base import require_torch_stack

    require_torch_stack("training the dense query model")
    from es_neural.encoders.cache import CachedDenseEncoder
    from es_neural.encoders.registry import EMBEDDED, embedded_dense_path, get_dense_encoder
    from es_neural.train.dense import DenseValidation, train_query_encoder, write_dense_card
    from es_neural.tree.corpus import read_corpus

    say = log or (lambda _m: None)
    data = _load_data(
        options.data_dir,
        options.split,
        options.pseudo,
        val_fraction=options.val_fraction,
        seed=options.seed,
        say=say,
    )
    # Documents keep the embeddings of their stored text (what the index holds), pseudo or not.
    if data.pseudo is None:
        stored = data.texts
    else:
        corpus = read_corpus(data.corpus_path)
        stored = dict(zip(corpus.ids, corpus.texts, strict=True))
    base_settings = settings.dense.model_copy(update={"query_model": None})
    encoder = CachedDenseEncoder(get_dense_encoder(base_settings), settings.embedding_cache_dir)
    say(f"document embeddings of {len(stored)} documents (embedding cache)")
    vectors = encoder.encode_documents(list(stored.values()))
    say(f"{encoder.stats.hits} from the cache, {encoder.stats.misses} encoded")
    base = (
        embedded_dense_path(hub_default=base_settings.hub_default)
        if base_settings.model == EMBEDDED
        else Path(base_settings.model)
    )
    result = train_query_encoder(
        base,
        data.queries,
        data.train,
        list(stored),
        vectors,
        DenseValidation(_queries_of(data.queries, data.validation), data.validation),
        options.output,
        document_model=encoder.fingerprint.to_meta(),
        config=options.config,
        progress=options.progress,
        log=say,
    )
    name = "embedded" if base_settings.model == EMBEDDED else base_settings.model
    write_dense_card(
        result,
        base=f"{name} ({encoder.fingerprint.name})",
        data=data.facts,
        pseudo=data.pseudo is not None,
    )
    return result


@dataclass(frozen=True)
class TowerOptions:
    """``es-neural train query-tower``: where the text comes from and where the tower goes."""

    source: Path
    output: Path
    #: Texts read at most (``None``: all).
    limit: int | None = None
    #: Share of the texts held out to validate on (at least 50 texts).
    val_fraction: float = 0.05
    #: Write the compact form (kept layers in float16) instead of the full folder.
    compact: bool = True
    progress: bool = True
    config: Any = None  # DistilConfig (imported lazily: it is torch-free, the trainer is not)


def run_tower_distillation(
    options: TowerOptions, settings: Settings, *, log: Callable[[str], None] | None = None
) -> Any:
    """Distil a shallow query tower of ``settings.dense.model`` on the texts of
    ``options.source`` (:func:`es_neural.train.distil.read_texts`); returns the
    :class:`~es_neural.train.distil.DistilResult` (its ``output`` is the written folder)."""
    import shutil
    import tempfile

    from es_neural.encoders.base import local_model_folder, require_torch_stack

    require_torch_stack("distilling a query tower")
    from es_neural.encoders.registry import EMBEDDED, embedded_dense_path, get_dense_encoder
    from es_neural.encoders.tower import compact_tower
    from es_neural.train.distil import (
        DistilConfig,
        distil_query_tower,
        read_texts,
        write_tower_card,
    )

    say = log or (lambda _m: None)
    config = options.config or DistilConfig()
    if not 0.0 < options.val_fraction < 0.5:
        raise InvalidInputError("the validation fraction must be in (0, 0.5)")
    base_settings = settings.dense.model_copy(update={"query_model": None})
    if base_settings.model == EMBEDDED:
        base: Path | None = embedded_dense_path(hub_default=base_settings.hub_default)
    else:
        base = local_model_folder(base_settings.model)
    if base is None:
        raise InvalidInputError(
            f"distilling needs the dense model as a local folder, not {base_settings.model!r}"
        )
    if options.output.exists() and any(options.output.iterdir()):
        raise InvalidInputError(f"{options.output} exists and is not empty; name a new folder")
    texts = read_texts(options.source, limit=options.limit, seed=config.seed)
    held = max(50, int(len(texts) * options.val_fraction))
    if len(texts) - held < 50:
        raise InvalidInputError(
            f"{options.source} gives {len(texts)} texts: too few to train on and validate "
            f"({held} held out)"
        )
    train, val = texts[held:], texts[:held]
    say(f"{len(train)} training texts, {len(val)} held out for validation")
    encoder = get_dense_encoder(base_settings)
    name = "embedded" if base_settings.model == EMBEDDED else base_settings.model
    work = Path(tempfile.mkdtemp(prefix="es-neural-tower-"))
    try:
        full = options.output if not options.compact else work / "full"
        result = distil_query_tower(
            base,
            train,
            val,
            full,
            document_model=encoder.fingerprint.to_meta(),
            config=config,
            progress=options.progress,
            log=say,
        )
        write_tower_card(
            result,
            base=f"{name} ({encoder.fingerprint.name})",
            data={"source": str(options.source), "texts": len(train), "validation": len(val)},
        )
        if options.compact:
            compact_tower(full, options.output)
            result.output = options.output
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result
