"""CheckAgent (kind "check"): reports the bundled semgrep rules' findings, changes nothing.

Owns a read-only scan of the task's Python files (a private temporary copy). Invariant: it
returns no Mutations; its notes list every finding as `path:line rule-id: message`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from delegation_machine.engine.agents.base import AgentResult, AgentWork, TokenUsage
from delegation_machine.engine.agents.builtin.semgrep_fixes import scan_texts
from delegation_machine.engine.agents.builtin.targets import python_targets


class CheckAgent:
    kind = "check"

    def __init__(
        self,
        agent_id: str,
        *,
        workspace_root: Path,
        rule_paths: Sequence[Path] | None = None,
        timeout_s: float = 180.0,
    ) -> None:
        self.agent_id = agent_id
        self.workspace_root = workspace_root
        self.rule_paths = list(rule_paths) if rule_paths is not None else None
        self.timeout_s = timeout_s

    async def run(self, work: AgentWork) -> AgentResult:
        targets = python_targets(work)
        if not targets:
            return AgentResult(notes="no Python files to check")
        texts = {rel: version.text for rel, version in targets.items()}
        results = await scan_texts(texts, rule_paths=self.rule_paths, timeout_s=self.timeout_s)
        ordered = sorted(results, key=lambda r: (r.path, r.line, r.rule_id))
        lines = [f"{len(ordered)} finding(s) in {len(targets)} file(s)"]
        for result in ordered:
            fix = " (autofix available: run `fix`)" if result.fix else ""
            lines.append(f"{result.path}:{result.line} {result.rule_id}: {result.message}{fix}")
        return AgentResult((), TokenUsage(tool_calls=1), "\n".join(lines))
