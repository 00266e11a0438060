"""The portable user filter: a small, closed format translated to the engines' DSL.

Clients never send DSL. They send one of::

    {"term":   {"field": "tenant", "value": "acme"}}
    {"terms":  {"field": "tag", "values": ["a", "b"]}}
    {"range":  {"field": "year", "gte": 2000, "lt": 2010}}
    {"exists": {"field": "title"}}
    {"bool":   {"must": [...], "should": [...], "must_not": [...], "filter": [...]}}

which :func:`compile_filter` validates (field names, value types and sizes, nesting depth, clause
count) and turns into a filter clause that the search applies to *every* leg, so a tenant
filter cannot leak through one of them. The same DSL is valid on both engines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from es_neural.errors import InvalidInputError

__all__ = ["FIELD_NAME", "FilterLimits", "compile_filter", "is_field_name"]

#: A field name a client may write: letters, digits, ``_ . - @``, at most 128 characters (no
#: wildcards, commas, spaces or quotes). Where clients name fields, names starting with ``_``
#: (the engines' metadata fields) are refused as well.
FIELD_NAME = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_.@\-]{0,127}")
_RANGE_OPS = ("gt", "gte", "lt", "lte")


class FilterLimits:
    max_depth = 8
    max_clauses = 256
    max_terms = 1024
    max_string = 1024


def is_field_name(name: object) -> bool:
    """Whether ``name`` is a field name clients may use (the whole string, not a prefix)."""
    return isinstance(name, str) and FIELD_NAME.fullmatch(name) is not None


def _field(body: Mapping[str, Any], path: str, denied: Collection[str]) -> str:
    name = body.get("field")
    if not isinstance(name, str) or not is_field_name(name):
        raise InvalidInputError(f"{path}.field must be a field name (letters, digits, _ . - @)")
    if name in denied or name.startswith("_"):
        raise InvalidInputError(f"{path}.field {name!r} cannot be filtered on")
    return name


def _scalar(value: Any, path: str) -> str | int | float | bool:
    if isinstance(value, bool | int):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
            raise InvalidInputError(f"{path} is out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{path} must be a finite number")
        return value
    if isinstance(value, str):
        if len(value) > FilterLimits.max_string:
            raise InvalidInputError(f"{path} is longer than {FilterLimits.max_string} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"{path} is not valid UTF-8") from exc
        return value
    raise InvalidInputError(f"{path} must be a string, number or boolean")


def _keys(body: Any, path: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInputError(f"{path} must be an object")
    unknown = set(body) - allowed
    if unknown:
        raise InvalidInputError(f"{path} has unknown key(s) {sorted(map(str, unknown))}")
    missing = required - set(body)
    if missing:
        raise InvalidInputError(f"{path} needs {sorted(missing)}")
    return body


class _Compiler:
    def __init__(self, denied: Collection[str]) -> None:
        self.denied = denied
        self.clauses = 0
        self._kinds: dict[str, Callable[[Any, str, int], dict[str, Any]]] = {
            "term": self._term,
            "terms": self._terms,
            "range": self._range,
            "exists": self._exists,
            "bool": self._bool,
        }

    def compile(self, node: Any, path: str, depth: int) -> dict[str, Any]:
        if depth > FilterLimits.max_depth:
            raise InvalidInputError(f"{path}: filters nest deeper than {FilterLimits.max_depth}")
        self.clauses += 1
        if self.clauses > FilterLimits.max_clauses:
            raise InvalidInputError(f"filter has more than {FilterLimits.max_clauses} clauses")
        if not isinstance(node, Mapping) or len(node) != 1:
            raise InvalidInputError(
                f"{path} must be an object with exactly one of {sorted(self._kinds)}"
            )
        ((kind, body),) = node.items()
        handler = self._kinds.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise InvalidInputError(
                f"{path}: unknown filter {kind!r}; use one of {sorted(self._kinds)}"
            )
        return handler(body, f"{path}.{kind}", depth)

    def _term(self, body: Any, path: str, depth: int) -> dict[str, Any]:
        b = _keys(body, path, {"field", "value"}, {"field", "value"})
        return {"term": {_field(b, path, self.denied): _scalar(b["value"], f"{path}.value")}}

    def _terms(self, body: Any, path: str, depth: int) -> dict[str, Any]:
        b = _keys(body, path, {"field", "values"}, {"field", "values"})
        values = b["values"]
        if not isinstance(values, list) or not values:
            raise InvalidInputError(f"{path}.values must be a non-empty list")
        if len(values) > FilterLimits.max_terms:
            raise InvalidInputError(f"{path}.values has more than {FilterLimits.max_terms} values")
        clean = [_scalar(v, f"{path}.values[{i}]") for i, v in enumerate(values)]
        return {"terms": {_field(b, path, self.denied): clean}}

    def _range(self, body: Any, path: str, depth: int) -> dict[str, Any]:
        b = _keys(body, path, {"field", *_RANGE_OPS}, {"field"})
        bounds = {op: _scalar(b[op], f"{path}.{op}") for op in _RANGE_OPS if op in b}
        if not bounds:
            raise InvalidInputError(f"{path} needs at least one of {list(_RANGE_OPS)}")
        if any(isinstance(v, bool) for v in bounds.values()):
            raise InvalidInputError(f"{path}: range bounds must be numbers or strings")
        return {"range": {_field(b, path, self.denied): bounds}}

    def _exists(self, body: Any, path: str, depth: int) -> dict[str, Any]:
        b = _keys(body, path, {"field"}, {"field"})
        return {"exists": {"field": _field(b, path, self.denied)}}

    def _bool(self, body: Any, path: str, depth: int) -> dict[str, Any]:
        occurs = ("must", "should", "must_not", "filter")
        b = _keys(body, path, set(occurs), set())
        out: dict[str, Any] = {}
        for occur in occurs:
            if occur not in b:
                continue
            items = b[occur]
            if not isinstance(items, list):
                raise InvalidInputError(f"{path}.{occur} must be a list")
            out[occur] = [
                self.compile(item, f"{path}.{occur}[{i}]", depth + 1)
                for i, item in enumerate(items)
            ]
        if not any(out.values()):
            raise InvalidInputError(f"{path} needs at least one clause")
        if out.get("should"):
            out["minimum_should_match"] = 1  # in a filter, "should" means "at least one of"
        # Filters never score: must -> filter keeps every leg's scores untouched.
        if "must" in out:
            out["filter"] = out.get("filter", []) + out.pop("must")
        return {"bool": out}


def compile_filter(node: Any, *, denied_fields: Collection[str] = ()) -> dict[str, Any] | None:
    """The engine filter clause for a portable filter (``None`` for no filter)."""
    if node is None:
        return None
    return _Compiler(denied_fields).compile(node, "filter", 0)
