"""OpenSearch 3.x (2.19 fallback) dialect: the only module that imports ``opensearchpy``.

Differences it owns: ``knn_vector`` on the lucene engine with ``index.knn`` (the Maven k-NN
plugin has no native libraries, so faiss/nmslib are never used), kNN as a ``query.knn`` clause
with its filter inside, ``rank_features`` + ``rank_feature``/``linear`` clauses for SPLADE
(a ``term`` query on rank_features throws), PIT via ``_search/point_in_time``, and
opensearch-py's exception tree (its ``NotFoundError`` and ``ConnectionError`` both subclass
``TransportError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import opensearchpy
from opensearchpy import OpenSearch

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

__all__ = ["OpenSearchDialect"]


#: Field types only OpenSearch has (its vector types included).
_OWN_TYPES = frozenset(
    {
        "flat_object", "knn_vector", "xy_point", "xy_shape", "match_only_text",
        "rank_feature", "rank_features", "scaled_float", "token_count",
        "search_as_you_type", "join", "percolator",
    }
)  # fmt: skip


class _ResponseSerializer(opensearchpy.JSONSerializer):
    """The client's JSON serializer, reading responses with orjson (:mod:`jsonio`)."""

    def loads(self, s: str) -> Any:
        try:
            return jsonio.loads(s)
        except (ValueError, TypeError) as exc:
            raise opensearchpy.SerializationError(s, exc) from exc


class OpenSearchDialect(BaseDialect):
    engine = EngineKind.OPENSEARCH
    field_types = FieldTypes(
        own=_OWN_TYPES,
        lossy_vectors=frozenset({"knn_vector"}),
        vectors=frozenset({"knn_vector", "rank_features"}),
    )

    # ----- client and errors -----

    def _make_client(self) -> OpenSearch:
        s = self.settings
        check_plain_http("OpenSearch", s)
        hosts = list(s.urls)
        kwargs: dict[str, Any] = {
            "timeout": s.request_timeout,
            # Retries happen in BaseDialect.call (tenacity), never in the transport too.
            "max_retries": 0,
            "retry_on_timeout": False,
            "verify_certs": s.verify_certs,
            "ssl_show_warn": s.verify_certs,
        }
        if any(h.startswith("https://") for h in hosts):
            kwargs["use_ssl"] = True
        if s.username is not None:
            password = s.password.get_secret_value() if s.password is not None else ""
            kwargs["http_auth"] = (s.username, password)
        if s.api_key is not None:
            kwargs["headers"] = {"Authorization": f"Bearer {s.api_key.get_secret_value()}"}
        if s.ca_certs is not None:
            kwargs["ca_certs"] = str(s.ca_certs)
        kwargs["serializer"] = _ResponseSerializer()
        try:
            return OpenSearch(hosts, **kwargs)
        except (ValueError, TypeError, opensearchpy.ImproperlyConfigured) as exc:
            raise ConfigurationError(
                f"bad OpenSearch connection settings for {redact_url(s.urls)}: {exc}"
            ) from None

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, opensearchpy.SSLError):
            return tls_error("OpenSearch", self.settings, str(exc.info or exc.error))
        if isinstance(exc, opensearchpy.ConnectionError) and (
            tls_url := plain_http_to_tls(self.settings, str(exc))
        ):
            sent = self.settings.username is not None or self.settings.api_key is not None
            return plain_http_error("OpenSearch", tls_url, credentials_sent=sent)
        if isinstance(exc, opensearchpy.ConnectionError | opensearchpy.ConnectionTimeout):
            url = redact_url(self.settings.urls)
            return EngineUnavailableError(f"OpenSearch unreachable at {url}: {exc}")
        if isinstance(exc, opensearchpy.TransportError):
            info = exc.info if isinstance(exc.info, dict) else {}
            error = info.get("error", {})
            error_type = error.get("type") if isinstance(error, dict) else None
            reason = error.get("reason") if isinstance(error, dict) else exc.error
            root = error.get("root_cause") if isinstance(error, dict) else None
            if not error_type and isinstance(root, list) and root:
                error_type = root[0].get("type")
            if exc.status_code in (401, 403):
                return auth_error(
                    "OpenSearch",
                    self.settings,
                    int(exc.status_code),
                    f"{error_type or exc.error}: {reason}",
                    error_type=error_type,
                    info=info,
                )
            return error_from_status(
                exc.status_code,
                f"OpenSearch: {error_type or exc.error}: {reason}",
                error_type=error_type,
                info=info,
            )
        return exc

    # ----- pure builders -----

    def dense_field(
        self, *, dims: int, similarity: str, quantization: Quantization
    ) -> dict[str, Any]:
        t = load_template("opensearch")
        try:
            space = t["space_type"][similarity]
            method = t["method"][quantization.value]
        except KeyError as exc:
            raise ConfigurationError(
                f"OpenSearch (lucene engine) has no {similarity!r} similarity / "
                f"{quantization.value!r} quantization; choose from {sorted(t['space_type'])} / "
                f"{sorted(t['method'])}"
            ) from exc
        return {**t["dense_field"], "dimension": dims, "method": {**method, "space_type": space}}

    def sparse_field(self) -> dict[str, Any]:
        field: dict[str, Any] = load_template("opensearch")["sparse_field"]
        return field

    @classmethod
    def read_vector_field(cls, prop: Mapping[str, Any]) -> VectorField | None:
        t = load_template("opensearch")
        kind = prop.get("type")
        if kind == t["sparse_field"]["type"]:
            return VectorField(kind=VectorKind.SPARSE, type=str(kind))
        if kind != t["dense_field"]["type"]:
            return None
        neutral = {name: key for key, name in t["space_type"].items()}
        method = prop.get("method")
        space = str(
            (method.get("space_type") if isinstance(method, Mapping) else None)
            or prop.get("space_type")
            or "l2"  # the k-NN plugin's default
        )
        dims = prop.get("dimension")
        return VectorField(
            kind=VectorKind.DENSE,
            type=str(kind),
            dims=dims if isinstance(dims, int) and not isinstance(dims, bool) else None,
            engine_similarity=space,
            similarity=neutral.get(space),
            known_similarities=tuple(neutral),
            element_type=str(prop.get("data_type", "float")),
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
        clause: dict[str, Any] = {
            "vector": [float(x) for x in vector],
            "k": k,
            "method_parameters": {"ef_search": max(num_candidates, k)},
        }
        if filter:
            clause["filter"] = dict(filter)
        return {"query": {"knn": {field: clause}}, "size": k if size is None else size}

    def sparse_clause(self, *, field: str, token: str, weight: float) -> dict[str, Any]:
        return {"rank_feature": {"field": f"{field}.{token}", "linear": {}, "boost": weight}}

    def sparse_source_value(self, weights: Mapping[str, float]) -> dict[str, float]:
        return dict(weights)

    # ----- I/O -----

    def health(self, *, timeout_s: float = 5.0) -> dict[str, Any]:
        response = self.call(
            lambda: self.client.cluster.health(params={"request_timeout": timeout_s}), retry=False
        )
        return dict(response)

    def analyze(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.call(lambda: self.client.indices.analyze(body=dict(body))))

    def probe(self) -> Capabilities:
        nodes = self.call(lambda: self.client.nodes.info(metric="plugins"))
        infos = list(nodes["nodes"].values())
        version = infos[0]["version"] if infos else "unknown"
        plugins = sorted({p["name"] for info in infos for p in info.get("plugins", [])})
        modules = sorted({m["name"] for info in infos for m in info.get("modules", [])})
        has_knn = "opensearch-knn" in plugins
        has_features = "mapper-extras" in modules
        return Capabilities(
            engine=self.engine,
            version=version,
            dense_vectors=has_knn,
            sparse_vectors=has_features,
            quantizations=(Quantization.NONE, Quantization.INT8) if has_knn else (),
            nodes=len(infos),
            details={"plugins": plugins, "modules": modules},
        )

    def create_index(self, name: str, body: Mapping[str, Any]) -> None:
        self.call(lambda: self.client.indices.create(index=name, body=dict(body)))

    def delete_index(self, name: str, *, missing_ok: bool = True) -> None:
        try:
            self.call(lambda: self.client.indices.delete(index=name))
        except IndexNotFoundError:
            if not missing_ok:
                raise

    def index_exists(self, name: str) -> bool:
        return bool(self.call(lambda: self.client.indices.exists(index=name)))

    def get_mapping(self, name: str) -> dict[str, Any]:
        response = self.call(lambda: self.client.indices.get_mapping(index=name))
        if len(response) != 1:
            raise EngineError(f"{name!r} resolves to {len(response)} indices, expected one")
        mapping: dict[str, Any] = next(iter(response.values()))["mappings"]
        return mapping

    def get_settings(self, name: str) -> dict[str, Any]:
        response = self.call(lambda: self.client.indices.get_settings(index=name))
        settings: dict[str, Any] = next(iter(response.values()))["settings"]["index"]
        return settings

    def put_meta(self, name: str, meta: Mapping[str, Any]) -> None:
        self.call(lambda: self.client.indices.put_mapping(index=name, body={"_meta": dict(meta)}))

    def put_properties(self, name: str, properties: Mapping[str, Any]) -> None:
        body = {"properties": dict(properties)}
        self.call(lambda: self.client.indices.put_mapping(index=name, body=body))

    def resolve_alias(self, alias: str) -> list[str]:
        # ``index=alias`` keeps the lookup inside the indices the alias names: without it the
        # security plugin checks ``indices:admin/aliases/get`` on every index of the cluster and
        # refuses a user whose role covers only some (es-neural-*).
        try:
            response = self.call(lambda: self.client.indices.get_alias(index=alias, name=alias))
        except IndexNotFoundError:
            return []
        return sorted(i for i, entry in response.items() if alias in entry.get("aliases", {}))

    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        body = {"actions": [dict(a) for a in actions]}
        self.call(lambda: self.client.indices.update_aliases(body=body))

    def refresh(self, name: str) -> None:
        self.call(lambda: self.client.indices.refresh(index=name))

    def count(self, name: str, query: Mapping[str, Any] | None = None) -> int:
        body = {"query": dict(query)} if query else None
        return int(self.call(lambda: self.client.count(index=name, body=body))["count"])

    def bulk(self, actions: Sequence[BulkAction], *, refresh: bool = False) -> BulkResult:
        if not actions:
            return BulkResult(succeeded=(), failed=())
        operations = self._bulk_operations(actions)
        params = {"refresh": "wait_for"} if refresh else {}
        response = self.call(lambda: self.client.bulk(body=operations, params=params))
        return translate_bulk_items(response)

    def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.call(lambda: self.client.search(index=index, body=dict(body))))

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
        response = self.call(lambda: self.client.msearch(body=searches))
        return [self._msearch_item(item) for item in response["responses"]]

    def _mget(
        self,
        index: str,
        docs: Sequence[tuple[str, str | None]],
        fields: Sequence[str] | None,
    ) -> dict[str, dict[str, Any]]:
        if not docs:
            return {}
        params = {"_source_includes": ",".join(fields)} if fields is not None else {}
        body: dict[str, Any]
        if all(r is None for _, r in docs):
            body = {"ids": [d for d, _ in docs]}
        else:
            body = {"docs": [{"_id": d, "routing": r} if r else {"_id": d} for d, r in docs]}
        response = self.call(lambda: self.client.mget(index=index, body=body, params=params))
        return {d["_id"]: d.get("_source", {}) for d in response["docs"] if d.get("found")}

    def shard_of_routing(self, index: str, routing: str) -> int:
        response = self.call(
            lambda: self.client.search_shards(index=index, params={"routing": routing})
        )
        return int(response["shards"][0][0]["shard"])

    def open_pit(self, index: str, *, keep_alive: str = "5m") -> str:
        response = self.call(
            lambda: self.client.create_pit(index=index, params={"keep_alive": keep_alive})
        )
        return str(response["pit_id"])

    def close_pit(self, pit_id: str) -> None:
        self.call(lambda: self.client.delete_pit(body={"pit_id": [pit_id]}), retry=False)

    def _pit_sort(self) -> list[Any]:
        return [{"_shard_doc": "asc"}]

    def _pit_search(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.call(lambda: self.client.search(body=dict(body))))

    def _vector_source_options(self) -> dict[str, Any]:
        return {}  # vectors are returned (from derived source where enabled)
