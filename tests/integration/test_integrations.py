"""The RAG-framework retrievers against the real framework packages and both real engines:
each returns its framework's document type, carries every stage's score, and passes filters
(its framework's format and the portable one) to every leg."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from es_neural.errors import InvalidInputError
from es_neural.neural_index import NeuralIndex

pytestmark = [pytest.mark.engine, pytest.mark.models]

DOCS = [
    {
        "id": "tea",
        "title": "Green tea",
        "text": "Green tea is made from unoxidised leaves.",
        "year": 2001,
        "tenant": "a",
    },
    {
        "id": "coffee",
        "title": "Coffee",
        "text": "Coffee is brewed from roasted coffee beans.",
        "year": 2010,
        "tenant": "b",
    },
    {
        "id": "cocoa",
        "title": "Cocoa",
        "text": "Hot cocoa is a drink made from cocoa beans.",
        "year": 2020,
        "tenant": "a",
    },
    {
        "id": "tiger",
        "title": "Tiger",
        "text": "The tiger is the largest living cat species.",
        "year": 1999,
        "tenant": "b",
    },
]
LEGS = {"bm25", "dense", "sparse"}


@pytest.fixture
def neural(embedded_index: Callable[[list[dict[str, Any]], int], NeuralIndex]) -> NeuralIndex:
    return embedded_index(DOCS, 4)


def _stages_are_complete(meta: dict) -> None:
    stages = meta["es_neural"]
    assert set(stages["legs"]) == LEGS
    assert any(leg is not None for leg in stages["legs"].values())
    assert isinstance(stages["fused_score"], float)
    assert stages["rank"] >= 1


def test_langchain_retriever_returns_documents_with_stage_scores(neural: NeuralIndex) -> None:
    from langchain_core.documents import Document

    from es_neural.integrations.langchain import EsNeuralRetriever

    retriever = EsNeuralRetriever(index=neural, k=2, metadata_fields=("year", "tenant"))
    docs = retriever.invoke("roasted beans drink")
    assert len(docs) == 2
    assert all(isinstance(d, Document) for d in docs)
    assert docs[0].id == "coffee"
    assert docs[0].page_content == "Coffee\nCoffee is brewed from roasted coffee beans."
    assert docs[0].metadata["year"] == 2010
    _stages_are_complete(docs[0].metadata)

    only_a = EsNeuralRetriever(
        index=neural, k=4, filter={"term": {"field": "tenant", "value": "a"}}
    ).invoke("roasted beans drink")
    assert {d.id for d in only_a} == {"tea", "cocoa"}


def test_haystack_component_in_a_pipeline_with_haystack_filters(neural: NeuralIndex) -> None:
    from haystack import Document, Pipeline

    from es_neural.integrations.haystack import EsNeuralRetriever

    pipe = Pipeline()
    pipe.add_component("retriever", EsNeuralRetriever(neural, top_k=3))
    out = pipe.run({"retriever": {"query": "roasted beans drink"}})
    docs = out["retriever"]["documents"]
    assert all(isinstance(d, Document) for d in docs)
    assert docs[0].id == "coffee"
    assert docs[0].score == pytest.approx(docs[0].meta["es_neural"]["score"])
    _stages_are_complete(docs[0].meta)

    filters = {
        "operator": "AND",
        "conditions": [
            {"field": "meta.tenant", "operator": "==", "value": "a"},
            {"field": "meta.year", "operator": ">=", "value": 2005},
        ],
    }
    out = pipe.run({"retriever": {"query": "roasted beans drink", "filters": filters}})
    assert [d.id for d in out["retriever"]["documents"]] == ["cocoa"]
    negated = {
        "operator": "NOT",
        "conditions": [{"field": "meta.tenant", "operator": "==", "value": "a"}],
    }
    out = pipe.run({"retriever": {"query": "drink", "filters": negated, "top_k": 4}})
    assert {d.id for d in out["retriever"]["documents"]} == {"coffee", "tiger"}


def test_llamaindex_retriever_with_metadata_filters(neural: NeuralIndex) -> None:
    from llama_index.core.schema import NodeWithScore
    from llama_index.core.vector_stores.types import (
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    from es_neural.integrations.llamaindex import EsNeuralRetriever

    nodes = EsNeuralRetriever(neural, similarity_top_k=2).retrieve("a big striped cat")
    assert all(isinstance(n, NodeWithScore) for n in nodes)
    assert nodes[0].node.node_id == "tiger"
    _stages_are_complete(nodes[0].node.metadata)

    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="tenant", value="b", operator=FilterOperator.EQ),
            MetadataFilter(key="year", value=[2010, 2020], operator=FilterOperator.IN),
        ],
        condition=FilterCondition.AND,
    )
    nodes = EsNeuralRetriever(neural, similarity_top_k=4, filters=filters).retrieve("drink")
    assert [n.node.node_id for n in nodes] == ["coffee"]


def test_unsupported_framework_filters_are_refused_not_dropped(neural: NeuralIndex) -> None:
    from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

    from es_neural.integrations.haystack import EsNeuralRetriever as HaystackRetriever
    from es_neural.integrations.llamaindex import EsNeuralRetriever as LlamaRetriever

    with pytest.raises(InvalidInputError, match="not supported"):
        HaystackRetriever(neural).run(
            "drink", filters={"field": "meta.tenant", "operator": "like", "value": "a"}
        )
    text_match = MetadataFilters(
        filters=[MetadataFilter(key="tenant", value="a", operator=FilterOperator.TEXT_MATCH)]
    )
    with pytest.raises(InvalidInputError, match="not supported"):
        LlamaRetriever(neural, filters=text_match)
