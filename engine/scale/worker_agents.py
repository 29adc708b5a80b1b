"""The agents a worker process runs: its own built-in tools and its own model, if any.

Owns `ToolWorkerAgents`, the `WorkerAgents` of `delegation-machine worker`: the built-in
`fix` and `format` agents (ruff with the workspace configuration sent along, semgrep's
autofixes through one warm semgrep worker for the whole process, with the bundled rules),
and the `llm` agent when the worker's own `[inference]` configuration names a model — the
host never sends a model, a URL or a key. `rename` stays on the host: it needs the whole
workspace's symbol index, which no task message carries.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from delegation_machine.engine.agents.base import Agent, AgentFailure
from delegation_machine.engine.agents.builtin import create_builtin_agent
from delegation_machine.engine.agents.builtin.semgrep_fixes import shared_fix_scan
from delegation_machine.engine.agents.llm import LLMAgent
from delegation_machine.engine.inference.config import ModelSetup
from delegation_machine.engine.supervise.semgrep import SemgrepScanner

TOOL_KINDS = ("fix", "format")


class ToolWorkerAgents:
    def __init__(self, inference: Mapping[str, Any] | None = None, *, warm_semgrep: bool = True):
        self.model = ModelSetup(inference or None)
        self._rules_root = Path(tempfile.mkdtemp(prefix="dm-worker-rules-"))
        self._scanner = SemgrepScanner(self._rules_root, warm=warm_semgrep)
        self._fix_scan = shared_fix_scan(self._scanner)

    def kinds(self) -> tuple[str, ...]:
        return (*TOOL_KINDS, "llm") if self.model.session is not None else TOOL_KINDS

    def create(self, kind: str, agent_id: str, root: Path) -> Agent:
        if kind in TOOL_KINDS:
            return create_builtin_agent(
                kind, agent_id, workspace_root=root, fix_scan=self._fix_scan
            )
        config, session = self.model.config, self.model.session
        if kind == "llm" and config is not None and session is not None:
            return LLMAgent(
                agent_id,
                session,
                prefixes=self.model.prefixes,
                budget=config.max_tokens_per_task,
                max_turns=config.max_turns,
                max_validation_retries=config.max_validation_retries,
                max_output_tokens=config.max_output_tokens,
            )
        raise AgentFailure(
            f"this worker runs no {kind!r} agents (it runs {', '.join(self.kinds())})"
        )

    async def aclose(self) -> None:
        await self._scanner.aclose()
        if self.model.session is not None:
            await self.model.session.aclose()
