"""The issue-18 training mix on tiny fixtures: loaders, splits, pack, groups, BM25, offline legs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from es_neural.errors import InvalidInputError
from es_neural.eval.data import carve_validation
from es_neural.search.fusion import RankedList, fuse
from es_neural.train import mix
from es_neural.train.bm25 import BM25, analyze, porter_stem, top_k_rows
from es_neural.train.mining import (
    FUSIONS,
    dense_search,
    fuse_chunk,
    fuse_query,
    ndcg_at_k,
    rerank_ranking,
    retrieve_legs,
    sparse_search,
)

# Fixtures (the sources' own file formats) ========================================================


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def train_root(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    rows = [(f"{100 + i}", f"query number {i}", f"passage  about topic {i}") for i in range(10)]
    rows.append(("105", "query number 5", "a second passage about topic 5"))
    _write(root / "msmarco-devsmall" / "pairs.tsv", "".join("\t".join(r) + "\n" for r in rows))
    wiki = {
        "train": [
            ("1", "how are glacier caves formed ?", "a glacier cave is formed by melting .", "1"),
            ("1", "how are glacier caves formed ?", "the ice facade is 60 m high", "0"),
            ("1", "how are glacier caves formed ?", "ice formations in a cave", "0"),
            ("2", "who wrote it ?", "nobody knows .", "0"),
        ],
        "dev": [("7", "what is a cat ?", "a cat is an animal .", "1")],
        "test": [
            ("9", "what is a dog ?", "a dog is an animal .", "1"),
            ("9", "what is a dog ?", "the ice facade is 60 m high", "0"),
        ],
    }
    for split, lines in wiki.items():
        folder = root / "wikiqa" / split
        for index, name in enumerate(("id.txt", "a.toks", "b.toks", "sim.txt")):
            _write(folder / name, "".join(line[index] + "\n" for line in lines))
    trec = (
        "<QApairs id='1'>\n<question>\nWho\twrote\t``\tIt\t''\t?\nWP\tVBD\n</question>\n"
        "<positive>\nKing\twrote\tit\t-LRB-\t1986\t-RRB-\nNNP\tVBD\n</positive>\n"
        "<negative>\nIt\tis\ta\tnovel\nPRP\n</negative>\n</QApairs>\n"
        "<QApairs id='2'>\n<question>\nNo\tanswer\t?\n</question>\n"
        "<negative>\nNothing\there\n</negative>\n</QApairs>\n"
    )
    for name in ("TRAIN", "DEV", "TEST"):
        _write(root / "trecqa" / f"TrecQA_{name}.xml", trec)
    onstartups = [
        {
            "qid": "1",
            "title": "Is an LLC needed?",
            "body": "<p>I am  starting out &amp; unsure.</p>",
            "answers": [
                {"answer_id": "10", "score": 5, "text": "<p>Yes, <b>always</b>.</p>"},
                {"answer_id": "11", "score": 5, "text": "Usually yes."},
                {"answer_id": "12", "score": 1, "text": "No."},
            ],
        },
        {
            "qid": "2",
            "title": "Unvoted",
            "body": "b",
            "answers": [{"answer_id": "20", "score": 0, "text": "meh"}],
        },
        {"qid": "3", "title": "No answers", "body": "b", "answers": []},
    ]
    startups = [
        {
            "qid": str(q),
            "title": f"Startup question {q}",
            "body": f"body {q}",
            "answers": [{"answer_id": str(100 + q), "score": 2, "text": f"answer {q}"}],
        }
        for q in range(1, 9)
    ]
    for name, records in (("onstartups", onstartups), ("startups", startups)):
        _write(
            root / "stackexchange-startups" / f"{name}.jsonl",
            "".join(json.dumps(r) + "\n" for r in records),
        )
    return root


@pytest.fixture
def scifact_root(tmp_path: Path) -> Path:
    root = tmp_path / "scifact"
    docs = [
        {
            "_id": f"d{i}",
            "title": f"Title number {i} here",
            "text": f"Abstract {i} reports one finding about topic {i} in a dozen plain words.",
        }
        for i in range(6)
    ]
    _write(root / "corpus.jsonl", "".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": str(q), "text": f"claim {q}"} for q in range(1, 13)]
    _write(root / "queries.jsonl", "".join(json.dumps(q) + "\n" for q in queries))
    train = "".join(f"{q}\td{q % 6}\t1\n" for q in range(1, 11))
    _write(root / "qrels" / "train.tsv", "query-id\tcorpus-id\tscore\n" + train)
    _write(
        root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n11\td1\t1\n12\td2\t1\n12\td3\t0\n"
    )
    return root


# Loaders ==========================================================================================


def test_msmarco_dedupes_passages_and_carves_splits(train_root: Path) -> None:
    d = mix.load_msmarco(train_root, test=3, dev=2, seed=1)
    assert d.counts() == {"train": 6, "dev": 2, "test": 2, "pool": 11}  # at most a quarter
    q5 = next(q for q in d.queries if q.qid == "105")
    assert len(q5.qrels) == 2 and q5.negatives == ()
    assert d.docs[mix._doc_id("m", "passage about topic 0")] == "passage about topic 0"
    again = mix.load_msmarco(train_root, test=3, dev=2, seed=1)
    assert [q.split for q in again.queries] == [q.split for q in d.queries]
    other = mix.load_msmarco(train_root, test=3, dev=2, seed=2)
    assert [q.split for q in other.queries] != [q.split for q in d.queries]


def test_carve_orders_by_seeded_hash_and_refuses_too_much() -> None:
    ids = [f"q{i}" for i in range(20)]
    a = mix.carve(ids, seed=3, test=5, dev=0.25)
    assert sorted(a.values()).count("test") == 5 and sorted(a.values()).count("dev") == 5
    assert a == mix.carve(reversed(ids), seed=3, test=5, dev=0.25)  # order of input irrelevant
    with pytest.raises(InvalidInputError):
        mix.carve(ids, test=15, dev=10)


def test_wikiqa_groups_by_question_and_keeps_label_zero_as_given_negatives(
    train_root: Path,
) -> None:
    d = mix.load_wikiqa(train_root)
    assert {q.qid: q.split for q in d.queries} == {
        "train-1": "train",
        "dev-7": "dev",
        "test-9": "test",
    }
    q1 = d.split("train")[0]
    assert [d.docs[x] for x in q1.qrels] == ["a glacier cave is formed by melting ."]
    assert [d.docs[x] for x in q1.negatives] == [
        "the ice facade is 60 m high",
        "ice formations in a cave",
    ]
    # the same sentence under two questions is one pool document
    assert d.split("test")[0].negatives[0] == q1.negatives[0]
    assert len(d.docs) == 6  # every sentence is in the pool, even one of a dropped question


def test_trecqa_takes_the_first_line_of_each_tag(train_root: Path) -> None:
    d = mix.load_trecqa(train_root)
    assert d.counts() == {"train": 1, "dev": 1, "test": 1, "pool": 3}  # question 2: no positive
    q = d.split("test")[0]
    assert q.qid == "test-1" and q.text == 'Who wrote " It " ?'
    assert [d.docs[x] for x in q.qrels] == ["King wrote it ( 1986 )"]
    assert [d.docs[x] for x in q.negatives] == ["It is a novel"]


def test_stackexchange_grades_best_answers_two_and_strips_html(train_root: Path) -> None:
    d = mix.load_stackexchange(train_root, limit=None, test=2, dev=1)
    ids = {q.qid for q in d.queries}
    assert "onstartups-2" not in ids and "onstartups-3" not in ids  # best score 0, no answers
    assert len(ids) == 9
    q = next(q for q in d.queries if q.qid == "onstartups-1")
    assert q.text == "Is an LLC needed?\nI am starting out & unsure."
    assert dict(q.qrels) == {"onstartups-a10": 2, "onstartups-a11": 2, "onstartups-a12": 1}
    assert q.positives == ("onstartups-a10", "onstartups-a11")
    assert d.docs["onstartups-a10"] == "Yes, always ."
    assert d.counts()["test"] == 2 and d.counts()["dev"] == 1
    assert len(mix.load_stackexchange(train_root, limit=4, test=1, dev=1).queries) == 4


def test_scifact_dev_is_the_projects_validation_carve(scifact_root: Path) -> None:
    d = mix.load_scifact(scifact_root)
    train_qrels = {str(q): {f"d{q % 6}": 1} for q in range(1, 11)}
    _, val = carve_validation(train_qrels, fraction=0.2, seed=13)
    assert {q.qid for q in d.split("dev")} == set(val)
    assert {q.qid for q in d.split("test")} == {"11", "12"}
    assert dict(d.split("test")[1].qrels) == {"d2": 1}  # grade 0 rows are not relevant
    assert d.docs["d0"].startswith("Title number 0 here\nAbstract 0 reports")


def test_pseudo_title_domains_share_pools_and_drop_the_title_from_the_positive(
    train_root: Path, scifact_root: Path
) -> None:
    scifact = mix.load_scifact(scifact_root)
    se = mix.load_stackexchange(train_root, limit=None, test=2, dev=1)
    titles, se_titles = mix.pseudo_domains([scifact, se], limit=None)
    assert titles.family == "scifact" and not titles.labelled and titles.docs is scifact.docs
    q = next(q for q in titles.queries if q.qrels == {"d0": 1})
    assert (q.text, q.split) == ("Title number 0 here", "train")
    assert q.positive_text == scifact.docs["d0"].split("\n", 1)[1]
    assert se_titles.family == "stackexchange"
    assert set(se_titles.docs) == {q.qid for q in se.split("train")}
    assert len(mix.pseudo_domains([scifact], limit=2)[0].queries) == 2


def test_pack_round_trips_labelled_domains(
    train_root: Path, scifact_root: Path, tmp_path: Path
) -> None:
    domains = mix.load_all(train_root, scifact_root, stackexchange_limit=None, pseudo_limit=3)
    domains = [mix.load_msmarco(train_root, test=3, dev=2), *domains[1:]]
    manifest = mix.write_pack(domains, tmp_path / "pack")
    assert list(manifest["domains"]) == list(mix.FAMILIES)  # label-free ones are not stored
    back = mix.read_pack(tmp_path / "pack")
    for before, after in zip(domains, back, strict=False):
        assert after.name == before.name and after.queries == before.queries
        assert dict(after.docs) == dict(before.docs) and after.splits_note == before.splits_note


def test_domain_refuses_unknown_documents_and_repeated_ids() -> None:
    q = mix.LabelledQuery("q", "text", "train", {"missing": 1})
    with pytest.raises(InvalidInputError, match="not in the pool"):
        mix.Domain("x", "x", {"d": "doc"}, (q,))
    ok = mix.LabelledQuery("q", "text", "train", {"d": 1})
    with pytest.raises(InvalidInputError, match="repeats"):
        mix.Domain("x", "x", {"d": "doc"}, (ok, ok))


# Training groups ==================================================================================


def _domain() -> mix.Domain:
    docs = {f"d{i}": f"text {i}" for i in range(12)}
    queries = (
        mix.LabelledQuery("a", "qa", "train", {"d0": 2, "d1": 1}, negatives=("d9", "d10", "d11")),
        mix.LabelledQuery("b", "qb", "train", {"d2": 1}),
        mix.LabelledQuery("c", "qc", "test", {"d3": 1}),
    )
    return mix.Domain("toy", "toy", docs, queries)


def test_training_items_drop_judged_documents_from_mined_negatives() -> None:
    mined = {"a": ["d1", "d4", "d0", "d5"], "b": ["d2", "d6", "d7"], "c": ["d8"]}
    items = mix.training_items(_domain(), mined, hard_depth=3)
    assert [i.query for i in items] == ["qa", "qb"]  # train split only
    assert items[0].positives == ("text 0",)  # the top grade only
    assert items[0].mined == ("text 4",)  # d1 (grade 1) and d0 are judged; depth 3 cuts d5
    assert items[0].given == ("text 9", "text 10", "text 11")
    assert items[1].mined == ("text 6", "text 7")


def test_sample_group_mixes_given_and_mined_then_pads_from_the_filler() -> None:
    item = mix.TrainItem("toy", "q", ("pos",), ("m1", "m2", "m3", "m4"), ("g1", "g2", "g3"))
    group = mix.sample_group(item, random.Random(0), negatives=4, filler=["f1"])
    assert group[0] == "pos" and len(group) == 5
    assert sum(t.startswith("g") for t in group) == 2 and sum(t.startswith("m") for t in group) == 2
    short = mix.TrainItem("toy", "q", ("pos",), ("m1",), ())
    padded = mix.sample_group(short, random.Random(0), negatives=3, filler=["pos", "f1", "f2"])
    assert sorted(padded[1:]) == ["f1", "f2", "m1"]  # never the positive as a negative
    a = [mix.sample_group(item, random.Random(7), negatives=4, filler=[]) for _ in range(2)]
    assert a[0] == a[1]


# BM25 =============================================================================================


def test_porter_stems_like_the_reference_implementation() -> None:
    cases = {
        "caresses": "caress",
        "ponies": "poni",
        "relational": "relat",
        "generalizations": "gener",
        "hopping": "hop",
        "filing": "file",
        "happy": "happi",
        "sensibility": "sensibl",  # the reference C version's "bli" -> "ble" departure
        "archaeology": "archaeolog",  # and its "logi" -> "log"
        "is": "is",
    }
    assert {w: porter_stem(w) for w in cases} == cases


def test_analyze_drops_possessives_and_english_stop_words() -> None:
    assert analyze("The Children's caves were FORMED by the melting ice.") == [
        "children",
        "cave",
        "were",
        "form",
        "melt",
        "ic",
    ]


def test_bm25_scores_are_lucene_bm25_computed_by_hand() -> None:
    docs = ["cat sat on the mat", "dog and cat", "dog dog dog barks", "unrelated words only"]
    index = BM25(docs)
    tokens = [analyze(d) for d in docs]
    avgdl = sum(map(len, tokens)) / len(tokens)

    def expected(query: str, doc: int) -> float:
        total = 0.0
        for term in analyze(query):
            df = sum(term in t for t in tokens)
            if not df:
                continue
            tf = tokens[doc].count(term)
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            total += idf * tf / (tf + 1.2 * (0.25 + 0.75 * len(tokens[doc]) / avgdl))
        return total

    for query in ("cat", "dog cat", "dog dog", "bird"):
        got = index.scores([query])[0]
        assert got == pytest.approx([expected(query, i) for i in range(len(docs))])
    hits = index.search(["dog cat", "bird"], 10)
    assert [i for i, _ in hits[0]] == [1, 2, 0] and hits[1] == []


def test_top_k_rows_breaks_ties_by_column_even_at_the_cut() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert top_k_rows(scores, 2) == [[(1, 3.0), (2, 3.0)], [(0, 0.0), (1, 0.0)]]
    assert top_k_rows(scores, 9, positive_only=True) == [
        [(1, 3.0), (2, 3.0), (4, 3.0), (0, 1.0)],
        [],
    ]
    with pytest.raises(InvalidInputError):
        top_k_rows(scores, 0)


# Offline legs, fusion, metrics ====================================================================


def test_exact_dense_and_sparse_search_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(size=(30, 8)).astype(np.float32)
    q = rng.normal(size=(4, 8)).astype(np.float32)
    hits = dense_search(q, d, 5, chunk=3)
    for row, got in zip(q @ d.T, hits, strict=True):
        assert [i for i, _ in got] == list(np.argsort(-row, kind="stable")[:5])
    docs = [{"a": 1.0, "b": 2.0}, {"b": 1.0}, {"c": 5.0}, {}]
    assert sparse_search([{"b": 1.0, "z": 9.0}, {"c": 0.5, "a": 2.0}], docs, 10) == [
        [(0, 2.0), (1, 1.0)],
        [(2, 2.5), (0, 2.0)],
    ]


def test_fusion_helpers_are_the_projects_fusion() -> None:
    legs = {"bm25": [("a", 3.0), ("b", 1.0)], "dense": [("b", 0.9), ("c", 0.5)]}
    lists = [RankedList.from_scores(n, h) for n, h in legs.items()]
    for name, spec in FUSIONS.items():
        if spec.method == "rrf":
            ref = fuse(lists, method="rrf", k=spec.k)
        else:
            ref = fuse(lists, method="linear", normalization=spec.normalization)
        assert fuse_query(legs, spec) == [(h.doc_id, h.score) for h in ref.hits], name
    out = fuse_chunk({"q": legs}, ["rrf-60", "linear-l2"], 100, 2)
    assert list(out) == ["rrf-60", "linear-l2"] and len(out["rrf-60"]["q"]) == 2


def test_ndcg_at_10_by_hand() -> None:
    qrels = {"q1": {"a": 1, "b": 2}, "q2": {"x": 1}, "q3": {"y": 0}}
    ranking = {"q1": [("b", 1.0), ("z", 0.5), ("a", 0.1)]}
    ideal = 2 + 1 / math.log2(3)
    q1 = (2 + 1 / math.log2(4)) / ideal
    assert ndcg_at_k(qrels, ranking) == pytest.approx((q1 + 0.0) / 2)  # q3 has no relevant doc
    with pytest.raises(InvalidInputError):
        ndcg_at_k({"q": {"a": 0}}, ranking)


def test_rerank_interpolates_min_max_scores_over_the_head_only() -> None:
    ranking = {"q": [("a", 10.0), ("b", 5.0), ("c", 0.0), ("tail", -1.0)]}
    model = {"a": 0.0, "b": 1.0, "c": 3.0}

    def score(_qid: str, doc: str) -> float:
        return model[doc]

    alone = rerank_ranking(ranking, score, top_n=3)
    assert [d for d, _ in alone["q"]] == ["c", "b", "a", "tail"]
    half = rerank_ranking(ranking, score, top_n=3, interpolation=0.5)
    # a: 0.5*0 + 0.5*1 = 0.5; b: 0.5*(1/3) + 0.5*0.5 = 0.4167; c: 0.5*1 + 0 = 0.5 (tie: fused order)
    assert [(d, round(s, 4)) for d, s in half["q"][:3]] == [("a", 0.5), ("c", 0.5), ("b", 0.4167)]
    assert half["q"][3] == ("tail", -1.0)


def test_retrieve_legs_with_the_projects_encoders(tiny_model_dir: Path) -> None:
    from es_neural.encoders.dense import SentenceTransformerDense
    from es_neural.encoders.sparse import SpladeEncoder

    docs = ["the cell and the gene", "water energy study", "protein of the brain", "dog and cat"]
    legs = retrieve_legs(
        [f"d{i}" for i in range(4)],
        docs,
        ["q1", "q2"],
        ["gene cell", "cat"],
        dense=SentenceTransformerDense(tiny_model_dir, device="cpu"),
        sparse=SpladeEncoder(tiny_model_dir, device="cpu"),
        depth=3,
    )
    assert set(legs) == {"bm25", "dense", "sparse"}
    assert [d for d, _ in legs["bm25"]["q1"]] == ["d0"] and [d for d, _ in legs["bm25"]["q2"]] == [
        "d3"
    ]
    assert all(len(legs["dense"][q]) == 3 for q in ("q1", "q2"))
    assert all(len(hits) <= 3 for hits in legs["sparse"].values())
