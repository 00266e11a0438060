"""Retrievers for RAG frameworks, each behind an optional extra.

* :mod:`es_neural.integrations.langchain`: a LangChain ``BaseRetriever``
  (``pip install "es-neural[langchain]"``);
* :mod:`es_neural.integrations.haystack`: a Haystack ``@component`` retriever
  (``pip install "es-neural[haystack]"``);
* :mod:`es_neural.integrations.llamaindex`: a LlamaIndex ``BaseRetriever``
  (``pip install "es-neural[llamaindex]"``).

Each returns its framework's document type with es-neural's per-stage scores in the metadata
(``metadata["es_neural"]``) and passes filters to every leg (:mod:`.common`).
"""
