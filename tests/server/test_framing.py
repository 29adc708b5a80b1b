"""The frame decoder: every bad frame costs at most itself, a good frame after any garbage
is decoded, however the bytes are split into chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delegation_machine.server.framing import (
    FrameDecoder,
    FrameError,
    Message,
    OversizedFrame,
)

VALID = {"jsonrpc": "2.0", "id": 7, "method": "shutdown"}
BODY = json.dumps(VALID).encode()


def framed(body: bytes, header: bytes | None = None) -> bytes:
    return (header if header is not None else b"Content-Length: %d\r\n\r\n" % len(body)) + body


def decode(data: bytes, *, chunk: int | None = None, limit: int = 1 << 20) -> list[Any]:
    decoder = FrameDecoder(limit)
    items: list[Any] = []
    step = chunk or len(data) or 1
    for offset in range(0, len(data), step):
        items.extend(decoder.feed(data[offset : offset + step]))
    return items


def messages(items: list[Any]) -> list[Any]:
    return [item.value for item in items if isinstance(item, Message)]


BAD_FRAMES = {
    "missing": b"Content-Type: application/json\r\n\r\n" + BODY,
    "non-numeric": b"Content-Length: abc\r\n\r\n" + BODY,
    "negative": b"Content-Length: -5\r\n\r\n" + BODY,
    "short": framed(BODY, b"Content-Length: %d\r\n\r\n" % (len(BODY) - 5)),
    "long": framed(BODY, b"Content-Length: %d\r\n\r\n" % (len(BODY) + 7)),
    "far too long": framed(BODY, b"Content-Length: 999999\r\n\r\n"),
    "no blank line": b"Content-Length: %d\r\n" % len(BODY) + BODY,
    "garbage": b"\x00\xff not a frame at all {",
    "header glued": b"Content-Type: x",
    "huge": framed(b"{" + b" " * 5000 + b"}"),
}


@pytest.mark.parametrize("chunk", [None, 1, 7])
@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_a_good_frame_after_a_bad_one_is_decoded(name: str, chunk: int | None) -> None:
    items = decode(BAD_FRAMES[name] + framed(BODY), chunk=chunk, limit=4096)
    assert messages(items)[-1] == VALID


def test_lf_only_headers_are_read() -> None:
    items = decode(b"Content-Length: %d\n\n" % len(BODY) + BODY)
    assert messages(items) == [VALID]


def test_a_long_length_still_yields_the_message_and_the_next_one() -> None:
    second = {**VALID, "id": 8}
    data = framed(BODY, b"Content-Length: %d\r\n\r\n" % (len(BODY) + 7)) + framed(
        json.dumps(second).encode()
    )
    assert messages(decode(data)) == [VALID, second]


def test_a_message_whose_length_is_too_long_is_not_left_waiting() -> None:
    decoder = FrameDecoder(1 << 20)
    items = decoder.feed(framed(BODY, b"Content-Length: %d\r\n\r\n" % (len(BODY) + 40)))
    assert messages(items) == [VALID]


def test_an_unreadable_body_is_reported_for_a_parse_error() -> None:
    items = decode(framed(b"{not json}") + framed(BODY))
    errors = [i for i in items if isinstance(i, FrameError)]
    assert [e.unreadable_body for e in errors] == [True]
    assert messages(items) == [VALID]


def test_an_oversized_body_is_skipped_without_being_buffered() -> None:
    decoder = FrameDecoder(1000)
    big = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "x", "params": "a" * 100_000})
    data = framed(big.encode()) + framed(BODY)
    items: list[Any] = []
    high_water = 0
    for offset in range(0, len(data), 4096):
        items.extend(decoder.feed(data[offset : offset + 4096]))
        high_water = max(high_water, decoder.buffered)
    oversized = [i for i in items if isinstance(i, OversizedFrame)]
    assert oversized and oversized[0].length == len(big)
    assert b'"id": 3' in oversized[0].head
    assert messages(items) == [VALID]
    assert high_water < 10_000


def test_a_body_mentioning_content_length_in_a_string_is_kept_whole() -> None:
    tricky = {"jsonrpc": "2.0", "method": "m", "params": {"text": "Content-Length: 5\r\n\r\n"}}
    body = json.dumps(tricky).encode()
    assert messages(decode(framed(body) + framed(BODY), chunk=3)) == [tricky, VALID]


HEADERISH = st.sampled_from(
    [
        b"Content-Length: ",
        b"content-length:",
        b"Content-Type: x",
        b"\r\n",
        b"\n",
        b"\r\n\r\n",
        b"{",
        b"}",
        b'"',
        b"12",
        b"-3",
        b"99999999",
        BODY[:10],
        BODY,
        b"Content-Length: 30\r\n\r\n",
    ]
)
GARBAGE = st.lists(st.one_of(HEADERISH, st.binary(max_size=12)), max_size=12).map(b"".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=GARBAGE, chunk=st.integers(min_value=1, max_value=64))
def test_any_garbage_then_a_good_frame_decodes_the_good_frame(garbage: bytes, chunk: int) -> None:
    items = decode(garbage + framed(BODY), chunk=chunk, limit=4096)
    assert messages(items)[-1:] == [VALID]
