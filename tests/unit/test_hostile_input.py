"""Hostile input, property-based (hypothesis): documents, filters and search requests.

Each input is either accepted or refused with a typed reason (a dead-letter reason, an
:class:`~es_neural.errors.InvalidInputError`, a pydantic ``ValidationError``); nothing else may
escape. What is accepted is checked against a closed grammar of the engine bodies the searcher
builds (:func:`es_neural.search.service.leg_bodies`, with both dialects' pure builders): client
text reaches an engine only as the BM25 query text, as filter values, or as field names that
passed the field-name rules (never a metadata field, never one of es-neural's own fields); the
vectors are finite numbers; sparse tokens are sanitised; nothing else (no script, no DSL) gets
through. No engine and no model: runs in seconds.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from es_neural.api import ApiSearchRequest
from es_neural.errors import InvalidInputError
from es_neural.ingest.prepare import MAX_DEPTH, Prepared, Rejected, prepare_record
from es_neural.ingest.sources import Record, iterable_source, jsonl_source
from es_neural.ingest.state import DeadLetterWriter, read_dead_letters
from es_neural.search.filters import compile_filter, is_field_name
from es_neural.search.models import SearchRequest
from es_neural.search.service import leg_bodies
from es_neural.text import DEFAULT_TEXT_FIELDS, document_text
from tests.support.grammar import (
    DIALECTS,
    FILTER_DENIED,
    INFO,
    LEAF_CLAUSE,
    RESERVED,
    Grammar,
    GrammarError,
)

FAST = settings(
    max_examples=150,
    deadline=None,  # a shared CPU: time limits per example would be flaky
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ----------------------------------------------------------------------------- strategies

#: Strings meant to break things: DSL, paths, separators, control and format characters, lone
#: surrogates, right-to-left marks, NUL, newlines after a valid name, wildcards, metadata names.
NASTY = [
    "",
    " ",
    "\x00",
    "\ud800",
    "a\udfffb",
    "\u202eevil",
    "\ufeff",
    "title\n",
    "a,b",
    "*",
    "title*",
    "_id",
    "_source",
    "_all",
    "embedding",
    "splade",
    "content_hash",
    "leaf_ids",
    "script",
    '{"script": {"source": "ctx._source"}}',
    "doc['x'].value",
    "../../etc/passwd",
    "%2E%2e",
    "a.b.c",
    "title^1000000",
    "title^2",
    "ñandú 🦆",
]
hostile_text = st.one_of(
    st.sampled_from(NASTY),
    st.sampled_from([129, 1025, 5000]).map(lambda n: "x" * n),  # over the length limits
    st.text(max_size=40),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Cf", "Zs", "Po"]), max_size=10),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities included
    hostile_text,
)
json_values = st.recursive(
    scalars,
    lambda ch: st.lists(ch, max_size=4) | st.dictionaries(hostile_text, ch, max_size=4),
    max_leaves=16,
)
field_names = st.one_of(
    st.sampled_from(["tenant", "year", "title", "text", "tag", "a.b", "@ts", "x-y"]), hostile_text
)


def _filter_leaves() -> st.SearchStrategy[dict[str, Any]]:
    def maybe(body: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        # Mostly well formed, sometimes with an extra or a wrong-typed key.
        extra = st.dictionaries(st.sampled_from(["script", "boost", "query", "x"]), json_values)
        return st.one_of(body, st.builds(lambda b, e: {**b, **e}, body, extra))

    term = maybe(st.fixed_dictionaries({"field": field_names, "value": scalars}))
    terms = maybe(
        st.fixed_dictionaries({"field": field_names, "values": st.lists(scalars, max_size=5)})
    )
    range_ = maybe(
        st.fixed_dictionaries(
            {"field": field_names},
            optional={op: scalars for op in ("gt", "gte", "lt", "lte")},
        )
    )
    exists = maybe(st.fixed_dictionaries({"field": field_names}))
    return st.one_of(
        term.map(lambda b: {"term": b}),
        terms.map(lambda b: {"terms": b}),
        range_.map(lambda b: {"range": b}),
        exists.map(lambda b: {"exists": b}),
    )


def _bool(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    occurs = {occur: st.lists(children, max_size=3) for occur in ("must", "should", "must_not")}
    occurs["filter"] = st.lists(children, max_size=3)
    return st.fixed_dictionaries({}, optional=occurs).map(lambda b: {"bool": b})


#: Names and values the filter format accepts, yet odd: random valid names, any UTF-8 text.
valid_names = st.one_of(
    st.sampled_from(["tenant", "year", "a.b", "@ts", "x-y", "query", "bool", "script", "leaf_ids"]),
    st.from_regex(r"[A-Za-z0-9@][A-Za-z0-9_.@\-]{0,20}", fullmatch=True),
)
valid_values = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(['{"script": "1"}', "*", "_id", "ctx._source", "\u202e", "\x00"]),
    st.integers(-(2**63) + 1, 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
valid_leaves = st.one_of(
    st.builds(lambda f, v: {"term": {"field": f, "value": v}}, valid_names, valid_values),
    st.builds(
        lambda f, vs: {"terms": {"field": f, "values": vs}},
        valid_names,
        st.lists(valid_values, min_size=1, max_size=4),
    ),
    st.builds(
        lambda f, lo, hi: {"range": {"field": f, "gte": lo, "lt": hi}},
        valid_names,
        st.integers(-100, 100) | st.text(max_size=5),
        st.floats(-1e6, 1e6),
    ),
    st.builds(lambda f: {"exists": {"field": f}}, valid_names),
)
valid_filters = st.recursive(
    valid_leaves,
    lambda ch: st.fixed_dictionaries(
        {"filter": st.lists(ch, min_size=1, max_size=3)},
        optional={
            occur: st.lists(ch, min_size=1, max_size=2) for occur in ("must", "should", "must_not")
        },
    ).map(lambda b: {"bool": b}),
    max_leaves=8,
)
#: Portable filters: valid ones, hostile trees of the right shape, garbage, and the two mixed.
filters = st.one_of(
    valid_filters,
    st.recursive(_filter_leaves(), _bool, max_leaves=8),
    st.recursive(
        _filter_leaves() | json_values,
        lambda ch: _bool(ch) | st.dictionaries(hostile_text, ch, max_size=3),
        max_leaves=8,
    ),
    json_values,
)


def _legs() -> dict[str, st.SearchStrategy[Any]]:
    ints = st.one_of(st.integers(-5, 1200), st.integers(), st.floats(), hostile_text)

    def leg(**more: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        base = {"enabled": st.booleans(), "k": ints, "weight": st.floats() | ints, **more}
        return st.fixed_dictionaries({}, optional=base) | json_values

    return {
        "bm25": leg(fields=st.lists(field_names, max_size=4) | json_values),
        "dense": leg(num_candidates=ints),
        "sparse": leg(max_terms=st.none() | ints),
        "tree": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "threshold": st.floats(),
                "boost": st.floats() | ints,
                "apply_to": st.lists(st.sampled_from(["bm25", "dense", "sparse", "x"]), max_size=3),
            },
        ),
        "fusion": st.fixed_dictionaries(
            {},
            optional={
                "method": st.sampled_from(["rrf", "linear", "script"]),
                "k": st.floats() | ints,
                "normalization": st.sampled_from(["minmax", "zscore", "l2", "none", "x"]),
            },
        ),
        "rerank": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.none() | st.booleans(),
                "top_n": ints,
                "budget_ms": st.floats() | ints,
                "interpolation": st.floats(),
            },
        ),
    }


hostile_request_bodies = st.builds(
    lambda known, unknown: {**unknown, **known},
    st.fixed_dictionaries(
        {
            "index": st.sampled_from(["docs", "Docs", "*", "a,b", "_all", "docs\n", ".x"])
            | hostile_text,
            "query": hostile_text,
        },
        optional={
            "size": st.integers(-5, 200) | json_values,
            "window": st.integers(-5, 2000) | json_values,
            "cursor": hostile_text,
            "filter": filters,
            "explain": st.booleans() | json_values,
            "source": st.lists(field_names, max_size=4) | json_values,
            "track_total_hits": st.integers(-5, 2**32) | json_values,
            "engine": st.sampled_from(["elasticsearch", "opensearch", "solr", 1]),
            **_legs(),
        },
    ),
    st.dictionaries(st.sampled_from(["script", "query_dsl", "knn", "_source"]), json_values),
)
#: Bodies the API accepts (mostly), with hostile text where text is allowed.
valid_request_bodies = st.fixed_dictionaries(
    {
        "index": st.sampled_from(["docs", "docs-v2", "a.b_c"]),
        "query": st.text(st.characters(codec="utf-8"), min_size=1, max_size=60).filter(str.strip)
        | st.sampled_from(['{"script": "x"}', "title:foo AND _id:*", "\u202e\x00 x", "*"]),
    },
    optional={
        "size": st.integers(1, 100),
        "window": st.integers(1, 1000),
        "filter": valid_filters,
        "explain": st.booleans(),
        "source": st.lists(valid_names.filter(lambda n: not n.startswith("_")), max_size=3),
        "track_total_hits": st.booleans() | st.integers(1, 2**31 - 1),
        "engine": st.sampled_from(["elasticsearch", "opensearch"]),
        "bm25": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "k": st.integers(1, 1000),
                "fields": st.lists(
                    st.builds(
                        lambda n, b: n + b,
                        valid_names,
                        st.sampled_from(["", "^2", "^0.5", "^10"]),
                    ),
                    max_size=3,
                ),
            },
        ),
        "dense": st.fixed_dictionaries({}, optional={"enabled": st.booleans()}),
        "sparse": st.fixed_dictionaries(
            {}, optional={"enabled": st.booleans(), "max_terms": st.integers(1, 1024)}
        ),
        "tree": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "boost": st.floats(0, 1000),
                "apply_to": st.lists(st.sampled_from(["bm25", "dense", "sparse"]), max_size=3),
            },
        ),
    },
)
request_bodies = st.one_of(valid_request_bodies, hostile_request_bodies)

#: A sparse encoder's output, as hostile as can be: odd tokens, non-finite and negative weights.
sparse_weights = st.dictionaries(hostile_text, st.floats() | st.integers(-5, 5), max_size=12)
query_vectors = st.lists(st.floats(-1e3, 1e3), min_size=4, max_size=4)

# ----------------------------------------------------------------------------- documents


def _prepare(fields: Any, id_field: str | None, **kw: Any) -> Prepared | Rejected:
    return prepare_record(
        Record(3, fields),
        id_field=id_field,
        text_fields=DEFAULT_TEXT_FIELDS,
        reserved_fields=RESERVED,
        models_key="m",
        **kw,
    )


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def _cycle() -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "c", "text": "loop"}
    doc["self"] = doc
    return doc


utf8_text = st.text(st.characters(codec="utf-8"), max_size=30)
clean_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | utf8_text,
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(utf8_text, ch, max_size=3),
    max_leaves=10,
)
#: Documents an ingest accepts (mostly): UTF-8 text anywhere, odd field names, nested values.
valid_documents = st.builds(
    lambda doc_id, text, extra: {**extra, "id": doc_id, "text": text},
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40) | st.integers(0, 2**63),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=200).filter(str.strip),
    st.dictionaries(utf8_text.filter(lambda k: k not in RESERVED), clean_json, max_size=4),
)
documents = st.one_of(
    valid_documents,
    st.dictionaries(hostile_text, json_values, max_size=6),
    st.fixed_dictionaries(
        {"text": hostile_text},
        optional={"id": scalars, "title": json_values, "_id": scalars, "embedding": json_values},
    ).flatmap(lambda d: st.dictionaries(hostile_text, json_values, max_size=3).map(d.__or__)),
)


@FAST
@given(fields=documents, id_field=st.sampled_from([None, "id", "_id"]))
@example(fields={"id": "a", "text": "t", "x": {1, 2}}, id_field=None)
@example(fields={"id": "a", "text": "t", "x": b"bytes"}, id_field="id")
@example(fields={"id": 10**5000, "text": "t"}, id_field="id")
@example(fields={"text": "t", "n": 10**5000}, id_field=None)
@example(fields={"text": "t", "ok": _deep(MAX_DEPTH - 2)}, id_field=None)
@example(fields={1: "int key", "text": "t"}, id_field=None)
@example(fields={"text": "t", "\ud800": 1}, id_field=None)
@example(fields={"id": "\ud800", "text": "t"}, id_field="id")
@example(fields={"text": "t", "f": float("inf")}, id_field=None)
@example(fields={"text": "t", "obj": object()}, id_field=None)
def test_a_document_is_prepared_or_dead_lettered_with_a_reason(
    fields: Any, id_field: str | None
) -> None:
    out = _prepare(fields, id_field)
    if isinstance(out, Rejected):
        assert isinstance(out.reason, str) and out.reason.strip()
        assert out.stage in ("read", "validate")
        # ... and its dead letter can be written and read back, whatever the record held.
        with tempfile.TemporaryDirectory() as tmp:
            writer = DeadLetterWriter(Path(tmp) / "dead.jsonl")
            writer.add(position=out.position, doc_id=out.doc_id, stage=out.stage,
                       reason=out.reason, record=out.record)  # fmt: skip
            writer.flush()
            (entry,) = read_dead_letters(writer.path)
            assert entry["reason"] == out.reason.encode("utf-8", "backslashreplace").decode()
        return
    assert isinstance(out, Prepared)
    # the one text rule; "" (no text) is prepared too, and written without vectors
    assert out.text == document_text(out.source, DEFAULT_TEXT_FIELDS) == out.text.strip()
    assert 0 < len(out.doc_id.encode("utf-8")) <= 512
    # What goes to the engine is plain, finite, UTF-8 JSON within the size limit.
    encoded = json.dumps(out.source, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert len(encoded) <= 5_000_000
    assert not set(out.source) & set(RESERVED)
    assert "_id" not in out.source


def test_structural_rejections_say_why() -> None:
    """Cases too big for hypothesis to print when they fail: checked one by one."""
    reasons = {
        "too big": _prepare({"text": "x" * 6_000_000}, None),
        "set": _prepare({"text": "t", "x": {1}}, None),
        "huge int": _prepare({"text": "t", "x": 10**5000}, None),
        "cycle": _prepare(_cycle(), "id"),
        "deep": _prepare({"text": "t", "x": _deep(10_000)}, None),
        "int key": _prepare({1: "x", "text": "t"}, None),
    }
    assert all(isinstance(r, Rejected) for r in reasons.values())
    text = {k: r.reason for k, r in reasons.items() if isinstance(r, Rejected)}
    assert "set" in text["set"] and "not a JSON value" in text["set"]
    assert "larger than" in text["huge int"]
    assert "nested deeper" in text["cycle"] and "nested deeper" in text["deep"]
    assert "field name" in text["int key"]
    assert "more than the limit" in text["too big"]
    for record in (_cycle(), {"text": "t", "deep": _deep(50_000)}):
        with tempfile.TemporaryDirectory() as tmp:  # the dead letter of such a record is safe
            writer = DeadLetterWriter(Path(tmp) / "dead.jsonl")
            writer.add(position=0, doc_id=None, stage="validate", reason="r", record=record)
            writer.flush()
            assert read_dead_letters(writer.path)[0]["record"].startswith("<record not")
    with pytest.raises(InvalidInputError):
        compile_filter(_deep(100_000))
    deep_bool: Any = {"exists": {"field": "a"}}
    for _ in range(10_000):
        deep_bool = {"bool": {"filter": [deep_bool]}}
    with pytest.raises(InvalidInputError, match="nest deeper"):
        compile_filter(deep_bool)
    assert isinstance(_prepare({"text": "t", "x": _deep(MAX_DEPTH - 2)}, None), Prepared)


lines = st.one_of(
    st.binary(max_size=60),
    json_values.map(lambda v: json.dumps(v).encode()),
    documents.map(lambda d: json.dumps(d, default=str).encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"[" * 100_000,
            b'{"a": ' + b"[" * 5_000 + b"]" * 5_000 + b', "text": "t"}',
            b'{"n": ' + b"1" * 5_000 + b', "text": "t"}',
            b'{"text": "\\ud800"}',
            b'{"text": "t", "x": NaN}',
            b'{"text": "t", "x": 1e999}',
            b"\xff\xfe{}",
            b'{"text": "t"}\r',
        ]
    ),
)


@FAST
@given(raw=st.lists(lines, max_size=6))
def test_every_jsonl_line_becomes_a_record_or_a_read_error(raw: list[bytes]) -> None:
    body = [line.replace(b"\n", b" ") for line in raw]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        path.write_bytes(b"\n".join(body) + b"\n")
        records = list(jsonl_source(path).records())
        assert len(records) == sum(1 for line in body if line.strip())
        for record in records:
            if record.fields is None:
                assert record.error and record.error.strip()
            else:
                assert isinstance(record.fields, dict)
                assert isinstance(_prepare(record.fields, "id"), Prepared | Rejected)


def test_an_iterable_of_unserialisable_documents_still_gets_an_identity() -> None:
    docs: list[Any] = [_cycle(), {"text": "t", "n": 10**5000}, {1: "a", "b": 2}, "not a mapping"]
    source = iterable_source(docs)
    outcomes = [
        _prepare(r.fields, "id") if r.fields is not None else r.error for r in source.records()
    ]
    assert all(isinstance(o, Rejected) for o in outcomes[:3])
    assert isinstance(outcomes[3], str)


# ----------------------------------------------------------------------------- filters


@FAST
@given(node=filters)
@example(node={"bool": {"must": [{"term": {"field": "title\n", "value": 1}}]}})
@example(node={"script": {"source": "ctx._source"}})
@example(node={"term": {"field": "tenant", "value": "x", "script": "1"}})
def test_a_filter_compiles_to_the_closed_grammar_or_is_refused(node: Any) -> None:
    try:
        clause = compile_filter(node, denied_fields=FILTER_DENIED)
    except InvalidInputError as exc:
        assert str(exc).strip()
        return
    if clause is None:
        assert node is None
        return
    request = SearchRequest(query="q", filter=node)  # the request model accepts it too
    for dialect in DIALECTS:
        Grammar(request, dialect).clause(clause, "filter", scoring=False)


# ----------------------------------------------------------------------------- requests


def _engine_bodies(request: SearchRequest, weights: Mapping[str, float], vector: list[float]):
    for dialect in DIALECTS:
        for leaf in (None, LEAF_CLAUSE):
            try:
                bodies = leg_bodies(
                    request,
                    dialect=dialect,
                    info=INFO,
                    vector=vector,
                    weights=weights,
                    leaf_clause=leaf,
                )
            except InvalidInputError as exc:
                assert str(exc).strip()
                continue
            yield dialect, bodies


@FAST
@given(body=request_bodies, weights=sparse_weights, vector=query_vectors)
@example(
    body={"index": "docs", "query": "q", "bm25": {"fields": ["embedding"]}},
    weights={},
    vector=[0.0] * 4,
)
@example(
    body={"index": "docs", "query": "q", "source": ["a,embedding"]}, weights={}, vector=[0.0] * 4
)
def test_a_request_body_is_refused_or_reaches_the_engine_only_as_query_text_and_values(
    body: dict[str, Any], weights: dict[str, float], vector: list[float]
) -> None:
    try:
        api = ApiSearchRequest.model_validate(body)
    except ValidationError as exc:
        assert exc.errors()  # typed, located errors (the API turns them into a 422)
        return
    request = api.search_request()
    assert request.query == body["query"]
    for dialect, bodies in _engine_bodies(request, weights, vector):
        grammar = Grammar(request, dialect)
        for leg, leg_body in bodies.items():
            grammar.body(leg, leg_body)
    for name in request.source:  # the fields asked back become _source includes (comma-joined)
        assert is_field_name(name) and not name.startswith("_")


@FAST
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        request_bodies.map(lambda b: json.dumps(b).encode()),
        request_bodies.map(lambda b: json.dumps(b, ensure_ascii=False).encode("utf-8", "replace")),
    )
)
@example(raw=b'{"index": "docs", "query": "\\ud800"}')
@example(raw=b'{"index": "docs", "query": "q", "size": NaN}')
@example(raw=b'{"index": "docs", "query": "q", "tree": {"boost": Infinity}}')
@example(raw=b'{"index": "docs", "query": "q", "size": 1' + b"0" * 5000 + b"}")
@example(raw=b'{"index": "docs", "query": "q", "filter": ' + b"[" * 20_000 + b"]" * 20_000 + b"}")
def test_raw_request_bytes_parse_or_fail_validation(raw: bytes) -> None:
    try:
        api = ApiSearchRequest.model_validate_json(raw)
    except ValidationError as exc:
        assert exc.errors()
        return
    request = api.search_request()
    request.query.encode("utf-8")  # no lone surrogate got through
    for dialect, bodies in _engine_bodies(request, {"neural": 1.0}, [0.5, 0.5, 0.5, 0.5]):
        for leg, leg_body in bodies.items():
            Grammar(request, dialect).body(leg, leg_body)


def test_the_grammar_catches_what_these_properties_guard_against() -> None:
    """The checker itself can fail: DSL, metadata fields, foreign values, raw tokens."""
    request = SearchRequest(query="q", filter={"term": {"field": "tenant", "value": "acme"}})
    es, os_ = DIALECTS
    bad_clauses = [
        {"script": {"script": {"source": "ctx._source"}}},
        {"term": {"_id": "acme"}},
        {"term": {"embedding": "acme"}},
        {"term": {"tenant": "other-tenant"}},
        {"query_string": {"query": "q"}},
        {"bool": {"must": [{"match_all": {}}]}},
        {"multi_match": {"query": "not q", "fields": ["title", "text"], "type": "best_fields"}},
        {"term": {"splade": {"value": "u.s", "boost": 1.0}}},
    ]
    for clause in bad_clauses:
        with pytest.raises(GrammarError):
            Grammar(request, es).clause(clause, "q", scoring=True)
    with pytest.raises(GrammarError):
        Grammar(request, os_).clause(
            {"rank_feature": {"field": "splade.a b", "linear": {}, "boost": 1.0}}, "q", scoring=True
        )
    with pytest.raises(GrammarError):
        Grammar(request, es).body("dense", {"knn": {"field": "embedding", "query_vector": [1]}})
    with pytest.raises(GrammarError):
        Grammar(request, es).body("bm25", {"query": {"match_none": {}}, "_source": ["secret"]})
    good = Grammar(request, es)
    good.clause({"term": {"tenant": "acme"}}, "q", scoring=False)
    good.clause(
        {
            "multi_match": {
                "query": "q",
                "fields": ["title", "text"],
                "type": "best_fields",
                "tie_breaker": 0.5,
            }
        },
        "q",
        scoring=True,
    )


def test_bm25_over_es_neural_fields_and_odd_field_names_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="own fields"):
        leg_bodies(
            SearchRequest(query="q", bm25={"fields": ["splade^2"]}),
            dialect=DIALECTS[0],
            info=INFO,
            vector=[0.0] * 4,
            weights={},
        )
    for fields in (["*"], ["title,embedding"], ["_id"], ["title^x"], ["title\n"], ["a"] * 65):
        with pytest.raises(ValidationError):
            SearchRequest(query="q", bm25={"fields": fields})
    for source in (["a,embedding"], ["*"], ["_source"], ["title^2"]):
        with pytest.raises(ValidationError):
            SearchRequest(query="q", source=source)
