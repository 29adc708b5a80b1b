"""Words and BM25 for matching plain language against code.

Owns how text becomes search terms (identifiers split at `_` and camelCase, comments and
strings included, lowercased, lightly stemmed, stopwords dropped) and `BM25`, an Okapi BM25
ranking over a fixed list of term lists. The funnel and the retrieval router both rank with it,
so a hint and a question are matched against code the same way.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOPWORD_TEXT = """
    a an and any are as at be been being by can could do does done each for from get gets given
    has have how i if in into is it its itself of on one or our should so some such than
    that the their them then there these they this those to use used uses using was we were
    what when where whether which while who whom why will with would you your return returns
    returned self cls none true false def class function method if else elif not also only
    new"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_UNDOUBLE = frozenset("bdgmnprt")


def stem(word: str) -> str:
    """A light suffix stripper: items/item, flagged/flag, sorting/sort, created/create."""
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    for suffix, minimum in (("ing", 6), ("ed", 5)):
        if word.endswith(suffix) and len(word) >= minimum:
            root = word[: -len(suffix)]
            if len(root) >= 3 and root[-1] == root[-2] and root[-1] in _UNDOUBLE:
                root = root[:-1]
            return _drop_final_e(root)
    if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return _drop_final_e(word)


def _drop_final_e(word: str) -> str:
    return word[:-1] if len(word) > 4 and word.endswith("e") else word


def identifier_parts(identifier: str) -> list[str]:
    """`parse_HTTPHeader2` -> ["parse", "http", "header", "2"] (lowercased, unstemmed)."""
    return [
        part.lower() for piece in identifier.split("_") for part in _CAMEL.findall(piece) if part
    ]


def terms(text: str) -> list[str]:
    """The search terms of `text`, in order, repeats kept (term frequency matters)."""
    found: list[str] = []
    for word in _WORD.findall(text):
        for part in identifier_parts(word):
            if len(part) < 2 or part.isdigit() or part in STOPWORDS:
                continue
            stemmed = stem(part)
            if stemmed not in STOPWORDS:
                found.append(stemmed)
    return found


def code_terms(text: str) -> list[str]:
    """`terms(text)` plus each multi-part identifier whole (`verify_password`, `formatprice`),
    so a question that names code matches that code more than its words elsewhere."""
    found = terms(text)
    for word in _WORD.findall(text):
        if len(identifier_parts(word)) > 1:
            found.append(word.lower().strip("_"))
    return found


class BM25:
    """Okapi BM25 over documents given as term lists; idf from these documents only."""

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.frequencies = [Counter(document) for document in documents]
        self.lengths = [len(document) for document in documents]
        self.average_length = sum(self.lengths) / max(len(self.lengths), 1) or 1.0
        document_frequency: Counter[str] = Counter()
        for frequencies in self.frequencies:
            document_frequency.update(frequencies.keys())
        total = len(documents)
        self.idf = {
            term: math.log(1 + (total - count + 0.5) / (count + 0.5))
            for term, count in document_frequency.items()
        }

    def score(self, query: Iterable[str], document: int) -> float:
        frequencies, length = self.frequencies[document], self.lengths[document]
        norm = self.k1 * (1 - self.b + self.b * length / self.average_length)
        total = 0.0
        for term in set(query):
            tf = frequencies.get(term, 0)
            if tf:
                total += self.idf[term] * tf * (self.k1 + 1) / (tf + norm)
        return total

    def scores(self, query: Iterable[str]) -> list[float]:
        wanted = list(set(query))
        return [self.score(wanted, document) for document in range(len(self.frequencies))]
