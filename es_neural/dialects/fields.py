"""Field types as the engines name them, and vector fields read back in engine-neutral words.

A dialect writes its vector fields (``dense_field``, ``sparse_field``) and reads them back
(``read_vector_field``, which returns a :class:`VectorField`); what one engine's mapping says is
then written out by the other's builders, which is how a migration moves vectors between engines.
Which types an engine has: :data:`CORE_TYPES` (both engines), a dialect's ``field_types`` (its
own) and :data:`MODULE_TYPES` (those a module provides, checked where the engine reports its
modules).

Pure values: nothing here imports an engine client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CORE_TYPES",
    "DATE_TYPES",
    "MODULE_TYPES",
    "TEXT_TYPES",
    "FieldTypes",
    "VectorField",
    "VectorKind",
]

#: Field types both engines have (module-provided ones are checked separately).
CORE_TYPES = frozenset(
    {
        "text", "keyword", "long", "integer", "short", "byte", "double", "float", "half_float",
        "unsigned_long", "boolean", "binary", "date", "date_nanos", "ip", "object", "nested",
        "geo_point", "geo_shape", "integer_range", "long_range", "float_range", "double_range",
        "date_range", "ip_range", "completion", "alias", "wildcard", "constant_keyword",
    }
)  # fmt: skip
#: Types a module provides: refused when the engine reports its modules and lacks that one.
MODULE_TYPES: Mapping[str, frozenset[str]] = {
    "mapper-extras": frozenset(
        {"rank_feature", "rank_features", "scaled_float", "token_count", "search_as_you_type"}
    ),
    "parent-join": frozenset({"join"}),
    "percolator": frozenset({"percolator"}),
}
#: Types whose values are strings (what can be encoded as a document's text).
TEXT_TYPES = frozenset(
    {"text", "keyword", "match_only_text", "search_as_you_type", "wildcard", "constant_keyword"}
)
DATE_TYPES = frozenset({"date", "date_nanos"})


@dataclass(frozen=True, slots=True)
class FieldTypes:
    """The field types of one engine, besides :data:`CORE_TYPES`."""

    #: Types only this engine has (its vector types included).
    own: frozenset[str]
    #: Vector types whose values the engine may return re-quantised or rebuilt from the index
    #: (Elasticsearch 9.x rehydrates excluded vectors, OpenSearch derives ``knn_vector``
    #: source): compared by presence in a copy, never by checksum.
    lossy_vectors: frozenset[str]
    #: Vector types a copy of the documents must ask for (the lossy ones and ``rank_features``).
    vectors: frozenset[str]

    def has(self, kind: str) -> bool:
        return kind in CORE_TYPES or kind in self.own


class VectorKind(StrEnum):
    DENSE = "dense"
    SPARSE = "sparse"


@dataclass(frozen=True, slots=True)
class VectorField:
    """A vector field of one engine's mapping, in engine-neutral words."""

    kind: VectorKind
    #: The mapping's type (``dense_vector``, ``knn_vector``, ``sparse_vector``, ...).
    type: str
    #: Dense only: the dimension the mapping gives (``None`` when it gives none).
    dims: int | None = None
    #: Dense only: the similarity as the mapping names it (``cosinesimil``, ``l2_norm``, ...).
    engine_similarity: str | None = None
    #: Dense only: the neutral name (``cosine``, ``dot_product``, ``l2_norm``) of
    #: ``engine_similarity``; ``None`` when it has none (``max_inner_product``, ``hamming``).
    similarity: str | None = None
    #: The similarity names this engine's reader knows (for messages).
    known_similarities: tuple[str, ...] = ()
    #: Dense only: the element type (``float``, ``byte``, ``bit``/``binary``).
    element_type: str = "float"

    def untranslatable(self) -> str | None:
        """Why another engine cannot take this dense field as a float vector, or ``None``."""
        if self.kind is VectorKind.SPARSE:
            return None
        if self.dims is None or self.dims <= 0:
            return "has no dimension in its mapping"
        if self.element_type != "float":
            return (
                f"holds {self.element_type!r} elements; only float vectors are translated "
                "between engines"
            )
        if self.similarity is None:
            return (
                f"uses similarity {self.engine_similarity!r}, which has no equivalent among "
                f"{sorted(self.known_similarities)}"
            )
        return None
