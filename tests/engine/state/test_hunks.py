"""Per-hunk review, known cases: what a hunk is, its stable id, accept and reject of one hunk
with the user's typing inside it, and the journal replay of hunk decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.protocol import Event, Mutation, TextEdit
from delegation_machine.engine.state import UnknownHunk, WorkspaceState

PATH = "m.py"
TEXT = "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\n"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / PATH).write_text(TEXT)
    return tmp_path


def opened(root: Path, events: list[Event] | None = None) -> WorkspaceState:
    state = WorkspaceState(root, record=events.append if events is not None else None)
    state.open_document(PATH, state.read(PATH)[0], 1)
    return state


def agent(state: WorkspaceState, task: str, edits: list[tuple[str, str]]) -> None:
    """The agent of `task` replaces each old string by its new one, in one mutation."""
    text, version = state.read(PATH)
    changes = tuple(
        sorted(
            (TextEdit(text.index(old), text.index(old) + len(old), new) for old, new in edits),
            key=lambda edit: edit.start,
        )
    )
    lease = state.lease_files([PATH], f"agent:a-{task}/task:{task}")
    state.apply_mutation(Mutation(task, f"a-{task}", PATH, version, changes), lease)
    state.release(lease)


def type_at(state: WorkspaceState, needle: str, typed: str, version: int, offset: int = 0) -> None:
    position = state.read(PATH)[0].index(needle) + offset
    state.apply_user_change(PATH, [TextEdit(position, position, typed)], version)


def test_each_changed_region_is_one_hunk_with_its_before_and_after(ws: Path) -> None:
    state = opened(ws)
    agent(state, "t1", [("a = 1", "a = 10"), ("d = 4\n", "")])
    hunks = state.hunks(["t1"])
    assert [(h.before, h.after) for h in hunks] == [("a = 1", "a = 10"), ("d = 4\n", "")]
    text = state.read(PATH)[0]
    assert [text[h.start : h.end] for h in hunks] == ["a = 10", ""]
    assert all(h.task_id == "t1" and h.path == PATH for h in hunks)
    assert len({h.hunk_id for h in hunks}) == 2


def test_changes_on_one_line_or_adjacent_lines_join_and_an_untouched_line_separates(
    ws: Path,
) -> None:
    state = opened(ws)
    agent(state, "t1", [("a = 1", "x = 9"), ("b = 2", "y = 2")])  # lines 1 and 2: one hunk
    agent(state, "t1", [("e = 5", "e = 6")])  # after two untouched lines: another hunk
    hunks = state.hunks(["t1"])
    assert [h.after for h in hunks] == ["x = 9\ny = 2", "e = 6"]
    assert hunks[0].before == "a = 1\nb = 2"


def test_user_typing_inside_a_hunk_survives_its_rejection_and_keeps_its_id(ws: Path) -> None:
    state = opened(ws)
    agent(state, "t1", [("a = 1", "a = 100"), ("c = 3", "c = 300")])
    first, second = state.hunks(["t1"])
    type_at(state, "100", "USER", 2, offset=1)  # a = 1USER00
    type_at(state, "b = 2", "# note\n", 3)  # beside it, between the hunks
    after_typing = state.hunks(["t1"])
    assert [h.hunk_id for h in after_typing] == [first.hunk_id, second.hunk_id]
    assert after_typing[0].after == "a = 1USER00"
    state.reject_hunk(["t1"], first.hunk_id)
    assert state.read(PATH)[0] == "a = 1USER\n# note\nb = 2\nc = 300\nd = 4\ne = 5\n"
    assert [h.hunk_id for h in state.hunks(["t1"])] == [second.hunk_id]


def test_accepted_hunk_stays_when_the_rest_of_the_task_is_rejected(ws: Path) -> None:
    state = opened(ws)
    agent(state, "t1", [("a = 1", "a = 10"), ("e = 5", "e = 50")])
    first, _ = state.hunks(["t1"])
    state.accept_hunk(["t1"], first.hunk_id)
    type_at(state, "50", "U", 2)
    assert state.reject_task("t1") == [PATH]
    # the old text comes back where it was, before what the user typed at its place
    assert state.read(PATH)[0] == "a = 10\nb = 2\nc = 3\nd = 4\ne = 5U\n"
    assert state.hunks(["t1"]) == []


def test_unknown_or_decided_hunks_are_refused_and_change_nothing(ws: Path) -> None:
    state = opened(ws)
    agent(state, "t1", [("a = 1", "a = 10")])
    (hunk,) = state.hunks(["t1"])
    with pytest.raises(UnknownHunk, match="no pending hunk 'h-nope'"):
        state.reject_hunk(["t1"], "h-nope")
    with pytest.raises(UnknownHunk):
        state.reject_hunk(["t2"], hunk.hunk_id)  # not that task's
    state.reject_hunk(["t1"], hunk.hunk_id)
    with pytest.raises(UnknownHunk):
        state.accept_hunk(["t1"], hunk.hunk_id)
    assert state.read(PATH)[0] == TEXT


def test_two_tasks_hunks_are_decided_independently(ws: Path) -> None:
    state = opened(ws)
    agent(state, "t1", [("a = 1", "a = 10")])
    agent(state, "t2", [("c = 3", "c = 30")])
    (mine,) = state.hunks(["t2"])
    state.reject_hunk(["t1", "t2"], mine.hunk_id)
    assert state.read(PATH)[0] == TEXT.replace("a = 1", "a = 10")
    assert [h.task_id for h in state.hunks(["t1", "t2"])] == ["t1"]


def test_without_task_is_the_text_with_every_pending_hunk_rejected(ws: Path) -> None:
    state = opened(ws)
    agent(state, "t1", [("a = 1", "a = 10"), ("d = 4\n", "")])
    type_at(state, "b", "B", 2)
    assert state.without_task(["t1"], PATH) == "a = 1\nBb = 2\nc = 3\nd = 4\ne = 5\n"


def test_a_rejected_hunk_is_a_recorded_change_that_the_ledger_replays(ws: Path) -> None:
    from delegation_machine.engine.state import restore_text

    events: list[Event] = []
    state = opened(ws, events)
    agent(state, "t1", [("a = 1", "a = 10"), ("e = 5", "e = 50")])
    state.reject_hunk(["t1"], state.hunks(["t1"])[1].hunk_id)
    changes = [e for e in events if e.kind == "file.changed"]
    assert changes[-1].payload["origin"].startswith("reject:hunk:t1#")
    numbered = [
        Event(e.kind, e.payload, e.task_id, e.agent_id, e.ts, n) for n, e in enumerate(events, 1)
    ]
    assert restore_text(numbered, PATH) == state.read(PATH)[0] == TEXT.replace("1\n", "10\n", 1)


def test_hunk_decisions_survive_a_restart(ws: Path) -> None:
    state = opened(ws)
    agent(state, "t1", [("a = 1", "a = 10"), ("c = 3", "c = 30"), ("e = 5", "e = 50")])
    first, second, third = state.hunks(["t1"])
    state.accept_hunk(["t1"], first.hunk_id)
    state.reject_hunk(["t1"], second.hunk_id)
    state.close_document(PATH)
    state.close()
    restarted = WorkspaceState(ws)
    assert restarted.read(PATH)[0] == "a = 10\nb = 2\nc = 3\nd = 4\ne = 50\n"
    assert [h.hunk_id for h in restarted.hunks(["t1"])] == [third.hunk_id]
    restarted.reject_task("t1")  # the accepted hunk stays, the rejected one is not doubled
    assert restarted.read(PATH)[0] == "a = 10\nb = 2\nc = 3\nd = 4\ne = 5\n"
