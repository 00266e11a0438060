"""Sparse term cleaning: the one place that turns model tokens and weights into engine features.

Both engines store SPLADE output as ``token -> weight`` maps (Elasticsearch ``sparse_vector``,
OpenSearch ``rank_features``) and both are picky about the keys and values:

* A dot in a key is read as an object path: OpenSearch's ``rank_features`` silently files
  ``"u.s"`` under an object ``u`` instead of the feature ``u.s``. Empty keys are refused.
* Weights must be finite and strictly positive (Elasticsearch keeps ~9 significant bits; values
  below the smallest normal float32 cannot be stored at all).

:func:`sanitize_token` escapes keys reversibly with a percent-encoding of a few characters
(``%`` itself, ``.``, whitespace and control characters), so the mapping is injective: two
different tokens never share a key, and :func:`unsanitize_token` gives the original back.
Because ``%`` is always escaped, a sanitised key never holds a bare ``%`` that is not followed by
two hex digits, which leaves ``%~`` free to mark a key shortened by hashing (tokens longer than
:data:`MAX_TOKEN_LENGTH`; such keys cannot be reversed, only matched).

:func:`clean_weights` applies the key escaping and every value rule, merges keys that collide by
keeping the larger weight, and keeps the ``top_k`` largest weights with a deterministic tie-break
on the key.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
import unicodedata
from collections.abc import Mapping

import numpy as np

__all__ = [
    "MAX_TOKEN_LENGTH",
    "MIN_POSITIVE_WEIGHT",
    "clean_weights",
    "sanitize_token",
    "unsanitize_token",
]

#: Longest key written to an engine (characters). Longer tokens are shortened with a hash suffix.
MAX_TOKEN_LENGTH = 256
#: Smallest weight kept: the smallest normal float32, below which the engines cannot store a value.
MIN_POSITIVE_WEIGHT = float(np.finfo(np.float32).tiny)
_MAX_WEIGHT = float(np.finfo(np.float32).max)
_HASH_MARK = "%~"
_HASH_CHARS = 16
_ESCAPE_RE = re.compile(r"%([0-9A-F]{2})")


def _needs_escape(char: str) -> bool:
    return (
        char in "%."
        or char.isspace()
        or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")
    )


def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def sanitize_token(token: str) -> str:
    """The engine key for a model token: reversible, dot-free, whitespace-free, bounded length.

    ``"."`` becomes ``"%2E"``, ``"%"`` becomes ``"%25"``, whitespace and control characters become
    the ``%XX`` escapes of their UTF-8 bytes; every other character is kept (``"##ing"`` stays
    ``"##ing"``). The empty token gives the empty key, which :func:`clean_weights` drops. A key
    longer than :data:`MAX_TOKEN_LENGTH` is cut and suffixed with ``%~`` and a hash of the whole
    token, so it stays distinct from every other key.
    """
    if token.isprintable() and not any(c in token for c in " %."):
        key = token  # fast path: nothing to escape (isprintable is False for Cc, Cf, Cs, Z*)
    else:
        key = "".join(_escape(c) if _needs_escape(c) else c for c in token)
    if len(key) <= MAX_TOKEN_LENGTH:
        return key
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return key[: MAX_TOKEN_LENGTH - len(_HASH_MARK) - _HASH_CHARS] + _HASH_MARK + digest


def unsanitize_token(key: str) -> str:
    """The model token of a key made by :func:`sanitize_token`.

    Raises :class:`ValueError` for a key shortened by hashing (it cannot be reversed).
    """
    if _HASH_MARK in key:
        raise ValueError(f"key {key[:40]!r}... was shortened by hashing and cannot be reversed")
    raw = bytearray()
    pos = 0
    for match in _ESCAPE_RE.finditer(key):
        raw += key[pos : match.start()].encode("utf-8", "surrogatepass")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += key[pos:].encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "surrogatepass")


def clean_weights(
    weights: Mapping[str, float], *, top_k: int | None, min_weight: float = 0.0
) -> dict[str, float]:
    """Engine-ready features from raw ``token -> weight`` pairs.

    Keys go through :func:`sanitize_token`; empty keys, non-finite weights and weights
    ``<= min_weight`` (and below :data:`MIN_POSITIVE_WEIGHT`, so always ``> 0``) are dropped;
    keys that collide keep the larger weight; weights above the float32 range are capped. At most
    ``top_k`` features are kept (``None``: all), largest first, ties broken by the key. The result
    is ordered by descending weight, then key. ``weights`` is not modified.
    """
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0 or None, got {top_k}")
    if not math.isfinite(min_weight) or min_weight < 0:
        raise ValueError(f"min_weight must be a finite number >= 0, got {min_weight}")
    floor = max(min_weight, 0.0)
    merged: dict[str, float] = {}
    for token, raw in weights.items():
        weight = float(raw)
        if not math.isfinite(weight) or weight <= floor or weight < MIN_POSITIVE_WEIGHT:
            continue
        key = sanitize_token(token)
        if not key:
            continue
        weight = min(weight, _MAX_WEIGHT)
        previous = merged.get(key)
        if previous is None or weight > previous:
            merged[key] = weight
    items = merged.items()
    ordered = (
        sorted(items, key=_rank)
        if top_k is None or top_k >= len(merged)
        else heapq.nsmallest(top_k, items, key=_rank)
    )
    return dict(ordered)


def _rank(item: tuple[str, float]) -> tuple[float, str]:
    return (-item[1], item[0])
