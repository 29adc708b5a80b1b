"""One ACP session: a workspace's swarm, the client's buffers, and its prompt turns.

Owns, per session, the files it holds open in the swarm's state on the client's behalf and
the turn in progress. A turn is one delegation: its plan and tool calls are streamed while it
runs, and before its changes are kept the client is asked for permission; allow accepts the
delegation, reject undoes exactly its edits. Invariant: nothing an agent changed reaches the
disk or the client's buffers before that permission: every file an agent of the turn changed
is held open in the state as the client's buffer (the swarm writes only closed files), from
the moment its edits land until the user decides; a file an LSP editor already has open (a
`serve` attached to) stays that editor's: neither held, closed nor flushed by the session. With the client's `fs` capabilities the kept
text is written through `fs/write_text_file` (never to disk) and targeted files are read
through `fs/read_text_file`; without them, through the disk as the CLI does. Lives on the
event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from acp import RequestError
from acp.interfaces import Client
from acp.schema import (
    AgentMessageChunk,
    AllowedOutcome,
    PromptResponse,
    TextContentBlock,
    ToolCallUpdate,
    Usage,
    UsageUpdate,
)

from delegation_machine.engine.notices import Notice
from delegation_machine.engine.protocol import (
    DelegationError,
    DelegationRequest,
    TaskState,
    TaskUpdate,
)
from delegation_machine.engine.schedule.board import TaskRecord
from delegation_machine.engine.state import StateError
from delegation_machine.engine.state.textdiff import diff_edits, rebase_edits
from delegation_machine.engine.swarm import Swarm
from delegation_machine.server.acp import updates
from delegation_machine.server.acp.prompt import PromptBlock, PromptError, lines_span, read_prompt

log = logging.getLogger(__name__)

T = TypeVar("T")
KEPT_STATES = (TaskState.VERIFIED, TaskState.HELD)  # a finished task whose edits are applied
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602


def invalid_params(message: str, **data: Any) -> RequestError:
    return RequestError(INVALID_PARAMS, message, data or None)


@dataclass
class ClientFiles:
    """What the client's file system offers: its buffers are read and written through it."""

    read: bool = False
    write: bool = False

    @property
    def buffers(self) -> bool:
        """Both ways: the client owns the text of the files it is asked about."""
        return self.read and self.write


@dataclass
class AcpSession:
    """A conversation with the client about one workspace."""

    session_id: str
    swarm: Swarm
    client: Client
    files: ClientFiles
    always_keep: bool = False
    held: set[str] = field(default_factory=set)  # files open in the state for the client
    turn: DelegationTurn | None = None
    prompting: bool = False
    _versions: int = 0
    _disk_when_held: dict[str, str | None] = field(default_factory=dict)
    _client_text: dict[str, str] = field(default_factory=dict)  # each buffer as last seen

    @property
    def root(self) -> Path:
        return self.swarm.root

    async def prompt(self, blocks: Sequence[PromptBlock]) -> PromptResponse:
        if self.prompting:
            raise RequestError(
                INVALID_REQUEST,
                f"session {self.session_id} is still working on a prompt; wait for its "
                "response or send session/cancel",
            )
        self.prompting = True  # before the first await: one prompt at a time per session
        try:
            await self.refresh_buffers()
            request = await self.delegation_request(blocks)
            self.turn = DelegationTurn(self, request)
            return await self.turn.run()
        finally:
            self.turn = None
            self.prompting = False

    async def cancel(self) -> None:
        if self.turn is not None:
            await self.turn.cancel()

    async def close(self) -> None:
        """The connection ended: a turn still waiting is cancelled, so nothing unasked is kept."""
        if self.turn is not None:
            await self.turn.cancel()

    # --- the prompt as a delegation --------------------------------------------------------

    async def delegation_request(self, blocks: Sequence[PromptBlock]) -> DelegationRequest:
        """The prompt as a request on the file and lines it names (`RequestError` if bad)."""
        try:
            target = read_prompt(blocks)
        except PromptError as exc:
            raise invalid_params(str(exc)) from None
        if target.path is None:
            return DelegationRequest(instruction=target.instruction, requested_by="acp")
        try:
            rel = self.swarm.state.resolve(str(target.path))
        except StateError as exc:
            raise invalid_params(
                f"{target.path}: {exc.reason} (the session's workspace is {self.root})",
                uri=target.path.as_uri(),
            ) from None
        text = await self.sync_buffer(rel, target.buffer_text)
        span = None
        if target.lines is not None:
            try:
                span = lines_span(text, target.lines, rel)
            except PromptError as exc:
                raise invalid_params(str(exc)) from None
        return DelegationRequest(
            instruction=target.instruction, path=rel, span=span, requested_by="acp"
        )

    async def sync_buffer(self, rel: str, sent_text: str | None) -> str:
        """The file's text as the client holds it, taken into the state; `RequestError` if
        there is no such text file. Without the client's buffers it is the disk's text."""
        if not self.files.buffers:
            if not (self.root / rel).is_file():
                raise invalid_params(f"{rel}: no such file in {self.root}")
            return self.read_state(rel)
        text = sent_text
        if text is None:
            response = await self.client.read_text_file(
                session_id=self.session_id, path=str(self.root / rel)
            )
            text = response.content
        self._client_text[rel] = text
        state = self.swarm.state
        self._versions += 1
        try:
            if rel in self.held and state.is_open(rel):
                state.apply_user_change(rel, None, self._versions, full_text=text)
            else:
                state.open_document(rel, text, self._versions)
                self.held.add(rel)
        except StateError as exc:
            raise invalid_params(f"{rel}: {exc.reason}") from None
        return state.read(rel)[0]

    async def refresh_buffers(self) -> None:
        """Take the client's current text of every file held for it (the user may have typed
        since): an open document does not follow the disk, so it follows the client."""
        if not self.files.buffers:
            return
        for rel in sorted(self.held):
            try:
                await self.sync_buffer(rel, None)
            except RequestError as exc:  # the client no longer has it: the state keeps its text
                log.warning("could not re-read %s from the client: %s", rel, exc)

    def read_state(self, rel: str) -> str:
        try:
            return self.swarm.state.read(rel)[0]
        except StateError as exc:
            raise invalid_params(f"{rel}: {exc.reason}") from None

    # --- the client's buffers --------------------------------------------------------------

    def hold(self, rel: str) -> None:
        """Keep `rel` open in the state for the client, so the swarm never writes it itself."""
        state = self.swarm.state
        if rel in self.held and state.is_open(rel):
            return
        if state.is_open(rel):  # an editor's buffer (an LSP client of the `serve` attached
            return  # to): it owns the document, and the swarm writes no open file either
        text = state.read(rel)[0]
        if not self.files.buffers:  # what a save on disk meanwhile is merged from (release)
            self._disk_when_held[rel] = state.disk_text(rel)
        self._versions += 1
        state.open_document(rel, text, self._versions)
        self.held.add(rel)

    async def keep(self, diffs: Mapping[str, tuple[str, str]]) -> None:
        """The user kept these files' changes (`diffs`: rel -> (before, after) the agents):
        to the client's buffers, else to the disk."""
        state = self.swarm.state
        for rel in sorted(diffs):
            if self.files.buffers:
                await self.take_typing_since(rel, self._client_text.get(rel, diffs[rel][0]))
                text = state.read(rel)[0]
                await self.client.write_text_file(
                    session_id=self.session_id, path=str(self.root / rel), content=text
                )
                self._client_text[rel] = text
            elif rel not in self.held and state.is_open(rel):
                log.info("%s is open in the editor: the kept change is in its buffer", rel)
            else:
                self.release(rel)
                state.flush(rel)

    async def take_typing_since(self, rel: str, base: str) -> None:
        """The user may have typed in the client's buffer while being asked: merge it in,
        three-way from `base` (the buffer as last seen), so writing the buffer keeps it."""
        response = await self.client.read_text_file(
            session_id=self.session_id, path=str(self.root / rel)
        )
        if response.content == base:
            return
        state = self.swarm.state
        ours = diff_edits(base, state.read(rel)[0])
        same = set(ours)
        theirs = [edit for edit in diff_edits(base, response.content) if edit not in same]
        self._versions += 1
        state.apply_user_change(rel, rebase_edits(theirs, ours), self._versions)

    def release(self, rel: str) -> None:
        """Stop holding `rel` (not with the client's buffers: the client owns those), taking in
        what was saved to disk meanwhile, three-way, so a kept change never overwrites it."""
        if rel not in self.held or self.files.buffers:
            return
        state = self.swarm.state
        state.close_document(rel)
        self.held.discard(rel)
        base = self._disk_when_held.pop(rel, None)
        if base is not None:  # no await since the close: the watcher cannot come between
            state.merge_disk_since(rel, base)

    async def send(self, update: Any) -> None:
        await self.client.session_update(session_id=self.session_id, update=update)

    async def say(self, text: str) -> None:
        await self.send(
            AgentMessageChunk(
                session_update="agent_message_chunk",
                content=TextContentBlock(type="text", text=text),
            )
        )


class DelegationTurn:
    """One `session/prompt`: a delegation followed from submit to the user's decision."""

    def __init__(self, session: AcpSession, request: DelegationRequest) -> None:
        self.session = session
        self.swarm = session.swarm
        self.request = request
        self.plan_id: str | None = None
        self.cancelled = asyncio.Event()
        self._changed = asyncio.Event()
        self._announced: set[str] = set()
        self._sent: dict[str, TaskState] = {}
        self._baseline: dict[str, str] = {}  # each file's text before the turn's agents ran
        self._target_lines: dict[str, int] = {}
        self._settled = False  # the user's decision (or its absence) has been carried out
        if request.path is not None and request.span is not None:
            self._target_lines[request.path] = request.span.start.line

    async def run(self) -> PromptResponse:
        unsubscribe = self.swarm.subscribe(self._on_notice)
        try:
            try:
                plan_id = await self.swarm.submit(self.request)
            except DelegationError as exc:
                await self.session.say(f"Not delegated: {exc}")
                return PromptResponse(stop_reason="refusal")
            self._adopt(plan_id)
            if self.cancelled.is_set():
                await self.swarm.cancel(plan_id)
            await self._follow(plan_id)
            return await self._settle(plan_id)
        finally:
            unsubscribe()
            if self.plan_id is not None and not self._settled:
                await self._reject_if_unsettled(self.plan_id)

    async def cancel(self) -> None:
        """`session/cancel`: stop the plan's tasks; the turn ends "cancelled", nothing kept."""
        self.cancelled.set()
        if self.plan_id is not None and not self._plan_state().finished:
            await self.swarm.cancel(self.plan_id)

    # --- following the plan ----------------------------------------------------------------

    def _on_notice(self, notice: Notice) -> None:
        """Synchronous, on the swarm's stream: the files of this turn's tasks are held the
        moment a task is seen with edits, before the swarm could write them on verifying."""
        if not isinstance(notice, TaskUpdate):
            return
        if self.plan_id is None:
            try:
                plan = self.swarm.board.plan(notice.task_id)
            except DelegationError:
                return
            if plan.request is not self.request:
                return
            self._adopt(notice.task_id)
        elif notice.task_id != self.plan_id:
            return
        self._hold_changed_files()
        self._changed.set()

    def _adopt(self, plan_id: str) -> None:
        if self.plan_id is not None:
            return
        self.plan_id = plan_id
        for record in self.swarm.board.plan_tasks(plan_id):
            for rel in record.spec.paths:  # no agent has run yet: the text before the turn
                self._remember_baseline(rel)

    def _remember_baseline(self, rel: str) -> None:
        if rel in self._baseline:
            return
        try:
            self._baseline[rel] = self.swarm.state.read(rel)[0]
        except StateError:  # unreadable or refused: no agent can change it either
            return

    def _hold_changed_files(self) -> None:
        assert self.plan_id is not None
        for record in self.swarm.board.plan_tasks(self.plan_id):
            for rel in sorted(record.files):
                if rel not in self._baseline:  # beyond the task's own files: the disk still
                    path = self.swarm.root / rel  # has it as it was (nothing written yet)
                    self._baseline[rel] = path.read_text("utf-8") if path.is_file() else ""
                self.session.hold(rel)

    def _plan_state(self) -> TaskState:
        assert self.plan_id is not None
        return self.swarm.board.plan(self.plan_id).state

    def _records(self) -> list[TaskRecord]:
        assert self.plan_id is not None
        return self.swarm.board.plan_tasks(self.plan_id)

    async def _follow(self, plan_id: str) -> None:
        """Stream the plan and each task's tool call until every task has finished."""
        while True:
            self._changed.clear()
            finished = self._plan_state().finished
            await self._send_progress()
            if finished:
                return
            await self._changed.wait()

    async def _send_progress(self) -> None:
        records = self._records()
        changed = [r for r in records if self._sent.get(r.spec.task_id) != r.state]
        if not changed:
            return
        await self.session.send(updates.plan_update(records))
        for record in changed:
            task_id = record.spec.task_id
            self._sent[task_id] = record.state
            if task_id not in self._announced:
                self._announced.add(task_id)
                start = updates.tool_call_start(self.swarm.root, record, self._target_lines)
                await self.session.send(start)
                if not record.state.finished:
                    continue
            if record.state.finished:
                await self.session.send(
                    updates.tool_call_outcome(self.swarm.root, record, self._diffs([record]))
                )
            else:
                await self.session.send(updates.tool_call_progress(record))

    def _diffs(self, records: Sequence[TaskRecord]) -> dict[str, tuple[str, str]]:
        """(before, now) of each file these tasks changed whose text differs now."""
        diffs = {}
        for rel in sorted({rel for r in records for rel in r.files}):
            before = self._baseline.get(rel, "")
            now = self.swarm.state.read(rel)[0]
            if now != before:
                diffs[rel] = (before, now)
        return diffs

    # --- the user's decision ---------------------------------------------------------------

    async def _settle(self, plan_id: str) -> PromptResponse:
        response = await self._decide(plan_id)
        self._settled = True
        return response

    async def _decide(self, plan_id: str) -> PromptResponse:
        records = self._records()
        pending = [r for r in records if r.state in KEPT_STATES and r.files]
        diffs = self._diffs(pending)
        usage = await self._report_usage(records)
        await self._say_model_notes(records)
        if self.cancelled.is_set():
            await self._reject(plan_id, diffs)
            await self.session.say(self._summary(records, "Cancelled: nothing was kept."))
            return PromptResponse(stop_reason="cancelled", usage=usage)
        if not diffs:
            await self._release(records)
            await self.session.say(self._summary(records, "Nothing changed."))
            return PromptResponse(stop_reason="end_turn", usage=usage)
        choice = (
            updates.ALLOW_ALWAYS if self.session.always_keep else await self._ask(pending, diffs)
        )
        if choice is None:  # the client cancelled the turn while it was asking
            await self._reject(plan_id, diffs)
            await self.session.say(self._summary(records, "Cancelled: nothing was kept."))
            return PromptResponse(stop_reason="cancelled", usage=usage)
        if choice in (updates.ALLOW_ONCE, updates.ALLOW_ALWAYS):
            self.session.always_keep = self.session.always_keep or choice == updates.ALLOW_ALWAYS
            await self.swarm.accept(plan_id)
            await self.session.keep(diffs)
            verdict = f"Kept the changes to {', '.join(sorted(diffs))}."
        else:
            await self._reject(plan_id, diffs)
            verdict = f"Rejected: the changes to {', '.join(sorted(diffs))} were undone."
        await self._release(records)
        await self.session.say(self._summary(records, verdict))
        return PromptResponse(stop_reason="end_turn", usage=usage)

    async def _ask(
        self, pending: Sequence[TaskRecord], diffs: dict[str, tuple[str, str]]
    ) -> str | None:
        """The option the user chose, or None when the turn was cancelled meanwhile."""
        assert self.plan_id is not None
        if len(pending) == 1:
            tool_call_id = pending[0].spec.task_id
            title = f"Keep the changes of {updates.task_title(pending[0])}?"
        else:
            review = updates.review_tool_call(self.swarm.root, self.plan_id, diffs)
            await self.session.send(review)
            tool_call_id, title = review.tool_call_id, review.title
        asked = self.session.client.request_permission(
            session_id=self.session.session_id,
            tool_call=ToolCallUpdate(tool_call_id=tool_call_id, title=title, kind="edit"),
            options=list(updates.PERMISSION_OPTIONS),
        )
        response = await until_cancelled(asked, self.cancelled)
        if response is None or not isinstance(response.outcome, AllowedOutcome):
            return None
        chosen = response.outcome.option_id
        known = {option.option_id for option in updates.PERMISSION_OPTIONS}
        if chosen not in known:
            log.warning("permission answered with unknown option %r: rejecting", chosen)
            return updates.REJECT
        return chosen

    async def _reject(self, plan_id: str, diffs: dict[str, tuple[str, str]]) -> None:
        if diffs or any(r.state in KEPT_STATES and r.files for r in self._records()):
            await self.swarm.reject(plan_id)
        await self._release(self._records())

    async def _reject_if_unsettled(self, plan_id: str) -> None:
        """The turn ended without a decision (a fault, the client gone): undo, keep nothing."""
        if self._plan_state() in (TaskState.ACCEPTED, TaskState.REJECTED):
            return
        if not self._plan_state().finished:
            await self.swarm.cancel(plan_id)
            await self.swarm.wait(plan_id)
        if any(r.files for r in self._records()):
            await self.swarm.reject(plan_id)
        await self._release(self._records())

    async def _release(self, records: Sequence[TaskRecord]) -> None:
        for rel in sorted({rel for r in records for rel in r.files}):
            self.session.release(rel)

    async def _report_usage(self, records: Sequence[TaskRecord]) -> Usage | None:
        prompt = sum(r.usage.prompt_tokens for r in records)
        output = sum(r.usage.output_tokens for r in records)
        if prompt + output == 0:
            return None
        backend = self.swarm.model.config
        per_task = backend.max_tokens_per_task if backend is not None else prompt + output
        budget = max(per_task * len(records), prompt + output)  # the plan's token budget
        await self.session.send(
            UsageUpdate(session_update="usage_update", used=prompt + output, size=budget)
        )
        return Usage(
            total_tokens=prompt + output,
            input_tokens=prompt,
            output_tokens=output,
            cached_read_tokens=sum(r.usage.cached_tokens for r in records),
        )

    async def _say_model_notes(self, records: Sequence[TaskRecord]) -> None:
        """What the agents said about their work (a model's summary), as message text."""
        for record in records:
            for event in self.swarm.events(task_id=record.spec.task_id, kinds=["agent.result"]):
                notes = str(event.payload.get("notes") or "").strip()
                if notes:
                    await self.session.say(f"{record.spec.task_id}: {notes}\n")

    def _summary(self, records: Sequence[TaskRecord], verdict: str) -> str:
        assert self.plan_id is not None
        lines = [f"{self.plan_id} ({self.request.instruction}): {self._plan_state().value}."]
        lines.extend(
            f"- {r.spec.task_id} {r.spec.kind}: {r.state.value}"
            + (f" ({', '.join(sorted(r.files))})" if r.files else "")
            + (f": {r.message}" if r.message else "")
            for r in records
        )
        lines.append(verdict)
        return "\n".join(lines)


async def until_cancelled(awaitable: Awaitable[T], cancelled: asyncio.Event) -> T | None:
    """`awaitable`'s result, or None if `cancelled` is set first (then it is cancelled)."""
    work = asyncio.ensure_future(awaitable)
    stop = asyncio.ensure_future(cancelled.wait())
    try:
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (work, stop):
            pending.cancel()
        await asyncio.gather(work, stop, return_exceptions=True)
    if work.cancelled():
        return None
    return work.result()
