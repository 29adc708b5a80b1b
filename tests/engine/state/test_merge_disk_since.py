"""`merge_disk_since`: a save on disk while a holder that does not reload (an ACP session
without the client's buffers) kept the file open is taken in three-way on release, beside the
agent's unsaved edit, never twice, and never into a document still open."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import StateError, WorkspaceState

PATH = "pkg/mod.py"


def agent_edit(state: WorkspaceState, task: str, edit: TextEdit) -> None:
    _, version = state.read(PATH)
    lease = state.lease_files([PATH], f"agent:a1/task:{task}")
    state.apply_mutation(Mutation(task, "a1", PATH, version, (edit,)), lease)
    state.release(lease)


def test_a_save_while_held_is_merged_beside_the_agent_edit(
    state: WorkspaceState, workspace: Path
) -> None:
    target = workspace / PATH
    original = state.read(PATH)[0]
    agent_edit(state, "t1", TextEdit(len(original), len(original), "# agent\n"))
    base = state.disk_text(PATH)
    assert base == original
    state.open_document(PATH, state.read(PATH)[0], 1)
    target.write_text("# saved\n" + original)
    assert state.ingest_disk_change(PATH) is None  # open: only remembered, not merged (053)
    with pytest.raises(StateError, match="close the document"):
        state.merge_disk_since(PATH, base)
    state.close_document(PATH)
    change = state.merge_disk_since(PATH, base)
    assert change is not None and change.origin == "disk"
    merged = "# saved\n" + original + "# agent\n"
    assert state.read(PATH)[0] == merged
    assert state.disk_text(PATH) == "# saved\n" + original
    # Taken in once: the disk text is now the base, so the same save is not merged again.
    assert state.merge_disk_since(PATH, "# saved\n" + original) is None
    assert state.flush(PATH) and target.read_text() == merged


def test_nothing_saved_meanwhile_changes_nothing(state: WorkspaceState) -> None:
    original = state.read(PATH)[0]
    agent_edit(state, "t1", TextEdit(0, 0, "# agent\n"))
    version = state.read(PATH)[1]
    assert state.merge_disk_since(PATH, original) is None
    assert state.read(PATH) == ("# agent\n" + original, version)
    assert state.merge_disk_since("pkg/not_loaded.py", "") is None
