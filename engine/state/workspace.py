"""WorkspaceState: the CodeCRDT facade over every file of one workspace.

Owns one `FileDocument` per loaded file, the lease table, the subscriber list, the disk mirror
and the journal under `.delegation/crdt/`. Peers are origins: "user" (the editor), "disk"
(watchdog), `agent:<id>/task:<id>` (agents, only under a live lease) and `reject:task:<id>`.
Invariants: every path is checked to stay inside the workspace; the user is never blocked;
every committed change is published to subscribers and recorded as a "file.changed" event;
refused input changes nothing. Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from delegation_machine.engine.protocol import Event, Mutation, TextEdit
from delegation_machine.engine.state.document import FileDocument
from delegation_machine.engine.state.files import (
    Unreadable,
    list_files,
    read_regular_file,
    real_path,
)
from delegation_machine.engine.state.hunks import PendingHunk, UnknownHunk
from delegation_machine.engine.state.leases import LeaseTable
from delegation_machine.engine.state.owner import OwnerLock
from delegation_machine.engine.state.persist import CrdtJournal, CrdtStore, JournalRecord
from delegation_machine.engine.state.scratch import SCRATCH_NAME, claim_scratch, release_scratch
from delegation_machine.engine.state.textdiff import (
    EditRangeError,
    check_edits,
    diff_edits,
    normalize_edits,
    rebase_edits,
    rebase_through,
)
from delegation_machine.engine.state.types import (
    DISK_ORIGIN,
    USER_ORIGIN,
    AppliedChange,
    DocumentNotOpen,
    FileRefused,
    Lease,
    LeaseConflict,
    MutationRefused,
    PathRefused,
    StateError,
    TextChange,
    agent_origin,
    task_of_origin,
)
from delegation_machine.engine.state.watcher import IGNORED_FOLDERS, TEMP_SUFFIX

log = logging.getLogger(__name__)

PRIVATE_FOLDER = ".delegation"
LOAD_ORIGIN = "load"

ChangeListener = Callable[[TextChange], None]


class WorkspaceState:
    """Shared code state of one workspace: CRDT docs, leases, undo, disk mirror."""

    def __init__(
        self,
        root: Path,
        *,
        max_file_bytes: int = 5_000_000,
        record: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        persist: bool = True,
        history_limit: int = 4096,
    ) -> None:
        self.root = Path(root).resolve()
        self.max_file_bytes = max_file_bytes
        self._record = record
        self._leases = LeaseTable(clock)
        self._lease_waiters: list[asyncio.Future[None]] = []  # tasks waiting for a release
        self._docs: dict[str, FileDocument] = {}
        self._listeners: list[ChangeListener] = []
        self._history_limit = history_limit
        self._store = CrdtStore(self.root / PRIVATE_FOLDER / "crdt") if persist else None
        self._journals: dict[str, CrdtJournal] = {}
        self._replaying = False
        self._own_writes: dict[str, tuple[int, int]] = {}  # rel -> (mtime_ns, size) we wrote
        self._owner = OwnerLock(self.root / PRIVATE_FOLDER)

    # --- ownership -------------------------------------------------------------------------

    def claim_owner(self, command: str | None = None) -> list[str]:
        """Become the one process that writes this workspace (`WorkspaceBusy`, naming the
        owner, while another holds it), then delete what an earlier owner that died left: temp
        files of unfinished writes and shadow copies in `.delegation/tmp/`. Returns them."""
        self._owner.acquire(command)
        private = self.root / PRIVATE_FOLDER
        copies = claim_scratch(private)  # shadow copies go here, not to the system temp folder
        stale = [f"{PRIVATE_FOLDER}/{SCRATCH_NAME}/{name}" for name in copies]
        return self._remove_stale_temp_files() + stale

    def release_owner(self) -> None:
        if self._owner.held:
            release_scratch(self.root / PRIVATE_FOLDER)
        self._owner.release()

    @property
    def owns_workspace(self) -> bool:
        return self._owner.held

    def _remove_stale_temp_files(self) -> list[str]:
        """`.<name>.<random>.dm-tmp` files are ours (`_write_atomically`); as the owner, none of
        them can be in use, so any left over is a write a killed process never finished."""
        stale, _ = list_files(
            self.root,
            skipped_folders=IGNORED_FOLDERS,
            wanted=lambda rel: rel.rsplit("/", 1)[-1].startswith(".") and rel.endswith(TEMP_SUFFIX),
        )
        for rel in stale:
            (self.root / rel).unlink(missing_ok=True)
            log.info("removed %s, a temp file a killed process left behind", rel)
        return stale

    # --- paths -----------------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        """Workspace-relative POSIX path of `path`; `PathRefused` if it leaves the workspace
        (`..`, absolute elsewhere, a symlink that escapes) or points into `.delegation/`."""
        if path in self._docs:
            return path  # checked when loaded; flush re-checks before it writes
        if not path or "\x00" in path:
            raise PathRefused("empty path or NUL byte in path", path or None)
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        lexical = Path(os.path.normpath(candidate))
        try:
            rel_lexical = lexical.relative_to(self.root)
        except ValueError:
            raise PathRefused(f"outside the workspace {self.root}", path) from None
        try:
            real = real_path(lexical)  # follows symlinks, also of missing leaves' parents
        except Unreadable as exc:
            raise PathRefused(exc.reason, path) from None
        try:
            rel_real = real.relative_to(self.root)
        except ValueError:
            raise PathRefused(f"a symlink leads outside the workspace (to {real})", path) from None
        rel = PurePosixPath(*rel_lexical.parts).as_posix()
        if rel in ("", "."):
            raise PathRefused("the workspace root is not a file", path)
        for parts in (rel_lexical.parts, rel_real.parts):
            if parts and parts[0] == PRIVATE_FOLDER:
                raise PathRefused(f"{PRIVATE_FOLDER}/ holds the server's own state", path)
        return rel

    def absolute(self, rel: str) -> Path:
        return self.root / self.resolve(rel)

    # --- reading ---------------------------------------------------------------------------

    def read(self, rel: str) -> tuple[str, int]:
        """(text, version) of a file; loads it from disk on first use."""
        document = self._document(rel)
        return document.text, document.version

    def is_loaded(self, rel: str) -> bool:
        """True once the file's text is held in the CRDT (read, opened or edited)."""
        return rel in self._docs

    def loaded_paths(self) -> list[str]:
        return sorted(self._docs)

    def is_open(self, rel: str) -> bool:
        document = self._docs.get(self.resolve(rel))
        return document is not None and document.open

    def lsp_version(self, rel: str) -> int | None:
        document = self._docs.get(self.resolve(rel))
        return document.lsp_version if document is not None else None

    def pending_tasks(self, rel: str) -> list[str]:
        document = self._docs.get(self.resolve(rel))
        return sorted(document.task_undo) if document is not None else []

    def is_dirty(self, rel: str) -> bool:
        document = self._docs.get(self.resolve(rel))
        return document is not None and document.text != document.disk_text

    # --- the user peer ---------------------------------------------------------------------

    def open_document(self, rel: str, text: str, version: int) -> TextChange | None:
        """The editor opened `rel` with buffer `text`. Changes the editor made to the disk
        text are merged as the user (three-way, so unsaved agent edits are kept)."""
        rel = self.resolve(rel)
        document = self._document(rel, create_missing=True)
        if document.open and document.lsp_version == version:
            return None  # the same didOpen seen twice (bridge and swarm both forward it)
        document.open = True
        document.lsp_version = version
        document.track_user_edits()  # closing without a save discards them again
        if text == document.text:
            return None
        base_text = document.disk_text if document.disk_text is not None else ""
        return self._merge_from_base(document, base_text, text, USER_ORIGIN)

    def apply_user_change(
        self,
        rel: str,
        edits: Sequence[TextEdit] | None,
        lsp_version: int,
        *,
        full_text: str | None = None,
    ) -> TextChange | None:
        """didChange: `edits` address the current text (the bridge rebases the editor's edits
        first). Never blocked by a lease. `full_text` replaces the whole buffer (full sync)."""
        rel = self.resolve(rel)
        document = self._docs.get(rel)
        if document is None or not document.open:
            raise DocumentNotOpen("didChange for a document that is not open", rel)
        document.lsp_version = lsp_version
        if full_text is not None:
            change = diff_edits(document.text, full_text)
        else:
            change = normalize_edits(edits or ())
            self._check(change, document)
        return self._commit(document, change, USER_ORIGIN)

    def close_document(self, rel: str) -> bool:
        """The editor closed `rel` and dropped its buffer: the user's edits since the last save
        are undone (agents' edits stay; `flush` writes those). True if the text changed."""
        document = self._docs.get(self.resolve(rel))
        if document is None:
            return False
        document.open = False
        document.lsp_version = None
        tracked = document.user_undo is not None
        changed = document.discard_user_edits()
        if tracked:
            self._journal_marker(document, JournalRecord("discard", origin=USER_ORIGIN))
        return changed

    # --- agents ----------------------------------------------------------------------------

    def lease_files(self, paths: Sequence[str], holder: str, ttl_s: float = 60) -> Lease:
        """Write lease on all `paths` or none (`LeaseConflict`); taken in sorted order."""
        return self._leases.acquire([self.resolve(path) for path in paths], holder, ttl_s)

    async def wait_for_lease(
        self, paths: Sequence[str], holder: str, *, ttl_s: float, wait_s: float
    ) -> Lease:
        """`lease_files`, waiting up to `wait_s` seconds while another agent holds one of the
        files: woken when any lease is released or revoked, or when the blocking one expires.
        Raises the last `LeaseConflict` when the wait runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            try:
                return self.lease_files(paths, holder, ttl_s)
            except LeaseConflict as conflict:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise
                until_expiry = max(conflict.expires_at - self._leases.now(), 0.0)
                released: asyncio.Future[None] = loop.create_future()
                self._lease_waiters.append(released)
                try:
                    await asyncio.wait({released}, timeout=min(remaining, until_expiry))
                finally:
                    if released in self._lease_waiters:
                        self._lease_waiters.remove(released)

    def release(self, lease: Lease) -> None:
        self._leases.release(lease)
        self._wake_lease_waiters()

    def revoke(self, rel: str) -> Lease | None:
        """Revoke whatever lease covers `rel`: its holder's later writes raise LeaseError."""
        revoked = self._leases.revoke(self.resolve(rel))
        self._wake_lease_waiters()
        return revoked

    def _wake_lease_waiters(self) -> None:
        waiters, self._lease_waiters = self._lease_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def apply_mutation(self, mutation: Mutation, lease: Lease) -> AppliedChange:
        """Apply an agent's edits (code points against `mutation.base_version`) under a live
        lease, rebased over everything committed since. `LeaseError` for a bad token."""
        rel = self.resolve(mutation.path)
        self._leases.check(lease, rel)
        document = self._document(rel, create_missing=mutation.base_version == 0)
        origin = agent_origin(mutation.agent_id, mutation.task_id)
        edits = normalize_edits(mutation.edits)
        changes = document.changes_since(mutation.base_version)
        base_length = len(document.text)
        if changes:
            base_length -= sum(
                len(edit.new_text) - (edit.end - edit.start)
                for change in changes
                for edit in change
            )
        try:
            check_edits(edits, base_length)
        except EditRangeError as exc:
            raise MutationRefused(str(exc), rel) from None
        landed = rebase_through(edits, changes) if changes else edits
        document.track_task(origin)
        version_before = document.version
        self._commit(document, landed, origin)
        return AppliedChange(
            path=rel,
            origin=origin,
            edits=tuple(landed),
            version=document.version,
            base_version=mutation.base_version,
            rebased=bool(changes) or version_before != mutation.base_version,
        )

    def reject_task(self, task_id: str) -> list[str]:
        """Selective undo: remove exactly that task's insertions and restore its deletions in
        every file it touched, keeping everyone else's later edits. Returns changed paths."""
        changed = []
        for rel, document in sorted(self._docs.items()):
            if task_id in document.task_undo:
                if document.undo_task(task_id):
                    changed.append(rel)
                self._journal_marker(document, JournalRecord("reject", origin=task_id))
        return changed

    def accept_task(self, task_id: str) -> list[str]:
        """Finalise a task: its edits can no longer be rejected. Returns the paths it touched."""
        touched = []
        for rel, document in sorted(self._docs.items()):
            if document.forget_task(task_id):
                touched.append(rel)
                self._journal_marker(document, JournalRecord("accept", origin=task_id))
        return touched

    # --- per-hunk review (engine/state/hunks.py) -------------------------------------------

    def hunks(self, task_ids: Sequence[str], path: str | None = None) -> list[PendingHunk]:
        """The pending hunks of these tasks (in one file, or all), by file and position."""
        wanted = set(task_ids)
        documents = [(path, self._docs.get(self.resolve(path)))] if path else self._docs.items()
        found = [
            hunk
            for _, document in sorted(documents, key=lambda item: item[0])
            if document is not None
            for task_id, tracker in document.hunks.items()
            if task_id in wanted
            for hunk in tracker.hunks(document.text)
        ]
        return sorted(found, key=lambda h: (h.path, h.start, h.end, h.task_id))

    def without_task(self, task_ids: Sequence[str], rel: str) -> str:
        """The text of `rel` with these tasks' pending hunks rejected (keeps everyone else's
        edits): what a review diffs the current text against."""
        document = self._document(rel)
        text = document.text
        for task_id in task_ids:
            tracker = document.hunks.get(task_id)
            if tracker is not None:
                text = tracker.without_task(text)
        return text

    def accept_hunk(self, task_ids: Sequence[str], hunk_id: str) -> PendingHunk:
        """Keep one hunk for good (`UnknownHunk` unless it is pending for one of the tasks)."""
        document, hunk, label = self._find_hunk(task_ids, hunk_id)
        document.accept_hunk(hunk.task_id, label)
        self._journal_marker(
            document, JournalRecord("accept-hunk", origin=hunk.task_id, text=str(label))
        )
        return hunk

    def reject_hunk(self, task_ids: Sequence[str], hunk_id: str) -> PendingHunk:
        """Undo exactly one hunk: its insertions go, its deletions come back, and what anyone
        else typed inside or beside it stays (`UnknownHunk` unless it is pending)."""
        document, hunk, label = self._find_hunk(task_ids, hunk_id)
        document.reject_hunk(hunk.task_id, label)
        return hunk

    def _find_hunk(
        self, task_ids: Sequence[str], hunk_id: str
    ) -> tuple[FileDocument, PendingHunk, int]:
        for document in self._docs.values():
            for task_id in task_ids:
                tracker = document.hunks.get(task_id)
                label = tracker.label_of(hunk_id) if tracker is not None else None
                if tracker is not None and label is not None:
                    hunk = next(h for h in tracker.hunks(document.text) if h.hunk_id == hunk_id)
                    return document, hunk, label
        raise UnknownHunk(f"no pending hunk {hunk_id!r} (decided already, or not this task's)")

    # --- subscribers -----------------------------------------------------------------------

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        """Call `listener(TextChange)` after every committed change; returns unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    # --- Yjs interop -----------------------------------------------------------------------

    def encode_state_vector(self, rel: str) -> bytes:
        return bytes(self._document(rel).encode_state())

    def encode_update(self, rel: str, state_vector: bytes | None = None) -> bytes:
        """A Yjs v1 update with everything the holder of `state_vector` lacks."""
        return bytes(self._document(rel).encode_update(state_vector))

    def apply_remote_update(self, rel: str, update: bytes, origin: str) -> None:
        """Merge a Yjs v1 update from another replica (e.g. a yjs client) as peer `origin`."""
        self._document(rel, create_missing=True).apply_update(update, origin)

    # --- disk ------------------------------------------------------------------------------

    def flush(self, rel: str) -> bool:
        """Write a closed, changed file to disk atomically (temp file, fsync, rename; mode
        kept). Open files belong to the editor's save. True if written."""
        rel = self.resolve(rel)
        document = self._docs.get(rel)
        if document is None or document.open or document.text == document.disk_text:
            return False
        self._check_still_inside(rel)
        self._write_atomically(rel, document.text)
        document.disk_text = document.text
        self._journal_marker(document, JournalRecord("disk", text=document.text))
        self._compact_journal(document)
        return True

    def flush_all(self) -> list[str]:
        return [rel for rel in sorted(self._docs) if self.flush(rel)]

    def is_own_write(self, rel: str) -> bool:
        """True if the file on disk is exactly what we last wrote (watcher echo filter)."""
        signature = self._own_writes.get(rel)
        if signature is None:
            return False
        try:
            info = (self.root / rel).stat()
        except OSError:
            return False
        return (info.st_mtime_ns, info.st_size) == signature

    def ingest_disk_change(self, rel: str) -> TextChange | None:
        """An external program changed `rel` on disk: merge it as peer "disk" (three-way from
        the last disk text, so concurrent user and agent edits survive). Our own writes and
        unchanged content are no-ops. A deleted file is ignored (the CRDT keeps its text)."""
        rel = self.resolve(rel)
        document = self._docs.get(rel)
        if document is None:
            return None  # not loaded: the next read sees the new content
        path = self.root / rel
        if not path.exists():
            return None
        new_text = self._load_text(rel, path)
        if new_text == document.disk_text:
            return None
        if document.open:
            # the editor owns an open buffer: it saved it, or it reloads the external change
            # and reports it as didChange (the user peer); merging here too would double it
            self._mark_disk(document, new_text)
            return None
        base_text = document.disk_text if document.disk_text is not None else ""
        change = self._merge_from_base(document, base_text, new_text, DISK_ORIGIN)
        self._mark_disk(document, new_text)
        return change

    def disk_text(self, rel: str) -> str | None:
        """The text the disk last held for `rel` as far as the state knows (None: not loaded)."""
        document = self._docs.get(self.resolve(rel))
        return document.disk_text if document is not None else None

    def merge_disk_since(self, rel: str, base_text: str) -> TextChange | None:
        """Merge closed `rel`'s disk text as peer "disk", three-way from `base_text`: the disk
        text when a holder that does not reload from disk (an ACP session without the client's
        buffers) opened it. While it was open the watcher only remembered a save (053); this
        takes the save in. No-op when the disk still holds `base_text`."""
        rel = self.resolve(rel)
        document = self._docs.get(rel)
        if document is None:
            return None
        if document.open:
            raise StateError("close the document before merging the disk into it", rel)
        path = self.root / rel
        if not path.exists():
            return None
        new_text = self._load_text(rel, path)
        if new_text == base_text:
            return None
        change = self._merge_from_base(document, base_text, new_text, DISK_ORIGIN)
        self._mark_disk(document, new_text)
        return change

    def restore_from_journal(self) -> list[str]:
        """Load every file that has a journal (recovery after a restart)."""
        if self._store is None:
            return []
        restored = []
        for rel in self._store.journaled_paths():
            try:
                self._document(self.resolve(rel))
                restored.append(rel)
            except (PathRefused, FileRefused) as exc:
                log.warning("journal of %s not restored: %s", rel, exc)
        return restored

    def close(self) -> None:
        """Close the journals (the state stays usable; they reopen on the next append)."""
        for journal in self._journals.values():
            journal.close()

    # --- internals -------------------------------------------------------------------------

    def _document(self, rel: str, *, create_missing: bool = False) -> FileDocument:
        rel = self.resolve(rel)
        document = self._docs.get(rel)
        if document is not None:
            return document
        document = FileDocument(
            rel,
            on_change=self._publish,
            on_update=self._journal_update,
            history_limit=self._history_limit,
            journaled=self._store is not None,
        )
        journal = self._store.journal(rel) if self._store is not None else None
        path = self.root / rel
        if journal is not None and journal.exists():
            self._replay(document, journal)
            self._docs[rel] = document
            self._emit_loaded(document)
            if path.exists():
                self.ingest_disk_change(rel)
            return document
        if path.exists():
            text = self._load_text(rel, path)
        elif create_missing:
            text = ""
        else:
            raise FileRefused("no such file", rel)
        self._docs[rel] = document
        self._replaying = True  # the initial insert is journaled as one "load" update below
        try:
            document.apply_edits([TextEdit(0, 0, text)] if text else [], LOAD_ORIGIN)
        finally:
            self._replaying = False
        document.history.clear()
        document.version = 0
        document.disk_text = text if path.exists() else None
        if journal is not None:
            self._journals[rel] = journal
            journal.append(JournalRecord("update", LOAD_ORIGIN, document.encode_update()))
            if document.disk_text is not None:
                journal.append(JournalRecord("disk", text=text))
        self._emit_loaded(document)
        return document

    def _replay(self, document: FileDocument, journal: CrdtJournal) -> None:
        """Restore the journal's history. The user's edits after the last save belonged to a
        buffer that is gone with the old process: they are discarded, never pushed back (an
        editor that still holds them sends them again with didOpen)."""
        records = list(journal.records())
        finished = {r.origin for r in records if r.kind in ("accept", "reject")}
        self._replaying = True
        document.track_user_edits()
        try:
            for record in records:
                if record.kind in ("disk", "discard"):
                    document.user_edits_saved()  # saved, or discarded already
                if record.kind == "update":
                    task_id = task_of_origin(record.origin)
                    if task_id is not None and task_id not in finished:
                        document.track_task(record.origin)
                    document.apply_update(record.update, record.origin or "remote")
                elif record.kind == "disk":
                    document.disk_text = record.text
                elif record.kind in ("accept", "reject"):
                    document.forget_task(record.origin)
                elif record.kind == "accept-hunk" and record.origin in document.hunks:
                    document.accept_hunk(record.origin, int(record.text))
        finally:
            self._replaying = False
        self._journals[document.rel] = journal
        if document.discard_user_edits():
            log.info("%s: unsaved edits of a closed editor buffer discarded", document.rel)
        self._journal_marker(document, JournalRecord("discard", origin=USER_ORIGIN))

    def _emit_loaded(self, document: FileDocument) -> None:
        if self._record is not None:
            self._record(
                Event(
                    kind="file.loaded",
                    payload={
                        "path": document.rel,
                        "text": document.text,
                        "version": document.version,
                    },
                )
            )

    def _load_text(self, rel: str, path: Path) -> str:
        try:  # a FIFO, a device or a symlink loop is refused before a byte is read
            data = read_regular_file(path, max_bytes=self.max_file_bytes)
        except Unreadable as exc:
            raise FileRefused(exc.reason, rel) from None
        if b"\x00" in data:
            raise FileRefused(f"binary file (NUL byte at offset {data.index(0)})", rel)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileRefused(f"not UTF-8 text (invalid byte at offset {exc.start})", rel) from None

    def _check(self, edits: Sequence[TextEdit], document: FileDocument) -> None:
        try:
            check_edits(edits, len(document.text))
        except EditRangeError as exc:
            raise MutationRefused(str(exc), document.rel) from None

    def _merge_from_base(
        self,
        document: FileDocument,
        base_text: str,
        new_text: str,
        origin: str,
    ) -> TextChange | None:
        """Three-way merge: their change (base -> new) rebased over ours (base -> current),
        so only characters both sides still share are deleted and every insertion lands."""
        theirs = diff_edits(base_text, new_text)
        ours = diff_edits(base_text, document.text)
        same = set(ours)
        theirs = [edit for edit in theirs if edit not in same]  # made on both sides already
        return self._commit(document, rebase_edits(theirs, ours), origin)

    def _commit(
        self, document: FileDocument, edits: Sequence[TextEdit], origin: str
    ) -> TextChange | None:
        if not edits:
            return None
        self._last_change: TextChange | None = None
        document.apply_edits(edits, origin)
        return self._last_change

    def _publish(self, document: FileDocument, origin: str, edits: tuple[TextEdit, ...]) -> None:
        change = TextChange(document.rel, origin, edits, document.version, document.open)
        self._last_change = change
        if self._replaying:
            return
        if self._record is not None:
            task_id = task_of_origin(origin)
            agent_id = origin[len("agent:") :].split("/", 1)[0] if task_id else None
            self._record(
                Event(
                    kind="file.changed",
                    payload={
                        "path": document.rel,
                        "origin": origin,
                        "edits": [[e.start, e.end, e.new_text] for e in edits],
                        "version": document.version,
                    },
                    task_id=task_id,
                    agent_id=agent_id,
                )
            )
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("change listener %r failed on %s", listener, document.rel)

    def _journal_update(self, document: FileDocument, origin: str, update: bytes) -> None:
        if self._replaying:
            return
        journal = self._journals.get(document.rel)
        if journal is not None:
            journal.append(JournalRecord("update", origin, update))

    def _journal_marker(self, document: FileDocument, record: JournalRecord) -> None:
        journal = self._journals.get(document.rel)
        if journal is not None:
            journal.append(record)

    def _compact_journal(self, document: FileDocument) -> None:
        """With no task left to reject, the per-origin history is no longer needed: keep one
        update with the whole state and the disk text (the journal stops growing)."""
        journal = self._journals.get(document.rel)
        if journal is None or document.task_undo:
            return
        journal.reset(
            [
                JournalRecord("update", LOAD_ORIGIN, document.encode_update()),
                JournalRecord("disk", text=document.disk_text or ""),
            ]
        )

    def _mark_disk(self, document: FileDocument, text: str) -> None:
        document.disk_text = text
        if text == document.text:
            document.user_edits_saved()  # the editor saved this buffer
        self._journal_marker(document, JournalRecord("disk", text=text))

    def _check_still_inside(self, rel: str) -> None:
        """A symlink may have been swapped since the file was loaded: check before writing."""
        try:
            real = real_path(self.root / rel)
        except Unreadable as exc:
            raise PathRefused(exc.reason, rel) from None
        try:
            inside = real.relative_to(self.root).parts
        except ValueError:
            raise PathRefused(
                f"a symlink now leads outside the workspace (to {real})", rel
            ) from None
        if inside and inside[0] == PRIVATE_FOLDER:
            raise PathRefused(f"a symlink now leads into {PRIVATE_FOLDER}/", rel)

    def _write_atomically(self, rel: str, text: str) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o644
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent
        )
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(text.encode("utf-8"))
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp_name, mode)
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        info = target.stat()
        self._own_writes[rel] = (info.st_mtime_ns, info.st_size)
