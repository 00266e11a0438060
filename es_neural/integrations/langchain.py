"""A LangChain retriever over an es-neural index (``pip install "es-neural[langchain]"``).

>>> from es_neural import NeuralIndex
>>> from es_neural.integrations.langchain import EsNeuralRetriever
>>> retriever = EsNeuralRetriever(index=NeuralIndex("docs"), k=5)
>>> docs = retriever.invoke("what is a neural tree")
>>> docs[0].metadata["es_neural"]["legs"]["dense"]["rank"]

Fusion (RRF or normalised linear) happens in es-neural, on the client, so this works on a
basic-licence Elasticsearch 9, where the ``ElasticsearchStore`` hybrid mode's server-side RRF
answers 403. ``filter`` is es-neural's portable filter and reaches every leg.
"""

from __future__ import annotations

from typing import Any

from es_neural.errors import ConfigurationError
from es_neural.integrations.common import retrieve
from es_neural.text import DEFAULT_TEXT_FIELDS

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, Field
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ConfigurationError(
        'the LangChain retriever needs langchain-core: pip install "es-neural[langchain]"'
    ) from exc

__all__ = ["EsNeuralRetriever"]


class EsNeuralRetriever(BaseRetriever):
    """Hybrid (BM25 + kNN + SPLADE, fused, optionally reranked) retrieval from a
    :class:`~es_neural.NeuralIndex`.

    ``filter`` is a portable filter applied to every leg; ``metadata_fields`` are stored fields
    returned in each document's metadata; ``request`` holds further search options (legs,
    fusion, rerank, tree) as in ``POST /v1/search``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any
    k: int = 10
    filter: dict[str, Any] | None = None
    text_fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS
    metadata_fields: tuple[str, ...] = ()
    request: dict[str, Any] = Field(default_factory=dict)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = retrieve(
            self.index,
            query,
            top_k=self.k,
            filters=self.filter,
            text_fields=self.text_fields,
            metadata_fields=self.metadata_fields,
            request=self.request,
        )
        return [Document(page_content=h.text, metadata=h.metadata(), id=h.id) for h in hits]
