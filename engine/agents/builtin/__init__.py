"""Built-in tool agents: deterministic agents that need no model (the embedded default).

Owns the registry of built-in agent kinds ("fix", "format", "rename"), their construction and
the recognition of instructions they can carry out ("check" is recognised too, but a check is
the supervisor's work, not an agent's: the swarm runs it through its CheckRunner). Invariant: like every agent, a
built-in agent returns Mutations against the texts it was given and never writes files.
"""

from __future__ import annotations

from pathlib import Path

from delegation_machine.engine.agents.base import Agent
from delegation_machine.engine.agents.builtin.fix import FixAgent
from delegation_machine.engine.agents.builtin.formatting import FormatAgent
from delegation_machine.engine.agents.builtin.instructions import parse_builtin_instruction
from delegation_machine.engine.agents.builtin.rename import (
    RenameAgent,
    RenameRefused,
    parse_rename_arguments,
)
from delegation_machine.engine.agents.builtin.semgrep_fixes import ScanTexts

__all__ = [
    "FixAgent",
    "FormatAgent",
    "RenameAgent",
    "RenameRefused",
    "UnknownAgentKind",
    "builtin_agent_kinds",
    "create_builtin_agent",
    "parse_builtin_instruction",
    "parse_rename_arguments",
]

_KINDS: dict[str, type] = {
    "fix": FixAgent,
    "format": FormatAgent,
    "rename": RenameAgent,
}


class UnknownAgentKind(ValueError):
    """No built-in agent has this kind; the message lists the kinds there are."""


def builtin_agent_kinds() -> dict[str, type]:
    """Kind -> agent class, for every built-in agent."""
    return dict(_KINDS)


def create_builtin_agent(
    kind: str, agent_id: str, *, workspace_root: Path, fix_scan: ScanTexts | None = None
) -> Agent:
    """A new built-in agent of `kind`, e.g. create_builtin_agent("fix", "builtin:fix-1", ...).

    `fix_scan` is the semgrep scan a `fix` agent uses (the swarm shares its warm worker)."""
    agent_class = _KINDS.get(kind)
    if agent_class is None:
        known = ", ".join(sorted(_KINDS))
        raise UnknownAgentKind(f"no built-in agent of kind {kind!r}; built-in kinds: {known}")
    if agent_class is FixAgent:
        return FixAgent(agent_id, workspace_root=Path(workspace_root), scan=fix_scan)
    agent: Agent = agent_class(agent_id, workspace_root=Path(workspace_root))
    return agent
