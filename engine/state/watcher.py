"""Watchdog intake: file-system events from the inotify observer thread to the event loop.

Owns the watchdog Observer. Invariants: callbacks run on the asyncio loop thread only (handed
over with `call_soon_threadsafe`); paths under .delegation/, .git/, .venv/ and our own
temporary files are never reported; a file we wrote ourselves (per `is_own_write`) is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Literal

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)

ChangeKind = Literal["created", "modified", "deleted", "moved"]
TEMP_SUFFIX = ".dm-tmp"
IGNORED_FOLDERS = frozenset({".delegation", ".git", ".venv", "__pycache__", "node_modules"})
_KINDS: dict[str, ChangeKind] = {
    "created": "created",
    "modified": "modified",
    "deleted": "deleted",
    "moved": "moved",
    "closed": "modified",
}


class _Relay(FileSystemEventHandler):
    """Runs on the observer thread: filter, then hand over to the loop."""

    def __init__(self, watcher: WorkspaceWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        kind = _KINDS.get(event.event_type)
        if kind is None:
            return
        targets = [event.src_path]
        if event.event_type == "moved":
            targets = [event.dest_path]  # an atomic save: the destination is what changed
        for raw in targets:
            path = raw.decode() if isinstance(raw, bytes) else str(raw)
            self._watcher.relay(path, kind)


class WorkspaceWatcher:
    """Report external file changes under `root` as `on_change(rel, kind)` on the loop."""

    def __init__(
        self,
        root: Path,
        on_change: Callable[[str, ChangeKind], None],
        *,
        is_own_write: Callable[[str], bool] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self._on_change = on_change
        self._is_own_write = is_own_write
        self._loop = loop
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self) -> None:
        """Start the observer thread; call from the loop thread (it captures the loop)."""
        if self._observer is not None:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        observer = Observer()
        observer.schedule(_Relay(self), str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def relay(self, absolute: str, kind: ChangeKind) -> None:
        """Observer thread -> loop thread, after filtering."""
        rel = self.relative(absolute)
        if rel is None or self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._deliver, rel, kind)

    def relative(self, absolute: str) -> str | None:
        """Workspace-relative path, or None for paths we never report."""
        try:
            rel = PurePosixPath(Path(absolute).relative_to(self.root).as_posix())
        except ValueError:
            return None
        if not rel.parts or rel.parts[0] in IGNORED_FOLDERS:
            return None
        if any(part in IGNORED_FOLDERS for part in rel.parts[:-1]):
            return None
        if rel.name.endswith(TEMP_SUFFIX):
            return None  # our own temporaries from atomic writes
        return rel.as_posix()

    def _deliver(self, rel: str, kind: ChangeKind) -> None:
        if kind != "deleted" and self._is_own_write is not None and self._is_own_write(rel):
            return
        try:
            self._on_change(rel, kind)
        except Exception:
            log.exception("watcher callback failed for %s (%s)", rel, kind)
