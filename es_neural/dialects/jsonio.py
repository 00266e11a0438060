"""Parsing engine responses: orjson, with the standard library for what orjson refuses.

A search at k = 1,000 hits per leg parses about 220 KB of JSON per multi-search: 4.5 ms with
:func:`json.loads` on this project's 2-core machine, 1.2 ms with orjson
(``bench/search_python.py``).
orjson refuses a few things the standard library reads (integers beyond 64 bits, ``NaN``
literals), which a document's ``_source`` may hold: those responses are parsed again by
:func:`json.loads`, so nothing a client read before is refused now. Requests are written by
each client's own serializer, unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["loads"]


def loads(data: bytes | str) -> Any:
    """The JSON value of ``data``; orjson first, the standard library where orjson refuses."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
