"""The Judicial branch through the live swarm: "done" is part of the verdict, and a task
cannot pass by editing what judges it.

Real built-in agents and checks (semgrep, tree-sitter, pytest in the sandbox), the CRDT and
the ledger; scripted agents stand in for a model where one is needed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from delegation_machine.engine.agents.base import Agent, AgentResult, AgentWork
from delegation_machine.engine.notices import MessageNotice
from delegation_machine.engine.protocol import DelegationRequest, Mutation, TaskState, TextEdit
from delegation_machine.engine.state import WorkspaceState
from delegation_machine.engine.swarm import Swarm

STORE = textwrap.dedent(
    """\
    import hashlib


    def digest(data: bytes) -> str:
        return hashlib.md5(data).hexdigest()
    """
)
TEST_STORE = textwrap.dedent(
    """\
    import hashlib

    from app.store import digest


    def test_digest_format():
        assert digest(b"x") == hashlib.md5(b"x").hexdigest()
    """
)
CONFIG = textwrap.dedent(
    """\
    import yaml


    def load(text):
        return yaml.load(text)
    """
)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def pinned(tmp_path: Path) -> Path:
    """A workspace whose test pins the stored digest format with the same weak hash call."""
    root = tmp_path / "ws"
    write(
        root,
        {
            "app/__init__.py": "",
            "app/store.py": STORE,
            "app/config.py": CONFIG,
            "tests/test_store.py": TEST_STORE,
        },
    )
    return root


async def test_a_fix_that_breaks_a_pinned_test_is_rolled_back_and_the_test_untouched(
    pinned: Path,
) -> None:
    swarm = Swarm(pinned, editor_settings={"agents": 2}, watch=False)
    await swarm.start()
    try:
        plan_id = await swarm.submit(DelegationRequest(instruction="fix", kind="fix"))
        await swarm.wait(plan_id, timeout=300)
        tasks = {t.files[0] if t.files else t.task_id: t for t in swarm.task_summaries(plan_id)}
        states = {t.task_id: t.state for t in swarm.task_summaries(plan_id)}
        goal = swarm.board.goal_met(plan_id)
    finally:
        await swarm.stop()
    assert (pinned / "tests/test_store.py").read_text() == TEST_STORE  # never rewritten
    assert (pinned / "app/store.py").read_text() == STORE  # its change broke the test: undone
    assert "safe_load" in (pinned / "app/config.py").read_text()  # the other fix is kept
    assert not goal
    assert TaskState.VERIFIED.value in states.values()
    assert tasks["app/config.py"].state == TaskState.VERIFIED.value
    # The test file's only finding is inside an assertion: nothing to change, goal held.
    test_task = next(t for t in swarm.task_summaries(plan_id) if t.files == () and t.goal_met)
    assert test_task.state == TaskState.NO_CHANGE.value


class EditsTests:
    """A scripted agent that changes the code and, with it, the test that judges the code.

    `weaken`: switch to sha256 and rewrite the test's expected value to match (a fix that
    games its judge); else add a docstring and an extra test (harmless, but still an edit of
    what judges the task)."""

    def __init__(self, agent_id: str, *, weaken: bool, state: WorkspaceState) -> None:
        self.agent_id = agent_id
        self.weaken = weaken
        self.state = state

    def edit(self, task_id: str, rel: str, old: str, new: str) -> list[Mutation]:
        text, version = self.state.read(rel)
        at = text.find(old)
        if at < 0 or new in text:  # already done by an earlier attempt
            return []
        return [Mutation(task_id, self.agent_id, rel, version, (TextEdit(at, at + len(old), new),))]

    async def run(self, work: AgentWork) -> AgentResult:
        if self.weaken:
            code = ("hashlib.md5(data)", "hashlib.sha256(data)")
            test = ('hashlib.md5(b"x")', 'hashlib.sha256(b"x")')
        else:
            code = ("-> str:\n", '-> str:\n    """The hex digest of `data`."""\n')
            test = (
                "def test_digest_format",
                "def test_digest_is_hex():\n    assert digest(b'y').isalnum()\n\n\n"
                "def test_digest_format",
            )
        mutations = self.edit(work.task_id, "app/store.py", *code)
        mutations += self.edit(work.task_id, "tests/test_store.py", *test)
        return AgentResult(mutations=tuple(mutations), notes="changed the code and its test")


class ScriptedTestEditors:
    def __init__(self, *, weaken: bool) -> None:
        self.weaken = weaken
        self.state: WorkspaceState | None = None

    def agent_id(self, kind: str, worker_id: str) -> str:
        return f"scripted@{worker_id}"

    def replacement_id(self, kind: str, replacing: str) -> str:
        return f"{replacing}/2"

    def create(self, kind: str, agent_id: str) -> Agent:
        assert self.state is not None
        return EditsTests(agent_id, weaken=self.weaken, state=self.state)


def editing_swarm(root: Path, *, weaken: bool, **settings: object) -> Swarm:
    editors = ScriptedTestEditors(weaken=weaken)
    swarm = Swarm(root, editor_settings=settings or None, watch=False, agents=editors)
    editors.state = swarm.state
    return swarm


async def test_a_task_that_rewrites_its_own_test_is_judged_by_the_test_as_it_was(
    pinned: Path,
) -> None:
    swarm = editing_swarm(pinned, weaken=True)
    await swarm.start()
    try:
        request = DelegationRequest(
            instruction="fix",
            kind="fix",
            path="app/store.py",
        )
        plan_id = await swarm.submit(request)
        state = await swarm.wait(plan_id, timeout=300)
        checked = swarm.events(kinds=("task.checked",))
    finally:
        await swarm.stop()
    assert state == TaskState.ESCALATED
    failing = {v["check"] for e in checked for v in e.payload["new_failures"]}
    assert "integrity" in failing  # the pre-task test failed against the change
    assert (pinned / "tests/test_store.py").read_text() == TEST_STORE
    assert (pinned / "app/store.py").read_text() == STORE


async def test_a_harmless_test_change_is_held_until_the_user_accepts_it(pinned: Path) -> None:
    swarm = editing_swarm(pinned, weaken=False)
    asked: list[MessageNotice] = []
    swarm.subscribe(
        lambda n: asked.append(n) if isinstance(n, MessageNotice) and n.choices else None
    )
    await swarm.start()
    try:
        plan_id = await swarm.submit(
            DelegationRequest(instruction="format", kind="format", path="app/store.py")
        )
        assert await swarm.wait(plan_id, timeout=300) == TaskState.HELD
        assert (pinned / "app/store.py").read_text() == STORE  # held: nothing written yet
        assert not swarm.board.goal_met(plan_id)
        assert asked and "changed its own tests" in asked[0].text
        assert "+def test_digest_is_hex" in asked[0].text  # the hunks are shown
        await swarm.resolve_escalation(plan_id, asked[0].choices[0])  # "Accept the test change"
        assert swarm.board.plan(plan_id).state == TaskState.ACCEPTED
    finally:
        await swarm.stop()
    assert "The hex digest" in (pinned / "app/store.py").read_text()
    assert "test_digest_is_hex" in (pinned / "tests/test_store.py").read_text()


async def harmless_edit_ends(root: Path, **settings: object) -> TaskState:
    """The final state of a format task whose agent also adds a test (then the swarm stops)."""
    swarm = editing_swarm(root, weaken=False, **settings)
    await swarm.start()
    try:
        plan_id = await swarm.submit(
            DelegationRequest(instruction="format", kind="format", path="app/store.py")
        )
        return await swarm.wait(plan_id, timeout=300)
    finally:
        await swarm.stop()


async def test_an_unaccepted_held_change_is_never_written(pinned: Path) -> None:
    assert await harmless_edit_ends(pinned) == TaskState.HELD
    assert (pinned / "app/store.py").read_text() == STORE
    assert (pinned / "tests/test_store.py").read_text() == TEST_STORE


async def test_allowing_test_changes_keeps_the_harmless_one(pinned: Path) -> None:
    assert await harmless_edit_ends(pinned, allowTestChanges=True) == TaskState.VERIFIED
    assert "The hex digest" in (pinned / "app/store.py").read_text()


class DoesNothing:
    kind = "fix"

    def __init__(self, agent_id: str, runs: list[int]) -> None:
        self.agent_id = agent_id
        self.runs = runs

    async def run(self, work: AgentWork) -> AgentResult:
        self.runs.append(len(work.feedback))
        return AgentResult(notes="looked at it; all fine")


class Idlers:
    def __init__(self) -> None:
        self.runs: list[int] = []

    def agent_id(self, kind: str, worker_id: str) -> str:
        return f"idle@{worker_id}"

    def replacement_id(self, kind: str, replacing: str) -> str:
        return f"{replacing}/2"

    def create(self, kind: str, agent_id: str) -> Agent:
        return DoesNothing(agent_id, self.runs)


async def test_an_agent_that_changes_nothing_is_never_verified(pinned: Path) -> None:
    idlers = Idlers()
    swarm = Swarm(pinned, watch=False, agents=idlers)
    await swarm.start()
    try:
        # app/__init__.py has nothing to fix: no change, and the goal held.
        clean = await swarm.submit(
            DelegationRequest(instruction="fix", kind="fix", path="app/__init__.py")
        )
        clean_state = await swarm.wait(clean, timeout=300)
        clean_task = swarm.task_summaries(clean)[0]
        # app/config.py has a fixable finding: doing nothing leaves the goal unmet (and then
        # the breaker for "fix" is open: asked first, so the clean task above ran).
        needed = await swarm.submit(
            DelegationRequest(instruction="fix", kind="fix", path="app/config.py")
        )
        needed_state = await swarm.wait(needed, timeout=300)
        needed_task = swarm.task_summaries(needed)[0]
        standing = next(s for s in swarm.economy.summary() if s.agent_id == needed_task.agent)
    finally:
        await swarm.stop()
    assert needed_state == TaskState.NO_CHANGE and not needed_task.goal_met
    assert "needs a human" in needed_task.message
    # Targeted feedback naming the unmet criterion, then a fresh agent, then a human.
    runs = idlers.runs[1:]  # the first run was the clean task's
    assert len(runs) == 3 and runs[0] == 0 and min(runs[1:]) >= 1
    assert standing.failed >= 1  # it counts against the agent's record (trust and credit)
    assert clean_state == TaskState.NO_CHANGE and clean_task.goal_met
    assert "all fine" in clean_task.message  # the agent's note
