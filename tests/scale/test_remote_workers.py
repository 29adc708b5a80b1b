"""Fix plans through a real redis-server and real `delegation-machine worker` processes.

A host swarm with one local worker and remote slots sends `fix` tasks to two worker processes;
the files and verdicts equal those of a local run; a worker killed with kill -9 mid-task has
its task reclaimed and completed once; a Redis restart mid-run is survived with nothing lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.protocol import DelegationRequest
from delegation_machine.engine.swarm import Swarm
from tests.scale.conftest import ROOT, RedisServer, Workers, copy_sample

pytestmark = pytest.mark.slow

# The sample's Python sources with something to fix and some without, one plan each, so the
# dispatcher spreads them over the host's worker and the remote slots.
FILES = (
    "inventory/audit.py",
    "inventory/auth.py",
    "inventory/cli.py",
    "inventory/pricing.py",
    "inventory/storage.py",
    "inventory/ids.py",
)
PLAN_TIMEOUT_S = 120
RUN_COMMAND = (sys.executable, "-m", "delegation_machine.server", "run")


class Outcome:
    def __init__(self, swarm: Swarm, plans: dict[str, str]) -> None:
        self.tasks = {
            rel: [(t.state, t.files, t.verdicts, t.goal_met) for t in swarm.task_summaries(plan)]
            for rel, plan in plans.items()
        }
        self.agents = {rel: [t.agent for t in swarm.task_summaries(p)] for rel, p in plans.items()}
        self.events = swarm.ledger.events()

    def kinds(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.kind == kind]


async def fix_each(
    workspace: Path,
    *,
    redis_url: str | None = None,
    settings: dict[str, Any] | None = None,
    while_running: Any = None,
) -> Outcome:
    swarm = Swarm(
        workspace, editor_settings=settings or {"agents": 2}, watch=False, redis_url=redis_url
    )
    await swarm.start()
    try:
        plans = {
            rel: await swarm.submit(DelegationRequest(instruction="fix", path=rel)) for rel in FILES
        }
        if while_running is not None:
            await while_running(swarm)
        for plan in plans.values():
            await swarm.wait(plan, timeout=PLAN_TIMEOUT_S)
        return Outcome(swarm, plans)
    finally:
        await swarm.stop()


def texts(workspace: Path) -> dict[str, str]:
    return {rel: (workspace / rel).read_text(encoding="utf-8") for rel in FILES}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Outcome, dict[str, str]]:
    """The reference: the same plans run by local workers only."""
    workspace = copy_sample(tmp_path_factory.mktemp("local"))
    outcome = asyncio.run(fix_each(workspace))
    return outcome, texts(workspace)


def remote_settings(**scale: Any) -> dict[str, Any]:
    return {"agents": 1, "scale": {"kinds": ["fix"], "slots": 4, **scale}}


async def test_two_workers_and_the_host_give_the_files_and_verdicts_of_a_local_run(
    tmp_path: Path, redis_server: RedisServer, workers: Workers, local_run: tuple[Outcome, Any]
) -> None:
    expected, expected_texts = local_run
    workers.start(redis_server.url, "wa")
    workers.start(redis_server.url, "wb")
    workspace = copy_sample(tmp_path)
    outcome = await fix_each(workspace, redis_url=redis_server.url, settings=remote_settings())
    assert texts(workspace) == expected_texts
    assert outcome.tasks == expected.tasks
    original = copy_sample(tmp_path / "original")
    assert any(expected_texts[rel] != (original / rel).read_text() for rel in FILES)
    accepted = outcome.kinds("scale.result")
    assert {e.payload["worker"] for e in accepted} == {"wa", "wb"}  # both workers took tasks
    local = [a for agents in outcome.agents.values() for a in agents if a and "@worker-" in a]
    assert local, "the host's own worker ran some of the tasks too"
    assert not outcome.kinds("scale.result_rejected")
    # Every event also went to the bounded mirror stream.
    mirrored = redis_server.client().xlen("dm:events")
    assert mirrored >= len(outcome.events) - 2  # all but swarm.stopped's neighbours at worst


async def test_a_worker_killed_mid_task_has_its_task_reclaimed_and_done_once(
    tmp_path: Path, redis_server: RedisServer, workers: Workers, local_run: tuple[Outcome, Any]
) -> None:
    expected, expected_texts = local_run
    victim = workers.start(redis_server.url, "victim")
    workers.start(redis_server.url, "survivor")
    client = redis_server.client()
    killed: list[str] = []

    async def kill_when_busy(swarm: Swarm) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pending = client.xpending_range("dm:tasks:fix", "workers", "-", "+", 10)
            mine = [p for p in pending if p["consumer"] == b"victim/1"]
            if mine:
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                killed.append(mine[0]["message_id"].decode())
                return
            await asyncio.sleep(0.01)  # polling Redis's pending list, not waiting on a server
        raise AssertionError("the victim never took a task")

    workspace = copy_sample(tmp_path)
    outcome = await fix_each(
        workspace,
        redis_url=redis_server.url,
        settings=remote_settings(lease_s=1.5),
        while_running=kill_when_busy,
    )
    assert killed
    assert texts(workspace) == expected_texts  # no edit lost, none applied twice
    assert outcome.tasks == expected.tasks
    reclaimed = outcome.kinds("scale.reclaimed")
    assert len(reclaimed) >= 1
    task_id = reclaimed[0].task_id
    results = [e for e in outcome.kinds("agent.result") if e.task_id == task_id]
    assert len(results) == 1  # the reclaimed task's edit was applied once
    assert all(
        e.payload["worker"] != "victim"
        for e in outcome.kinds("scale.result")
        if e.task_id == task_id
    )


async def test_a_redis_restart_mid_run_is_survived_with_nothing_lost(
    tmp_path: Path, redis_server: RedisServer, workers: Workers, local_run: tuple[Outcome, Any]
) -> None:
    expected, expected_texts = local_run
    wa = workers.start(redis_server.url, "wa")
    workers.start(redis_server.url, "wb")

    async def restart_redis(swarm: Swarm) -> None:
        issued = asyncio.Event()
        unsubscribe = swarm.ledger.subscribe(
            lambda e: issued.set() if e.kind == "scale.issued" else None
        )
        try:
            await asyncio.wait_for(issued.wait(), 60)
        finally:
            unsubscribe()
        await asyncio.to_thread(redis_server.restart)  # empty: no persistence

    workspace = copy_sample(tmp_path)
    outcome = await fix_each(
        workspace,
        redis_url=redis_server.url,
        settings=remote_settings(lease_s=3),
        while_running=restart_redis,
    )
    assert texts(workspace) == expected_texts
    assert outcome.tasks == expected.tasks
    assert outcome.kinds("scale.redis_lost"), "the host said it lost Redis"
    back = outcome.kinds("scale.redis_back")
    assert back and back[-1].payload["down_s"] >= 0
    assert wa.poll() is None  # the workers reconnected rather than dying
    assert redis_server.client().xlen("dm:events") > 0  # the mirror resumed on the new server


def test_the_run_command_over_redis_matches_the_local_files(
    tmp_path: Path, redis_server: RedisServer, workers: Workers, local_run: tuple[Outcome, Any]
) -> None:
    """`delegation-machine run --redis URL` with two worker processes: the whole sample's fix
    plan ends as a local run's does, and its remote tasks came back from the workers."""
    _, expected_texts = local_run
    workers.start(redis_server.url, "wa")
    workers.start(redis_server.url, "wb")
    workspace = copy_sample(tmp_path)
    (workspace / ".delegation").mkdir()
    (workspace / ".delegation" / "config.toml").write_text(
        'agents = 1\n[scale]\nkinds = ["fix"]\nslots = 4\n', encoding="utf-8"
    )
    done = subprocess.run(
        [*RUN_COMMAND, str(workspace), "--task", "fix", "--json", "--redis", redis_server.url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"] and all(t["goal_met"] for t in report["tasks"])
    assert texts(workspace) == expected_texts
    ledger = Ledger(workspace / ".delegation" / "ledger.sqlite3")
    try:
        started = ledger.events(kinds=["scale.started"])
        issued = ledger.events(kinds=["scale.issued"])
        results = ledger.events(kinds=["scale.result"])
    finally:
        ledger.close()
    assert started and started[0].payload["redis"] == redis_server.url
    if len(report["tasks"]) > 1:  # one task per batch of files: more than one goes remote
        assert issued and len(results) == len(issued)
        assert {e.payload["worker"] for e in results} <= {"wa", "wb"}
