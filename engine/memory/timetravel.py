"""Episodic memory and time travel: the workspace and every agent's state at any ledger step.

Owns replay over ledger events: "file.loaded" (the full text) and "file.changed" (code-point
edits against the previous text) rebuild every file; "agent.turn" events rebuild each agent's
trajectory; "task.forked" starts a task from an earlier step. Pure over the ledger: reading
never changes it, and forking only appends. A replay that cannot be done raises ReplayError
naming the event and the file.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

from delegation_machine.engine.protocol import Event

FILE_KINDS = ("file.loaded", "file.changed", "file.removed")
TURN_KIND = "agent.turn"
FORK_KIND = "task.forked"


class ReplayError(ValueError):
    """An event could not be replayed (an edit outside the text, a change before any load)."""

    def __init__(self, message: str, seq: int, path: str | None = None) -> None:
        where = f"seq {seq}" + (f", {path}" if path else "")
        super().__init__(f"{where}: {message}")
        self.seq = seq
        self.path = path


class EventLog(Protocol):
    """What replay needs from the ledger (engine.ledger.Ledger satisfies it)."""

    def append(self, event: Event) -> Event: ...

    def events(
        self, since: int = 0, *, task_id: str | None = None, kinds: Iterable[str] | None = None
    ) -> list[Event]: ...


class FileState(msgspec.Struct, frozen=True):
    text: str
    version: int
    last_seq: int


class AgentTurn(msgspec.Struct, frozen=True):
    """One recorded turn of an agent ("agent.turn" payload, plus the event's seq)."""

    seq: int
    task_id: str | None
    agent_id: str
    turn: int
    role: str
    content_digest: str
    tokens: int = 0
    tool: str | None = None
    content: str | None = None


class AgentState(msgspec.Struct, frozen=True):
    agent_id: str
    task_id: str | None
    step: int
    turns: tuple[AgentTurn, ...]

    @property
    def tokens(self) -> int:
        return sum(turn.tokens for turn in self.turns)

    @property
    def last_turn(self) -> int:
        return self.turns[-1].turn if self.turns else 0


class WorkspaceState(msgspec.Struct, frozen=True):
    step: int
    files: dict[str, FileState]
    problems: dict[str, str] = {}  # path -> why it could not be replayed (lenient replay)

    def text(self, path: str) -> str:
        return self.files[path].text


class ForkedTask(msgspec.Struct, frozen=True):
    task_id: str
    parent_task: str
    step: int
    event_seq: int
    workspace: WorkspaceState
    agents: tuple[AgentState, ...]


def content_digest(content: str) -> str:
    return "sha256:" + hashlib.sha256(content.encode("utf-8")).hexdigest()


def turn_event(
    *,
    task_id: str,
    agent_id: str,
    turn: int,
    role: str,
    content: str,
    tokens: int = 0,
    tool: str | None = None,
    keep_content: bool = True,
) -> Event:
    """The "agent.turn" event for one turn (content kept unless asked not to; digest always)."""
    payload: dict[str, Any] = {
        "task_id": task_id,
        "agent_id": agent_id,
        "turn": turn,
        "role": role,
        "content_digest": content_digest(content),
        "tokens": tokens,
        "tool": tool,
    }
    if keep_content:
        payload["content"] = content
    return Event(kind=TURN_KIND, payload=payload, task_id=task_id, agent_id=agent_id)


def apply_recorded_edits(text: str, edits: list[Any], seq: int, path: str) -> str:
    """Apply [[start, end, new_text], ...] (code points, all against `text`)."""
    parsed: list[tuple[int, int, str]] = []
    for position, edit in enumerate(edits):
        try:
            start, end, new_text = int(edit[0]), int(edit[1]), str(edit[2])
        except (TypeError, ValueError, IndexError):
            raise ReplayError(f"edit {position} is not [start, end, new_text]", seq, path) from None
        if not 0 <= start <= end <= len(text):
            raise ReplayError(
                f"edit {position} [{start}, {end}) is outside the text (length {len(text)})",
                seq,
                path,
            )
        parsed.append((start, end, new_text))
    parsed.sort(key=lambda item: (item[0], item[1]))
    pieces: list[str] = []
    cursor = 0
    for position, (start, end, new_text) in enumerate(parsed):
        if start < cursor:
            raise ReplayError(f"edit {position} overlaps the one before it", seq, path)
        pieces.append(text[cursor:start])
        pieces.append(new_text)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def replay_files(
    events: Iterable[Event], step: int | None = None, *, strict: bool = True
) -> WorkspaceState:
    """Every file's text and version after the last event with seq <= step.

    strict: a bad event raises ReplayError. Otherwise the file it concerns is left out from
    then on (until its next file.loaded) and the reason goes to `problems`.
    """
    files: dict[str, FileState] = {}
    problems: dict[str, str] = {}
    last = 0
    for event in events:
        if step is not None and event.seq > step:
            break
        last = event.seq
        if event.kind not in FILE_KINDS:
            continue
        try:
            _replay_one(files, event)
        except ReplayError as exc:
            if strict or exc.path is None:
                raise
            files.pop(exc.path, None)
            problems[exc.path] = str(exc)
        else:
            if event.kind == "file.loaded":
                problems.pop(str(event.payload.get("path")), None)
    return WorkspaceState(step if step is not None else last, files, problems)


def _replay_one(files: dict[str, FileState], event: Event) -> None:
    path = str(event.payload.get("path", ""))
    if not path:
        raise ReplayError("file event without a path", event.seq)
    if event.kind == "file.loaded":
        text = str(event.payload.get("text", ""))
        files[path] = FileState(text, int(event.payload.get("version", 0)), event.seq)
    elif event.kind == "file.removed":
        files.pop(path, None)
    else:
        current = files.get(path)
        if current is None:
            raise ReplayError("a change before any file.loaded", event.seq, path)
        text = apply_recorded_edits(
            current.text, list(event.payload.get("edits", [])), event.seq, path
        )
        version = int(event.payload.get("version", current.version + 1))
        files[path] = FileState(text, version, event.seq)


def _turn_from_event(event: Event) -> AgentTurn:
    payload = event.payload
    try:
        return AgentTurn(
            seq=event.seq,
            task_id=payload.get("task_id", event.task_id),
            agent_id=str(payload.get("agent_id") or event.agent_id),
            turn=int(payload["turn"]),
            role=str(payload["role"]),
            content_digest=str(payload.get("content_digest", "")),
            tokens=int(payload.get("tokens", 0)),
            tool=payload.get("tool"),
            content=payload.get("content"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplayError(
            f"agent.turn payload is missing or has a bad field: {exc}", event.seq
        ) from None


class TimeTravel:
    """Replays a ledger to any step and forks tasks from a step."""

    def __init__(self, ledger: EventLog) -> None:
        self.ledger = ledger

    def last_step(self) -> int:
        events = self.ledger.events()
        return events[-1].seq if events else 0

    def workspace_at(self, step: int | None = None, *, strict: bool = True) -> WorkspaceState:
        return replay_files(self.ledger.events(kinds=FILE_KINDS), step, strict=strict)

    def agents_at(self, step: int | None = None, task_id: str | None = None) -> list[AgentState]:
        """Every agent's trajectory up to `step` (optionally one task's agents only)."""
        turns: dict[tuple[str | None, str], list[AgentTurn]] = {}
        limit = step if step is not None else self.last_step()
        for event in self.ledger.events(kinds=(TURN_KIND,), task_id=task_id):
            if event.seq > limit:
                break
            turn = _turn_from_event(event)
            turns.setdefault((turn.task_id, turn.agent_id), []).append(turn)
        return [
            AgentState(agent_id, owner, limit, tuple(items))
            for (owner, agent_id), items in sorted(turns.items(), key=lambda kv: str(kv[0]))
        ]

    def agent_at(self, agent_id: str, step: int | None = None) -> AgentState:
        limit = step if step is not None else self.last_step()
        matching = [state for state in self.agents_at(limit) if state.agent_id == agent_id]
        if not matching:
            return AgentState(agent_id, None, limit, ())
        turns = tuple(sorted((t for s in matching for t in s.turns), key=lambda t: t.seq))
        return AgentState(agent_id, matching[0].task_id, limit, turns)

    def fork(self, task_id: str, step: int, new_task_id: str | None = None) -> ForkedTask:
        """Start a new task from `task_id`'s state at `step`; records "task.forked"."""
        last = self.last_step()
        if not 0 <= step <= last:
            raise ReplayError(f"cannot fork from step {step}: the ledger ends at {last}", step)
        forked_id = new_task_id or f"{task_id}-fork-{uuid.uuid4().hex[:8]}"
        workspace = self.workspace_at(step)
        agents = tuple(self.agents_at(step, task_id=task_id))
        stored = self.ledger.append(
            Event(
                kind=FORK_KIND,
                task_id=forked_id,
                payload={
                    "from_task": task_id,
                    "step": step,
                    "files": {path: state.version for path, state in workspace.files.items()},
                    "agents": [state.agent_id for state in agents],
                },
            )
        )
        return ForkedTask(forked_id, task_id, step, stored.seq, workspace, agents)
