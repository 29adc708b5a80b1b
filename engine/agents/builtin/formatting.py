"""FormatAgent (kind "format"): `ruff format` with the workspace's own settings.

Owns one Mutation per Python file whose formatting changes; all of a task's files go through
one ruff run (`ruff_texts`). Invariants: it never writes the workspace (ruff reads stdin or a
private copy); a file ruff cannot parse is left unchanged and named in the
notes, and the agent fails only when every requested file was unparsable.
"""

from __future__ import annotations

from pathlib import Path

from delegation_machine.engine.agents.base import (
    AgentFailure,
    AgentResult,
    AgentWork,
    TokenUsage,
    edits_from_texts,
)
from delegation_machine.engine.agents.builtin.ruff_tool import ruff_texts
from delegation_machine.engine.agents.builtin.targets import python_targets, skipped_non_python
from delegation_machine.engine.protocol import Mutation


class FormatAgent:
    kind = "format"

    def __init__(self, agent_id: str, *, workspace_root: Path, timeout_s: float = 60.0) -> None:
        self.agent_id = agent_id
        self.workspace_root = workspace_root
        self.timeout_s = timeout_s

    async def run(self, work: AgentWork) -> AgentResult:
        targets = python_targets(work)
        notes = [f"skipped (not Python): {rel}" for rel in skipped_non_python(work)]
        if not targets:
            return AgentResult(notes="\n".join([*notes, "no Python files to format"]))
        root = work.workspace_root or self.workspace_root
        formatted = await ruff_texts(
            "format", {rel: version.text for rel, version in targets.items()}, root, self.timeout_s
        )
        unparsable = [str(failure) for failure in formatted.unparsable.values()]
        mutations: list[Mutation] = []
        for rel, version in targets.items():
            if rel not in formatted.texts:
                continue
            edits = edits_from_texts(version.text, formatted.texts[rel])
            if edits:
                mutations.append(
                    Mutation(
                        task_id=work.task_id,
                        agent_id=self.agent_id,
                        path=rel,
                        base_version=version.version,
                        edits=edits,
                        description="ruff format",
                    )
                )
        if unparsable and len(unparsable) == len(targets):
            raise AgentFailure("nothing was formatted: " + "; ".join(unparsable))
        usage = TokenUsage(tool_calls=formatted.runs)
        return AgentResult(tuple(mutations), usage, "\n".join([*notes, *unparsable]))
