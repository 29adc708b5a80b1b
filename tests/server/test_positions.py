"""Exact code point <-> UTF-8/16/32 column conversions, CRLF-aware (server/positions.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.server.positions import (
    LineIndex,
    convert_column,
    from_client_column,
    negotiate_encoding,
    offset_to_position,
    position_to_offset,
    to_client_column,
    units_of,
)

TEXT = "a😀b\r\n中文\ne\u0301x\rlast"


@pytest.mark.parametrize(
    ("offset", "utf8", "utf16", "utf32"),
    [
        (0, (0, 0), (0, 0), (0, 0)),
        (1, (0, 1), (0, 1), (0, 1)),  # before the emoji
        (2, (0, 5), (0, 3), (0, 2)),  # after the emoji: 4 bytes, 2 UTF-16 units
        (3, (0, 6), (0, 4), (0, 3)),  # end of line 0 (before CRLF)
        (5, (1, 0), (1, 0), (1, 0)),  # after CRLF: one break
        (6, (1, 3), (1, 1), (1, 1)),  # after 中
        (9, (2, 1), (2, 1), (2, 1)),  # between e and the combining acute
        (10, (2, 3), (2, 2), (2, 2)),  # after the combining mark (2 bytes in UTF-8)
        (12, (3, 0), (3, 0), (3, 0)),  # after a lone CR
    ],
)
def test_known_positions(
    offset: int, utf8: tuple[int, int], utf16: tuple[int, int], utf32: tuple[int, int]
) -> None:
    assert offset_to_position(TEXT, offset, "utf-8") == utf8
    assert offset_to_position(TEXT, offset, "utf-16") == utf16
    assert offset_to_position(TEXT, offset, "utf-32") == utf32
    assert position_to_offset(TEXT, *utf8, "utf-8") == offset
    assert position_to_offset(TEXT, *utf16, "utf-16") == offset


def test_offset_between_cr_and_lf_maps_to_the_line_end() -> None:
    assert offset_to_position(TEXT, 4, "utf-16") == (0, 4)


def test_clamping_as_the_specification_says() -> None:
    index = LineIndex(TEXT)
    assert index.offset_of(0, 99, "utf-16") == 3  # past the end of line: the line end
    assert index.offset_of(99, 0, "utf-16") == len(TEXT)
    assert index.offset_of(0, 2, "utf-16") == 1  # inside the surrogate pair: round down
    assert index.offset_of(1, 2, "utf-8") == 5  # inside a 3-byte sequence: round down
    assert index.line_count == 4


def test_column_helpers_used_by_convert() -> None:
    line = "x = '😀中'"
    assert to_client_column(line, 6, "utf-16") == 7
    assert from_client_column(line, 7, "utf-16") == 6
    assert to_client_column(line, 7, "utf-8") == 12
    assert convert_column(line, 12, "utf-8", "utf-16") == 8
    assert convert_column(line, 11, "utf-8", "utf-16") == 7  # inside 中: rounds down
    assert units_of("😀", "utf-16") == 2 and units_of("😀", "utf-8") == 4


def test_negotiation_prefers_code_points_then_utf16() -> None:
    assert negotiate_encoding(["utf-8", "utf-32"]) == "utf-32"
    assert negotiate_encoding(["utf-8"]) == "utf-16"
    assert negotiate_encoding(None) == "utf-16"


@given(st.text("ab😀中\u0301\r\n\t", max_size=40), st.sampled_from(["utf-8", "utf-16", "utf-32"]))
def test_every_offset_round_trips(text: str, encoding: str) -> None:
    index = LineIndex(text)
    for offset in range(len(text) + 1):
        if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
            continue  # not a position: inside a CRLF
        line, character = index.position_of(offset, encoding)  # type: ignore[arg-type]
        assert index.offset_of(line, character, encoding) == offset  # type: ignore[arg-type]


@given(st.text("ab😀中\u0301", max_size=20))
def test_utf16_columns_match_python_utf16_encoding(line: str) -> None:
    for column in range(len(line) + 1):
        expected = len(line[:column].encode("utf-16-le")) // 2
        assert to_client_column(line, column, "utf-16") == expected
