"""Migration planning without an engine: target bodies and problems compared as dicts.

The dialects are only used for their pure builders (no client is made)."""

from __future__ import annotations

from typing import Any

import pytest

from es_neural.dialects import BaseDialect, dialect_class
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.migrate.plan import (
    MigrationPlan,
    MigrationPlanError,
    Models,
    PlanOptions,
    SourceIndex,
    SwitchMode,
    TargetContext,
    build_plan,
    default_alias,
    prefixed_fields,
)
from es_neural.migrate.state import MigrationState, Phase, StateStore
from es_neural.migrate.verify import VerifyReport, compare, document_digest
from es_neural.settings import EngineKind, EngineSettings

ES, OS = EngineKind.ELASTICSEARCH, EngineKind.OPENSEARCH
DENSE = ModelFingerprint(kind="dense", name="tiny", revision="r1", dims=8)
SPARSE = ModelFingerprint(kind="sparse", name="tiny-splade", revision="r1")
MODELS = Models(dense=DENSE, similarity="cosine", sparse=SPARSE)
#: What the integ-test Elasticsearch reports (no analysis-common, no mapper-extras).
ES_MODULES = frozenset({"apm", "transport-netty4", "x-pack-core", "x-pack-security"})
OS_MODULES = frozenset({"analysis-common", "mapper-extras", "parent-join", "opensearch-knn"})


def dialect(engine: EngineKind) -> BaseDialect:
    return dialect_class(engine)(EngineSettings(url="http://127.0.0.1:1"))


def source(
    properties: dict[str, Any] | None = None,
    *,
    engine: EngineKind = ES,
    name: str = "products",
    concrete: str = "products-v1",
    is_alias: bool = True,
    settings: dict[str, Any] | None = None,
    **mapping: Any,
) -> SourceIndex:
    props = (
        properties
        if properties is not None
        else {
            "title": {"type": "text"},
            "text": {"type": "text"},
            "price": {"type": "float"},
            "updated": {"type": "date"},
        }
    )
    return SourceIndex(
        engine=engine,
        name=name,
        concrete=concrete,
        is_alias=is_alias,
        mapping={"properties": props, **mapping},
        settings=settings or {"number_of_shards": "2", "number_of_replicas": "0", "uuid": "x"},
        count=1000,
    )


def target(
    engine: EngineKind = ES,
    *,
    alias: str | None = "products",
    alias_targets: tuple[str, ...] = ("products-v1",),
    modules: frozenset[str] | None = ES_MODULES,
    same_cluster: bool = True,
    index: str = "products-v2",
    alias_is_index: bool = False,
) -> TargetContext:
    return TargetContext(
        engine=engine,
        index=index,
        alias=alias,
        alias_targets=alias_targets,
        alias_is_index=alias_is_index,
        modules=modules,
        same_cluster=same_cluster,
    )


def plan(
    src: SourceIndex | None = None,
    tgt: TargetContext | None = None,
    models: Models = MODELS,
    **options: Any,
) -> MigrationPlan:
    tgt = tgt or target()
    return build_plan(src or source(), tgt, models, PlanOptions(**options), dialect(tgt.engine))


# ----- the target body -----


def test_source_fields_kept_and_neural_fields_added() -> None:
    p = plan(timestamp_field="updated").check()
    props = p.body["mappings"]["properties"]
    assert {k: props[k] for k in ("title", "text", "price", "updated")} == {
        "title": {"type": "text"},
        "text": {"type": "text"},
        "price": {"type": "float"},
        "updated": {"type": "date"},
    }
    assert props["embedding"]["type"] == "dense_vector" and props["embedding"]["dims"] == 8
    assert props["splade"] == {"type": "sparse_vector"}
    assert props["content_hash"]["type"] == "keyword"
    meta = p.body["mappings"]["_meta"]
    assert meta["created_by"] == "es-neural"
    assert meta["dense"] == DENSE.to_meta() and meta["sparse"] == SPARSE.to_meta()
    assert meta["text_fields"] == ["title", "text"]
    assert meta["migration"]["source"] == {
        "engine": "elasticsearch",
        "name": "products",
        "index": "products-v1",
    }
    index = p.body["settings"]["index"]
    assert (index["number_of_shards"], index["number_of_replicas"]) == (2, 0)
    assert "uuid" not in index
    assert (p.mode, p.replaced) == (SwitchMode.SWAP, ("products-v1",))
    assert p.checksum_excludes == () and not p.include_vectors


def test_opensearch_body_has_knn_settings_and_rank_features() -> None:
    p = plan(source(engine=OS), target(OS, modules=OS_MODULES)).check()
    props = p.body["mappings"]["properties"]
    assert props["embedding"]["type"] == "knn_vector" and props["embedding"]["dimension"] == 8
    assert props["splade"] == {"type": "rank_features"}
    assert p.body["settings"]["index"]["knn"] is True


def test_conflicting_field_fails_with_a_prefix_suggestion() -> None:
    props = {"title": {"type": "text"}, "text": {"type": "text"}, "embedding": {"type": "text"}}
    p = plan(source(props))
    assert not p.ok and p.body == {}
    (problem,) = p.problems
    assert "'embedding'" in problem and "--field-prefix neural_" in problem
    with pytest.raises(MigrationPlanError, match="embedding"):
        p.check()
    renamed = plan(source(props), field_prefix="neural_").check()
    assert renamed.fields == prefixed_fields("neural_")
    out = renamed.body["mappings"]["properties"]
    assert out["embedding"] == {"type": "text"}
    assert out["neural_embedding"]["type"] == "dense_vector"
    assert renamed.body["mappings"]["_meta"]["fields"]["dense"] == "neural_embedding"


def test_text_fields_must_exist_and_be_strings() -> None:
    p = plan(text_fields=("title", "body", "price"))
    assert len(p.problems) == 2
    assert "'body' is not in the source mapping" in p.problems[0]
    assert "'price' has type 'float'" in p.problems[1]


def test_timestamp_field_must_be_a_date() -> None:
    assert "not date" in plan(timestamp_field="price").problems[0]
    assert "not in the source mapping" in plan(timestamp_field="nope").problems[0]
    nested = source({"title": {"type": "text"}, "text": {"type": "text"},
                     "meta": {"properties": {"ts": {"type": "date_nanos"}}}})  # fmt: skip
    assert plan(nested, timestamp_field="meta.ts").ok


def test_unreadable_or_routed_sources_are_refused() -> None:
    assert "_source disabled" in plan(source(_source={"enabled": False})).problems[0]
    assert "part of each document" in plan(source(_source={"excludes": ["x"]})).problems[0]
    assert "routing" in plan(source(_routing={"required": True})).problems[0]


def test_dynamic_templates_runtime_and_settings_carried() -> None:
    templates = [{"longs": {"match": "n_*", "mapping": {"type": "long"}}}]
    src = source(
        dynamic="strict",
        dynamic_templates=templates,
        runtime={"double_price": {"type": "double"}},
        date_detection=False,
        settings={
            "number_of_shards": "1",
            "max_result_window": "20000",
            "mapping": {"total_fields": {"limit": "3000"}, "exclude_source_vectors": "true"},
            "similarity": {"my_bm25": {"type": "BM25", "b": "0.5"}},
            "refresh_interval": "30s",
        },
    )
    mappings = plan(src).check().body["mappings"]
    assert mappings["dynamic"] == "strict"
    assert mappings["dynamic_templates"][0] == templates[0]
    assert any("strings_as_keywords" in t for t in mappings["dynamic_templates"])
    assert mappings["runtime"] == {"double_price": {"type": "double"}}
    assert mappings["date_detection"] is False
    index = plan(src).body["settings"]["index"]
    assert index["max_result_window"] == "20000"
    assert index["mapping"] == {"total_fields": {"limit": "3000"}}
    assert index["similarity"] == {"my_bm25": {"type": "BM25", "b": "0.5"}}
    assert index["refresh_interval"] == "1s"  # the template's, not the source's
    to_os = plan(source(runtime={"x": {"type": "long"}}, engine=ES),
                 target(OS, modules=OS_MODULES, same_cluster=False, alias_targets=()))  # fmt: skip
    assert "runtime" not in to_os.check().body["mappings"]
    assert any("runtime fields" in w for w in to_os.warnings)


# ----- analysis and types against the target's modules -----

STEMMED = {
    "analysis": {
        "filter": {"eng": {"type": "stemmer", "language": "english"}},
        "analyzer": {
            "stemmed": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "eng"]},
            "folded": {"tokenizer": "whitespace", "char_filter": ["html_strip"]},
        },
    }
}


def test_analysis_needing_analysis_common_fails_on_a_bare_elasticsearch() -> None:
    props = {"title": {"type": "text", "analyzer": "stemmed"}, "text": {"type": "text",
             "analyzer": "english"}}  # fmt: skip
    p = plan(source(props, settings=STEMMED))
    assert not p.ok
    joined = "\n".join(p.problems)
    assert "filter 'eng' is of type 'stemmer'" in joined
    assert "uses tokenizer 'whitespace'" in joined
    assert "uses char_filter 'html_strip'" in joined
    assert "field 'text' uses analyzer 'english'" in joined
    assert "analysis-common" in joined
    # where the module exists (OpenSearch here), the same analysis is carried as it is
    ok = plan(source(props, settings=STEMMED, engine=OS), target(OS, modules=OS_MODULES)).check()
    assert ok.body["settings"]["index"]["analysis"] == STEMMED["analysis"]
    # core components pass without the module; unknown modules are not checked
    core = {"analysis": {"analyzer": {"plain": {"tokenizer": "standard", "filter": ["stop"]}}}}
    assert plan(source(settings=core)).ok
    assert plan(source(props, settings=STEMMED), target(modules=None)).ok


def test_module_types_need_the_module() -> None:
    props = {"title": {"type": "text"}, "text": {"type": "text"},
             "boost": {"type": "rank_feature"}, "n": {"type": "scaled_float",
             "scaling_factor": 10}}  # fmt: skip
    p = plan(source(props))
    assert len(p.problems) == 2 and all("mapper-extras" in x for x in p.problems)
    assert plan(source(props), target(modules=ES_MODULES | {"mapper-extras"})).ok


def test_cross_engine_translates_vectors_and_refuses_missing_types() -> None:
    props = {
        "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
        "text": {"type": "text"},
        "vec": {"type": "dense_vector", "dims": 4, "similarity": "l2_norm", "index": True},
        "obj": {"properties": {"terms": {"type": "sparse_vector"}}},
    }
    tgt = target(OS, modules=OS_MODULES, same_cluster=False, alias_targets=())
    p = plan(source(props), tgt).check()
    out = p.body["mappings"]["properties"]
    assert out["vec"] == {
        "type": "knn_vector",
        "dimension": 4,
        "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2",
                   "parameters": {"m": 16, "ef_construction": 100}},
    }  # fmt: skip
    assert out["obj"]["properties"]["terms"] == {"type": "rank_features"}
    assert out["title"]["fields"] == {"raw": {"type": "keyword"}}
    assert p.checksum_excludes == ("vec", "obj.terms") and p.include_vectors
    assert p.mode is SwitchMode.CREATE and p.replaced == ()
    assert any(n.startswith("cross-cluster") for n in p.notes)
    # and back: knn_vector -> dense_vector
    back = plan(
        source({"title": {"type": "text"}, "text": {"type": "text"},
                "v": {"type": "knn_vector", "dimension": 3,
                      "method": {"name": "hnsw", "space_type": "cosinesimil"}}}, engine=OS),
        target(ES, same_cluster=False, alias_targets=()),
    ).check()  # fmt: skip
    v = back.body["mappings"]["properties"]["v"]
    assert (v["type"], v["dims"], v["similarity"]) == ("dense_vector", 3, "cosine")
    flat = source({"title": {"type": "text"}, "text": {"type": "text"},
                   "attrs": {"type": "flattened"}})  # fmt: skip
    refused = plan(flat, tgt)
    assert "'attrs' has type 'flattened', which opensearch does not have" in refused.problems[0]


def test_cross_engine_vectors_the_target_cannot_take_are_problems() -> None:
    tgt = target(OS, modules=OS_MODULES, same_cluster=False, alias_targets=())
    base = {"title": {"type": "text"}, "text": {"type": "text"}}
    byte = plan(
        source({**base, "v": {"type": "dense_vector", "dims": 4, "element_type": "byte"}}), tgt
    )
    assert byte.problems == (
        "vector field 'v' holds 'byte' elements; only float vectors are translated between engines",
    )
    odd = plan(source({**base, "v": {"type": "dense_vector", "dims": 4,
                                     "similarity": "max_inner_product"}}), tgt)  # fmt: skip
    assert "vector field 'v' uses similarity 'max_inner_product'" in odd.problems[0]
    dot = plan(
        source({**base, "v": {"type": "knn_vector", "dimension": 2,
                              "method": {"space_type": "innerproduct"}}}, engine=OS),
        target(ES, same_cluster=False, alias_targets=()),
    ).check()  # fmt: skip
    assert dot.translated == {"v: knn_vector": "dense_vector"}
    assert any("dot_product similarity" in w for w in dot.warnings)
    # the source engine's own lossy vector types are compared by presence
    assert dot.checksum_excludes == ("v",) and dot.include_vectors


# ----- aliases and switch modes -----


def test_concrete_source_on_the_same_cluster_needs_an_alias() -> None:
    concrete = source(name="products", concrete="products", is_alias=False)
    p = plan(concrete, target(alias=None, alias_targets=()))
    (problem,) = p.problems
    assert "--alias" in problem and "cannot share" in problem
    chosen = plan(concrete, target(alias="shop", alias_targets=(), index="shop-v1")).check()
    assert (chosen.mode, chosen.replaced) == (SwitchMode.CREATE_ON_SOURCE, ("products",))
    taken = plan(concrete, target(alias="products", alias_targets=(), alias_is_index=True))
    assert "is a concrete index" in taken.problems[0]
    assert default_alias(source_name="p", source_is_alias=False, same_cluster=True,
                         requested=None) is None  # fmt: skip
    assert default_alias(source_name="p", source_is_alias=False, same_cluster=False,
                         requested=None) == "p"  # fmt: skip
    assert default_alias(source_name="p", source_is_alias=True, same_cluster=True,
                         requested="q") == "q"  # fmt: skip


def test_describe_explains_the_switch_and_estimate() -> None:
    from es_neural.migrate.plan import Estimate

    lines = plan(timestamp_field="updated").describe(Estimate(sample_docs=50, seconds=0.5))
    text = "\n".join(lines)
    assert "products-v1 -> products-v2 in one atomic request" in text
    assert "100 docs/s" in text and "~10 s for 1,000 documents" in text
    assert "updated >= start - 60 s" in text


# ----- blue/green: an es-neural source -----


def test_neural_source_drops_its_neural_fields_and_takes_new_models() -> None:
    old_dense = ModelFingerprint(kind="dense", name="old", revision="r0", dims=4)
    neural_props = {
        "title": {"type": "text"},
        "text": {"type": "text"},
        "embedding": {"type": "dense_vector", "dims": 4},
        "splade": {"type": "sparse_vector"},
        "content_hash": {"type": "keyword"},
    }
    meta = {"created_by": "es-neural", "dense": old_dense.to_meta(), "sparse": None,
            "text_fields": ["text"], "fields": {"dense": "embedding", "sparse": "splade",
            "leaf_ids": "leaf_ids", "leaf_ancestors": "leaf_ancestors",
            "tree_version": "tree_version", "content_hash": "content_hash"}}  # fmt: skip
    p = plan(source(neural_props, _meta=meta)).check()
    assert p.dropped_fields == prefixed_fields("").neural()  # all of them, mapped or not
    assert p.text_fields == ("text",)  # the source's own
    out = p.body["mappings"]
    assert out["properties"]["embedding"]["dims"] == 8  # the new model's, not a mix
    assert out["_meta"]["dense"] == DENSE.to_meta()
    assert out["_meta"]["migration"]["source_meta"] is None
    assert not p.include_vectors  # its vectors are dropped, not read
    same = Models(dense=old_dense, similarity="cosine")
    assert any("same models" in w for w in plan(source(neural_props, _meta=meta), models=same)
               .warnings)  # fmt: skip


# ----- verify and state (pure parts) -----


def test_digest_ignores_key_order_and_compares_vectors_by_presence() -> None:
    a = {"title": "x", "n": 1, "tags": ["a", "b"]}
    assert document_digest(a) == document_digest({"tags": ["a", "b"], "n": 1, "title": "x"})
    assert document_digest(a) != document_digest({**a, "n": 2})
    v1, v2 = {**a, "vec": [0.1, 0.2]}, {**a, "vec": [0.10000000149, 0.2]}
    assert document_digest(v1) != document_digest(v2)
    vec = frozenset({"vec"})
    assert document_digest(v1, presence=vec) == document_digest(v2, presence=vec)
    assert document_digest(v1, presence=vec) != document_digest(a, presence=vec)


def test_compare_finds_missing_extra_and_changed() -> None:
    missing, extra, changed = compare(
        {"a": "1", "b": "2", "c": "3"}, {"b": "2", "c": "x", "d": "4"}
    )
    assert (missing, extra, changed) == (["a"], ["d"], ["c"])
    report = VerifyReport(3, 3, ("a",), ("d",), ("c",), 0.1)
    assert not report.ok and report.differences == 3
    assert "missing in target: 1 (a)" in report.lines()
    assert VerifyReport(2, 2, (), (), (), 0.1).ok
    assert not VerifyReport(2, 3, (), (), (), 0.1).ok


def test_state_round_trips_and_records_slices(tmp_path: Any) -> None:
    store = StateStore(tmp_path)
    state = MigrationState(
        source_engine="elasticsearch", source_url="u", source_index="p-v1",
        target_engine="opensearch", target_index="p-v1", alias="p", models_key="k",
        started_at_ms=1, slices=3,
    )  # fmt: skip
    state = state.slice_done(2, {"read": 5}).slice_done(0, {"read": 7}).at(Phase.COPY)
    store.save(state)
    loaded = store.load("opensearch", "p")
    assert loaded == state
    assert loaded is not None and loaded.slices_done == (0, 2) and loaded.counts == {"read": 12}
    store.path("opensearch", "p").write_text("{not json")
    assert store.load("opensearch", "p") is None
