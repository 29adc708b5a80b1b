"""LSP base-protocol framing that survives bad frames: bytes in, JSON messages out.

Owns `FrameDecoder`, a sans-I/O parser of `Content-Length` framed JSON messages, and
`read_frames`, the server's read loop over any chunk source (stdin, a TCP stream).
Invariants: a bad frame (missing, non-numeric, negative, short or long `Content-Length`,
LF-only or malformed headers, garbage between frames) costs at most itself: it is reported
and the decoder resynchronises on the next frame; a well-formed frame sent after any garbage
is decoded. The anchor is the witness `Content-Length: <digits><newline>`: it can never occur
inside valid JSON (a raw newline cannot be in a JSON string, and the words cannot stand
outside one), so a witness inside a declared body proves the declared length wrong. Memory is
bounded: a body over `max_body_bytes` is skipped as it streams in, never buffered.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 8192
OVERSIZED_HEAD_BYTES = 512  # what is kept of a skipped body, to answer it by its id
PREFIX_PROBE_BYTES = 1 << 20  # partial bodies up to this size are probed for a whole object
_WITNESS_TAIL_BYTES = 40  # kept when skipping: a witness cut by a chunk boundary


def _prefix_pattern(word: bytes, tail: bytes) -> bytes:
    """A regex matching any non-empty prefix of `word` followed (when whole) by `tail`."""
    pattern = re.escape(word[-1:]) + tail
    for index in range(len(word) - 2, -1, -1):
        pattern = re.escape(word[index : index + 1]) + b"(?:" + pattern + b")?"
    return pattern


_HEADER_NAME = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)  # a frame may start here
_WITNESS = re.compile(rb"content-length[ \t]*:[ \t]*[0-9]+[ \t]*\r?\n", re.IGNORECASE)
_WITNESS_AT_END = re.compile(
    _prefix_pattern(b"content-length", rb"(?:[ \t]*(?::[ \t]*[0-9]*[ \t]*\r?)?)?") + rb"\Z",
    re.IGNORECASE,
)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_HEADER_LINE = re.compile(rb"(content-length|content-type)[ \t]*:[^\r\n]*", re.IGNORECASE)
_BYTE_COUNT = re.compile(rb"[ \t]*([0-9]{1,12})[ \t]*")


@dataclass(frozen=True)
class Message:
    """One decoded JSON value (not yet known to be a JSON-RPC message)."""

    value: Any


@dataclass(frozen=True)
class FrameError:
    """Bytes that were no frame, or a frame that could not be read; they were dropped.
    `unreadable_body` marks a frame whose body is not JSON (answered with ParseError)."""

    reason: str
    unreadable_body: bool = False


@dataclass(frozen=True)
class OversizedFrame:
    """A frame whose body is over the limit: skipped unread except for its first bytes."""

    length: int
    head: bytes


Decoded = Message | FrameError | OversizedFrame


class FrameDecoder:
    """Feed it bytes as they arrive; it returns what became complete, in order."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self._buffer = bytearray()
        self._skip_remaining = 0  # bytes of an oversized body still to drop
        self._scanned = 0  # the witness search of the frame at the buffer's start got here

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Decoded]:
        self._buffer += data
        out: list[Decoded] = []
        while self._step(out):
            pass
        return out

    def finish(self) -> list[Decoded]:
        """End of stream: whatever is left is an incomplete frame or trailing garbage."""
        leftover = bytes(self._buffer).strip()
        self._drop(len(self._buffer))
        if self._skip_remaining:
            self._skip_remaining = 0
            return [FrameError("the stream ended inside an oversized message")]
        if leftover:
            return [FrameError(f"the stream ended inside a frame ({_shown(leftover)})")]
        return []

    # --- the state machine: each step returns True while it made progress ------------------

    def _drop(self, count: int) -> None:
        if count > 0:
            del self._buffer[:count]
            self._scanned = 0

    def _step(self, out: list[Decoded]) -> bool:
        if self._skip_remaining:
            return self._skip_oversized(out)
        start = _HEADER_NAME.search(self._buffer)
        if start is None:
            self._drop_garbage(len(self._buffer) - _WITNESS_TAIL_BYTES, out)
            return False
        if start.start() > 0:
            self._drop_garbage(start.start(), out)
        end = _HEADER_END.search(self._buffer)
        if end is None:
            if len(self._buffer) > MAX_HEADER_BYTES:
                return self._resync(out, f"no end of headers within {MAX_HEADER_BYTES} bytes")
            return False
        length = self._content_length(end.start(), out)
        if length is None:
            return True
        return self._take_body(end.end(), length, out)

    def _resync(self, out: list[Decoded], reason: str) -> bool:
        """Drop the first byte of a broken header: the search finds the next candidate."""
        out.append(FrameError(reason))
        self._drop(1)
        return True

    def _content_length(self, header_end: int, out: list[Decoded]) -> int | None:
        """The declared length of the header block at the buffer's start, or None after
        reporting why the block is not a frame header."""
        length: int | None = None
        for number, line in enumerate(bytes(self._buffer[:header_end]).split(b"\n")):
            line = line.rstrip(b"\r")
            header = _HEADER_LINE.fullmatch(line)
            again = _HEADER_NAME.search(line, 1)
            if header is None or again is not None:
                self._resync(out, f"not a frame header: {_shown(line)}")
                return None
            if header.group(1).lower() == b"content-type":
                continue
            value = line.partition(b":")[2]
            count = _BYTE_COUNT.fullmatch(value)
            if count is None:
                self._resync(out, f"Content-Length {_shown(value.strip())} is not a byte count")
                return None
            if number > 0 or length is not None:
                self._resync(out, "a second Content-Length before the end of the headers")
                return None
            length = int(count.group(1))
        return length

    def _take_body(self, body_start: int, length: int, out: list[Decoded]) -> bool:
        body_end = body_start + length
        lie = self._witness_from(body_start)
        if lie is not None and lie < body_end:  # the declared length runs into the next frame
            return self._cut_at(body_start, lie, out)
        available = len(self._buffer) - body_start
        if length > self.max_body_bytes:
            return self._start_oversized(body_start, length, out)
        if available >= length:
            body = bytes(self._buffer[body_start:body_end])
            try:
                value = json.loads(body)
            except ValueError as exc:
                partial = _WITNESS_AT_END.search(self._buffer, body_start)
                if partial is not None and partial.start() < body_end:
                    return False  # the next frame's header may be arriving inside this body
                out.append(FrameError(f"a body that is not JSON: {exc}", unreadable_body=True))
                self._drop(body_end)
                return True
            out.append(Message(value))
            self._drop(body_end)
            return True
        if available <= PREFIX_PROBE_BYTES:
            # Nothing follows yet and the declared length is not reached: a valid JSON object
            # is never the prefix of a longer one (only whitespace may follow), so a whole
            # object here is the message, sent with a length too long; waiting would leave it
            # unanswered.
            value = _whole_object(bytes(self._buffer[body_start:]))
            if value is not None:
                out.append(FrameError(f"Content-Length {length} is longer than the message"))
                out.append(Message(value))
                self._drop(len(self._buffer))
                return True
        return False

    def _witness_from(self, body_start: int) -> int | None:
        """Where the next frame's witness starts at or after `body_start`, scanning each byte
        once per frame however many chunks it arrives in."""
        scan_from = max(body_start, self._scanned - _WITNESS_TAIL_BYTES)
        found = _WITNESS.search(self._buffer, scan_from)
        self._scanned = len(self._buffer)
        return found.start() if found is not None else None

    def _cut_at(self, body_start: int, next_frame: int, out: list[Decoded]) -> bool:
        head = bytes(self._buffer[body_start:next_frame])
        value = _whole_object(head)
        if value is not None:
            out.append(FrameError("a Content-Length longer than its message"))
            out.append(Message(value))
        else:
            reason = "a frame cut short by the next frame's header"
            out.append(FrameError(reason, unreadable_body=bool(head.strip())))
        self._drop(next_frame)
        return True

    def _start_oversized(self, body_start: int, length: int, out: list[Decoded]) -> bool:
        head_wanted = min(length, OVERSIZED_HEAD_BYTES)
        if len(self._buffer) - body_start < head_wanted:
            return False
        out.append(
            OversizedFrame(length, bytes(self._buffer[body_start : body_start + head_wanted]))
        )
        self._drop(body_start)
        self._skip_remaining = length
        return True

    def _skip_oversized(self, out: list[Decoded]) -> bool:
        window = self._buffer[: self._skip_remaining]
        lie = _WITNESS.search(window)
        if lie is not None:
            out.append(FrameError("an oversized message's Content-Length ran into the next frame"))
            self._drop(lie.start())
            self._skip_remaining = 0
            return True
        dropped = len(window)
        if dropped < self._skip_remaining:  # keep a witness cut by the chunk boundary
            dropped = max(0, dropped - _WITNESS_TAIL_BYTES)
        self._drop(dropped)
        self._skip_remaining -= dropped
        return self._skip_remaining == 0 and bool(self._buffer)

    def _drop_garbage(self, count: int, out: list[Decoded]) -> None:
        if count <= 0:
            return
        dropped = bytes(self._buffer[:count])
        self._drop(count)
        if not _only_headers(dropped):
            out.append(FrameError(f"{len(dropped)} bytes outside any frame: {_shown(dropped)}"))


def _only_headers(data: bytes) -> bool:
    """Blank, or header lines (a Content-Type sent before the Content-Length)."""
    lines = (line.strip() for line in data.split(b"\n"))
    return all(not line or _HEADER_LINE.fullmatch(line) for line in lines)


def _whole_object(body: bytes) -> dict[str, Any] | None:
    stripped = body.rstrip()
    if not stripped.endswith(b"}"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _shown(data: bytes, limit: int = 60) -> str:
    text = repr(data[:limit])[2:-1]
    return text + ("..." if len(data) > limit else "")


ReadChunk = Callable[[], Awaitable[bytes]]


async def read_frames(
    read_chunk: ReadChunk,
    on_decoded: Callable[[Decoded], None],
    *,
    max_body_bytes: int,
    should_stop: Callable[[], bool],
) -> None:
    """Read chunks until the stream ends (or `should_stop`), handing each decoded item on."""
    decoder = FrameDecoder(max_body_bytes)
    while not should_stop():
        chunk = await read_chunk()
        if not chunk:
            break
        for item in decoder.feed(chunk):
            on_decoded(item)
    for item in decoder.finish():
        on_decoded(item)
