"""The retrieval router: answers a question from the graph, a lexical index or vectors.

Owns routing (structural questions such as "who calls f?" or "which files depend on x.py?" go
to the repo graph; questions naming code go to the lexical index; plain-language questions go
to MiniLM vectors when the `embeddings` extra is installed, else to the lexical index) and the
BM25 index over definition-sized chunks. Answers list places (path, line) with a score.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import msgspec

from delegation_machine.engine.memory.embeddings import cosine, embed, embeddings_available
from delegation_machine.engine.memory.graph import RepoGraph
from delegation_machine.engine.memory.symbols import SymbolIndex

Route = Literal["graph", "lexical", "vector"]
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SUBJECT = r"[`'\"]?(?P<subject>[\w./:\-]+?)[`'\"]?\s*(\(\))?"
_STRUCTURAL: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("callers", re.compile(rf"\b(who|what)\s+(calls|uses|invokes)\s+{_SUBJECT}\s*\??$", re.I)),
    ("callers", re.compile(rf"\b(callers|call sites|uses|usages)\s+of\s+{_SUBJECT}\s*\??$", re.I)),
    (
        "dependents",
        re.compile(
            rf"\b(which|what)\s+(files|modules)?\s*(depend|depends|rely|relies)\s+on\s+{_SUBJECT}"
            r"\s*\??$",
            re.I,
        ),
    ),
    ("dependents", re.compile(rf"\b(dependents|importers)\s+of\s+{_SUBJECT}\s*\??$", re.I)),
    ("dependents", re.compile(rf"\bwho\s+imports\s+{_SUBJECT}\s*\??$", re.I)),
    (
        "dependencies",
        re.compile(rf"\bwhat\s+does\s+{_SUBJECT}\s+(import|depend on|use)\s*\??$", re.I),
    ),
    ("definition", re.compile(rf"\bwhere\s+is\s+{_SUBJECT}\s+(defined|declared)\s*\??$", re.I)),
    ("definition", re.compile(rf"\b(definition|declaration)\s+of\s+{_SUBJECT}\s*\??$", re.I)),
)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
    ]
)
CHUNK_LINES = 40


class RetrievalHit(msgspec.Struct, frozen=True):
    path: str
    line: int  # 0-based
    score: float
    text: str
    detail: str = ""


class Answer(msgspec.Struct, frozen=True):
    question: str
    route: Route
    kind: str  # "callers", "dependents", "dependencies", "definition", "search"
    subject: str | None
    hits: tuple[RetrievalHit, ...]
    note: str = ""


def _terms(text: str) -> list[str]:
    terms: list[str] = []
    for word in _WORD.findall(text):
        lowered = word.lower()
        if lowered not in _STOPWORDS:
            terms.append(lowered)
        for piece in word.split("_"):
            for part in _CAMEL.findall(piece):
                part = part.lower()
                if len(part) >= 3 and part != lowered and part not in _STOPWORDS:
                    terms.append(part)
    return terms


def _looks_like_code(question: str) -> bool:
    if "`" in question or "(" in question:
        return True
    return any(
        "_" in word or word[1:] != word[1:].lower() or "." in word
        for word in re.findall(r"[\w.]+", question)
        if len(word) > 2 and not word.endswith(".")
    )


class Chunk(msgspec.Struct, frozen=True):
    path: str
    start_line: int
    end_line: int
    title: str
    text: str


class LexicalIndex:
    """BM25 over chunks: each named scope (capped at CHUNK_LINES) plus the module-level rest."""

    def __init__(self, index: SymbolIndex, k1: float = 1.2, b: float = 0.75) -> None:
        self.chunks = list(_chunks(index))
        self.k1, self.b = k1, b
        self._frequencies = [Counter(_terms(chunk.text)) for chunk in self.chunks]
        self._lengths = [sum(f.values()) for f in self._frequencies]
        self._average = sum(self._lengths) / max(len(self._lengths), 1)
        document_frequency: Counter[str] = Counter()
        for frequencies in self._frequencies:
            document_frequency.update(frequencies.keys())
        total = len(self.chunks)
        self._idf = {
            term: math.log(1 + (total - count + 0.5) / (count + 0.5))
            for term, count in document_frequency.items()
        }

    def search(self, query: str, limit: int = 10) -> list[tuple[Chunk, float]]:
        terms = _terms(query)
        scored: list[tuple[Chunk, float]] = []
        for chunk, frequencies, length in zip(
            self.chunks, self._frequencies, self._lengths, strict=True
        ):
            score = 0.0
            for term in terms:
                tf = frequencies.get(term, 0)
                if tf:
                    norm = tf + self.k1 * (1 - self.b + self.b * length / (self._average or 1))
                    score += self._idf.get(term, 0.0) * tf * (self.k1 + 1) / norm
            if score > 0:
                scored.append((chunk, score))
        scored.sort(key=lambda item: (-item[1], item[0].path, item[0].start_line))
        return scored[:limit]


def _chunks(index: SymbolIndex) -> list[Chunk]:
    chunks: list[Chunk] = []
    for path in index.files():
        parsed = index.parsed(path)
        if parsed is None:
            continue
        lines = parsed.text.splitlines()
        covered: set[int] = set()
        for scope in index.scopes(path):
            start = parsed.data.count(b"\n", 0, scope.start_byte)
            end = min(start + CHUNK_LINES, parsed.data.count(b"\n", 0, scope.end_byte) + 1)
            chunks.append(
                Chunk(path, start, end, scope.qualname, f"{path} " + "\n".join(lines[start:end]))
            )
            covered.update(range(start, end))
        rest = [row for row in range(len(lines)) if row not in covered]
        for offset in range(0, len(rest), CHUNK_LINES):
            rows = rest[offset : offset + CHUNK_LINES]
            text = "\n".join(lines[row] for row in rows)
            chunks.append(Chunk(path, rows[0], rows[-1] + 1, path, f"{path} {text}"))
    return chunks


class RetrievalRouter:
    """Routes each question to the graph, the lexical index or vectors, and answers it."""

    def __init__(
        self, index: SymbolIndex, graph: RepoGraph | None = None, *, use_vectors: bool | None = None
    ) -> None:
        self.index = index
        self.graph = graph if graph is not None else RepoGraph(index)
        self.use_vectors = embeddings_available() if use_vectors is None else use_vectors
        self._lexical: LexicalIndex | None = None
        self._lexical_generation = -1
        self._vectors: list[list[float]] | None = None
        self._vectors_generation = -1

    @property
    def lexical(self) -> LexicalIndex:
        """The BM25 index, rebuilt when the symbol index changed since it was built."""
        if self._lexical is None or self._lexical_generation != self.index.generation:
            self._lexical = LexicalIndex(self.index)
            self._lexical_generation = self.index.generation
        return self._lexical

    def route(self, question: str) -> tuple[Route, str, str | None]:
        """(route, question kind, subject) for a question."""
        text = question.strip()
        for kind, pattern in _STRUCTURAL:
            match = pattern.search(text)
            if match:
                return "graph", kind, match.group("subject").rstrip("?.")
        if _looks_like_code(text) or not self.use_vectors:
            return "lexical", "search", None
        return "vector", "search", None

    def ask(self, question: str, limit: int = 10) -> Answer:
        route, kind, subject = self.route(question)
        if route == "graph" and subject is not None:
            hits = self._graph_answer(kind, subject)
            note = "" if hits else f"no {kind} found for {subject!r} in the graph"
            return Answer(question, "graph", kind, subject, tuple(hits[:limit]), note)
        if route == "vector":
            return Answer(question, "vector", "search", None, tuple(self._vector(question, limit)))
        hits = [
            RetrievalHit(chunk.path, chunk.start_line, score, _first_line(chunk), chunk.title)
            for chunk, score in self.lexical.search(question, limit)
        ]
        return Answer(question, "lexical", "search", None, tuple(hits))

    def _graph_answer(self, kind: str, subject: str) -> list[RetrievalHit]:
        name = subject.rsplit(".", 1)[-1] if not self._is_file(subject) else subject
        if kind == "callers":
            return [
                RetrievalHit(
                    use.path,
                    use.occurrence.span.start.line,
                    1.0,
                    self._line(use.path, use.occurrence.span.start.line),
                    f"{use.caller or '<module>'} -> {use.callee.qualname}"
                    + (f" as {use.occurrence.name}" if use.occurrence.name != name else ""),
                )
                for use in self.graph.uses_of(name)
            ]
        if kind in ("dependents", "dependencies"):
            files = self._files_for(subject)
            found: dict[str, None] = {}
            for path in files:
                related = (
                    self.graph.dependents(path)
                    if kind == "dependents"
                    else self.graph.dependencies(path)
                )
                found.update(dict.fromkeys(related))
            if not files and kind == "dependents":
                found.update(dict.fromkeys(use.path for use in self.graph.uses_of(name)))
            return [RetrievalHit(path, 0, 1.0, path, kind) for path in found if path not in files]
        return [
            RetrievalHit(
                d.path,
                d.span.start.line,
                1.0,
                self._line(d.path, d.span.start.line),
                d.symbol_kind or "",
            )
            for d in self.index.definitions(name)
        ]

    def _is_file(self, subject: str) -> bool:
        return subject in set(self.index.files())

    def _files_for(self, subject: str) -> list[str]:
        files = self.index.files()
        if subject in files:
            return [subject]
        module_path = subject.replace(".", "/")
        matches = [
            f
            for f in files
            if f.rsplit(".", 1)[0] in (module_path, f"{module_path}/__init__")
            or f.rsplit(".", 1)[0].endswith("/" + module_path)
        ]
        if matches:
            return matches
        return sorted({d.path for d in self.index.definitions(subject)})

    def _line(self, path: str, line: int) -> str:
        parsed = self.index.parsed(path)
        if parsed is None:
            return ""
        lines = parsed.text.splitlines()
        return lines[line].strip() if 0 <= line < len(lines) else ""

    def _vector(self, question: str, limit: int) -> list[RetrievalHit]:
        """MiniLM cosine between the question and every chunk (chunk vectors cached)."""
        chunks = self.lexical.chunks
        if self._vectors is None or self._vectors_generation != self.index.generation:
            self._vectors = embed([chunk.text[:1000] for chunk in chunks])
            self._vectors_generation = self.index.generation
        [query] = embed([question])
        scores = [cosine(query, vector) for vector in self._vectors]
        ranked = sorted(zip(chunks, scores, strict=True), key=lambda item: -item[1])[:limit]
        return [
            RetrievalHit(chunk.path, chunk.start_line, score, _first_line(chunk), chunk.title)
            for chunk, score in ranked
        ]


def _first_line(chunk: Chunk) -> str:
    body = chunk.text[len(chunk.path) + 1 :]
    return body.splitlines()[0].strip() if body else ""


def answer_lines(answer: Answer) -> Sequence[str]:
    """Plain-text lines for a terminal: route, then one line per hit."""
    lines = [
        f"route: {answer.route} ({answer.kind}{': ' + answer.subject if answer.subject else ''})"
    ]
    if answer.note:
        lines.append(answer.note)
    for hit in answer.hits:
        detail = f"  [{hit.detail}]" if hit.detail else ""
        lines.append(f"{hit.path}:{hit.line + 1}: {hit.text}{detail}")
    return lines
