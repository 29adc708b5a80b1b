"""Property test: the Dispatcher keeps dataflow order and the failure rule on random plans.

Plans are random tag graphs published in random batches; agents fail at random and take a
random number of event-loop turns (`sleep(0)`), so completions interleave differently.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.schedule.dispatch import Dispatcher, WorkerSpec

TAGS = ["a", "b", "c", "d", "e"]

task_shapes = st.lists(
    st.tuples(
        st.lists(st.sampled_from(TAGS), max_size=2, unique=True),  # inputs
        st.lists(st.sampled_from(TAGS), max_size=2, unique=True),  # outputs
        st.booleans(),  # fails
        st.integers(min_value=0, max_value=3),  # event-loop turns it takes
        st.sampled_from(["fix", "format", "check"]),
    ),
    min_size=1,
    max_size=14,
)


def expected_producers(specs: list[TaskSpec]) -> dict[str, set[str]]:
    """For each task, the latest earlier producer of each input tag (renaming)."""
    latest: dict[str, str] = {}
    producers: dict[str, set[str]] = {}
    for spec in specs:
        producers[spec.task_id] = {latest[t] for t in spec.inputs if t in latest}
        for tag in spec.outputs:
            latest[tag] = spec.task_id
    return producers


@settings(max_examples=120, deadline=None)
@given(
    shapes=task_shapes,
    workers=st.integers(min_value=1, max_value=4),
    batch_size=st.integers(min_value=1, max_value=14),
    stations=st.none() | st.integers(min_value=1, max_value=3),
)
def test_dataflow_order_and_failure_cascade(
    shapes: list[tuple[list[str], list[str], bool, int, str]],
    workers: int,
    batch_size: int,
    stations: int | None,
) -> None:
    specs = [
        TaskSpec(
            task_id=f"t{i}",
            kind=kind,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            arguments={"fails": fails, "turns": turns},
        )
        for i, (inputs, outputs, fails, turns, kind) in enumerate(shapes)
    ]
    producers = expected_producers(specs)
    finished: dict[str, bool] = {}
    started: list[str] = []
    final: dict[str, str] = {}

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        # Every producer named at issue has finished, and finished well.
        for producer in producers[spec.task_id]:
            assert finished.get(producer) is True, (spec.task_id, producer, finished)
        assert spec.task_id not in started
        started.append(spec.task_id)
        for _ in range(spec.arguments["turns"]):
            await asyncio.sleep(0)
        ok = not spec.arguments["fails"]
        finished[spec.task_id] = ok
        return ok

    def on_state(task_id: str, state: str) -> None:
        if state in ("done", "failed", "cancelled"):
            assert task_id not in final, f"{task_id} reached a final state twice"
            final[task_id] = state

    async def scenario() -> None:
        ring = RingBuffer[TaskSpec](16)
        limits = {"fix": stations, "format": stations} if stations else None
        dispatcher = Dispatcher(
            ring,
            [WorkerSpec(f"w{i}", "agent") for i in range(workers)],
            run_task,
            on_state=on_state,
            stations=limits,
        )
        running = asyncio.create_task(dispatcher.run())
        for lo in range(0, len(specs), batch_size):
            await ring.publish_batch(specs[lo : lo + batch_size])
        ring.close()
        await asyncio.wait_for(running, 30)

    asyncio.run(scenario())
    assert set(final) == {s.task_id for s in specs}
    for spec in specs:
        blocked = any(final[p] != "done" for p in producers[spec.task_id])
        if blocked:
            assert final[spec.task_id] == "cancelled", spec.task_id
            assert spec.task_id not in started
        else:
            expected = "failed" if spec.arguments["fails"] else "done"
            assert final[spec.task_id] == expected, spec.task_id
