"""Index lifecycle: versioned indices behind an alias, and the ``_meta`` that binds an index to
the models (and tree) that wrote it.

An es-neural index named ``docs`` is an alias pointing at ``docs-v1`` (then ``docs-v2`` after a
re-embedding, swapped atomically). Its mapping ``_meta`` records the dense and sparse model
fingerprints, the text fields that were encoded and the tree version of the leaf fields; writing or
querying with encoders that do not match is refused with :class:`ModelMismatchError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from es_neural._version import __version__
from es_neural.dialects.base import BaseDialect, FieldNames, IndexSpec
from es_neural.encoders.fingerprint import ModelFingerprint, check_compatible
from es_neural.errors import ConfigurationError, ModelMismatchError
from es_neural.settings import Quantization

__all__ = [
    "IndexInfo",
    "ensure_index",
    "neural_meta",
    "next_version_name",
    "read_index_info",
    "verify_models",
]

DEFAULT_FIELDS = FieldNames()
_VERSIONED = re.compile(r"^(?P<base>.+)-v(?P<n>\d+)$")


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
) -> IndexInfo:
    """The es-neural index ``name``: checked against the encoders if it exists, else created as
    ``name-v1`` behind the alias ``name``."""
    if dialect.resolve_alias(name) or dialect.index_exists(name):
        info = read_index_info(dialect, name)
        verify_models(info, dense=dense, sparse=sparse, tree_version=tree_version)
        if tree_version is not None and info.tree_version is None:
            dialect.put_meta(info.concrete, {**info.meta, "tree": {"version": tree_version}})
            info = read_index_info(dialect, name)
        return info
    if dense.dims is None:
        raise ConfigurationError("the dense model fingerprint has no dimension")
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
    dialect.create_index(concrete, dialect.index_body(spec))
    dialect.swap_alias(name, concrete)
    return read_index_info(dialect, name)
