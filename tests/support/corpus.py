"""Small deterministic test corpora (shared by the ingest tests and the cluster-fault scenarios)."""

from __future__ import annotations

import random
from typing import Any

__all__ = ["TOPICS", "WORDS", "make_docs"]

WORDS = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "theta",
    "kappa",
    "lambda",
    "sigma",
    "omega",
    "river",
    "mountain",
    "forest",
    "engine",
    "vector",
    "search",
    "index",
    "query",
    "document",
    "neural",
    "sparse",
    "dense",
    "tree",
    "leaf",
    "model",
)

#: One distinct topic word per document of the tiny training corpora (train tests).
TOPICS = (
    "python", "java", "rust", "cell", "gene", "protein", "cancer", "brain", "heart", "water",
    "energy", "virus", "drug", "dog", "cat", "fox", "mouse", "blood", "light", "health",
    "data", "search",
)  # fmt: skip


def make_docs(n: int, *, seed: int = 0, prefix: str = "d", words: int = 12) -> list[dict[str, Any]]:
    """``n`` small deterministic documents with ids ``<prefix>0 .. <prefix>{n-1}``: a title of
    two words, a text of ``words`` words and a unique ``marker<i>``, a year from 1990 to 2019."""
    rng = random.Random(seed)
    return [
        {
            "id": f"{prefix}{i}",
            "title": f"{rng.choice(WORDS)} {rng.choice(WORDS)}",
            "text": " ".join(rng.choice(WORDS) for _ in range(words)) + f" marker{i}",
            "year": 1990 + i % 30,
        }
        for i in range(n)
    ]
