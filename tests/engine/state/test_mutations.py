"""Agent edits computed against a snapshot land in the right place after the user typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import MutationRefused, TextChange, WorkspaceState

SOURCE = "def f():\n    return 1\n\n\ndef g():\n    return 2\n"
PATH = "pkg/mod.py"


def agent_replace(
    state: WorkspaceState, base_text: str, base_version: int, old: str, new: str
) -> None:
    start = base_text.index(old)
    lease = state.lease_files([PATH], "agent:a1/task:t1")
    state.apply_mutation(
        Mutation("t1", "a1", PATH, base_version, (TextEdit(start, start + len(old), new),)), lease
    )
    state.release(lease)


def open_and_type(state: WorkspaceState, offset: int, typed: str) -> None:
    text, _ = state.read(PATH)
    if not state.is_open(PATH):
        state.open_document(PATH, text, 1)
    for n, char in enumerate(typed):
        state.apply_user_change(PATH, [TextEdit(offset + n, offset + n, char)], 2 + n)


def test_user_typing_above_the_region(state: WorkspaceState) -> None:
    base, version = state.read(PATH)
    open_and_type(state, 0, "import os\n")
    agent_replace(state, base, version, "return 2", "return 20")
    assert state.read(PATH)[0] == "import os\n" + SOURCE.replace("return 2", "return 20")


def test_user_typing_below_the_region(state: WorkspaceState) -> None:
    base, version = state.read(PATH)
    open_and_type(state, len(base), "# end\n")
    agent_replace(state, base, version, "return 1", "return 10")
    assert state.read(PATH)[0] == SOURCE.replace("return 1", "return 10") + "# end\n"


def test_user_typing_inside_the_region_keeps_every_keystroke(state: WorkspaceState) -> None:
    base, version = state.read(PATH)
    inside = base.index("return 2") + len("return ")
    open_and_type(state, inside, "4")  # "return 42"
    agent_replace(state, base, version, "return 2", "return 3")
    text = state.read(PATH)[0]
    assert "4" in text[text.index("def g") :]
    assert "return 3" in text
    assert text.startswith(SOURCE[: SOURCE.index("def g")])
    # the agent deleted only what it saw: "return 2" minus nothing the user typed
    assert text.endswith("def g():\n    return 34\n")


def test_offsets_are_code_points_with_emoji_and_cjk(state: WorkspaceState, workspace: Path) -> None:
    (workspace / "u.txt").write_text("a😀b中c\n", encoding="utf-8")
    base, version = state.read("u.txt")
    lease = state.lease_files(["u.txt"], "agent:a1/task:t1")
    state.open_document("u.txt", base, 1)
    state.apply_user_change("u.txt", [TextEdit(1, 2, "🎉🎉")], 2)  # replace the emoji
    state.apply_mutation(
        Mutation("t1", "a1", "u.txt", version, (TextEdit(3, 4, "文"),)), lease
    )  # replace 中 (code point 3 at the base)
    assert state.read("u.txt")[0] == "a🎉🎉b文c\n"


def test_subscribers_see_edits_against_the_previous_text(state: WorkspaceState) -> None:
    seen: list[TextChange] = []
    unsubscribe = state.subscribe(seen.append)
    base, version = state.read(PATH)
    agent_replace(state, base, version, "return 1", "return 10")
    unsubscribe()
    agent_replace(state, state.read(PATH)[0], state.read(PATH)[1], "return 2", "return 5")
    assert len(seen) == 1
    change = seen[0]
    assert change.origin == "agent:a1/task:t1" and change.version == version + 1
    rebuilt = base
    for edit in reversed(change.edits):
        rebuilt = rebuilt[: edit.start] + edit.new_text + rebuilt[edit.end :]
    assert rebuilt == SOURCE.replace("return 1", "return 10")


def test_mutation_with_out_of_range_edits_is_refused_and_changes_nothing(
    state: WorkspaceState,
) -> None:
    text, version = state.read(PATH)
    lease = state.lease_files([PATH], "agent:a1/task:t1")
    with pytest.raises(MutationRefused, match="outside the text"):
        state.apply_mutation(
            Mutation("t1", "a1", PATH, version, (TextEdit(0, len(text) + 5, ""),)), lease
        )
    with pytest.raises(MutationRefused, match="unknown"):
        state.apply_mutation(Mutation("t1", "a1", PATH, version + 7, (TextEdit(0, 0, "x"),)), lease)
    assert state.read(PATH) == (text, version)


def test_base_version_older_than_history_is_refused(workspace: Path) -> None:
    small = WorkspaceState(workspace, persist=False, history_limit=2)
    text, version = small.read(PATH)
    small.open_document(PATH, text, 1)
    for n in range(3):
        small.apply_user_change(PATH, [TextEdit(0, 0, "x")], 2 + n)
    lease = small.lease_files([PATH], "agent:a1/task:t1")
    with pytest.raises(MutationRefused, match="older than the kept history"):
        small.apply_mutation(Mutation("t1", "a1", PATH, version, (TextEdit(0, 0, "y"),)), lease)


def test_agent_can_create_a_new_file_from_version_zero(
    state: WorkspaceState, workspace: Path
) -> None:
    lease = state.lease_files(["new/file.py"], "agent:a1/task:t1")
    state.apply_mutation(
        Mutation("t1", "a1", "new/file.py", 0, (TextEdit(0, 0, "x = 1\n"),)), lease
    )
    assert state.read("new/file.py") == ("x = 1\n", 1)
    assert state.flush("new/file.py")
    assert (workspace / "new" / "file.py").read_text() == "x = 1\n"
