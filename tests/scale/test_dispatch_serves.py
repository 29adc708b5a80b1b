"""A worker slot that serves only some task kinds (a remote slot) never runs the others."""

from __future__ import annotations

import asyncio

import msgspec

from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.schedule.dispatch import Dispatcher, WorkerSpec


async def test_slots_that_serve_some_kinds_take_only_those_and_share_them() -> None:
    ring = RingBuffer[TaskSpec](64)
    ran: list[tuple[str, str, str]] = []

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        ran.append((spec.task_id, spec.kind, worker.worker_id))
        await asyncio.sleep(0)  # let the other slots take their share
        return True

    workers = [
        WorkerSpec("local", "builtin"),
        WorkerSpec("remote-1", "builtin", serves=frozenset({"fix"})),
        WorkerSpec("remote-2", "builtin", serves=frozenset({"fix"})),
    ]
    dispatcher = Dispatcher(ring, workers, run_task)
    specs = [
        msgspec.convert({"task_id": f"t{n}", "kind": kind}, TaskSpec)
        for n, kind in enumerate(["fix", "check", "fix", "rename", "fix", "fix", "check", "fix"])
    ]
    await ring.publish_batch(specs)
    ring.close()
    await asyncio.wait_for(dispatcher.run(), 30)
    assert sorted(t for t, _, _ in ran) == sorted(s.task_id for s in specs)  # each once
    assert all(w == "local" for _, kind, w in ran if kind != "fix")
    assert {w for _, kind, w in ran if kind == "fix"} >= {"remote-1", "remote-2"}


async def test_a_kind_no_slot_serves_is_cancelled_with_the_reason() -> None:
    ring = RingBuffer[TaskSpec](8)

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        raise AssertionError("never runs")

    dispatcher = Dispatcher(ring, [WorkerSpec("r", "builtin", serves=frozenset({"fix"}))], run_task)
    await ring.publish_batch([msgspec.convert({"task_id": "x", "kind": "rename"}, TaskSpec)])
    ring.close()
    await asyncio.wait_for(dispatcher.run(), 30)
    assert dispatcher.state_of("x") is not None and dispatcher.state_of("x").value == "cancelled"
    assert "no worker can run kind 'rename'" in dispatcher.reason_of("x")
