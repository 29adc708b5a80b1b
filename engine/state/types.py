"""Value types and typed errors of the CodeCRDT layer (engine/state).

Everything here is immutable. Errors carry a `reason` a user can act on and the path concerned.
Offsets in `TextChange` and `AppliedChange` are code points against the text before the change.
"""

from __future__ import annotations

import msgspec

from delegation_machine.engine.protocol import TextEdit

USER_ORIGIN = "user"
DISK_ORIGIN = "disk"


def agent_origin(agent_id: str, task_id: str) -> str:
    """The transaction origin of an agent's edit for one task."""
    return f"agent:{agent_id}/task:{task_id}"


def reject_origin(task_id: str) -> str:
    """The origin of the transaction that undoes a rejected task."""
    return f"reject:task:{task_id}"


def task_of_origin(origin: str) -> str | None:
    """`agent:a1/task:t1` -> `t1`; anything else -> None."""
    if not origin.startswith("agent:") or "/task:" not in origin:
        return None
    return origin.split("/task:", 1)[1]


class StateError(Exception):
    """Base class of every error raised by engine/state."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path


class PathRefused(StateError):
    """The path is outside the workspace, escapes through a symlink, or is under .delegation/."""


class FileRefused(StateError):
    """The file cannot be held as text: binary, larger than the limit, or not UTF-8."""


class LeaseError(StateError):
    """A lease is expired, revoked, superseded (stale fencing token) or does not cover the file."""


class LeaseConflict(LeaseError):
    """Another holder has a live lease on one of the requested files; nothing was acquired."""

    def __init__(
        self, reason: str, path: str | None = None, holder: str = "", expires_at: float = 0.0
    ) -> None:
        super().__init__(reason, path)
        self.holder = holder
        self.expires_at = expires_at  # when the blocking lease runs out (the table's clock)


class MutationRefused(StateError):
    """A mutation cannot be applied: bad ranges, or its base version is no longer known."""


class DocumentNotOpen(StateError):
    """A user change arrived for a document that the editor has not opened."""


class Lease(msgspec.Struct, frozen=True):
    """A write lease on some files. `token` is the fencing token: strictly increasing."""

    token: int
    holder: str
    paths: tuple[str, ...]
    expires_at: float


class TextChange(msgspec.Struct, frozen=True):
    """One committed change of one file, as seen by subscribers (the editor bridge)."""

    path: str
    origin: str
    edits: tuple[TextEdit, ...]
    version: int
    is_open: bool


class AppliedChange(msgspec.Struct, frozen=True):
    """What `apply_mutation` did: the edits as they landed (against the previous text)."""

    path: str
    origin: str
    edits: tuple[TextEdit, ...]
    version: int
    base_version: int
    rebased: bool
