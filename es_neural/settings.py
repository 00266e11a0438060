"""Settings: the only module that reads the environment.

Every option can be set with an ``ES_NEURAL_`` variable (nested options use ``__``, for example
``ES_NEURAL_DENSE__MODEL=sentence-transformers/all-MiniLM-L6-v2``) or a ``.env`` file. Settings are
frozen: derive a changed copy with :meth:`Settings.with_` instead of mutating one that other code
holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "ApiSettings",
    "DenseModelSettings",
    "EngineKind",
    "EngineSettings",
    "Quantization",
    "RerankSettings",
    "Settings",
    "SparseModelSettings",
    "get_settings",
    "node_identity",
    "parse_urls",
]


class EngineKind(StrEnum):
    ELASTICSEARCH = "elasticsearch"
    OPENSEARCH = "opensearch"


class Quantization(StrEnum):
    """Vector storage of the dense field.

    ``none`` is plain float HNSW on both engines. ``int8`` maps to ``int8_hnsw`` on Elasticsearch
    and the lucene ``sq`` encoder on OpenSearch; ``bbq`` is Elasticsearch only (``bbq_hnsw``).
    """

    NONE = "none"
    INT8 = "int8"
    BBQ = "bbq"


_FROZEN = ConfigDict(frozen=True, extra="forbid")


def parse_urls(value: str | Iterable[str]) -> tuple[str, ...]:
    """One engine's node URLs from what a user writes: a comma-joined string
    (``http://a:9200,http://b:9200``, the form of ``ES_NEURAL_ELASTICSEARCH__URL``), a JSON list
    (``["http://a:9200", "http://b:9200"]``) or a sequence of URLs. Blanks are dropped; each URL
    must be ``http(s)://host[:port]`` and at least one must remain.

    The one place a URL list is split: everything else takes :attr:`EngineSettings.urls`.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list of URLs: {exc}") from None
            if not isinstance(value, list):
                raise ValueError("a JSON list of URLs was expected")
        else:
            value = text.split(",")
    urls = tuple(str(url).strip() for url in value if str(url).strip())
    if not urls:
        raise ValueError("at least one engine URL is needed")
    for url in urls:
        split = urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    return urls


def node_identity(url: str) -> str:
    """``url`` as the node it reaches: scheme and host lower-cased, credentials, trailing slash,
    query and fragment dropped (``HTTP://u:p@Host:9200/`` -> ``http://host:9200``). Two settings
    that list one node the same way compare equal however the lists are ordered."""
    split = urlsplit(url.strip())
    host = (split.hostname or "").lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = f":{split.port}" if split.port is not None else ""
    return f"{split.scheme.lower()}://{host}{port}{split.path.rstrip('/')}"


class EngineSettings(BaseModel):
    """How to reach one engine. Managed local engines listen on these defaults."""

    model_config = _FROZEN

    #: Every node the client may use (node 0 first), parsed once by :func:`parse_urls`. Set as
    #: ``url``, as the environment names it: ``ES_NEURAL_ELASTICSEARCH__URL=http://a,http://b``
    #: or a JSON list; ``EngineSettings(url="http://a:9200")`` takes one string too.
    urls: Annotated[tuple[str, ...], NoDecode, BeforeValidator(parse_urls)]
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0
    max_retries: int = Field(default=3, ge=0, le=10)

    @model_validator(mode="before")
    @classmethod
    def _url_means_urls(cls, data: Any) -> Any:
        """``url`` (the environment variable's name, and the keyword of one URL) is ``urls``;
        when both arrive (the environment under a dumped copy), ``urls`` is the explicit one."""
        if isinstance(data, Mapping) and "url" in data:
            data = dict(data)
            url = data.pop("url")
            data.setdefault("urls", url)
        return data

    @property
    def nodes(self) -> frozenset[str]:
        """The nodes :attr:`urls` reach, as :func:`node_identity` writes them (order-free)."""
        return frozenset(node_identity(url) for url in self.urls)

    def same_cluster(self, other: EngineSettings) -> bool:
        """Whether ``other`` reaches the same cluster: the node lists share a node (a cluster's
        nodes are listed in any order, and one list may name fewer of them)."""
        return bool(self.nodes & other.nodes)

    @property
    def cluster_key(self) -> str:
        """The node set as one stable string (sorted, comma-joined): for state files."""
        return ",".join(sorted(self.nodes))


class DenseModelSettings(BaseModel):
    model_config = _FROZEN

    #: Hub id for users with internet; the embedded offline default is used when set to "embedded".
    model: str = "embedded"
    hub_default: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = Field(default=32, ge=1)
    max_seq_length: int | None = None
    similarity: Literal["cosine", "dot_product", "l2_norm"] = "cosine"
    device: str | None = None
    #: Weights of the document encoder: ``fp32``, ``int8`` (CPU), ``bf16`` / ``fp16`` (GPU);
    #: ``auto`` is ``bf16`` on CUDA and ``fp32`` elsewhere.
    precision: Literal["auto", "fp32", "int8", "bf16", "fp16"] = "auto"
    #: A query-tuned folder (``es-neural train dense``) or a distilled query tower
    #: (``es-neural train query-tower``) that encodes queries into ``model``'s document space;
    #: documents stay with ``model``. ``None``: ``model`` encodes both.
    query_model: str | None = None
    #: What encodes queries: ``auto`` takes the torch-free query path (ONNX Runtime over the
    #: folder's safetensors, ``tokenizers``; the same fp32 weights) when the model allows it,
    #: else torch; ``onnx`` requires it; ``torch`` never takes it.
    query_runtime: Literal["auto", "onnx", "torch"] = "auto"
    #: ONNX Runtime threads per query on the query path (0: one per core).
    query_threads: int = Field(default=1, ge=0)


class SparseModelSettings(BaseModel):
    model_config = _FROZEN

    model: str = "embedded"
    hub_default: str = "naver/splade-cocondenser-ensembledistil"
    batch_size: int = Field(default=32, ge=1)
    max_seq_length: int = Field(default=256, ge=8)
    doc_top_k: int = Field(default=256, ge=1)
    query_top_k: int = Field(default=64, ge=1)
    min_weight: float = Field(default=0.0, ge=0.0)
    device: str | None = None
    #: As :attr:`DenseModelSettings.precision`; the vocabulary projection runs at it too.
    precision: Literal["auto", "fp32", "int8", "bf16", "fp16"] = "auto"
    #: As :attr:`DenseModelSettings.query_runtime` and :attr:`DenseModelSettings.query_threads`.
    query_runtime: Literal["auto", "onnx", "torch"] = "auto"
    query_threads: int = Field(default=1, ge=0)


class RerankSettings(BaseModel):
    model_config = _FROZEN

    #: A CrossEncoder path or hub id; "embedded" is the project's trained reranker when shipped,
    #: "off" disables reranking.
    model: str = "off"
    #: Candidates reranked, and the time budget, when a request leaves them unset (the only
    #: defaults: :func:`es_neural.search.rerank.resolve_rerank` applies them). The API also
    #: caps a request's budget at ``budget_ms``.
    top_n: int = Field(default=50, ge=1, le=1000)
    #: Pairs scored per call; the budget is checked between calls.
    batch_size: int = Field(default=32, ge=1)
    #: Tokens per (query, passage) pair; ``None``: the length the model was validated with
    #: (``max_length`` in its ``es_neural.json``: 192 for the embedded reranker), else 256.
    max_length: int | None = Field(default=None, ge=16)
    budget_ms: float = Field(default=2000.0, gt=0)
    device: str | None = None
    #: ``auto``: ONNX Runtime when the model is a local BERT cross-encoder folder it can run
    #: (the embedded reranker is) and ``device`` names no GPU (unset: no NVIDIA GPU visible
    #: with torch installed), else torch; ``onnx`` requires it; ``torch`` turns it off
    #: (:mod:`es_neural.search.rerank_onnx`).
    runtime: Literal["auto", "onnx", "torch"] = "auto"
    #: ONNX Runtime's intra-op threads for the reranker (0: one per core).
    threads: int = Field(default=0, ge=0)


class ApiSettings(BaseModel):
    """The HTTP API (``es-neural serve``). CORS is closed unless ``cors_origins`` is set."""

    model_config = _FROZEN

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: Larger request bodies are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=65536, ge=1024)
    #: Per search request; past it the client gets 504 with ``Retry-After``.
    request_timeout_s: float = Field(default=10.0, gt=0)
    #: Searches running at once (each in a worker thread).
    max_concurrency: int = Field(default=4, ge=1, le=256)
    #: Searches waiting for a slot; beyond this the client gets 503 with ``Retry-After``.
    max_queue: int = Field(default=16, ge=0, le=10_000)
    cors_origins: tuple[str, ...] = ()
    #: When non-empty, only these index names may be searched.
    allowed_indexes: tuple[str, ...] = ()
    #: ``json``: ``es-neural serve`` logs one JSON object per line (no bodies, headers or keys).
    log_format: Literal["text", "json"] = "text"


class Settings(BaseSettings):
    """All of es-neural's configuration. Build with :func:`get_settings` or directly."""

    model_config = SettingsConfigDict(
        env_prefix="ES_NEURAL_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    engine: EngineKind = EngineKind.ELASTICSEARCH
    elasticsearch: EngineSettings = EngineSettings(urls=("http://127.0.0.1:9200",))
    opensearch: EngineSettings = EngineSettings(urls=("http://127.0.0.1:9201",))

    #: Where managed engines (``es-neural engines up``) are downloaded, unpacked and run.
    home: Path = Path.home() / ".cache" / "es-neural"
    #: Engine versions used by ``es-neural engines``.
    elasticsearch_version: str = "9.5.0"
    opensearch_version: str = "3.6.0"
    engine_heap: str = "1g"

    index_prefix: str = ""
    quantization: Quantization = Quantization.NONE
    shards: int = Field(default=1, ge=1)
    replicas: int = Field(default=0, ge=0)
    #: Analyzer of the text fields of indices es-neural creates: a built-in analyzer's name
    #: (``english``, ``french``, ...), or a custom analyzer's definition (``{"tokenizer":
    #: "standard", "filter": ["lowercase", "porter_stem"]}``, JSON in the environment). Probed
    #: when an index is created; ``standard`` (with a warning) when the engine lacks it.
    analyzer: str | dict[str, Any] = "english"

    dense: DenseModelSettings = DenseModelSettings()
    sparse: SparseModelSettings = SparseModelSettings()
    rerank: RerankSettings = RerankSettings()
    #: A search profile (``es-neural eval --recommend FILE``): the defaults of every request
    #: (fusion, legs, rerank) where the request leaves them unset (:mod:`es_neural.search.profile`).
    profile: Path | None = None

    #: Where encoded vectors of fixed texts are cached (keyed by model fingerprint + text hash).
    cache_dir: Path | None = None

    api_keys: tuple[SecretStr, ...] = ()
    api: ApiSettings = ApiSettings()

    def engine_settings(self, engine: EngineKind | str | None = None) -> EngineSettings:
        kind = EngineKind(engine) if engine is not None else self.engine
        return self.elasticsearch if kind is EngineKind.ELASTICSEARCH else self.opensearch

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated); this object is left as it is."""
        data = self.model_dump()
        data.update(changes)
        return type(self).model_validate(data)

    @property
    def embedding_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.home / "embedding-cache"


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and ``.env``), with explicit ``overrides`` on top."""
    return Settings(**overrides)
