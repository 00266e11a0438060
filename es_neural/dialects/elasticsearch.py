"""Elasticsearch 9.x dialect: the only module that imports ``elasticsearch``.

Differences it owns: ``dense_vector`` with explicit ``index_options`` (9.x defaults to
``bbq_hnsw`` for dims >= 384), ``sparse_vector`` + linear ``term`` clauses for SPLADE, the
``knn`` query (not the top-level ``knn`` section: that one runs a DFS round over every shard
before the query phase) with the filter inside the ANN search, PIT via ``_pit`` +
``_shard_doc``, the test distribution's missing ``GET /`` (health and version come from
``_cluster/health`` and ``_nodes``), and ``elasticsearch.ApiError`` not being a ``TransportError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import elastic_transport
import elasticsearch
from elasticsearch import Elasticsearch

from es_neural.dialects import jsonio
from es_neural.dialects.base import (
    BaseDialect,
    BulkAction,
    BulkResult,
    Capabilities,
    load_template,
)
from es_neural.dialects.errors import (
    auth_error,
    check_plain_http,
    error_from_status,
    plain_http_error,
    plain_http_to_tls,
    redact_url,
    tls_error,
    translate_bulk_items,
)
from es_neural.dialects.fields import FieldTypes, VectorField, VectorKind
from es_neural.errors import (
    ConfigurationError,
    EngineError,
    EngineUnavailableError,
    IndexNotFoundError,
)
from es_neural.settings import EngineKind, Quantization

__all__ = ["ElasticsearchDialect"]


#: Field types only Elasticsearch has (its vector types included).
_OWN_TYPES = frozenset(
    {
        "flattened", "semantic_text", "version", "aggregate_metric_double", "histogram",
        "counted_keyword", "passthrough", "rank_vectors", "match_only_text", "point",
        "shape", "dense_vector", "sparse_vector", "rank_feature", "rank_features",
        "scaled_float", "token_count", "search_as_you_type", "join", "percolator",
    }
)  # fmt: skip


class _ResponseSerializer(elasticsearch.JsonSerializer):
    """The client's JSON serializer, reading responses with orjson (:mod:`jsonio`); the
    client uses it for the compatibility-mode media type too."""

    def json_loads(self, data: bytes) -> Any:
        return jsonio.loads(data)


class ElasticsearchDialect(BaseDialect):
    engine = EngineKind.ELASTICSEARCH
    field_types = FieldTypes(
        own=_OWN_TYPES,
        lossy_vectors=frozenset({"dense_vector", "sparse_vector", "rank_vectors"}),
        vectors=frozenset({"dense_vector", "sparse_vector", "rank_vectors", "rank_features"}),
    )

    # ----- client and errors -----

    def _make_client(self) -> Elasticsearch:
        s = self.settings
        check_plain_http("Elasticsearch", s)
        kwargs: dict[str, Any] = {
            "request_timeout": s.request_timeout,
            # Retries happen in BaseDialect.call (tenacity), never in the transport too.
            "max_retries": 0,
            "retry_on_timeout": False,
            "verify_certs": s.verify_certs,
        }
        if s.api_key is not None:
            kwargs["api_key"] = s.api_key.get_secret_value()
        elif s.username is not None:
            password = s.password.get_secret_value() if s.password is not None else ""
            kwargs["basic_auth"] = (s.username, password)
        if s.ca_certs is not None:
            kwargs["ca_certs"] = str(s.ca_certs)
        if not s.verify_certs:
            kwargs["ssl_show_warn"] = False
        hosts = list(s.urls)
        kwargs["serializer"] = _ResponseSerializer()
        try:
            return Elasticsearch(hosts, **kwargs)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"bad Elasticsearch connection settings for {redact_url(s.urls)}: {exc}"
            ) from None

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, elasticsearch.ApiError):
            body = exc.body if isinstance(exc.body, dict) else {}
            error = body.get("error", {})
            error_type = error.get("type") if isinstance(error, dict) else None
            reason = error.get("reason") if isinstance(error, dict) else str(exc.body)
            root = error.get("root_cause") if isinstance(error, dict) else None
            if not error_type and isinstance(root, list) and root:
                error_type = root[0].get("type")
            if exc.meta.status in (401, 403):
                return auth_error(
                    "Elasticsearch",
                    self.settings,
                    exc.meta.status,
                    f"{error_type or 'error'}: {reason or exc.message}",
                    error_type=error_type,
                    info=body,
                )
            return error_from_status(
                exc.meta.status,
                f"Elasticsearch: {error_type or 'error'}: {reason or exc.message}",
                error_type=error_type,
                info=body,
            )
        if isinstance(exc, elastic_transport.TransportError):
            # ConnectionError, ConnectionTimeout, TlsError, SerializationError: no response.
            if isinstance(exc, elastic_transport.TlsError):
                return tls_error("Elasticsearch", self.settings, str(exc.message))
            if isinstance(exc, elastic_transport.ConnectionError) and (
                tls_url := plain_http_to_tls(self.settings, str(exc.message))
            ):
                sent = self.settings.username is not None or self.settings.api_key is not None
                return plain_http_error("Elasticsearch", tls_url, credentials_sent=sent)
            return EngineUnavailableError(
                f"Elasticsearch unreachable at {redact_url(self.settings.urls)}: {exc}"
            )
        return exc

    # ----- pure builders -----

    def dense_field(
        self, *, dims: int, similarity: str, quantization: Quantization
    ) -> dict[str, Any]:
        t = load_template("elasticsearch")
        try:
            sim = t["similarity"][similarity]
            options = t["index_options"][quantization.value]
        except KeyError as exc:
            raise ConfigurationError(
                f"Elasticsearch has no {similarity!r} similarity / {quantization.value!r} "
                f"quantization; choose from {sorted(t['similarity'])} / "
                f"{sorted(t['index_options'])}"
            ) from exc
        return {**t["dense_field"], "dims": dims, "similarity": sim, "index_options": options}

    def sparse_field(self) -> dict[str, Any]:
        field: dict[str, Any] = load_template("elasticsearch")["sparse_field"]
        return field

    @classmethod
    def read_vector_field(cls, prop: Mapping[str, Any]) -> VectorField | None:
        t = load_template("elasticsearch")
        kind = prop.get("type")
        if kind == t["sparse_field"]["type"]:
            return VectorField(kind=VectorKind.SPARSE, type=str(kind))
        if kind != t["dense_field"]["type"]:
            return None
        neutral = {name: key for key, name in t["similarity"].items()}
        similarity = str(prop.get("similarity") or "cosine")  # the 9.x default for floats
        dims = prop.get("dims")
        return VectorField(
            kind=VectorKind.DENSE,
            type=str(kind),
            dims=dims if isinstance(dims, int) and not isinstance(dims, bool) else None,
            engine_similarity=similarity,
            similarity=neutral.get(similarity),
            known_similarities=tuple(neutral),
            element_type=str(prop.get("element_type", "float")),
        )

    def knn_body(
        self,
        *,
        field: str,
        vector: Sequence[float],
        k: int,
        num_candidates: int,
        filter: Mapping[str, Any] | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        knn: dict[str, Any] = {
            "field": field,
            "query_vector": [float(x) for x in vector],
            "k": k,
            "num_candidates": max(num_candidates, k),
        }
        if filter:
            knn["filter"] = dict(filter)
        # The knn *query*: each shard returns its k nearest (of num_candidates) in the query
        # phase and the coordinator keeps the best ``size``, the global k nearest the top-level
        # ``knn`` section gives, without its extra DFS round over every shard (measured at 1M
        # documents on 12 shards: 5 ms less per hybrid query, bench/scale_query.py).
        return {"query": {"knn": knn}, "size": k if size is None else min(size, k)}

    def sparse_clause(self, *, field: str, token: str, weight: float) -> dict[str, Any]:
        return {"term": {field: {"value": token, "boost": weight}}}

    def sparse_source_value(self, weights: Mapping[str, float]) -> dict[str, float]:
        return dict(weights)

    # ----- I/O -----

    def health(self, *, timeout_s: float = 5.0) -> dict[str, Any]:
        response = self.call(
            lambda: self.client.options(request_timeout=timeout_s).cluster.health(), retry=False
        )
        return dict(response.body)

    def analyze(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.call(lambda: self.client.indices.analyze(**dict(body))).body)

    def probe(self) -> Capabilities:
        nodes = self.call(lambda: self.client.nodes.info(metric="plugins"))
        infos = list(nodes["nodes"].values())
        version = infos[0]["version"] if infos else "unknown"
        modules = sorted({m["name"] for info in infos for m in info.get("modules", [])})
        major = int(version.split(".")[0]) if version[0].isdigit() else 0
        quant = (Quantization.NONE, Quantization.INT8, Quantization.BBQ)
        return Capabilities(
            engine=self.engine,
            version=version,
            dense_vectors=major >= 8,
            sparse_vectors=major >= 8,
            quantizations=quant if major >= 9 else quant[:2],
            nodes=len(infos),
            details={"modules": modules, "has_root_endpoint": False},
        )

    def create_index(self, name: str, body: Mapping[str, Any]) -> None:
        self.call(
            lambda: self.client.indices.create(
                index=name, settings=body.get("settings"), mappings=body.get("mappings")
            )
        )

    def delete_index(self, name: str, *, missing_ok: bool = True) -> None:
        try:
            self.call(lambda: self.client.indices.delete(index=name))
        except IndexNotFoundError:
            if not missing_ok:
                raise

    def index_exists(self, name: str) -> bool:
        return bool(self.call(lambda: self.client.indices.exists(index=name)))

    def get_mapping(self, name: str) -> dict[str, Any]:
        response = self.call(lambda: self.client.indices.get_mapping(index=name)).body
        if len(response) != 1:
            raise EngineError(f"{name!r} resolves to {len(response)} indices, expected one")
        mapping: dict[str, Any] = next(iter(response.values()))["mappings"]
        return mapping

    def get_settings(self, name: str) -> dict[str, Any]:
        response = self.call(lambda: self.client.indices.get_settings(index=name)).body
        settings: dict[str, Any] = next(iter(response.values()))["settings"]["index"]
        return settings

    def put_meta(self, name: str, meta: Mapping[str, Any]) -> None:
        self.call(lambda: self.client.indices.put_mapping(index=name, meta=dict(meta)))

    def put_properties(self, name: str, properties: Mapping[str, Any]) -> None:
        self.call(lambda: self.client.indices.put_mapping(index=name, properties=dict(properties)))

    def resolve_alias(self, alias: str) -> list[str]:
        try:
            response = self.call(lambda: self.client.indices.get_alias(name=alias)).body
        except IndexNotFoundError:
            return []
        return sorted(response)

    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        self.call(lambda: self.client.indices.update_aliases(actions=[dict(a) for a in actions]))

    def refresh(self, name: str) -> None:
        self.call(lambda: self.client.indices.refresh(index=name))

    def count(self, name: str, query: Mapping[str, Any] | None = None) -> int:
        kwargs: dict[str, Any] = {"index": name}
        if query:
            kwargs["query"] = dict(query)
        return int(self.call(lambda: self.client.count(**kwargs))["count"])

    def bulk(self, actions: Sequence[BulkAction], *, refresh: bool = False) -> BulkResult:
        if not actions:
            return BulkResult(succeeded=(), failed=())
        operations = self._bulk_operations(actions)
        response = self.call(
            lambda: self.client.bulk(
                operations=operations, refresh="wait_for" if refresh else False
            )
        ).body
        return translate_bulk_items(response)

    def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.call(lambda: self.client.search(index=index, body=dict(body))).body)

    def msearch(
        self,
        index: str,
        bodies: Sequence[Mapping[str, Any]],
        *,
        routing: Sequence[Sequence[str] | None] | None = None,
    ) -> list[dict[str, Any] | EngineError]:
        searches: list[Mapping[str, Any]] = []
        for i, body in enumerate(bodies):
            searches.append(self._msearch_header(index, routing[i] if routing else None))
            searches.append(dict(body))
        response = self.call(lambda: self.client.msearch(searches=searches)).body
        return [self._msearch_item(item) for item in response["responses"]]

    def _mget(
        self,
        index: str,
        docs: Sequence[tuple[str, str | None]],
        fields: Sequence[str] | None,
    ) -> dict[str, dict[str, Any]]:
        if not docs:
            return {}
        kwargs: dict[str, Any] = {"index": index}
        if all(r is None for _, r in docs):
            kwargs["ids"] = [d for d, _ in docs]
        else:
            kwargs["docs"] = [{"_id": d, "routing": r} if r else {"_id": d} for d, r in docs]
        if fields is not None:
            kwargs["source_includes"] = list(fields)
        response = self.call(lambda: self.client.mget(**kwargs)).body
        return {d["_id"]: d.get("_source", {}) for d in response["docs"] if d.get("found")}

    def shard_of_routing(self, index: str, routing: str) -> int:
        response = self.call(lambda: self.client.search_shards(index=index, routing=routing)).body
        return int(response["shards"][0][0]["shard"])

    def open_pit(self, index: str, *, keep_alive: str = "5m") -> str:
        response = self.call(
            lambda: self.client.open_point_in_time(index=index, keep_alive=keep_alive)
        )
        return str(response["id"])

    def close_pit(self, pit_id: str) -> None:
        self.call(lambda: self.client.close_point_in_time(id=pit_id), retry=False)

    def _pit_sort(self) -> list[Any]:
        return [{"_shard_doc": "asc"}]

    def _pit_search(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.call(lambda: self.client.search(body=dict(body))).body)

    def _vector_source_options(self) -> dict[str, Any]:
        # 9.x leaves dense/sparse vectors out of ``_source`` unless asked (rehydrated from the
        # index, so at the precision the field stores).
        return {"exclude_vectors": False}
