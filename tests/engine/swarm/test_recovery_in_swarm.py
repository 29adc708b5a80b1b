"""Recovery through the live swarm: targeted fix, restart with a fresh agent, escalation.

Scripted agents stand in for a model (which cannot run here); everything else is real:
the CRDT, the checks (tree-sitter and semgrep), the recovery ladder, the ledger.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from delegation_machine.engine.agents.base import Agent, AgentResult, AgentWork
from delegation_machine.engine.agents.builtin import create_builtin_agent
from delegation_machine.engine.notices import DiagnosticsNotice, MessageNotice
from delegation_machine.engine.protocol import DelegationRequest, Mutation, TaskState, TextEdit
from delegation_machine.engine.swarm import Swarm

ROOT = Path(__file__).resolve().parents[3]
TARGET = "inventory/money.py"
HOSTILE_LINE = "RATE = eval(input())\n"


class ScriptedAgent:
    """Appends an `eval` line; `repents`: given feedback, it fixes that line in its own change."""

    kind = "fix"

    def __init__(self, agent_id: str, *, repents: bool, runs: list[tuple[str, int]]) -> None:
        self.agent_id = agent_id
        self.repents = repents
        self.runs = runs

    async def run(self, work: AgentWork) -> AgentResult:
        self.runs.append((self.agent_id, len(work.feedback)))
        self.records_seen = work.package.environment.decision_records
        version = work.files[TARGET]
        at = version.text.find(HOSTILE_LINE)
        if self.repents and work.feedback and at >= 0:  # a targeted fix of its own change
            edit = TextEdit(at, at + len(HOSTILE_LINE), "RATE = 1\n")
        else:
            end = len(version.text)
            edit = TextEdit(end, end, HOSTILE_LINE)
        return AgentResult(
            mutations=(Mutation(work.task_id, self.agent_id, TARGET, version.version, (edit,)),)
        )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "inventory"
    shutil.copytree(
        ROOT / "samples" / "inventory",
        target,
        ignore=shutil.ignore_patterns(".delegation", "__pycache__"),
    )
    return target


class ScriptedAgents:
    """The swarm's agent factory in these tests: every agent is a `ScriptedAgent`."""

    def __init__(self, *, repents: bool) -> None:
        self.repents = repents
        self.runs: list[tuple[str, int]] = []
        self.last: ScriptedAgent | None = None

    def agent_id(self, kind: str, worker_id: str) -> str:
        return f"llm-scripted@{worker_id}"

    def replacement_id(self, kind: str, replacing: str) -> str:
        return f"{replacing}/2"

    def create(self, kind: str, agent_id: str) -> Agent:
        self.last = ScriptedAgent(agent_id, repents=self.repents, runs=self.runs)
        return self.last


def scripted_swarm(workspace: Path, *, repents: bool) -> tuple[Swarm, ScriptedAgents]:
    agents = ScriptedAgents(repents=repents)
    return Swarm(workspace, editor_settings={"agents": 2}, watch=False, agents=agents), agents


async def test_a_fixable_mistake_costs_one_targeted_fix(workspace: Path) -> None:
    swarm, agents = scripted_swarm(workspace, repents=True)
    runs = agents.runs
    await swarm.start()
    try:
        plan_id = await swarm.submit(DelegationRequest(instruction="fix", path=TARGET))
        assert await swarm.wait(plan_id, timeout=180) == TaskState.VERIFIED
        actions = [e.payload["action"] for e in swarm.events(kinds=("task.recovery",))]
        adr_events = swarm.events(kinds=("adr.written",))
        later = await swarm.submit(DelegationRequest(instruction="fix", path=TARGET))
        await swarm.wait(later, timeout=180)
        assert agents.last is not None
        records_seen = agents.last.records_seen
    finally:
        await swarm.stop()
    records = list((workspace / ".delegation" / "adr").glob("*.md"))
    assert len(adr_events) == 1 and len(records) == 2  # the later task erred and fixed too
    assert all(TARGET in r.read_text(encoding="utf-8") for r in records)
    assert records_seen and TARGET in records_seen[0]  # later tasks get it in their prefix
    assert actions == ["targeted_fix"]
    assert runs[0][1] == 0 and runs[1][1] >= 1  # the same agent got the findings
    assert runs[0][0] == runs[1][0]
    text = (workspace / TARGET).read_text(encoding="utf-8")
    assert text.endswith("RATE = 1\n") and "eval(" not in text


async def test_a_hopeless_agent_is_restarted_then_escalated_and_rolled_back(
    workspace: Path,
) -> None:
    before = (workspace / TARGET).read_text(encoding="utf-8")
    swarm, agents = scripted_swarm(workspace, repents=False)
    runs = agents.runs
    notices: list[object] = []
    escalated = asyncio.Event()

    def listen(notice: object) -> None:
        notices.append(notice)
        if isinstance(notice, MessageNotice) and notice.choices:
            escalated.set()

    swarm.subscribe(listen)
    await swarm.start()
    try:
        plan_id = await swarm.submit(DelegationRequest(instruction="fix", path=TARGET))
        assert await swarm.wait(plan_id, timeout=240) == TaskState.ESCALATED
        await asyncio.wait_for(escalated.wait(), 10)
        actions = [e.payload["action"] for e in swarm.events(kinds=("task.recovery",))]
        text_now = swarm.state.read(TARGET)[0]
        assert swarm.recovery.breaker_open("fix")
        second = await swarm.submit(DelegationRequest(instruction="fix", path=TARGET))
        assert await swarm.wait(second, timeout=60) == TaskState.ESCALATED  # breaker is open
        runs_before_retry = len(runs)
        retried = await swarm.retry(plan_id)  # the user's "Retry": breaker closed, fresh run
        await swarm.wait(retried, timeout=240)
        shown = swarm.describe_attempts(plan_id)
    finally:
        await swarm.stop()
    assert actions[:3] == ["targeted_fix", "restart", "escalate"]
    assert runs[1][0] == runs[0][0] and runs[2][0] != runs[0][0]  # restart: another agent
    assert runs[2][1] >= 2  # the fresh agent got both failures
    assert len(runs) > runs_before_retry
    assert text_now == before and (workspace / TARGET).read_text(encoding="utf-8") == before
    blamed = [b for n in notices if isinstance(n, DiagnosticsNotice) for b in n.blamed]
    assert blamed and blamed[0].task_id.startswith(plan_id)
    assert "eval" in blamed[0].finding.code and "task" in blamed[0].related_message
    choices = next(n for n in notices if isinstance(n, MessageNotice) and n.choices).choices
    assert any(c.startswith("Retry") for c in choices) and "Abandon" in choices
    assert "dm-eval-exec-nonliteral" in shown


class CrashingAgent:
    kind = "fix"
    agent_id = "llm-crashing@w"

    async def run(self, work: AgentWork) -> AgentResult:
        raise RuntimeError("the model process died")


class CrashingFixers:
    """Fix agents crash; every other kind is the built-in agent."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def agent_id(self, kind: str, worker_id: str) -> str:
        return f"{kind}@{worker_id}"

    def replacement_id(self, kind: str, replacing: str) -> str:
        return f"{replacing}/2"

    def create(self, kind: str, agent_id: str) -> Agent:
        if kind == "fix":
            return CrashingAgent()
        return create_builtin_agent(kind, agent_id, workspace_root=self.root)


async def test_a_crashed_agent_fails_its_task_and_the_swarm_keeps_serving(
    workspace: Path,
) -> None:
    before = (workspace / TARGET).read_text(encoding="utf-8")
    agents = CrashingFixers(workspace)
    swarm = Swarm(workspace, editor_settings={"agents": 2}, watch=False, agents=agents)
    await swarm.start()
    try:
        crashed = await swarm.submit(DelegationRequest(instruction="fix", path=TARGET))
        assert await swarm.wait(crashed, timeout=120) == TaskState.FAILED
        message = swarm.task_summaries(crashed)[0].message
        healthy = await swarm.submit(DelegationRequest(instruction="format", path=TARGET))
        # The sample file is formatted already: the format task ran, changed nothing, and its
        # acceptance check (ruff format --check) says the goal holds.
        assert await swarm.wait(healthy, timeout=120) == TaskState.NO_CHANGE
        assert swarm.board.goal_met(healthy)
    finally:
        await swarm.stop()
    assert "the model process died" in message
    assert (workspace / TARGET).read_text(encoding="utf-8") == before
