"""reject removes exactly one task's insertions and restores its deletions; accept finalises."""

from __future__ import annotations

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import TextChange, WorkspaceState

PATH = "pkg/mod.py"


def apply(state: WorkspaceState, task: str, agent: str, edits: list[TextEdit]) -> None:
    _, version = state.read(PATH)
    lease = state.lease_files([PATH], f"agent:{agent}/task:{task}")
    state.apply_mutation(Mutation(task, agent, PATH, version, tuple(edits)), lease)
    state.release(lease)


def at(text: str, needle: str) -> int:
    return text.index(needle)


def test_reject_after_later_user_and_agent_edits(state: WorkspaceState) -> None:
    text, _ = state.read(PATH)
    state.open_document(PATH, text, 1)
    # task t1 replaces "return 1" by "return one" and deletes "def g" body's "2"
    apply(
        state,
        "t1",
        "a1",
        [
            TextEdit(at(text, "1\n"), at(text, "1\n") + 1, "one"),
            TextEdit(at(text, "2\n"), at(text, "2\n") + 1, ""),
        ],
    )
    after_t1 = state.read(PATH)[0]
    assert "return one" in after_t1 and "return \n" in after_t1
    # the user types inside t1's insertion and at the top; agent a2 edits nearby
    position = at(after_t1, "one") + 1
    state.apply_user_change(PATH, [TextEdit(position, position, "U")], 2)
    state.apply_user_change(PATH, [TextEdit(0, 0, "# top\n")], 3)
    current = state.read(PATH)[0]
    apply(state, "t2", "a2", [TextEdit(at(current, "def g"), at(current, "def g") + 5, "def h")])
    changed = state.reject_task("t1")
    assert changed == [PATH]
    final = state.read(PATH)[0]
    # t1's insertion is gone except the user's keystroke inside it; its deletion is back
    assert final == "# top\ndef f():\n    return 1U\n\n\ndef h():\n    return 2\n"
    assert state.pending_tasks(PATH) == ["t2"]


def test_reject_announces_the_undo_with_a_reject_origin(state: WorkspaceState) -> None:
    seen: list[TextChange] = []
    state.subscribe(seen.append)
    apply(state, "t1", "a1", [TextEdit(0, 0, "# added\n")])
    state.reject_task("t1")
    assert [c.origin for c in seen] == ["agent:a1/task:t1", "reject:task:t1"]
    assert state.read(PATH)[0].startswith("def f")


def test_accept_finalises_so_a_later_reject_changes_nothing(state: WorkspaceState) -> None:
    apply(state, "t1", "a1", [TextEdit(0, 0, "# kept\n")])
    assert state.accept_task("t1") == [PATH]
    assert state.reject_task("t1") == []
    assert state.read(PATH)[0].startswith("# kept\n")


def test_reject_of_one_task_keeps_another_tasks_edits_to_the_same_lines(
    state: WorkspaceState,
) -> None:
    text, _ = state.read(PATH)
    apply(state, "t1", "a1", [TextEdit(at(text, "1\n"), at(text, "1\n"), "10")])  # "return 101"
    current = state.read(PATH)[0]
    apply(state, "t2", "a2", [TextEdit(at(current, "101"), at(current, "101"), "-")])
    assert "return -101" in state.read(PATH)[0]
    state.reject_task("t1")
    assert "return -1\n" in state.read(PATH)[0]


def test_reject_spans_several_files(state: WorkspaceState, workspace) -> None:  # type: ignore[no-untyped-def]
    (workspace / "b.py").write_text("b = 1\n")
    lease = state.lease_files([PATH, "b.py"], "agent:a1/task:t1")
    for path in (PATH, "b.py"):
        _, version = state.read(path)
        state.apply_mutation(Mutation("t1", "a1", path, version, (TextEdit(0, 0, "#\n"),)), lease)
    assert state.reject_task("t1") == ["b.py", PATH]
    assert state.read("b.py")[0] == "b = 1\n"
