"""The model card (README.md) saved next to a trained reranker: what it was trained on, how,
and what it measured on validation. Written from a :class:`TrainResult`, so it cannot drift
from the run that produced the weights."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from es_neural.search.rerank import RERANKER_META
from es_neural.train.reranker import TrainResult

__all__ = ["write_card"]


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def write_card(
    result: TrainResult,
    *,
    backbone: str,
    data: Mapping[str, Any],
    extra_sections: Mapping[str, str] | None = None,
    pseudo: bool = False,
) -> Path:
    """Write ``README.md`` (and ``training.json`` with the same facts) into the model folder.

    ``pseudo``: trained on pseudo-queries built from the corpus (``data["pseudo_queries"]``
    holds their facts), not on judgments; the card says so and how validation differs."""
    folder = result.output
    cfg = result.config
    facts = {"backbone": backbone, "data": dict(data), **result.to_dict()}
    (folder / "training.json").write_text(
        json.dumps(facts, indent=2, default=str) + "\n", encoding="utf-8"
    )
    # How es-neural uses the model by default (read by CrossEncoderReranker).
    (folder / RERANKER_META).write_text(
        json.dumps(
            {
                "interpolation": result.best_alpha,
                "validated_top_n": cfg.val_top_n,
                "validation_ndcg@10": round(result.best_ndcg, 4),
                "max_length": cfg.max_length,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    epochs = "\n".join(
        f"| {e.epoch} | {e.steps} | {e.mean_loss:.4f} | {e.val_ndcg['rerank']:.4f} | "
        f"{e.best_ndcg:.4f} | {e.best_alpha if e.best_alpha is not None else 'rerank only'} | "
        f"{e.seconds:.0f} |"
        for e in result.epochs
    )
    alpha = result.best_alpha if result.best_alpha is not None else "none (rerank score alone)"
    negatives = f"""\
- Hard negatives: documents the project's fused hybrid retrieval (BM25 + dense + SPLADE, linear
  fusion with weights tuned on the validation queries) ranks in its top {cfg.hard_depth} for a
  query and its qrels do not mark relevant ({cfg.hard} per group), plus easier ones from ranks
  {cfg.hard_depth + 1}-100 ({cfg.negatives - cfg.hard} per group), redrawn each epoch (seeded).
"""
    if pseudo:
        facts_p = dict(data.get("pseudo_queries") or {})
        kind = facts_p.get("kind", "?")
        asks = facts_p.get("asks", kind)
        used, documents = facts_p.get("pairs_used", "?"), facts_p.get("corpus_documents", "?")
        head = f"""# es-neural reranker trained on pseudo-queries (no judgments)

A `sentence-transformers` `CrossEncoder` (one relevance logit) trained by `es-neural train
reranker --pseudo-queries {kind}` on **pseudo-queries built from the corpus itself**
({asks}): {used} pairs from {documents} documents.
**No relevance judgments were read** (no queries, no qrels). Use it with
`ES_NEURAL_RERANK__MODEL=<this folder>`; `es_neural.json` holds the interpolation weight it was
validated with, which the searcher applies when a request names none.

**What it is, honestly:** a model of what this corpus's `{kind}` pseudo-queries ask for, not of
what users ask. Measure it on your own queries (`es-neural eval`) before turning it on.

"""
        bullets = f"""\
- Queries: `{kind}` pseudo-queries ({asks}); the positive is
  the document the query came from, **trained as its text without the part that became the query**
  (and every other document as its body, without its title), so the model cannot win by spotting
  a copy. The index keeps the stored documents.
{negatives}\
- Validation: pseudo-queries carved from the same pairs (deterministic hash of the id and
  seed), never used for gradient steps. The fused order it reranks is **optimistic** (the index
  holds each query inside its document), so the epoch kept is the one whose **rerank-only**
  nDCG@10 is best. The interpolation weight chosen there favours the fused order (the reranker
  cannot beat an optimistic one): with judged queries, `es-neural eval` tunes it on them.

"""
    else:
        head = """# es-neural embedded reranker

A `sentence-transformers` `CrossEncoder` (one relevance logit) trained by `es-neural train
reranker`. Shipped inside the package, it is what `ES_NEURAL_RERANK__MODEL=embedded` loads (no
network needed); users with internet may prefer a hub model such as
`cross-encoder/ms-marco-MiniLM-L6-v2`. `es_neural.json` holds the interpolation weight it was
validated with, which the searcher applies when a request names none.

**What it is, honestly:** a small model trained on a few hundred scientific claims. It is meant to
be *interpolated* with the fused retrieval score (`RerankConfig.interpolation`), not to replace
it; on its own it ranks worse than the retrieval it reranks (see the table below). It was
trained only on the data named here and is not a general-purpose reranker.

"""
        bullets = f"""- Positives: the relevant documents of the training queries' qrels.
{negatives}\
- Validation: queries carved from the training split (deterministic hash of the id and seed),
  never used for gradient steps; the evaluated test split was never used at all.

"""
    text = f"""---
library_name: sentence-transformers
pipeline_tag: text-ranking
tags: [cross-encoder, reranker, es-neural]
license: apache-2.0
---

{head}## Data
```json
{json.dumps(dict(data), indent=2)}
```

{bullets}## Recipe
- Backbone: `{backbone}` with a fresh one-logit head (`CrossEncoder(path, num_labels=1)`).
- Loss: listwise softmax cross-entropy over groups of 1 positive + {cfg.negatives} negatives
  (MultipleNegativesRanking with hard negatives){
        f", plus {cfg.distill} x KL to the fused scores (T={cfg.distill_temperature})"
        if cfg.distill
        else ""
    }.
- AdamW, learning rate {cfg.learning_rate:g}, weight decay {cfg.weight_decay}, linear warm-up
  ({cfg.warmup_ratio:.0%}) and decay, gradient clipping {cfg.grad_clip}, {cfg.batch_groups}
  groups per step, max length {cfg.max_length} tokens, {cfg.epochs} epochs, seed {cfg.seed}.
- {result.train_queries} training queries, {result.train_groups_per_epoch} groups per epoch,
  {result.epochs[-1].steps if result.epochs else 0} steps in all, {result.seconds / 60:.1f} min
  on {result.device} (wall time, on a machine shared with other jobs).
- Kept: epoch {result.best_epoch} (best {
        "rerank-only " if cfg.select_on == "rerank" else ""
    }validation nDCG@10), saved as
  {"float16" if cfg.half else "float32"} safetensors ({_size_mb(folder):.1f} MB folder).

## Validation (reranking the fused top-{cfg.val_top_n})
Validation nDCG@10 of the fused order it reranks: **{result.base_ndcg:.4f}**.

| epoch | steps | mean loss | nDCG@10 rerank only | best nDCG@10 | at interpolation | s |
|---:|---:|---:|---:|---:|---:|---:|
{epochs}

Best: **{result.best_ndcg:.4f}** at interpolation {alpha}
(`final = a * minmax(rerank) + (1 - a) * minmax(fused)` over the reranked top-N).
"""
    for title, body in (extra_sections or {}).items():
        text += f"\n## {title}\n{body.rstrip()}\n"
    path = folder / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
