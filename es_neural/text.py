"""The text of a document: the one definition used by ingestion, migration, the tree corpus and
the reranker, so the encoders, the tree and the cross-encoder all see the same string.

Rules, per text field in the order given:

* a string is kept, stripped of surrounding whitespace;
* a number (``int`` or ``float``, not ``bool``) is kept as its decimal text (``12`` -> ``"12"``),
  as the engines' ``text`` mapping indexes it for BM25;
* a list (or tuple) is flattened, at any depth, and its items follow these same rules in order;
* ``None``, a missing field, a boolean, an object, and an empty or blank string add nothing.

The kept parts are joined by a newline; a document with none has the text ``""``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_TEXT_FIELDS", "document_text", "is_text_value"]

#: The fields whose text is encoded when nothing else is said.
DEFAULT_TEXT_FIELDS: tuple[str, ...] = ("title", "text")

#: Lists nested deeper than this are not followed (they also end a reference cycle).
_MAX_DEPTH = 100


def _parts(value: Any, out: list[str], depth: int = 0) -> None:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped:
            out.append(stripped)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int | float):
        out.append(str(value))
    elif isinstance(value, list | tuple) and depth < _MAX_DEPTH:
        for item in value:
            _parts(item, out, depth + 1)


def document_text(source: Mapping[str, Any], fields: Sequence[str] = DEFAULT_TEXT_FIELDS) -> str:
    """The text encoded for ``source``: its ``fields``' values by the module's rules, joined by
    a newline (``""`` when there is none)."""
    parts: list[str] = []
    for name in fields:
        _parts(source.get(name), parts)
    return "\n".join(parts)


def is_text_value(value: Any) -> bool:
    """Whether a text field may hold ``value``: ``None``, a string, a number, or a list of
    those (so an object or a boolean in a text field is a mistake worth reporting)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, str):
            continue
        if isinstance(item, bool):
            return False
        if isinstance(item, int | float):
            continue
        if isinstance(item, list | tuple) and depth < _MAX_DEPTH:
            stack.extend((x, depth + 1) for x in item)
            continue
        return False
    return True
