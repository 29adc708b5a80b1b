"""A failed producer cancels its dependents in its own scope only (the swarm's plans)."""

from __future__ import annotations

import asyncio

from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.schedule.dispatch import Dispatcher, WorkerSpec


def spec(
    task_id: str, plan: str, *, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = ()
) -> TaskSpec:
    return TaskSpec(task_id=task_id, kind="fix", plan_id=plan, inputs=inputs, outputs=outputs)


async def run_plans(specs: list[TaskSpec], failing: set[str], *, scoped: bool) -> dict[str, str]:
    ring = RingBuffer[TaskSpec](16)
    states: dict[str, str] = {}

    async def run_task(task: TaskSpec, worker: WorkerSpec) -> bool:
        return task.task_id not in failing

    dispatcher = Dispatcher(
        ring,
        [WorkerSpec("w1", "tool")],
        run_task,
        on_state=lambda t, s: states.__setitem__(t, s),
        failure_scope=(lambda s: s.plan_id) if scoped else None,
    )
    running = asyncio.create_task(dispatcher.run())
    await ring.publish_batch(specs)
    ring.close()
    await asyncio.wait_for(running, 10)
    return states


PLANS = [
    spec("a.1", "a", inputs=("file:x",), outputs=("file:x",)),
    spec("a.2", "a", inputs=("file:x",)),  # depends on a.1 inside plan a
    spec("b.1", "b", inputs=("file:x",), outputs=("file:x",)),  # another request, same file
    spec("b.2", "b", inputs=("file:x",)),
]


async def test_other_scopes_read_the_previous_value_when_a_producer_fails() -> None:
    states = await run_plans(PLANS, {"a.1"}, scoped=True)
    assert states == {"a.1": "failed", "a.2": "cancelled", "b.1": "done", "b.2": "done"}


async def test_without_a_scope_the_failure_cascades_to_every_reader() -> None:
    states = await run_plans(PLANS, {"a.1"}, scoped=False)
    assert states["a.2"] == states["b.1"] == states["b.2"] == "cancelled"
