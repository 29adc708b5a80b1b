"""EditBridge: keeps each open editor buffer and the CodeCRDT converged.

Owns a model of every open buffer (`ClientBuffer`: the text and LSP version the client has),
exactly updated from didOpen/didChange, which it hands to the engine's document intake as one
call per event. Agent, disk and reject changes to an open document (`on_text_changed`, from the
engine's notice stream) are pushed as `workspace/applyEdit` with `documentChanges` (a
versioned TextDocumentEdit, in the negotiated position encoding), derived from the difference
between the client's buffer and the CRDT. `when_delivered` runs a callback once the client
holds what was pushed, so diagnostics are never placed on a text the client lacks.
Invariants: at most one applyEdit in flight per document; the client's echo (the didChange
that applies our own edit) is recognised by version and resulting text and never applied
twice; a user edit made while our edit was in flight is rebased onto the CRDT text (only
characters the user saw are deleted; every typed character lands); on `applied: false` or a
moved version the edit is re-derived and retried; nothing is pushed to a client that did not
declare `workspace.applyEdit`; a buffer the engine refuses (over the size limit) is not
tracked and the refusal is raised for the handler to show. Runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lsprotocol import types

from delegation_machine.engine.protocol import TextEdit
from delegation_machine.engine.state import USER_ORIGIN, FileRefused, TextChange
from delegation_machine.engine.state.textdiff import (
    ChangeComposer,
    apply_edits,
    diff_edits,
    rebase_edits,
)
from delegation_machine.server.positions import LineIndex, PositionEncoding, normalize_encoding

log = logging.getLogger(__name__)

SendApplyEdit = Callable[
    [types.ApplyWorkspaceEditParams], Awaitable[types.ApplyWorkspaceEditResult]
]
ContentChange = types.TextDocumentContentChangeEvent  # a range edit or the whole document
Delivered = Callable[[str | None], None]  # called with the client's text (None: not open)


class SharedDocuments(Protocol):
    """The engine's side of document sync (the swarm's intake, or a bare WorkspaceState)."""

    def resolve(self, path: str, /) -> str: ...

    def read(self, rel: str, /) -> tuple[str, int]: ...

    def open_document(self, rel: str, text: str, version: int, /) -> TextChange | None: ...

    def apply_user_change(
        self, rel: str, edits: Sequence[TextEdit], version: int, /
    ) -> TextChange | None: ...

    def close_document(self, rel: str, /) -> object: ...


EDIT_LABEL = "Delegation Machine"
MAX_COMPOSED_PIECES = 4096


@dataclass
class PendingEdit:
    """An applyEdit we sent and whose echo we have not seen yet."""

    version: int  # the client's version the edit addresses
    expected_text: str  # the client's text once it applied the edit
    sent: frozenset[tuple[int, int, int, int, str]] = frozenset()  # ranges and texts sent
    echoed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ClientBuffer:
    rel: str
    uri: str
    text: str
    version: int
    pending: PendingEdit | None = None
    push_task: asyncio.Task[None] | None = None
    repush: bool = False
    # the CRDT changes since `outgoing_base` composed into one edit list: exact, and far
    # cheaper than diffing when many agent edits pile up between two applyEdits
    outgoing: ChangeComposer | None = None
    outgoing_base: str | None = None
    delivered: list[Delivered] = field(default_factory=list)  # waiting for the push to end


@dataclass
class BridgeStatistics:
    sent: int = 0
    applied: int = 0
    refused: int = 0
    echoes: int = 0
    user_changes: int = 0
    rebased_user_changes: int = 0
    gave_up: int = 0
    not_pushed: int = 0  # pushes skipped: the client does not apply workspace edits


class EditBridge:
    """Editor buffers <-> CodeCRDT. The server's document handlers call `on_did_open`,
    `on_did_change` and `on_did_close`; its notice handler calls `on_text_changed`."""

    def __init__(
        self,
        send_apply_edit: SendApplyEdit,
        documents: SharedDocuments,
        uri_for: Callable[[str], str],
        position_encoding: object = "utf-16",
        *,
        max_attempts: int = 8,
        echo_timeout_s: float = 5.0,
        can_push: Callable[[], bool] = lambda: True,
    ) -> None:
        self._send_apply_edit = send_apply_edit
        self.documents = documents
        self._uri_for = uri_for
        self.position_encoding: PositionEncoding = normalize_encoding(position_encoding)
        self._max_attempts = max_attempts
        self._echo_timeout_s = echo_timeout_s
        self._can_push = can_push
        self._buffers: dict[str, ClientBuffer] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.statistics = BridgeStatistics()

    # --- called by the server's handlers ---------------------------------------------------

    def on_did_open(self, rel: str, text: str, version: int) -> None:
        """didOpen: register the buffer, merge it into the CRDT (peer "user"), and push
        whatever the CRDT holds that the buffer lacks (e.g. unsaved agent edits). A refused
        buffer (e.g. over the size limit) raises FileRefused: the editor keeps it, we do not."""
        rel = self.documents.resolve(rel)
        self.documents.open_document(rel, text, version)
        buffer = ClientBuffer(rel, self._uri_for(rel), text, version)
        self._buffers[rel] = buffer
        self._schedule_push(buffer)

    def on_did_change(
        self, rel: str, content_changes: Sequence[ContentChange], version: int
    ) -> list[TextEdit] | None:
        """didChange: returns the user's edits as applied to the CRDT (against the CRDT text
        before each), or None when this was the echo of our own applyEdit (or the document is
        not tracked)."""
        rel = self.documents.resolve(rel)
        buffer = self._buffers.get(rel)
        if buffer is None:
            log.debug("didChange for %s, which is not tracked", rel)
            return None
        pending = buffer.pending
        if (
            pending is not None
            and version == pending.version + 1
            and len(content_changes) == len(pending.sent)
            and _change_signature(content_changes) == pending.sent
        ):
            # the echo, change for change as we sent it: no need to re-apply it
            self._take_echo(buffer, pending, pending.expected_text, version)
            return None
        new_text, client_edits = self._client_text_after(buffer.text, content_changes)
        if pending is not None and new_text == pending.expected_text:
            # our own edit coming back (normally at pending.version + 1)
            self._take_echo(buffer, pending, new_text, version)
            return None
        try:
            applied = self._apply_user_edits(buffer, client_edits, version)
        except FileRefused:  # the buffer grew over the limit: stop tracking it, say why
            self.on_did_close(rel)
            raise
        buffer.outgoing = None  # the buffer moved on its own: the next push diffs
        buffer.text = new_text
        buffer.version = version
        if pending is not None and version > pending.version:
            # the client moved past the version our edit addressed: it will refuse it (or
            # already did); release the push so it re-derives from this buffer
            buffer.pending = None
            pending.echoed.set()
        if self.documents.read(rel)[0] != buffer.text:
            self._schedule_push(buffer)
        return applied

    def on_did_close(self, rel: str) -> None:
        rel = self.documents.resolve(rel)
        buffer = self._buffers.pop(rel, None)
        if buffer is not None:
            if buffer.push_task is not None:
                buffer.push_task.cancel()
            self._run_delivered(buffer, None)
        self.documents.close_document(rel)
        self._update_idle()

    def client_text(self, rel: str) -> str | None:
        """The bridge's model of the client's buffer (None if not open)."""
        buffer = self._buffers.get(self.documents.resolve(rel))
        return buffer.text if buffer is not None else None

    def when_delivered(self, rel: str, callback: Delivered) -> None:
        """Call `callback(client_text)` once no edit to `rel` is on its way to the client: at
        once when none is, else when the current push ends (converged, given up or closed)."""
        buffer = self._buffers.get(rel)
        if buffer is None:
            callback(None)
        elif buffer.push_task is None or buffer.push_task.done():
            callback(buffer.text)
        else:
            buffer.delivered.append(callback)

    async def wait_idle(self) -> None:
        """Wait until no applyEdit is pending or scheduled (tests and benchmarks)."""
        await self._idle.wait()

    def close(self) -> None:
        for buffer in self._buffers.values():
            if buffer.push_task is not None:
                buffer.push_task.cancel()
        self._buffers.clear()
        self._idle.set()

    # --- CRDT -> editor ----------------------------------------------------------------------

    def on_text_changed(self, change: TextChange) -> None:
        """A committed CRDT change: push agent, disk and reject changes of open buffers."""
        if not change.is_open or change.origin == USER_ORIGIN:
            return
        buffer = self._buffers.get(change.path)
        if buffer is not None:
            if buffer.outgoing is not None:
                buffer.outgoing.apply(change.edits)
                if buffer.outgoing.piece_count > MAX_COMPOSED_PIECES:
                    buffer.outgoing = None  # scattered edits: one diff is cheaper now
            self._schedule_push(buffer)

    def _schedule_push(self, buffer: ClientBuffer) -> None:
        if buffer.push_task is not None and not buffer.push_task.done():
            buffer.repush = True  # the running push re-derives before it stops
            return
        if self.documents.read(buffer.rel)[0] == buffer.text:
            return
        if not self._can_push():
            self.statistics.not_pushed += 1
            log.info(
                "%s differs from the client's buffer; the client takes no applyEdit", buffer.rel
            )
            return
        self._idle.clear()
        task = asyncio.get_running_loop().create_task(
            self._push_until_converged(buffer), name=f"applyEdit {buffer.rel}"
        )
        buffer.push_task = task
        task.add_done_callback(lambda done: self._push_finished(buffer, done))

    def _push_finished(self, buffer: ClientBuffer, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("pushing edits failed", exc_info=task.exception())
        if self._buffers.get(buffer.rel) is buffer:
            self._run_delivered(buffer, buffer.text)
        self._update_idle()

    @staticmethod
    def _run_delivered(buffer: ClientBuffer, text: str | None) -> None:
        callbacks, buffer.delivered = buffer.delivered, []
        for callback in callbacks:
            callback(text)

    def _update_idle(self) -> None:
        busy = any(
            b.push_task is not None and not b.push_task.done() for b in self._buffers.values()
        )
        if not busy:
            self._idle.set()

    async def _push_until_converged(self, buffer: ClientBuffer) -> None:
        failures = 0
        while self._buffers.get(buffer.rel) is buffer:
            buffer.repush = False
            server_text = self.documents.read(buffer.rel)[0]
            if server_text == buffer.text:
                return
            applied = await self._push_once(buffer, server_text)
            if applied:
                failures = 0
                continue
            failures += 1
            if failures >= self._max_attempts:
                self.statistics.gave_up += 1
                log.warning("%s: client refused %d applyEdits in a row", buffer.rel, failures)
                return
            await asyncio.sleep(0)  # let the didChange that moved the version be handled

    async def _push_once(self, buffer: ClientBuffer, server_text: str) -> bool:
        edits = self._outgoing_edits(buffer, server_text)
        buffer.outgoing = ChangeComposer(len(server_text))
        buffer.outgoing_base = server_text
        params = self._apply_edit_params(buffer, expressible_edits(buffer.text, edits))
        (document_edit,) = params.edit.document_changes or ()
        assert isinstance(document_edit, types.TextDocumentEdit)
        pending = PendingEdit(buffer.version, server_text, _edit_signature(document_edit.edits))
        buffer.pending = pending
        self.statistics.sent += 1
        try:
            result = await self._send_apply_edit(params)
        except Exception as exc:  # a client error answer: treat as refused, re-derive
            log.info("%s: applyEdit failed: %s", buffer.rel, exc)
            result = types.ApplyWorkspaceEditResult(applied=False, failure_reason=str(exc))
        if not result.applied:
            self.statistics.refused += 1
            if buffer.pending is pending:
                buffer.pending = None
            return False
        self.statistics.applied += 1
        if not pending.echoed.is_set():
            try:
                async with asyncio.timeout(self._echo_timeout_s):
                    await pending.echoed.wait()
            except TimeoutError:
                # applied but never echoed (a client without didChange for our edits): adopt
                log.warning("%s: no didChange after an applied edit; assuming it", buffer.rel)
                self._take_echo(buffer, pending, pending.expected_text, pending.version + 1)
        return True

    def _outgoing_edits(self, buffer: ClientBuffer, server_text: str) -> list[TextEdit]:
        """Edits taking the client's buffer to `server_text`: the composed CRDT changes when
        they start from exactly that buffer, a diff otherwise."""
        if buffer.outgoing is not None and buffer.outgoing_base is not None:
            base = buffer.outgoing_base
            if base is buffer.text or base == buffer.text:
                edits = buffer.outgoing.edits()
                if apply_edits(buffer.text, edits) == server_text:
                    return edits
        return diff_edits(buffer.text, server_text)

    def _take_echo(
        self, buffer: ClientBuffer, pending: PendingEdit, text: str, version: int
    ) -> None:
        self.statistics.echoes += 1
        buffer.text = text
        buffer.version = version
        buffer.pending = None
        pending.echoed.set()

    def _apply_edit_params(
        self, buffer: ClientBuffer, edits: Sequence[TextEdit]
    ) -> types.ApplyWorkspaceEditParams:
        index = LineIndex(buffer.text)
        encoding = self.position_encoding
        lsp_edits: list[types.TextEdit | types.AnnotatedTextEdit | types.SnippetTextEdit] = []
        for edit in edits:
            start_line, start_char = index.position_of(edit.start, encoding)
            end_line, end_char = index.position_of(edit.end, encoding)
            lsp_edits.append(
                types.TextEdit(
                    range=types.Range(
                        start=types.Position(line=start_line, character=start_char),
                        end=types.Position(line=end_line, character=end_char),
                    ),
                    new_text=edit.new_text,
                )
            )
        document_edit = types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(
                uri=buffer.uri, version=buffer.version
            ),
            edits=lsp_edits,
        )
        return types.ApplyWorkspaceEditParams(
            edit=types.WorkspaceEdit(document_changes=[document_edit]), label=EDIT_LABEL
        )

    # --- editor -> CRDT ----------------------------------------------------------------------

    def _client_text_after(
        self, text: str, content_changes: Sequence[ContentChange]
    ) -> tuple[str, list[list[TextEdit]]]:
        """Apply LSP content changes in order; also return each as code-point edits against
        the text it applied to."""
        steps: list[list[TextEdit]] = []
        for change in content_changes:
            change_range = getattr(change, "range", None)
            if change_range is None:
                edits = diff_edits(text, change.text)
            else:
                index = LineIndex(text)
                start = index.offset_of(
                    change_range.start.line, change_range.start.character, self.position_encoding
                )
                end = index.offset_of(
                    change_range.end.line, change_range.end.character, self.position_encoding
                )
                edits = [TextEdit(start, max(start, end), change.text)]
            steps.append(edits)
            text = apply_edits(text, edits)
        return text, steps

    def _apply_user_edits(
        self, buffer: ClientBuffer, steps: list[list[TextEdit]], version: int
    ) -> list[TextEdit]:
        """Each step addresses the client text; rebase it onto the CRDT text when they differ
        (our edit in flight), then apply as the user."""
        applied: list[TextEdit] = []
        client_text = buffer.text
        for edits in steps:
            server_text = self.documents.read(buffer.rel)[0]
            landed = edits
            if server_text != client_text:
                landed = rebase_edits(edits, diff_edits(client_text, server_text))
                self.statistics.rebased_user_changes += 1
            self.documents.apply_user_change(buffer.rel, landed, version)
            applied.extend(landed)
            client_text = apply_edits(client_text, edits)
        self.statistics.user_changes += 1
        return applied


def expressible_edits(text: str, edits: Sequence[TextEdit]) -> list[TextEdit]:
    """Widen edits whose ends fall between the CR and LF of a CRLF (no LSP position can name
    that point) by the CR or the LF, so the client applies exactly what we meant."""
    touching_merged: list[TextEdit] = []
    for edit in edits:
        if touching_merged and touching_merged[-1].end == edit.start:
            last = touching_merged.pop()
            edit = TextEdit(last.start, edit.end, last.new_text + edit.new_text)
        touching_merged.append(edit)
    widened: list[TextEdit] = []
    for edit in touching_merged:
        start, end, new_text = edit.start, edit.end, edit.new_text
        if 0 < start < len(text) and text[start - 1] == "\r" and text[start] == "\n":
            start, new_text = start - 1, "\r" + new_text
        if 0 < end < len(text) and text[end - 1] == "\r" and text[end] == "\n":
            end, new_text = end + 1, new_text + "\n"
        widened.append(TextEdit(start, end, new_text))
    return widened


def _edit_signature(
    edits: Sequence[types.TextEdit | types.AnnotatedTextEdit | types.SnippetTextEdit],
) -> frozenset[tuple[int, int, int, int, str]]:
    return frozenset(
        (
            e.range.start.line,
            e.range.start.character,
            e.range.end.line,
            e.range.end.character,
            e.snippet.value if isinstance(e, types.SnippetTextEdit) else e.new_text,
        )
        for e in edits
    )


def _change_signature(
    changes: Sequence[ContentChange],
) -> frozenset[tuple[int, int, int, int, str]]:
    """The same signature for content changes; a whole-document change never matches. Equal
    signatures mean the same text only when the changes did not shift each other, so a match
    also needs the changes in back-to-front order (how editors apply a multi-edit)."""
    ranges = []
    for change in changes:
        change_range = getattr(change, "range", None)
        if change_range is None:
            return frozenset()
        ranges.append(change_range)
    for later, earlier in itertools.pairwise(ranges):
        if (earlier.end.line, earlier.end.character) > (later.start.line, later.start.character):
            return frozenset()
    return _edit_signature(
        [types.TextEdit(range=r, new_text=c.text) for r, c in zip(ranges, changes, strict=True)]
    )
