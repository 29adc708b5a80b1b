"""Which agent runs a task, and building it.

Owns the `AgentFactory` protocol the task runner asks for agents (a test injects its own) and
`SwarmAgents`, the swarm's default: a built-in tool agent per kind and worker
(`builtin:<kind>@<worker>`) and, with a model configured, an LLM agent (`llm@<worker>`) whose
context budget is its share of the swarm's capacity, bought in the Fisher market with a bid
weighted by its trust (never above the per-task cap). A restart takes another worker's agent,
chosen by reputation, so a fresh agent really is another one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from delegation_machine.engine.agents.base import Agent, AgentFailure
from delegation_machine.engine.agents.builtin import create_builtin_agent
from delegation_machine.engine.agents.builtin.semgrep_fixes import ScanTexts
from delegation_machine.engine.agents.llm import LLMAgent
from delegation_machine.engine.agents.llm_tools import Checker
from delegation_machine.engine.economy import Economy
from delegation_machine.engine.inference.config import ModelSetup
from delegation_machine.engine.plan.builtin import BUILTIN_KINDS
from delegation_machine.engine.protocol import Event

MIN_BID = 0.05  # an agent with no trust yet still bids for some context


class AgentFactory(Protocol):
    """Names and builds the agents of a swarm."""

    def agent_id(self, kind: str, worker_id: str) -> str:
        """The agent that a worker runs tasks of `kind` with."""
        ...

    def replacement_id(self, kind: str, replacing: str) -> str:
        """Another agent for a task whose agent `replacing` failed it twice."""
        ...

    def create(self, kind: str, agent_id: str) -> Agent:
        """A new agent; `AgentFailure` when no agent can run tasks of `kind`."""
        ...


class SwarmAgents:
    """The default factory: built-in tool agents, and LLM agents when a model is set up."""

    def __init__(
        self,
        root: Path,
        worker_ids: Sequence[str],
        economy: Economy,
        model: ModelSetup,
        *,
        busy_agents: Callable[[str], set[str]],
        checker: Checker | None,
        trajectory: Callable[[Event], None] | None,
        fix_scan: ScanTexts | None = None,
    ) -> None:
        self._root = root
        self._fix_scan = fix_scan
        self._worker_ids = list(worker_ids)
        self._economy = economy
        self._model = model
        self._busy_agents = busy_agents
        self._checker = checker
        self._trajectory = trajectory

    @staticmethod
    def family(kind: str) -> str:
        return f"builtin:{kind}" if kind in BUILTIN_KINDS else kind

    def agent_id(self, kind: str, worker_id: str) -> str:
        return f"{self.family(kind)}@{worker_id}"

    def replacement_id(self, kind: str, replacing: str) -> str:
        candidates = [self.agent_id(kind, w) for w in self._worker_ids]
        others = [c for c in candidates if c != replacing] or [f"{replacing}/fresh"]
        return self._economy.choose_agent(others)

    def create(self, kind: str, agent_id: str) -> Agent:
        if kind in BUILTIN_KINDS:
            return create_builtin_agent(
                kind, agent_id, workspace_root=self._root, fix_scan=self._fix_scan
            )
        if kind == "llm" and self._model.session is not None:
            return self._create_llm_agent(agent_id)
        raise AgentFailure(f"no agent can run tasks of kind {kind!r}")

    def _create_llm_agent(self, agent_id: str) -> Agent:
        config, session = self._model.config, self._model.session
        assert config is not None and session is not None
        return LLMAgent(
            agent_id,
            session,
            prefixes=self._model.prefixes,
            budget=self.context_budget(agent_id, config.max_tokens_per_task),
            checker=self._checker,
            max_turns=config.max_turns,
            max_validation_retries=config.max_validation_retries,
            max_output_tokens=config.max_output_tokens,
            trajectory=self._trajectory,
        )

    def context_budget(self, agent_id: str, cap: int) -> int:
        """This agent's token budget: its market share of the swarm's context capacity."""
        bidders = sorted(self._busy_agents("llm") | {agent_id})
        bids = {a: max(self._economy.relative_trust(a), MIN_BID) for a in bidders}
        workers = len(self._worker_ids)
        plan = self._economy.allocate_budgets(
            bids, capacity_tokens=cap * workers, max_concurrent=workers
        )
        return max(1, min(cap, int(plan.budgets.get(agent_id, cap))))
