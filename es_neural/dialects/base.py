"""What every engine dialect provides, and the engine-neutral parts they share.

Nothing here imports an engine client. The two dialect modules (:mod:`.elasticsearch`,
:mod:`.opensearch`) subclass :class:`BaseDialect`, supply the engine-specific builders and client
calls, and translate the client's exceptions into :mod:`es_neural.errors` in one place
(``_translate``). Retries live here, in exactly one layer (tenacity around each call; the
clients' own transport retries are switched off).
"""

from __future__ import annotations

import contextlib
import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_before_delay,
    wait_exponential_jitter,
)

from es_neural.dialects.bulk import BulkAction, BulkOp, BulkResult
from es_neural.dialects.errors import error_from_status
from es_neural.dialects.fields import FieldTypes, VectorField
from es_neural.errors import (
    BadRequestError,
    ConfigurationError,
    EngineError,
    IndexNotFoundError,
    ShardsUnavailableError,
)
from es_neural.settings import EngineKind, EngineSettings, Quantization
from es_neural.text import DEFAULT_TEXT_FIELDS

__all__ = [
    "BaseDialect",
    "BulkAction",
    "BulkOp",
    "BulkResult",
    "Capabilities",
    "FieldNames",
    "IndexSpec",
    "RetryPolicy",
    "load_template",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FieldNames:
    """Names of the fields es-neural writes. Source fields (title, text, ...) are the user's."""

    dense: str = "embedding"
    sparse: str = "splade"
    leaf_ids: str = "leaf_ids"
    leaf_ancestors: str = "leaf_ancestors"
    tree_version: str = "tree_version"
    content_hash: str = "content_hash"

    def neural(self) -> tuple[str, ...]:
        return (
            self.dense,
            self.sparse,
            self.leaf_ids,
            self.leaf_ancestors,
            self.tree_version,
            self.content_hash,
        )


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """Everything that decides an index's mapping; turned into a body by ``index_body``."""

    dims: int
    similarity: str = "cosine"
    quantization: Quantization = Quantization.NONE
    text_fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS
    fields: FieldNames = FieldNames()
    shards: int = 1
    replicas: int = 0
    #: Stored in the mapping's ``_meta`` (model fingerprints, tree version, es-neural version).
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: Extra source-field mappings kept as they are (used by migration).
    source_properties: Mapping[str, Any] = field(default_factory=dict)
    #: Extra index settings kept as they are (analysis etc. of a migrated index).
    source_settings: Mapping[str, Any] = field(default_factory=dict)
    #: Analyzer of the ``text_fields`` es-neural maps (source mappings keep theirs); ``None``:
    #: the template's (``mappings/common.json``, ``standard``). See
    #: :func:`es_neural.indices.resolve_text_analyzer`.
    text_analyzer: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    engine: EngineKind
    version: str
    dense_vectors: bool
    sparse_vectors: bool
    quantizations: tuple[Quantization, ...]
    nodes: int = 1
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def _template_dir() -> Path:
    packaged = resources.files("es_neural") / "_mappings"
    if packaged.is_dir():
        return Path(str(packaged))
    source_tree = Path(__file__).resolve().parents[2] / "mappings"
    if source_tree.is_dir():
        return source_tree
    raise ConfigurationError(
        "mapping templates not found (expected es_neural/_mappings or mappings/)"
    )


@cache
def _load_template_text(name: str) -> str:
    path = _template_dir() / f"{name}.json"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"mapping template {path} is missing") from exc


def load_template(name: str) -> dict[str, Any]:
    """A fresh copy of ``mappings/<name>.json`` (callers may change what they get)."""
    loaded: dict[str, Any] = json.loads(_load_template_text(name))
    return loaded


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How :meth:`BaseDialect.call` retries transient failures (the one retry layer).

    ``attempts`` bounds the tries; ``deadline_s`` (if set) bounds the total time instead, which is
    what long jobs want: an ingest keeps waiting through an engine restart. ``budget_s`` (if set,
    without ``deadline_s``) bounds the time as well as the tries, whichever ends first: no retry
    starts if its wait would end past the budget (what a request with a deadline wants).
    """

    attempts: int = 4
    initial_wait_s: float = 0.25
    max_wait_s: float = 8.0
    deadline_s: float | None = None
    budget_s: float | None = None


def _require_all_shards(response: Mapping[str, Any], index: str) -> None:
    """Refuse a page that some shards did not answer: a scan must never skip documents quietly.

    Elasticsearch counts such a shard as ``failed``; OpenSearch may only leave it out of
    ``successful`` (a shard with no active copy), so both are checked.
    """
    shards = response.get("_shards") or {}
    total = int(shards.get("total") or 0)
    answered = int(shards.get("successful") or 0) + int(shards.get("skipped") or 0)
    missing = max(int(shards.get("failed") or 0), total - answered)
    if missing > 0:
        raise ShardsUnavailableError(
            f"{missing} of {total} shard(s) of {index!r} did not answer a point-in-time page "
            "(a node left?): read again from a new point in time",
            info=shards.get("failures"),
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, EngineError) and exc.transient


class BaseDialect(ABC):
    """One engine's way of doing things. Construct cheaply; the client is made on first use."""

    engine: EngineKind
    #: The field types this engine has besides the core ones (a class-level catalogue).
    field_types: ClassVar[FieldTypes]

    def __init__(self, settings: EngineSettings, *, retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self._client: Any = None
        self.retry_policy = retry or RetryPolicy(attempts=settings.max_retries + 1)

    def with_retry(self, policy: RetryPolicy) -> BaseDialect:
        """A copy that retries by ``policy``; it shares this dialect's client (and connections)."""
        clone = copy.copy(self)
        clone.retry_policy = policy
        return clone

    # ----- client and error translation (engine-specific) -----

    @abstractmethod
    def _make_client(self) -> Any: ...

    @abstractmethod
    def _translate(self, exc: Exception) -> Exception:
        """The project's error for a client exception (the exception itself if not the client's)."""

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> BaseDialect:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, fn: Callable[[], T], *, retry: bool = True) -> T:
        """Run one client call; translate its errors; retry transient ones with backoff."""
        policy = self.retry_policy

        def once() -> T:
            try:
                return fn()
            except EngineError:
                raise
            except Exception as exc:
                translated = self._translate(exc)
                if translated is exc:
                    raise
                raise translated from exc

        if not retry:
            return once()
        stop: Any
        if policy.deadline_s is not None:
            stop = stop_after_delay(policy.deadline_s)
        elif policy.budget_s is not None:
            stop = stop_after_attempt(policy.attempts) | stop_before_delay(policy.budget_s)
        else:
            stop = stop_after_attempt(policy.attempts)
        retrying = Retrying(
            stop=stop,
            wait=wait_exponential_jitter(initial=policy.initial_wait_s, max=policy.max_wait_s),
            retry=retry_if_exception(_is_transient),
            reraise=True,
        )
        return retrying(once)

    # ----- pure builders (engine-specific) -----

    @abstractmethod
    def dense_field(
        self, *, dims: int, similarity: str, quantization: Quantization
    ) -> dict[str, Any]:
        """Mapping of the dense vector field."""

    @abstractmethod
    def sparse_field(self) -> dict[str, Any]:
        """Mapping of the SPLADE field."""

    @classmethod
    @abstractmethod
    def read_vector_field(cls, prop: Mapping[str, Any]) -> VectorField | None:
        """A field mapping of this engine as a :class:`VectorField` (the reverse of
        ``dense_field`` / ``sparse_field``), or ``None`` when it is not one of the engine's
        dense or sparse vector types."""

    def index_settings(self, spec: IndexSpec) -> dict[str, Any]:
        """The ``settings`` part of an index body: the engine template's, then the spec's."""
        index = dict(load_template(self.engine.value)["settings"]["index"])
        index.update({"number_of_shards": spec.shards, "number_of_replicas": spec.replicas})
        own = spec.source_settings.get("index", {})
        return {**dict(spec.source_settings), "index": {**index, **own}}

    @abstractmethod
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
        """A complete kNN search body, with ``filter`` applied inside the ANN search."""

    @abstractmethod
    def sparse_clause(self, *, field: str, token: str, weight: float) -> dict[str, Any]:
        """One linear feature clause: its score is ``weight * stored_weight(token)``."""

    @abstractmethod
    def sparse_source_value(self, weights: Mapping[str, float]) -> dict[str, float]:
        """The SPLADE field's value in a document (weights already cleaned and sanitised)."""

    # ----- pure builders (shared) -----

    def index_body(self, spec: IndexSpec) -> dict[str, Any]:
        """A complete create-index body for ``spec``, from the templates in ``mappings/``."""
        common = load_template("common")
        properties: dict[str, Any] = dict(spec.source_properties)
        f = spec.fields
        text_field = dict(common["text_field"])
        if spec.text_analyzer is not None:
            text_field["analyzer"] = spec.text_analyzer
        for name in spec.text_fields:
            properties.setdefault(name, dict(text_field))
        neural = {
            f.dense: self.dense_field(
                dims=spec.dims, similarity=spec.similarity, quantization=spec.quantization
            ),
            f.sparse: self.sparse_field(),
            f.leaf_ids: dict(common["keyword_field"]),
            f.leaf_ancestors: dict(common["keyword_field"]),
            f.tree_version: dict(common["keyword_field"]),
            f.content_hash: dict(common["hash_field"]),
        }
        clashes = sorted(set(neural) & set(spec.source_properties))
        if clashes:
            raise BadRequestError(
                f"source mapping already has field(s) {clashes} that es-neural needs for its own "
                "data; choose other names with FieldNames(...)"
            )
        properties.update(neural)
        mappings: dict[str, Any] = {
            "dynamic": common["dynamic"],
            "dynamic_templates": common["dynamic_templates"],
            "_meta": {**common["meta"], **dict(spec.meta)},
            "properties": properties,
        }
        return {"settings": self.index_settings(spec), "mappings": mappings}

    # ----- I/O (engine-specific) -----

    @abstractmethod
    def probe(self) -> Capabilities: ...

    @abstractmethod
    def health(self, *, timeout_s: float = 5.0) -> dict[str, Any]: ...

    @abstractmethod
    def analyze(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /_analyze`` with ``body`` (no index: a global analyzer or an inline chain)."""

    def analyzer_missing(self, analyzer: str | Mapping[str, Any]) -> str | None:
        """Why the engine cannot analyse with ``analyzer`` (a name, or a custom analyzer's
        definition), or ``None`` when it can: probed with ``_analyze``, never assumed. An engine
        that refuses the probe itself (a 400) lacks the analyzer or a component; other errors
        (unreachable, not authorised) propagate."""
        body: dict[str, Any] = {"text": "Running studies"}
        if isinstance(analyzer, str):
            body["analyzer"] = analyzer
        elif analyzer.get("type", "custom") != "custom":
            body["analyzer"] = analyzer["type"]
        else:
            body.update(
                {k: analyzer[k] for k in ("tokenizer", "filter", "char_filter") if k in analyzer}
            )
            body.setdefault("tokenizer", "standard")
        try:
            answer = self.analyze(body)
        except BadRequestError as exc:
            return str(exc)
        if not answer.get("tokens"):
            return f"{self.engine.value} _analyze returned no tokens for {body}"
        return None

    @abstractmethod
    def create_index(self, name: str, body: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def delete_index(self, name: str, *, missing_ok: bool = True) -> None: ...

    @abstractmethod
    def index_exists(self, name: str) -> bool: ...

    @abstractmethod
    def get_mapping(self, name: str) -> dict[str, Any]:
        """``{"properties": ..., "_meta": ...}`` of one concrete index (alias resolved)."""

    @abstractmethod
    def get_settings(self, name: str) -> dict[str, Any]:
        """The ``index`` settings of one concrete index (alias resolved)."""

    @abstractmethod
    def put_meta(self, name: str, meta: Mapping[str, Any]) -> None:
        """Replace the mapping's ``_meta``."""

    @abstractmethod
    def put_properties(self, name: str, properties: Mapping[str, Any]) -> None:
        """Add (or widen) field mappings of an existing index."""

    @abstractmethod
    def resolve_alias(self, alias: str) -> list[str]:
        """Concrete indices behind ``alias`` (empty if no such alias)."""

    @abstractmethod
    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        """Apply alias actions in one atomic request."""

    @abstractmethod
    def refresh(self, name: str) -> None: ...

    @abstractmethod
    def count(self, name: str, query: Mapping[str, Any] | None = None) -> int: ...

    @abstractmethod
    def bulk(self, actions: Sequence[BulkAction], *, refresh: bool = False) -> BulkResult: ...

    @abstractmethod
    def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def msearch(
        self,
        index: str,
        bodies: Sequence[Mapping[str, Any]],
        *,
        routing: Sequence[Sequence[str] | None] | None = None,
    ) -> list[dict[str, Any] | EngineError]:
        """One round trip; each body's response, or the error that body got. ``routing[i]``
        (when given and not ``None``) sends body ``i`` only to the shards of those routing keys."""

    def get_documents(
        self,
        index: str,
        ids: Sequence[str],
        *,
        fields: Sequence[str] | None = None,
        routing: Mapping[str, str | None] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """``_source`` of the given ids that exist.

        ``routing`` is for an index whose documents carry a custom ``_routing`` (a leaf-routed
        index, :mod:`es_neural.tree.shards`), where an id alone does not say the shard: the ids
        it maps to a key are read with that routing (one ``mget``), the others are found by a
        search by ids over every shard. ``None``: a plain ``mget`` (the default routing).
        """
        if not ids:
            return {}
        if routing is None:
            return self._mget(index, [(d, None) for d in ids], fields)
        known = [(d, routing[d]) for d in ids if routing.get(d) is not None]
        out = self._mget(index, known, fields) if known else {}
        rest = [d for d in ids if routing.get(d) is None or d not in out]
        if rest:
            out.update(
                {d: src for d, (src, _) in self.find_by_ids(index, rest, fields=fields).items()}
            )
        return out

    @abstractmethod
    def _mget(
        self,
        index: str,
        docs: Sequence[tuple[str, str | None]],
        fields: Sequence[str] | None,
    ) -> dict[str, dict[str, Any]]:
        """``_source`` of the given ``(id, routing)`` pairs that exist (one ``mget``)."""

    def find_by_ids(
        self, index: str, ids: Sequence[str], *, fields: Sequence[str] | None = None
    ) -> dict[str, tuple[dict[str, Any], str | None]]:
        """``(_source, _routing)`` of the given ids that exist, found by a search by ids over
        every shard (whatever their routing). ``fields=[]`` reads no source."""
        out: dict[str, tuple[dict[str, Any], str | None]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 1000):
            chunk = unique[start : start + 1000]
            source: Any = list(fields) if fields is not None else True
            if fields is not None and not fields:
                source = False
            body = {
                "query": {"ids": {"values": chunk}},
                "size": len(chunk) * 2,  # a document left on two shards comes back twice
                "_source": source,
                "track_total_hits": False,
            }
            for hit in self.search(index, body)["hits"]["hits"]:
                out.setdefault(str(hit["_id"]), (hit.get("_source") or {}, hit.get("_routing")))
        return out

    def dense_vectors(
        self, index: str, ids: Sequence[str], *, field: str
    ) -> dict[str, list[float]]:
        """The dense vector in ``field`` of each given id that has one, by a search by ids over
        every shard (one request per 1,000 ids; whatever the documents' routing), asking for the
        vectors where the engine leaves them out of ``_source`` by default
        (:meth:`_vector_source_options`). An id without the field (a document written without
        text) or gone is left out."""
        out: dict[str, list[float]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 1000):
            chunk = unique[start : start + 1000]
            body = {
                "query": {"ids": {"values": chunk}},
                "size": len(chunk) * 2,  # a document left on two shards comes back twice
                "_source": self._source_param([field], (), True),
                "track_total_hits": False,
            }
            for hit in self.search(index, body)["hits"]["hits"]:
                value = (hit.get("_source") or {}).get(field)
                if isinstance(value, list) and value and all(_is_number(x) for x in value):
                    out.setdefault(str(hit["_id"]), [float(x) for x in value])
        return out

    @abstractmethod
    def shard_of_routing(self, index: str, routing: str) -> int:
        """The primary shard number ``routing`` sends a document of ``index`` to
        (``GET /<index>/_search_shards?routing=<key>``)."""

    @abstractmethod
    def open_pit(self, index: str, *, keep_alive: str = "5m") -> str: ...

    @abstractmethod
    def close_pit(self, pit_id: str) -> None: ...

    @abstractmethod
    def _pit_sort(self) -> list[Any]: ...

    # ----- I/O (shared) -----

    @staticmethod
    def _bulk_operations(actions: Sequence[BulkAction]) -> list[Mapping[str, Any]]:
        """The action/source line pairs of a bulk request (same format on both engines)."""
        operations: list[Mapping[str, Any]] = []
        for action in actions:
            meta = {"_index": action.index, "_id": action.doc_id}
            if action.routing is not None:
                meta["routing"] = action.routing
            operations.append({action.op.value: meta})
            if action.op is not BulkOp.DELETE:
                operations.append(action.source or {})
        return operations

    @staticmethod
    def _msearch_header(index: str, keys: Sequence[str] | None) -> dict[str, Any]:
        """One multi-search header line (the same on both engines)."""
        if keys:
            return {"index": index, "routing": ",".join(keys)}
        return {"index": index}

    def _msearch_item(self, item: Mapping[str, Any]) -> dict[str, Any] | EngineError:
        """One multi-search response item, or the error that search got."""
        if "error" not in item:
            return dict(item)
        error = item["error"]
        error_type = error.get("type") if isinstance(error, dict) else None
        reason = error.get("reason") if isinstance(error, dict) else str(error)
        return error_from_status(
            int(item.get("status", 500)),
            f"{self.engine.value}: {error_type}: {reason}",
            error_type=error_type,
            info=item,
        )

    def swap_alias(self, alias: str, new_index: str) -> list[str]:
        """Point ``alias`` at ``new_index`` only, atomically; returns the indices it left."""
        if not self.index_exists(new_index):
            raise IndexNotFoundError(f"cannot point alias {alias!r} at missing index {new_index!r}")
        old = [name for name in self.resolve_alias(alias) if name != new_index]
        actions: list[dict[str, Any]] = [
            {"remove": {"index": name, "alias": alias}} for name in old
        ]
        actions.append({"add": {"index": new_index, "alias": alias}})
        self.update_aliases(actions)
        return old

    def scan(
        self,
        index: str,
        *,
        query: Mapping[str, Any] | None = None,
        page_size: int = 500,
        source: Sequence[str] | bool = True,
        keep_alive: str = "5m",
        slice_id: int | None = None,
        slice_max: int | None = None,
        source_excludes: Sequence[str] = (),
        include_vectors: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every hit of ``index`` (``_id``, ``_source``) through a point in time + search_after.

        ``source_excludes`` leaves fields out of ``_source``; ``include_vectors`` asks for vector
        fields too where the engine leaves them out by default (Elasticsearch 9.x), which a copy
        of the documents needs.
        """
        source_param = self._source_param(source, source_excludes, include_vectors)
        pit_id = self.open_pit(index, keep_alive=keep_alive)
        try:
            search_after: list[Any] | None = None
            while True:
                body: dict[str, Any] = {
                    "size": page_size,
                    "query": dict(query) if query else {"match_all": {}},
                    "pit": {"id": pit_id, "keep_alive": keep_alive},
                    "sort": self._pit_sort(),
                    "_source": source_param,
                    "track_total_hits": False,
                }
                if slice_max is not None and slice_max > 1:
                    body["slice"] = {"id": slice_id or 0, "max": slice_max}
                if search_after is not None:
                    body["search_after"] = search_after
                response = self._pit_search(body)
                _require_all_shards(response, index)
                pit_id = response.get("pit_id", pit_id)
                hits = response["hits"]["hits"]
                if not hits:
                    return
                yield from hits
                search_after = hits[-1]["sort"]
        finally:
            with contextlib.suppress(EngineError):
                self.close_pit(pit_id)

    @abstractmethod
    def _pit_search(self, body: Mapping[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def _vector_source_options(self) -> dict[str, Any]:
        """What a search body's ``_source`` object needs so that vector fields are returned."""

    def _source_param(
        self, source: Sequence[str] | bool, excludes: Sequence[str], include_vectors: bool
    ) -> Any:
        if source is False:
            return False
        if source is True and not excludes and not include_vectors:
            return True
        spec: dict[str, Any] = {}
        if not isinstance(source, bool):
            spec["includes"] = list(source)
        if excludes:
            spec["excludes"] = list(excludes)
        if include_vectors:
            spec.update(self._vector_source_options())
        return spec or True
