"""The labelled training mix for a general-purpose reranker: one small typed value per domain.

Each :class:`Domain` holds a pool of passages (what retrieval ranks, by id), labelled queries
with graded relevance, the negatives the source gives (if any), and a train/dev/test split. The
loaders read the sources in place (``../shared/data/train`` and a BEIR SciFact folder); nothing
is copied into the repository. :func:`write_pack` / :func:`read_pack` store domains as
xz-compressed JSON for a machine that cannot read the sources (a GPU box).

Domains, their splits and what counts as relevant:

============== ======================================= ===========================================
domain         source and relevance                    split
============== ======================================= ===========================================
msmarco        MS MARCO dev-small pairs: each query's  carved: ``test`` queries (default 500), then
               one relevant passage; pool = the        ``dev`` (200), the rest ``train``; order by
               passages of all queries (deduplicated   ``sha256(f"{seed}:{qid}")`` (each at most
               by text). No given negatives.           a quarter of the queries)
wikiqa         WikiQA: sentences with label 1 answer   the source's train/dev/test (questions
               the question, label 0 ones are given    without an answer sentence are left out)
               negatives; pool = all sentences.
trecqa         TrecQA (TRAIN, DEV, TEST): positive /   the source's TRAIN/DEV/TEST
               negative sentences as above.
stackexchange  onstartups + startups: question title   a seeded subsample (``limit`` questions,
               and body ask for the answers; the       default 4000), then carved as msmarco
               highest-scored answer(s) are grade 2,
               the question's other answers grade 1;
               questions whose best answer scores < 1
               are left out; pool = the answers.
scifact        BEIR SciFact: qrels train/test; pool =  test = qrels/test; dev = 20% of qrels/train
               the corpus (title and text joined by a  carved as :func:`es_neural.eval.data.
               newline, as ingestion does).            carve_validation` does (seed 13)
============== ======================================= ===========================================

Label-free domains (``labelled=False``, training only, ``family`` = the domain they come from, so
a leave-one-domain-out run drops them with it): ``scifact-titles`` (a SciFact title asks for its
abstract) and ``stackexchange-titles`` (a question title asks for its body; train-split questions
only). Their queries carry ``positive_text``, the text the positive is trained as (the body
without the title), built by :mod:`es_neural.train.pseudo`.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import lzma
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from es_neural.errors import InvalidInputError
from es_neural.train.pseudo import build_pseudo_pairs

__all__ = [
    "FAMILIES",
    "SPLITS",
    "Domain",
    "LabelledQuery",
    "TrainItem",
    "carve",
    "load_all",
    "load_msmarco",
    "load_scifact",
    "load_stackexchange",
    "load_trecqa",
    "load_wikiqa",
    "pseudo_domains",
    "read_pack",
    "sample_group",
    "scifact_titles",
    "stackexchange_titles",
    "strip_html",
    "training_items",
    "write_pack",
]

Split = Literal["train", "dev", "test"]
SPLITS: Final[tuple[Split, ...]] = ("train", "dev", "test")
#: The labelled domains, in the order the tools report them.
FAMILIES: Final = ("msmarco", "wikiqa", "trecqa", "stackexchange", "scifact")
PACK_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class LabelledQuery:
    """A query, its graded relevant documents and the non-relevant ones its source names."""

    qid: str
    text: str
    split: Split
    #: ``doc id -> grade`` (> 0) of the pool documents relevant to the query.
    qrels: Mapping[str, int]
    #: Pool documents the source marks non-relevant (WikiQA and TrecQA label-0 sentences).
    negatives: tuple[str, ...] = ()
    #: The text the (single) positive is trained as, when it differs from the pool text.
    positive_text: str | None = None

    @property
    def positives(self) -> tuple[str, ...]:
        """The documents with the highest grade (what a training group uses as positive)."""
        if not self.qrels:
            return ()
        top = max(self.qrels.values())
        return tuple(sorted(d for d, g in self.qrels.items() if g == top))


@dataclass(frozen=True)
class Domain:
    name: str
    family: str
    docs: Mapping[str, str]
    queries: tuple[LabelledQuery, ...]
    labelled: bool = True
    #: Where the data come from and their terms.
    source: str = ""
    #: How the train/dev/test split was made.
    splits_note: str = ""
    _by_split: dict[str, tuple[LabelledQuery, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for q in self.queries:
            if q.qid in seen:
                raise InvalidInputError(f"domain {self.name!r}: query id {q.qid!r} repeats")
            seen.add(q.qid)
            if q.split not in SPLITS:
                raise InvalidInputError(f"domain {self.name!r}: bad split {q.split!r}")
            missing = [d for d in (*q.qrels, *q.negatives) if d not in self.docs]
            if missing:
                raise InvalidInputError(
                    f"domain {self.name!r}: query {q.qid!r} names documents not in the pool: "
                    f"{missing[:3]}"
                )

    def split(self, name: str) -> tuple[LabelledQuery, ...]:
        if name not in self._by_split:
            self._by_split[name] = tuple(q for q in self.queries if q.split == name)
        return self._by_split[name]

    def qrels(self, split: str) -> dict[str, dict[str, int]]:
        return {q.qid: dict(q.qrels) for q in self.split(split)}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {s: len(self.split(s)) for s in SPLITS}
        out["pool"] = len(self.docs)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PACK_FORMAT,
            "name": self.name,
            "family": self.family,
            "labelled": self.labelled,
            "source": self.source,
            "splits_note": self.splits_note,
            "docs": dict(self.docs),
            "queries": [
                {
                    "qid": q.qid,
                    "text": q.text,
                    "split": q.split,
                    "qrels": dict(q.qrels),
                    **({"negatives": list(q.negatives)} if q.negatives else {}),
                    **({"positive_text": q.positive_text} if q.positive_text else {}),
                }
                for q in self.queries
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Domain:
        if data.get("format") != PACK_FORMAT:
            raise InvalidInputError(f"unknown pack format {data.get('format')!r}")
        queries = tuple(
            LabelledQuery(
                qid=str(q["qid"]),
                text=str(q["text"]),
                split=q["split"],
                qrels=MappingProxyType({str(d): int(g) for d, g in q["qrels"].items()}),
                negatives=tuple(str(d) for d in q.get("negatives", ())),
                positive_text=q.get("positive_text"),
            )
            for q in data["queries"]
        )
        return cls(
            name=str(data["name"]),
            family=str(data["family"]),
            docs=MappingProxyType({str(k): str(v) for k, v in data["docs"].items()}),
            queries=queries,
            labelled=bool(data.get("labelled", True)),
            source=str(data.get("source", "")),
            splits_note=str(data.get("splits_note", "")),
        )

    def subset(
        self,
        query_ids: Iterable[str],
        *,
        extra_docs: int = 0,
        max_negatives: int | None = None,
        seed: int = 13,
    ) -> Domain:
        """The domain restricted to ``query_ids`` (each keeping at most ``max_negatives`` given
        negatives); the pool keeps their documents plus ``extra_docs`` others drawn with
        ``seed`` (for small dry runs)."""
        keep = set(query_ids)
        queries = tuple(
            q if max_negatives is None else replace(q, negatives=q.negatives[:max_negatives])
            for q in self.queries
            if q.qid in keep
        )
        needed = {d for q in queries for d in (*q.qrels, *q.negatives)}
        others = sorted(set(self.docs) - needed)
        rng = random.Random(seed)
        needed |= set(rng.sample(others, min(extra_docs, len(others))))
        docs = {d: t for d, t in self.docs.items() if d in needed}
        return Domain(
            self.name,
            self.family,
            MappingProxyType(docs),
            queries,
            labelled=self.labelled,
            source=self.source,
            splits_note=self.splits_note + " (subset)",
        )


# Helpers ==========================================================================================


def _rank_key(seed: int, qid: str) -> str:
    return hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()


def carve(
    ids: Iterable[str], *, seed: int = 13, test: int = 0, dev: int | float = 0
) -> dict[str, Split]:
    """Assign ``ids`` to splits: ordered by ``sha256(f"{seed}:{id}")``, the first ``test`` go to
    test, the next ``dev`` (a count, or a fraction of all ids rounded) to dev, the rest to
    train. The result depends only on the ids, the seed and the sizes."""
    ordered = sorted(dict.fromkeys(ids), key=lambda q: _rank_key(seed, q))
    n_dev = round(dev * len(ordered)) if isinstance(dev, float) else int(dev)
    if test < 0 or n_dev < 0 or test + n_dev > len(ordered):
        raise InvalidInputError(
            f"cannot carve test={test}, dev={n_dev} out of {len(ordered)} queries"
        )
    out: dict[str, Split] = {}
    for position, qid in enumerate(ordered):
        out[qid] = "test" if position < test else "dev" if position < test + n_dev else "train"
    return out


def _doc_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode()).hexdigest()[:16]


_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def strip_html(text: str) -> str:
    """Plain text of a StackExchange HTML fragment (tags dropped, entities decoded)."""
    return _SPACES.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


def _check_file(path: Path) -> Path:
    if not path.is_file():
        raise InvalidInputError(f"missing training data file {path}")
    return path


# Loaders ==========================================================================================


def load_msmarco(root: str | Path, *, seed: int = 13, test: int = 500, dev: int = 200) -> Domain:
    """MS MARCO dev-small pairs (``msmarco-devsmall/pairs.tsv`` under ``root``)."""
    path = _check_file(Path(root) / "msmarco-devsmall" / "pairs.tsv")
    docs: dict[str, str] = {}
    query_text: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or not parts[1].strip() or not parts[2].strip():
                raise InvalidInputError(f"{path}:{number}: expected qid<TAB>query<TAB>passage")
            qid, query, passage = parts[0], parts[1].strip(), _SPACES.sub(" ", parts[2]).strip()
            doc = _doc_id("m", passage)
            docs.setdefault(doc, passage)
            qrels[qid][doc] = 1
            query_text[qid] = query
    splits = carve(qrels, seed=seed, test=min(test, len(qrels) // 4), dev=min(dev, len(qrels) // 4))
    queries = tuple(
        LabelledQuery(qid, query_text[qid], splits[qid], MappingProxyType(qrels[qid]))
        for qid in sorted(qrels)
    )
    return Domain(
        "msmarco",
        "msmarco",
        MappingProxyType(docs),
        queries,
        source="MS MARCO passage ranking, dev-small queries (MS MARCO terms: non-commercial "
        "research use)",
        splits_note=f"no split in the source: test {test}, dev {dev} (each at most a quarter), "
        f"rest train, ordered by sha256(seed:qid), seed {seed}",
    )


def load_wikiqa(root: str | Path) -> Domain:
    """WikiQA (``wikiqa/{train,dev,test}/{a.toks,b.toks,sim.txt,id.txt}`` under ``root``)."""
    docs: dict[str, str] = {}
    queries: list[LabelledQuery] = []
    for split in SPLITS:
        folder = Path(root) / "wikiqa" / split
        columns = [
            _check_file(folder / n).read_text(encoding="utf-8").splitlines()
            for n in ("id.txt", "a.toks", "b.toks", "sim.txt")
        ]
        if len({len(c) for c in columns}) != 1:
            raise InvalidInputError(f"{folder}: id/a/b/sim files differ in length")
        groups: dict[str, tuple[str, dict[str, int], list[str]]] = {}
        for qid, question, sentence, label in zip(*columns, strict=True):
            sentence = sentence.strip()
            if not sentence:
                continue
            doc = _doc_id("w", sentence)
            docs.setdefault(doc, sentence)
            text, rel, neg = groups.setdefault(f"{split}-{qid}", (question.strip(), {}, []))
            if int(label) > 0:
                rel[doc] = 1
            elif doc not in neg:
                neg.append(doc)
        for qid, (text, rel, neg) in groups.items():
            if rel:
                negatives = tuple(d for d in neg if d not in rel)
                queries.append(LabelledQuery(qid, text, split, MappingProxyType(rel), negatives))
    return Domain(
        "wikiqa",
        "wikiqa",
        MappingProxyType(docs),
        tuple(queries),
        source="WikiQA (Yang et al. 2015; Microsoft Research data licence, research use)",
        splits_note="the source's train/dev/test; questions with no answer sentence left out",
    )


_TREC_PAIR = re.compile(r"<QApairs id='([^']*)'>(.*?)</QApairs>", re.S)
_TREC_ITEM = re.compile(r"<(question|positive|negative)>\s*\n([^\n]*)", re.S)
_PTB = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_PTB["``"] = '"'
_PTB["''"] = '"'


def _trec_text(line: str) -> str:
    return " ".join(_PTB.get(t, t) for t in line.strip().split("\t") if t).strip()


def load_trecqa(root: str | Path) -> Domain:
    """TrecQA (``trecqa/TrecQA_{TRAIN,DEV,TEST}.xml``): the first line inside each tag."""
    docs: dict[str, str] = {}
    queries: list[LabelledQuery] = []
    trec_splits: tuple[tuple[str, Split], ...] = (
        ("TRAIN", "train"),
        ("DEV", "dev"),
        ("TEST", "test"),
    )
    for name, split in trec_splits:
        path = _check_file(Path(root) / "trecqa" / f"TrecQA_{name}.xml")
        for pair_id, body in _TREC_PAIR.findall(path.read_text(encoding="utf-8")):
            question = ""
            rel: dict[str, int] = {}
            neg: list[str] = []
            for tag, line in _TREC_ITEM.findall(body):
                text = _trec_text(line)
                if not text:
                    continue
                if tag == "question":
                    question = text
                    continue
                doc = _doc_id("t", text)
                docs.setdefault(doc, text)
                if tag == "positive":
                    rel[doc] = 1
                elif doc not in neg:
                    neg.append(doc)
            if question and rel:
                negatives = tuple(d for d in neg if d not in rel)
                queries.append(
                    LabelledQuery(
                        f"{split}-{pair_id}", question, split, MappingProxyType(rel), negatives
                    )
                )
    return Domain(
        "trecqa",
        "trecqa",
        MappingProxyType(docs),
        tuple(queries),
        source="TrecQA answer selection (Wang et al. 2007; TREC QA data, research use)",
        splits_note="the source's TRAIN/DEV/TEST; questions with no positive sentence left out",
    )


_SE_FILES: Final = ("onstartups", "startups")


def _se_questions(root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for site in _SE_FILES:
        path = _check_file(root / "stackexchange-startups" / f"{site}.jsonl")
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    yield f"{site}-{record['qid']}", record


def _se_query(record: Mapping[str, Any], max_chars: int) -> tuple[str, str]:
    title = _SPACES.sub(" ", str(record.get("title") or "")).strip()
    body = _cut(strip_html(str(record.get("body") or "")), max_chars)
    return title, body


def load_stackexchange(
    root: str | Path,
    *,
    limit: int | None = 4000,
    seed: int = 13,
    test: int = 500,
    dev: int = 200,
    max_query_chars: int = 1000,
    max_answer_chars: int = 1200,
) -> Domain:
    """StackExchange startups Q&A: question (title + body) -> answers (see the module table)."""
    eligible: dict[str, dict[str, Any]] = {}
    for qid, record in _se_questions(Path(root)):
        answers = [a for a in record.get("answers") or () if strip_html(str(a.get("text", "")))]
        if answers and max(int(a.get("score", 0)) for a in answers) >= 1:
            eligible[qid] = record
    chosen = sorted(eligible, key=lambda q: _rank_key(seed, q))
    if limit is not None:
        chosen = chosen[:limit]
    quarter = len(chosen) // 4
    splits = carve(chosen, seed=seed, test=min(test, quarter), dev=min(dev, quarter))
    docs: dict[str, str] = {}
    queries: list[LabelledQuery] = []
    for qid in sorted(chosen):
        record = eligible[qid]
        site = qid.split("-", 1)[0]
        answers = [a for a in record["answers"] if strip_html(str(a.get("text", "")))]
        best = max(int(a.get("score", 0)) for a in answers)
        rel: dict[str, int] = {}
        for answer in answers:
            doc = f"{site}-a{answer['answer_id']}"
            docs[doc] = _cut(strip_html(str(answer["text"])), max_answer_chars)
            rel[doc] = 2 if int(answer.get("score", 0)) == best else 1
        title, body = _se_query(record, max_query_chars)
        text = f"{title}\n{body}".strip()
        queries.append(LabelledQuery(qid, text, splits[qid], MappingProxyType(rel)))
    return Domain(
        "stackexchange",
        "stackexchange",
        MappingProxyType(docs),
        tuple(queries),
        source="StackExchange onstartups + startups Q&A (CC BY-SA 3.0; attribute the "
        "StackExchange sites)",
        splits_note=f"{len(chosen)} of {len(eligible)} answered questions (best answer score "
        f">= 1) drawn by sha256(seed:qid), seed {seed}; then test {test}, dev {dev}, rest "
        "train in the same order",
    )


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with _check_file(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    with _check_file(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if number == 1 and parts and not parts[-1].lstrip("-").isdigit():
                continue  # header
            if len(parts) == 3:
                qid, doc, grade = parts
            elif len(parts) == 4:
                qid, _, doc, grade = parts
            else:
                raise InvalidInputError(f"{path}:{number}: expected qid doc grade")
            if int(grade) > 0:
                out[qid][doc] = int(grade)
    return out


def _scifact_corpus(root: Path) -> list[tuple[str, str, str]]:
    return [
        (str(r["_id"]), str(r.get("title") or "").strip(), str(r.get("text") or "").strip())
        for r in _read_jsonl(root / "corpus.jsonl")
    ]


def load_scifact(root: str | Path, *, seed: int = 13, dev_fraction: float = 0.2) -> Domain:
    """BEIR SciFact (``corpus.jsonl``, ``queries.jsonl``, ``qrels/{train,test}.tsv``)."""
    folder = Path(root)
    docs = {
        doc: "\n".join(p for p in (title, text) if p)
        for doc, title, text in _scifact_corpus(folder)
        if title or text
    }
    texts = {str(r["_id"]): str(r["text"]) for r in _read_jsonl(folder / "queries.jsonl")}
    train = _read_qrels(folder / "qrels" / "train.tsv")
    test = _read_qrels(folder / "qrels" / "test.tsv")
    carved = carve(train, seed=seed, dev=dev_fraction)
    queries: list[LabelledQuery] = []
    for qid in sorted(train):
        queries.append(LabelledQuery(qid, texts[qid], carved[qid], MappingProxyType(train[qid])))
    for qid in sorted(test):
        if qid in train:
            raise InvalidInputError(f"SciFact query {qid!r} is in both train and test")
        queries.append(LabelledQuery(qid, texts[qid], "test", MappingProxyType(test[qid])))
    return Domain(
        "scifact",
        "scifact",
        MappingProxyType(docs),
        tuple(queries),
        source="BEIR SciFact (claims CC BY 4.0, abstracts ODC-By 1.0)",
        splits_note=f"test = qrels/test.tsv; dev = {dev_fraction:.0%} of qrels/train.tsv by "
        f"sha256(seed:qid), seed {seed} (as es_neural.eval.data.carve_validation); rest train",
    )


def _title_domain(
    source: Domain,
    name: str,
    triples: list[tuple[str, str, str]],
    docs: Mapping[str, str],
    *,
    limit: int | None,
    seed: int,
    note: str,
) -> Domain:
    pairs = build_pseudo_pairs(triples, kinds=("title",), seed=seed)
    pairs.sort(key=lambda p: _rank_key(seed, p.doc_id))
    if limit is not None:
        pairs = pairs[:limit]
    queries = tuple(
        LabelledQuery(
            f"title-{p.doc_id}",
            p.query,
            "train",
            MappingProxyType({p.doc_id: 1}),
            positive_text=p.text,
        )
        for p in sorted(pairs, key=lambda p: p.doc_id)
    )
    return Domain(
        name,
        source.family,
        docs,
        queries,
        labelled=False,
        source=source.source + "; no judgments used",
        splits_note=f"label-free, train only: {note}; {len(queries)} drawn by sha256(seed:id), "
        f"seed {seed}",
    )


def _split_title(text: str) -> tuple[str, str]:
    title, _, body = text.partition("\n")
    return title.strip(), body.strip()


def scifact_titles(scifact: Domain, *, limit: int | None = 1500, seed: int = 13) -> Domain:
    """Label-free pairs from :func:`load_scifact`'s pool: a title asks for its abstract (the
    pool is the corpus as indexed, title included; the positive is trained as the abstract)."""
    triples = [(doc, *_split_title(text)) for doc, text in sorted(scifact.docs.items())]
    return _title_domain(
        scifact,
        "scifact-titles",
        triples,
        scifact.docs,
        limit=limit,
        seed=seed,
        note="corpus titles -> abstracts",
    )


def stackexchange_titles(questions: Domain, *, limit: int | None = 1500, seed: int = 13) -> Domain:
    """Label-free pairs from :func:`load_stackexchange`'s train-split questions: a title asks for
    its question body (the pool is those questions as title + body)."""
    train = questions.split("train")
    docs = MappingProxyType({q.qid: q.text for q in train})
    triples = [(q.qid, *_split_title(q.text)) for q in train]
    return _title_domain(
        questions,
        "stackexchange-titles",
        triples,
        docs,
        limit=limit,
        seed=seed,
        note="titles -> bodies of the train-split questions",
    )


def load_all(
    train_root: str | Path,
    scifact_root: str | Path,
    *,
    seed: int = 13,
    stackexchange_limit: int | None = 4000,
    pseudo_limit: int | None = 1500,
) -> list[Domain]:
    """Every labelled domain, then the label-free ones (``pseudo_limit=0`` leaves those out;
    :func:`write_pack` stores only labelled domains: derive the others with
    :func:`pseudo_domains`)."""
    se = load_stackexchange(train_root, limit=stackexchange_limit, seed=seed)
    domains = [
        load_msmarco(train_root, seed=seed),
        load_wikiqa(train_root),
        load_trecqa(train_root),
        se,
        load_scifact(scifact_root, seed=seed),
    ]
    if pseudo_limit != 0:
        domains += pseudo_domains(domains, limit=pseudo_limit, seed=seed)
    return domains


def pseudo_domains(
    labelled: Sequence[Domain], *, limit: int | None = 1500, seed: int = 13
) -> list[Domain]:
    """The label-free title domains derived from ``labelled`` (those present among them)."""
    by_name = {d.name: d for d in labelled}
    out = []
    if "scifact" in by_name:
        out.append(scifact_titles(by_name["scifact"], limit=limit, seed=seed))
    if "stackexchange" in by_name:
        out.append(stackexchange_titles(by_name["stackexchange"], limit=limit, seed=seed))
    return out


# Pack =============================================================================================


def write_pack(domains: Sequence[Domain], folder: str | Path) -> dict[str, Any]:
    """One ``<name>.json.xz`` per labelled domain plus ``manifest.json``; returns the manifest.

    Label-free domains are not stored: :func:`pseudo_domains` rebuilds them from the labelled
    ones (they share their pools)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": PACK_FORMAT, "domains": {}}
    for domain in (d for d in domains if d.labelled):
        path = out / f"{domain.name}.json.xz"
        payload = json.dumps(domain.to_json(), ensure_ascii=False, separators=(",", ":"))
        with lzma.open(path, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as handle:
            handle.write(payload)
        manifest["domains"][domain.name] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "family": domain.family,
            "labelled": domain.labelled,
            **domain.counts(),
        }
    manifest["bytes"] = sum(d["bytes"] for d in manifest["domains"].values())
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def read_pack(folder: str | Path) -> list[Domain]:
    """The domains :func:`write_pack` wrote, in manifest order."""
    root = Path(folder)
    manifest = json.loads(_check_file(root / "manifest.json").read_text(encoding="utf-8"))
    domains = []
    for info in manifest["domains"].values():
        path = _check_file(root / info["file"])
        opener: Any = gzip.open if path.suffix == ".gz" else lzma.open
        with opener(path, "rt", encoding="utf-8") as handle:
            domains.append(Domain.from_json(json.load(handle)))
    return domains


# Training items ===================================================================================


@dataclass(frozen=True, slots=True)
class TrainItem:
    """A training query with its positive texts and negative candidate texts."""

    domain: str
    query: str
    positives: tuple[str, ...]
    #: Hard negatives mined by retrieval, best-ranked first.
    mined: tuple[str, ...]
    #: Negatives the source names.
    given: tuple[str, ...]


def training_items(
    domain: Domain,
    mined: Mapping[str, Sequence[str]],
    *,
    split: Split = "train",
    hard_depth: int = 30,
) -> list[TrainItem]:
    """One item per ``split`` query with a positive: mined negatives are the top ``hard_depth``
    documents of ``mined[qid]`` (a ranking, best first) that the query's qrels do not name."""
    items = []
    for q in domain.split(split):
        positives = q.positives
        if not positives:
            continue
        pos_texts = (
            (q.positive_text,)
            if q.positive_text and len(positives) == 1
            else tuple(domain.docs[d] for d in positives)
        )
        hard = [d for d in list(mined.get(q.qid, ()))[:hard_depth] if d not in q.qrels]
        items.append(
            TrainItem(
                domain.name,
                q.text,
                pos_texts,
                tuple(domain.docs[d] for d in hard),
                tuple(domain.docs[d] for d in q.negatives if d not in q.qrels),
            )
        )
    return items


def sample_group(
    item: TrainItem, rng: random.Random, *, negatives: int, filler: Sequence[str]
) -> list[str]:
    """``[positive, negative, ...]`` texts (``1 + negatives`` of them) for one listwise group.

    Up to half of the negatives come from the source's given ones when it has them, the rest from
    the mined ones; either side fills in for the other, and ``filler`` texts (random pool
    documents) pad a group that is still short.
    """
    positive = rng.choice(item.positives)
    n_given = min(len(item.given), negatives // 2 if item.mined else negatives)
    picked = rng.sample(item.given, n_given)
    picked += rng.sample(item.mined, min(len(item.mined), negatives - len(picked)))
    if len(picked) < negatives:
        rest = [t for t in item.given if t not in picked]
        picked += rng.sample(rest, min(len(rest), negatives - len(picked)))
    taken = set(picked) | set(item.positives)
    tries = 0
    while len(picked) < negatives and filler and tries < 10 * negatives:
        tries += 1
        text = filler[rng.randrange(len(filler))]
        if text not in taken:
            picked.append(text)
            taken.add(text)
    return [positive, *picked]
