"""Prompt layout for a shared prefix: what every agent at one workspace version sends first.

Owns `SharedPrefix` (constitution, repo map at version V, decision records) and the two layouts:
`shared_layout` puts the prefix first and the task's delta last; `naive_layout` (the benchmark
baseline) puts each agent's own context first. Invariant: `SharedPrefix.render()` depends only
on its fields, never on the agent, task, time or dict order, so two agents at version V send
byte-identical prefixes; `PrefixCatalog` hands out one instance per version.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import msgspec

from delegation_machine.engine.inference.backend import ChatMessage

CONSTITUTION = """You are a coding agent in Delegation Machine, working inside a developer's editor.
Rules:
1. Work only on the task given in the last message; change nothing else.
2. Your edits are proposals: a supervisor parses and checks them, and the developer can reject
   each one. Never claim a check passed unless a tool said so.
3. Keep the developer's style: names, formatting, comments.
4. Every reply is exactly one JSON object that matches the action schema; no prose outside it.
"""


class SharedPrefix(msgspec.Struct, frozen=True):
    workspace_version: int
    constitution: str
    repo_map: str
    decision_records: tuple[str, ...] = ()

    def render(self) -> str:
        parts = [self.constitution.rstrip("\n"), f"# Workspace version {self.workspace_version}"]
        parts.append("# Repository map\n" + self.repo_map.rstrip("\n"))
        if self.decision_records:
            records = "\n\n".join(r.rstrip("\n") for r in self.decision_records)
            parts.append("# Decision records\n" + records)
        return "\n\n".join(parts) + "\n"


class PrefixCatalog:
    """One SharedPrefix per workspace version, so concurrent agents share the same bytes."""

    def __init__(self, keep_versions: int = 4) -> None:
        self._by_version: dict[tuple[str, int, str], SharedPrefix] = {}
        self._keep = keep_versions
        self._lock = threading.Lock()

    def prefix_for(
        self,
        workspace_version: int,
        *,
        constitution: str,
        repo_map: str | Callable[[], str],
        decision_records: Sequence[str] | Callable[[], Sequence[str]] = (),
        workspace: str = "",
    ) -> SharedPrefix:
        """The prefix at this version; `repo_map`/`decision_records` are computed on a miss only."""
        key = (workspace, workspace_version, constitution)
        with self._lock:
            found = self._by_version.get(key)
        if found is not None:
            return found
        map_text = repo_map() if callable(repo_map) else repo_map
        records = decision_records() if callable(decision_records) else decision_records
        made = SharedPrefix(workspace_version, constitution, map_text, tuple(records))
        with self._lock:
            # Another agent may have built it meanwhile: the first one stored wins, so every
            # agent at this version gets the same instance.
            found = self._by_version.setdefault(key, made)
            while len(self._by_version) > self._keep:
                self._by_version.pop(next(iter(self._by_version)))
            return found


def shared_layout(
    prefix: SharedPrefix, delta: str, trace: str | None = None
) -> tuple[ChatMessage, ...]:
    """Prefix (cache breakpoint) -> task delta -> reasoning trace. Only the tail varies."""
    messages = [ChatMessage("system", prefix.render(), cache_breakpoint=True)]
    messages.append(ChatMessage("user", delta))
    if trace:
        messages.append(ChatMessage("user", trace))
    return tuple(messages)


def naive_layout(
    prefix: SharedPrefix, delta: str, agent_id: str, trace: str | None = None
) -> tuple[ChatMessage, ...]:
    """Baseline: each agent's own full context, its task first, so no two prompts share a prefix."""
    system = (
        f"Agent {agent_id}. Task:\n{delta}\n\n"
        + prefix.constitution
        + "\n# Repository map\n"
        + prefix.repo_map
        + "\n# Decision records\n"
        + "\n\n".join(prefix.decision_records)
    )
    messages = [ChatMessage("system", system)]
    if trace:
        messages.append(ChatMessage("user", trace))
    return tuple(messages)
