"""The demo corpus: docstrings of the Python standard library (every machine has them; PSF
licence). Built at run time, never committed.

Each document is one module, class or function with a docstring: ``{"id", "title", "text",
"module", "kind"}``. The selection is deterministic for a given Python version.
"""

from __future__ import annotations

import importlib
import inspect
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["DEMO_MODULES", "DEMO_QUERIES", "stdlib_docs", "write_corpus"]

DEMO_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "contextlib", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions", "functools",
    "glob", "gzip", "hashlib", "heapq", "hmac", "html", "http.client", "http.server", "itertools",
    "json", "logging", "math", "mimetypes", "multiprocessing", "operator", "os", "os.path",
    "pathlib", "pickle", "queue", "random", "re", "secrets", "shutil", "socket", "sqlite3",
    "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "time", "timeit", "typing", "unittest", "urllib.parse", "urllib.request",
    "uuid", "warnings", "weakref", "xml.etree.ElementTree", "zipfile", "zlib",
)  # fmt: skip

DEMO_QUERIES = (
    "how do I run a shell command and capture its output",
    "parse command line options",
    "compress data to a smaller file",
    "secure random token for a password reset link",
    "find the longest common subsequence between two lists of lines",
)


def _clean(doc: str) -> str:
    return inspect.cleandoc(doc).strip()


def stdlib_docs(
    modules: tuple[str, ...] = DEMO_MODULES, *, max_docs: int | None = None
) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    count = 0
    for module_name in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(module_name)
        except ImportError:
            continue
        entries: list[tuple[str, str, str]] = []
        if module.__doc__:
            entries.append((module_name, "module", module.__doc__))
        for name, member in sorted(vars(module).items()):
            if name.startswith("_") or getattr(member, "__module__", None) != module.__name__:
                continue
            if not (inspect.isclass(member) or inspect.isfunction(member)):
                continue
            doc = member.__doc__
            if doc:
                entries.append(
                    (
                        f"{module_name}.{name}",
                        "class" if inspect.isclass(member) else "function",
                        doc,
                    )
                )
        for qualname, kind, doc in entries:
            text = _clean(doc)
            if len(text) < 40 or qualname in seen:
                continue
            seen.add(qualname)
            yield {
                "id": qualname,
                "title": qualname,
                "text": text[:4000],
                "module": module_name,
                "kind": kind,
            }
            count += 1
            if max_docs is not None and count >= max_docs:
                return


def write_corpus(path: Path, *, max_docs: int | None = None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for doc in stdlib_docs(max_docs=max_docs):
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            n += 1
    return n
