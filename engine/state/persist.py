"""Crash-safe journal of every file's CRDT history under `.delegation/crdt/`.

One append-only journal per file: length-prefixed msgpack records, each a Yjs v1 update with
its transaction origin, or a marker (disk text synced, task accepted/rejected, one hunk of a task accepted, the
user's unsaved edits discarded; a rejected hunk is an update with its own origin). Replaying a
journal into a fresh Doc, origin by origin, restores the text and every pending task's undo
history, so unsaved agent edits to closed files survive a restart. A torn last record (crash
mid-append) is ignored.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import msgspec

RecordKind = Literal["update", "disk", "accept", "reject", "discard", "accept-hunk"]


class JournalRecord(msgspec.Struct, frozen=True, array_like=True):
    kind: RecordKind
    origin: str = ""
    update: bytes = b""
    text: str = ""


class JournalHeader(msgspec.Struct, frozen=True, array_like=True):
    path: str


_LENGTH = struct.Struct(">I")


class CrdtJournal:
    """Appends and replays the records of one file."""

    def __init__(self, file: Path, rel: str) -> None:
        self.file = file
        self.rel = rel
        self._encoder = msgspec.msgpack.Encoder()
        self._out: BinaryIO | None = None

    def exists(self) -> bool:
        return self.file.exists() and self.file.stat().st_size > 0

    def append(self, record: JournalRecord) -> None:
        """Append one record; flushed to the OS at once (a crashed process loses nothing,
        a power cut may lose the tail, which replay tolerates)."""
        if self._out is None:
            new_file = not self.exists()
            self._out = open(self.file, "ab")  # noqa: SIM115 - kept open across appends
            if new_file:
                self._write(self._out, self._encoder.encode(JournalHeader(self.rel)))
        self._write(self._out, self._encoder.encode(record))
        self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def reset(self, records: list[JournalRecord]) -> None:
        """Atomically replace the journal (compaction after accept/flush)."""
        self.close()
        temp = self.file.with_suffix(".tmp")
        with open(temp, "wb") as out:
            self._write(out, self._encoder.encode(JournalHeader(self.rel)))
            for record in records:
                self._write(out, self._encoder.encode(record))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.file)

    def records(self) -> Iterator[JournalRecord]:
        data = self.file.read_bytes()
        decoder = msgspec.msgpack.Decoder(JournalRecord)
        offset = self._skip_header(data)
        while offset + _LENGTH.size <= len(data):
            (length,) = _LENGTH.unpack_from(data, offset)
            body = data[offset + _LENGTH.size : offset + _LENGTH.size + length]
            if len(body) < length:
                return  # torn write at the tail: the record never completed
            yield decoder.decode(body)
            offset += _LENGTH.size + length

    @staticmethod
    def _skip_header(data: bytes) -> int:
        if len(data) < _LENGTH.size:
            return len(data)
        (length,) = _LENGTH.unpack_from(data, 0)
        return _LENGTH.size + int(length)

    @staticmethod
    def _write(out: BinaryIO, body: bytes) -> None:
        out.write(_LENGTH.pack(len(body)) + body)


class CrdtStore:
    """Maps workspace-relative paths to journals in `<root>/.delegation/crdt/`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def journal(self, rel: str) -> CrdtJournal:
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(rel.encode("utf-8")).hexdigest()[:32]
        return CrdtJournal(self.folder / f"{digest}.yjournal", rel)

    def journaled_paths(self) -> list[str]:
        """Workspace-relative paths that have a journal (read from each header)."""
        if not self.folder.is_dir():
            return []
        paths = []
        decoder = msgspec.msgpack.Decoder(JournalHeader)
        for file in sorted(self.folder.glob("*.yjournal")):
            data = file.read_bytes()
            if len(data) < _LENGTH.size:
                continue
            (length,) = _LENGTH.unpack_from(data, 0)
            try:
                paths.append(decoder.decode(data[_LENGTH.size : _LENGTH.size + length]).path)
            except msgspec.DecodeError:
                continue
        return paths
