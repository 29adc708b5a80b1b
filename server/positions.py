"""Exact conversions between engine offsets (code points) and LSP positions.

Owns the mapping text offset <-> (line, character) for the three LSP position encodings:
"utf-16" (the default: UTF-16 code units), "utf-8" (bytes) and "utf-32" (code points).
Line breaks are "\\n", "\\r\\n" and "\\r" as the LSP specification says; a CRLF pair is one
break. Out-of-range positions are clamped as the specification asks (a character past the
end of its line means the line's end); a column that falls inside a character (half a
surrogate pair, the middle of a UTF-8 sequence) rounds down to that character's start.
"""

from __future__ import annotations

import bisect
import re
from typing import Literal

PositionEncoding = Literal["utf-8", "utf-16", "utf-32"]
ENCODINGS: tuple[PositionEncoding, ...] = ("utf-8", "utf-16", "utf-32")
_BY_NAME: dict[str, PositionEncoding] = {name: name for name in ENCODINGS}

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def normalize_encoding(name: object) -> PositionEncoding:
    """The encoding named by a capability value (a string or lsprotocol's
    PositionEncodingKind); None means "utf-16"."""
    value = str(getattr(name, "value", name) or "utf-16").lower()
    found = _BY_NAME.get(value)
    if found is None:
        raise ValueError(f"unknown position encoding {name!r}; expected one of {ENCODINGS}")
    return found


def negotiate_encoding(client_supports: list[str] | None) -> PositionEncoding:
    """Pick the server's encoding from the client's `general.positionEncodings`.

    utf-32 needs no conversion for the engine, then utf-16 (every client must support it).
    """
    offered = {name.lower() for name in client_supports or []}
    return "utf-32" if "utf-32" in offered else "utf-16"


def char_units(char: str, encoding: PositionEncoding) -> int:
    """How many units of `encoding` one code point takes."""
    code = ord(char)
    if encoding == "utf-32":
        return 1
    if encoding == "utf-16":
        return 2 if code > 0xFFFF else 1
    if code < 0x80:
        return 1
    if code < 0x800:
        return 2
    return 3 if code < 0x10000 else 4


def units_of(text: str, encoding: PositionEncoding) -> int:
    """Length of `text` in units of `encoding`."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def code_points_for_units(text: str, units: int, encoding: PositionEncoding) -> int:
    """How many leading code points of `text` fit in `units` units (rounding down inside a
    character; clamped to len(text))."""
    if units <= 0:
        return 0
    if encoding == "utf-32" or text.isascii():
        return min(units, len(text))
    used = 0
    for index, char in enumerate(text):
        used += char_units(char, encoding)
        if used > units:
            return index
    return len(text)


class LineIndex:
    """Line starts of one text, for offset <-> (line, character) conversions."""

    def __init__(self, text: str) -> None:
        self.text = text
        starts = [0]
        content_ends = []
        for match in _LINE_BREAK.finditer(text):
            content_ends.append(match.start())
            starts.append(match.end())
        content_ends.append(len(text))
        self.line_starts = starts
        self.content_ends = content_ends  # where each line's text ends (before its break)

    @property
    def line_count(self) -> int:
        return len(self.line_starts)

    def line_text(self, line: int) -> str:
        return self.text[self.line_starts[line] : self.content_ends[line]]

    def position_of(self, offset: int, encoding: PositionEncoding) -> tuple[int, int]:
        """Code-point offset -> (line, character in `encoding` units)."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.line_starts, offset) - 1
        start = self.line_starts[line]
        # an offset between "\r" and "\n" of a CRLF is not a position; use the line end
        column_end = min(offset, self.content_ends[line])
        return line, units_of(self.text[start:column_end], encoding)

    def offset_of(self, line: int, character: int, encoding: PositionEncoding) -> int:
        """(line, character) -> code-point offset, clamped as the LSP specification says."""
        if line < 0:
            return 0
        if line >= len(self.line_starts):
            return len(self.text)
        start = self.line_starts[line]
        line_text = self.text[start : self.content_ends[line]]
        return start + code_points_for_units(line_text, character, encoding)


def offset_to_position(text: str, offset: int, encoding: PositionEncoding) -> tuple[int, int]:
    return LineIndex(text).position_of(offset, encoding)


def position_to_offset(text: str, line: int, character: int, encoding: PositionEncoding) -> int:
    return LineIndex(text).offset_of(line, character, encoding)


def convert_column(
    line_text: str, character: int, source: PositionEncoding, target: PositionEncoding
) -> int:
    """A column of one line converted between encodings (e.g. UTF-8 -> UTF-16)."""
    code_points = code_points_for_units(line_text, character, source)
    return units_of(line_text[:code_points], target)


def to_client_column(line_text: str, column: int, encoding: object) -> int:
    """A code-point column of `line_text` in the client's units (what `convert.py` calls)."""
    return units_of(line_text[: max(0, column)], normalize_encoding(encoding))


def from_client_column(line_text: str, character: int, encoding: object) -> int:
    """A client column (in `encoding` units) of `line_text` as a code-point column."""
    return code_points_for_units(line_text, character, normalize_encoding(encoding))
