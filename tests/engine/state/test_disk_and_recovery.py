"""Disk mirror (atomic, permissions kept, own writes not re-ingested, external merges) and
recovery of CRDT state across a restart, plus replaying a file from the ledger's events."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from delegation_machine.engine.protocol import Event, Mutation, TextEdit
from delegation_machine.engine.state import (
    DocumentNotOpen,
    ReplayGap,
    WorkspaceState,
    WorkspaceWatcher,
    restore_text,
)

PATH = "pkg/mod.py"


def agent_edit(state: WorkspaceState, task: str, edit: TextEdit, path: str = PATH) -> None:
    _, version = state.read(path)
    lease = state.lease_files([path], f"agent:a1/task:{task}")
    state.apply_mutation(Mutation(task, "a1", path, version, (edit,)), lease)
    state.release(lease)


def test_flush_is_atomic_and_keeps_permissions(state: WorkspaceState, workspace: Path) -> None:
    target = workspace / PATH
    os.chmod(target, 0o751)
    inode_before = target.stat().st_ino
    agent_edit(state, "t1", TextEdit(0, 0, "# agent\n"))
    assert state.is_dirty(PATH)
    assert state.flush(PATH)
    assert target.read_text().startswith("# agent\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o751
    assert target.stat().st_ino != inode_before  # replaced by rename, never written in place
    assert not state.is_dirty(PATH)
    assert not state.flush(PATH)
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".dm-tmp")] == []


def test_open_documents_are_not_flushed(state: WorkspaceState, workspace: Path) -> None:
    text, _ = state.read(PATH)
    state.open_document(PATH, text, 1)
    agent_edit(state, "t1", TextEdit(0, 0, "# agent\n"))
    assert state.flush_all() == []
    state.close_document(PATH)
    assert state.flush_all() == [PATH]


def test_own_writes_are_not_ingested_again(state: WorkspaceState) -> None:
    agent_edit(state, "t1", TextEdit(0, 0, "# agent\n"))
    state.flush(PATH)
    version = state.read(PATH)[1]
    assert state.is_own_write(PATH)
    assert state.ingest_disk_change(PATH) is None
    assert state.read(PATH)[1] == version


def test_external_change_merges_as_disk_with_unsaved_edits(
    state: WorkspaceState, workspace: Path
) -> None:
    agent_edit(state, "t1", TextEdit(0, 0, "# agent\n"))  # unsaved agent edit
    (workspace / PATH).write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n# disk\n")
    change = state.ingest_disk_change(PATH)
    assert change is not None and change.origin == "disk"
    assert state.read(PATH)[0] == (
        "# agent\ndef f():\n    return 1\n\n\ndef g():\n    return 2\n# disk\n"
    )
    assert not state.is_own_write(PATH)


def test_user_changes_need_an_open_document(state: WorkspaceState) -> None:
    state.read(PATH)
    with pytest.raises(DocumentNotOpen):
        state.apply_user_change(PATH, [TextEdit(0, 0, "x")], 1)


def test_unsaved_agent_edits_to_closed_files_survive_a_restart(workspace: Path) -> None:
    first = WorkspaceState(workspace)
    agent_edit(first, "t1", TextEdit(0, 0, "# t1\n"))
    agent_edit(first, "t2", TextEdit(0, 0, "# t2\n"))
    expected = first.read(PATH)[0]
    del first  # no flush: the process "crashed"
    assert not (workspace / PATH).read_text().startswith("#")
    second = WorkspaceState(workspace)
    assert second.restore_from_journal() == [PATH]
    assert second.read(PATH)[0] == expected
    # the pending tasks can still be rejected one by one after the restart
    assert second.pending_tasks(PATH) == ["t1", "t2"]
    second.reject_task("t1")
    assert second.read(PATH)[0] == "# t2\n" + expected.split("\n", 2)[2]
    third = WorkspaceState(workspace)
    assert third.read(PATH)[0] == second.read(PATH)[0]
    assert third.pending_tasks(PATH) == ["t2"]


def test_flush_with_no_pending_task_compacts_the_journal(workspace: Path) -> None:
    first = WorkspaceState(workspace)
    for n in range(50):
        agent_edit(first, "t1", TextEdit(0, 0, f"# {n}\n"))
    journal = workspace / ".delegation" / "crdt"
    (journal_file,) = journal.glob("*.yjournal")
    first.flush(PATH)  # t1 still pending: the history must stay
    size_pending = journal_file.stat().st_size
    first.accept_task("t1")
    agent_edit(first, "t2", TextEdit(0, 0, "# last\n"))
    first.accept_task("t2")
    assert first.flush(PATH)  # nothing left to reject: compacted
    assert journal_file.stat().st_size < size_pending
    second = WorkspaceState(workspace)
    assert second.read(PATH)[0] == first.read(PATH)[0] == (workspace / PATH).read_text()
    assert second.pending_tasks(PATH) == []


def test_restart_merges_external_changes_made_while_down(workspace: Path) -> None:
    first = WorkspaceState(workspace)
    agent_edit(first, "t1", TextEdit(0, 0, "# t1\n"))
    del first
    path = workspace / PATH
    path.write_text(path.read_text() + "# while down\n")
    second = WorkspaceState(workspace)
    text = second.read(PATH)[0]
    assert text.startswith("# t1\n") and text.endswith("# while down\n")


def test_file_state_at_any_ledger_step(state: WorkspaceState, events: list[Event]) -> None:
    texts = [state.read(PATH)[0]]
    for n in range(4):
        agent_edit(state, f"t{n}", TextEdit(n, n + 1, f"<{n}>"))
        texts.append(state.read(PATH)[0])
    state.reject_task("t2")
    texts.append(state.read(PATH)[0])
    assert [e.kind for e in events][:2] == ["file.loaded", "file.changed"]
    for step, event in enumerate(events):
        assert restore_text(events, PATH, upto_seq=event.seq) == texts[step]
    with pytest.raises(ReplayGap):
        restore_text(events[1:], PATH)


async def test_watcher_reports_external_changes_and_ignores_private_folders(
    workspace: Path,
) -> None:
    seen: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    watcher = WorkspaceWatcher(workspace, lambda rel, kind: seen.put_nowait((rel, kind)))
    watcher.start()
    try:
        (workspace / ".delegation").mkdir(exist_ok=True)
        (workspace / ".delegation" / "x").write_text("ignored")
        (workspace / ".git").mkdir()
        (workspace / ".git" / "HEAD").write_text("ignored")
        (workspace / "pkg" / "new.py").write_text("x = 1\n")
        async with asyncio.timeout(10):
            rel, kind = await seen.get()
        assert rel == "pkg/new.py" and kind in ("created", "modified")
    finally:
        watcher.stop()
