"""Exact, in-memory BM25 for offline work (hard-negative mining, leave-one-domain-out evaluation).

The engines score BM25 themselves; this module exists so that the training tools can rank a pool
of passages the way a cluster would without one (on a GPU machine that has no engine, say).

Analysis follows Lucene's ``english`` analyzer closely, not exactly:

* tokens are maximal runs of word characters, apostrophes inside a word kept (``don't``), which
  approximates the standard tokenizer (UAX #29) on ordinary prose;
* a trailing possessive ``'s`` is removed (``EnglishPossessiveFilter``), then lower-casing;
* Lucene's English stop set (``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``, 33 words) is removed;
* tokens are stemmed with the Porter algorithm as Martin Porter's reference C implementation has
  it (Lucene's ``PorterStemmer``: the ``bli -> ble`` and ``logi -> log`` departures included).

Scoring is Lucene's ``BM25Similarity`` (k1 = 1.2, b = 0.75) with exact document lengths (Lucene
quantises them into one byte, which can reorder near-ties):
``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))`` and
``score(q, d) = sum over query tokens t of idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))``
(a query token given twice counts twice, as two clauses of a Lucene ``BooleanQuery`` do).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from es_neural.errors import InvalidInputError

__all__ = [
    "BM25",
    "ENGLISH_STOP_WORDS",
    "analyze",
    "porter_stem",
    "top_k_rows",
]

#: Lucene's ``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``.
_STOP = "a an and are as at be but by for if in into is it no not of on or such that the their"
ENGLISH_STOP_WORDS: Final = frozenset(
    (_STOP + " then there these they this to was will with").split()
)

_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*")
_POSSESSIVE = re.compile(r"['\u2019][sS]$")


# Porter stemmer ===================================================================================


class _Porter:
    """Martin Porter's stemmer as in his reference C version (and Lucene's ``PorterStemmer``)."""

    __slots__ = ("b", "j", "k")

    def __init__(self, word: str) -> None:
        self.b = list(word)
        self.k = len(word) - 1
        self.j = 0

    def cons(self, i: int) -> bool:
        ch = self.b[i]
        if ch in "aeiou":
            return False
        if ch == "y":
            return True if i == 0 else not self.cons(i - 1)
        return True

    def m(self) -> int:
        """Number of consonant-vowel sequences in ``b[0..j]``."""
        n = 0
        i = 0
        j = self.j
        while True:
            if i > j:
                return n
            if not self.cons(i):
                break
            i += 1
        i += 1
        while True:
            while True:
                if i > j:
                    return n
                if self.cons(i):
                    break
                i += 1
            i += 1
            n += 1
            while True:
                if i > j:
                    return n
                if not self.cons(i):
                    break
                i += 1
            i += 1

    def vowel_in_stem(self) -> bool:
        return any(not self.cons(i) for i in range(self.j + 1))

    def double_c(self, j: int) -> bool:
        return j >= 1 and self.b[j] == self.b[j - 1] and self.cons(j)

    def cvc(self, i: int) -> bool:
        if i < 2 or not self.cons(i) or self.cons(i - 1) or not self.cons(i - 2):
            return False
        return self.b[i] not in "wxy"

    def ends(self, s: str) -> bool:
        n = len(s)
        if n > self.k + 1 or "".join(self.b[self.k - n + 1 : self.k + 1]) != s:
            return False
        self.j = self.k - n
        return True

    def set_to(self, s: str) -> None:
        self.b[self.j + 1 : self.k + 1] = list(s)
        self.k = self.j + len(s)

    def r(self, s: str) -> None:
        if self.m() > 0:
            self.set_to(s)

    def step1ab(self) -> None:
        b = self.b
        if b[self.k] == "s":
            if self.ends("sses"):
                self.k -= 2
            elif self.ends("ies"):
                self.set_to("i")
            elif b[self.k - 1] != "s":
                self.k -= 1
        if self.ends("eed"):
            if self.m() > 0:
                self.k -= 1
        elif (self.ends("ed") or self.ends("ing")) and self.vowel_in_stem():
            self.k = self.j
            if self.ends("at"):
                self.set_to("ate")
            elif self.ends("bl"):
                self.set_to("ble")
            elif self.ends("iz"):
                self.set_to("ize")
            elif self.double_c(self.k):
                self.k -= 1
                if self.b[self.k] in "lsz":
                    self.k += 1
            elif self.m() == 1 and self.cvc(self.k):
                self.set_to("e")

    def step1c(self) -> None:
        if self.ends("y") and self.vowel_in_stem():
            self.b[self.k] = "i"

    def _rules(self, rules: Sequence[tuple[str, str]]) -> None:
        for suffix, replacement in rules:
            if self.ends(suffix):
                self.r(replacement)
                return

    def step2(self) -> None:
        if self.k < 1:
            return
        self._rules(_STEP2.get(self.b[self.k - 1], ()))

    def step3(self) -> None:
        self._rules(_STEP3.get(self.b[self.k], ()))

    def step4(self) -> None:
        if self.k < 1:
            return
        for suffix in _STEP4.get(self.b[self.k - 1], ()):
            if self.ends(suffix):
                if suffix == "ion" and not (self.j >= 0 and self.b[self.j] in "st"):
                    continue
                if self.m() > 1:
                    self.k = self.j
                return

    def step5(self) -> None:
        self.j = self.k
        if self.b[self.k] == "e":
            a = self.m()
            if a > 1 or (a == 1 and not self.cvc(self.k - 1)):
                self.k -= 1
        if self.b[self.k] == "l" and self.double_c(self.k) and self.m() > 1:
            self.k -= 1

    def stem(self) -> str:
        if self.k > 1:
            self.step1ab()
            if self.k > 0:
                self.step1c()
                self.step2()
                self.step3()
                self.step4()
                self.step5()
        return "".join(self.b[: self.k + 1])


_STEP2: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "a": (("ational", "ate"), ("tional", "tion")),
    "c": (("enci", "ence"), ("anci", "ance")),
    "e": (("izer", "ize"),),
    "l": (("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous")),
    "o": (("ization", "ize"), ("ation", "ate"), ("ator", "ate")),
    "s": (("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous")),
    "t": (("aliti", "al"), ("iviti", "ive"), ("biliti", "ble")),
    "g": (("logi", "log"),),
}
_STEP3: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "e": (("icate", "ic"), ("ative", ""), ("alize", "al")),
    "i": (("iciti", "ic"),),
    "l": (("ical", "ic"), ("ful", "")),
    "s": (("ness", ""),),
}
# Step 4: the C version tries these in order and stops at the first suffix that matches
# (``ion`` only after ``s`` or ``t``; when that fails it goes on to ``ou``).
_STEP4: Final[dict[str, tuple[str, ...]]] = {
    "a": ("al",),
    "c": ("ance", "ence"),
    "e": ("er",),
    "i": ("ic",),
    "l": ("able", "ible"),
    "n": ("ant", "ement", "ment", "ent"),
    "o": ("ion", "ou"),
    "s": ("ism",),
    "t": ("ate", "iti"),
    "u": ("ous",),
    "v": ("ive",),
    "z": ("ize",),
}

_STEM_CACHE: dict[str, str] = {}


def porter_stem(word: str) -> str:
    """The Porter stem of a lower-case ``word`` (words of one or two letters are kept)."""
    cached = _STEM_CACHE.get(word)
    if cached is None:
        cached = _Porter(word).stem() if word.isascii() and word.isalpha() else word
        if len(_STEM_CACHE) < 1_000_000:
            _STEM_CACHE[word] = cached
    return cached


def analyze(text: str, *, stop_words: frozenset[str] = ENGLISH_STOP_WORDS) -> list[str]:
    """Tokens of ``text`` as (approximately) Lucene's ``english`` analyzer produces them."""
    out: list[str] = []
    for match in _TOKEN.finditer(text):
        token = _POSSESSIVE.sub("", match.group()).lower()
        if not token or token in stop_words:
            continue
        out.append(porter_stem(token))
    return out


# Exact top-k ======================================================================================


def top_k_rows(
    scores: npt.NDArray[np.floating], k: int, *, positive_only: bool = False
) -> list[list[tuple[int, float]]]:
    """Per row of ``scores``, the ``k`` best ``(column, score)``, best first, ties by column.

    With ``positive_only``, columns scoring ``<= 0`` are left out (BM25 returns only documents
    that match a query term).
    """
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    rows, cols = scores.shape
    out: list[list[tuple[int, float]]] = []
    if cols == 0:
        return [[] for _ in range(rows)]
    kk = min(k, cols)
    if kk < cols:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(cols), (rows, cols))
    for row in range(rows):
        idx = part[row]
        vals = scores[row, idx]
        # a tie at the cut: widen to every column that scores the k-th value (then cut exactly)
        if kk < cols:
            kth = vals.min()
            tied = np.flatnonzero(scores[row] == kth)
            if len(tied) > np.count_nonzero(vals == kth):
                idx = np.union1d(idx[vals > kth], tied)
                vals = scores[row, idx]
        order = np.lexsort((idx, -vals))[:kk]
        hits = [(int(idx[i]), float(vals[i])) for i in order]
        if positive_only:
            hits = [h for h in hits if h[1] > 0.0]
        out.append(hits)
    return out


# BM25 =============================================================================================


class BM25:
    """An exact BM25 index over ``docs`` (kept in memory as one sparse matrix).

    ``search`` returns, per query, the best ``(document position, score)`` pairs; only documents
    sharing a term with the query are returned.
    """

    def __init__(
        self,
        docs: Sequence[str],
        *,
        k1: float = 1.2,
        b: float = 0.75,
        analyzer: Callable[[str], list[str]] = analyze,
    ) -> None:
        from scipy import sparse

        if not (math.isfinite(k1) and k1 >= 0 and 0.0 <= b <= 1.0):
            raise InvalidInputError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self._analyzer = analyzer
        self.vocabulary: dict[str, int] = {}
        indptr = [0]
        indices: list[int] = []
        counts: list[int] = []
        for text in docs:
            tf = Counter(analyzer(text))
            for term, count in tf.items():
                indices.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                counts.append(count)
            indptr.append(len(indices))
        n_docs, n_terms = len(docs), len(self.vocabulary)
        tf_matrix = sparse.csr_matrix(
            (np.asarray(counts, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
            shape=(n_docs, n_terms),
        )
        lengths = np.asarray(tf_matrix.sum(axis=1)).ravel()
        avgdl = float(lengths.mean()) if n_docs and lengths.mean() > 0 else 1.0
        df = np.bincount(tf_matrix.indices, minlength=n_terms).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        row_of = np.repeat(np.arange(n_docs), np.diff(tf_matrix.indptr))
        tf = tf_matrix.data
        norm = k1 * (1.0 - b + b * lengths[row_of] / avgdl)
        weights = idf[tf_matrix.indices] * tf / (tf + norm)
        self._weights = sparse.csr_matrix(
            (weights, tf_matrix.indices, tf_matrix.indptr), shape=(n_docs, n_terms)
        ).T.tocsr()  # terms x docs: a query row times this gives its document scores
        self.n_docs = n_docs
        self.avgdl = avgdl

    def query_matrix(self, queries: Sequence[str]) -> object:
        """Term counts of ``queries`` over the index vocabulary (unknown terms dropped)."""
        from scipy import sparse

        indptr = [0]
        indices: list[int] = []
        counts: list[float] = []
        for text in queries:
            tf = Counter(t for t in self._analyzer(text) if t in self.vocabulary)
            for term, count in tf.items():
                indices.append(self.vocabulary[term])
                counts.append(float(count))
            indptr.append(len(indices))
        return sparse.csr_matrix(
            (np.asarray(counts, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
            shape=(len(queries), len(self.vocabulary)),
        )

    def scores(self, queries: Sequence[str]) -> npt.NDArray[np.float64]:
        """Dense ``[len(queries), n_docs]`` BM25 scores (for small batches)."""
        product = self.query_matrix(queries) @ self._weights  # type: ignore[operator]
        return np.asarray(product.toarray(), dtype=np.float64)

    def search(
        self, queries: Sequence[str], top_k: int, *, chunk: int = 512
    ) -> list[list[tuple[int, float]]]:
        out: list[list[tuple[int, float]]] = []
        for start in range(0, len(queries), chunk):
            batch = list(queries[start : start + chunk])
            out.extend(top_k_rows(self.scores(batch), top_k, positive_only=True))
        return out
