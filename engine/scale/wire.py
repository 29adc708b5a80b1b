"""What crosses the wire between the host and its workers: versioned msgspec messages.

Owns the message types (`TaskMessage` host -> worker; `ResultMessage` and `ReleaseMessage`
worker -> host; `Heartbeat` on the workers' hash), their encoding and `decode_message`, the
one way in: a message that is not valid JSON of a known type, carries another wire version,
or breaks the size limits raises `WireError` (a `ProtocolError`) naming what is wrong, so a
malformed or hostile entry is rejected and logged, never executed. A task message carries
only what its task needs: the Context Package, the request, the task's file snapshots and the
workspace's tool configuration as blob digests, never an API key or the host's settings.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from delegation_machine.engine.agents.base import TokenUsage
from delegation_machine.engine.protocol import (
    ContextPackage,
    DelegationRequest,
    Mutation,
    ProtocolError,
    Verdict,
)

WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # one stream entry; a file's text travels as a blob
MAX_FILES = 2_000
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_FIELD = b"m"  # the stream entry's one field: the encoded message


class WireError(ProtocolError):
    """A message from the stream did not decode; the message says what was wrong."""


class BlobRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A file's snapshot: its workspace-relative path, its version, its text's sha256."""

    path: str
    version: int
    digest: str


class TaskMessage(msgspec.Struct, frozen=True, tag="task", forbid_unknown_fields=True):
    """One attempt of an agent task, for a worker of its kind. `token` is the fencing token:
    the attempt number the host holds for the task; a result carrying another is stale."""

    v: int
    task_id: str
    token: int
    kind: str
    agent_id: str
    host: str  # the host's id; results go to its results stream
    package: ContextPackage
    request: DelegationRequest
    files: tuple[BlobRef, ...]  # the task's files at the versions the agent works on
    config_files: tuple[BlobRef, ...] = ()  # tool configuration (pyproject.toml, ruff.toml)
    arguments: dict[str, Any] = {}
    feedback: tuple[Verdict, ...] = ()
    previous_diff: str = ""
    lease_s: float = 30.0  # the worker heartbeats well within this


class ResultMessage(msgspec.Struct, frozen=True, tag="result", forbid_unknown_fields=True):
    """A worker's answer to one attempt: the agent's Mutations, usage and notes, or `error`
    (the agent failed; the host fails the attempt with it)."""

    v: int
    task_id: str
    token: int
    worker: str
    mutations: tuple[Mutation, ...] = ()
    usage: TokenUsage = TokenUsage()
    notes: str = ""
    error: str | None = None
    elapsed_s: float = 0.0


class ReleaseMessage(msgspec.Struct, frozen=True, tag="release", forbid_unknown_fields=True):
    """A worker gives an attempt back unfinished (it is stopping): the host re-issues it."""

    v: int
    task_id: str
    token: int
    worker: str
    reason: str


class Heartbeat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A worker's liveness and load, kept on the namespace's workers hash."""

    v: int
    worker: str
    kinds: tuple[str, ...]
    slots: int
    busy: tuple[str, ...]  # task ids at work now
    ts: float


WireMessage = TaskMessage | ResultMessage | ReleaseMessage
_decoder = msgspec.json.Decoder(WireMessage)
_encoder = msgspec.json.Encoder()


def encode_message(message: WireMessage | Heartbeat) -> bytes:
    return _encoder.encode(message)


def entry_fields(message: WireMessage) -> dict[Any, Any]:
    """The fields of the stream entry that carries `message` (typed for redis-py's xadd)."""
    return {_FIELD: encode_message(message)}


def stream_entries(answer: Any) -> list[tuple[str, bytes, dict[bytes, bytes]]]:
    """(stream, entry id, fields) of an XREAD / XREADGROUP answer, in order."""
    found: list[tuple[str, bytes, dict[bytes, bytes]]] = []
    for stream, entries in answer or ():
        name = stream.decode() if isinstance(stream, bytes) else str(stream)
        for entry_id, fields in entries:
            found.append((name, bytes(entry_id), dict(fields or {})))
    return found


def decode_entry(fields: dict[bytes, bytes]) -> WireMessage:
    """The message of a stream entry; `WireError` when it is not one of ours."""
    raw = fields.get(_FIELD)
    if raw is None:
        raise WireError(f"a stream entry without its {_FIELD.decode()!r} field: {sorted(fields)}")
    return decode_message(raw)


def decode_message(raw: bytes) -> WireMessage:
    """Decode one untrusted message, checking its version and limits; only `WireError`."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(raw)} bytes is over the {MAX_MESSAGE_BYTES} limit")
    try:
        message = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise WireError(f"not a valid wire message: {exc}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"malformed message: {exc}") from None
    if message.v != WIRE_VERSION:
        raise WireError(f"wire version {message.v}; this side speaks {WIRE_VERSION}")
    if isinstance(message, TaskMessage):
        _check_task(message)
    return message


def _check_task(message: TaskMessage) -> None:
    refs = (*message.files, *message.config_files)
    if len(refs) > MAX_FILES:
        raise WireError(f"a task with {len(refs)} files is over the {MAX_FILES} limit")
    for ref in refs:
        if not _DIGEST.match(ref.digest):
            raise WireError(f"{ref.path}: blob digest {ref.digest[:80]!r} is not a sha256")
        check_relative_path(ref.path)


def check_relative_path(path: str) -> str:
    """`path` when it is a plain workspace-relative POSIX path; `WireError` otherwise (an
    absolute path, `..`, a backslash or a NUL would let a message write outside a scratch
    folder)."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise WireError(f"not a workspace-relative path: {path[:200]!r}")
    return path
