"""Planning a migration: from a source index's mapping and settings to the target index body.

Pure functions over dicts: :func:`build_plan` takes what was read from the engines (the source
mapping, settings and count; the target engine's modules; whether the alias exists) and returns a
:class:`MigrationPlan` with the complete create-index body, the problems that forbid the migration
and the warnings worth reading. Nothing is written while planning; a plan with problems is never
executed.

What the target keeps and adds:

* every source field mapping (``properties``, ``dynamic``, ``dynamic_templates``, date and numeric
  detection, runtime fields on Elasticsearch) and the analysis and similarity settings;
* es-neural's fields (dense vector, SPLADE, leaf ids, tree version, content hash), named by
  :class:`FieldNames` (``field_prefix`` renames them all when the source already uses a name);
* the model fingerprints and tree version in ``_meta`` (with the source it came from).

When the source is itself an es-neural index (a blue/green re-embedding with new models or a new
tree), its neural fields are dropped and recomputed, never copied: one index never mixes
fingerprints. Across engines, vector fields are translated (``dense_vector`` <-> ``knn_vector``,
``sparse_vector`` <-> ``rank_features``): the source engine's dialect reads each vector field
(:meth:`~es_neural.dialects.base.BaseDialect.read_vector_field`) and the target's writes it; types
the other engine lacks (its dialect's ``field_types``) are refused.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from es_neural.dialects import dialect_class
from es_neural.dialects.base import BaseDialect, FieldNames, IndexSpec
from es_neural.dialects.fields import DATE_TYPES, MODULE_TYPES, TEXT_TYPES, VectorField, VectorKind
from es_neural.encoders.fingerprint import ModelFingerprint
from es_neural.errors import ConfigurationError, EsNeuralError, InvalidInputError
from es_neural.indices import neural_meta
from es_neural.settings import EngineKind, Quantization
from es_neural.text import DEFAULT_TEXT_FIELDS

__all__ = [
    "DEFAULT_TEXT_FIELDS",
    "Estimate",
    "MigrationPlan",
    "MigrationPlanError",
    "Models",
    "PlanOptions",
    "SourceIndex",
    "SwitchMode",
    "TargetContext",
    "build_plan",
    "default_alias",
    "prefixed_fields",
]


#: Analysis components in the engines' core, i.e. without the ``analysis-common`` module (the
#: Elasticsearch integ-test distribution): probed with ``_analyze`` on 9.x.
CORE_ANALYSIS: Mapping[str, frozenset[str]] = {
    "analyzer": frozenset({"standard", "simple", "whitespace", "stop", "keyword"}),
    "tokenizer": frozenset({"standard"}),
    "filter": frozenset({"lowercase", "stop", "shingle"}),
    "char_filter": frozenset(),
    "normalizer": frozenset({"lowercase"}),
}
#: Analysis components of modules other than ``analysis-common``, by module name: es-neural's
#: ``english`` analyzer on the managed installs that lack analysis-common
#: (:mod:`es_neural.engines.analysis`).
MODULE_ANALYSIS: Mapping[str, Mapping[str, frozenset[str]]] = {
    "es-neural-english-analysis": {"analyzer": frozenset({"english"})},
}
_ANALYZER_PARAMS = ("analyzer", "search_analyzer", "search_quote_analyzer")
#: Index settings carried over (besides analysis): the rest is per-index state or engine-specific.
_KEPT_SETTINGS = (
    "similarity",
    "max_result_window",
    "max_inner_result_window",
    "max_ngram_diff",
    "max_shingle_diff",
)
_KEPT_MAPPING_LIMITS = ("total_fields", "nested_fields", "nested_objects", "depth")
_KEPT_MAPPING_KEYS = ("date_detection", "numeric_detection", "dynamic_date_formats")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")


class MigrationPlanError(InvalidInputError):
    """The plan has problems: nothing was written."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the migration cannot go ahead:\n{lines}")


class SwitchMode(StrEnum):
    #: The alias exists: it is moved to the new index in one atomic request.
    SWAP = "swap"
    #: The alias is new: created on the source index when the run starts (same engine), so readers
    #: can move to it at once, then swapped to the new index.
    CREATE_ON_SOURCE = "create-on-source"
    #: The alias is new on another cluster (e.g. another engine): created at the switch.
    CREATE = "create"


@dataclass(frozen=True, slots=True)
class SourceIndex:
    """What was read of the source index."""

    engine: EngineKind
    #: The name given: an alias or a concrete index.
    name: str
    concrete: str
    is_alias: bool
    mapping: Mapping[str, Any]
    #: The ``index`` settings (nested, as the engines return them).
    settings: Mapping[str, Any]
    count: int

    @property
    def meta(self) -> Mapping[str, Any]:
        meta = self.mapping.get("_meta") or {}
        return meta if isinstance(meta, Mapping) else {}

    @property
    def is_neural(self) -> bool:
        return self.meta.get("created_by") == "es-neural"

    @property
    def neural_fields(self) -> FieldNames | None:
        if not self.is_neural:
            return None
        return FieldNames(**(self.meta.get("fields") or {}))


@dataclass(frozen=True, slots=True)
class TargetContext:
    """What was read of the target engine."""

    engine: EngineKind
    #: The new index (``<alias>-v<N+1>``).
    index: str
    #: The alias readers use; ``None`` when none was given and none can be chosen.
    alias: str | None
    #: Indices the alias points at now (empty: no such alias).
    alias_targets: tuple[str, ...] = ()
    #: A concrete index already carries the alias's name.
    alias_is_index: bool = False
    #: Modules (and plugins) the engine reports; ``None`` when unknown (then not checked).
    modules: frozenset[str] | None = None
    #: Source and target are the same cluster (then the alias can be created on the source).
    same_cluster: bool = True


@dataclass(frozen=True, slots=True)
class Models:
    """The encoders (and tree) that fill the target."""

    dense: ModelFingerprint
    similarity: str
    sparse: ModelFingerprint | None = None
    tree_version: str | None = None


@dataclass(frozen=True, slots=True)
class PlanOptions:
    #: Fields whose text is encoded; ``None``: the source's own (es-neural source) or title, text.
    text_fields: tuple[str, ...] | None = None
    #: Prepended to every es-neural field name (``neural_`` -> ``neural_embedding``, ...).
    field_prefix: str = ""
    #: A date field writers set on every write: catch-up re-reads what changed since the start.
    timestamp_field: str | None = None
    catch_up_margin_s: float = 60.0
    workers: int = 2
    shards: int | None = None
    replicas: int | None = None
    quantization: Quantization = Quantization.NONE


@dataclass(frozen=True, slots=True)
class Estimate:
    """Encoding speed measured on a sample of the source."""

    sample_docs: int
    seconds: float

    @property
    def docs_per_s(self) -> float:
        return self.sample_docs / self.seconds if self.seconds > 0 else 0.0

    def eta_s(self, docs: int) -> float | None:
        rate = self.docs_per_s
        return docs / rate if rate > 0 else None


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    source: SourceIndex
    target_engine: EngineKind
    target_index: str
    alias: str | None
    mode: SwitchMode
    #: Indices the alias points at before the switch (what ``rollback`` restores).
    replaced: tuple[str, ...]
    body: Mapping[str, Any]
    fields: FieldNames
    text_fields: tuple[str, ...]
    #: Source fields not copied: the neural fields of an es-neural source (recomputed).
    dropped_fields: tuple[str, ...]
    #: Vector fields copied but left out of checksums (their values are not byte-stable).
    checksum_excludes: tuple[str, ...]
    #: The source has vector fields of its own: read them (Elasticsearch 9.x omits them).
    include_vectors: bool
    timestamp_field: str | None
    catch_up_margin_s: float
    workers: int
    #: Source and target are the same cluster.
    same_cluster: bool = True
    #: The target's ``_meta`` (model fingerprints, tree, where it came from).
    meta: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    translated: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def cross_engine(self) -> bool:
        return self.source.engine is not self.target_engine

    def check(self) -> MigrationPlan:
        """This plan, or :class:`MigrationPlanError` listing its problems."""
        if self.problems:
            raise MigrationPlanError(self.problems)
        return self

    def with_index(self, index: str) -> MigrationPlan:
        return replace(self, target_index=index)

    @property
    def target_properties(self) -> Mapping[str, Any]:
        mappings = self.body.get("mappings") or {}
        props = mappings.get("properties") or {}
        return props if isinstance(props, Mapping) else {}

    def describe(self, estimate: Estimate | None = None) -> list[str]:
        """The plan in words, one line each (what the CLI prints for ``--dry-run``)."""
        s = self.source
        kind = f"alias -> {s.concrete}" if s.is_alias else "concrete index"
        lines = [
            f"source:    {s.engine.value} {s.name!r} ({kind}), {s.count:,} documents",
            f"target:    {self.target_engine.value} {self.target_index!r} (new index)",
        ]
        alias = self.alias or "?"
        if self.mode is SwitchMode.SWAP:
            lines.append(
                f"switch:    alias {alias!r}: {', '.join(self.replaced)} -> {self.target_index} "
                f"in one atomic request; {', '.join(self.replaced)} kept for rollback"
            )
        elif self.mode is SwitchMode.CREATE_ON_SOURCE:
            lines.append(
                f"switch:    alias {alias!r} is created on {s.concrete!r} when the run starts "
                f"(readers can move to it at once), then moved to {self.target_index!r} "
                f"atomically; {s.concrete!r} is kept for rollback"
            )
        else:
            lines.append(
                f"switch:    alias {alias!r} is created on {self.target_engine.value} at the "
                f"switch; readers move there from {s.engine.value} (the source is left as it is)"
            )
        props = self.target_properties
        neural = set(self.fields.neural())
        kept = [name for name in props if name not in neural]
        shown = ", ".join(f"{n}:{_type_of(props[n])}" for n in kept[:12])
        more = f" and {len(kept) - 12} more" if len(kept) > 12 else ""
        lines.append(f"keep:      {len(kept)} source field(s): {shown}{more}")
        lines.append(
            "add:       "
            + ", ".join(f"{n} ({_type_of(props[n])})" for n in self.fields.neural() if n in props)
        )
        if self.dropped_fields:
            lines.append(
                f"re-embed:  the source's neural fields {list(self.dropped_fields)} are recomputed"
            )
        for source_type, target_type in sorted(self.translated.items()):
            lines.append(f"translate: {source_type} -> {target_type}")
        lines.append(f"encode:    {', '.join(self.text_fields)}")
        meta = self.meta
        dense = meta.get("dense") or {}
        sparse = meta.get("sparse") or {}
        lines.append(
            f"models:    dense {dense.get('name')}@{str(dense.get('revision'))[:12]} "
            f"({dense.get('dims')} dims)"
            + (
                f", sparse {sparse.get('name')}@{str(sparse.get('revision'))[:12]}"
                if sparse
                else ""
            )
            + (f", tree {meta['tree']['version']}" if meta.get("tree") else "")
        )
        if self.timestamp_field:
            lines.append(
                f"catch-up:  documents with {self.timestamp_field} >= start - "
                f"{self.catch_up_margin_s:.0f} s are re-read; deletions by the diff in verify"
            )
        else:
            lines.append(
                "catch-up:  by a diff pass (no --timestamp-field): every document's checksum is "
                "compared and differences copied or deleted"
            )
        excluded = self.checksum_excludes
        lines.append(
            "verify:    equal counts and equal checksums of the source fields of every document, "
            "else no switch"
            + (f" (vector fields {list(excluded)} by presence)" if excluded else "")
        )
        if estimate is not None:
            eta = estimate.eta_s(s.count)
            lines.append(
                f"estimate:  {estimate.docs_per_s:,.0f} docs/s encoding "
                f"(measured on {estimate.sample_docs} documents)"
                + (f" -> ~{_duration(eta)} for {s.count:,} documents" if eta is not None else "")
            )
        lines.append(f"workers:   {self.workers} (sliced point-in-time reads)")
        lines.extend(f"note:      {n}" for n in self.notes)
        lines.extend(f"warning:   {w}" for w in self.warnings)
        lines.extend(f"PROBLEM:   {p}" for p in self.problems)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": {
                "engine": self.source.engine.value,
                "name": self.source.name,
                "concrete": self.source.concrete,
                "is_alias": self.source.is_alias,
                "count": self.source.count,
            },
            "target": {"engine": self.target_engine.value, "index": self.target_index},
            "alias": self.alias,
            "mode": self.mode.value,
            "replaced": list(self.replaced),
            "text_fields": list(self.text_fields),
            "dropped_fields": list(self.dropped_fields),
            "checksum_excludes": list(self.checksum_excludes),
            "timestamp_field": self.timestamp_field,
            "workers": self.workers,
            "ok": self.ok,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "body": copy.deepcopy(dict(self.body)),
        }


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _type_of(prop: Any) -> str:
    if not isinstance(prop, Mapping):
        return "?"
    return str(prop.get("type") or ("object" if "properties" in prop else "?"))


def prefixed_fields(prefix: str) -> FieldNames:
    """es-neural's field names with ``prefix`` in front of each."""
    base = FieldNames()
    return FieldNames(
        dense=prefix + base.dense,
        sparse=prefix + base.sparse,
        leaf_ids=prefix + base.leaf_ids,
        leaf_ancestors=prefix + base.leaf_ancestors,
        tree_version=prefix + base.tree_version,
        content_hash=prefix + base.content_hash,
    )


def default_alias(
    *, source_name: str, source_is_alias: bool, same_cluster: bool, requested: str | None
) -> str | None:
    """The alias readers will use: the one asked for; else the source's alias; else, on another
    cluster, the source's name; else none (a concrete index cannot share its name with an alias
    on the same cluster, so the user must choose one)."""
    if requested:
        return requested
    if source_is_alias or not same_cluster:
        return source_name
    return None


def _walk(
    properties: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every field mapping with its dotted path (object sub-fields and multi-fields included)."""
    for name, prop in properties.items():
        if not isinstance(prop, Mapping):
            continue
        path = f"{prefix}{name}"
        yield path, prop
        sub = prop.get("properties")
        if isinstance(sub, Mapping):
            yield from _walk(sub, f"{path}.")
        multi = prop.get("fields")
        if isinstance(multi, Mapping):
            yield from _walk(multi, f"{path}.")


def _lookup(properties: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    current: Mapping[str, Any] | None = None
    scope: Any = properties
    for part in path.split("."):
        if not isinstance(scope, Mapping) or not isinstance(scope.get(part), Mapping):
            return None
        current = scope[part]
        scope = current.get("properties") if current is not None else None
    return current


@dataclass
class _Findings:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    translated: dict[str, str] = field(default_factory=dict)


def _translate_properties(
    properties: Mapping[str, Any],
    *,
    reader: type[BaseDialect],
    dialect: BaseDialect,
    modules: frozenset[str] | None,
    found: _Findings,
    prefix: str = "",
) -> dict[str, Any]:
    """The source properties (read by ``reader``, the source engine's dialect) as the target
    engine (``dialect``) takes them: a deep copy."""
    out: dict[str, Any] = {}
    for name, raw in properties.items():
        path = f"{prefix}{name}"
        if not isinstance(raw, Mapping):
            out[name] = copy.deepcopy(raw)
            continue
        prop = copy.deepcopy(dict(raw))
        kind = prop.get("type")
        if isinstance(kind, str):
            prop = _translate_type(path, prop, kind, reader, dialect, modules, found)
        for key in ("properties", "fields"):
            sub = raw.get(key)
            if isinstance(sub, Mapping):
                prop[key] = _translate_properties(
                    sub,
                    reader=reader,
                    dialect=dialect,
                    modules=modules,
                    found=found,
                    prefix=f"{path}.",
                )
        out[name] = prop
    return out


def _translate_type(
    path: str,
    prop: dict[str, Any],
    kind: str,
    reader: type[BaseDialect],
    dialect: BaseDialect,
    modules: frozenset[str] | None,
    found: _Findings,
) -> dict[str, Any]:
    if reader.engine is not dialect.engine:
        vector = reader.read_vector_field(prop)
        if vector is not None:
            return _translate_vector(path, prop, vector, dialect, found)
        if not dialect.field_types.has(kind):
            found.problems.append(
                f"field {path!r} has type {kind!r}, which {dialect.engine.value} does not have; "
                "change or drop it in the source first"
            )
            return prop
    if modules is not None:
        for module, kinds in MODULE_TYPES.items():
            if kind in kinds and module not in modules:
                found.problems.append(
                    f"field {path!r} has type {kind!r}, which needs the {module!r} module; "
                    f"{dialect.engine.value} reports no such module"
                )
    return prop


def _translate_vector(
    path: str,
    prop: Mapping[str, Any],
    vector: VectorField,
    dialect: BaseDialect,
    found: _Findings,
) -> dict[str, Any]:
    """``vector`` (read from the source engine's mapping) written by the target's builders."""
    if vector.kind is VectorKind.SPARSE:
        translated = dialect.sparse_field()
        found.translated[f"{path}: {vector.type}"] = str(translated.get("type"))
        if translated.get("type") == "rank_features":
            found.warnings.append(
                f"{path}: {vector.type} becomes rank_features; tokens holding '.' cannot be "
                "stored as rank_features keys"
            )
        return translated
    problem = vector.untranslatable()
    if problem is not None or vector.dims is None or vector.similarity is None:
        found.problems.append(f"vector field {path!r} {problem}")
        return dict(prop)
    translated = dialect.dense_field(
        dims=vector.dims, similarity=vector.similarity, quantization=Quantization.NONE
    )
    found.translated[f"{path}: {vector.type}"] = str(translated.get("type"))
    if vector.similarity == "dot_product":
        found.warnings.append(
            f"{path}: dot_product similarity; Elasticsearch refuses vectors that are not unit "
            "length"
        )
    return translated


def _check_analysis(
    analysis: Mapping[str, Any],
    properties: Mapping[str, Any],
    target: EngineKind,
    found: _Findings,
    modules: frozenset[str] = frozenset(),
) -> None:
    """Refuse analysis components that the target (without ``analysis-common``) lacks: those of
    its core and of its ``modules`` (:data:`MODULE_ANALYSIS`) are there."""
    available = {
        kind: names.union(*(MODULE_ANALYSIS.get(m, {}).get(kind, frozenset()) for m in modules))
        for kind, names in CORE_ANALYSIS.items()
    }
    defined: dict[str, Mapping[str, Any]] = {}
    for kind in CORE_ANALYSIS:
        section = analysis.get(kind)
        defined[kind] = section if isinstance(section, Mapping) else {}
    hint = (
        f"{target.value} has no 'analysis-common' module (only the standard tokenizer and the "
        "lowercase, stop and shingle filters); simplify the analysis or use a fuller distribution"
    )

    def check_type(kind: str, name: str, definition: Any) -> None:
        if not isinstance(definition, Mapping):
            return
        declared = definition.get("type", "custom" if kind in ("analyzer", "normalizer") else None)
        allowed = available[kind] | ({"custom"} if kind in ("analyzer", "normalizer") else set())
        if declared not in allowed:
            found.problems.append(f"{kind} {name!r} is of type {declared!r}: {hint}")

    def check_ref(kind: str, ref: Any, owner: str) -> None:
        names = ref if isinstance(ref, list) else [ref]
        for item in names:
            if isinstance(item, Mapping):
                check_type(kind, f"(inline in {owner})", item)
            elif (
                isinstance(item, str) and item not in defined[kind] and item not in available[kind]
            ):
                found.problems.append(f"{owner} uses {kind} {item!r}: {hint}")

    for kind in CORE_ANALYSIS:
        for name, definition in defined[kind].items():
            check_type(kind, name, definition)
            if kind in ("analyzer", "normalizer") and isinstance(definition, Mapping):
                owner = f"{kind} {name!r}"
                if "tokenizer" in definition:
                    check_ref("tokenizer", definition["tokenizer"], owner)
                check_ref("filter", definition.get("filter", []), owner)
                check_ref("char_filter", definition.get("char_filter", []), owner)
    for path, prop in _walk(properties):
        for param in _ANALYZER_PARAMS:
            if isinstance(prop.get(param), str):
                check_ref("analyzer", prop[param], f"field {path!r}")
        if isinstance(prop.get("normalizer"), str):
            check_ref("normalizer", prop["normalizer"], f"field {path!r}")


def _kept_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: copy.deepcopy(settings[k]) for k in _KEPT_SETTINGS if k in settings}
    similarity = kept.get("similarity")
    if isinstance(similarity, Mapping):
        # OpenSearch's LegacyBM25 is Elasticsearch's BM25 (same formula; Elasticsearch has no
        # type of that name), and es-neural's OpenSearch template sets it again: not carried.
        own = {k: v for k, v in similarity.items() if not _legacy_bm25(v)}
        if own:
            kept["similarity"] = own
        else:
            kept.pop("similarity")
    if isinstance(settings.get("analysis"), Mapping):
        kept["analysis"] = copy.deepcopy(dict(settings["analysis"]))
    mapping = settings.get("mapping")
    if isinstance(mapping, Mapping):
        limits = {k: copy.deepcopy(mapping[k]) for k in _KEPT_MAPPING_LIMITS if k in mapping}
        if limits:
            kept["mapping"] = limits
    return kept


def _legacy_bm25(definition: Any) -> bool:
    return isinstance(definition, Mapping) and definition.get("type") == "LegacyBM25"


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _is_false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def build_plan(
    source: SourceIndex,
    target: TargetContext,
    models: Models,
    options: PlanOptions,
    dialect: BaseDialect,
) -> MigrationPlan:
    """The migration of ``source`` into ``target.index`` (``dialect`` is the target engine's; only
    its pure builders are used; the source engine's dialect class reads the source mapping)."""
    found = _Findings()
    fields = prefixed_fields(options.field_prefix)
    dropped, kept_props = _reembedding(source, target, models, found)
    text_fields = _check_field_names(source, kept_props, fields, options, found)
    _check_mapping_options(source.mapping, found)
    types = _translate_types(source, kept_props, target, dialect, found)
    mode, replaced = _switch(source, target, found)
    meta = _target_meta(source, target, models, text_fields, fields)
    body = _body(source, models, options, dialect, text_fields, fields, types, meta, found)
    return MigrationPlan(
        source=source,
        target_engine=target.engine,
        target_index=target.index,
        alias=target.alias,
        mode=mode,
        replaced=replaced,
        body=body,
        fields=fields,
        text_fields=tuple(text_fields),
        dropped_fields=dropped,
        checksum_excludes=types.checksum_excludes,
        include_vectors=types.include_vectors,
        timestamp_field=options.timestamp_field,
        catch_up_margin_s=options.catch_up_margin_s,
        workers=options.workers,
        same_cluster=target.same_cluster,
        meta=meta,
        problems=tuple(found.problems),
        warnings=tuple(found.warnings),
        notes=tuple(found.notes),
        translated=dict(found.translated),
    )


# ----- the sections of a plan, in the order build_plan runs them -----


def _reembedding(
    source: SourceIndex, target: TargetContext, models: Models, found: _Findings
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The source's own neural fields (blue/green re-embedding): dropped and recomputed.
    Returns them and the source properties that are kept."""
    properties: Mapping[str, Any] = source.mapping.get("properties") or {}
    source_neural = source.neural_fields
    dropped = tuple(source_neural.neural()) if source_neural else ()
    kept_props = {k: v for k, v in properties.items() if k not in dropped}
    if source.is_neural:
        recorded = source.meta
        same_dense = (recorded.get("dense") or {}) == models.dense.to_meta()
        same_sparse = (recorded.get("sparse") or None) == (
            models.sparse.to_meta() if models.sparse else None
        )
        same_tree = (recorded.get("tree") or {}).get("version") == models.tree_version
        if same_dense and same_sparse and same_tree:
            found.warnings.append(
                "the source was encoded by the same models and tree: the copy re-encodes "
                "to the same vectors"
            )
        found.notes.append(
            f"blue/green: {source.concrete!r} keeps its models; {target.index!r} gets new ones "
            "(one index never mixes fingerprints)"
        )
    return dropped, kept_props


def _check_field_names(
    source: SourceIndex,
    kept_props: Mapping[str, Any],
    fields: FieldNames,
    options: PlanOptions,
    found: _Findings,
) -> tuple[str, ...]:
    """Field names: es-neural's against the source's, the text fields and the timestamp field.
    Returns the text fields to encode."""
    text_fields = (
        options.text_fields
        or (tuple(source.meta.get("text_fields") or ()) if source.is_neural else ())
        or DEFAULT_TEXT_FIELDS
    )
    clashes = sorted(set(fields.neural()) & set(kept_props))
    if clashes:
        suggestion = next(
            p for p in ("neural_", "nn_", "es_neural_", "_neural_")
            if not set(prefixed_fields(p).neural()) & set(kept_props)
        )  # fmt: skip
        found.problems.append(
            f"the source already has field(s) {clashes} "
            f"({', '.join(_type_of(kept_props[c]) for c in clashes)}), which es-neural needs for "
            f"its own data; rename es-neural's fields, e.g. --field-prefix {suggestion} "
            f"(-> {prefixed_fields(suggestion).dense}, {prefixed_fields(suggestion).sparse}, ...)"
        )
    for name in text_fields:
        prop = kept_props.get(name)
        if prop is None:
            found.problems.append(
                f"text field {name!r} is not in the source mapping "
                f"(top-level fields: {sorted(kept_props)[:20]}); choose with --text-fields"
            )
        elif _type_of(prop) not in TEXT_TYPES:
            found.problems.append(
                f"text field {name!r} has type {_type_of(prop)!r}; only string fields can be "
                "encoded"
            )
        if name in fields.neural():
            found.problems.append(f"text field {name!r} is one of es-neural's own field names")
    if options.timestamp_field:
        ts = _lookup(kept_props, options.timestamp_field)
        if ts is None:
            found.problems.append(
                f"timestamp field {options.timestamp_field!r} is not in the source mapping"
            )
        elif _type_of(ts) not in DATE_TYPES:
            found.problems.append(
                f"timestamp field {options.timestamp_field!r} has type {_type_of(ts)!r}, "
                "not date or date_nanos"
            )
    return tuple(text_fields)


def _check_mapping_options(mapping: Mapping[str, Any], found: _Findings) -> None:
    """Mapping-level options that make a source uncopyable."""
    source_opt = mapping.get("_source")
    if isinstance(source_opt, Mapping):
        if _is_false(source_opt.get("enabled")):
            found.problems.append(
                "the source index has _source disabled: its documents cannot be read back"
            )
        if source_opt.get("includes") or source_opt.get("excludes"):
            found.problems.append(
                "the source index stores only part of each document (_source includes/"
                "excludes): the rest cannot be copied"
            )
    routing = mapping.get("_routing")
    if isinstance(routing, Mapping) and routing.get("required") in (True, "true"):
        found.problems.append(
            "the source index requires custom routing; routed documents are not supported"
        )
    if "_data_stream_timestamp" in mapping:
        found.problems.append("the source is a data stream backing index; data streams are not "
                              "migrated (aliases cannot be swapped onto them)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Types:
    """The kept source fields and settings as the target takes them."""

    properties: dict[str, Any]
    settings: dict[str, Any]
    checksum_excludes: tuple[str, ...]
    include_vectors: bool


def _translate_types(
    source: SourceIndex,
    kept_props: Mapping[str, Any],
    target: TargetContext,
    dialect: BaseDialect,
    found: _Findings,
) -> _Types:
    """Types, translations, analysis: the source engine's dialect reads, the target's writes."""
    reader = dialect_class(source.engine)
    properties = _translate_properties(
        kept_props, reader=reader, dialect=dialect, modules=target.modules, found=found
    )
    lossy, vectors = reader.field_types.lossy_vectors, reader.field_types.vectors
    excludes = tuple(path for path, prop in _walk(kept_props) if _type_of(prop) in lossy)
    settings = _kept_settings(source.settings)
    if target.modules is not None and "analysis-common" not in target.modules:
        _check_analysis(
            settings.get("analysis") or {}, properties, target.engine, found, target.modules
        )
    return _Types(
        properties=properties,
        settings=settings,
        checksum_excludes=excludes,
        include_vectors=any(_type_of(p) in vectors for _, p in _walk(kept_props)),
    )


def _switch(
    source: SourceIndex, target: TargetContext, found: _Findings
) -> tuple[SwitchMode, tuple[str, ...]]:
    """Alias and switch: how readers move, and what the alias points at before."""
    cross = not target.same_cluster
    replaced: tuple[str, ...] = ()
    mode = SwitchMode.CREATE
    if target.alias is None:
        found.problems.append(
            f"{source.name!r} is a concrete index, and an alias cannot share a concrete index's "
            "name on the same engine. Choose the alias readers will use with --alias NAME: it is "
            f"created on {source.name!r} when the run starts (move readers to it at any time), "
            f"then swapped to the new index NAME-v1. To keep the name {source.name!r} itself, "
            f"delete {source.name!r} after the switch and add it as a second alias of the new "
            "index (a short gap for readers using the old name)"
        )
    elif target.alias_is_index:
        found.problems.append(
            f"{target.alias!r} is a concrete index on {target.engine.value}: an alias cannot share "
            "its name; choose another with --alias"
        )
    elif not _NAME.match(target.alias):
        found.problems.append(f"{target.alias!r} is not a valid index/alias name")
    elif target.alias_targets:
        mode = SwitchMode.SWAP
        replaced = tuple(target.alias_targets)
        if not cross and source.concrete not in replaced:
            found.warnings.append(
                f"alias {target.alias!r} points at {list(replaced)}, not at the source "
                f"{source.concrete!r}: the switch replaces them"
            )
    elif not cross:
        mode = SwitchMode.CREATE_ON_SOURCE
        replaced = (source.concrete,)
    if not cross and target.index == source.concrete:
        found.problems.append(f"the target index {target.index!r} is the source itself")
    if cross:
        found.notes.append(
            f"cross-cluster: the source on {source.engine.value} is only read; readers move to "
            f"{target.engine.value}. Rollback works on the target only (back to what alias "
            f"{target.alias!r} pointed at there before, if anything)"
        )
    if source.count == 0:
        found.warnings.append("the source index is empty")
    return mode, replaced


def _target_meta(
    source: SourceIndex,
    target: TargetContext,
    models: Models,
    text_fields: Sequence[str],
    fields: FieldNames,
) -> dict[str, Any]:
    """The target's ``_meta``: model fingerprints, tree, and where it came from."""
    return neural_meta(
        dense=models.dense,
        sparse=models.sparse,
        text_fields=text_fields,
        fields=fields,
        tree_version=models.tree_version,
        extra={
            "migration": {
                "source": {
                    "engine": source.engine.value,
                    "name": source.name,
                    "index": source.concrete,
                },
                "alias": target.alias,
                "source_meta": None if source.is_neural else copy.deepcopy(dict(source.meta)),
            }
        },
    )


def _body(
    source: SourceIndex,
    models: Models,
    options: PlanOptions,
    dialect: BaseDialect,
    text_fields: tuple[str, ...],
    fields: FieldNames,
    types: _Types,
    meta: Mapping[str, Any],
    found: _Findings,
) -> dict[str, Any]:
    """The create-index body, built by the target's dialect; empty when the plan has problems."""
    if found.problems:
        return {}
    if models.dense.dims is None:
        raise ConfigurationError("the dense model fingerprint has no dimension")
    spec = IndexSpec(
        dims=models.dense.dims,
        similarity=models.similarity,
        quantization=options.quantization,
        text_fields=text_fields,
        fields=fields,
        shards=options.shards or _as_int(source.settings.get("number_of_shards"), 1),
        replicas=(
            options.replicas
            if options.replicas is not None
            else _as_int(source.settings.get("number_of_replicas"), 0)
        ),
        meta=meta,
        source_properties=types.properties,
        source_settings={"index": types.settings},
    )
    try:
        body = dialect.index_body(spec)
    except (EsNeuralError, ConfigurationError) as exc:
        found.problems.append(str(exc))
        return {}
    _carry_mapping_options(body["mappings"], source.mapping, dialect.engine, found)
    return body


def _carry_mapping_options(
    target: dict[str, Any], source: Mapping[str, Any], engine: EngineKind, found: _Findings
) -> None:
    """Copy the source's dynamic behaviour (and runtime fields where the target has them)."""
    if "dynamic" in source:
        target["dynamic"] = copy.deepcopy(source["dynamic"])
    templates = source.get("dynamic_templates")
    if isinstance(templates, list) and templates:
        names = {next(iter(t)) for t in templates if isinstance(t, Mapping) and t}
        ours = [t for t in target.get("dynamic_templates", []) if next(iter(t)) not in names]
        target["dynamic_templates"] = copy.deepcopy(list(templates)) + ours
    for key in _KEPT_MAPPING_KEYS:
        if key in source:
            target[key] = copy.deepcopy(source[key])
    runtime = source.get("runtime")
    if isinstance(runtime, Mapping) and runtime:
        if engine is EngineKind.ELASTICSEARCH:
            target["runtime"] = copy.deepcopy(dict(runtime))
        else:
            found.warnings.append(
                f"runtime fields {sorted(runtime)} are dropped: OpenSearch has no runtime fields "
                "(their values were computed, no stored data is lost)"
            )
