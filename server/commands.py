"""The arguments of the `delegation.*` commands, validated before anything runs.

Owns the wire schema of the LSP contract's commands (DESIGN.md §4). Validation errors name
the JSON path of the bad value so a client author can fix the call.
"""

from __future__ import annotations

from typing import Any

import msgspec

from delegation_machine.engine.protocol import ProtocolError, convert
from delegation_machine.engine.supervise.diagnostics import TaskActionName

DELEGATE = "delegation.delegate"
CANCEL = "delegation.cancel"
ACCEPT = "delegation.accept"
REJECT = "delegation.reject"
STATUS = "delegation.status"
RETRY = "delegation.retry"
ESCALATE = "delegation.escalate"
SHOW_TASK = "delegation.showTask"
ACCEPT_HUNK = "delegation.acceptHunk"
REJECT_HUNK = "delegation.rejectHunk"
HUNKS = "delegation.hunks"
ALL_COMMANDS = (
    DELEGATE,
    CANCEL,
    ACCEPT,
    REJECT,
    STATUS,
    RETRY,
    ESCALATE,
    SHOW_TASK,
    ACCEPT_HUNK,
    REJECT_HUNK,
    HUNKS,
)
# The engine's actions on a finding a task introduced (supervise/diagnostics.py) as commands.
TASK_ACTION_COMMANDS: dict[TaskActionName, str] = {
    "retry": RETRY,
    "escalate": ESCALATE,
    "show": SHOW_TASK,
}
TASK_UPDATED = "delegation/taskUpdated"


class WirePosition(msgspec.Struct, frozen=True):
    line: int
    character: int


class WireRange(msgspec.Struct, frozen=True):
    start: WirePosition
    end: WirePosition


class DelegateArguments(msgspec.Struct, frozen=True, rename="camel"):
    instruction: str
    uri: str | None = None
    range: WireRange | None = None
    kind: str | None = None
    agents: int | None = None


class TaskArguments(msgspec.Struct, frozen=True, rename="camel"):
    task_id: str


class HunkArguments(msgspec.Struct, frozen=True, rename="camel"):
    """`delegation.acceptHunk` / `delegation.rejectHunk`: one hunk of one task."""

    task_id: str
    hunk_id: str


class HunkQuery(msgspec.Struct, frozen=True, rename="camel"):
    """`delegation.hunks`: the pending hunks of one task, of one file, or of every task."""

    task_id: str | None = None
    uri: str | None = None


class CommandArgumentError(ValueError):
    """A command was called with arguments that do not match its schema."""


def single_argument(command: str, arguments: tuple[Any, ...], type_: type[Any]) -> Any:
    """Commands take one object argument; say exactly what is wrong when they do not."""
    if len(arguments) != 1:
        raise CommandArgumentError(
            f"{command} takes exactly one object argument, got {len(arguments)}"
        )
    try:
        value = convert(arguments[0], type_)
    except ProtocolError as exc:
        raise CommandArgumentError(f"{command}: invalid arguments at {exc.path}: {exc}") from None
    if isinstance(value, DelegateArguments) and not value.instruction.strip():
        raise CommandArgumentError(f"{command}: `instruction` must not be empty")
    if isinstance(value, HunkArguments) and not (value.task_id.strip() and value.hunk_id.strip()):
        raise CommandArgumentError(f"{command}: `taskId` and `hunkId` must not be empty")
    return value
