"""A shallow query tower distilled from the dense model: ``es-neural train query-tower``.

A hybrid search encodes one short text per leg, and on a CPU the dense model's layers are most of
that cost (all-MiniLM-L6-v2: 6 layers of 1.77 M multiply-accumulates per token). Documents need
the full model; queries need only to land where the full model would put them. So this trainer
keeps a few of the model's layers (``layers``, e.g. 0, 2 and 5 of 6) and trains that copy to
reproduce the full model's **query embeddings**: the loss is ``1 - cosine + squared distance``
between the student's and the teacher's unit vectors, over unlabelled text (queries, or short
passages when there are no queries). No judgments are read. Documents keep the full model's
embeddings, the index is not touched, and the tower is used like a query-tuned folder
(:class:`~es_neural.encoders.query_tuned.QueryTunedDense`): ``ES_NEURAL_DENSE__QUERY_MODEL``.

The word, position and type embeddings are the teacher's and stay frozen, so a tower can be
stored **compactly** (:func:`compact_tower`): its kept layers only, in float16, plus a note of the
document model whose embeddings it borrows. :func:`materialize_tower` rebuilds the full
sentence-transformers folder from the two (once, under the cache directory), which both the
torch encoder and the torch-free query path then load like any other folder.
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

from es_neural.encoders.tower import TOWER_META, compact_tower
from es_neural.errors import InvalidInputError
from es_neural.train.dense import _features
from es_neural.train.reranker import adamw_with_warmup

__all__ = [
    "DistilConfig",
    "DistilEpoch",
    "DistilResult",
    "compact_tower",
    "distil_query_tower",
    "parse_layers",
    "read_texts",
    "spread_layers",
    "write_tower_card",
]


@dataclass(frozen=True)
class DistilConfig:
    #: Which of the teacher's layers the tower keeps (0-based, increasing), or how many (spread
    #: evenly, the first and the last kept: 3 of 6 is 0, 2, 5).
    layers: tuple[int, ...] | int = (0, 2, 5)
    epochs: int = 3
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    batch_size: int = 64
    #: Tokens the tower (and the teacher, for its targets) sees per text.
    max_length: int = 64
    grad_clip: float = 1.0
    seed: int = 13
    device: str | None = None
    #: CPU threads for torch (``0``: torch's default).
    threads: int = 2


@dataclass(frozen=True)
class DistilEpoch:
    epoch: int
    steps: int
    mean_loss: float
    #: Cosine between the tower's and the teacher's vectors of the validation texts.
    val_cosine_mean: float
    val_cosine_min: float
    seconds: float


@dataclass
class DistilResult:
    output: Path
    config: DistilConfig
    teacher_layers: int
    train_texts: int
    val_texts: int
    document_model: Mapping[str, Any]
    #: The teacher's layers the tower kept.
    layers: tuple[int, ...] = ()
    #: Epoch 0: the kept layers before training.
    epochs: list[DistilEpoch] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def best(self) -> DistilEpoch:
        return self.epochs[self.best_epoch]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["output"] = str(self.output)
        out["layers"] = list(self.layers)
        if not isinstance(self.config.layers, int):
            out["config"]["layers"] = list(self.config.layers)
        return out


def parse_layers(spec: str) -> tuple[int, ...] | int:
    """``"0,2,5"`` -> those layer indices; ``"3"`` -> a count (3), spread over the teacher's
    layers by :func:`spread_layers` once its depth is known."""
    text = spec.strip()
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return count
        layers = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise InvalidInputError(
            f"--layers must be a count (3) or layer indices (0,2,5), got {spec!r}"
        ) from None
    if list(layers) != sorted(set(layers)) or layers[0] < 0:
        raise InvalidInputError(f"--layers must be increasing, distinct and >= 0, got {spec!r}")
    return layers


def spread_layers(choice: tuple[int, ...] | int, teacher_layers: int) -> tuple[int, ...]:
    """The teacher's layers a tower keeps: indices as given (checked against the teacher's
    depth), or a count spread evenly with the first and the last layer kept."""
    if isinstance(choice, int):
        if choice >= teacher_layers:
            raise InvalidInputError(
                f"--layers {choice}: the teacher has {teacher_layers} layers; keep fewer"
            )
        if choice == 1:
            return (teacher_layers - 1,)
        step = (teacher_layers - 1) / (choice - 1)
        return tuple(sorted({round(i * step) for i in range(choice)}))
    layers = tuple(choice)
    if not layers or list(layers) != sorted(set(layers)) or layers[0] < 0:
        raise InvalidInputError(f"--layers must be increasing, distinct and >= 0, got {layers}")
    if layers[-1] >= teacher_layers:
        raise InvalidInputError(
            f"--layers {','.join(map(str, layers))}: the teacher has layers "
            f"0..{teacher_layers - 1} only"
        )
    if len(layers) >= teacher_layers:
        raise InvalidInputError(f"a tower keeps fewer than the teacher's {teacher_layers} layers")
    return layers


def read_texts(source: str | Path, *, limit: int | None = None, seed: int = 13) -> list[str]:
    """Unlabelled training text: a BEIR folder (its queries, then the first sentences of its
    documents) or a text file with one text per line. Distinct, shuffled by ``seed``, at most
    ``limit``."""
    path = Path(source)
    texts: list[str] = []
    if path.is_dir():
        queries, corpus = path / "queries.jsonl", path / "corpus.jsonl"
        if not queries.is_file() and not corpus.is_file():
            raise InvalidInputError(f"{path} holds neither queries.jsonl nor corpus.jsonl")
        for file, fields in ((queries, ("text",)), (corpus, ("title", "text"))):
            if not file.is_file():
                continue
            with file.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        raise InvalidInputError(f"{file}:{number}: not a JSON line") from None
                    parts = [str(record.get(f) or "").strip() for f in fields]
                    if file is corpus:
                        # A passage's opening stands in for a query: titles and first sentences.
                        texts.extend(p for p in (parts[0], _lead(parts[1])) if p)
                    elif parts[0]:
                        texts.append(parts[0])
    elif path.is_file():
        with path.open(encoding="utf-8") as handle:
            texts = [line.strip() for line in handle if line.strip()]
    else:
        raise InvalidInputError(f"no such file or folder: {path}")
    texts = list(dict.fromkeys(texts))
    random.Random(seed).shuffle(texts)
    if limit is not None:
        texts = texts[:limit]
    if len(texts) < 50:
        raise InvalidInputError(
            f"{path} gives {len(texts)} distinct texts; distilling a query tower needs at least 50"
        )
    return texts


def _lead(text: str, max_chars: int = 300) -> str:
    cut = text[:max_chars]
    for stop in (". ", "? ", "! "):
        at = cut.find(stop)
        if at >= 40:
            return cut[: at + 1]
    return cut


def _unit_embeddings(model: Any, texts: Sequence[str], batch: int) -> Any:
    import torch

    with torch.no_grad():
        return model.encode(
            list(texts),
            batch_size=batch,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )


def distil_query_tower(
    base: str | Path,
    texts: Sequence[str],
    val_texts: Sequence[str],
    output: str | Path,
    *,
    document_model: Mapping[str, Any],
    config: DistilConfig = DistilConfig(),
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DistilResult:
    """Distil ``config.layers`` of the sentence-transformers model ``base`` into a query tower that
    reproduces ``base``'s embeddings of short texts; save it (full folder) to ``output``.

    ``document_model`` is the base encoder's fingerprint (``ModelFingerprint.to_meta()``), written
    into ``es_neural.json`` so the tower is refused next to any other document model. The best
    epoch by mean validation cosine is kept (epoch 0, the untrained kept layers, included)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from tqdm.auto import tqdm

    if not texts or not val_texts:
        raise InvalidInputError("distilling needs training and validation texts")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    say = log or (lambda _m: None)
    started = time.perf_counter()

    teacher = SentenceTransformer(str(base), device=device, local_files_only=True)
    # Trained on short texts; saved with the teacher's own limit (positions are the teacher's).
    saved_max_length = teacher.max_seq_length
    teacher.max_seq_length = config.max_length
    bert: Any = teacher[0].auto_model
    if not hasattr(bert, "encoder") or not hasattr(bert.encoder, "layer"):
        raise InvalidInputError(f"{base} is not a BERT-style encoder; a tower keeps BERT layers")
    teacher_layers = len(bert.encoder.layer)
    layers = spread_layers(config.layers, teacher_layers)

    # Queries are encoded with the model's ``query`` prompt (as ``encode_query`` adds it).
    prompt = (getattr(teacher, "prompts", None) or {}).get("query") or ""
    texts = [prompt + t for t in texts]
    val_texts = [prompt + t for t in val_texts]
    say(f"teacher targets: {len(texts)} training and {len(val_texts)} validation texts")
    batch = max(64, config.batch_size)
    targets = _unit_embeddings(teacher, texts, batch)
    val_targets = _unit_embeddings(teacher, val_texts, batch)

    student = copy.deepcopy(teacher)
    del teacher
    sbert: Any = student[0].auto_model
    sbert.encoder.layer = torch.nn.ModuleList([sbert.encoder.layer[i] for i in layers])
    sbert.config.num_hidden_layers = len(layers)
    for parameter in sbert.embeddings.parameters():
        parameter.requires_grad = False
    params = [p for p in student.parameters() if p.requires_grad]

    def validate() -> tuple[float, float]:
        student.eval()
        got = _unit_embeddings(student, val_texts, batch)
        cos = (got * val_targets).sum(-1)
        return float(cos.mean()), float(cos.min())

    result = DistilResult(
        output=Path(output),
        config=config,
        teacher_layers=teacher_layers,
        layers=layers,
        train_texts=len(texts),
        val_texts=len(val_texts),
        document_model=dict(document_model),
        device=device,
    )
    mean0, min0 = validate()
    result.epochs.append(DistilEpoch(0, 0, float("nan"), mean0, min0, 0.0))
    say(f"layers {list(layers)} untrained: validation cosine {mean0:.4f} (min {min0:.4f})")
    best_state = copy.deepcopy(student.state_dict())

    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total = steps_per_epoch * config.epochs
    # Frozen embeddings get no gradient, so AdamW leaves them as they are.
    optimizer, scheduler = adamw_with_warmup(
        student,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        total_steps=total,
    )
    order = list(range(len(texts)))
    rng = random.Random(config.seed)
    step = 0
    for epoch in range(1, config.epochs + 1):
        student.train()
        rng.shuffle(order)
        t0 = time.perf_counter()
        losses: list[float] = []
        bar = tqdm(
            range(0, len(order), config.batch_size),
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not progress,
            unit="step",
        )
        for start in bar:
            idx = order[start : start + config.batch_size]
            features = _features(student, [texts[i] for i in idx], device)
            out = torch.nn.functional.normalize(student(features)["sentence_embedding"], dim=-1)
            target = targets[idx]
            loss = (1 - (out * target).sum(-1)).mean() + ((out - target) ** 2).sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            if len(losses) % 20 == 0:
                bar.set_postfix(loss=f"{sum(losses[-20:]) / 20:.4f}")
        mean_cos, min_cos = validate()
        row = DistilEpoch(
            epoch,
            step,
            float(np.mean(losses)),
            mean_cos,
            min_cos,
            time.perf_counter() - t0,
        )
        result.epochs.append(row)
        say(
            f"epoch {epoch}: loss {row.mean_loss:.4f}, validation cosine {mean_cos:.4f} "
            f"(min {min_cos:.4f}), {row.seconds:.0f} s"
        )
        if mean_cos > result.best.val_cosine_mean:
            result.best_epoch = epoch
            best_state = copy.deepcopy(student.state_dict())
    student.load_state_dict(best_state)
    student.max_seq_length = saved_max_length
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    student.save(str(out_dir))
    meta = {
        "role": "query_encoder",
        "document_model": dict(document_model),
        "tower": {"layers": list(layers), "teacher_layers": teacher_layers},
    }
    (out_dir / TOWER_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    result.seconds = time.perf_counter() - started
    return result


def write_tower_card(result: DistilResult, *, base: str, data: Mapping[str, Any]) -> Path:
    """``README.md`` and ``training.json`` in the saved folder, from the run's own facts."""
    folder = result.output
    cfg = result.config
    facts = {"base": base, "data": dict(data), **result.to_dict()}
    (folder / "training.json").write_text(
        json.dumps(facts, indent=2, default=str) + "\n", encoding="utf-8"
    )
    rows = "\n".join(
        f"| {e.epoch} | {e.steps} | {'-' if e.epoch == 0 else f'{e.mean_loss:.4f}'} | "
        f"{e.val_cosine_mean:.4f} | {e.val_cosine_min:.4f} | {e.seconds:.0f} |"
        for e in result.epochs
    )
    layers = ", ".join(map(str, result.layers))
    text = f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags: [sentence-transformers, query-encoder, distillation, es-neural]
---

# es-neural query tower: {len(result.layers)} of {result.teacher_layers} layers of {base}

A **query-only** encoder distilled by `es-neural train query-tower`: layers {layers} of the
document model `{base}`, trained to put a short text where the full model puts it. Documents keep
the full model's embeddings (the index is not rebuilt); use it with
`ES_NEURAL_DENSE__QUERY_MODEL=<this folder>` next to the same `ES_NEURAL_DENSE__MODEL`. es-neural
refuses it next to any other document model. No relevance judgments were used.

## Data
```json
{json.dumps(dict(data), indent=2)}
```

Document model (its fingerprint, as recorded in `es_neural.json`):
```json
{json.dumps(dict(result.document_model), indent=2)}
```

## Recipe
- Start: the full model with only layers {layers} kept; word, position and type embeddings
  frozen (they stay the document model's own, so a compact copy stores the kept layers only).
- Target: the full model's unit embedding of each text; loss `1 - cosine + squared distance`.
- AdamW, learning rate {cfg.learning_rate:g}, weight decay {cfg.weight_decay}, warm-up
  {cfg.warmup_ratio:.0%} then linear decay, gradient clipping {cfg.grad_clip},
  {cfg.batch_size} texts per step, {cfg.max_length} tokens, {cfg.epochs} epochs, seed
  {cfg.seed}; {result.train_texts} training texts, {result.seconds / 60:.1f} min on
  {result.device}.
- Kept: epoch {result.best_epoch}, by the mean cosine to the full model on
  {result.val_texts} validation texts.

| epoch | steps | mean loss | validation cosine (mean) | (min) | s |
|---:|---:|---:|---:|---:|---:|
{rows}
"""
    path = folder / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
