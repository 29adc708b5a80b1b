"""An Erlang/OTP-style supervisor tree for asyncio tasks (agents, check workers, supervisors).

Owns the children it starts (each an asyncio task running a `ChildSpec.start` coroutine), the
restart strategy (one_for_one, one_for_all, rest_for_one, simple_one_for_one), restart types
(permanent, transient, temporary) and the restart intensity: more than `intensity` restarts
within `period_s` (clock injectable) stops every child in reverse start order and makes
`run()` raise `RestartIntensityExceeded`, which the parent supervisor sees as a crash.
Invariants: children start in order and stop in reverse order; no child outlives `run()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]
RestartType = Literal["permanent", "transient", "temporary"]
ExitKind = Literal["normal", "shutdown", "crashed"]

log = logging.getLogger(__name__)

# After the shutdown timeout a child is cancelled again ("killed"); if it still ignores
# cancellation it is abandoned after this grace, and the report says so.
KILL_GRACE_S = 1.0


class ChildShutdown(Exception):
    """Raised by a child to exit with reason `shutdown`: a transient child is not restarted."""


class RestartIntensityExceeded(RuntimeError):
    """More than `intensity` restarts happened within `period_s`; the supervisor gave up."""


class SupervisorError(RuntimeError):
    """A call that does not fit the supervisor's state or strategy (unknown child id, ...)."""


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child. `start` is called anew on every (re)start.

    `shutdown_s`: how long a stopping child may clean up after cancellation before it is
    killed; 0 is OTP's brutal_kill, None is infinity (use for child supervisors).
    """

    child_id: str
    start: Callable[..., Awaitable[Any]]
    restart: RestartType = "permanent"
    shutdown_s: float | None = 5.0
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SupervisorReport:
    """One thing the supervisor did, in order; `clock` is the injectable clock's reading."""

    event: Literal["started", "exited", "restarting", "stopped", "killed", "gave_up"]
    child_id: str
    clock: float
    exit: ExitKind | None = None
    error: str = ""


@dataclass
class _Child:
    spec: ChildSpec
    task: asyncio.Task[Any] | None = None
    generation: int = 0
    running: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class ChildInfo:
    child_id: str
    running: bool
    restart: RestartType
    generation: int


class Supervisor:
    """Starts its children, watches them and restarts them by its strategy.

    Use `await supervisor.run()` (or `supervisor.as_child()` under a parent); `await stop()`
    ends it normally. Dynamic children: `start_child`, `terminate_child`, `restart_child`,
    `delete_child`; for simple_one_for_one, `start_child(*args)` instantiates the template.
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        intensity: int = 1,
        period_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_report: Callable[[SupervisorReport], None] | None = None,
    ) -> None:
        if strategy == "simple_one_for_one" and len(children) != 1:
            raise SupervisorError("simple_one_for_one needs exactly one child spec (the template)")
        ids = [spec.child_id for spec in children]
        if len(set(ids)) != len(ids):
            raise SupervisorError(f"duplicate child ids in {ids}")
        self.name = name
        self.strategy = strategy
        self.intensity = intensity
        self.period_s = period_s
        self.clock = clock
        self._specs = list(children)
        self._children: list[_Child] = []
        self._restarts: deque[float] = deque()
        self._exits: asyncio.Queue[tuple[_Child, int, ExitKind, str]] = asyncio.Queue()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._alive = asyncio.Event()
        self._serial = 0
        self._listeners: list[Callable[[SupervisorReport], None]] = []
        if on_report is not None:
            self._listeners.append(on_report)
        self.reports: list[SupervisorReport] = []
        self._waiters: list[
            tuple[Callable[[SupervisorReport], bool], asyncio.Future[SupervisorReport]]
        ] = []

    # --- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Start children in order, then supervise until `stop()` (returns) or giving up."""
        self._reset_for_run()
        try:
            if self.strategy != "simple_one_for_one":
                for spec in self._specs:
                    child = _Child(spec)
                    self._children.append(child)
                    await self._start(child)
            self._alive.set()
            await self._supervise()
        finally:
            self._alive.clear()
            self._stopping = True
            await self._stop_all()

    def as_child(
        self, *, child_id: str | None = None, restart: RestartType = "permanent"
    ) -> ChildSpec:
        """This supervisor as a child of another (shutdown infinity, as OTP advises)."""
        return ChildSpec(child_id or self.name, self.run, restart=restart, shutdown_s=None)

    async def stop(self) -> None:
        """Stop every child (reverse start order); `run()` then returns normally."""
        self._stop_requested.set()

    async def wait_running(self) -> None:
        """Wait until every initial child has started."""
        await self._alive.wait()

    async def wait_for_report(
        self, predicate: Callable[[SupervisorReport], bool]
    ) -> SupervisorReport:
        """The first report (past or future) that satisfies `predicate`."""
        for report in self.reports:
            if predicate(report):
                return report
        waiter: asyncio.Future[SupervisorReport] = asyncio.get_running_loop().create_future()
        entry = (predicate, waiter)
        self._waiters.append(entry)
        try:
            return await waiter
        finally:
            self._waiters.remove(entry)

    def subscribe(self, listener: Callable[[SupervisorReport], None]) -> None:
        self._listeners.append(listener)

    def _reset_for_run(self) -> None:
        self._children = []
        self._restarts.clear()
        self._exits = asyncio.Queue()
        self._stopping = False
        self._stop_requested = asyncio.Event()

    async def _supervise(self) -> None:
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            while True:
                exit_seen = asyncio.ensure_future(self._exits.get())
                done, _ = await asyncio.wait({stop, exit_seen}, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    exit_seen.cancel()
                    return
                child, generation, kind, error = exit_seen.result()
                if child.generation != generation or child not in self._children:
                    continue  # an exit we caused (terminate/restart) or of a deleted child
                await self._on_exit(child, kind, error)
        finally:
            stop.cancel()

    async def _on_exit(self, child: _Child, kind: ExitKind, error: str) -> None:
        self._report("exited", child.spec.child_id, exit=kind, error=error)
        child.task = None
        if not _should_restart(child.spec.restart, kind):
            if self.strategy == "simple_one_for_one" or child.spec.restart == "temporary":
                self._children.remove(child)
            return
        if self._intensity_exceeded():
            self._report("gave_up", child.spec.child_id, error=error)
            raise RestartIntensityExceeded(
                f"supervisor {self.name}: more than {self.intensity} restart(s) in "
                f"{self.period_s} s; last crash of {child.spec.child_id}: {error}"
            )
        await self._restart_by_strategy(child)

    def _intensity_exceeded(self) -> bool:
        now = self.clock()
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] >= self.period_s:
            self._restarts.popleft()
        return len(self._restarts) > self.intensity

    async def _restart_by_strategy(self, failed: _Child) -> None:
        index = self._children.index(failed)
        if self.strategy in ("one_for_one", "simple_one_for_one"):
            group = [failed]
        elif self.strategy == "one_for_all":
            group = list(self._children)
        else:  # rest_for_one
            group = self._children[index:]
        for child in reversed(group):
            if child is not failed:
                await self._terminate(child)
        # Temporary children are not restarted by a sibling's crash either (OTP).
        for child in [c for c in group if c is not failed and c.spec.restart == "temporary"]:
            self._children.remove(child)
        for child in group:
            if child in self._children:
                self._report("restarting", child.spec.child_id)
                await self._start(child)

    # --- children -------------------------------------------------------------------------

    async def _start(self, child: _Child) -> None:
        child.generation += 1
        child.running = asyncio.Event()
        generation = child.generation
        task = asyncio.get_running_loop().create_task(
            self._child_body(child, generation), name=f"{self.name}/{child.spec.child_id}"
        )
        child.task = task
        task.add_done_callback(lambda t: self._on_done(child, generation, t))
        await child.running.wait()  # the next child starts only once this one runs
        self._report("started", child.spec.child_id)

    async def _child_body(self, child: _Child, generation: int) -> Any:
        child.running.set()
        return await child.spec.start(*child.spec.args)

    def _on_done(self, child: _Child, generation: int, task: asyncio.Task[Any]) -> None:
        child.running.set()  # a child that died before running must not block _start
        if self._stopping or task.cancelled():
            return
        error = task.exception()
        if error is None:
            kind: ExitKind = "normal"
        elif isinstance(error, ChildShutdown):
            kind = "shutdown"
        else:
            kind = "crashed"
            log.warning("%s: child %s crashed: %r", self.name, child.spec.child_id, error)
        self._exits.put_nowait((child, generation, kind, "" if error is None else repr(error)))

    async def _terminate(self, child: _Child) -> None:
        task, child.task = child.task, None
        child.generation += 1  # its exit, if queued, is now stale
        if task is None or task.done():
            return
        task.cancel()
        timeout = 0.0 if child.spec.shutdown_s == 0 else child.spec.shutdown_s
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            self._report("killed", child.spec.child_id)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=KILL_GRACE_S)
            if not done:
                log.error("%s: child %s ignored cancellation", self.name, child.spec.child_id)
        self._report("stopped", child.spec.child_id)

    async def _stop_all(self) -> None:
        for child in reversed(self._children):
            await self._terminate(child)

    # --- dynamic children (supervisor:start_child/terminate_child/...) --------------------

    async def start_child(self, *args: Any, spec: ChildSpec | None = None) -> str:
        """Add and start a child; returns its id. simple_one_for_one: pass template args."""
        if self.strategy == "simple_one_for_one":
            template = self._specs[0]
            self._serial += 1
            spec = ChildSpec(
                f"{template.child_id}-{self._serial}",
                template.start,
                template.restart,
                template.shutdown_s,
                args,
            )
        elif spec is None:
            raise SupervisorError("start_child needs a ChildSpec for this strategy")
        if any(c.spec.child_id == spec.child_id for c in self._children):
            raise SupervisorError(f"child {spec.child_id!r} already exists")
        child = _Child(spec)
        self._children.append(child)
        await self._start(child)
        return spec.child_id

    async def terminate_child(self, child_id: str) -> None:
        child = self._find(child_id)
        await self._terminate(child)
        if self.strategy == "simple_one_for_one" or child.spec.restart == "temporary":
            self._children.remove(child)

    async def restart_child(self, child_id: str) -> None:
        child = self._find(child_id)
        if child.task is not None:
            raise SupervisorError(f"child {child_id!r} is running")
        await self._start(child)

    def delete_child(self, child_id: str) -> None:
        child = self._find(child_id)
        if child.task is not None:
            raise SupervisorError(f"child {child_id!r} is running; terminate it first")
        self._children.remove(child)

    def child_task(self, child_id: str) -> asyncio.Task[Any] | None:
        """The running task of a child, to await its result (e.g. a temporary agent run)."""
        return self._find(child_id).task

    def which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(c.spec.child_id, c.task is not None, c.spec.restart, c.generation)
            for c in self._children
        ]

    def _find(self, child_id: str) -> _Child:
        for child in self._children:
            if child.spec.child_id == child_id:
                return child
        raise SupervisorError(f"no child {child_id!r} in supervisor {self.name}")

    def _report(self, event: Any, child_id: str, **details: Any) -> None:
        report = SupervisorReport(event, child_id, self.clock(), **details)
        self.reports.append(report)
        for listener in self._listeners:
            listener(report)
        for predicate, waiter in list(self._waiters):
            if not waiter.done() and predicate(report):
                waiter.set_result(report)


def _should_restart(restart: RestartType, kind: ExitKind) -> bool:
    if restart == "permanent":
        return True
    if restart == "transient":
        return kind == "crashed"
    return False


__all__ = [
    "ChildInfo",
    "ChildShutdown",
    "ChildSpec",
    "RestartIntensityExceeded",
    "Strategy",
    "Supervisor",
    "SupervisorError",
    "SupervisorReport",
]
