"""Property tests of per-hunk review over random interleavings of agents, the user and hunk
decisions.

Every inserted character is unique (CJK code points), so the tests can say who wrote what.
Checked after every rejection of a hunk H: the rejection replaced exactly H's range by H's
`before`; H's agent text is gone; every other character — every other hunk's agent text and
everything the user typed — is still there, in order. Also: rejecting every hunk one by one
ends where the CRDT's own undo of the whole task ends, and a restarted state (journal replay)
lists the same hunks.
"""

from __future__ import annotations

import tempfile
from itertools import count
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import WorkspaceState

PATH = "f.txt"
TASKS = {"a1": "t1", "a2": "t2"}
LINES = 6


class World:
    """A state and the model of who wrote which character."""

    def __init__(self, root: Path) -> None:
        self.fresh = (chr(0x4E00 + n) for n in count())
        initial = "".join(self.unique(4) + "\n" for _ in range(LINES))
        (root / PATH).write_text(initial, encoding="utf-8")
        self.state = WorkspaceState(root)
        self.state.open_document(PATH, self.state.read(PATH)[0], 1)
        self.lsp_version = 1
        self.user_typed: list[str] = []  # in the order they were typed
        self.user_deleted: set[str] = set()
        self.inserted_by: dict[str, set[str]] = {task: set() for task in TASKS.values()}
        self.deleted_by: dict[str, set[str]] = {task: set() for task in TASKS.values()}

    def unique(self, n: int) -> str:
        return "".join(next(self.fresh) for _ in range(n))

    def text(self) -> str:
        return self.state.read(PATH)[0]

    def user_type(self, where: float, n: int) -> None:
        position = int(where * len(self.text()))
        typed = self.unique(n)
        self.user_typed.extend(typed)
        self.lsp_version += 1
        self.state.apply_user_change(PATH, [TextEdit(position, position, typed)], self.lsp_version)

    def user_delete(self, where: float, n: int) -> None:
        text = self.text()
        start = int(where * len(text))
        end = min(len(text), start + n)
        self.user_deleted |= set(text[start:end])
        self.lsp_version += 1
        self.state.apply_user_change(PATH, [TextEdit(start, end, "")], self.lsp_version)

    def agent_edit(self, agent: str, where: float, n_insert: int, n_delete: int) -> None:
        text, version = self.state.read(PATH)
        start = int(where * len(text))
        end = min(len(text), start + n_delete)
        while end > start and set(text[start:end]) & set(self.user_typed):
            end -= 1  # agents do not delete the user's own typing
        inserted = self.unique(n_insert) + ("\n" if n_insert > 2 else "")
        task = TASKS[agent]
        lease = self.state.lease_files([PATH], f"agent:{agent}/task:{task}")
        self.deleted_by[task] |= set(text[start:end])
        self.state.apply_mutation(
            Mutation(task, agent, PATH, version, (TextEdit(start, end, inserted),)), lease
        )
        self.state.release(lease)
        self.inserted_by[task] |= set(inserted) - {"\n"}

    def user_typing_present(self, text: str) -> None:
        assert set(self.user_typed) - self.user_deleted <= set(text)


fraction = st.floats(min_value=0, max_value=1, allow_nan=False)
operation = st.one_of(
    st.tuples(st.just("type"), fraction, st.integers(1, 3)),
    st.tuples(st.just("delete"), fraction, st.integers(1, 3)),
    st.tuples(
        st.just("agent"),
        st.sampled_from(sorted(TASKS)),
        fraction,
        st.integers(0, 4),
        st.integers(0, 5),
    ),
    st.tuples(st.just("reject"), st.integers(0, 7)),
    st.tuples(st.just("accept"), st.integers(0, 7)),
)


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    remaining = iter(haystack)
    return all(c in remaining for c in needle)


def reject_one(world: World, pick: int) -> None:
    hunks = world.state.hunks(sorted(TASKS.values()))
    if not hunks:
        return
    hunk = hunks[pick % len(hunks)]
    text = world.text()
    assert text[hunk.start : hunk.end] == hunk.after
    world.state.reject_hunk([hunk.task_id], hunk.hunk_id)
    after = world.text()
    # exactly the hunk's range changed, into its `before`
    assert after == text[: hunk.start] + hunk.before + text[hunk.end :]
    own = world.inserted_by[hunk.task_id]
    removed = [c for c in hunk.after if c in own]
    # the hunk's agent text is gone, and only it
    assert not set(removed) & set(after)
    # inside it, everything but its agent text stays in order, and only what the task deleted
    # comes back (line breaks are not unique, so they are left out of the comparison)
    kept = [c for c in hunk.after if c not in own and c != "\n"]
    assert is_subsequence(kept, [c for c in hunk.before if c != "\n"])
    assert set(hunk.before) - set(kept) - {"\n"} <= world.deleted_by[hunk.task_id]
    # every other pending hunk's agent text is intact
    for other in hunks:
        if other.hunk_id != hunk.hunk_id:
            assert {c for c in other.after if c in world.inserted_by[other.task_id]} <= set(after)
    assert hunk.hunk_id not in {h.hunk_id for h in world.state.hunks(sorted(TASKS.values()))}
    for task in TASKS.values():  # text it brought back (even another agent's) is ordinary now
        world.inserted_by[task] -= set(hunk.before) - set(hunk.after)
    world.user_typing_present(after)


def accept_one(world: World, pick: int) -> None:
    hunks = world.state.hunks(sorted(TASKS.values()))
    if hunks:
        hunk = hunks[pick % len(hunks)]
        text = world.text()
        world.state.accept_hunk([hunk.task_id], hunk.hunk_id)
        assert world.text() == text
        world.inserted_by[hunk.task_id] -= set(hunk.after)  # ordinary text now


def run(world: World, op: tuple) -> None:  # type: ignore[type-arg]
    kind = op[0]
    if kind == "type":
        world.user_type(op[1], op[2])
    elif kind == "delete":
        world.user_delete(op[1], op[2])
    elif kind == "agent":
        world.agent_edit(op[1], op[2], op[3], op[4])
    elif kind == "reject":
        reject_one(world, op[1])
    else:
        accept_one(world, op[1])
    text = world.text()
    for hunk in world.state.hunks(sorted(TASKS.values())):
        assert text[hunk.start : hunk.end] == hunk.after


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=30))
def test_rejecting_a_hunk_removes_only_it_and_keeps_every_keystroke(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as folder:
        world = World(Path(folder))
        for op in ops:
            run(world, op)
        while world.state.hunks(sorted(TASKS.values())):
            reject_one(world, 0)
        world.user_typing_present(world.text())
        # a restarted state replays the journal: hunks and text agree with this one
        world.state.close_document(PATH)
        expected = world.state.hunks(sorted(TASKS.values()))
        restarted = WorkspaceState(Path(folder))
        assert restarted.read(PATH)[0] == world.text()
        assert restarted.hunks(sorted(TASKS.values())) == expected


agent_or_user = st.one_of(
    st.tuples(st.just("type"), fraction, st.integers(1, 3)),
    st.tuples(st.just("delete"), fraction, st.integers(1, 3)),
    st.tuples(
        st.just("agent"),
        st.sampled_from(sorted(TASKS)),
        fraction,
        st.integers(0, 4),
        st.integers(0, 5),
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(agent_or_user, min_size=1, max_size=25), st.sampled_from(sorted(TASKS.values())))
def test_rejecting_every_hunk_ends_where_undoing_the_whole_task_ends(
    ops: list[tuple],  # type: ignore[type-arg]
    task: str,
) -> None:
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        whole, by_hunk = World(Path(one)), World(Path(two))
        for op in ops:
            run(whole, op)
            run(by_hunk, op)
        assert whole.text() == by_hunk.text()
        whole.state.reject_task(task)
        while hunks := by_hunk.state.hunks([task]):
            by_hunk.state.reject_hunk([task], hunks[-1].hunk_id)
        assert by_hunk.text() == whole.text()
        # and the other task is still pending, with the same hunks, in both
        other = next(t for t in TASKS.values() if t != task)
        assert [(h.start, h.end, h.before, h.after) for h in whole.state.hunks([other])] == [
            (h.start, h.end, h.before, h.after) for h in by_hunk.state.hunks([other])
        ]
