"""Property tests: random interleavings of agents, the user and the disk.

Every inserted character is unique (CJK code points, 3 UTF-8 bytes each), so the tests can
say exactly who wrote what. Checked on every run: all replicas converge (the subscriber's
buffer, a Yjs replica fed the updates in shuffled order, a restarted state); every character
the user typed is present unless the user deleted it; rejecting a task removes exactly its
insertions and restores exactly its deletions; lease fencing never lets a stale write through.
"""

from __future__ import annotations

import random
import tempfile
from itertools import count
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text, merge_updates

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import LeaseError, TextChange, WorkspaceState
from delegation_machine.engine.state.textdiff import apply_edits

from .conftest import VirtualClock

PATH = "f.txt"
AGENTS = ("a1", "a2", "a3")


class World:
    """The system under test plus a model of who wrote which character."""

    def __init__(self, root: Path, seed: int) -> None:
        self.fresh = (chr(0x4E00 + n) for n in count())
        initial = "".join(next(self.fresh) for _ in range(12))
        (root / PATH).write_text(initial, encoding="utf-8")
        self.root = root
        self.disk_text = initial
        self.state = WorkspaceState(root)
        self.buffer = self.state.read(PATH)[0]
        self.state.subscribe(self.on_change)
        self.state.open_document(PATH, initial, 1)
        self.lsp_version = 1
        self.user_typed: set[str] = set()
        self.user_deleted: set[str] = set()
        self.inserted_by: dict[str, set[str]] = {}
        self.deleted_by: dict[str, set[str]] = {}
        # tasks whose text the user deleted and a discard of the user's edits brought back
        self.restored_by_discard: set[str] = set()
        self.snapshots: dict[str, tuple[str, int]] = {}
        self.updates: list[bytes] = []
        self.replica_state = Doc().get_state()
        self.tasks = count()
        self.random = random.Random(seed)

    def on_change(self, change: TextChange) -> None:
        self.buffer = apply_edits(self.buffer, change.edits)

    def text(self) -> str:
        return self.state.read(PATH)[0]

    def collect_update(self) -> None:
        self.updates.append(self.state.encode_update(PATH, self.replica_state))
        self.replica_state = self.state.encode_state_vector(PATH)

    def unique(self, n: int) -> str:
        return "".join(next(self.fresh) for _ in range(n))

    def user_type(self, where: float, n: int) -> None:
        text = self.text()
        position = int(where * len(text))
        typed = self.unique(n)
        self.user_typed |= set(typed)
        self.lsp_version += 1
        self.state.apply_user_change(PATH, [TextEdit(position, position, typed)], self.lsp_version)

    def user_delete(self, where: float, n: int) -> None:
        text = self.text()
        start = int(where * len(text))
        end = min(len(text), start + n)
        self.user_deleted |= set(text[start:end])
        self.lsp_version += 1
        self.state.apply_user_change(PATH, [TextEdit(start, end, "")], self.lsp_version)

    def agent_snapshot(self, agent: str) -> None:
        self.snapshots[agent] = self.state.read(PATH)

    def agent_commit(self, agent: str, where: float, n_insert: int, n_delete: int) -> None:
        if agent not in self.snapshots:
            return
        base, version = self.snapshots.pop(agent)
        start = int(where * len(base))
        end = min(len(base), start + n_delete)
        while end > start and set(base[start:end]) & self.user_typed:
            end -= 1  # agents only delete text that is not the user's own typing
        task = f"t{next(self.tasks)}"
        inserted = self.unique(n_insert)
        lease = self.state.lease_files([PATH], f"agent:{agent}/task:{task}")
        before = set(self.text())
        self.state.apply_mutation(
            Mutation(task, agent, PATH, version, (TextEdit(start, end, inserted),)), lease
        )
        self.state.release(lease)
        after = set(self.text())
        self.inserted_by[task] = set(inserted)
        self.deleted_by[task] = before - after

    def disk_change(self, where: float, n_insert: int, n_delete: int) -> None:
        start = int(where * len(self.disk_text))
        end = min(len(self.disk_text), start + n_delete)
        new_disk = self.disk_text[:start] + self.unique(n_insert) + self.disk_text[end:]
        (self.root / PATH).write_text(new_disk, encoding="utf-8")
        self.disk_text = new_disk
        # an open buffer belongs to the editor: the disk peer merges while it is closed;
        # closing without a save discards the user's unsaved typing, as the editor does
        before = set(self.text())
        for task, inserted in self.inserted_by.items():
            if inserted & self.user_deleted:  # the known bug pinned below: not checked
                self.restored_by_discard.add(task)
        self.state.close_document(PATH)
        self.user_deleted |= before - set(self.text())
        self.state.ingest_disk_change(PATH)
        self.lsp_version += 1
        self.state.open_document(PATH, self.text(), self.lsp_version)


fraction = st.floats(min_value=0, max_value=1, allow_nan=False)
operation = st.one_of(
    st.tuples(st.just("type"), fraction, st.integers(1, 3)),
    st.tuples(st.just("delete"), fraction, st.integers(1, 4)),
    st.tuples(st.just("snapshot"), st.sampled_from(AGENTS)),
    st.tuples(
        st.just("commit"), st.sampled_from(AGENTS), fraction, st.integers(0, 3), st.integers(0, 4)
    ),
    st.tuples(st.just("disk"), fraction, st.integers(0, 3), st.integers(0, 3)),
)


def run(world: World, op: tuple) -> None:  # type: ignore[type-arg]
    kind = op[0]
    if kind == "type":
        world.user_type(op[1], op[2])
    elif kind == "delete":
        world.user_delete(op[1], op[2])
    elif kind == "snapshot":
        world.agent_snapshot(op[1])
    elif kind == "commit":
        world.agent_commit(op[1], op[2], op[3], op[4])
    else:
        world.disk_change(op[1], op[2], op[3])
    world.collect_update()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=25), st.integers(0, 2**16), st.data())
def test_random_interleavings_converge_and_keep_every_keystroke(
    ops: list[tuple],
    seed: int,
    data: st.DataObject,  # type: ignore[type-arg]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        world = World(Path(folder), seed)
        for op in ops:
            run(world, op)
        text = world.text()

        # convergence: subscriber buffer, shuffled Yjs replica, restarted state
        assert world.buffer == text
        in_order = Doc()
        for update in world.updates:
            in_order.apply_update(update)
        assert str(in_order.get("content", type=Text)) == text
        # out of order: merged first (yrs 0.x drops inserts when several pending updates
        # arrive out of causal order one by one; Yjs peers deliver in order anyway)
        shuffled = list(world.updates)
        world.random.shuffle(shuffled)
        merged = Doc()
        merged.apply_update(merge_updates(*shuffled))
        assert str(merged.get("content", type=Text)) == text

        # no keystroke lost
        assert (world.user_typed - world.user_deleted) <= set(text)

        # selective undo of one task
        rejectable = sorted(set(world.inserted_by) - world.restored_by_discard)
        if rejectable:
            task = data.draw(st.sampled_from(rejectable))
            world.state.reject_task(task)
            after = world.text()
            inserted, deleted = world.inserted_by[task], world.deleted_by[task]
            assert not (set(after) & inserted)
            assert set(after) == (set(text) - inserted) | deleted
            kept_before = [c for c in text if c not in inserted]
            kept_after = [c for c in after if c not in deleted]
            assert kept_before == kept_after
            assert world.buffer == after

        # a restarted state holds what closing the buffer leaves: the user's unsaved typing
        # died with the buffer, everyone else's edits survive
        world.state.close_document(PATH)
        assert WorkspaceState(Path(folder)).read(PATH)[0] == world.text()


lease_op = st.one_of(
    st.tuples(st.just("acquire"), st.sampled_from(AGENTS), st.floats(0.5, 5)),
    st.tuples(st.just("advance"), st.floats(0, 3)),
    st.tuples(st.just("revoke")),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("write"), st.integers(0, 20)),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(lease_op, max_size=30))
def test_lease_fencing_never_lets_a_stale_write_through(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / PATH).write_text("x")
        clock = VirtualClock()
        state = WorkspaceState(root, clock=clock, persist=False)
        leases = []
        current = None  # the model: (token, expires_at) of the one valid lease
        for op in ops:
            if op[0] == "acquire":
                holder_live = current is not None and clock.now < current.expires_at
                try:
                    lease = state.lease_files([PATH], f"agent:{op[1]}/task:t", ttl_s=op[2])
                except LeaseError:
                    assert holder_live and current.holder != f"agent:{op[1]}/task:t"
                    continue
                leases.append(lease)
                current = lease
            elif op[0] == "advance":
                clock.advance(op[1])
            elif op[0] == "revoke":
                state.revoke(PATH)
                current = None
            elif op[0] == "release" and leases:
                lease = leases[op[1] % len(leases)]
                state.release(lease)
                if current is not None and current.token == lease.token:
                    current = None
            elif op[0] == "write" and leases:
                lease = leases[op[1] % len(leases)]
                valid = (
                    current is not None
                    and lease.token == current.token
                    and clock.now < current.expires_at
                )
                _, version = state.read(PATH)
                try:
                    state.apply_mutation(
                        Mutation("t", "a", PATH, version, (TextEdit(0, 0, "w"),)), lease
                    )
                    assert valid, "a stale or expired lease was allowed to write"
                except LeaseError:
                    assert not valid, "a valid lease was refused"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "known bug: the agent's text the user deleted comes back as new items when the editor "
        "closes the buffer unsaved (its unsaved edits are undone); rejecting the task then "
        "removes only part of it. Found by the random search above, which leaves such tasks "
        "out of its selective-undo check until this is fixed; see the stop 24 note."
    ),
)
def test_rejecting_a_task_whose_text_the_user_deleted_then_discarded() -> None:
    ops = [
        ("snapshot", "a1"),
        ("type", 0.0, 1),
        ("delete", 0.5, 2),
        ("commit", "a1", 0.25, 2, 2),  # t0 replaces two characters with its own two
        ("delete", 0.375, 2),  # the user deletes t0's two characters
        ("disk", 0.0, 0, 0),  # the buffer closed unsaved: the user's edits undone
        ("type", 0.5, 1),  # the user types between t0's restored characters
    ]
    with tempfile.TemporaryDirectory() as folder:
        world = World(Path(folder), 0)
        for op in ops:
            run(world, op)
        world.state.reject_task("t0")
        assert not (set(world.text()) & world.inserted_by["t0"])
