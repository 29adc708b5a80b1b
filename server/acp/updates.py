"""How the swarm's tasks look in an ACP client: plan entries, tool calls, diffs, usage.

Owns the pure conversions from the engine's task records to ACP `session/update` payloads:
a plan entry per task, a tool call per task (its kind, title and locations, so a client can
follow the agent), a tool-call update per state change, `diff` content per changed file.
No I/O here; the session sends what these build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from acp.schema import (
    AgentPlanUpdate,
    ContentToolCallContent,
    FileEditToolCallContent,
    PermissionOption,
    PlanEntry,
    TerminalToolCallContent,
    TextContentBlock,
    ToolCallLocation,
    ToolCallProgress,
    ToolCallStart,
)

from delegation_machine.engine.protocol import TaskState
from delegation_machine.engine.schedule.board import TaskRecord, verdict_text

ToolStatus = Literal["pending", "in_progress", "completed", "failed"]
EntryStatus = Literal["pending", "in_progress", "completed"]
ToolKind = Literal["read", "edit", "execute", "search", "other"]

ALLOW_ONCE = "allow-once"
ALLOW_ALWAYS = "allow-always"
REJECT = "reject"
PERMISSION_OPTIONS = (
    PermissionOption(option_id=ALLOW_ONCE, name="Keep these changes", kind="allow_once"),
    PermissionOption(
        option_id=ALLOW_ALWAYS, name="Always keep changes in this session", kind="allow_always"
    ),
    PermissionOption(option_id=REJECT, name="Reject (undo these changes)", kind="reject_once"),
)
MAX_LOCATIONS = 20  # a workspace-wide task names its first files, not hundreds

_RUNNING = {TaskState.WAITING, TaskState.RUNNING, TaskState.CHECKING}
_FAILED = {TaskState.FAILED, TaskState.ESCALATED, TaskState.CANCELLED, TaskState.REJECTED}
_KINDS: Mapping[str, ToolKind] = {"check": "execute", "index": "search"}


def tool_status(state: TaskState) -> ToolStatus:
    if state in _RUNNING:
        return "in_progress"
    if state in _FAILED:
        return "failed"
    return "completed" if state.finished else "pending"


def entry_status(state: TaskState) -> EntryStatus:
    if state in _RUNNING:
        return "in_progress"
    return "completed" if state.finished else "pending"


def task_title(record: TaskRecord) -> str:
    spec = record.spec
    where = ", ".join(spec.paths[:3]) + (" …" if len(spec.paths) > 3 else "")
    title = f"{spec.kind}: {spec.instruction.strip()}"
    return f"{title} ({where})" if where and where not in title else title


def plan_update(records: Sequence[TaskRecord]) -> AgentPlanUpdate:
    return AgentPlanUpdate(
        session_update="plan",
        entries=[
            PlanEntry(content=task_title(r), priority="medium", status=entry_status(r.state))
            for r in records
        ],
    )


def locations(root: Path, paths: Sequence[str], lines: Mapping[str, int]) -> list[ToolCallLocation]:
    return [
        ToolCallLocation(path=str(root / rel), line=lines.get(rel)) for rel in paths[:MAX_LOCATIONS]
    ]


def tool_call_start(root: Path, record: TaskRecord, lines: Mapping[str, int]) -> ToolCallStart:
    spec = record.spec
    return ToolCallStart(
        session_update="tool_call",
        tool_call_id=spec.task_id,
        title=task_title(record),
        kind=_KINDS.get(spec.kind, "edit"),
        status=tool_status(record.state),
        locations=locations(root, list(spec.paths), lines),
        raw_input={"kind": spec.kind, "instruction": spec.instruction, "paths": list(spec.paths)},
    )


def tool_call_progress(record: TaskRecord) -> ToolCallProgress:
    return ToolCallProgress(
        session_update="tool_call_update",
        tool_call_id=record.spec.task_id,
        status=tool_status(record.state),
    )


def tool_call_outcome(
    root: Path, record: TaskRecord, diffs: Mapping[str, tuple[str, str]]
) -> ToolCallProgress:
    """The finished task: its message and verdicts, and a `diff` per file it changed."""
    changed = sorted(rel for rel in record.files if rel in diffs)
    summary = "; ".join([record.message, *(verdict_text(v) for v in record.verdicts)])
    content: list[ContentToolCallContent | FileEditToolCallContent | TerminalToolCallContent] = [
        ContentToolCallContent(
            type="content", content=TextContentBlock(type="text", text=summary.strip("; "))
        )
    ]
    content.extend(
        FileEditToolCallContent(
            type="diff", path=str(root / rel), old_text=diffs[rel][0], new_text=diffs[rel][1]
        )
        for rel in changed
    )
    first_lines = {rel: first_changed_line(*diffs[rel]) for rel in changed}
    return ToolCallProgress(
        session_update="tool_call_update",
        tool_call_id=record.spec.task_id,
        status=tool_status(record.state),
        content=content,
        locations=locations(root, changed, first_lines) if changed else None,
        raw_output={"state": record.state.value, "files": changed},
    )


def review_tool_call(
    root: Path, plan_id: str, diffs: Mapping[str, tuple[str, str]]
) -> ToolCallStart:
    """One tool call standing for a plan whose several tasks changed files (its permission)."""
    files = sorted(diffs)
    return ToolCallStart(
        session_update="tool_call",
        tool_call_id=f"{plan_id}.review",
        title=f"Keep the changes to {len(files)} files",
        kind="edit",
        status="pending",
        content=[
            FileEditToolCallContent(
                type="diff", path=str(root / rel), old_text=diffs[rel][0], new_text=diffs[rel][1]
            )
            for rel in files
        ],
        locations=locations(root, files, {rel: first_changed_line(*diffs[rel]) for rel in files}),
    )


def first_changed_line(old: str, new: str) -> int:
    """0-based index of the first line that differs between `old` and `new`."""
    old_lines, new_lines = old.split("\n"), new.split("\n")
    for number, (before, after) in enumerate(zip(old_lines, new_lines, strict=False)):
        if before != after:
            return number
    return min(len(old_lines), len(new_lines)) - 1
