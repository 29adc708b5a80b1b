"""Dispatcher: ring batches, HEFT order, reservation stations, failure cascade, stealing."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import msgspec
import pytest

from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.ring import RingBuffer, RingFull
from delegation_machine.engine.schedule.dispatch import Dispatcher, WorkerSpec


class Harness:
    """Runs a Dispatcher whose tasks finish when the test says so (or at once)."""

    def __init__(
        self,
        workers: Sequence[WorkerSpec] = (WorkerSpec("w1", "tool"),),
        *,
        gated: bool = False,
        failing: frozenset[str] = frozenset(),
    ) -> None:
        self.ring = RingBuffer[TaskSpec](64)
        self.states: list[tuple[str, str]] = []
        self.started: list[tuple[str, str]] = []
        self.gated = gated
        self.failing = failing
        self.gates: dict[str, asyncio.Future[bool]] = {}
        self.started_event: dict[str, asyncio.Event] = {}
        self.dispatcher = Dispatcher(
            self.ring, workers, self.run_task, on_state=lambda t, s: self.states.append((t, s))
        )

    async def run_task(self, spec: TaskSpec, worker: WorkerSpec) -> bool:
        self.started.append((spec.task_id, worker.worker_id))
        self.started_event.setdefault(spec.task_id, asyncio.Event()).set()
        if spec.task_id == "raises":
            raise RuntimeError("agent crashed")
        if self.gated:
            gate = self.gates.setdefault(spec.task_id, asyncio.get_running_loop().create_future())
            return await gate
        return spec.task_id not in self.failing

    async def wait_started(self, task_id: str) -> None:
        await self.started_event.setdefault(task_id, asyncio.Event()).wait()

    def finish(self, task_id: str, ok: bool = True) -> None:
        self.gates.setdefault(task_id, asyncio.get_running_loop().create_future()).set_result(ok)

    def state(self, task_id: str) -> str:
        return [s for t, s in self.states if t == task_id][-1]

    def order(self) -> list[str]:
        return [t for t, _ in self.started]


def task(task_id: str, **fields: object) -> TaskSpec:
    return msgspec.convert({"task_id": task_id, "kind": "fix", **fields}, TaskSpec)


async def test_whole_plan_in_one_batch_runs_in_dependency_order() -> None:
    h = Harness()
    plan = [
        task("edit", outputs=("file:a.py",)),
        task("format", inputs=("file:a.py",), outputs=("file:a.py",)),
        task("check", inputs=("file:a.py",)),
    ]
    await h.ring.publish_batch(plan)
    h.ring.close()
    await asyncio.wait_for(h.dispatcher.run(), 30)
    assert h.order() == ["edit", "format", "check"]
    assert [h.state(t) for t in ("edit", "format", "check")] == ["done"] * 3
    assert ("check", "waiting") in h.states
    status = h.dispatcher.status()
    assert status.done == 3 and status.failed == 0 and status.ring_closed
    assert [r.task_id for r in status.recent] == ["edit", "format", "check"]


async def test_independent_tasks_run_highest_upward_rank_first() -> None:
    h = Harness()
    plan = [
        task("small", cost={"tool": 1.0}),
        task("big", cost={"tool": 5.0}),
        task("medium", cost={"tool": 3.0}),
        task("feeds-long-chain", cost={"tool": 1.0}, outputs=("x",)),
        task("chain-tail", cost={"tool": 9.0}, inputs=("x",)),
    ]
    await h.ring.publish_batch(plan)
    h.ring.close()
    await asyncio.wait_for(h.dispatcher.run(), 30)
    # rank_u: feeds-long-chain 10, big 5, medium 3, small 1; the tail becomes ready last.
    assert h.order() == ["feeds-long-chain", "chain-tail", "big", "medium", "small"]


async def test_station_holds_a_task_until_its_producer_broadcasts() -> None:
    h = Harness(gated=True)
    await h.ring.publish_batch(
        [task("producer", outputs=("sym:Foo",)), task("consumer", inputs=("sym:Foo",))]
    )
    running = asyncio.create_task(h.dispatcher.run())
    await h.wait_started("producer")
    status = h.dispatcher.status()
    assert [e.task_id for e in status.stations["fix"]] == ["consumer"]
    assert status.stations["fix"][0].waiting_on == ("producer",)
    assert status.workers[0].running == "producer"
    assert "consumer" not in {t for t, _ in h.started}
    h.finish("producer")
    await h.wait_started("consumer")
    assert h.dispatcher.status().stations == {}
    h.finish("consumer")
    h.ring.close()
    await asyncio.wait_for(running, 30)
    assert h.state("consumer") == "done"


async def test_inputs_without_known_producer_are_ready_at_once() -> None:
    h = Harness()
    await h.ring.publish_batch([task("reads-disk", inputs=("file:never-produced.py",))])
    h.ring.close()
    await asyncio.wait_for(h.dispatcher.run(), 30)
    assert h.state("reads-disk") == "done"


async def test_renaming_a_reader_published_before_a_writer_does_not_wait() -> None:
    h = Harness(workers=[WorkerSpec("w1", "tool"), WorkerSpec("w2", "tool")], gated=True)
    # Program order: the reader comes first, so it reads the current value (WAR removed).
    await h.ring.publish_batch([task("reader", inputs=("f",)), task("writer", outputs=("f",))])
    running = asyncio.create_task(h.dispatcher.run())
    await h.wait_started("reader")
    await h.wait_started("writer")
    h.finish("reader")
    h.finish("writer")
    h.ring.close()
    await asyncio.wait_for(running, 30)


async def test_failed_producer_cancels_dependents_transitively_with_reason() -> None:
    h = Harness(failing=frozenset({"edit"}))
    await h.ring.publish_batch(
        [
            task("edit", outputs=("file:a.py",)),
            task("format", inputs=("file:a.py",), outputs=("file:a.py",)),
            task("check", inputs=("file:a.py",)),
            task("unrelated"),
        ]
    )
    h.ring.close()
    await asyncio.wait_for(h.dispatcher.run(), 30)
    assert h.state("edit") == "failed"
    assert h.state("format") == "cancelled"
    assert h.state("check") == "cancelled"
    assert h.state("unrelated") == "done"
    assert "edit failed" in h.dispatcher.reason_of("format")
    assert "format was cancelled" in h.dispatcher.reason_of("check")
    assert sorted(h.order()) == ["edit", "unrelated"]
    status = h.dispatcher.status()
    assert (status.done, status.failed, status.cancelled) == (1, 1, 2)


async def test_a_raising_agent_counts_as_failed() -> None:
    h = Harness()
    await h.ring.publish_batch([task("raises", outputs=("t",)), task("after", inputs=("t",))])
    h.ring.close()
    await asyncio.wait_for(h.dispatcher.run(), 30)
    assert h.state("raises") == "failed"
    assert h.state("after") == "cancelled"


async def test_later_batch_reading_a_failed_tag_is_cancelled() -> None:
    h = Harness(failing=frozenset({"edit"}))
    await h.ring.publish_batch([task("edit", outputs=("file:a.py",))])
    running = asyncio.create_task(h.dispatcher.run())
    await h.wait_started("edit")
    while h.dispatcher.state_of("edit") != "failed":
        await asyncio.sleep(0)
    await h.ring.publish_batch([task("late-reader", inputs=("file:a.py",))])
    h.ring.close()
    await asyncio.wait_for(running, 30)
    assert h.state("late-reader") == "cancelled"
    assert "edit" in h.dispatcher.reason_of("late-reader")


async def test_cancel_a_waiting_task_and_its_dependents() -> None:
    h = Harness(gated=True)
    await h.ring.publish_batch(
        [
            task("first", outputs=("a",)),
            task("second", inputs=("a",), outputs=("b",)),
            task("third", inputs=("b",)),
        ]
    )
    running = asyncio.create_task(h.dispatcher.run())
    await h.wait_started("first")
    assert h.dispatcher.cancel("first") is False  # already running
    assert h.dispatcher.cancel("second") is True
    assert h.dispatcher.cancel("second") is False
    assert h.dispatcher.cancel("nonexistent") is False
    assert h.state("second") == "cancelled"
    assert h.state("third") == "cancelled"
    assert h.dispatcher.reason_of("second") == "cancelled on request"
    h.finish("first")
    h.ring.close()
    await asyncio.wait_for(running, 30)
    assert h.order() == ["first"]


async def test_idle_worker_steals_from_a_loaded_one() -> None:
    workers = [WorkerSpec("fast", "gpu"), WorkerSpec("slow", "cpu")]
    h = Harness(workers=workers, gated=True)
    # All tasks are far cheaper on "gpu", so every one is queued on "fast"; "slow" steals.
    plan = [task(f"t{i}", cost={"gpu": 1.0, "cpu": 50.0}) for i in range(4)]
    await h.ring.publish_batch(plan)
    running = asyncio.create_task(h.dispatcher.run())
    while len(h.started) < 2:
        await asyncio.sleep(0)
    assert {w for _, w in h.started} == {"fast", "slow"}
    status = h.dispatcher.status()
    assert {w.worker_id: w.stolen for w in status.workers}["slow"] == 1
    for task_id, _ in list(h.started):
        h.finish(task_id)
    while len(h.started) < 4:
        await asyncio.sleep(0)
    for task_id, _ in h.started[2:]:
        h.finish(task_id)
    h.ring.close()
    await asyncio.wait_for(running, 30)
    assert all(h.state(f"t{i}") == "done" for i in range(4))
    records = h.dispatcher.status().recent
    assert {r.worker_id for r in records if r.stolen} == {"slow"}
    assert all(not r.stolen for r in records if r.worker_id == "fast")


async def test_thief_skips_victims_whose_tasks_it_cannot_run() -> None:
    workers = [WorkerSpec("llm", "llm"), WorkerSpec("tool", "tool"), WorkerSpec("idle", "tool")]
    h = Harness(workers=workers, gated=True)
    llm_only = {"llm": 1.0, "tool": math.inf}
    await h.ring.publish_batch([task("blocker", cost=llm_only)])
    running = asyncio.create_task(h.dispatcher.run())
    await h.wait_started("blocker")
    # All three queue on the busy llm worker; the oldest two are llm-only, so a tool thief
    # must look past them to find "either".
    await h.ring.publish_batch(
        [
            task("llm-only-1", cost=llm_only),
            task("llm-only-2", cost=llm_only),
            task("either", cost={"llm": 0.1, "tool": 5.0}),
        ]
    )
    await h.wait_started("either")
    assert dict(h.started)["either"] in {"tool", "idle"}
    h.finish("either")
    for name in ("blocker", "llm-only-1", "llm-only-2"):
        await h.wait_started(name)
        h.finish(name)
    h.ring.close()
    await asyncio.wait_for(running, 30)
    assert {t for t, w in h.started if w == "llm"} == {"blocker", "llm-only-1", "llm-only-2"}


async def test_infinite_cost_keeps_a_task_off_that_worker_kind() -> None:
    workers = [WorkerSpec("llm-1", "llm"), WorkerSpec("tool-1", "tool")]
    h = Harness(workers=workers)
    plan = [task(f"needs-llm-{i}", cost={"llm": 1.0, "tool": math.inf}) for i in range(5)]
    plan.append(task("impossible", cost={"llm": math.inf, "tool": math.inf}))
    await h.ring.publish_batch(plan)
    h.ring.close()
    await asyncio.wait_for(h.dispatcher.run(), 30)
    assert {w for _, w in h.started} == {"llm-1"}
    assert h.state("impossible") == "cancelled"
    assert "no worker can run" in h.dispatcher.reason_of("impossible")


async def test_duplicate_task_ids_run_once() -> None:
    h = Harness()
    await h.ring.publish_batch([task("same"), task("same")])
    h.ring.close()
    await asyncio.wait_for(h.dispatcher.run(), 30)
    assert h.order() == ["same"]


async def test_status_is_msgspec_encodable() -> None:
    h = Harness(gated=True)
    await h.ring.publish_batch([task("a", outputs=("x",)), task("b", inputs=("x",))])
    running = asyncio.create_task(h.dispatcher.run())
    await h.wait_started("a")
    encoded = msgspec.json.decode(msgspec.json.encode(h.dispatcher.status()))
    assert encoded["workers"][0]["running"] == "a"
    assert encoded["stations"]["fix"][0]["task_id"] == "b"
    assert encoded["ring"]["consumers"][0]["name"] == "dispatch"
    assert encoded["ring"]["claimed"] == 1
    h.finish("a")
    await h.wait_started("b")
    h.finish("b")
    h.ring.close()
    await asyncio.wait_for(running, 30)


def test_dispatcher_needs_workers_with_unique_ids() -> None:
    ring = RingBuffer[TaskSpec](8)

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        return True

    with pytest.raises(ValueError, match="at least one worker"):
        Dispatcher(ring, [], run_task)
    with pytest.raises(ValueError, match="unique"):
        Dispatcher(ring, [WorkerSpec("a", "x"), WorkerSpec("a", "y")], run_task)


async def test_finished_bookkeeping_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from delegation_machine.engine.schedule import dispatch

    monkeypatch.setattr(dispatch, "FINISHED_MEMORY", 3)
    h = Harness(failing=frozenset({"t0"}))
    await h.ring.publish_batch([task(f"t{i}", outputs=(f"o{i}",)) for i in range(6)])
    h.ring.close()
    await asyncio.wait_for(h.dispatcher.run(), 30)
    forgotten, remembered = h.order()[:3], h.order()[3:]
    assert [h.dispatcher.state_of(t) for t in forgotten] == [None] * 3
    assert all(h.dispatcher.state_of(t) in {"done", "failed"} for t in remembered)
    status = h.dispatcher.status()
    assert (status.done, status.failed) == (5, 1)  # counters keep the totals


async def test_without_stealing_tasks_stay_on_the_worker_they_were_queued_on() -> None:
    ring = RingBuffer[TaskSpec](16)
    ran: list[str] = []

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        ran.append(worker.worker_id)
        return True

    workers = [WorkerSpec("fast", "gpu"), WorkerSpec("slow", "cpu")]
    dispatcher = Dispatcher(ring, workers, run_task, stealing=False)
    await ring.publish_batch([task(f"t{i}", cost={"gpu": 1.0, "cpu": 50.0}) for i in range(4)])
    ring.close()
    await asyncio.wait_for(dispatcher.run(), 30)
    assert ran == ["fast"] * 4


async def test_equal_ranks_run_in_publish_order() -> None:
    h = Harness()
    names = ["t10", "t9", "t100", "a", "z"]
    await h.ring.publish_batch([task(name) for name in names])
    h.ring.close()
    await asyncio.wait_for(h.dispatcher.run(), 30)
    assert h.order() == names


async def test_full_station_stalls_issue_in_order_and_backpressures_the_ring() -> None:
    ring = RingBuffer[TaskSpec](4)
    started: list[str] = []
    gates: dict[str, asyncio.Future[bool]] = {}
    progress = asyncio.Event()

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        started.append(spec.task_id)
        progress.set()
        gates[spec.task_id] = asyncio.get_running_loop().create_future()
        return await gates[spec.task_id]

    workers = [WorkerSpec("w1", "x"), WorkerSpec("w2", "x")]
    dispatcher = Dispatcher(ring, workers, run_task, stations={"fix": 1})
    ring.try_publish_batch(
        [task("fix-1"), task("fix-2"), msgspec.structs.replace(task("fmt"), kind="format")]
    )
    running = asyncio.create_task(dispatcher.run())
    while not started:
        await asyncio.sleep(0)
    status = dispatcher.status()
    assert started == ["fix-1"]
    # In-order issue: "fmt" waits behind "fix-2" although its own unit is free.
    assert status.issue_queue == ("fix-2", "fmt")
    assert status.in_flight == {"fix": 1} and status.station_limits == {"fix": 1}
    # The stalled batch keeps its slots: the ring has room for one more event only.
    ring.try_publish(task("late"))
    with pytest.raises(RingFull):
        ring.try_publish(task("too-many"))
    progress.clear()
    gates["fix-1"].set_result(True)
    while len(started) < 3:
        await progress.wait()
        progress.clear()
    assert started[1:] == ["fix-2", "fmt"] or started[1:] == ["fmt", "fix-2"]
    for name in ("fix-2", "fmt"):
        gates[name].set_result(True)
    while len(started) < 4:
        await progress.wait()
        progress.clear()
    gates["late"].set_result(True)
    ring.close()
    await asyncio.wait_for(running, 30)
    assert dispatcher.status().done == 4


async def test_cancel_a_task_still_queued_for_issue() -> None:
    ring = RingBuffer[TaskSpec](8)
    started: list[str] = []
    gate: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        started.append(spec.task_id)
        return await gate if spec.task_id == "first" else True

    states: list[tuple[str, str]] = []
    dispatcher = Dispatcher(
        ring,
        [WorkerSpec("w", "x")],
        run_task,
        stations={"fix": 1},
        on_state=lambda t, s: states.append((t, s)),
    )
    await ring.publish_batch(
        [task("first"), task("queued", outputs=("a",)), task("reader", inputs=("a",))]
    )
    running = asyncio.create_task(dispatcher.run())
    while not started:
        await asyncio.sleep(0)
    assert dispatcher.status().issue_queue == ("queued", "reader")
    assert dispatcher.cancel("queued") is True
    assert dispatcher.cancel("queued") is False
    assert ("queued", "cancelled") in states
    gate.set_result(True)
    ring.close()
    await asyncio.wait_for(running, 30)
    assert started == ["first"]
    assert dispatcher.state_of("reader") == "cancelled"
    assert "queued" in dispatcher.reason_of("reader")


def test_station_limits_must_be_positive() -> None:
    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        return True

    with pytest.raises(ValueError, match=r"stations\['fix'\] must be at least 1"):
        Dispatcher(RingBuffer[TaskSpec](8), [WorkerSpec("a", "x")], run_task, stations={"fix": 0})
