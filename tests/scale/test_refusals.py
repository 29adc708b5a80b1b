"""What a worker and a host refuse: malformed or hostile stream entries, stale results, and
wrong credentials; and a worker's SIGTERM, which gives its running task back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from delegation_machine.engine.agents.base import TokenUsage
from delegation_machine.engine.protocol import (
    AuditTrail,
    ContextPackage,
    DelegationRequest,
    EnvironmentSnapshot,
    GoalHint,
    TaskManifest,
)
from delegation_machine.engine.scale.wire import (
    WIRE_VERSION,
    BlobRef,
    Heartbeat,
    ResultMessage,
    TaskMessage,
    encode_message,
)
from delegation_machine.engine.swarm import Swarm
from tests.scale.conftest import ROOT, RedisServer, Workers, copy_sample

pytestmark = pytest.mark.slow

PASSWORD = "correct-horse-battery-9"


def hostile_task(path: str, digest: str, **fields: object) -> bytes:
    message = TaskMessage(
        v=WIRE_VERSION,
        task_id="evil.1",
        token=1,
        kind="fix",
        agent_id="builtin:fix@remote-1",
        host="nobody",
        package=ContextPackage(
            TaskManifest("evil.1", "evil", "fix", "fix"),
            EnvironmentSnapshot(1),
            GoalHint("fix"),
            AuditTrail("user", 0.0),
        ),
        request=DelegationRequest("fix"),
        files=(BlobRef(path, 1, digest),),
    )
    return msgspec.json.encode({**msgspec.to_builtins(message), "type": "task", **fields})


async def test_malformed_and_hostile_entries_are_refused_and_the_worker_goes_on(
    tmp_path: Path, redis_server: RedisServer, workers: Workers
) -> None:
    wa = workers.start(redis_server.url, "wa")
    client = redis_server.client()
    text = "import os\n"
    digest = hashlib.sha256(text.encode()).hexdigest()
    client.set(f"dm:blob:{digest}", text)
    outside = tmp_path / "escaped.py"
    entries = {
        b"not json at all": "malformed",
        hostile_task("a.py", digest, v=99): "wire version 99",
        hostile_task(f"../../../../../../..{outside}", digest): "not a workspace-relative path",
        hostile_task("a.py", digest, command="rm -rf /"): "unknown field",
    }
    for raw in entries:
        client.xadd("dm:tasks:fix", {b"m": raw})
    client.xadd("dm:tasks:fix", {b"other": b"field"})
    refused: list[dict[bytes, bytes]] = []
    last = "0-0"
    deadline = time.monotonic() + 30
    while len(refused) < 5 and time.monotonic() < deadline:
        answer = await asyncio.to_thread(client.xread, {"dm:rejected": last}, None, 2000)
        for _, found in answer or ():
            for entry_id, fields in found:
                last = entry_id
                refused.append(fields)
    reasons = [fields[b"reason"].decode() for fields in refused]
    assert len(reasons) == 5, reasons
    for why in entries.values():
        assert any(why in reason for reason in reasons), (why, reasons)
    assert any("without" in reason for reason in reasons)
    assert all(fields[b"worker"] == b"wa" for fields in refused)
    assert client.xlen("dm:tasks:fix") == 0  # acknowledged and removed, never run
    assert client.xpending("dm:tasks:fix", "workers")["pending"] == 0
    assert not outside.exists()
    assert wa.poll() is None
    beat = msgspec.json.decode(client.hget("dm:workers", "wa"), type=Heartbeat)
    assert beat.worker == "wa" and beat.kinds == ("fix", "format") and beat.slots == 1

    # The worker still serves; the host refuses a malformed result and a stale token.
    workspace = copy_sample(tmp_path)
    settings = {"agents": 1, "scale": {"kinds": ["fix"], "slots": 2}}
    swarm = Swarm(workspace, editor_settings=settings, watch=False, redis_url=redis_server.url)
    await swarm.start()
    try:
        assert swarm.remote is not None
        results = f"dm:results:{swarm.remote.host_id}"
        client.xadd(results, {b"m": b'{"type": "result", "v": 1'})
        stale = ResultMessage(WIRE_VERSION, "t-none.1", 7, "forger", usage=TokenUsage())
        client.xadd(results, {b"m": encode_message(stale)})
        plans = [
            await swarm.submit(DelegationRequest(instruction="fix", path=rel))
            for rel in ("inventory/audit.py", "inventory/auth.py", "inventory/cli.py")
        ]
        for plan in plans:
            await swarm.wait(plan, timeout=90)
        assert all(t.goal_met for p in plans for t in swarm.task_summaries(p))
        rejected = [
            e.payload["reason"] for e in swarm.ledger.events(kinds=["scale.result_rejected"])
        ]
        accepted = swarm.ledger.events(kinds=["scale.result"])
    finally:
        await swarm.stop()
    assert any("malformed result entry" in r for r in rejected), rejected
    assert any("stale fencing token 7 from forger" in r for r in rejected), rejected
    assert {e.payload["worker"] for e in accepted} == {"wa"}


def run_cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "delegation_machine.server", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_wrong_credentials_are_a_clear_refusal_and_never_shown(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder, password=PASSWORD)
    server.start()
    try:
        wrong = {"REDIS_PASSWORD": "not-the-password-42"}
        refused = run_cli("worker", "--redis", server.url, env=wrong)
        assert refused.returncode == 2
        assert "refused the credentials" in refused.stderr
        assert "not-the-password-42" not in refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr
        anonymous = run_cli("worker", "--redis", server.url, env={"REDIS_PASSWORD": ""})
        assert anonymous.returncode == 2 and "refused the credentials" in anonymous.stderr
        workspace = copy_sample(tmp_path)
        host = run_cli("run", str(workspace), "--task", "check", "--redis", server.url, env=wrong)
        assert host.returncode == 2, host.stdout + host.stderr
        assert "refused the credentials" in host.stderr
        assert "not-the-password-42" not in host.stdout + host.stderr
        in_url = run_cli(
            "worker", "--redis", f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0", env={}
        )
        assert in_url.returncode == 2 and "REDIS_PASSWORD" in in_url.stderr
        assert PASSWORD not in in_url.stdout + in_url.stderr
        # The right password from the environment: the worker serves, SIGTERM stops it.
        workers = Workers()
        try:
            worker = workers.start(server.url, "wa", env={"REDIS_PASSWORD": PASSWORD})
            worker.send_signal(signal.SIGTERM)
            out, _ = worker.communicate(timeout=30)
            assert worker.returncode == 0
            assert "worker wa stopped" in out and PASSWORD not in out
        finally:
            workers.stop_all()
    finally:
        server.stop()


async def test_sigterm_gives_the_running_task_back_and_another_worker_does_it(
    tmp_path: Path, redis_server: RedisServer, workers: Workers
) -> None:
    leaving = workers.start(redis_server.url, "leaving", extra=("--drain-s", "0"))
    workers.start(redis_server.url, "staying")
    client = redis_server.client()
    workspace = copy_sample(tmp_path)
    settings = {"agents": 1, "scale": {"kinds": ["fix"], "slots": 3}}
    swarm = Swarm(workspace, editor_settings=settings, watch=False, redis_url=redis_server.url)
    await swarm.start()
    try:
        plans = [
            await swarm.submit(DelegationRequest(instruction="fix", path=rel))
            for rel in (
                "inventory/audit.py",
                "inventory/auth.py",
                "inventory/cli.py",
                "inventory/http_client.py",
                "inventory/storage.py",
            )
        ]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pending = client.xpending_range("dm:tasks:fix", "workers", "-", "+", 10)
            if any(p["consumer"] == b"leaving/1" for p in pending):
                leaving.send_signal(signal.SIGTERM)
                break
            await asyncio.sleep(0.01)  # polling Redis's pending list
        else:
            raise AssertionError("the leaving worker never took a task")
        out, _ = await asyncio.to_thread(leaving.communicate, None, 30)
        for plan in plans:
            await swarm.wait(plan, timeout=90)
        summaries = [t for p in plans for t in swarm.task_summaries(p)]
        released = swarm.ledger.events(kinds=["scale.released"])
        results = swarm.ledger.events(kinds=["scale.result"])
    finally:
        await swarm.stop()
    assert leaving.returncode == 0 and "1 given back" in out, out
    assert all(t.goal_met for t in summaries), [(t.task_id, t.state, t.message) for t in summaries]
    assert len(released) == 1 and released[0].payload["worker"] == "leaving"
    again = [e for e in results if e.task_id == released[0].task_id]
    assert [e.payload["worker"] for e in again] == ["staying"]
