"""Edits in, tasks out: the intake of the user's buffers and of changes made on disk.

Owns the document-sync entry points (open, change, save, close: one call per editor event),
the watchdog intake of external changes, the per-file debounce timers, and the workspace
content version (bumped by every change that agents sharing a prompt prefix must see).
A buffer over the file-size limit is refused before any work (no diff, no CRDT insert), and
one growing past it is refused too. Closing a buffer without saving discards the user's
unsaved edits (a save whose disk event is still on its way is taken in first).
When a file's changes settle, one `index` and one `check` task for it go on the ring under the
plan id `edit`. Lives on the event loop; the watcher hands its events over to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.workspace_index import WorkspaceIndex
from delegation_machine.engine.notices import DiagnosticsCleared, NoticeStream
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import TextEdit
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.state import FileRefused, StateError, TextChange, WorkspaceState
from delegation_machine.engine.state.watcher import ChangeKind, WorkspaceWatcher

log = logging.getLogger(__name__)

EDIT_PLAN = "edit"  # plan id of the index and check tasks that edits publish
# What a settled change publishes, with estimated seconds on a built-in worker (HEFT ranks
# on these).
EDIT_TASK_COSTS = (("index", 0.2), ("check", 2.0))

Spawn = Callable[[Coroutine[Any, Any, Any], str], object]


class DocumentIntake:
    """The user's and the disk's changes into the CodeCRDT, and re-check tasks out."""

    def __init__(
        self,
        state: WorkspaceState,
        index: WorkspaceIndex,
        ring: RingBuffer[TaskSpec],
        ledger: Ledger,
        notices: NoticeStream,
        *,
        debounce_s: float,
        spawn: Spawn,
    ) -> None:
        self.state = state
        self.index = index
        self.debounce_s = debounce_s
        self._ring = ring
        self._ledger = ledger
        self._notices = notices
        self._spawn = spawn
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._published = 0
        self._watcher: WorkspaceWatcher | None = None
        # Bumped whenever workspace content changes; agents at one version share a prefix.
        self.workspace_version = 0

    def bump_version(self) -> None:
        self.workspace_version += 1

    # --- the editor's buffers (the peer "user") -------------------------------------------

    def resolve(self, path: str) -> str:
        return self.state.resolve(path)

    def read(self, rel: str) -> tuple[str, int]:
        return self.state.read(rel)

    def open_document(self, rel: str, text: str, version: int) -> TextChange | None:
        """didOpen: merge the buffer into the CRDT, then check and index the file."""
        rel = self.state.resolve(rel)
        self._refuse_over_limit(rel, text)
        change = self.state.open_document(rel, text, version)
        self.recheck(rel)
        return change

    def apply_user_change(
        self, rel: str, edits: Sequence[TextEdit], version: int
    ) -> TextChange | None:
        """didChange: the user's edits (against the CRDT text); re-check once typing settles."""
        growth = sum(len(e.new_text) - (e.end - e.start) for e in edits)
        if growth > 0:
            current = self.state.read(rel)[0]
            if len(current) + growth > self.state.max_file_bytes // 4:
                self._refuse_over_limit(rel, _text_after(current, edits))
        change = self.state.apply_user_change(rel, edits, version)
        self.bump_version()
        self._schedule(self.state.resolve(rel), delay_s=self.debounce_s)
        return change

    def close_document(self, rel: str) -> None:
        """didClose: the editor dropped its buffer. What it saved is taken in; the user's
        unsaved edits are undone, so they never reach the disk."""
        rel = self.state.resolve(rel)
        if self.state.is_dirty(rel):
            self._take_in_save(rel)
        if self.state.close_document(rel):
            self.bump_version()
            self.recheck(rel)

    def saved(self, rel: str) -> str:
        """didSave: take the saved text in now (the watcher's event may come later), then
        re-check the file."""
        rel = self.state.resolve(rel)
        self._take_in_save(rel)
        return self.recheck(rel)

    def _take_in_save(self, rel: str) -> None:
        try:
            self.state.ingest_disk_change(rel)
        except StateError as exc:  # refused on disk (e.g. grew over the limit): noted
            log.info("saved %s not taken in: %s", rel, exc)

    def _refuse_over_limit(self, rel: str, text: str) -> None:
        limit = self.state.max_file_bytes
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode("utf-8")) > limit):
            size = len(text.encode("utf-8"))
            raise FileRefused(
                f"{size} bytes is over the limit of {limit} bytes (max_file_bytes); "
                "the editor keeps the buffer, the Delegation Machine does not track it",
                rel,
            )

    def recheck(self, path: str) -> str:
        """The file may differ from what was last checked (opened, saved, rolled back)."""
        rel = self.state.resolve(path)
        self._schedule(rel, delay_s=0.0)
        return rel

    def restored(self, paths: Iterable[str]) -> None:
        """A task's edits to `paths` were undone: write the closed ones back, re-check all."""
        for rel in paths:
            if not self.state.is_open(rel):
                self.state.flush(rel)
            self.recheck(rel)

    # --- the disk (the peer "disk") -------------------------------------------------------

    def start_watching(self) -> None:
        # The watcher relays inotify events onto this loop and drops our own atomic writes.
        self._watcher = WorkspaceWatcher(
            self.state.root, self.on_disk_change, is_own_write=self.state.is_own_write
        )
        self._watcher.start()

    def on_disk_change(self, rel: str, kind: ChangeKind) -> None:
        if kind == "deleted":
            self.index.symbols.remove_file(rel)
            self._notices.emit(DiagnosticsCleared(rel))
            return
        loaded = self.state.is_loaded(rel)
        try:
            change = self.state.ingest_disk_change(rel)
        except StateError as exc:  # a refused file (binary, huge, outside): noted, not fatal
            log.info("external change to %s not taken in: %s", rel, exc)
            return
        if loaded and change is None:
            return  # the text we hold already, or an open buffer (the editor reports it)
        self.bump_version()
        self._ledger.record("file.external_change", path=rel, change=kind)
        self._schedule(rel, delay_s=0.0)

    def close(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    # --- debounced publication ------------------------------------------------------------

    def _schedule(self, rel: str, *, delay_s: float) -> None:
        """The latest change to a file publishes one check and one index task."""
        pending = self._pending.pop(rel, None)
        if pending is not None:
            pending.cancel()
        loop = asyncio.get_running_loop()
        self._pending[rel] = loop.call_later(delay_s, self._publish, rel)

    def _publish(self, rel: str) -> None:
        self._pending.pop(rel, None)
        self._published += 1
        n = self._published
        specs = [
            TaskSpec(
                task_id=f"{EDIT_PLAN}.{n}.{kind}",
                kind=kind,
                paths=(rel,),
                plan_id=EDIT_PLAN,
                cost={"builtin": cost},
            )
            for kind, cost in EDIT_TASK_COSTS
        ]
        self._spawn(self._ring.publish_batch(specs), f"publish-edit-{n}")


def _text_after(text: str, edits: Sequence[TextEdit]) -> str:
    """`text` with sorted, non-overlapping edits applied (only to measure a growing buffer)."""
    parts: list[str] = []
    cursor = 0
    for edit in sorted(edits, key=lambda e: e.start):
        parts.append(text[cursor : edit.start])
        parts.append(edit.new_text)
        cursor = max(cursor, edit.end)
    parts.append(text[cursor:])
    return "".join(parts)
