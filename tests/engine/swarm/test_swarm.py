"""The Swarm facade on a scratch copy of the sample: the whole engine, no editor."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from delegation_machine.engine.notices import DiagnosticsNotice
from delegation_machine.engine.protocol import DelegationRequest, TaskState, TaskUpdate
from delegation_machine.engine.swarm import DelegationError, Swarm

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "samples" / "inventory"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "inventory"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    return target


def seeded_file(workspace: Path, needle: str) -> str:
    for path in sorted((workspace / "inventory").glob("*.py")):
        if needle in path.read_text(encoding="utf-8"):
            return path.relative_to(workspace).as_posix()
    raise AssertionError(f"no sample file contains {needle!r}")


async def test_fix_on_one_file_is_verified_written_and_ledgered(workspace: Path) -> None:
    rel = seeded_file(workspace, "yaml.load(")
    swarm = Swarm(workspace, watch=False)
    updates: list[TaskUpdate] = []
    swarm.subscribe(lambda n: updates.append(n) if isinstance(n, TaskUpdate) else None)
    await swarm.start()
    try:
        plan_id = await swarm.submit(DelegationRequest(instruction="fix", path=rel))
        assert await swarm.wait(plan_id, timeout=120) == TaskState.VERIFIED
        summaries = swarm.task_summaries(plan_id)
    finally:
        await swarm.stop()
    assert "yaml.safe_load(" in (workspace / rel).read_text(encoding="utf-8")
    assert [s.state for s in summaries] == ["verified"]
    assert summaries[0].agent and summaries[0].agent.startswith("builtin:fix")
    states = [u.state for u in updates if u.task_id == plan_id]
    assert states[-1] == TaskState.VERIFIED and TaskState.RUNNING in states
    from delegation_machine.engine.ledger import Ledger

    kinds = [e.kind for e in Ledger(workspace / ".delegation" / "ledger.sqlite3").events()]
    for expected in (
        "swarm.started",
        "plan.submitted",
        "agent.result",
        "task.checked",
        "file.changed",
        "plan.finished",
        "swarm.stopped",
    ):
        assert expected in kinds


async def test_workspace_fix_runs_in_parallel_and_keeps_the_sample_tests_green(
    workspace: Path,
) -> None:
    swarm = Swarm(workspace, editor_settings={"agents": 3}, watch=False)
    await swarm.start()
    try:
        plan_id = await swarm.submit(DelegationRequest(instruction="fix"))
        final = await swarm.wait(plan_id, timeout=300)
        summaries = swarm.task_summaries(plan_id)
        status = swarm.status()
    finally:
        await swarm.stop()
    assert final == TaskState.VERIFIED, [(s.task_id, s.state, s.message) for s in summaries]
    assert len(summaries) >= 10
    assert len({s.agent.split("@")[1] for s in summaries if s.agent}) >= 2  # several workers
    assert any(s.files for s in summaries)
    assert len(status.dispatcher.workers) >= 3
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=workspace,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-2000:]


async def test_reject_undoes_only_that_task(workspace: Path) -> None:
    rel = seeded_file(workspace, "yaml.load(")
    before = (workspace / rel).read_text(encoding="utf-8")
    swarm = Swarm(workspace, watch=False)
    await swarm.start()
    try:
        plan_id = await swarm.submit(DelegationRequest(instruction="fix", path=rel))
        await swarm.wait(plan_id, timeout=120)
        assert (workspace / rel).read_text(encoding="utf-8") != before
        assert await swarm.reject(plan_id) == TaskState.REJECTED
        text_after_reject = swarm.state.read(rel)[0]
        standings = swarm.economy.summary()
    finally:
        await swarm.stop()
    assert text_after_reject == before
    assert (workspace / rel).read_text(encoding="utf-8") == before
    fixer = next(a for a in standings if a.agent_id.startswith("builtin:fix"))
    assert fixer.breakages_caused == 1  # the user's rejection counts against the agent


async def test_edits_publish_check_tasks_whose_findings_become_diagnostics(
    workspace: Path,
) -> None:
    rel = seeded_file(workspace, "yaml.load(")
    swarm = Swarm(workspace, watch=False)
    notices: list[DiagnosticsNotice] = []
    import asyncio

    arrived = asyncio.Event()

    def on_notice(notice: object) -> None:
        if isinstance(notice, DiagnosticsNotice) and notice.check == "semgrep":
            notices.append(notice)
            arrived.set()

    swarm.subscribe(on_notice)
    await swarm.start()
    try:
        swarm.documents.open_document(rel, (workspace / rel).read_text(encoding="utf-8"), 1)
        await asyncio.wait_for(arrived.wait(), 120)
        events = swarm.events(kinds=("check.completed",))
    finally:
        await swarm.stop()
    codes = {f.code for n in notices for f in n.findings}
    assert any("yaml" in code for code in codes), codes
    assert events and events[0].task_id.startswith("edit.")


async def test_requests_the_swarm_cannot_take_say_why(workspace: Path) -> None:
    swarm = Swarm(workspace, watch=False)
    await swarm.start()
    try:
        with pytest.raises(DelegationError, match="fix"):  # names the built-in tasks
            await swarm.submit(DelegationRequest(instruction="make everything faster"))
        with pytest.raises(DelegationError, match="no symbol named"):
            await swarm.submit(DelegationRequest(instruction="rename does_not_exist other"))
        with pytest.raises(DelegationError, match="unknown task kind"):
            await swarm.submit(DelegationRequest(instruction="x", kind="teleport"))
        with pytest.raises(DelegationError, match="no task"):
            await swarm.cancel("t-nope")
    finally:
        await swarm.stop()


async def test_files_changed_outside_the_editor_are_reread_reindexed_and_rechecked(
    workspace: Path,
) -> None:
    import asyncio

    swarm = Swarm(workspace, watch=True)
    rechecked = asyncio.Event()

    def on_notice(notice: object) -> None:
        if (
            isinstance(notice, DiagnosticsNotice)
            and notice.path == "inventory/plugin.py"
            and any("yaml" in f.code for f in notice.findings)
        ):
            rechecked.set()

    swarm.subscribe(on_notice)
    await swarm.start()
    try:
        await swarm.index.wait_ready()
        (workspace / "inventory" / "plugin.py").write_text(
            "import yaml\n\n\ndef load_plugin(text):\n    return yaml.load(text)\n",
            encoding="utf-8",
        )  # another program writes the file: watchdog sees it
        await asyncio.wait_for(rechecked.wait(), 120)
        definitions = swarm.index.symbols.definitions("load_plugin")
        text, _ = swarm.state.read("inventory/plugin.py")
        events = swarm.events(kinds=("file.external_change",))
    finally:
        await swarm.stop()
    assert [d.path for d in definitions] == ["inventory/plugin.py"]
    assert "yaml.load(text)" in text
    assert any(e.payload["path"] == "inventory/plugin.py" for e in events)
