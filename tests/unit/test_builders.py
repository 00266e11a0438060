"""Pure builders: mappings and query bodies compared as dicts, no engine needed."""

from __future__ import annotations

import pytest

from es_neural.dialects import IndexSpec, dialect_class
from es_neural.dialects.base import BaseDialect, FieldNames
from es_neural.dialects.fields import VectorField, VectorKind
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


@pytest.mark.parametrize("dialect", [ES, OS], ids=["elasticsearch", "opensearch"])
@pytest.mark.parametrize("similarity", ["cosine", "dot_product", "l2_norm"])
def test_a_written_vector_field_reads_back(dialect: BaseDialect, similarity: str) -> None:
    written = dialect.dense_field(dims=12, similarity=similarity, quantization=Quantization.INT8)
    read = dialect.read_vector_field(written)
    assert read is not None and read.kind is VectorKind.DENSE
    assert (read.dims, read.similarity, read.element_type) == (12, similarity, "float")
    assert read.untranslatable() is None
    sparse = dialect.read_vector_field(dialect.sparse_field())
    assert sparse == VectorField(kind=VectorKind.SPARSE, type=dialect.sparse_field()["type"])
    assert dialect.read_vector_field({"type": "text"}) is None
    assert dialect.field_types.has(written["type"]) and dialect.field_types.has("keyword")
    assert written["type"] in dialect.field_types.lossy_vectors


def test_each_dialect_reads_only_its_own_vector_types() -> None:
    knn = {"type": "knn_vector", "dimension": 3, "method": {"space_type": "innerproduct"}}
    assert ES.read_vector_field(knn) is None
    assert ES.read_vector_field({"type": "rank_features"}) is None  # ES's sparse is sparse_vector
    assert OS.read_vector_field({"type": "dense_vector", "dims": 3}) is None
    read = OS.read_vector_field(knn)
    assert read is not None and (read.dims, read.similarity) == (3, "dot_product")
    # the engines' defaults when the mapping names no similarity
    defaults = (
        OS.read_vector_field({"type": "knn_vector", "dimension": 2}),
        ES.read_vector_field({"type": "dense_vector", "dims": 2}),
    )
    assert [d.similarity if d else None for d in defaults] == ["l2_norm", "cosine"]
    assert not ES.field_types.has("knn_vector") and not OS.field_types.has("flattened")


def test_untranslatable_vector_fields_say_why() -> None:
    odd = ES.read_vector_field(
        {"type": "dense_vector", "dims": 4, "similarity": "max_inner_product"}
    )
    assert odd is not None and odd.similarity is None
    assert odd.untranslatable() == (
        "uses similarity 'max_inner_product', which has no equivalent among "
        "['cosine', 'dot_product', 'l2_norm']"
    )
    byte = OS.read_vector_field({"type": "knn_vector", "dimension": 4, "data_type": "byte"})
    assert byte is not None and "'byte' elements" in str(byte.untranslatable())
    no_dims = ES.read_vector_field({"type": "dense_vector"})
    assert no_dims is not None and no_dims.untranslatable() == "has no dimension in its mapping"


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
    assert es == {  # the knn query: no DFS round before the query phase
        "query": {
            "knn": {
                "field": "embedding",
                "query_vector": [1.0, 0.0],
                "k": 5,
                "num_candidates": 50,
                "filter": f,
            }
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
    assert knn_body(ES, [1.0], k=10, num_candidates=3)["query"]["knn"]["num_candidates"] == 10
    # never more than the k nearest, as the top-level knn section gave
    wider = ES.knn_body(field="embedding", vector=[1.0], k=10, num_candidates=20, size=50)
    assert wider["size"] == 10


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
                        "tie_breaker": 0.5,
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
