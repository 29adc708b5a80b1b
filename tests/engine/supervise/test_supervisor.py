"""The OTP supervisor: strategies, restart types, intensity window, ordering and shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.supervise.supervisor import (
    ChildShutdown,
    ChildSpec,
    RestartIntensityExceeded,
    Supervisor,
    SupervisorError,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Child:
    """A child the test drives: it runs until told to crash, exit or shut down."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name = name
        self.log = log
        self.starts: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._outcome: asyncio.Future[str] | None = None

    async def __call__(self, *args: Any) -> None:
        self.log.append(("start", self.name))
        self._outcome = asyncio.get_running_loop().create_future()
        self.starts.put_nowait(args)
        try:
            outcome = await self._outcome
        except asyncio.CancelledError:
            self.log.append(("stop", self.name))
            raise
        if outcome == "crash":
            raise RuntimeError(f"{self.name} crashed")
        if outcome == "shutdown":
            raise ChildShutdown()

    def end(self, outcome: str) -> None:
        assert self._outcome is not None
        self._outcome.set_result(outcome)

    async def started(self) -> tuple[Any, ...]:
        return await self.starts.get()


def make(names: str, log: list[tuple[str, str]], **spec: Any) -> dict[str, Child]:
    return {name: Child(name, log) for name in names}


def specs(children: dict[str, Child], **spec: Any) -> list[ChildSpec]:
    return [ChildSpec(name, child, **spec) for name, child in children.items()]


async def running(sup: Supervisor) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(sup.run())
    await sup.wait_running()
    return task


async def finish(sup: Supervisor, task: asyncio.Task[None]) -> None:
    await sup.stop()
    await task


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    log: list[tuple[str, str]] = []
    children = make("abc", log)
    sup = Supervisor("root", specs(children))
    task = await running(sup)
    assert log == [("start", "a"), ("start", "b"), ("start", "c")]
    await finish(sup, task)
    assert log[3:] == [("stop", "c"), ("stop", "b"), ("stop", "a")]
    assert [r.child_id for r in sup.reports if r.event == "stopped"] == ["c", "b", "a"]


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    log: list[tuple[str, str]] = []
    children = make("abc", log)
    sup = Supervisor("root", specs(children), strategy="one_for_one", intensity=5)
    task = await running(sup)
    await children["b"].started()
    del log[:]
    children["b"].end("crash")
    await children["b"].started()
    await sup.wait_for_report(lambda r: r.event == "started" and r.child_id == "b")
    assert log == [("start", "b")]
    await finish(sup, task)


async def test_one_for_all_restarts_every_child_in_order() -> None:
    log: list[tuple[str, str]] = []
    children = make("abc", log)
    sup = Supervisor("root", specs(children), strategy="one_for_all", intensity=5)
    task = await running(sup)
    del log[:]
    children["b"].end("crash")
    await children["c"].started()
    await children["c"].started()
    assert log == [("stop", "c"), ("stop", "a"), ("start", "a"), ("start", "b"), ("start", "c")]
    await finish(sup, task)


async def test_rest_for_one_restarts_the_crashed_child_and_those_after_it() -> None:
    log: list[tuple[str, str]] = []
    children = make("abcd", log)
    sup = Supervisor("root", specs(children), strategy="rest_for_one", intensity=5)
    task = await running(sup)
    del log[:]
    children["b"].end("crash")
    await children["d"].started()
    await children["d"].started()
    assert log == [
        ("stop", "d"),
        ("stop", "c"),
        ("start", "b"),
        ("start", "c"),
        ("start", "d"),
    ]
    assert children["a"].starts.qsize() == 1  # never restarted
    await finish(sup, task)


async def test_simple_one_for_one_starts_children_from_a_template() -> None:
    log: list[tuple[str, str]] = []
    worker = Child("w", log)
    sup = Supervisor(
        "pool", [ChildSpec("worker", worker)], strategy="simple_one_for_one", intensity=5
    )
    task = await running(sup)
    assert sup.which_children() == []
    first = await sup.start_child("job-1")
    assert await worker.started() == ("job-1",)
    second = await sup.start_child("job-2")
    assert await worker.started() == ("job-2",)
    assert [c.child_id for c in sup.which_children()] == [first, second]
    worker.end("crash")  # the latest instance (job-2) crashes and comes back with its args
    assert await worker.started() == ("job-2",)
    await sup.terminate_child(first)
    assert [c.child_id for c in sup.which_children()] == [second]
    await finish(sup, task)


async def test_simple_one_for_one_needs_one_template() -> None:
    with pytest.raises(SupervisorError):
        Supervisor("pool", [], strategy="simple_one_for_one")


@pytest.mark.parametrize(
    ("restart", "outcome", "restarted"),
    [
        ("permanent", "normal", True),
        ("permanent", "crash", True),
        ("transient", "normal", False),
        ("transient", "shutdown", False),
        ("transient", "crash", True),
        ("temporary", "crash", False),
        ("temporary", "normal", False),
    ],
)
async def test_restart_types(restart: Any, outcome: str, restarted: bool) -> None:
    log: list[tuple[str, str]] = []
    children = make("a", log)
    sup = Supervisor("root", specs(children, restart=restart), intensity=5)
    task = await running(sup)
    await children["a"].started()
    children["a"].end(outcome)
    await sup.wait_for_report(lambda r: r.event == "exited")
    if restarted:
        await children["a"].started()
    assert [entry for entry in log if entry[0] == "start"] == [("start", "a")] * (
        2 if restarted else 1
    )
    running_now = [c.running for c in sup.which_children()]
    assert running_now == ([True] if restarted else [] if restart == "temporary" else [False])
    await finish(sup, task)


@pytest.mark.parametrize(("second_crash_at", "gives_up"), [(3.0, True), (6.0, False)])
async def test_intensity_window(second_crash_at: float, gives_up: bool) -> None:
    """Default intensity 1 in 5 s: crashes at 0 s and 3 s stop it; at 0 s and 6 s do not."""
    clock = FakeClock()
    log: list[tuple[str, str]] = []
    children = make("ab", log)
    sup = Supervisor("root", specs(children), clock=clock)
    assert (sup.intensity, sup.period_s) == (1, 5.0)
    task = await running(sup)
    await children["b"].started()
    children["b"].end("crash")
    await children["b"].started()
    clock.now = second_crash_at
    children["b"].end("crash")
    if gives_up:
        with pytest.raises(RestartIntensityExceeded):
            await task
        assert ("stop", "a") in log
        assert all(not c.running for c in sup.which_children())
    else:
        await children["b"].started()
        assert not task.done()
        await finish(sup, task)


@settings(max_examples=25, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0.0, 1.0, 2.5, 4.0, 5.0, 7.0]), min_size=1, max_size=6),
    intensity=st.integers(min_value=1, max_value=3),
)
def test_gives_up_exactly_when_the_window_holds_too_many_restarts(
    gaps: list[float], intensity: int
) -> None:
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    expected_stop = next(
        (
            i
            for i, t in enumerate(times)
            if sum(1 for u in times[: i + 1] if t - u < 5.0) > intensity
        ),
        None,
    )

    async def scenario() -> int | None:
        clock = FakeClock()
        children = make("a", [])
        sup = Supervisor("root", specs(children), intensity=intensity, clock=clock)
        task = await running(sup)
        for i, t in enumerate(times):
            await children["a"].started()
            clock.now = t
            children["a"].end("crash")
            if i == expected_stop:
                with pytest.raises(RestartIntensityExceeded):
                    await task
                return i
        await children["a"].started()
        await finish(sup, task)
        return None

    assert asyncio.run(scenario()) == expected_stop


async def test_shutdown_timeout_kills_a_child_that_ignores_cancellation() -> None:
    cleaned = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            # Pretends to clean up forever; only a second cancellation ends it.
            await asyncio.get_running_loop().create_future()
        finally:
            cleaned.set()

    sup = Supervisor("root", [ChildSpec("s", stubborn, shutdown_s=0.05)])
    task = await running(sup)
    await finish(sup, task)
    assert cleaned.is_set()
    assert [r.event for r in sup.reports if r.child_id == "s"][-2:] == ["killed", "stopped"]


async def test_a_child_supervisor_that_gives_up_is_restarted_by_its_parent() -> None:
    clock = FakeClock()
    log: list[tuple[str, str]] = []
    leaves = make("xy", log)
    inner = Supervisor("inner", specs(leaves), intensity=0, clock=clock)
    outer = Supervisor("outer", [inner.as_child()], intensity=3, clock=clock)
    task = await running(outer)
    await inner.wait_running()
    await leaves["y"].started()
    leaves["y"].end("crash")  # intensity 0: inner gives up at once
    await outer.wait_for_report(lambda r: r.event == "exited" and r.exit == "crashed")
    await leaves["y"].started()  # the parent started the inner tree again
    assert log.count(("start", "x")) == 2 and ("stop", "x") in log
    await finish(outer, task)
    assert log[-2:] == [("stop", "y"), ("stop", "x")]


async def test_dynamic_children_in_a_static_supervisor() -> None:
    log: list[tuple[str, str]] = []
    children = make("ab", log)
    sup = Supervisor("root", specs({"a": children["a"]}))
    task = await running(sup)
    await sup.start_child(spec=ChildSpec("b", children["b"]))
    with pytest.raises(SupervisorError):
        await sup.start_child(spec=ChildSpec("b", children["b"]))
    await sup.terminate_child("b")
    assert [(c.child_id, c.running) for c in sup.which_children()] == [("a", True), ("b", False)]
    await sup.restart_child("b")
    await children["b"].started()
    await children["b"].started()
    await sup.terminate_child("b")
    sup.delete_child("b")
    assert [c.child_id for c in sup.which_children()] == ["a"]
    await finish(sup, task)


async def test_temporary_agent_runs_under_a_pool_return_their_results() -> None:
    async def agent_run(task_id: str, fail: bool) -> str:
        if fail:
            raise RuntimeError(f"agent for {task_id} crashed")
        return f"mutations for {task_id}"

    pool = Supervisor(
        "agents",
        [ChildSpec("agent", agent_run, restart="temporary")],
        strategy="simple_one_for_one",
    )
    task = await running(pool)
    ok = await pool.start_child("t1", False)
    crash = await pool.start_child("t2", True)
    ok_task, crash_task = pool.child_task(ok), pool.child_task(crash)
    assert ok_task is not None and crash_task is not None
    assert await ok_task == "mutations for t1"
    with pytest.raises(RuntimeError, match="t2"):
        await crash_task
    await pool.wait_for_report(lambda r: r.event == "exited" and r.child_id == crash)
    assert not task.done()  # temporary children never count toward the intensity
    await finish(pool, task)
