"""Index lifecycle: versioned indices behind an alias, and the ``_meta`` that binds an index to
the models (and tree) that wrote it.

An es-neural index named ``docs`` is an alias pointing at ``docs-v1`` (then ``docs-v2`` after a
re-embedding, swapped atomically). Its mapping ``_meta`` records the dense and sparse model
fingerprints, the text fields that were encoded and the tree version of the leaf fields; writing or
querying with encoders that do not match is refused with :class:`ModelMismatchError`.

The text fields of a new index get a language analyzer (``settings.analyzer``, ``english`` by
default) when the engine has it, probed with ``_analyze`` (:func:`resolve_text_analyzer`), else
``standard`` with a logged warning; ``_meta.analysis`` records which, and why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from es_neural._version import __version__
from es_neural.dialects.base import BaseDialect, FieldNames, IndexSpec, load_template
from es_neural.encoders.fingerprint import ModelFingerprint, check_compatible
from es_neural.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ModelMismatchError,
    PermissionDeniedError,
)
from es_neural.settings import Quantization

__all__ = [
    "DEFAULT_ANALYZER",
    "IndexInfo",
    "TextAnalysis",
    "ensure_index",
    "neural_meta",
    "next_version_name",
    "read_index_info",
    "resolve_text_analyzer",
    "verify_models",
]

DEFAULT_FIELDS = FieldNames()
#: The analyzer asked for when none is given (``settings.analyzer`` has the same default).
DEFAULT_ANALYZER = "english"
_VERSIONED = re.compile(r"^(?P<base>.+)-v(?P<n>\d+)$")
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TextAnalysis:
    """The analyzer the text fields of a new index get, what was asked for, and why they differ.

    ``definition`` is set for a custom analyzer: it is defined in the index's analysis settings
    under ``analyzer`` (``mappings/common.json``: ``text_analysis.custom_name``).
    """

    analyzer: str
    requested: str | Mapping[str, Any]
    definition: Mapping[str, Any] | None = None
    #: Why ``analyzer`` is the fallback rather than what was requested (``None``: it is not).
    fallback_reason: str | None = None

    def index_settings(self) -> dict[str, Any]:
        """Settings that define the analyzer in the index (``{}`` for a built-in one)."""
        if self.definition is None:
            return {}
        return {"index": {"analysis": {"analyzer": {self.analyzer: dict(self.definition)}}}}

    def to_meta(self) -> dict[str, Any]:
        requested = self.requested if isinstance(self.requested, str) else dict(self.requested)
        return {
            "text_analyzer": self.analyzer,
            "requested": requested,
            "fallback_reason": self.fallback_reason,
        }

    def fallback(self, reason: str) -> TextAnalysis:
        """The same request answered by the template's fallback analyzer (``standard``)."""
        return replace(self, analyzer=_fallback_analyzer(), definition=None, fallback_reason=reason)


def _fallback_analyzer() -> str:
    """The template's text field analyzer (``standard``): every engine has it."""
    return str(load_template("common")["text_field"]["analyzer"])


def _describe(requested: str | Mapping[str, Any]) -> str:
    return repr(requested) if isinstance(requested, str) else f"custom analyzer {dict(requested)}"


def resolve_text_analyzer(
    dialect: BaseDialect, requested: str | Mapping[str, Any] = DEFAULT_ANALYZER
) -> TextAnalysis:
    """The analyzer for the text fields of a new index on ``dialect``'s engine: ``requested``
    (a built-in analyzer's name or a custom analyzer's definition) when the engine has it
    (probed with ``_analyze``), else ``standard`` with the reason (logged as a warning)."""
    if isinstance(requested, str):
        if not requested.strip():
            raise ConfigurationError("settings.analyzer is empty: name an analyzer")
        wanted = TextAnalysis(analyzer=requested, requested=requested)
        if requested == _fallback_analyzer():
            return wanted
    elif isinstance(requested, Mapping):
        wanted = TextAnalysis(
            analyzer=str(load_template("common")["text_analysis"]["custom_name"]),
            requested=requested,
            definition=dict(requested),
        )
    else:
        raise ConfigurationError(
            f"settings.analyzer must be an analyzer's name or a custom analyzer's definition, "
            f"not {type(requested).__name__}"
        )
    try:
        missing = dialect.analyzer_missing(requested)
    except (AuthenticationError, PermissionDeniedError) as exc:
        _LOG.info(
            "cannot probe analyzer %s (%s): index creation decides", _describe(requested), exc
        )
        return wanted
    if missing is None:
        return wanted
    return _fall_back(wanted, dialect, missing)


def _fall_back(wanted: TextAnalysis, dialect: BaseDialect, reason: str) -> TextAnalysis:
    chosen = wanted.fallback(reason)
    _LOG.warning(
        "%s has no analyzer %s (%s): text fields use %r instead (no stemming)",
        dialect.engine.value,
        _describe(wanted.requested),
        reason,
        chosen.analyzer,
    )
    return chosen


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """What es-neural knows about an index from its mapping."""

    name: str
    concrete: str
    meta: Mapping[str, Any]
    properties: Mapping[str, Any]

    @property
    def is_neural(self) -> bool:
        return self.meta.get("created_by") == "es-neural"

    @property
    def text_fields(self) -> tuple[str, ...]:
        return tuple(self.meta.get("text_fields", ()))

    @property
    def tree_version(self) -> str | None:
        tree = self.meta.get("tree")
        return tree.get("version") if isinstance(tree, Mapping) else None

    @property
    def fields(self) -> FieldNames:
        return FieldNames(**self.meta.get("fields", {}))

    @property
    def text_analyzer(self) -> str | None:
        """The analyzer es-neural gave the text fields (``None``: not recorded, older index)."""
        analysis = self.meta.get("analysis")
        return analysis.get("text_analyzer") if isinstance(analysis, Mapping) else None


def neural_meta(
    *,
    dense: ModelFingerprint,
    sparse: ModelFingerprint | None,
    text_fields: Sequence[str],
    fields: FieldNames = DEFAULT_FIELDS,
    tree_version: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "created_by": "es-neural",
        "es_neural_version": __version__,
        "dense": dense.to_meta(),
        "sparse": sparse.to_meta() if sparse is not None else None,
        "text_fields": list(text_fields),
        "fields": {
            "dense": fields.dense,
            "sparse": fields.sparse,
            "leaf_ids": fields.leaf_ids,
            "leaf_ancestors": fields.leaf_ancestors,
            "tree_version": fields.tree_version,
            "content_hash": fields.content_hash,
        },
        "tree": {"version": tree_version} if tree_version else None,
    }
    if extra:
        meta.update(extra)
    return meta


def read_index_info(dialect: BaseDialect, name: str) -> IndexInfo:
    """Mapping and ``_meta`` of the single index behind ``name`` (alias or index)."""
    concrete = dialect.resolve_alias(name)
    if len(concrete) > 1:
        raise ConfigurationError(f"alias {name!r} points at several indices: {concrete}")
    target = concrete[0] if concrete else name
    mapping = dialect.get_mapping(target)
    return IndexInfo(
        name=name,
        concrete=target,
        meta=mapping.get("_meta", {}),
        properties=mapping.get("properties", {}),
    )


def verify_models(
    info: IndexInfo,
    *,
    dense: ModelFingerprint | None = None,
    sparse: ModelFingerprint | None = None,
    tree_version: str | None = None,
) -> None:
    """Refuse encoders (or a tree) that differ from those recorded in the index ``_meta``."""
    if not info.is_neural:
        raise ModelMismatchError(
            f"index {info.concrete!r} was not created by es-neural (no es-neural _meta); "
            "use `es-neural migrate` to make a neural copy of it"
        )
    if dense is not None:
        check_compatible(info.meta.get("dense") or {}, dense)
    if sparse is not None:
        recorded = info.meta.get("sparse")
        if recorded is None:
            raise ModelMismatchError(f"index {info.concrete!r} has no sparse (SPLADE) field data")
        check_compatible(recorded, sparse)
    if tree_version is not None and info.tree_version not in (None, tree_version):
        raise ModelMismatchError(
            f"index {info.concrete!r} holds leaf ids of tree {info.tree_version!r}, "
            f"not {tree_version!r}: re-assign leaves through a new index version (migrate)"
        )


def next_version_name(alias: str, existing: Sequence[str]) -> str:
    """``alias-v<N+1>`` where N is the highest version among ``existing`` (``alias-v1`` first)."""
    highest = 0
    for name in existing:
        m = _VERSIONED.match(name)
        if m and m.group("base") == alias:
            highest = max(highest, int(m.group("n")))
    return f"{alias}-v{highest + 1}"


def ensure_index(
    dialect: BaseDialect,
    name: str,
    *,
    dense: ModelFingerprint,
    sparse: ModelFingerprint | None,
    text_fields: Sequence[str],
    similarity: str,
    quantization: Quantization = Quantization.NONE,
    shards: int = 1,
    replicas: int = 0,
    fields: FieldNames = DEFAULT_FIELDS,
    tree_version: str | None = None,
    analyzer: str | Mapping[str, Any] = DEFAULT_ANALYZER,
) -> IndexInfo:
    """The es-neural index ``name``: checked against the encoders if it exists, else created as
    ``name-v1`` behind the alias ``name``, its text fields analysed by ``analyzer`` where the
    engine has it (see :func:`resolve_text_analyzer`; ``_meta.analysis`` says which)."""
    if dialect.resolve_alias(name) or dialect.index_exists(name):
        info = read_index_info(dialect, name)
        verify_models(info, dense=dense, sparse=sparse, tree_version=tree_version)
        if tree_version is not None and info.tree_version is None:
            dialect.put_meta(info.concrete, {**info.meta, "tree": {"version": tree_version}})
            info = read_index_info(dialect, name)
        return info
    if dense.dims is None:
        raise ConfigurationError("the dense model fingerprint has no dimension")
    analysis = resolve_text_analyzer(dialect, analyzer)
    spec = IndexSpec(
        dims=dense.dims,
        similarity=similarity,
        quantization=quantization,
        text_fields=tuple(text_fields),
        fields=fields,
        shards=shards,
        replicas=replicas,
        meta=neural_meta(
            dense=dense,
            sparse=sparse,
            text_fields=text_fields,
            fields=fields,
            tree_version=tree_version,
        ),
    )
    concrete = next_version_name(name, [])
    _create_with_analysis(dialect, concrete, spec, analysis)
    dialect.swap_alias(name, concrete)
    return read_index_info(dialect, name)


def _with_analysis(spec: IndexSpec, analysis: TextAnalysis) -> IndexSpec:
    return replace(
        spec,
        text_analyzer=analysis.analyzer,
        source_settings={**dict(spec.source_settings), **analysis.index_settings()},
        meta={**dict(spec.meta), "analysis": analysis.to_meta()},
    )


def _create_with_analysis(
    dialect: BaseDialect, concrete: str, spec: IndexSpec, analysis: TextAnalysis
) -> TextAnalysis:
    """Create ``concrete``; when the engine refuses the analyzer at creation (a 400 that the
    fallback analyzer does not get), create it with the fallback and return that."""
    try:
        dialect.create_index(concrete, dialect.index_body(_with_analysis(spec, analysis)))
        return analysis
    except BadRequestError as exc:
        if analysis.analyzer == _fallback_analyzer():
            raise
        chosen = _fall_back(analysis, dialect, f"index creation refused it: {exc}")
        dialect.create_index(concrete, dialect.index_body(_with_analysis(spec, chosen)))
        return chosen
