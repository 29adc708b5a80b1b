"""CodeCRDT: shared code state where the user, the disk and agents are peers of pycrdt Docs.

Import everything from here: `WorkspaceState` (the facade), its value types and typed errors,
the watchdog intake `WorkspaceWatcher`, the per-hunk review's `PendingHunk`, and `restore_text` (file state at a ledger step).
"""

from __future__ import annotations

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state.hunks import PendingHunk, UnknownHunk
from delegation_machine.engine.state.replay import ReplayGap, restore_text
from delegation_machine.engine.state.types import (
    DISK_ORIGIN,
    USER_ORIGIN,
    AppliedChange,
    DocumentNotOpen,
    FileRefused,
    Lease,
    LeaseConflict,
    LeaseError,
    MutationRefused,
    PathRefused,
    StateError,
    TextChange,
    agent_origin,
    reject_origin,
    task_of_origin,
)
from delegation_machine.engine.state.watcher import WorkspaceWatcher
from delegation_machine.engine.state.workspace import WorkspaceState

__all__ = [
    "DISK_ORIGIN",
    "USER_ORIGIN",
    "AppliedChange",
    "DocumentNotOpen",
    "FileRefused",
    "Lease",
    "LeaseConflict",
    "LeaseError",
    "Mutation",
    "MutationRefused",
    "PathRefused",
    "PendingHunk",
    "ReplayGap",
    "StateError",
    "TextChange",
    "TextEdit",
    "UnknownHunk",
    "WorkspaceState",
    "WorkspaceWatcher",
    "agent_origin",
    "reject_origin",
    "restore_text",
    "task_of_origin",
]
