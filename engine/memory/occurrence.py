"""The symbol occurrence record and the scope sweep every language extractor shares.

An occurrence names exactly one identifier token: `start`/`end` are code-point offsets of that
token in the file text (never of a larger expression), so an edit over [start, end) renames it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from delegation_machine.engine.protocol import Point, Span

OccurrenceKind = Literal["definition", "reference", "import"]


class SymbolOccurrence(msgspec.Struct, frozen=True, gc=False):
    """One identifier token in one file.

    kind: "definition" (binds the name), "reference" (uses it), "import" (names it in an
    import statement). symbol_kind says what a definition or import binds: "function",
    "method", "class", "variable" (module level), "attribute" (class level), "local",
    "parameter", "module" (a segment of `import a.b`), "module_path" (a segment of
    `from a.b import x`), "module_star" (the last segment of `from a.b import *`, target the
    whole module), "name" (an imported name), "alias" (the `as` name), "type", ...
    usage says how a reference uses the name: "load", "call", "attribute", "decorator",
    "keyword" (a keyword argument), "store", "global", "type".
    qualifier is the dotted object of an attribute reference (`os.path` in `os.path.join`).
    target is the fully qualified name an import binds (`pkg.mod.x` for `from pkg.mod import
    x as y`, on both `x` and `y`); relative imports keep their dots (`.mod.x`).
    """

    path: str
    name: str
    kind: OccurrenceKind
    start: int
    end: int
    span: Span
    container: str | None = None
    symbol_kind: str | None = None
    usage: str | None = None
    qualifier: str | None = None
    target: str | None = None
    language: str = "python"


def identifier_occurrence(
    path: str,
    name: str,
    kind: str,
    start: int,
    row: int,
    column: int,
    *,
    container: str | None,
    symbol_kind: str | None,
    usage: str | None,
    qualifier: str | None,
    target: str | None,
    language: str,
) -> SymbolOccurrence:
    """The occurrence of one identifier token at code-point `start` (row, column); identifiers
    never span lines, so its end is `len(name)` further on the same line."""
    end_column = column + len(name)
    return SymbolOccurrence(
        path=path,
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start=start,
        end=start + len(name),
        span=Span(Point(row, column), Point(row, end_column)),
        container=container,
        symbol_kind=symbol_kind,
        usage=usage,
        qualifier=qualifier,
        target=target,
        language=language,
    )


class Scope(msgspec.Struct, frozen=True, gc=False):
    """A named scope (class, function, ...) as a byte range; `qualname` is dotted."""

    qualname: str
    kind: str
    start_byte: int
    end_byte: int
    name_start_byte: int

    @property
    def name(self) -> str:
        return self.qualname.rpartition(".")[2]

    def raw(self, shift: int = 0, grow: int = 0) -> RawScope:
        """This scope as a raw tuple, moved by `shift` bytes and its end by `grow` more."""
        return (
            self.start_byte + shift,
            self.end_byte + shift + grow,
            self.name_start_byte + shift,
            self.name,
            self.kind,
        )


RawScope = tuple[int, int, int, str, str]  # start, end, name start, simple name, kind


def nest_scopes(raw: list[RawScope]) -> list[Scope]:
    """Turn (start, end, name_start, name, kind) ranges into Scopes with dotted qualnames."""
    raw.sort(key=lambda item: (item[0], -item[1]))
    stack: list[Scope] = []
    scopes: list[Scope] = []
    for start, end, name_start, name, kind in raw:
        while stack and stack[-1].end_byte <= start:
            stack.pop()
        qualname = f"{stack[-1].qualname}.{name}" if stack else name
        scope = Scope(qualname, kind, start, end, name_start)
        scopes.append(scope)
        stack.append(scope)
    return scopes


def parent_scope(scopes: list[Scope], scope: Scope) -> Scope | None:
    """The innermost scope strictly enclosing `scope` (scopes sorted as nest_scopes makes them)."""
    best: Scope | None = None
    for candidate in scopes:
        if candidate.start_byte > scope.start_byte:
            break
        if candidate is not scope and candidate.end_byte >= scope.end_byte:
            best = candidate
    return best


class ScopeSweep:
    """Answers "which scope encloses byte b?" for bytes visited in ascending order."""

    def __init__(self, scopes: list[Scope]) -> None:
        self._scopes = scopes
        self._next = 0
        self._stack: list[Scope] = []

    def enclosing(self, byte: int) -> Scope | None:
        while self._next < len(self._scopes) and self._scopes[self._next].start_byte <= byte:
            scope = self._scopes[self._next]
            while self._stack and self._stack[-1].end_byte <= scope.start_byte:
                self._stack.pop()
            self._stack.append(scope)
            self._next += 1
        while self._stack and self._stack[-1].end_byte <= byte:
            self._stack.pop()
        return self._stack[-1] if self._stack else None
