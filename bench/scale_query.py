"""The query path at 1M documents, and leaf-routed shards (issue 16).

    .venv/bin/python bench/scale_query.py build --n 1000000   # once: corpus, vectors, tree, index
    .venv/bin/python bench/scale_query.py run --n 1000000     # the figures; RESULT {json}

**Cluster.** A 3-node Elasticsearch cluster started beside the default single nodes
(``es-neural engines up --engine elasticsearch --nodes 3 --instance scale3`` with
``ES_NEURAL_ELASTICSEARCH__URL=http://127.0.0.1:9800,http://127.0.0.1:9810,http://127.0.0.1:9820``
and ``ES_NEURAL_ENGINE_HEAP=1g``); the index has ``--shards`` shards (12) and no replicas. The
contrast runs on one node (``--instance scale1``, port 9850) with one shard.

**Corpus.** GCIDE entries (``dict-gcide``) and WordNet glosses (``wordnet-base``), both from
Debian, then *generated* documents up to ``--n``: a title of two real headwords and a text of the
first sentences of three real documents drawn by a seeded generator (``origin: generated``).
Built once into ``~/.cache/es-neural/bench/scale-v1/`` with the vectors and the tree.

**Stand-in document vectors** (real encoding of 1M documents takes days on 2 shared cores), the
same stand-ins as ``bench/ingest.py``: dense = the L2-normalised mean of MiniLM-L6's own input
token embeddings (384 dims), SPLADE = ``1 + log(tf)`` over SPLADE's own wordpieces (no expansion
terms). The index ``_meta`` key ``es_neural_bench`` says so. Queries: the *real* query encoders
for the latency of the whole path (hybrid p50/p95, the breakdown); for recall and throughput,
where the query vector must live in the documents' space, the stand-in of the query text.

**Queries** are known-item queries: 4-7 words of a document's text (seeded), never BM25's exact
phrase, about documents drawn from every origin.

**Tree**: hierarchical k-means over the stand-in vectors (``--branching``, ``--leaf-size``),
every document in one leaf; leaf groups placed on the shards by :mod:`es_neural.tree.shards`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import log

CACHE = common.BENCH_CACHE / "scale-v1"
WORDNET = Path("/usr/share/wordnet")
WORDNET_HINT = "WordNet glosses come from Debian: apt-get install -y wordnet-base"
META_KEY = "es_neural_bench"
TREE_VERSION = "scale1"
CLUSTER_URLS = "http://127.0.0.1:9800,http://127.0.0.1:9810,http://127.0.0.1:9820"
SINGLE_URL = "http://127.0.0.1:9850"
_SENTENCE = re.compile(r"(?<=[.;])\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")


# ----- corpus -----


def wordnet_documents() -> Iterator[dict[str, str]]:
    """One document per WordNet synset with a gloss: title = its words, text = its gloss."""
    files = [WORDNET / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    if not all(f.is_file() for f in files):
        raise SystemExit(WORDNET_HINT)
    for path in files:
        pos = path.suffix[1:]
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                parts = head.split()
                count = int(parts[3], 16)
                words = [parts[4 + 2 * i].replace("_", " ") for i in range(count)]
                yield {
                    "_id": f"wn-{pos}-{parts[0]}",
                    "title": ", ".join(words),
                    "text": gloss.strip(),
                }


def _first_sentence(text: str) -> str:
    return _SENTENCE.split(text, 1)[0][:300]


def corpus(n: int) -> Path:
    """``n`` documents (real first, then generated), as JSONL under the cache (built once)."""
    path = CACHE / f"corpus-{n}.jsonl"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    real: list[dict[str, str]] = []
    for doc in common.gcide_documents():
        real.append({**doc, "origin": "gcide"})
    for doc in wordnet_documents():
        real.append({**doc, "origin": "wordnet"})
    rng = random.Random(16)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for i in range(n):
            if i < len(real):
                doc = real[i]
            else:
                picks = [real[rng.randrange(len(real))] for _ in range(3)]
                doc = {
                    "_id": f"gen-{i}",
                    "title": f"{picks[0]['title'].split(',')[0]} {picks[1]['title'].split(',')[0]}",
                    "text": " ".join(_first_sentence(p["text"]) for p in picks),
                    "origin": "generated",
                }
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    tmp.replace(path)
    log(f"corpus: {n:,} documents ({len(real):,} real) in {time.perf_counter() - t0:.0f} s")
    return path


def doc_text(doc: dict[str, Any]) -> str:
    return f"{doc['title']}\n{doc['text']}"


# ----- stand-in encoders (bench/ingest.py's definitions, vectorised) -----


class StandIns:
    """The real models' tokenizers and MiniLM's input embedding table; nothing else runs.

    With ``real`` (``--vectors real``), dense vectors are MiniLM-L6's own (documents through
    the document encoder, queries through the query encoder); SPLADE stays the stand-in."""

    def __init__(self, real: bool = False) -> None:
        self.real = real
        from transformers import AutoTokenizer

        from es_neural import get_settings
        from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder

        settings = get_settings()
        self.dense = get_dense_encoder(settings.dense)
        self.sparse = get_sparse_encoder(settings.sparse)
        self.dense.load()
        model = self.dense.model  # type: ignore[attr-defined]
        self.dense_tok = model.tokenizer
        table = model[0].auto_model.get_input_embeddings().weight
        self.table = table.detach().cpu().numpy().astype(np.float32)
        self.dense_special = np.array(sorted(self.dense_tok.all_special_ids), dtype=np.int64)
        self.sparse_tok = AutoTokenizer.from_pretrained(self.sparse.model_name_or_path)  # type: ignore[attr-defined]
        self.sparse_special = np.array(sorted(self.sparse_tok.all_special_ids), dtype=np.int64)
        from es_neural.encoders.tokens import sanitize_token

        vocab = self.sparse_tok.convert_ids_to_tokens(list(range(len(self.sparse_tok))))
        self.sparse_keys = [sanitize_token(t) or "%00" for t in vocab]
        self.same_vocab = self.sparse_tok.get_vocab() == self.dense_tok.get_vocab()
        self.doc_top_k = settings.sparse.doc_top_k
        #: The corpus mean subtracted from every stand-in (documents and queries alike): the
        #: means of token embeddings share a large common direction that hides their neighbours.
        self.center: np.ndarray | None = None

    @property
    def tag(self) -> str:
        """What names the cached vectors, the tree and the index of this kind of vectors."""
        return "-real" if self.real else ""

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors in the documents' space: the stand-in of the text, or the real query
        encoder's vectors with real document vectors."""
        if self.real:
            return np.asarray(self.dense.encode_queries(list(texts)), dtype=np.float32)
        return self.encode(texts)[0]

    def _ids(self, tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
        return tokenizer(
            list(texts),
            add_special_tokens=False,
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]

    @staticmethod
    def _csr(ids: list[list[int]], special: np.ndarray, vocab: int) -> Any:
        """Token counts per text as a ``[texts, vocab]`` sparse matrix (special tokens out)."""
        from scipy import sparse

        lengths = np.array([len(r) for r in ids], dtype=np.int64)
        flat = np.fromiter((t for r in ids for t in r), dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(ids)), lengths)
        keep = ~np.isin(flat, special)
        data = np.ones(int(keep.sum()), dtype=np.float32)
        matrix = sparse.csr_matrix((data, (rows[keep], flat[keep])), shape=(len(ids), vocab))
        matrix.sum_duplicates()
        return matrix

    def encode(
        self, texts: Sequence[str], *, max_length: int = 256
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Dense and SPLADE stand-ins of ``texts`` (the tokenizers run once each)."""
        dense_ids = self._ids(self.dense_tok, texts, max_length)
        counts = self._csr(dense_ids, self.dense_special, self.table.shape[0])
        vectors = np.asarray(counts @ self.table, dtype=np.float32)
        totals = np.asarray(counts.sum(axis=1), dtype=np.float32)
        vectors /= np.maximum(totals, 1.0)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        vectors[empty, 0] = 1.0
        norms[empty] = 1.0
        vectors /= norms
        if self.center is not None:
            vectors = center_rows(vectors, self.center)
        if self.same_vocab:
            sparse_counts = counts
        else:
            sparse_ids = self._ids(self.sparse_tok, texts, max_length)
            sparse_counts = self._csr(sparse_ids, self.sparse_special, len(self.sparse_keys))
        weights = []
        indptr, indices, data = sparse_counts.indptr, sparse_counts.indices, sparse_counts.data
        keys = self.sparse_keys
        for row in range(len(texts)):
            cols = indices[indptr[row] : indptr[row + 1]]
            tf = data[indptr[row] : indptr[row + 1]]
            w = 1.0 + np.log(tf)
            order = np.lexsort((cols, -w))[: self.doc_top_k]
            weights.append(
                {keys[c]: round(float(w[o]), 4) for o, c in zip(order, cols[order], strict=True)}
            )
        return vectors, weights


def center_rows(vectors: np.ndarray, center: np.ndarray) -> np.ndarray:
    out = vectors - center
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def encode_corpus(
    n: int, docs: list[dict[str, Any]], enc: StandIns
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Stand-in vectors of every document, cached (dense as float16, SPLADE as JSONL)."""
    dense_path, sparse_path = CACHE / f"dense-{n}.npy", CACHE / f"sparse-{n}.jsonl"
    bigger = CACHE / "dense-1000000.npy", CACHE / "sparse-1000000.jsonl"
    if n < 1_000_000 and not dense_path.is_file() and all(p.is_file() for p in bigger):
        # the first n documents of the 1M corpus are the n-document corpus: slice its vectors
        with bigger[1].open(encoding="utf-8") as f:
            weights = [json.loads(next(f)) for _ in range(n)]
        return np.load(bigger[0], mmap_mode="r")[:n].astype(np.float32), weights
    if dense_path.is_file() and sparse_path.is_file():
        weights = [json.loads(line) for line in sparse_path.open(encoding="utf-8")]
        return np.load(dense_path).astype(np.float32), weights
    t0 = time.perf_counter()
    dense = np.zeros((len(docs), enc.table.shape[1]), dtype=np.float16)
    weights: list[dict[str, float]] = []
    step = 20_000
    for start in range(0, len(docs), step):
        chunk = [doc_text(d) for d in docs[start : start + step]]
        vectors, part = enc.encode(chunk)
        dense[start : start + len(chunk)] = vectors
        weights.extend(part)
        log(f"stand-ins: {start + len(chunk):,} / {len(docs):,}")
    np.save(dense_path, dense)
    with sparse_path.open("w", encoding="utf-8") as f:
        for w in weights:
            f.write(json.dumps(w, ensure_ascii=False) + "\n")
    log(f"stand-ins: {len(docs):,} in {time.perf_counter() - t0:.0f} s")
    return dense.astype(np.float32), weights


def encode_corpus_real(
    n: int, docs: list[dict[str, Any]], enc: StandIns
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """MiniLM-L6's own document vectors (cached as float16), the SPLADE stand-ins beside."""
    _, weights = encode_corpus(n, docs, enc)
    path = CACHE / f"dense-real-{n}.npy"
    if path.is_file():
        return np.load(path).astype(np.float32), weights
    t0 = time.perf_counter()
    dense = np.zeros((len(docs), enc.table.shape[1]), dtype=np.float16)
    step = 5_000
    for start in range(0, len(docs), step):
        chunk = [doc_text(d) for d in docs[start : start + step]]
        dense[start : start + len(chunk)] = np.asarray(enc.dense.encode_documents(chunk))
        done = start + len(chunk)
        rate = done / (time.perf_counter() - t0)
        log(f"real vectors: {done:,} / {len(docs):,} ({rate:.0f} docs/s)")
    np.save(path, dense)
    log(f"real vectors: {len(docs):,} in {time.perf_counter() - t0:.0f} s")
    return dense.astype(np.float32), weights


# ----- tree and index -----


def build_tree_for(n: int, vectors: np.ndarray, ids: list[str], args: argparse.Namespace) -> Any:
    from es_neural.tree import BuildConfig, build_tree, load_tree, place_documents, save_tree

    folder = tree_folder(args)
    if folder.is_dir() and any(folder.glob("*")):
        return load_tree(folder)
    t0 = time.perf_counter()
    # k-means on a sample (seeded), then every document in the leaf its vector routes to
    rows = np.sort(np.random.default_rng(16).choice(n, min(n, args.tree_sample), replace=False))
    sample = build_tree(
        vectors[rows],
        version=TREE_VERSION,
        doc_ids=[ids[r] for r in rows],
        config=BuildConfig(branching=args.branching, max_leaf_size=args.leaf_size, seed=16),
        progress=False,
    )
    built_s = time.perf_counter() - t0
    model = place_documents(sample, ids, vectors).model
    save_tree(model, folder)
    log(
        f"tree: {len(model.leaf_nodes)} leaves, built on {len(rows):,} in {built_s:.0f} s, "
        f"{n:,} placed in {time.perf_counter() - t0 - built_s:.0f} s"
    )
    return model


def tree_folder(args: argparse.Namespace) -> Path:
    tag = "-real" if args.vectors == "real" else ""
    return CACHE / f"tree{tag}-{args.n}-b{args.branching}-l{args.leaf_size}-s{args.tree_sample}"


def cluster_settings(urls: str) -> Any:
    from es_neural import get_settings
    from es_neural.settings import EngineSettings

    return get_settings().model_copy(update={"elasticsearch": EngineSettings(url=urls)})


def index_name(n: int, shards: int, routed: bool, tag: str = "") -> str:
    return f"bench-scale{tag}-{n}-s{shards}-{'routed' if routed else 'hash'}"


def create_index(
    dialect: Any,
    name: str,
    enc: StandIns,
    tree: Any,
    *,
    shards: int,
    routed: bool,
    quantization: str,
) -> Any:
    from es_neural.indices import ensure_index, read_index_info
    from es_neural.settings import Quantization
    from es_neural.tree.shards import place_index

    for concrete in dialect.resolve_alias(name):
        dialect.delete_index(concrete)
    ensure_index(
        dialect,
        name,
        dense=enc.dense.fingerprint,
        sparse=enc.sparse.fingerprint,
        text_fields=("title", "text"),
        similarity="cosine",
        shards=shards,
        replicas=0,
        tree_version=tree.version,
        quantization=Quantization(quantization),
    )
    placement = place_index(dialect, name, tree) if routed else None
    info = read_index_info(dialect, name)
    marker = {
        "document_encoders": "real dense, standin sparse" if enc.real else "standin",
        "dense": "all-MiniLM-L6-v2 document embeddings (real)"
        if enc.real
        else "normalised mean of MiniLM-L6 input token embeddings (stand-in)",
        "sparse": "1 + log(tf) over SPLADE wordpieces, no expansion (stand-in)",
        "corpus": "GCIDE + WordNet glosses + generated (recombined first sentences)",
    }
    dialect.put_meta(info.concrete, {**info.meta, META_KEY: marker})
    dialect.client.indices.put_settings(
        index=info.concrete, settings={"index": {"refresh_interval": "-1"}}
    )
    return info.concrete, placement


def write_index(
    dialect: Any,
    concrete: str,
    docs: list[dict[str, Any]],
    vectors: np.ndarray,
    weights: list[dict[str, float]],
    tree: Any,
    placement: Any,
    *,
    threads: int = 3,
    batch: int = 500,
) -> dict[str, float]:
    """Bulk-write every document (stand-in vectors, tree leaves, routing when placed)."""
    from es_neural.dialects.base import BulkAction

    leaf_of_row = tree.doc_leaf_nodes[tree.doc_leaf_ptr[:-1]]
    t0 = time.perf_counter()
    done = [0]
    lock = threading.Lock()

    def one(start: int) -> None:
        part = docs[start : start + batch]
        actions = []
        for j, doc in enumerate(part):
            row = start + j
            assignment = tree.assignment([int(leaf_of_row[row])])
            source = {
                "title": doc["title"],
                "text": doc["text"],
                "origin": doc["origin"],
                "embedding": np.round(vectors[row], 4).tolist(),
                "leaf_ids": list(assignment.leaf_ids),
                "leaf_ancestors": list(assignment.ancestors),
                "tree_version": tree.version,
            }
            if weights[row]:
                source["splade"] = weights[row]
            routing = placement.routing_for(assignment.leaf_ids) if placement else None
            actions.append(BulkAction(concrete, doc["_id"], source, routing=routing))
        result = dialect.bulk(actions)
        if result.failed:
            raise SystemExit(f"bulk failures: {result.failed[:3]}")
        with lock:
            done[0] += len(part)
            if done[0] % 50_000 < batch:
                rate = done[0] / (time.perf_counter() - t0)
                log(f"written {done[0]:,} / {len(docs):,} ({rate:,.0f} docs/s)")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(0, len(docs), batch)))
    write_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    dialect.client.indices.put_settings(
        index=concrete, settings={"index": {"refresh_interval": "1s"}}
    )
    dialect.refresh(concrete)
    refresh_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    dialect.client.options(request_timeout=7200).indices.forcemerge(
        index=concrete, max_num_segments=1
    )
    merge_s = time.perf_counter() - t2
    return {"write_s": write_s, "refresh_s": refresh_s, "merge_s": merge_s}


def load_docs(n: int) -> list[dict[str, Any]]:
    return common.read_jsonl(corpus(n))


def cmd_build(args: argparse.Namespace) -> None:
    from es_neural.dialects import get_dialect
    from es_neural.settings import EngineKind

    t0 = time.perf_counter()
    docs = load_docs(args.n)
    enc = StandIns(real=args.vectors == "real")
    if enc.real:  # the model's own space: nothing to centre
        vectors, weights = encode_corpus_real(args.n, docs, enc)
    else:
        vectors, weights = encode_corpus(args.n, docs, enc)
        center = vectors.mean(axis=0)
        np.save(CACHE / f"center-{args.n}.npy", center)
        vectors = center_rows(vectors, center)
    tree = build_tree_for(args.n, vectors, [d["_id"] for d in docs], args)
    prep_s = time.perf_counter() - t0
    targets = []
    if "cluster" in args.targets:
        targets.append(("cluster", args.cluster_urls, args.shards, True))
    if "single" in args.targets:
        targets.append(("single", args.single_url, 1, False))
    built: dict[str, Any] = {"n": args.n, "prepare_s": round(prep_s, 1)}
    for label, urls, shards, routed in targets:
        dialect = get_dialect(cluster_settings(urls), EngineKind.ELASTICSEARCH)
        name = index_name(args.n, shards, routed, enc.tag)
        concrete, placement = create_index(
            dialect, name, enc, tree, shards=shards, routed=routed, quantization=args.quantization
        )
        log(f"{label}: writing {name} ({shards} shards, routed={routed})")
        times = write_index(
            dialect, concrete, docs, vectors, weights, tree, placement, threads=args.threads
        )
        built[label] = {"index": name, "shards": shards, "routed": routed, **times}
        log(f"{label}: {json.dumps(built[label])}")
    path = CACHE / f"build{enc.tag}-{args.n}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**previous, **built}, indent=2))
    print(json.dumps(built, indent=2))


# ----- queries -----


def sample_queries(n: int, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Known-item queries: 4-7 consecutive words of a document's text, documents drawn evenly
    from the corpus (seeded), with the document's id as the target."""
    rng = random.Random(seed)
    wanted = sorted(rng.sample(range(n), count * 3))
    picked: list[dict[str, Any]] = []
    with corpus(n).open(encoding="utf-8") as f:
        want = iter(wanted)
        target = next(want)
        for i, line in enumerate(f):
            if i != target:
                continue
            doc = json.loads(line)
            words = _WORD.findall(doc["text"])
            if len(words) >= 6:
                size = rng.randint(4, min(7, len(words)))
                at = rng.randrange(0, len(words) - size + 1)
                picked.append({"query": " ".join(words[at : at + size]), "target": doc["_id"]})
            target = next(want, -1)
            if target < 0:
                break
    rng.shuffle(picked)
    return picked[:count]


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _summary(values: Sequence[float]) -> dict[str, float]:
    s = common.Summary.of(list(values))
    return {"p50": s.p50, "p95": s.p95, "p99": s.p99, "mean": s.mean, "n": s.n}


def _hits(response: Any) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


# ----- the figures -----


class Bench:
    def __init__(self, args: argparse.Namespace, urls: str, index: str) -> None:
        from es_neural.dialects import get_dialect
        from es_neural.indices import read_index_info
        from es_neural.settings import EngineKind
        from es_neural.tree import TreeRouter, load_tree
        from es_neural.tree.shards import ShardPlacement

        self.args = args
        self.settings = cluster_settings(urls)
        self.dialect = get_dialect(self.settings, EngineKind.ELASTICSEARCH)
        self.index = index
        self.info = read_index_info(self.dialect, index)
        self.placement = ShardPlacement.from_meta(self.info.meta)
        self.tree = load_tree(tree_folder(args))
        self.router = TreeRouter(self.tree)
        self.shards = int(self.dialect.get_settings(self.info.concrete)["number_of_shards"])

    def knn(self, vector: Sequence[float], *, k: int, leaves: Sequence[str] | None) -> dict:
        from es_neural.queries import knn_body, leaf_filter

        flt = leaf_filter(leaves) if leaves else None
        body = knn_body(
            self.dialect, vector, k=k, num_candidates=self.args.num_candidates, filter=flt
        )
        return body

    def closed_loop(
        self, bodies: Sequence[dict], routing: Sequence[Sequence[str] | None] | None
    ) -> dict[str, float]:
        """Queries/s of ``clients`` threads sending these bodies in a loop for ``seconds``."""
        stop = time.perf_counter() + self.args.seconds
        counts = [0] * self.args.clients
        latencies: list[float] = []
        lock = threading.Lock()

        def client(c: int) -> None:
            i = c
            mine: list[float] = []
            while time.perf_counter() < stop:
                j = i % len(bodies)
                t0 = time.perf_counter()
                (answer,) = self.dialect.msearch(
                    self.index, [bodies[j]], routing=[routing[j]] if routing else None
                )
                mine.append(_ms(time.perf_counter() - t0))
                if isinstance(answer, Exception):
                    raise answer
                counts[c] += 1
                i += self.args.clients
            with lock:
                latencies.extend(mine)

        t_start = time.perf_counter()
        with ThreadPoolExecutor(self.args.clients) as pool:
            list(pool.map(client, range(self.args.clients)))
        elapsed = time.perf_counter() - t_start
        return {
            "qps": sum(counts) / elapsed,
            **{f"latency_{k}": v for k, v in _summary(latencies).items()},
        }


def _route_leaves(bench: Bench, vectors: np.ndarray, threshold: float, max_leaves: int) -> list:
    return [bench.router.route(v, threshold=threshold, max_leaves=max_leaves) for v in vectors]


def routing_figures(bench: Bench, queries: list[dict[str, Any]], enc: StandIns) -> dict[str, Any]:
    """Dense kNN with and without leaf routing: recall@10 of the unrouted result, leaf recall,
    shards per query, throughput at saturation (stand-in query vectors: the documents' space)."""
    args = bench.args
    vectors = enc.encode_queries([q["query"] for q in queries])
    truth = []
    for v in vectors:
        (answer,) = bench.dialect.msearch(bench.index, [bench.knn(v.tolist(), k=10, leaves=None)])
        truth.append(_hits(answer))
    targets_found = sum(q["target"] in t for q, t in zip(queries, truth, strict=True))
    settings_tried = []
    grid = [("shards", 0.5, 4), ("shards", 0.8, 8), ("shards", 0.9, 16), ("shards", 0.95, 32)]
    grid += [("shards", 0.99, 64), ("shards", 0.999, 128), ("shards", 0.9999, 256)]
    grid += [("filter", 0.9, 16), ("filter", 0.99, 64)]
    grid += [("filter", 0.999, 128)]
    for mode, threshold, max_leaves in grid:
        routes = _route_leaves(bench, vectors, threshold, max_leaves)
        bodies, routing, recalls, shards, leaf_hits, leaves_n = [], [], [], [], 0, []
        for v, route, t in zip(vectors, routes, truth, strict=True):
            leaves = route.leaf_ids if mode == "filter" else None
            body = bench.knn(v.tolist(), k=10, leaves=leaves)
            keys = bench.placement.keys_for_route(route) if bench.placement else None
            (answer,) = bench.dialect.msearch(bench.index, [body], routing=[keys])
            got = _hits(answer)
            recalls.append(len(set(got) & set(t)) / max(len(t), 1))
            shards.append(answer["_shards"]["total"])
            bodies.append(body)
            routing.append(keys)
            leaves_n.append(len(route.leaf_ids))
        top_in_leaves = []
        for q, route, t in zip(queries, routes, truth, strict=True):
            routed_leaves = set(route.leaf_ids)
            if set(bench.tree.document_leaves(q["target"])) & routed_leaves:
                leaf_hits += 1
            top_in_leaves.append(
                np.mean([bench.tree.document_leaves(d)[0] in routed_leaves for d in t])
                if t
                else 0.0
            )
        row = {
            "mode": mode,
            "threshold": threshold,
            "max_leaves": max_leaves,
            "recall_at_10": float(np.mean(recalls)),
            "leaf_recall_known_item": leaf_hits / len(queries),
            "leaf_recall_top10": float(np.mean(top_in_leaves)),
            "shards_per_query": float(np.mean(shards)),
            "shards_per_query_p95": common.percentile(shards, 95),
            "leaves_per_query": float(np.mean(leaves_n)),
        }
        settings_tried.append((row, bodies, routing))
        log(f"routing {json.dumps(common.rounded(row, 3))}")
    good = [r for r in settings_tried if r[0]["recall_at_10"] >= 0.95]
    if good:
        chosen = min(good, key=lambda r: r[0]["shards_per_query"])
    else:
        chosen = max(settings_tried, key=lambda r: r[0]["recall_at_10"])
    row, bodies, routing = chosen
    plain = [bench.knn(v.tolist(), k=10, leaves=None) for v in vectors]
    # one discarded round of each side first: straight after a build or a restart the first
    # round runs on cold caches and pulled the averaged ratio down
    warm = (bench.closed_loop(plain, None)["qps"], bench.closed_loop(bodies, routing)["qps"])
    log(f"throughput warm-up (discarded) unrouted {warm[0]:.1f} q/s, routed {warm[1]:.1f} q/s")
    # alternate the two sides so that drift in the machine's load falls on both alike
    unrouted_runs, routed_runs = [], []
    for _ in range(args.rounds):
        unrouted_runs.append(bench.closed_loop(plain, None))
        routed_runs.append(bench.closed_loop(bodies, routing))
        log(
            f"throughput unrouted {unrouted_runs[-1]['qps']:.1f} q/s, "
            f"routed {routed_runs[-1]['qps']:.1f} q/s"
        )
    unrouted_qps = float(np.mean([r["qps"] for r in unrouted_runs]))
    routed_qps = float(np.mean([r["qps"] for r in routed_runs]))
    return {
        "chosen": row,
        "tried": [r for r, _, _ in settings_tried],
        "unrouted_knn_known_item_at_10": targets_found / len(queries),
        "throughput_unrouted_qps": unrouted_qps,
        "throughput_routed_qps": routed_qps,
        "routed_throughput_ratio": routed_qps / unrouted_qps,
        "closed_loop": {"unrouted": unrouted_runs, "routed": routed_runs},
        "warm_up_qps_discarded": {"unrouted": warm[0], "routed": warm[1]},
        "clients": args.clients,
    }


def latency_figures(
    bench: Bench, queries: list[dict[str, Any]], routed: dict[str, Any] | None
) -> dict[str, Any]:
    """The whole query path with the real query encoders, one client: hybrid p50/p95 (no
    rerank) with its breakdown, unrouted and leaf-routed, and each leg alone."""
    from es_neural import get_settings
    from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder
    from es_neural.search.models import RerankConfig, SearchRequest, TreeConfig
    from es_neural.search.service import HybridSearcher, leg_bodies

    settings = get_settings()
    dense = get_dense_encoder(settings.dense)
    sparse = get_sparse_encoder(settings.sparse)
    searcher = HybridSearcher(
        bench.dialect, bench.index, dense=dense, sparse=sparse, router=bench.router
    )
    off = RerankConfig(enabled=False)
    for q in queries[:10]:  # warm-up (models, caches, connections)
        searcher.search(SearchRequest(query=q["query"], rerank=off))
    out: dict[str, Any] = {}
    configs = [("unrouted", TreeConfig())]
    if routed is not None and bench.placement is not None:
        configs.append(
            (
                "routed",
                TreeConfig(
                    enabled=True,
                    threshold=routed["threshold"],
                    max_leaves=routed["max_leaves"],
                    filter=routed["mode"] == "filter",
                ),
            )
        )
    # side by side: per query, the configurations take turns at going first (seeded)
    turns = random.Random(17)
    rows_of: dict[str, dict[str, list[float]]] = {label: {} for label, _ in configs}
    shards_of: dict[str, dict[str, list[int]]] = {label: {} for label, _ in configs}
    for q in queries:
        order = list(configs)
        turns.shuffle(order)
        for label, tree in order:
            rows, shards = rows_of[label], shards_of[label]
            t0 = time.perf_counter()
            response = searcher.search(SearchRequest(query=q["query"], rerank=off, tree=tree))
            wall = _ms(time.perf_counter() - t0)
            t = response.timings
            for key, value in (
                ("wall", wall),
                ("total", t.total_ms),
                ("encode", t.encode_ms),
                ("route", t.route_ms),
                ("engine_round_trip", t.engine_ms),
                ("engine_took", t.engine_took_ms),
                ("fetch", t.fetch_ms),
                ("fusion", t.fusion_ms),
                ("rerank", t.rerank_ms),
                ("python_other", t.overhead_ms),
            ):
                rows.setdefault(key, []).append(value)
            for leg, stats in response.shards.items():
                shards.setdefault(leg, []).append(stats.total)
    for label, _ in configs:
        rows, shards = rows_of[label], shards_of[label]
        out[label] = {k: _summary(v) for k, v in rows.items()}
        out[label]["shards_per_leg"] = {k: float(np.mean(v)) for k, v in shards.items()}
        log(
            f"hybrid {label}: p50 {out[label]['wall']['p50']:.1f} ms, "
            f"p95 {out[label]['wall']['p95']:.1f} ms"
        )
    # each leg alone (the bodies the searcher sends), and the lexical legs routed vs not
    legs: dict[str, dict[str, list[float]]] = {}
    known: dict[str, list[int]] = {}
    rng = random.Random(16)
    for q in queries:
        request = SearchRequest(query=q["query"], rerank=off)
        vector = dense.encode_queries([q["query"]])[0]
        weights = sparse.encode_queries([q["query"]])[0]
        route = bench.router.route(
            vector, threshold=bench.args.route_threshold, max_leaves=bench.args.route_max_leaves
        )
        keys = bench.placement.keys_for_route(route) if bench.placement else None
        clause = {"terms": {route.filter_field: sorted(route.filter_ids or route.leaf_ids)}}
        plain = leg_bodies(
            request, dialect=bench.dialect, info=bench.info, vector=vector.tolist(), weights=weights
        )
        filtered = leg_bodies(
            request.model_copy(
                update={"tree": TreeConfig(enabled=True, apply_to=("bm25", "dense", "sparse"))}
            ),
            dialect=bench.dialect,
            info=bench.info,
            vector=vector.tolist(),
            weights=weights,
            leaf_clause=clause,
        )
        variants = {name: (plain[name], None) for name in plain}
        variants.update({f"{name}_routed": (filtered[name], keys) for name in filtered})
        for max_terms in (32, 16, 8):
            pruned = leg_bodies(
                request.model_copy(
                    update={
                        "sparse": request.sparse.model_copy(update={"max_terms": max_terms}),
                        "bm25": request.bm25.model_copy(update={"enabled": False}),
                        "dense": request.dense.model_copy(update={"enabled": False}),
                    }
                ),
                dialect=bench.dialect,
                info=bench.info,
                vector=None,
                weights=weights,
            )
            variants[f"sparse_terms{max_terms}"] = (pruned["sparse"], None)
        # the kNN leg as Elasticsearch's top-level knn section (a DFS round over every shard
        # before the query phase), what the searcher sent before it used the knn query
        knn = plain["dense"]["query"]["knn"]
        section = {k: v for k, v in plain["dense"].items() if k != "query"}
        variants["dense_knn_section"] = ({**section, "knn": dict(knn)}, None)
        for name in ("bm25", "sparse"):  # the legs count to 10,000 by default
            variants[f"{name}_total_exact"] = ({**plain[name], "track_total_hits": True}, None)
            variants[f"{name}_total_capped"] = ({**plain[name], "track_total_hits": 1000}, None)
        # a query's first body warms the engine's caches for the next ones: the variants take
        # turns at going first (seeded), so that no variant always pays the cold start
        order = list(variants.items())
        rng.shuffle(order)
        for name, (body, routing) in order:
            t0 = time.perf_counter()
            (answer,) = bench.dialect.msearch(bench.index, [body], routing=[routing])
            wall = _ms(time.perf_counter() - t0)
            legs.setdefault(name, {}).setdefault("round_trip", []).append(wall)
            legs[name].setdefault("took", []).append(float(answer["took"]))
            known.setdefault(name, []).append(int(q["target"] in _hits(answer)[:10]))
    # Python time outside the engine, encoders and fetch, by hits per leg
    by_k: dict[str, dict[str, float]] = {}
    for k in (10, 100, 1000):
        spent = []
        for q in queries[:30]:
            request = SearchRequest(
                query=q["query"],
                rerank=off,
                window=min(k, 1000),
                bm25={"k": k},
                dense={"k": k, "num_candidates": max(k, 100)},
                sparse={"k": k},
            )
            t = searcher.search(request).timings
            spent.append(t.total_ms - t.encode_ms - t.engine_ms - t.fetch_ms - t.rerank_ms)
        by_k[str(k)] = _summary(spent)
        log(f"python outside engine/encode/fetch at k={k}: p50 {by_k[str(k)]['p50']:.2f} ms")
    out["python_ms_by_k"] = by_k
    out["legs"] = {
        name: {
            **{k: _summary(v) for k, v in rows.items()},
            "known_item_at_10": float(np.mean(known[name])),
        }
        for name, rows in legs.items()
    }
    return out


def sparse_pruning_scifact(limit_docs: int | None = None) -> dict[str, Any]:
    """nDCG@10 of the SPLADE leg on SciFact (test) by query terms kept: real SPLADE encodings,
    exact dot products in-process (no engine)."""
    from es_neural import get_settings
    from es_neural.encoders.registry import get_sparse_encoder
    from es_neural.encoders.tokens import clean_weights

    sparse = get_sparse_encoder(get_settings().sparse)
    root = common.SHARED_DATA / "scifact"
    docs = common.read_jsonl(root / "corpus.jsonl", limit_docs)
    queries = {q["_id"]: q["text"] for q in common.read_jsonl(root / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, grade = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(grade)
    cache = CACHE / f"scifact-splade-{len(docs)}.json"
    if cache.is_file():
        doc_weights = json.loads(cache.read_text())
    else:
        t0 = time.perf_counter()
        texts = [f"{d.get('title', '')}\n{d['text']}" for d in docs]
        doc_weights = [dict(w) for w in sparse.encode_documents(texts)]
        cache.write_text(json.dumps(doc_weights))
        log(
            f"scifact: {len(docs)} documents encoded with SPLADE "
            f"in {time.perf_counter() - t0:.0f} s"
        )
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, w in enumerate(doc_weights):
        for t, v in w.items():
            rows.append(i)
            cols.append(vocab.setdefault(t, len(vocab)))
            vals.append(v)
    from scipy import sparse as sp

    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab))).T.tocsr()
    ids = [d["_id"] for d in docs]
    qids = [q for q in qrels if q in queries]
    raw = sparse.encode_queries([queries[q] for q in qids])
    out: dict[str, Any] = {}
    for top in (None, 32, 16, 8, 4):
        ndcgs, terms = [], []
        for qid, weights in zip(qids, raw, strict=True):
            kept = clean_weights(weights, top_k=top)
            terms.append(len(kept))
            scores = np.zeros(len(docs))
            for t, w in kept.items():
                j = vocab.get(t)
                if j is not None:
                    row = matrix.getrow(j)
                    scores[row.indices] += w * row.data
            order = np.argsort(-scores, kind="stable")[:10]
            gains = [qrels[qid].get(ids[i], 0) for i in order if scores[i] > 0]
            dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
            ideal = sorted(qrels[qid].values(), reverse=True)[:10]
            idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
            ndcgs.append(dcg / idcg if idcg else 0.0)
        out[str(top or "all")] = {
            "ndcg_at_10": float(np.mean(ndcgs)),
            "mean_terms": float(np.mean(terms)),
        }
        log(
            f"scifact SPLADE query terms {top or 'all'}: nDCG@10 {np.mean(ndcgs):.4f} "
            f"({np.mean(terms):.1f} terms)"
        )
    return out


def cmd_run(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    result: dict[str, Any] = {"n": args.n, "cpu": common.cpu_note()}
    queries = sample_queries(args.n, args.queries)
    enc = StandIns(real=args.vectors == "real")
    result["vectors"] = args.vectors
    if not enc.real:
        enc.center = np.load(CACHE / f"center-{args.n}.npy")
    build = CACHE / f"build{enc.tag}-{args.n}.json"
    result["build"] = json.loads(build.read_text()) if build.is_file() else None
    if "cluster" in args.targets:
        bench = Bench(args, args.cluster_urls, index_name(args.n, args.shards, True, enc.tag))
        routing = routing_figures(bench, queries, enc)
        result["cluster"] = {
            "shards": bench.shards,
            "routing": routing,
            "latency": latency_figures(bench, queries, routing["chosen"]),
        }
    if "single" in args.targets:
        single = Bench(args, args.single_url, index_name(args.n, 1, False, enc.tag))
        result["single"] = {
            "shards": single.shards,
            "latency": latency_figures(single, queries, None),
        }
        plain = [
            single.knn(v.tolist(), k=10, leaves=None)
            for v in enc.encode_queries([q["query"] for q in queries])
        ]
        result["single"]["throughput_knn_qps"] = single.closed_loop(plain, None)
    if args.scifact:
        result["sparse_pruning_scifact"] = sparse_pruning_scifact()
    result["elapsed_s"] = time.perf_counter() - t0
    common.write_json(f"scale_query-{args.n}", common.rounded(result, 3))
    summary: dict[str, Any] = {"n": args.n, "vectors": args.vectors}
    cluster = result.get("cluster")
    if cluster:
        lat, rt = cluster["latency"], cluster["routing"]
        key = "hybrid_p95_ms_1m" if args.n == 1_000_000 else f"hybrid_p95_ms_{args.n}"
        summary.update(
            {
                key: lat["unrouted"]["wall"]["p95"],
                "hybrid_p50_ms": lat["unrouted"]["wall"]["p50"],
                "hybrid_routed_p95_ms": lat["routed"]["wall"]["p95"],
                "routed_throughput_ratio": rt["routed_throughput_ratio"],
                "recall_at_10_routed": rt["chosen"]["recall_at_10"],
                "shards_per_query": rt["chosen"]["shards_per_query"],
                "leaf_recall_top10": rt["chosen"]["leaf_recall_top10"],
                "leaf_recall_known_item": rt["chosen"]["leaf_recall_known_item"],
                "routing_mode": rt["chosen"]["mode"],
                "throughput_qps": {
                    "unrouted": rt["throughput_unrouted_qps"],
                    "routed": rt["throughput_routed_qps"],
                },
                "leg_p95_ms": {name: v["round_trip"]["p95"] for name, v in lat["legs"].items()},
                "breakdown_p50_ms": {
                    k: v["p50"]
                    for k, v in lat["unrouted"].items()
                    if isinstance(v, dict) and "p50" in v
                },
            }
        )
    if result.get("single"):
        summary["single_hybrid_p95_ms"] = result["single"]["latency"]["unrouted"]["wall"]["p95"]
        summary["single_knn_qps"] = result["single"]["throughput_knn_qps"]["qps"]
    if result.get("sparse_pruning_scifact"):
        summary["scifact_sparse_ndcg"] = {
            k: v["ndcg_at_10"] for k, v in result["sparse_pruning_scifact"].items()
        }
    print(json.dumps(common.rounded(result, 2), indent=1))
    common.print_result(common.rounded(summary, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("build", "run"):
        p = sub.add_parser(name)
        p.add_argument("--n", type=int, default=1_000_000)
        p.add_argument("--shards", type=int, default=12)
        p.add_argument("--branching", type=int, default=16)
        p.add_argument("--leaf-size", type=int, default=100)
        p.add_argument("--tree-sample", type=int, default=100_000)
        p.add_argument("--cluster-urls", default=CLUSTER_URLS)
        p.add_argument("--single-url", default=SINGLE_URL)
        p.add_argument("--targets", default="cluster,single")
        p.add_argument("--threads", type=int, default=3)
        p.add_argument("--quantization", default="int8", choices=["none", "int8"])
        p.add_argument(
            "--vectors",
            default="standin",
            choices=["standin", "real"],
            help="document vectors: stand-ins (fast), or MiniLM-L6's own (~110 docs/s here)",
        )
    p = sub.choices["run"]
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--num-candidates", type=int, default=100)
    p.add_argument("--route-threshold", type=float, default=0.95)
    p.add_argument("--route-max-leaves", type=int, default=32)
    p.add_argument("--scifact", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.cmd == "build":
        cmd_build(args)
    else:
        cmd_run(args)


if __name__ == "__main__":
    main()
