"""The wire types: every untrusted message decodes to a known type or raises WireError."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.protocol import (
    AuditTrail,
    ContextPackage,
    DelegationRequest,
    EnvironmentSnapshot,
    GoalHint,
    TaskManifest,
)
from delegation_machine.engine.scale.connection import ScaleError, redacted_url, resolve_url
from delegation_machine.engine.scale.wire import (
    WIRE_VERSION,
    BlobRef,
    ResultMessage,
    TaskMessage,
    WireError,
    decode_entry,
    decode_message,
    encode_message,
)

DIGEST = "a" * 64


def task(**fields: object) -> TaskMessage:
    package = ContextPackage(
        TaskManifest("t1", "p1", "fix", "fix"),
        EnvironmentSnapshot(1),
        GoalHint("fix"),
        AuditTrail("user", 0.0),
    )
    base: dict[str, object] = {
        "v": WIRE_VERSION,
        "task_id": "t1",
        "token": 1,
        "kind": "fix",
        "agent_id": "builtin:fix@remote-1",
        "host": "h",
        "package": package,
        "request": DelegationRequest("fix"),
        "files": (BlobRef("pkg/a.py", 3, DIGEST),),
    }
    base.update(fields)
    return TaskMessage(**base)  # type: ignore[arg-type]


def test_a_task_round_trips() -> None:
    message = task()
    assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "malformed"),
        (b'{"type": "task"}', "not a valid wire message"),
        (b'{"type": "shell", "v": 1, "cmd": "rm -rf /"}', "not a valid wire message"),
        (encode_message(task(v=2)), "wire version 2"),
        (encode_message(task(files=(BlobRef("../../etc/passwd", 1, DIGEST),))), "workspace"),
        (encode_message(task(files=(BlobRef("/etc/passwd", 1, DIGEST),))), "workspace"),
        (encode_message(task(files=(BlobRef("a.py", 1, "xyz"),))), "not a sha256"),
        (b"x" * (9 * 1024 * 1024), "limit"),
    ],
)
def test_bad_messages_are_refused_with_the_reason(raw: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        decode_message(raw)


def test_an_unknown_field_is_refused() -> None:
    raw = msgspec.json.encode({**msgspec.to_builtins(task()), "type": "task", "exec": "x"})
    with pytest.raises(WireError, match="unknown field"):
        decode_message(raw)


def test_an_entry_without_the_message_field_is_refused() -> None:
    with pytest.raises(WireError, match="without"):
        decode_entry({b"x": b"1"})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.from_type(dict).map(msgspec.json.encode)))
def test_any_bytes_decode_or_raise_wire_error_only(raw: bytes) -> None:
    try:
        decoded = decode_message(raw)
    except WireError:
        return
    assert isinstance(decoded, TaskMessage | ResultMessage) or decoded.v == WIRE_VERSION


def test_urls_are_shown_without_credentials_and_passwords_come_from_the_environment() -> None:
    assert redacted_url("redis://bob:hunter2secret@db:6380/1") == "redis://***@db:6380/1"
    assert "hunter2" not in redacted_url("rediss://:hunter2secret@db/0")
    with pytest.raises(ScaleError, match="REDIS_PASSWORD") as refused:
        resolve_url("redis://bob:hunter2secret@db:6380/1", {})
    assert "hunter2" not in str(refused.value)
    assert resolve_url(None, {"REDIS_URL": "rediss://bob:pw@db/0"}) == "rediss://bob:pw@db/0"
    with pytest.raises(ScaleError, match="scheme"):
        resolve_url("http://db:6379", {})
    with pytest.raises(ScaleError, match="no Redis URL"):
        resolve_url(None, {})
