"""The retrieval router: answers a question from the graph, BM25, or BM25 with vectors.

Owns routing and subject resolution. A structural question in words ("what depends on the
storage module", "who calls verify password", "what does checkout import", "where is Cart
defined") goes to the repo graph, its subject resolved from the words to files or symbols of
the index (`storage` -> `app/storage.py`, `verify password` -> `verify_password`). Other
questions are ranked over definition-sized chunks: by BM25 when they name code or when the
`embeddings` extra is absent, by BM25 plus MiniLM similarity ("hybrid") when it is present.
A structural question whose subject words match no file or symbol is ranked instead, and the
answer's note says so: never silently. Answers list places (path, line).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import msgspec

from delegation_machine.engine.memory.embeddings import cosine, embed, embeddings_available
from delegation_machine.engine.memory.graph import RepoGraph, python_module_name
from delegation_machine.engine.memory.lexical import BM25, code_terms, identifier_parts
from delegation_machine.engine.memory.symbols import SymbolIndex

Route = Literal["graph", "lexical", "hybrid", "vector"]
Kind = Literal["callers", "dependents", "dependencies", "definition", "search"]
_WHO = r"(?:who|what|which(?:\s+\w+){0,2})"
_S = r"(?P<subject>.+?)"
_END = r"\s*[?.!]*\s*$"
_STRUCTURAL_SOURCES: tuple[tuple[Kind, str], ...] = (
    ("definition", rf"^\s*where\s+(?:is|are)\s+{_S}\s+(?:defined|declared|implemented){_END}"),
    ("definition", rf"^\s*(?:the\s+)?(?:definition|declaration)s?\s+of\s+{_S}{_END}"),
    ("dependents", rf"^\s*{_WHO}\s+(?:depends?|relies|rely)\s+on\s+{_S}{_END}"),
    ("dependents", rf"^\s*{_WHO}\s+imports?\s+{_S}{_END}"),
    ("dependents", rf"^\s*(?:the\s+)?(?:dependents|importers)\s+of\s+{_S}{_END}"),
    ("dependents", rf"^\s*where\s+(?:is|are)\s+{_S}\s+imported{_END}"),
    (
        "dependencies",
        rf"^\s*what\s+(?:does|do)\s+{_S}\s+(?:import|depend\s+on|rely\s+on|need|use){_END}",
    ),
    ("dependencies", rf"^\s*(?:the\s+)?(?:dependencies|imports)\s+of\s+{_S}{_END}"),
    ("dependencies", rf"^\s*what\s+is\s+imported\s+(?:by|in)\s+{_S}{_END}"),
    ("callers", rf"^\s*{_WHO}\s+(?:calls?|invokes?|uses?|references?)\s+{_S}{_END}"),
    (
        "callers",
        rf"^\s*(?:the\s+)?(?:callers|call\s+sites|usages|uses|references)\s+(?:of|to|for)"
        rf"\s+{_S}{_END}",
    ),
    ("callers", rf"^\s*where\s+(?:is|are)\s+{_S}\s+(?:called|used|invoked){_END}"),
)
_STRUCTURAL: tuple[tuple[Kind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in _STRUCTURAL_SOURCES
)
_ARTICLES = frozenset({"the", "a", "an", "this", "that", "our", "my"})
_FILE_NOUNS = frozenset({"module", "modules", "file", "files", "package", "script"})
_SYMBOL_NOUNS = frozenset(
    {"function", "functions", "method", "methods", "class", "classes", "helper", "constant"}
)
CHUNK_LINES = 40
VECTOR_WEIGHT = 1.0  # MiniLM cosine (normalised) next to BM25 (normalised) in a hybrid rank


class RetrievalHit(msgspec.Struct, frozen=True):
    path: str
    line: int  # 0-based
    score: float
    text: str
    detail: str = ""


class Answer(msgspec.Struct, frozen=True):
    question: str
    route: Route
    kind: Kind
    subject: str | None  # what the subject words resolved to (paths or a symbol name)
    hits: tuple[RetrievalHit, ...]
    note: str = ""


class Subject(msgspec.Struct, frozen=True):
    """What a question's subject words name: files, a symbol name, or nothing found."""

    phrase: str
    files: tuple[str, ...] = ()
    symbol: str | None = None
    wants: Literal["file", "symbol", "any"] = "any"


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

    def __init__(self, index: SymbolIndex) -> None:
        self.chunks = list(_chunks(index))
        self._bm25 = BM25([code_terms(chunk.text) for chunk in self.chunks])

    def scores(self, query: str) -> list[float]:
        return self._bm25.scores(code_terms(query))

    def search(self, query: str, limit: int = 10) -> list[tuple[Chunk, float]]:
        scored = [
            (chunk, score)
            for chunk, score in zip(self.chunks, self.scores(query), strict=True)
            if score > 0
        ]
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


def structural_kind(question: str) -> tuple[Kind, str] | None:
    """(kind, subject phrase) when the question asks about structure, else None."""
    for kind, pattern in _STRUCTURAL:
        match = pattern.search(question.strip())
        if match:
            return kind, match.group("subject").strip().strip("`'\"").removesuffix("()")
    return None


class RetrievalRouter:
    """Routes each question to the graph, BM25, or BM25 with vectors, and answers it."""

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

    def route(self, question: str) -> tuple[Route, Kind, str | None]:
        """(route, question kind, subject phrase) for a question."""
        structural = structural_kind(question)
        if structural is not None:
            return "graph", structural[0], structural[1]
        if _looks_like_code(question) or not self.use_vectors:
            return "lexical", "search", None
        return "hybrid", "search", None

    def ask(self, question: str, limit: int = 10) -> Answer:
        route, kind, phrase = self.route(question)
        if route == "graph" and phrase is not None:
            return self._graph_answer(question, kind, phrase, limit)
        return self._ranked_answer(question, limit)

    def _ranked_answer(self, question: str, limit: int) -> Answer:
        if self.use_vectors and not _looks_like_code(question):
            return Answer(question, "hybrid", "search", None, tuple(self.hybrid(question, limit)))
        return Answer(
            question, "lexical", "search", None, tuple(self.lexical_hits(question, limit))
        )

    # --- subjects -------------------------------------------------------------------------

    def resolve(self, phrase: str) -> Subject:
        """The files and the symbol a subject phrase names, tried by exact text, then words."""
        cleaned = phrase.strip().strip("`'\"").removesuffix("()").strip("`'\"")
        kept = [w.strip("`'\"").removesuffix("()") for w in re.findall(r"[\w./:\-]+", cleaned)]
        while kept and kept[0].lower() in _ARTICLES:
            kept.pop(0)
        if not kept:
            return Subject(phrase)
        whole = Subject(phrase, tuple(self._files_named(kept)), self._symbol_named(kept))
        # "the storage module", "verify password function": a noun at either end says what
        # kind of thing the rest names; the words are tried whole first ("method type not
        # registered error" names MethodTypeNotRegisteredError).
        for end in (-1, 0):
            if len(kept) > 1 and kept[end].lower() in _FILE_NOUNS | _SYMBOL_NOUNS:
                noun = kept[end].lower()
                rest = kept[:-1] if end == -1 else kept[1:]
                wants: Literal["file", "symbol"] = "file" if noun in _FILE_NOUNS else "symbol"
                if whole.files or whole.symbol:
                    return msgspec.structs.replace(whole, wants=wants)
                files = tuple(self._files_named(rest))
                return Subject(phrase, files, self._symbol_named(rest), wants)
        return whole

    def _files_named(self, words: list[str]) -> list[str]:
        files = self.index.files()
        if len(words) == 1 and words[0] in files:
            return [words[0]]
        if len(words) == 1 and ("/" in words[0] or "." in words[0]):
            dotted = words[0].removesuffix(".py").replace("/", ".")
            found = [
                f
                for f in files
                if (module := python_module_name(f)) is not None
                and (module == dotted or module.endswith("." + dotted))
            ]
            if found:
                return sorted(found)
        wanted = {"_".join(w.lower() for w in words), "".join(w.lower() for w in words)}
        found = []
        for f in files:
            stem = f.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            if stem == "__init__":
                stem = f.rsplit("/", 2)[-2] if "/" in f else stem
            if stem.lower().strip("_") in wanted:
                found.append(f)
        return sorted(found)

    def _symbol_named(self, words: list[str]) -> str | None:
        """A defined name spelled by the words: exactly, else by its parts (`verify password`
        -> `verify_password`, `url pattern` -> `URLPattern`); functions and classes first."""
        exact = words[0].rsplit(".", 1)[-1] if len(words) == 1 else None
        wanted = [p for w in words for p in identifier_parts(w.rsplit(".", 1)[-1])]
        candidates = [
            name
            for name in self.index.names()
            if (name == exact or identifier_parts(name) == wanted) and self.index.definitions(name)
        ]
        if not candidates:
            return None
        rank = self._definition_rank
        return max(
            candidates, key=lambda name: (rank(name)[0] > 0, name == exact, *rank(name), name)
        )

    def _definition_rank(self, name: str) -> tuple[int, int]:
        """(callable definitions, all definitions): a class or function beats a local."""
        found = self.index.definitions(name)
        return sum(d.symbol_kind in _CALLABLE for d in found), len(found)

    # --- the graph ------------------------------------------------------------------------

    def _graph_answer(self, question: str, kind: Kind, phrase: str, limit: int) -> Answer:
        subject = self.resolve(phrase)
        use_files = bool(subject.files) and (
            subject.wants == "file" or subject.symbol is None or kind in _FILE_KINDS
        )
        if kind == "callers" and use_files and subject.wants == "file":
            kind = "dependents"  # "what uses the storage module"
        if kind in ("dependents", "dependencies") and use_files:
            hits = self._file_relations(kind, list(subject.files))
            resolved = ", ".join(subject.files)
        elif subject.symbol is not None:
            calls_only = kind == "callers" and bool(re.search(r"\bcall", question, re.I))
            hits = self._symbol_relations(kind, subject.symbol, calls_only=calls_only)
            resolved = subject.symbol
        elif subject.files:
            hits = self._file_relations("dependents", list(subject.files))
            resolved = ", ".join(subject.files)
        else:  # said in the note: the words matched nothing, so they are searched for
            ranked = self._ranked_answer(question, limit)
            note = f"no file or symbol in the index matches {phrase!r}; ranked by {ranked.route}"
            return msgspec.structs.replace(ranked, note=note)
        note = "" if hits else f"no {kind} found for {resolved} in the graph"
        return Answer(question, "graph", kind, resolved, tuple(hits[:limit]), note)

    def _file_relations(self, kind: Kind, files: list[str]) -> list[RetrievalHit]:
        """Related files, those that import (or are imported) first, then by use count."""
        found: dict[str, tuple[bool, float]] = {}
        graph = self.graph.graph
        for path in files:
            related = (
                self.graph.dependents(path)
                if kind == "dependents"
                else self.graph.dependencies(path)
            )
            for other in related:
                edge = graph[other][path] if kind == "dependents" else graph[path][other]
                imports = "imports" in edge.get("kinds", ())
                weight = float(edge.get("weight", 1.0))
                before = found.get(other, (False, 0.0))
                found[other] = (before[0] or imports, before[1] + weight)
        ranked = sorted(
            (p for p in found if p not in files), key=lambda p: (not found[p][0], -found[p][1], p)
        )
        return [
            RetrievalHit(path, 0, 1.0, path, f"{kind}{'' if found[path][0] else ' (uses only)'}")
            for path in ranked
        ]

    def _symbol_relations(
        self, kind: Kind, name: str, *, calls_only: bool = False
    ) -> list[RetrievalHit]:
        if kind == "definition":
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
        uses = self.graph.uses_of(name, calls_only=calls_only)
        if kind in ("dependents", "dependencies"):
            if kind == "dependencies":
                homes = {d.path for d in self.index.definitions(name)}
                return self._file_relations("dependencies", sorted(homes))
            homes = {d.path for d in self.index.definitions(name)}
            paths = dict.fromkeys(use.path for use in uses if use.path not in homes)
            return [RetrievalHit(path, 0, 1.0, path, "dependents") for path in paths]
        return [
            RetrievalHit(
                use.path,
                use.occurrence.span.start.line,
                1.0,
                self._line(use.path, use.occurrence.span.start.line),
                f"{use.caller or '<module>'} -> {use.callee.qualname}"
                + (f" as {use.occurrence.name}" if use.occurrence.name != name else ""),
            )
            for use in uses
        ]

    def _line(self, path: str, line: int) -> str:
        parsed = self.index.parsed(path)
        if parsed is None:
            return ""
        lines = parsed.text.splitlines()
        return lines[line].strip() if 0 <= line < len(lines) else ""

    # --- ranking ----------------------------------------------------------------------------

    def lexical_hits(self, question: str, limit: int = 10) -> list[RetrievalHit]:
        """BM25 only: the lexical route, and the baseline the others are measured against."""
        return [
            RetrievalHit(chunk.path, chunk.start_line, score, _first_line(chunk), chunk.title)
            for chunk, score in self.lexical.search(question, limit)
        ]

    def _chunk_vectors(self) -> list[list[float]]:
        chunks = self.lexical.chunks
        if self._vectors is None or self._vectors_generation != self.index.generation:
            self._vectors = embed([chunk.text[:1000] for chunk in chunks])
            self._vectors_generation = self.index.generation
        return self._vectors

    def vector_hits(self, question: str, limit: int = 10) -> list[RetrievalHit]:
        """MiniLM cosine only (chunk vectors cached until the index changes)."""
        [query] = embed([question])
        scores = [cosine(query, vector) for vector in self._chunk_vectors()]
        return self._ranked(scores, limit)

    def hybrid(self, question: str, limit: int = 10) -> list[RetrievalHit]:
        """BM25 and MiniLM cosine, each normalised to its best chunk, added."""
        [query] = embed([question])
        similarity = [cosine(query, vector) for vector in self._chunk_vectors()]
        lexical = self.lexical.scores(question)
        return self._ranked(
            [
                b + VECTOR_WEIGHT * v
                for b, v in zip(_normalised(lexical), _normalised(similarity), strict=True)
            ],
            limit,
        )

    def _ranked(self, scores: Sequence[float], limit: int) -> list[RetrievalHit]:
        chunks = self.lexical.chunks
        order = sorted(range(len(chunks)), key=lambda n: (-scores[n], chunks[n].path, n))
        return [
            RetrievalHit(
                chunks[n].path, chunks[n].start_line, scores[n], _first_line(chunks[n]),
                chunks[n].title,
            )
            for n in order[:limit]
        ]  # fmt: skip


_FILE_KINDS = frozenset({"dependents", "dependencies"})
_CALLABLE = frozenset({"function", "method", "class", "struct", "interface", "trait", "type"})


def _normalised(values: Sequence[float]) -> list[float]:
    top = max(values, default=0.0)
    return [max(value, 0.0) / top for value in values] if top > 0 else [0.0 for _ in values]


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
