"""Agent tasks through Redis Streams: tasks per second and added latency per task with 1, 2 and
4 worker processes against the in-process path, and the host's scheduling overhead with 1,000
simulated remote worker slots.

(1) The transport. A scripted fast agent (one Mutation on a ~4 KB file, no tools) runs either
in-process (`agent.run(work)`, the local path) or through `RemoteHost.run_attempt` to real
worker processes (`ScaleWorker` with the same scripted agent, 4 slots each) on a real
redis-server on loopback, so the transport is what is measured: blobs put, entry added, read by
a consumer group, blobs fetched and checked, result added and read back, ledger events mirrored.
Latency: one attempt at a time (p50 / p95 round trip; added = minus the in-process p50).
Throughput: 400 attempts, 32 in flight at once (the host's remote slots), tasks per second. All in the same run.
(2) Scheduling. The live `Dispatcher` with one local worker and 8 or 1,000 remote slots
(`WorkerSpec.serves`), 2,000 tasks whose `run_task` returns at once: microseconds of host
scheduling per task.
Writes benchmarks/results/redis_workers.json.
Run: .venv/bin/python benchmarks/redis_workers.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.agents.base import (
    Agent,
    AgentResult,
    AgentWork,
    FileVersion,
    TokenUsage,
)
from delegation_machine.engine.config import ScaleConfig
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import (
    AuditTrail,
    ContextPackage,
    DelegationRequest,
    EnvironmentSnapshot,
    GoalHint,
    Mutation,
    TaskManifest,
    TextEdit,
)
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.scale.connection import StreamNames, connect
from delegation_machine.engine.scale.host import RemoteHost
from delegation_machine.engine.scale.worker import ScaleWorker
from delegation_machine.engine.schedule.dispatch import Dispatcher, WorkerSpec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "redis_workers.json"
SAMPLE_FILE = ROOT / "samples" / "inventory" / "inventory" / "orders.py"
WORKER_SLOTS = 4
IN_FLIGHT = 32  # the host's remote slots in the throughput run


class ScriptedAgent:
    """Returns one small Mutation at once: the transport, not the agent, is measured."""

    kind = "fix"

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id

    async def run(self, work: AgentWork) -> AgentResult:
        rel, version = next(iter(work.files.items()))
        edit = TextEdit(0, 0, "# scripted\n")
        mutation = Mutation(work.task_id, self.agent_id, rel, version.version, (edit,))
        return AgentResult((mutation,), TokenUsage(tool_calls=1), "scripted")


class ScriptedAgents:
    def kinds(self) -> tuple[str, ...]:
        return ("fix",)

    def create(self, kind: str, agent_id: str, root: Path) -> Agent:
        return ScriptedAgent(agent_id)


def work_for(n: int, text: str) -> AgentWork:
    task_id = f"t{n}"
    return AgentWork(
        task_id=task_id,
        package=ContextPackage(
            TaskManifest(task_id, "bench", "fix", "fix"),
            EnvironmentSnapshot(1, ("inventory/orders.py",)),
            GoalHint("fix"),
            AuditTrail("bench", time.time()),
        ),
        request=DelegationRequest("fix", path="inventory/orders.py"),
        files={"inventory/orders.py": FileVersion(text, 1)},
        workspace_root=ROOT,
    )


# --- redis-server and worker processes ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(folder: Path) -> tuple[subprocess.Popen[str], str]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    process = subprocess.Popen(
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:  # ready when it says so
        if "Ready to accept connections" in line:
            return process, f"redis://127.0.0.1:{port}/0"
    raise SystemExit(f"redis-server exited ({process.wait()})")


def start_worker(url: str, name: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker", url, name],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving" not in line:
        raise SystemExit(f"worker {name} did not start: {line!r}")
    return process


async def serve_worker(url: str, name: str) -> None:
    client = connect(url, connections=WORKER_SLOTS * 2 + 8)  # as `delegation-machine worker`
    worker = ScaleWorker(
        client,
        url=url,
        names=StreamNames("bench"),
        name=name,
        agents=ScriptedAgents(),
        kinds=("fix",),
        slots=WORKER_SLOTS,
        drain_s=1,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    print(f"worker {name} serving", flush=True)
    try:
        await worker.run()
    finally:
        await client.aclose()


# --- measurements ---------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def in_process(text: str, sequential: int, concurrent: int) -> dict[str, float]:
    agent = ScriptedAgent("builtin:fix@worker-1")
    latencies = []
    for n in range(sequential):
        started = time.perf_counter()
        await agent.run(work_for(n, text))
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    await asyncio.gather(*(agent.run(work_for(n, text)) for n in range(concurrent)))
    wall = time.perf_counter() - started
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "tasks_per_s": concurrent / wall,
    }


async def through_redis(url: str, text: str, sequential: int, concurrent: int) -> dict[str, Any]:
    # The host has IN_FLIGHT remote slots: that many attempts out at once, as in a swarm.
    settings = ScaleConfig(
        redis=url, kinds=("fix",), namespace="bench", lease_s=30, slots=IN_FLIGHT
    )
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def attempt(n: int) -> AgentResult:
        async with limit:
            return await host.run_attempt(
                f"builtin:fix@remote-{n % IN_FLIGHT}", "fix", work_for(n, text)
            )

    ledger = Ledger(":memory:")
    host = RemoteHost(settings, root=ROOT, ledger=ledger, url=url)
    await host.start()
    try:
        for n in range(20):  # warm-up: connections, consumer groups
            await host.run_attempt("builtin:fix@remote-1", "fix", work_for(-n - 1, text))
        latencies = []
        for n in range(sequential):
            started = time.perf_counter()
            result = await host.run_attempt("builtin:fix@remote-1", "fix", work_for(n, text))
            latencies.append(time.perf_counter() - started)
            assert len(result.mutations) == 1
        started = time.perf_counter()
        results = await asyncio.gather(*(attempt(10_000 + n) for n in range(concurrent)))
        wall = time.perf_counter() - started
        assert all(len(r.mutations) == 1 for r in results)
        workers = sorted({e.payload["worker"] for e in ledger.events(kinds=["scale.result"])})
    finally:
        await host.aclose()
        ledger.close()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "tasks_per_s": concurrent / wall,
        "workers_seen": workers,
    }


async def scheduling(remote_slots: int, tasks: int) -> dict[str, float]:
    ring = RingBuffer[TaskSpec](4096)
    slots = [WorkerSpec("worker-1", "builtin")]
    slots += [
        WorkerSpec(f"remote-{n}", "builtin", serves=frozenset({"fix"}))
        for n in range(1, remote_slots + 1)
    ]

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        return True

    dispatcher = Dispatcher(ring, slots, run_task)
    specs = [
        msgspec.convert(
            {"task_id": f"t{n}", "kind": "fix" if n % 4 else "check", "cost": {"builtin": 1.0}},
            TaskSpec,
        )
        for n in range(tasks)
    ]
    started = time.perf_counter()
    runner = asyncio.create_task(dispatcher.run())
    for first in range(0, tasks, 256):
        await ring.publish_batch(specs[first : first + 256])
    ring.close()
    await runner
    wall = time.perf_counter() - started
    status = dispatcher.status()
    assert status.done == tasks
    return {"wall_s": wall, "us_per_task": wall / tasks * 1e6, "tasks_per_s": tasks / wall}


async def measure(quick: bool) -> dict[str, Any]:
    text = SAMPLE_FILE.read_text(encoding="utf-8")
    sequential, concurrent = (100, 200) if quick else (300, 400)
    folder = Path(tempfile.mkdtemp(prefix="dm-bench-redis-"))
    redis_process, url = start_redis(folder)
    rows: list[dict[str, Any]] = []
    try:
        local = await in_process(text, sequential, concurrent)
        rows.append({"path": "in-process", "workers": 0, **local})
        for count in (1, 2, 4):
            processes = [start_worker(url, f"w{count}-{n}") for n in range(count)]
            try:
                remote = await through_redis(url, text, sequential, concurrent)
            finally:
                for process in processes:
                    process.send_signal(signal.SIGTERM)
                for process in processes:
                    process.wait(timeout=30)
            remote["added_p50_ms"] = remote["p50_ms"] - local["p50_ms"]
            rows.append({"path": "redis", "workers": count, **remote})
    finally:
        redis_process.send_signal(signal.SIGTERM)
        redis_process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    sched_tasks = 1000 if quick else 2000
    schedule = {str(slots): await scheduling(slots, sched_tasks) for slots in (8, 1000)}
    return {
        "figure": "redis_workers",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "quick": quick,
        "file_bytes": len(text.encode()),
        "worker_slots_each": WORKER_SLOTS,
        "sequential_attempts": sequential,
        "concurrent_attempts": concurrent,
        "transport": rows,
        "scheduling_tasks": sched_tasks,
        "scheduling_by_remote_slots": schedule,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("URL", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(serve_worker(*args.worker))
        return
    result = asyncio.run(measure(args.quick))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for row in result["transport"]:
        print(
            f"{row['path']:>10} workers={row['workers']}: p50 {row['p50_ms']:.2f} ms, "
            f"p95 {row['p95_ms']:.2f} ms, {row['tasks_per_s']:.0f} tasks/s"
        )
    for slots, figures in result["scheduling_by_remote_slots"].items():
        print(f"scheduling with {slots} remote slots: {figures['us_per_task']:.1f} us/task")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
