"""Leases: fencing tokens, expiry on an injected clock, all-or-nothing, user never blocked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import (
    LeaseConflict,
    LeaseError,
    WorkspaceState,
)

from .conftest import VirtualClock


def mutation(task: str, base: int, edit: TextEdit, path: str = "pkg/mod.py") -> Mutation:
    return Mutation(task_id=task, agent_id="a1", path=path, base_version=base, edits=(edit,))


def test_tokens_increase_and_a_live_lease_applies(state: WorkspaceState) -> None:
    first = state.lease_files(["pkg/mod.py"], "agent:a1/task:t1")
    state.release(first)
    second = state.lease_files(["pkg/mod.py"], "agent:a1/task:t1")
    assert second.token > first.token
    _, version = state.read("pkg/mod.py")
    applied = state.apply_mutation(mutation("t1", version, TextEdit(0, 0, "# hi\n")), second)
    assert state.read("pkg/mod.py")[0].startswith("# hi\n")
    assert applied.origin == "agent:a1/task:t1"


def test_expired_lease_is_rejected_and_nothing_changes(
    state: WorkspaceState, clock: VirtualClock
) -> None:
    lease = state.lease_files(["pkg/mod.py"], "agent:a1/task:t1", ttl_s=5)
    text, version = state.read("pkg/mod.py")
    clock.advance(5.0)
    with pytest.raises(LeaseError, match="expired"):
        state.apply_mutation(mutation("t1", version, TextEdit(0, 0, "X")), lease)
    assert state.read("pkg/mod.py") == (text, version)


def test_revoked_and_superseded_tokens_are_fenced(
    state: WorkspaceState, clock: VirtualClock
) -> None:
    old = state.lease_files(["pkg/mod.py"], "agent:a1/task:t1", ttl_s=5)
    state.revoke("pkg/mod.py")
    with pytest.raises(LeaseError, match="revoked"):
        state.apply_mutation(mutation("t1", 0, TextEdit(0, 0, "X")), old)
    stale = state.lease_files(["pkg/mod.py"], "agent:a1/task:t1", ttl_s=5)
    clock.advance(6)
    newer = state.lease_files(["pkg/mod.py"], "agent:a2/task:t2", ttl_s=5)
    with pytest.raises(LeaseError, match="stale fencing token"):
        state.apply_mutation(mutation("t1", 0, TextEdit(0, 0, "X")), stale)
    state.apply_mutation(Mutation("t2", "a2", "pkg/mod.py", 0, (TextEdit(0, 0, "Y"),)), newer)
    assert state.read("pkg/mod.py")[0].startswith("Y")


def test_lease_must_cover_the_file(state: WorkspaceState, workspace: Path) -> None:
    (workspace / "other.py").write_text("x = 1\n")
    lease = state.lease_files(["other.py"], "agent:a1/task:t1")
    with pytest.raises(LeaseError, match="does not cover"):
        state.apply_mutation(mutation("t1", 0, TextEdit(0, 0, "X")), lease)


def test_multi_file_lease_is_all_or_nothing(state: WorkspaceState, workspace: Path) -> None:
    (workspace / "a.py").write_text("a\n")
    (workspace / "b.py").write_text("b\n")
    held = state.lease_files(["b.py"], "agent:a2/task:t2")
    with pytest.raises(LeaseConflict) as caught:
        state.lease_files(["a.py", "b.py"], "agent:a1/task:t1")
    assert caught.value.holder == "agent:a2/task:t2"
    assert caught.value.path == "b.py"
    # nothing was taken: a.py is free for a third agent
    third = state.lease_files(["a.py"], "agent:a3/task:t3")
    assert third.paths == ("a.py",)
    state.release(held)
    state.release(third)
    both = state.lease_files(["b.py", "a.py"], "agent:a1/task:t1")
    assert both.paths == ("a.py", "b.py")  # one global order


def test_user_is_never_blocked_by_a_lease(state: WorkspaceState) -> None:
    text, _ = state.read("pkg/mod.py")
    state.open_document("pkg/mod.py", text, 1)
    state.lease_files(["pkg/mod.py"], "agent:a1/task:t1")
    change = state.apply_user_change("pkg/mod.py", [TextEdit(0, 0, "u")], 2)
    assert change is not None and change.origin == "user"
    assert state.read("pkg/mod.py")[0] == "u" + text


async def test_a_waiting_agent_gets_the_files_when_their_lease_is_released(
    state: WorkspaceState,
) -> None:
    first = state.lease_files(["pkg/mod.py"], "agent:a1/task:t1", ttl_s=60)
    waiting = asyncio.create_task(
        state.wait_for_lease(["pkg/mod.py"], "agent:a2/task:t2", ttl_s=60, wait_s=30)
    )
    await asyncio.sleep(0)  # let it try once and park on the release signal
    assert not waiting.done()
    state.release(first)
    second = await asyncio.wait_for(waiting, 5)  # woken by the release, long before 30 s
    assert second.holder == "agent:a2/task:t2" and second.token > first.token


async def test_a_wait_for_a_lease_that_is_never_released_gives_up(state: WorkspaceState) -> None:
    state.lease_files(["pkg/mod.py"], "agent:a1/task:t1", ttl_s=60)
    with pytest.raises(LeaseConflict, match="held by agent:a1/task:t1"):
        await state.wait_for_lease(["pkg/mod.py"], "agent:a2/task:t2", ttl_s=60, wait_s=0.05)
