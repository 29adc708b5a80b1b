"""Edits in, tasks out: the intake of the user's buffers and of changes made on disk.

Owns the document-sync entry points (open, change, save, close: one call per editor event),
the watchdog intake of external changes, the per-file debounce timers, and the workspace
content version (bumped by every change that agents sharing a prompt prefix must see).
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
from delegation_machine.engine.state import StateError, TextChange, WorkspaceState
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
        change = self.state.open_document(rel, text, version)
        self.recheck(rel)
        return change

    def apply_user_change(
        self, rel: str, edits: Sequence[TextEdit], version: int
    ) -> TextChange | None:
        """didChange: the user's edits (against the CRDT text); re-check once typing settles."""
        change = self.state.apply_user_change(rel, edits, version)
        self.bump_version()
        self._schedule(self.state.resolve(rel), delay_s=self.debounce_s)
        return change

    def close_document(self, rel: str) -> None:
        self.state.close_document(rel)

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
