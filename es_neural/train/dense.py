"""Query-side fine-tuning of the dense bi-encoder: ``es-neural train dense``.

Fine-tuning both towers of a bi-encoder means re-encoding the whole corpus with the new weights
and re-ingesting it; on a CPU that is the expensive part (MiniLM-L6 trains on documents of 256
tokens at well under 1 (query, positive, negative) triple per second on two shared cores). This
trainer tunes the **query tower only**: documents keep the embeddings of the base model, which
are already in the index and the embedding cache, and a copy of the base model is trained so
that a query lands near its relevant documents in that fixed space. Queries are short (a few
dozen tokens), so an epoch over SciFact's training claims takes a minute or two on a CPU, and the
index stays valid: :class:`~es_neural.encoders.query_tuned.QueryTunedDense` encodes queries with
the tuned folder and documents with the base model.

The recipe (what the card records):

* one training item per (query, relevant document) of the training qrels;
* the loss is softmax cross-entropy over **the whole corpus** (``scale`` x cosine similarity, as
  sentence-transformers' ``MultipleNegativesRankingLoss``): because document embeddings are
  fixed, every document is a negative at once, which includes every hard negative a hybrid
  retrieval would mine; the query's other relevant documents are masked out of the softmax;
* AdamW with linear warm-up and decay, gradient clipping; after each epoch the model retrieves
  the validation queries (carved from train; never the evaluated split) by exact search over the
  document matrix, and the best epoch by validation nDCG@10 is kept (epoch 0 is the base model,
  so a run that does not help is reported as such).

The saved folder is a sentence-transformers model plus ``es_neural.json``, which names the
document model (its fingerprint) the queries were tuned for; loading it next to another document
model is refused.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from es_neural.errors import InvalidInputError
from es_neural.train.reranker import adamw_with_warmup

__all__ = [
    "QUERY_MODEL_META",
    "DenseEpoch",
    "DenseTrainConfig",
    "DenseTrainResult",
    "DenseValidation",
    "train_query_encoder",
    "write_dense_card",
]

#: File in a query-tuned folder naming the document model it was tuned against.
QUERY_MODEL_META = "es_neural.json"


@dataclass(frozen=True)
class DenseTrainConfig:
    epochs: int = 4
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    #: (query, positive) pairs per step.
    batch_size: int = 32
    #: Inverse temperature on cosine similarities (sentence-transformers' MNRL default).
    scale: float = 20.0
    #: Query tokens the tuned model sees (queries are short).
    max_length: int = 64
    grad_clip: float = 1.0
    seed: int = 13
    #: Depth of the exact validation search (nDCG@10 needs only 10; recall is reported at it).
    val_depth: int = 100
    #: Training pairs whose eval-mode loss is measured after each epoch (a seeded sample).
    loss_probe: int = 256
    device: str | None = None
    threads: int | None = 2


@dataclass(frozen=True)
class DenseValidation:
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class DenseEpoch:
    epoch: int
    steps: int
    mean_loss: float
    seconds: float
    val_ndcg: float
    val_recall: float
    #: Loss on (a sample of) the training pairs after the epoch, eval mode (no dropout).
    train_loss: float


@dataclass
class DenseTrainResult:
    output: Path
    base_ndcg: float
    base_recall: float
    #: :attr:`DenseEpoch.train_loss` of the base model.
    base_train_loss: float = float("nan")
    epochs: list[DenseEpoch] = field(default_factory=list)
    #: 0 when no epoch beat the base model (the base weights are saved).
    best_epoch: int = 0
    best_ndcg: float = 0.0
    train_queries: int = 0
    train_pairs: int = 0
    corpus_size: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    document_model: dict[str, Any] = field(default_factory=dict)
    config: DenseTrainConfig = field(default_factory=DenseTrainConfig)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = str(self.output)
        return data


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _features(model: Any, texts: list[str], device: str) -> dict[str, Any]:
    prep = getattr(model, "preprocess", None) or model.tokenize
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in prep(texts).items()}


def _embed(model: Any, texts: list[str], device: str) -> Any:
    """Unit query embeddings, with the model's ``query`` prompt as ``encode_query`` adds it."""
    import torch.nn.functional as F

    prompt = (getattr(model, "prompts", None) or {}).get("query") or ""
    out = model(_features(model, [prompt + t for t in texts], device))["sentence_embedding"]
    return F.normalize(out, dim=-1)


def _validate(
    model: Any,
    val: DenseValidation,
    docs: Any,
    doc_ids: Sequence[str],
    *,
    depth: int,
    device: str,
    batch: int = 64,
) -> tuple[float, float]:
    """(nDCG@10, recall@depth) of exact search with ``model``'s query embeddings."""
    import torch

    from es_neural.eval.runner import evaluate

    qids = sorted(val.qrels)
    ranking: dict[str, list[tuple[str, float]]] = {}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(qids), batch):
            chunk = qids[start : start + batch]
            q = _embed(model, [val.queries[x] for x in chunk], device)
            scores, idx = (q @ docs.T).topk(min(depth, docs.shape[0]), dim=1)
            for qid, row_s, row_i in zip(chunk, scores.tolist(), idx.tolist(), strict=True):
                ranking[qid] = [(doc_ids[i], s) for i, s in zip(row_i, row_s, strict=True)]
    found = evaluate(val.qrels, ranking, ("ndcg@10", f"recall@{depth}"))
    return found["ndcg@10"], found[f"recall@{depth}"]


def _pair_loss(
    model: Any,
    queries: Mapping[str, str],
    pairs: Sequence[tuple[str, int]],
    positives: Mapping[str, Sequence[int]],
    docs: Any,
    *,
    scale: float,
    device: str,
    batch: int = 64,
) -> float:
    """Mean full-corpus softmax loss of ``pairs`` in eval mode (what training minimises)."""
    import torch

    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(pairs), batch):
            chunk = pairs[start : start + batch]
            total += float(
                _batch_loss(model, queries, chunk, positives, docs, scale=scale, device=device)
            ) * len(chunk)
    return total / max(1, len(pairs))


def _batch_loss(
    model: Any,
    queries: Mapping[str, str],
    batch: Sequence[tuple[str, int]],
    positives: Mapping[str, Sequence[int]],
    docs: Any,
    *,
    scale: float,
    device: str,
) -> Any:
    import torch
    import torch.nn.functional as F

    q = _embed(model, [queries[qid] for qid, _ in batch], device)
    logits = scale * (q @ docs.T)
    mask = torch.zeros_like(logits, dtype=torch.bool)
    for i, (qid, pos) in enumerate(batch):
        others = [j for j in positives[qid] if j != pos]
        if others:
            mask[i, others] = True
    logits = logits.masked_fill(mask, float("-inf"))
    targets = torch.tensor([t for _, t in batch], dtype=torch.long, device=device)
    return F.cross_entropy(logits, targets)


def train_query_encoder(
    base: str | Path,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    doc_ids: Sequence[str],
    doc_vectors: npt.NDArray[np.float32],
    val: DenseValidation,
    output: str | Path,
    *,
    document_model: Mapping[str, Any],
    config: DenseTrainConfig = DenseTrainConfig(),
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DenseTrainResult:
    """Tune a copy of ``base`` as the query tower for the fixed ``doc_vectors``; save it.

    ``doc_vectors`` are the base model's document embeddings (rows aligned with ``doc_ids``);
    ``document_model`` is that model's fingerprint (``ModelFingerprint.to_meta()``), written
    into the saved folder's ``es_neural.json``.
    """
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    if doc_vectors.ndim != 2 or doc_vectors.shape[0] != len(doc_ids):
        raise InvalidInputError("doc_vectors must be a [len(doc_ids), dims] matrix")
    row = {d: i for i, d in enumerate(doc_ids)}
    pairs: list[tuple[str, int]] = []
    positives: dict[str, list[int]] = {}
    for qid in sorted(qrels):
        rel = sorted(row[d] for d, g in qrels[qid].items() if g > 0 and d in row)
        if not rel:
            continue
        if qid not in queries:
            raise InvalidInputError(f"query {qid!r} of the qrels has no text")
        positives[qid] = rel
        pairs.extend((qid, i) for i in rel)
    if not pairs:
        raise InvalidInputError("no training pairs (queries with a relevant document)")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    _seed_all(config.seed)
    say = log or (lambda _m: None)
    started = time.perf_counter()

    model = SentenceTransformer(str(base), device=device, local_files_only=True)
    model.max_seq_length = config.max_length
    docs = F.normalize(torch.from_numpy(np.ascontiguousarray(doc_vectors, np.float32)), dim=-1)
    docs = docs.to(device)
    dims = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )()
    if int(docs.shape[1]) != dims:
        raise InvalidInputError(f"document vectors have {docs.shape[1]} dims, the model {dims}")

    base_ndcg, base_recall = _validate(
        model, val, docs, doc_ids, depth=config.val_depth, device=device
    )
    probe = random.Random(config.seed).sample(pairs, min(len(pairs), config.loss_probe))
    base_loss = _pair_loss(
        model, queries, probe, positives, docs, scale=config.scale, device=device
    )
    say(
        f"base query encoder: validation nDCG@10 {base_ndcg:.4f}, "
        f"training-pair loss {base_loss:.4f}"
    )
    # Epoch 0 is the base model: kept when no epoch beats it on validation.
    best_state: dict[str, Any] = copy.deepcopy(model.state_dict())

    steps_per_epoch = math.ceil(len(pairs) / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer, scheduler = adamw_with_warmup(
        model,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        total_steps=total,
    )
    result = DenseTrainResult(
        output=Path(output),
        base_ndcg=base_ndcg,
        base_recall=base_recall,
        base_train_loss=base_loss,
        best_ndcg=base_ndcg,
        train_queries=len(positives),
        train_pairs=len(pairs),
        corpus_size=len(doc_ids),
        device=device,
        document_model=dict(document_model),
        config=config,
    )
    rng = random.Random(config.seed)
    step = 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = list(pairs)
        rng.shuffle(order)
        losses: list[float] = []
        bar = tqdm(
            range(0, len(order), config.batch_size),
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not progress,
            dynamic_ncols=True,
        )
        for start in bar:
            batch = order[start : start + config.batch_size]
            loss = _batch_loss(
                model, queries, batch, positives, docs, scale=config.scale, device=device
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        bar.close()
        ndcg, recall = _validate(model, val, docs, doc_ids, depth=config.val_depth, device=device)
        train_loss = _pair_loss(
            model, queries, probe, positives, docs, scale=config.scale, device=device
        )
        report = DenseEpoch(
            epoch=epoch,
            steps=step,
            mean_loss=sum(losses) / max(1, len(losses)),
            seconds=time.perf_counter() - t0,
            val_ndcg=ndcg,
            val_recall=recall,
            train_loss=train_loss,
        )
        result.epochs.append(report)
        say(
            f"epoch {epoch}: loss {report.mean_loss:.4f} (eval {train_loss:.4f}), "
            f"val nDCG@10 {ndcg:.4f} "
            f"(base {base_ndcg:.4f}), recall@{config.val_depth} {recall:.4f}, "
            f"{report.seconds:.0f} s"
        )
        if ndcg > result.best_ndcg + 1e-12:
            best_state = copy.deepcopy(model.state_dict())
            result.best_epoch, result.best_ndcg = epoch, ndcg
    model.load_state_dict(best_state)
    if not result.best_epoch:
        say("no epoch beat the base query encoder on validation; saving the base weights")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out), safe_serialization=True)
    result.seconds = time.perf_counter() - started
    (out / QUERY_MODEL_META).write_text(
        json.dumps(
            {
                "role": "query_encoder",
                "document_model": dict(document_model),
                "validation_ndcg@10": round(result.best_ndcg, 4),
                "base_validation_ndcg@10": round(base_ndcg, 4),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return result


def write_dense_card(
    result: DenseTrainResult, *, base: str, data: Mapping[str, Any], pseudo: bool = False
) -> Path:
    """``README.md`` and ``training.json`` in the saved folder, from the run's own facts.

    ``pseudo``: trained on pseudo-queries built from the corpus (``data["pseudo_queries"]``),
    not on judgments; the card says so."""
    folder = result.output
    cfg = result.config
    facts = {"base": base, "data": dict(data), **result.to_dict()}
    (folder / "training.json").write_text(
        json.dumps(facts, indent=2, default=str) + "\n", encoding="utf-8"
    )
    rows = "\n".join(
        f"| {e.epoch} | {e.steps} | {e.mean_loss:.4f} | {e.train_loss:.4f} | {e.val_ndcg:.4f} | "
        f"{e.val_recall:.4f} | {e.seconds:.0f} |"
        for e in result.epochs
    )
    kept = (
        f"epoch {result.best_epoch}"
        if result.best_epoch
        else "the base weights (no epoch beat them on validation)"
    )
    base_recall = f"{result.base_recall:.4f}"
    queries = "training query"
    carved = "validation queries carved from the training split"
    origin = ""
    if pseudo:
        facts_p = dict(data.get("pseudo_queries") or {})
        kind = facts_p.get("kind", "?")
        queries = f"`{kind}` pseudo-query"
        carved = "validation pseudo-queries carved from the same pairs"
        origin = f"""
**Trained on pseudo-queries, no judgments:** `es-neural train dense --pseudo-queries {kind}`
built its queries from the corpus itself ({facts_p.get("asks", kind)}); no queries or qrels were
read. Documents keep the embeddings of their stored text, which holds each pseudo-query: the
task (and its validation) is easier than real queries are. Measure it on your own queries
(`es-neural eval`) before using it.
"""
    text = f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags: [sentence-transformers, query-encoder, es-neural]
---

# es-neural query-tuned dense encoder

The **query tower** of a bi-encoder, trained by `es-neural train dense` for one document model:
documents keep the embeddings of `{base}` (fingerprint below), queries are encoded with this
folder. Use it with `ES_NEURAL_DENSE__QUERY_MODEL=<this folder>` (and the same
`ES_NEURAL_DENSE__MODEL` as the index was built with); es-neural refuses it next to any other
document model. It was trained only on the data named here; it is not a general-purpose model.
{origin}
## Data
```json
{json.dumps(dict(data), indent=2)}
```

Document model (its fingerprint, as recorded in `es_neural.json`):
```json
{json.dumps(result.document_model, indent=2)}
```

## Recipe
- Start: a copy of `{base}`; only the copy (the query tower) is trained.
- One item per ({queries}, relevant document): {result.train_pairs} pairs from
  {result.train_queries} queries; softmax cross-entropy over all {result.corpus_size} documents
  of the corpus (scale {cfg.scale:g} x cosine, the query's other relevant documents masked).
- AdamW, learning rate {cfg.learning_rate:g}, weight decay {cfg.weight_decay}, warm-up
  {cfg.warmup_ratio:.0%} then linear decay, gradient clipping {cfg.grad_clip},
  {cfg.batch_size} pairs per step, queries truncated to {cfg.max_length} tokens,
  {cfg.epochs} epochs, seed {cfg.seed}; {result.seconds / 60:.1f} min on {result.device}
  (wall time, machine shared with other jobs).
- Kept: {kept}, by validation nDCG@10 of exact dense search over the corpus.

## Validation (exact dense search, {carved})
Loss on training pairs: the running mean while training, and after the epoch in eval mode
(seeded sample of up to {cfg.loss_probe} pairs).

| epoch | steps | mean loss | eval loss | nDCG@10 | recall@{cfg.val_depth} | s |
|---:|---:|---:|---:|---:|---:|---:|
| 0 (base) | 0 | - | {result.base_train_loss:.4f} | {result.base_ndcg:.4f} | {base_recall} | - |
{rows}
"""
    path = folder / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
