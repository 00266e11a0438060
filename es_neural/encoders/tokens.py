"""Sparse term cleaning: the one place that turns model tokens and weights into engine features.

Both engines store SPLADE output as ``token -> weight`` maps (Elasticsearch ``sparse_vector``,
OpenSearch ``rank_features``) and both are picky about the keys and values:

* A dot in a key is read as an object path: OpenSearch's ``rank_features`` silently files
  ``"u.s"`` under an object ``u`` instead of the feature ``u.s``. Empty keys are refused.
* Weights must be finite and strictly positive (Elasticsearch keeps ~9 significant bits; values
  below the smallest normal float32 cannot be stored at all).

:func:`sanitize_token` percent-encodes the few characters that cause trouble (``.``, whitespace,
control and format characters, and a ``%`` that does not already start an escape). It is
idempotent, ``sanitize_token(sanitize_token(t)) == sanitize_token(t)``, so cleaning weights that
were already cleaned (an encoder's output handed to a query builder) changes nothing, and a
query key always equals the key of the same token at index time. :func:`unsanitize_token`
reverses it for every token that does not itself contain a ``%XX`` sequence, which holds for
WordPiece and SentencePiece vocabularies (they split ``%`` off as its own token); a literal
``"%2E"`` token and ``"."`` share the key ``"%2E"`` and are merged. Keys longer than
:data:`MAX_TOKEN_LENGTH` are cut and end in ``%7E`` plus a hash of the whole key (matchable, not
reversible).

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
_HASH_MARK = "%7E"
_HASH_CHARS = 16
_HEX = frozenset("0123456789ABCDEF")
_ESCAPE_RE = re.compile(r"%([0-9A-F]{2})")
_HASHED_RE = re.compile(re.escape(_HASH_MARK) + f"[0-9a-f]{{{_HASH_CHARS}}}$")
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _needs_escape(char: str) -> bool:
    return char == "." or char.isspace() or unicodedata.category(char) in _ESCAPED_CATEGORIES


def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def _starts_escape(text: str, pos: int) -> bool:
    """Whether ``text[pos]`` is a ``%`` followed by two upper-case hex digits."""
    return pos + 2 < len(text) and text[pos + 1] in _HEX and text[pos + 2] in _HEX


def sanitize_token(token: str) -> str:
    """The engine key of a model token: dot-free, whitespace-free, bounded length, idempotent.

    ``"."`` becomes ``"%2E"``; whitespace, control and format characters become the ``%XX``
    escapes of their UTF-8 bytes; a ``%`` becomes ``"%25"`` unless it already starts a ``%XX``
    escape; every other character is kept (``"##ing"`` stays ``"##ing"``). The empty token gives
    the empty key, which :func:`clean_weights` drops. A key longer than :data:`MAX_TOKEN_LENGTH`
    is cut and suffixed with ``%7E`` and a hash of the whole key, so it stays distinct.
    """
    if token.isprintable() and not any(c in token for c in " %."):
        key = token  # fast path: nothing to escape (isprintable is False for Cc, Cf, Cs, Z*)
    else:
        parts = []
        for pos, char in enumerate(token):
            if char == "%":
                parts.append("%" if _starts_escape(token, pos) else "%25")
            elif _needs_escape(char):
                parts.append(_escape(char))
            else:
                parts.append(char)
        key = "".join(parts)
    if len(key) <= MAX_TOKEN_LENGTH:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    prefix = key[: MAX_TOKEN_LENGTH - len(_HASH_MARK) - _HASH_CHARS]
    # Never end the prefix inside an escape: a dangling "%" or "%X" would be re-escaped later.
    tail = prefix[-2:]
    if tail.endswith("%"):
        prefix = prefix[:-1]
    elif tail.startswith("%"):
        prefix = prefix[:-2]
    return prefix + _HASH_MARK + digest


def unsanitize_token(key: str) -> str:
    """The model token of a key made by :func:`sanitize_token` (``%XX`` escapes decoded).

    Raises :class:`ValueError` for a key shortened by hashing (it cannot be reversed).
    """
    if len(key) >= MAX_TOKEN_LENGTH - 2 and _HASHED_RE.search(key):
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
