"""Device job of issue 18: a general-purpose reranker, leave-one-domain-out, and fusion evidence.

Runs on one GPU machine with no engine and no network, from the repository root::

    python bench/reranker_gpu.py --data .device/train --models .device/models --out "$OUT" \\
        --budget-s 420

``--data`` is the pack written by ``scripts/pack_device_train.py`` (the labelled domains of
:mod:`es_neural.train.mix`); ``--models`` holds ``minilm-fp16`` (or ``minilm``: the
all-MiniLM-L6-v2 sentence-transformers folder) and ``splade-tiny``. Steps, each timed and
wrapped so that a failure is recorded and the job goes on:

a. per domain, the three legs over the domain's whole pool, exactly (BM25 of
   :mod:`es_neural.train.bm25` in CPU worker processes while the GPU encodes; the project's
   dense and SPLADE encoders on the GPU), fused with the project's fusion functions in the worker
   processes; the default fusion's top 50 of every train query are its hard-negative pool;
b. nDCG@10 of every leg and of RRF (k 10, 60) and equal-weight linear fusion (min-max,
   z-score, l2) on each domain's test and dev splits (issue 18 item 4);
c. CrossEncoder training on the mix, listwise softmax loss over 1 positive + 7 negatives,
   bf16 autocast: one MiniLM-L6 model per held-out domain (trained without that domain and its
   label-free pairs), the all-data MiniLM-L6 model and the all-data SPLADE-tiny 2x128 model;
   each model measures its own steps/s after 20 steps and sizes its run to its share of the
   budget;
d. each held-out domain's test candidates (fused top 20) reranked by the model that never saw
   it: fused, rerank alone, interpolated at 0.1 / 0.2 / 0.3 / 0.5 / 0.7, and at the weight chosen on
   the dev queries of the *other* domains;
e. both all-data models saved in float16 with their tokenizer, as uncompressed tar files cut
   into parts of at most 15 MiB (``$OUT/reranker/<name>.tar.NN``; rejoin with ``cat``), and
   ``$OUT/reranker_gpu.json`` (rewritten after every phase), then one ``RESULT {json}`` line.

``--tiny`` runs every step on a few queries per domain with a few training steps: the CPU dry
run that proves the plumbing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import queue
import random
import sys
import tarfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.7)
RERANK_FUSIONS = ("rrf-60", "linear-minmax")
TOP_N = 20
PART_BYTES = 15 * 1024 * 1024


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- job


class Job:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.perf_counter()
        self.deadline = self.started + args.budget_s
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.result: dict[str, Any] = {
            "job": "issue 18 reranker (bench/reranker_gpu.py)",
            "tiny": bool(args.tiny),
            "budget_s": args.budget_s,
            "errors": [],
            "timing": {},
            "skipped": [],
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        say(f"phase {name} (t={self.elapsed():.0f}s, {self.left():.0f}s left)")
        try:
            yield
        except _Skip:
            say(f"phase {name}: not needed")
        except Exception as exc:  # every phase records its failure and the job goes on
            self.error(name, exc)
        finally:
            self.result["timing"][name] = round(time.perf_counter() - t0, 2)
            self.write()

    def error(self, where: str, exc: BaseException) -> None:
        tail = "".join(traceback.format_exception(exc))[-2500:]
        say(f"ERROR in {where}: {exc!r}\n{tail}")
        self.result["errors"].append({"where": where, "error": repr(exc)[:500], "trace": tail})

    def write(self) -> None:
        self.result["elapsed_s"] = round(self.elapsed(), 1)
        path = self.out / "reranker_gpu.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=1, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)


class _Skip(Exception):
    """Raised inside a phase that has nothing to do (its result came from a cache)."""


def write_legs(path: Path, legs: Mapping[str, Any]) -> None:
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump(legs, fh)
    tmp.replace(path)
    say(f"legs written to {path}")


def read_legs(path: Path) -> dict[str, Any]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return {
        name: {
            leg: {q: [(doc, float(s)) for doc, s in hits] for q, hits in ranking.items()}
            for leg, ranking in by_leg.items()
        }
        for name, by_leg in data.items()
    }


# ----------------------------------------------------------------------------------- environment


def import_encoders() -> tuple[Any, Any, str]:
    """The project's encoder classes; without pydantic (the GPU box may lack it) the encoder
    modules are imported without the package ``__init__`` (which loads the settings)."""
    try:
        from es_neural.encoders.dense import SentenceTransformerDense
        from es_neural.encoders.sparse import SpladeEncoder

        return SentenceTransformerDense, SpladeEncoder, "package"
    except ImportError as exc:
        if "pydantic" not in str(exc) and "dotenv" not in str(exc):
            raise
        import types

        for name in [m for m in sys.modules if m.startswith("es_neural.encoders")]:
            del sys.modules[name]
        stub = types.ModuleType("es_neural.encoders")
        stub.__path__ = [str(REPO / "es_neural" / "encoders")]
        sys.modules["es_neural.encoders"] = stub
        from es_neural.encoders.dense import SentenceTransformerDense
        from es_neural.encoders.sparse import SpladeEncoder

        return SentenceTransformerDense, SpladeEncoder, f"modules only ({exc})"


def model_folder(models: Path, names: Sequence[str]) -> Path:
    for name in names:
        if (models / name / "config.json").is_file():
            return models / name
    raise FileNotFoundError(f"none of {list(names)} under {models}")


# ------------------------------------------------------------------------------- cross-encoders


class Scorer:
    """A cross-encoder (``CrossEncoder`` when it loads, else the transformers model) on a
    device, trained and scored here with the plain PyTorch loop."""

    def __init__(self, folder: Path, *, device: str, max_length: int) -> None:
        import torch

        self.device = device
        self.max_length = max_length
        self.kind = "sentence_transformers.CrossEncoder"
        try:
            from sentence_transformers import CrossEncoder

            self.ce: Any = CrossEncoder(
                str(folder),
                num_labels=1,
                max_length=max_length,
                device=device,
                local_files_only=True,
                model_kwargs={"dtype": torch.float32},
            )
            self.model = self.ce.model
            self.tokenizer = self.ce.tokenizer
        except Exception as exc:  # fall back to the transformers classes CrossEncoder wraps
            say(f"CrossEncoder failed to load ({exc!r}); using AutoModelForSequenceClassification")
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            self.kind = f"transformers (CrossEncoder failed: {exc!r})"[:300]
            self.ce = None
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), num_labels=1, local_files_only=True, dtype=torch.float32
            )
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model.to(device)
        self.params = sum(p.numel() for p in self.model.parameters())

    def autocast(self) -> Any:
        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode(self, queries: Sequence[str], docs: Sequence[str]) -> Any:
        return self.tokenizer(
            list(queries),
            list(docs),
            padding=True,
            truncation="longest_first",
            max_length=self.max_length,
            return_tensors="pt",
        )

    def score(self, pairs: Sequence[tuple[str, str]], *, batch: int) -> list[float]:
        import torch

        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        out = [0.0] * len(pairs)
        self.model.eval()
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                enc = self.encode([pairs[i][0] for i in idx], [pairs[i][1] for i in idx])
                enc = {k: v.to(self.device, non_blocking=True) for k, v in enc.items()}
                logits = self.model(**enc).logits.float().reshape(len(idx), -1)[:, -1]
                for i, value in zip(idx, logits.tolist(), strict=True):
                    out[i] = float(value)
        return out

    def save(self, folder: Path, meta: Mapping[str, Any]) -> list[str]:
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        self.model.to(torch.float16)
        saved = False
        if self.ce is not None:
            try:
                self.ce.save_pretrained(str(folder), safe_serialization=True)
                saved = True
            except Exception as exc:
                say(f"CrossEncoder.save_pretrained failed ({exc!r}); saving the transformers model")
        if not saved:
            self.model.save_pretrained(str(folder), safe_serialization=True)
            self.tokenizer.save_pretrained(str(folder))
        (folder / "es_neural.json").write_text(
            json.dumps(
                {
                    "interpolation": meta.get("interpolation"),
                    "validated_top_n": TOP_N,
                    "validation_ndcg@10": meta.get("validation_ndcg@10"),
                    "max_length": self.max_length,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        (folder / "training.json").write_text(
            json.dumps(meta, indent=1, default=str) + "\n", encoding="utf-8"
        )
        return sorted(p.name for p in folder.rglob("*") if p.is_file())


def tar_parts(folder: Path, dest: Path, name: str) -> list[dict[str, Any]]:
    """``folder`` as an uncompressed tar (arcname ``name/``) cut into ``dest/name.tar.NN``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(folder), arcname=name)
    data = buffer.getvalue()
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    for number, start in enumerate(range(0, len(data), PART_BYTES)):
        path = dest / f"{name}.tar.{number:02d}"
        path.write_bytes(data[start : start + PART_BYTES])
        parts.append({"file": str(path.relative_to(dest.parent)), "bytes": path.stat().st_size})
    return parts


# ------------------------------------------------------------------------------------- training


class Batches:
    """Listwise batches (one domain per batch, domains drawn by weight) tokenized ahead in a
    background thread."""

    def __init__(
        self,
        scorer: Scorer,
        items: Mapping[str, Sequence[Any]],
        weights: Mapping[str, float],
        fillers: Mapping[str, Sequence[str]],
        *,
        groups: int,
        negatives: int,
        seed: int,
    ) -> None:
        from es_neural.train.mix import sample_group

        self._sample_group = sample_group
        self.scorer = scorer
        self.items = items
        self.names = [n for n in items if items[n]]
        self.weights = [weights[n] for n in self.names]
        self.fillers = fillers
        self.groups = groups
        self.negatives = negatives
        self.rng = random.Random(seed)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=6)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _make(self) -> tuple[Any, int, int, str]:
        name = self.rng.choices(self.names, weights=self.weights, k=1)[0]
        chosen = [self.rng.choice(self.items[name]) for _ in range(self.groups)]
        lists = [
            self._sample_group(it, self.rng, negatives=self.negatives, filler=self.fillers[name])
            for it in chosen
        ]
        size = min(len(x) for x in lists)
        queries = [it.query for it, docs in zip(chosen, lists, strict=True) for _ in docs[:size]]
        texts = [d for docs in lists for d in docs[:size]]
        return self.scorer.encode(queries, texts), len(lists), size, name

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                batch = self._make()
            except Exception as exc:  # handed to the training loop, which records it
                batch = exc
            while not self.stop.is_set():
                try:
                    self.queue.put(batch, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def next(self) -> tuple[Any, int, int, str]:
        batch = self.queue.get(timeout=120)
        if isinstance(batch, Exception):
            raise batch
        return batch

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def train(
    scorer: Scorer,
    items: Mapping[str, Sequence[Any]],
    weights: Mapping[str, float],
    fillers: Mapping[str, Sequence[str]],
    *,
    lr: float,
    groups: int,
    negatives: int,
    alloc_s: float,
    max_steps: int,
    fixed_steps: int | None,
    seed: int,
) -> dict[str, Any]:
    """Train ``scorer`` in place; returns what happened (steps, rate, losses)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model = scorer.model
    model.train()
    no_decay = ("bias", "LayerNorm.weight", "layer_norm")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    param_groups = [
        {
            "params": [p for n, p in named if not any(k in n for k in no_decay)],
            "weight_decay": 0.01,
        },
        {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    cuda = scorer.device.startswith("cuda")
    try:
        optimizer = torch.optim.AdamW(param_groups, lr=lr, fused=cuda)
    except (TypeError, RuntimeError):
        optimizer = torch.optim.AdamW(param_groups, lr=lr)
    warmup = 25 if fixed_steps is None else 1
    plan = {"target": fixed_steps if fixed_steps is not None else max_steps}

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (plan["target"] - step) / max(1, plan["target"] - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    batches = Batches(
        scorer, items, weights, fillers, groups=groups, negatives=negatives, seed=seed
    )
    losses: list[float] = []
    per_domain: dict[str, int] = {}
    t_start = time.perf_counter()
    t_measure = t_start
    stop_at = t_start + alloc_s if fixed_steps is None else math.inf
    step = 0
    try:
        while step < plan["target"] and time.perf_counter() < stop_at:
            enc, n_groups, size, name = batches.next()
            enc = {k: v.to(scorer.device, non_blocking=True) for k, v in enc.items()}
            with scorer.autocast():
                logits = model(**enc).logits
            logits = logits.float().reshape(n_groups, size)
            target = torch.zeros(n_groups, dtype=torch.long, device=logits.device)
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            per_domain[name] = per_domain.get(name, 0) + 1
            if step % 10 == 0 or step <= 3:
                losses.append(float(loss.detach()))
            if step == 5:
                if cuda:
                    torch.cuda.synchronize()
                t_measure = time.perf_counter()
            if fixed_steps is None and step == 25:
                if cuda:
                    torch.cuda.synchronize()
                rate = 20 / max(1e-6, time.perf_counter() - t_measure)
                remaining = stop_at - time.perf_counter()
                plan["target"] = max(step + 1, min(max_steps, step + int(rate * remaining * 0.97)))
                say(f"  {rate:.2f} steps/s -> {plan['target']} steps in {alloc_s:.0f}s")
    finally:
        batches.close()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t_start
    model.eval()
    return {
        "steps": step,
        "planned_steps": plan["target"],
        "seconds": round(seconds, 1),
        "steps_per_s": round(step / max(seconds, 1e-9), 2),
        "pairs_per_step": groups * (1 + negatives),
        "loss_first": losses[:3],
        "loss_last": losses[-3:],
        "batches_per_domain": per_domain,
        "lr": lr,
        "groups": groups,
        "negatives": negatives,
        "max_length": scorer.max_length,
    }


# ---------------------------------------------------------------------------------- evaluation


def rerank_report(
    scorer: Scorer,
    domains: Mapping[str, Any],
    fused: Mapping[str, Mapping[str, Mapping[str, list[tuple[str, float]]]]],
    *,
    test_domains: Sequence[str],
    dev_domains: Sequence[str],
    batch: int,
    dev_cap: int,
) -> dict[str, Any]:
    """Rerank the fused top-N of ``test_domains``' test and ``dev_domains``' dev queries; the
    interpolation weight is chosen on the dev queries (macro mean over domains)."""
    from es_neural.train.mining import DEFAULT_FUSION, ndcg_at_k, rerank_ranking

    jobs: list[tuple[str, str, list[str]]] = []  # (domain, split, qids)
    for name in dev_domains:
        qids = [q.qid for q in domains[name].split("dev")][:dev_cap]
        jobs.append((name, "dev", qids))
    for name in test_domains:
        jobs.append((name, "test", [q.qid for q in domains[name].split("test")]))
    pairs: list[tuple[str, str]] = []
    keys: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    for name, split, qids in jobs:
        domain = domains[name]
        text_of = {q.qid: q.text for q in domain.queries}
        specs = RERANK_FUSIONS if split == "test" else (DEFAULT_FUSION,)
        for spec in specs:
            ranking = fused[name][spec]
            for qid in qids:
                for doc, _ in ranking.get(qid, [])[:TOP_N]:
                    key = (name, qid, doc)
                    if key not in seen:
                        seen.add(key)
                        keys.append(key)
                        pairs.append((text_of[qid], domain.docs[doc]))
    t0 = time.perf_counter()
    values = scorer.score(pairs, batch=batch)
    cache = dict(zip(keys, values, strict=True))
    score_s = time.perf_counter() - t0

    def evaluate(name: str, split: str, qids: Sequence[str], spec: str) -> dict[str, float]:
        qrels = {q: r for q, r in domains[name].qrels(split).items() if q in set(qids)}
        ranking = {q: fused[name][spec].get(q, [])[:100] for q in qids}

        def score(qid: str, doc: str) -> float:
            return cache[(name, qid, doc)]

        row = {"fused": ndcg_at_k(qrels, ranking)}
        row["rerank"] = ndcg_at_k(qrels, rerank_ranking(ranking, score, top_n=TOP_N))
        for alpha in ALPHAS:
            reranked = rerank_ranking(ranking, score, top_n=TOP_N, interpolation=alpha)
            row[f"interp-{alpha:g}"] = ndcg_at_k(qrels, reranked)
        return {k: round(v, 4) for k, v in row.items()}

    report: dict[str, Any] = {"pairs_scored": len(pairs), "score_s": round(score_s, 2)}
    dev_rows: dict[str, dict[str, float]] = {}
    for name, split, qids in jobs:
        if split == "dev" and qids:
            dev_rows[name] = evaluate(name, "dev", qids, DEFAULT_FUSION)
    report["dev"] = dev_rows
    chosen: float | None = None
    if dev_rows:
        means = {
            a: sum(r[f"interp-{a:g}"] for r in dev_rows.values()) / len(dev_rows) for a in ALPHAS
        }
        means_fused = sum(r["fused"] for r in dev_rows.values()) / len(dev_rows)
        chosen = max(ALPHAS, key=lambda a: (round(means[a], 6), -a))
        report["dev_macro"] = {
            "fused": round(means_fused, 4),
            "rerank": round(sum(r["rerank"] for r in dev_rows.values()) / len(dev_rows), 4),
            **{f"interp-{a:g}": round(v, 4) for a, v in means.items()},
        }
    report["chosen_alpha"] = chosen
    tests: dict[str, Any] = {}
    for name, split, qids in jobs:
        if split != "test" or not qids:
            continue
        per_spec = {spec: evaluate(name, "test", qids, spec) for spec in RERANK_FUSIONS}
        for row in per_spec.values():
            if chosen is not None:
                row["chosen"] = row[f"interp-{chosen:g}"]
        tests[name] = per_spec
    report["test"] = tests
    return report


# ------------------------------------------------------------------------------------------ main


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / ".device" / "train")
    p.add_argument("--models", type=Path, default=REPO / ".device" / "models")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", REPO / "bench" / "out")))
    p.add_argument("--budget-s", type=float, default=420.0)
    p.add_argument("--tiny", action="store_true", help="CPU dry run: a few queries and steps")
    p.add_argument("--workers", type=int, default=0, help="fusion/BM25 processes (0: auto)")
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--lodo", default="scifact,wikiqa,trecqa,stackexchange,msmarco")
    p.add_argument("--no-tiny-model", action="store_true", help="skip the SPLADE-tiny model")
    p.add_argument(
        "--no-all-data",
        action="store_true",
        help="train only the held-out models of --lodo (no all-data model, nothing saved)",
    )
    p.add_argument(
        "--backbone",
        choices=("minilm", "tiny"),
        default="minilm",
        help="backbone of the leave-one-domain-out models (tiny: SPLADE-tiny's 2x128 BERT, the "
        "CPU plan: no MiniLM model is trained)",
    )
    p.add_argument(
        "--train-cap", type=int, default=0, help="at most this many train queries per domain"
    )
    p.add_argument(
        "--extra-docs",
        type=int,
        default=-1,
        help="pool = the kept queries' documents + this many others (-1: the whole pool)",
    )
    p.add_argument(
        "--full-pool",
        default="scifact",
        help="domains that keep their whole pool under --train-cap/--extra-docs",
    )
    p.add_argument("--pseudo-limit", type=int, default=1500)
    p.add_argument("--groups", type=int, default=0, help="queries per step (0: 32)")
    p.add_argument("--negatives", type=int, default=0, help="negatives per query (0: 7)")
    p.add_argument("--max-length", type=int, default=0, help="cross-encoder tokens (0: 256)")
    p.add_argument(
        "--legs-cache",
        type=Path,
        default=None,
        help="JSON(.gz) of the mined legs: read when present (no encoding), else written",
    )
    p.add_argument(
        "--score",
        type=Path,
        action="append",
        default=[],
        help="a trained reranker folder to score on every labelled domain's test and dev "
        "queries (repeat); with --no-train nothing is trained",
    )
    p.add_argument("--no-train", action="store_true", help="score --score models only")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    job = Job(args)
    res = job.result
    tiny = args.tiny
    workers = args.workers or (2 if tiny else max(2, min(14, (os.cpu_count() or 4) - 2)))

    # Worker processes first (spawned: nothing of CUDA is inherited), warmed up while data load.
    pool: Any = None
    with job.phase("workers"):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
        from es_neural.train import mining as _mining

        warm = [pool.submit(_mining.fuse_chunk, {}, [], 1, 1) for _ in range(workers)]
        res["workers"] = workers

    from es_neural.train import mix
    from es_neural.train.mining import (
        DEFAULT_FUSION,
        FUSIONS,
        LEGS,
        bm25_search,
        fuse_chunk,
        ndcg_at_k,
        retrieve_legs,
    )

    domains: dict[str, Any] = {}
    with job.phase("load"):
        labelled = mix.read_pack(args.data)
        if tiny:
            small = []
            for d in labelled:
                ids = [
                    q.qid
                    for s, n in (("test", 4), ("dev", 3), ("train", 8))
                    for q in d.split(s)[:n]
                ]
                small.append(d.subset(ids, extra_docs=30, max_negatives=6, seed=args.seed))
            labelled = small
        elif args.train_cap > 0 or args.extra_docs >= 0:
            full = {n for n in args.full_pool.split(",") if n}
            capped = []
            for d in labelled:
                if d.name in full:
                    capped.append(d)
                    continue
                train_ids = [q.qid for q in d.split("train")]
                if args.train_cap > 0:
                    train_ids = train_ids[: args.train_cap]
                ids = [q.qid for s in ("test", "dev") for q in d.split(s)] + train_ids
                extra = args.extra_docs if args.extra_docs >= 0 else len(d.docs)
                capped.append(d.subset(ids, extra_docs=extra, seed=args.seed))
            labelled = capped
        pseudo = mix.pseudo_domains(
            labelled, limit=12 if tiny else args.pseudo_limit, seed=args.seed
        )
        domains = {d.name: d for d in (*labelled, *pseudo)}
        res["domains"] = {
            d.name: {
                "family": d.family,
                "labelled": d.labelled,
                **d.counts(),
                "split": d.splits_note,
            }
            for d in domains.values()
        }
        for w in warm:
            w.result(timeout=120)

    # Pools: a label-free domain that shares its source's pool is searched with it.
    pools: dict[str, list[str]] = {}
    for d in domains.values():
        owner = next((o for o in pools if domains[o].docs is d.docs), None)
        pools.setdefault(owner or d.name, []).append(d.name)

    bm25_futures: dict[str, Any] = {}
    with job.phase("bm25_submit"):
        if args.legs_cache is not None and args.legs_cache.is_file():
            raise _Skip()  # the legs come from the cache
        for owner, members in pools.items():
            docs = domains[owner].docs
            texts = [q.text for m in members for q in domains[m].queries]
            bm25_futures[owner] = pool.submit(bm25_search, list(docs.values()), texts, args.depth)

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device == "cuda"
    res["env"] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }
    with contextlib.suppress(Exception):
        import sentence_transformers
        import transformers

        res["env"]["transformers"] = transformers.__version__
        res["env"]["sentence_transformers"] = sentence_transformers.__version__
    if cuda:
        torch.set_float32_matmul_precision("high")  # TF32 for the float32 matmuls

    minilm_dir = model_folder(args.models, ("minilm-fp16", "minilm"))
    splade_dir = model_folder(args.models, ("splade-tiny",))

    legs: dict[str, dict[str, Any]] = {}
    cache = args.legs_cache
    if cache is not None and cache.is_file():
        with job.phase("legs_cache"):
            legs = read_legs(cache)
            missing = sorted(set(domains) - set(legs))
            if missing:
                raise SystemExit(f"{cache} lacks the legs of {missing}: remove it to re-mine")
            res["legs_cache"] = str(cache)
    with job.phase("mine_encode"):
        if legs:
            raise _Skip()
        dense_cls, sparse_cls, how = import_encoders()
        res["env"]["encoders_import"] = how
        dense = dense_cls(str(minilm_dir), device=device, batch_size=256 if cuda else 32)
        sparse = sparse_cls(str(splade_dir), device=device, batch_size=128 if cuda else 16)
        dense.load()
        sparse.load()
        timings: dict[str, float] = {}
        for owner, members in pools.items():
            docs = domains[owner].docs
            qkeys = [(m, q.qid) for m in members for q in domains[m].queries]
            qtexts = [q.text for m in members for q in domains[m].queries]
            t0 = time.perf_counter()
            got = retrieve_legs(
                list(docs),
                list(docs.values()),
                [f"{m}\t{q}" for m, q in qkeys],
                qtexts,
                dense=dense,
                sparse=sparse,
                depth=args.depth,
                timings=timings,
                bm25_hits=bm25_futures[owner].result(timeout=max(30.0, job.left())),
            )
            for m in members:
                legs[m] = {leg: {} for leg in got}
            for leg, ranking in got.items():
                for key, hits in ranking.items():
                    m, qid = key.split("\t", 1)
                    legs[m][leg][qid] = hits
            say(
                f"  {owner}: {len(docs)} docs, {len(qtexts)} queries, "
                f"{time.perf_counter() - t0:.1f}s"
            )
        res["mining_timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        del dense, sparse
        if cuda:
            torch.cuda.empty_cache()
        if cache is not None:
            write_legs(cache, legs)

    fused: dict[str, dict[str, dict[str, list[tuple[str, float]]]]] = {}
    with job.phase("fuse"):
        futures = []
        all_specs = list(FUSIONS)
        for name, d in domains.items():
            fused[name] = {s: {} for s in all_specs}
            by_split = {s: [q.qid for q in d.split(s)] for s in mix.SPLITS}
            for split, qids in by_split.items():
                specs = [DEFAULT_FUSION] if split == "train" else all_specs
                keep = 50 if split == "train" else args.depth
                for start in range(0, len(qids), 100):
                    chunk = {
                        q: {leg: legs[name][leg].get(q, []) for leg in legs[name]}
                        for q in qids[start : start + 100]
                    }
                    futures.append((name, pool.submit(fuse_chunk, chunk, specs, args.depth, keep)))
        for name, future in futures:
            for spec, ranking in future.result(timeout=max(30.0, job.left())).items():
                fused[name][spec].update(ranking)

    with job.phase("retrieval_eval"):
        table: dict[str, Any] = {}
        for name, d in domains.items():
            if not d.labelled:
                continue
            table[name] = {}
            for split in ("test", "dev"):
                qrels = d.qrels(split)
                if not qrels:
                    continue
                row = {leg: ndcg_at_k(qrels, legs[name][leg]) for leg in legs[name]}
                row.update({s: ndcg_at_k(qrels, fused[name][s]) for s in FUSIONS})
                table[name][split] = {k: round(v, 4) for k, v in row.items()}
        res["retrieval"] = table
        res["fusion_robustness"] = robustness(table, [leg for leg in LEGS], list(FUSIONS))
        mined_recall = {}
        for name, d in domains.items():
            train_q = d.split("train")
            if train_q:
                found = sum(
                    1
                    for q in train_q
                    if any(
                        doc in q.qrels for doc, _ in fused[name][DEFAULT_FUSION].get(q.qid, [])[:50]
                    )
                )
                mined_recall[name] = round(found / len(train_q), 3)
        res["mining_positive_in_top50"] = mined_recall
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------------------------------------------- training
    items: dict[str, list[Any]] = {}
    fillers: dict[str, list[str]] = {}
    with job.phase("items"):
        for name, d in domains.items():
            mined = {q: [doc for doc, _ in hits] for q, hits in fused[name][DEFAULT_FUSION].items()}
            items[name] = mix.training_items(d, mined)
            docs = list(d.docs.values())
            rng = random.Random(args.seed)
            fillers[name] = rng.sample(docs, min(len(docs), 2000))
        res["train_items"] = {n: len(v) for n, v in items.items()}

    labelled_names = [n for n, d in domains.items() if d.labelled]

    def report(scorer: Scorer, test_domains: list[str], dev_domains: list[str]) -> dict[str, Any]:
        return rerank_report(
            scorer,
            domains,
            fused,
            test_domains=test_domains,
            dev_domains=dev_domains,
            batch=512 if cuda else 32,
            dev_cap=3 if tiny else 200,
        )

    res["scored"] = {}
    for folder in args.score:
        with job.phase(f"score:{folder.name}"):
            scorer = Scorer(folder, device=device, max_length=args.max_length or 256)
            res["scored"][str(folder)] = report(scorer, labelled_names, labelled_names)
            del scorer
    if args.no_train:
        return finish(job)
    families = [f for f in args.lodo.split(",") if f and f in {d.family for d in domains.values()}]
    plan: list[tuple[str, str, str | None]] = []  # (model name, backbone, held-out family)
    main_bb = args.backbone
    if "scifact" in families:
        plan.append((f"{main_bb}-no-scifact", main_bb, "scifact"))
    if not args.no_all_data:
        plan.append((f"{main_bb}-all", main_bb, None))
    if main_bb == "minilm" and not args.no_tiny_model and not args.no_all_data:
        plan.append(("tiny-all", "tiny", None))
    plan += [(f"{main_bb}-no-{f}", main_bb, f) for f in families if f != "scifact"]
    units = {"minilm": 1.0, "tiny": 0.6}
    weight_all = 1.5
    res["plan"] = [p[0] for p in plan]
    res["models"] = {}
    res["lodo"] = {}
    eval_estimate = 6.0 if cuda else 30.0
    for index, (model_name, backbone, held_out) in enumerate(plan):
        remaining = plan[index:]
        share = [
            (weight_all if h is None and b == main_bb else 1.0) * units[b] for _, b, h in remaining
        ]
        reserve = eval_estimate * len(remaining) + (
            8.0 if any(h is None for _, _, h in remaining) else 0.0
        )
        available = job.left() - reserve
        if available < (20.0 if cuda else 5.0):
            res["skipped"].append({"model": model_name, "why": f"budget ({job.left():.0f}s left)"})
            say(f"skip {model_name}: {job.left():.0f}s left")
            continue
        alloc = available * share[0] / sum(share)
        with job.phase(f"train:{model_name}"):
            t_model = time.perf_counter()
            use = {
                n: v for n, v in items.items() if held_out is None or domains[n].family != held_out
            }
            weights = {
                n: math.sqrt(max(1, len(v))) * (1.0 if domains[n].labelled else 0.5)
                for n, v in use.items()
            }
            folder = minilm_dir if backbone == "minilm" else splade_dir
            scorer = Scorer(
                folder, device=device, max_length=64 if tiny else (args.max_length or 256)
            )
            say(
                f"train {model_name} ({scorer.params / 1e6:.1f}M params, {scorer.kind}), "
                f"{alloc:.0f}s allotted"
            )
            info = train(
                scorer,
                use,
                weights,
                fillers,
                lr=(6e-5 if backbone == "minilm" else 2e-4),
                groups=4 if tiny else (args.groups or 32),
                negatives=3 if tiny else (args.negatives or 7),
                alloc_s=alloc,
                max_steps=args.max_steps,
                fixed_steps=2 if tiny else None,
                seed=args.seed + index,
            )
            info.update(
                {
                    "backbone": backbone,
                    "held_out": held_out,
                    "scorer": scorer.kind,
                    "params": scorer.params,
                    "train_domains": sorted(use),
                }
            )
            res["models"][model_name] = info
            job.write()
            t_eval = time.perf_counter()
            test_domains = [held_out] if held_out else labelled_names
            dev_domains = [n for n in labelled_names if n != held_out]
            rep = report(scorer, test_domains, dev_domains)
            info["eval_s"] = round(time.perf_counter() - t_eval, 1)
            eval_estimate = max(eval_estimate * 0.5, info["eval_s"] + 1.0)
            if held_out:
                res["lodo"][held_out] = {"model": model_name, **rep}
            else:
                res["models"][model_name]["report"] = rep
                dev_macro = rep.get("dev_macro", {})
                alpha = rep.get("chosen_alpha")
                meta = {
                    "model": model_name,
                    "backbone": str(folder.name),
                    "interpolation": alpha,
                    "validation_ndcg@10": dev_macro.get(f"interp-{alpha:g}") if alpha else None,
                    "validation": "dev splits of every labelled domain (never trained on), "
                    "macro mean, fused top-20 of RRF k=60",
                    "training": {k: v for k, v in info.items() if k != "report"},
                    "domains": {n: res["domains"][n] for n in sorted(use)},
                }
                with tempdir() as tmp:
                    files = scorer.save(tmp / model_name, meta)
                    parts = tar_parts(tmp / model_name, job.out / "reranker", model_name)
                info["saved"] = {"files": files, "parts": parts}
            info["total_s"] = round(time.perf_counter() - t_model, 1)
            del scorer
            if cuda:
                torch.cuda.empty_cache()

    return finish(job)


def finish(job: Job) -> int:
    """The summary, the JSON file and the one ``RESULT`` line."""
    with job.phase("summary"):
        job.result["summary"] = summarize(job.result)
    job.write()
    print("RESULT " + json.dumps(compact(job.result), default=str), flush=True)
    return 0


@contextlib.contextmanager
def tempdir() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="reranker-gpu-") as name:
        yield Path(name)


def robustness(
    table: Mapping[str, Mapping[str, Mapping[str, float]]],
    legs: Sequence[str],
    fusions: Sequence[str],
) -> dict[str, Any]:
    """Per split: each fusion's mean nDCG@10, its margin over the best single leg per domain
    (mean and worst), and how many domains it beats every leg on."""
    out: dict[str, Any] = {}
    for split in ("test", "dev"):
        rows = {n: t[split] for n, t in table.items() if split in t}
        if not rows:
            continue
        summary = {}
        for f in fusions:
            margins = [r[f] - max(r[leg] for leg in legs if leg in r) for r in rows.values()]
            summary[f] = {
                "mean": round(sum(r[f] for r in rows.values()) / len(rows), 4),
                "mean_margin": round(sum(margins) / len(margins), 4),
                "worst_margin": round(min(margins), 4),
                "beats_every_leg": sum(1 for m in margins if m > 0),
                "domains": len(rows),
            }
        best = max(fusions, key=lambda f: (summary[f]["worst_margin"], summary[f]["mean"]))
        out[split] = {"by_fusion": summary, "most_robust": best}
    return out


def summarize(res: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the issue asks for, per held-out domain and per all-data model."""
    keys = ("fused", "rerank", *(f"interp-{a:g}" for a in ALPHAS), "chosen")
    lodo: dict[str, Any] = {}
    for family, report in res.get("lodo", {}).items():
        lodo[family] = {"chosen_alpha": report.get("chosen_alpha")}
        for spec in RERANK_FUSIONS:
            row = report.get("test", {}).get(family, {}).get(spec, {})
            lodo[family][spec] = {k: row.get(k) for k in keys}
            if row.get("chosen") is not None:
                lodo[family][spec]["gain"] = round(row["chosen"] - row["fused"], 4)
    models = {}
    for name, info in res.get("models", {}).items():
        rep = info.get("report") or {}
        dev = rep.get("dev_macro") or {}
        alpha = rep.get("chosen_alpha")
        models[name] = {
            "steps": info.get("steps"),
            "steps_per_s": info.get("steps_per_s"),
            "seconds": info.get("seconds"),
            "chosen_alpha": alpha,
            "dev_macro": dev or None,
            "dev_gain": round(dev[f"interp-{alpha:g}"] - dev["fused"], 4)
            if dev and alpha
            else None,
            "test_gain_rrf60": {
                n: round(t["rrf-60"]["chosen"] - t["rrf-60"]["fused"], 4)
                for n, t in rep.get("test", {}).items()
                if "chosen" in t.get("rrf-60", {})
            }
            or None,
        }
    scored = {
        n: m["dev_macro"][f"interp-{m['chosen_alpha']:g}"]
        for n, m in models.items()
        if m.get("dev_macro") and m.get("chosen_alpha")
    }
    return {
        "lodo": lodo,
        "models": models,
        "best_all_data_model_on_dev": max(scored, key=lambda n: scored[n]) if scored else None,
        "most_robust_fusion": {
            s: v.get("most_robust") for s, v in res.get("fusion_robustness", {}).items()
        },
        "errors": len(res.get("errors", [])),
    }


def compact(res: Mapping[str, Any]) -> dict[str, Any]:
    """The RESULT line: the summary and the retrieval table (the full JSON is in the file)."""
    return {
        "summary": res.get("summary"),
        "retrieval_test": {n: t.get("test") for n, t in res.get("retrieval", {}).items()},
        "timing": res.get("timing"),
        "skipped": res.get("skipped"),
        "errors": [e.get("where") + ": " + e.get("error", "") for e in res.get("errors", [])],
    }


if __name__ == "__main__":
    raise SystemExit(main())
