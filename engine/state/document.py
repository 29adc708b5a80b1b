"""One file's CRDT replica: a pycrdt Doc, its code-point mirror, version history and undo.

Owns the Doc of one file and the invariants tying it to Python text: `text` always equals the
Doc's content; `version` increases by exactly one per committed transaction that changed the
text; `history` keeps the code-point edits of the last `history_limit` versions so that edits
made against an older version can be rebased. Each pending agent task has an UndoManager that
tracks only that task's origin, which is how reject removes exactly that task's edits; while
the editor has the file open, one more tracks the user's edits since the last save, which is
how closing a buffer without saving discards exactly what the editor discarded. Each pending
task also has a `HunkTracker` (engine/state/hunks.py) fed every committed change: once one of
its hunks is decided, the rest of the task is undone hunk by hunk through it instead.
Owned by the event loop thread (pycrdt Docs are not shared across threads here).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pycrdt import Doc, Text, TransactionEvent, UndoManager

from delegation_machine.engine.protocol import TextEdit
from delegation_machine.engine.state.hunks import HunkTracker, reject_hunk_origin
from delegation_machine.engine.state.textdiff import rebase_through
from delegation_machine.engine.state.types import (
    USER_ORIGIN,
    MutationRefused,
    reject_origin,
    task_of_origin,
)

log = logging.getLogger(__name__)

TEXT_KEY = "content"
DISCARD_ORIGIN = "discard:user"  # undoing the user's unsaved edits of a closed buffer
CAPTURE_FOREVER_MS = 2**62

ChangeCallback = Callable[["FileDocument", str, tuple[TextEdit, ...]], None]
UpdateCallback = Callable[["FileDocument", str, bytes], None]


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))


class FileDocument:
    """The CRDT replica of one workspace file."""

    def __init__(
        self,
        rel: str,
        *,
        on_change: ChangeCallback,
        on_update: UpdateCallback,
        history_limit: int = 4096,
        journaled: bool = True,
    ) -> None:
        self.rel = rel
        self.doc: Doc[Any] = Doc()
        self.ytext = self.doc.get(TEXT_KEY, type=Text)
        self.text = ""
        self.version = 0
        self.history: deque[tuple[int, tuple[TextEdit, ...]]] = deque(maxlen=history_limit)
        self.disk_text: str | None = None  # what we last read from or wrote to disk
        self.open = False
        self.lsp_version: int | None = None
        self.task_undo: dict[str, UndoManager] = {}
        self.user_undo: UndoManager | None = None  # the user's edits since the last save
        self.hunks: dict[str, HunkTracker] = {}  # task id -> its pending change, as hunks
        self._tracked_origins: set[str] = set()
        self._on_change = on_change
        self._on_update = on_update
        self._origin = ""  # origin of the transaction in progress (every one starts here)
        self._doc_subscription = self.doc.observe(self._on_transaction) if journaled else None

    # --- writing ---------------------------------------------------------------------------

    def apply_edits(self, edits: Sequence[TextEdit], origin: str) -> None:
        """Apply sorted, non-overlapping code-point edits against `self.text` in one
        transaction (the observer updates text, version and history)."""
        if not edits:
            return
        text = self.text
        ascii_only = text.isascii()
        self._origin = origin
        with self.doc.transaction(origin=origin):
            for edit in reversed(edits):  # back to front: earlier offsets stay valid
                if ascii_only:
                    byte_start, byte_end = edit.start, edit.end
                else:
                    byte_start = utf8_length(text[: edit.start])
                    byte_end = byte_start + utf8_length(text[edit.start : edit.end])
                if byte_end > byte_start:
                    del self.ytext[byte_start:byte_end]
                if edit.new_text:
                    self.ytext.insert(byte_start, edit.new_text)
        # local edits need no delta: we know them (computing a Yjs delta costs ~30 us)
        self._commit_edits(tuple(edits), origin)

    def apply_update(self, update: bytes, origin: str) -> None:
        """Merge a Yjs v1 update from another replica under `origin`."""
        self._origin = origin
        with self._observing_deltas(), self.doc.transaction(origin=origin):
            self.doc.apply_update(update)

    def track_task(self, origin: str) -> None:
        """Start (or extend) the undo history of the task behind an agent origin."""
        if origin in self._tracked_origins:
            return
        task_id = task_of_origin(origin)
        if task_id is None:
            return
        manager = self.task_undo.get(task_id)
        if manager is None:
            # one stack item per task (reject undoes all of it): merging is also far cheaper
            manager = UndoManager(scopes=[self.ytext], capture_timeout_millis=CAPTURE_FOREVER_MS)
            self.task_undo[task_id] = manager
            self.hunks[task_id] = HunkTracker(task_id, self.rel, len(self.text))
        manager.include_origin(origin)
        self._tracked_origins.add(origin)

    def undo_task(self, task_id: str) -> bool:
        """Undo every edit of `task_id` still on the undo stack; True if the text changed."""
        manager = self.task_undo.pop(task_id, None)
        if manager is None:
            return False
        self._forget_origins(task_id)
        tracker = self.hunks.pop(task_id, None)
        version = self.version
        if tracker is not None and tracker.decided:  # the undo stack still holds decided hunks
            manager.clear()
            self.apply_edits(tracker.rejection_edits(), reject_origin(task_id))
            return self.version != version
        self._origin = reject_origin(task_id)
        with self._observing_deltas():
            while manager.can_undo():
                manager.undo()
        return self.version != version

    def forget_task(self, task_id: str) -> bool:
        manager = self.task_undo.pop(task_id, None)
        if manager is None:
            return False
        self._forget_origins(task_id)
        self.hunks.pop(task_id, None)
        manager.clear()
        return True

    def reject_hunk(self, task_id: str, label: int) -> bool:
        """Undo one hunk of a pending task (`UnknownHunk` if it is not pending); True if the
        text changed. From now on the task's undo goes through its hunks."""
        edits = self.hunks[task_id].rejection_edits(label)
        self.task_undo[task_id].clear()
        version = self.version
        self.apply_edits(edits, reject_hunk_origin(task_id, label))  # the tracker settles it
        return self.version != version

    def accept_hunk(self, task_id: str, label: int) -> None:
        """Keep one hunk of a pending task for good (`UnknownHunk` if it is not pending)."""
        self.hunks[task_id].accept(label)
        self.task_undo[task_id].clear()

    def track_user_edits(self) -> None:
        """Record the user's edits from now on (the editor opened the file)."""
        if self.user_undo is None:
            self.user_undo = UndoManager(
                scopes=[self.ytext], capture_timeout_millis=CAPTURE_FOREVER_MS
            )
            self.user_undo.include_origin(USER_ORIGIN)

    def user_edits_saved(self) -> None:
        """The user's edits so far are on disk: closing no longer discards them."""
        if self.user_undo is not None:
            self.user_undo.clear()

    def discard_user_edits(self) -> bool:
        """Undo the user's edits since the last save and stop recording (the editor dropped
        its buffer); everyone else's edits stay. True if the text changed."""
        manager, self.user_undo = self.user_undo, None
        if manager is None:
            return False
        version = self.version
        self._origin = DISCARD_ORIGIN
        with self._observing_deltas():
            while manager.can_undo():
                manager.undo()
        manager.clear()
        return self.version != version

    def _forget_origins(self, task_id: str) -> None:
        self._tracked_origins = {o for o in self._tracked_origins if task_of_origin(o) != task_id}

    # --- reading ---------------------------------------------------------------------------

    def changes_since(self, base_version: int) -> list[tuple[TextEdit, ...]]:
        """The edit lists that turned version `base_version` into the current version."""
        if base_version == self.version:
            return []
        if base_version > self.version or base_version < 0:
            raise MutationRefused(
                f"base version {base_version} is unknown (current version {self.version})",
                self.rel,
            )
        oldest = self.history[0][0] if self.history else self.version + 1
        if base_version + 1 < oldest:
            raise MutationRefused(
                f"base version {base_version} is older than the kept history "
                f"(oldest {oldest - 1}); re-read the file and retry",
                self.rel,
            )
        skip = base_version + 1 - oldest
        return [edits for _, edits in list(self.history)[skip:]]

    def rebase(self, edits: Sequence[TextEdit], base_version: int) -> list[TextEdit]:
        return list(rebase_through(edits, self.changes_since(base_version)))

    def encode_state(self) -> bytes:
        return bytes(self.doc.get_state())

    def encode_update(self, state: bytes | None = None) -> bytes:
        return bytes(self.doc.get_update(state))

    # --- observers -------------------------------------------------------------------------

    @contextmanager
    def _observing_deltas(self) -> Iterator[None]:
        """Observe Yjs deltas while changes we did not compute ourselves are applied (remote
        updates, undo). The raw observer is used: pycrdt's wrapped TextEvent is costlier."""
        subscription = self.ytext.integrated.observe(self._on_text_event)
        try:
            yield
        finally:
            subscription.drop()

    def _on_text_event(self, event: Any) -> None:
        try:
            self._commit_edits(self._delta_to_edits(event.delta), self._origin)
        except Exception:  # raised inside a pycrdt callback it would be lost
            log.exception("%s: text observer failed", self.rel)

    def _commit_edits(self, edits: tuple[TextEdit, ...], origin: str) -> None:
        if not edits:
            return
        for tracker in self.hunks.values():
            tracker.observe(edits, self.text, origin)
        self.text = _apply_sorted(self.text, edits)
        self.version += 1
        self.history.append((self.version, edits))
        self._on_change(self, origin, edits)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._on_update(self, self._origin, event.update)

    def _delta_to_edits(self, delta: list[dict[str, Any]]) -> tuple[TextEdit, ...]:
        """Yjs delta (UTF-8 byte counts) -> code-point edits against the previous text."""
        text = self.text
        if text.isascii():
            return _ascii_delta_to_edits(delta)
        data = text.encode("utf-8")
        edits: list[TextEdit] = []
        byte_pos = 0
        char_pos = 0
        pending: TextEdit | None = None
        for op in delta:
            if "retain" in op:
                count = int(op["retain"])
                char_pos += len(data[byte_pos : byte_pos + count].decode("utf-8"))
                byte_pos += count
                if pending is not None:
                    edits.append(pending)
                    pending = None
            elif "delete" in op:
                count = int(op["delete"])
                length = len(data[byte_pos : byte_pos + count].decode("utf-8"))
                pending = _extend(pending, char_pos, char_pos + length, "")
                char_pos += length
                byte_pos += count
            elif "insert" in op:
                pending = _extend(pending, char_pos, char_pos, str(op["insert"]))
        if pending is not None:
            edits.append(pending)
        return tuple(edits)


def _ascii_delta_to_edits(delta: list[dict[str, Any]]) -> tuple[TextEdit, ...]:
    edits: list[TextEdit] = []
    pos = 0
    pending: TextEdit | None = None
    for op in delta:
        if "retain" in op:
            pos += int(op["retain"])
            if pending is not None:
                edits.append(pending)
                pending = None
        elif "delete" in op:
            count = int(op["delete"])
            pending = _extend(pending, pos, pos + count, "")
            pos += count
        elif "insert" in op:
            pending = _extend(pending, pos, pos, str(op["insert"]))
    if pending is not None:
        edits.append(pending)
    return tuple(edits)


def _extend(pending: TextEdit | None, start: int, end: int, new_text: str) -> TextEdit:
    """Fold consecutive delete/insert ops at one place into a single replacement."""
    if pending is None:
        return TextEdit(start, end, new_text)
    return TextEdit(pending.start, max(pending.end, end), pending.new_text + new_text)


def _apply_sorted(text: str, edits: Sequence[TextEdit]) -> str:
    parts: list[str] = []
    cursor = 0
    for edit in edits:
        parts.append(text[cursor : edit.start])
        parts.append(edit.new_text)
        cursor = edit.end
    parts.append(text[cursor:])
    return "".join(parts)
