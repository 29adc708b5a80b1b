"""The Agent protocol: what every agent receives and returns.

Owns `AgentWork` (the read-only inputs of one task run), `AgentResult` and `TokenUsage`.
Invariant: an agent only ever returns Mutations computed against the texts it was given;
it never writes files or buffers itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.protocol import (
    ContextPackage,
    DelegationRequest,
    Mutation,
    TextEdit,
    Verdict,
)


class TokenUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0

    @property
    def uncached_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.cached_tokens + other.cached_tokens,
            self.output_tokens + other.output_tokens,
            self.tool_calls + other.tool_calls,
        )


class FileVersion(msgspec.Struct, frozen=True):
    text: str
    version: int


class AgentWork(msgspec.Struct, frozen=True, kw_only=True):
    """Everything an agent may read for one run: a snapshot, never live state."""

    task_id: str
    package: ContextPackage
    request: DelegationRequest
    files: Mapping[str, FileVersion]  # the task's files at the versions the agent works on
    workspace_root: Path
    arguments: Mapping[str, Any] = {}  # kind-specific, e.g. {"old": "f", "new": "g"}
    feedback: tuple[Verdict, ...] = ()  # failures from a previous attempt (targeted fix)
    previous_diff: str = ""  # the agent's own change that failed (targeted fix)
    index: SymbolIndex | None = None  # the workspace's symbol index, read-only
    list_workspace_files: Callable[[], list[str]] | None = None  # workspace-relative paths
    read_file: Callable[[str], FileVersion] | None = None  # files beyond `files`


class AgentResult(msgspec.Struct, frozen=True):
    mutations: tuple[Mutation, ...] = ()
    usage: TokenUsage = TokenUsage()
    notes: str = ""


@runtime_checkable
class Agent(Protocol):
    agent_id: str
    kind: str

    async def run(self, work: AgentWork) -> AgentResult: ...


class AgentFailure(Exception):
    """An agent could not produce a result; the message says why, for the user."""


def edits_from_texts(before: str, after: str) -> tuple[TextEdit, ...]:
    """Minimal edits that turn `before` into `after` (code-point offsets): the changed lines,
    each replacement trimmed of the text it keeps at its start and end, so an edit covers only
    what the agent changed (the user's typing beside it on the same line stays outside)."""
    if before == after:
        return ()
    before_lines = before.splitlines(keepends=True)
    after_lines = after.splitlines(keepends=True)
    offsets = [0]
    for line in before_lines:
        offsets.append(offsets[-1] + len(line))
    edits: list[TextEdit] = []
    matcher = difflib.SequenceMatcher(a=before_lines, b=after_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        edits.append(_trimmed(before, offsets[i1], offsets[i2], "".join(after_lines[j1:j2])))
    return tuple(edits)


def _trimmed(before: str, start: int, end: int, new_text: str) -> TextEdit:
    """The edit replacing before[start:end] by new_text, without their common ends."""
    old_text = before[start:end]
    limit = min(len(old_text), len(new_text))
    prefix = 0
    while prefix < limit and old_text[prefix] == new_text[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old_text[-1 - suffix] == new_text[-1 - suffix]:
        suffix += 1
    return TextEdit(start + prefix, end - suffix, new_text[prefix : len(new_text) - suffix])


def apply_edits(text: str, edits: tuple[TextEdit, ...] | list[TextEdit]) -> str:
    """Apply non-overlapping edits given against the same base text."""
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        text = text[: edit.start] + edit.new_text + text[edit.end :]
    return text
