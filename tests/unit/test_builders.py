"""Pure builders: mappings and query bodies compared as dicts, no engine needed."""

from __future__ import annotations

import pytest

from es_neural.dialects import IndexSpec, dialect_class
from es_neural.dialects.base import FieldNames
from es_neural.errors import BadRequestError, ConfigurationError, InvalidInputError
from es_neural.queries import bm25_body, combine_filters, knn_body, leaf_filter, sparse_body
from es_neural.settings import EngineKind, EngineSettings, Quantization

ES = dialect_class(EngineKind.ELASTICSEARCH)(EngineSettings(url="http://127.0.0.1:1"))
OS = dialect_class(EngineKind.OPENSEARCH)(EngineSettings(url="http://127.0.0.1:1"))


def test_constructing_a_dialect_does_not_connect() -> None:
    assert ES._client is None and OS._client is None


def test_elasticsearch_dense_field_per_quantization() -> None:
    assert ES.dense_field(dims=384, similarity="cosine", quantization=Quantization.NONE) == {
        "type": "dense_vector",
        "index": True,
        "dims": 384,
        "similarity": "cosine",
        "index_options": {"type": "hnsw", "m": 16, "ef_construction": 100},
    }
    int8 = ES.dense_field(dims=8, similarity="dot_product", quantization=Quantization.INT8)
    assert int8["index_options"]["type"] == "int8_hnsw"
    assert int8["similarity"] == "dot_product"
    bbq = ES.dense_field(dims=64, similarity="cosine", quantization=Quantization.BBQ)
    assert bbq["index_options"]["type"] == "bbq_hnsw"


def test_opensearch_dense_field_is_lucene_always() -> None:
    assert OS.dense_field(dims=384, similarity="cosine", quantization=Quantization.NONE) == {
        "type": "knn_vector",
        "dimension": 384,
        "method": {
            "name": "hnsw",
            "engine": "lucene",
            "space_type": "cosinesimil",
            "parameters": {"m": 16, "ef_construction": 100},
        },
    }
    sq = OS.dense_field(dims=8, similarity="l2_norm", quantization=Quantization.INT8)
    assert sq["method"]["parameters"]["encoder"] == {"name": "sq"}
    assert sq["method"]["space_type"] == "l2"
    with pytest.raises(ConfigurationError, match="bbq"):
        OS.dense_field(dims=8, similarity="cosine", quantization=Quantization.BBQ)


def test_index_body_has_every_neural_field_and_meta() -> None:
    spec = IndexSpec(dims=16, meta={"dense": {"name": "m"}}, replicas=1)
    for dialect, sparse_type, vector_type in (
        (ES, "sparse_vector", "dense_vector"),
        (OS, "rank_features", "knn_vector"),
    ):
        body = dialect.index_body(spec)
        props = body["mappings"]["properties"]
        assert props["title"] == {"type": "text", "analyzer": "standard"}
        assert props["embedding"]["type"] == vector_type
        assert props["splade"] == {"type": sparse_type}
        for name in ("leaf_ids", "leaf_ancestors", "tree_version"):
            assert props[name] == {"type": "keyword"}
        assert body["mappings"]["_meta"]["dense"] == {"name": "m"}
        assert body["settings"]["index"]["number_of_replicas"] == 1
    assert OS.index_body(spec)["settings"]["index"]["knn"] is True
    assert "knn" not in ES.index_body(spec)["settings"]["index"]


def test_index_body_refuses_a_clashing_source_field() -> None:
    spec = IndexSpec(dims=4, source_properties={"embedding": {"type": "keyword"}})
    with pytest.raises(BadRequestError, match="embedding"):
        ES.index_body(spec)
    renamed = IndexSpec(
        dims=4,
        source_properties={"embedding": {"type": "keyword"}},
        fields=FieldNames(dense="neural_dense"),
    )
    props = ES.index_body(renamed)["mappings"]["properties"]
    assert props["embedding"] == {"type": "keyword"} and props["neural_dense"]["dims"] == 4


def test_knn_bodies_put_the_filter_inside_the_ann_search() -> None:
    f = leaf_filter(["v1:0/1", "v1:0/0", "v1:0/1"])
    assert f == {"terms": {"leaf_ids": ["v1:0/0", "v1:0/1"]}}
    es = knn_body(ES, [1, 0], k=5, num_candidates=50, filter=f)
    assert es == {
        "knn": {
            "field": "embedding",
            "query_vector": [1.0, 0.0],
            "k": 5,
            "num_candidates": 50,
            "filter": f,
        },
        "size": 5,
        "_source": False,
    }
    os_ = knn_body(OS, [1, 0], k=5, num_candidates=50, filter=f)
    assert os_ == {
        "query": {
            "knn": {
                "embedding": {
                    "vector": [1.0, 0.0],
                    "k": 5,
                    "method_parameters": {"ef_search": 50},
                    "filter": f,
                }
            }
        },
        "size": 5,
        "_source": False,
    }
    assert knn_body(ES, [1.0], k=10, num_candidates=3)["knn"]["num_candidates"] == 10


def test_sparse_bodies_are_linear_feature_clauses() -> None:
    es = sparse_body(ES, {"b": 0.5, "a": 2.0, "zero": 0.0}, size=3)
    assert es["query"] == {
        "bool": {
            "should": [
                {"term": {"splade": {"value": "a", "boost": 2.0}}},
                {"term": {"splade": {"value": "b", "boost": 0.5}}},
            ],
            "minimum_should_match": 1,
        }
    }
    os_ = sparse_body(OS, {"a": 2.0}, size=3, filter={"term": {"tree_version": "v1"}})
    assert os_["query"] == {
        "bool": {
            "must": [
                {
                    "bool": {
                        "should": [
                            {"rank_feature": {"field": "splade.a", "linear": {}, "boost": 2.0}}
                        ],
                        "minimum_should_match": 1,
                    }
                }
            ],
            "filter": [{"term": {"tree_version": "v1"}}],
        }
    }
    assert sparse_body(ES, {}, size=3)["query"] == {"match_none": {}}


def test_sparse_tokens_are_sanitised_identically_for_both_engines() -> None:
    es = sparse_body(ES, {"a.b": 1.0})["query"]["bool"]["should"][0]["term"]["splade"]["value"]
    os_ = sparse_body(OS, {"a.b": 1.0})["query"]["bool"]["should"][0]["rank_feature"]["field"]
    assert "." not in es
    assert os_ == f"splade.{es}"


def test_bm25_body_and_filters() -> None:
    body = bm25_body("hello", fields=("title^2", "text"), size=7, filter={"term": {"x": 1}})
    assert body["query"] == {
        "bool": {
            "must": [
                {
                    "multi_match": {
                        "query": "hello",
                        "fields": ["title^2", "text"],
                        "type": "best_fields",
                    }
                }
            ],
            "filter": [{"term": {"x": 1}}],
        }
    }
    assert body["size"] == 7
    with pytest.raises(InvalidInputError):
        bm25_body("x", fields=())
    assert combine_filters(None, None) is None
    assert combine_filters({"a": 1}, None) == {"a": 1}
    assert combine_filters({"a": 1}, {"b": 2}) == {"bool": {"filter": [{"a": 1}, {"b": 2}]}}
    with pytest.raises(InvalidInputError):
        leaf_filter([])


def test_boost_clause_scores_without_filtering() -> None:
    from es_neural.queries import bm25_body, boost_clause

    leaves = {"terms": {"leaf_ids": ["v1:0/1"]}}
    body = bm25_body("q", fields=["text"], boost=boost_clause(leaves, 2.5))
    query = body["query"]["bool"]
    assert query["should"] == [{"constant_score": {"filter": leaves, "boost": 2.5}}]
    assert "filter" not in query and "minimum_should_match" not in query
    assert query["must"][0]["multi_match"]["query"] == "q"
    with pytest.raises(InvalidInputError):
        boost_clause(leaves, 0.0)
