"""Tree-sitter grammars, parsers and offset conversion shared by the memory layer.

Owns the mapping from file suffix to grammar and the conversion of tree-sitter byte positions
to the engine's code-point offsets and (line, column-in-code-points) points. A `ParsedFile`
keeps the UTF-8 bytes its tree was built from, so an incremental re-parse can edit that tree.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import tree_sitter as ts
import tree_sitter_go
import tree_sitter_javascript
import tree_sitter_python
import tree_sitter_rust
import tree_sitter_typescript

from delegation_machine.engine.protocol import Point, Span

LANGUAGE_BY_SUFFIX: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
}


_GRAMMAR_LOADERS: dict[str, Callable[[], Any]] = {
    "python": tree_sitter_python.language,
    "javascript": tree_sitter_javascript.language,
    "typescript": tree_sitter_typescript.language_typescript,
    "tsx": tree_sitter_typescript.language_tsx,
    "go": tree_sitter_go.language,
    "rust": tree_sitter_rust.language,
}


class UnsupportedLanguage(ValueError):
    """No grammar is installed for this file's suffix."""


def language_for_path(rel: str) -> str | None:
    """The grammar name for a workspace-relative path, or None if none applies."""
    dot = rel.rfind(".")
    if dot < 0 or "/" in rel[dot:]:
        return None
    return LANGUAGE_BY_SUFFIX.get(rel[dot:].lower())


@cache
def grammar(name: str) -> ts.Language:
    """One grammar, loaded once."""
    loader = _GRAMMAR_LOADERS.get(name)
    if loader is None:
        raise UnsupportedLanguage(f"no tree-sitter grammar for language {name!r}")
    return ts.Language(loader())


class OffsetMap:
    """Converts tree-sitter (row, byte column) points to code-point offsets and Points.

    ASCII text is the identity map; other text converts one line at a time.
    """

    __slots__ = ("_ascii", "_data", "_line_byte_starts", "_line_cp_starts")

    def __init__(self, text: str, data: bytes) -> None:
        self._data = data
        self._ascii = len(text) == len(data)
        self._line_byte_starts: list[int] = [0]
        self._line_cp_starts: list[int] = [0]
        if not self._ascii:
            position = data.find(b"\n")
            while position >= 0:
                self._line_byte_starts.append(position + 1)
                position = data.find(b"\n", position + 1)
            cp = 0
            previous = 0
            for start in self._line_byte_starts[1:]:
                cp += len(data[previous:start].decode("utf-8", "replace"))
                self._line_cp_starts.append(cp)
                previous = start

    @property
    def is_ascii(self) -> bool:
        return self._ascii

    @property
    def line_code_point_starts(self) -> list[int]:
        """Code-point offset of each line start (only filled for non-ASCII text)."""
        return self._line_cp_starts

    def column(self, row: int, byte_column: int) -> int:
        if self._ascii:
            return byte_column
        line_start = self._line_byte_starts[row]
        return len(self._data[line_start : line_start + byte_column].decode("utf-8", "replace"))

    def byte_to_offset(self, byte: int) -> int:
        if self._ascii:
            return byte
        row = bisect.bisect_right(self._line_byte_starts, byte) - 1
        return self._line_cp_starts[row] + self.column(row, byte - self._line_byte_starts[row])

    def offset_to_byte(self, offset: int) -> int:
        if self._ascii:
            return offset
        row = bisect.bisect_right(self._line_cp_starts, offset) - 1
        line_start = self._line_byte_starts[row]
        line_end = (
            self._line_byte_starts[row + 1]
            if row + 1 < len(self._line_byte_starts)
            else len(self._data)
        )
        line_text = self._data[line_start:line_end].decode("utf-8", "replace")
        return line_start + len(line_text[: offset - self._line_cp_starts[row]].encode("utf-8"))


@dataclass
class ParsedFile:
    """One parsed file: its text, the bytes the tree was built from, the tree itself."""

    path: str
    language: str
    text: str
    data: bytes
    tree: ts.Tree
    # (start, old_end, new_end) bytes of the edit this tree was re-parsed for, if any.
    last_edit: tuple[int, int, int] | None = None
    offsets: OffsetMap = field(init=False)

    def __post_init__(self) -> None:
        self.offsets = OffsetMap(self.text, self.data)

    def node_offsets(self, node: ts.Node) -> tuple[int, int]:
        """The node's [start, end) as code-point offsets into `text`."""
        if self.offsets.is_ascii:
            return node.start_byte, node.end_byte
        return (
            self.offsets.byte_to_offset(node.start_byte),
            self.offsets.byte_to_offset(node.end_byte),
        )

    def node_span(self, node: ts.Node) -> Span:
        start_row, start_col = node.start_point
        end_row, end_col = node.end_point
        return Span(
            Point(start_row, self.offsets.column(start_row, start_col)),
            Point(end_row, self.offsets.column(end_row, end_col)),
        )

    def node_text(self, node: ts.Node) -> str:
        return self.data[node.start_byte : node.end_byte].decode("utf-8", "replace")


class Parsers:
    """One tree-sitter Parser per grammar; owned by a single thread (parsers are not shared)."""

    def __init__(self) -> None:
        self._parsers: dict[str, ts.Parser] = {}

    def parser(self, language: str) -> ts.Parser:
        parser = self._parsers.get(language)
        if parser is None:
            parser = ts.Parser(grammar(language))
            self._parsers[language] = parser
        return parser

    def parse(self, path: str, language: str, text: str) -> ParsedFile:
        data = text.encode("utf-8")
        tree = self.parser(language).parse(data)
        return ParsedFile(path, language, text, data, tree)

    def reparse(self, old: ParsedFile, text: str) -> ParsedFile:
        """Re-parse `text` reusing `old.tree`: the single changed region is edited into it."""
        data = text.encode("utf-8")
        start, old_end, new_end = changed_byte_region(old.data, data)
        if start == old_end == new_end:
            return ParsedFile(old.path, old.language, text, data, old.tree)
        old.tree.edit(
            start_byte=start,
            old_end_byte=old_end,
            new_end_byte=new_end,
            start_point=byte_point(old.data, start),
            old_end_point=byte_point(old.data, old_end),
            new_end_point=byte_point(data, new_end),
        )
        tree = self.parser(old.language).parse(data, old.tree)
        return ParsedFile(old.path, old.language, text, data, tree, (start, old_end, new_end))


def changed_byte_region(old: bytes, new: bytes) -> tuple[int, int, int]:
    """(start, old_end, new_end) of the one region where `old` and `new` differ."""
    limit = min(len(old), len(new))
    start = 0
    # Compare in large blocks first: most edits touch one line of a long file.
    block = 4096
    while start + block <= limit and old[start : start + block] == new[start : start + block]:
        start += block
    while start < limit and old[start] == new[start]:
        start += 1
    old_end, new_end = len(old), len(new)
    while old_end - block >= start and new_end - block >= start:
        if old[old_end - block : old_end] != new[new_end - block : new_end]:
            break
        old_end -= block
        new_end -= block
    while old_end > start and new_end > start and old[old_end - 1] == new[new_end - 1]:
        old_end -= 1
        new_end -= 1
    # Stay on UTF-8 character boundaries so the points stay valid.
    while start > 0 and (old[start] if start < len(old) else 0) & 0xC0 == 0x80:
        start -= 1
    while old_end < len(old) and old[old_end] & 0xC0 == 0x80:
        old_end += 1
        new_end += 1
    return start, old_end, new_end


def byte_point(data: bytes, byte: int) -> tuple[int, int]:
    """The tree-sitter (row, byte column) of a byte offset."""
    row = data.count(b"\n", 0, byte)
    line_start = data.rfind(b"\n", 0, byte) + 1
    return row, byte - line_start
