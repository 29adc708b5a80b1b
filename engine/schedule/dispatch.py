"""The live dispatcher: ring batches -> HEFT ranks -> reservation stations -> worker deques.

Owns, inside one asyncio event loop, the scheduling data: station entries (tasks waiting on
input tags), one `WorkDeque` per worker and the record of what ran where. Task state is not
kept here: the dispatcher reads and moves it on the `TaskBoard` (waiting, started, cancelled
with a reason, and done or failed when the runner left the task unsettled). Invariants: a task
runs at most once; it runs only after every producer its input tags named at issue has
finished successfully; a task whose producer failed or was cancelled is cancelled itself (with
a reason), never run; `run()` returns once the ring is closed and every task is final.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

import msgspec

from delegation_machine.engine.plan.graph import TaskGraph, TaskSpec
from delegation_machine.engine.protocol import TaskState
from delegation_machine.engine.ring import RingBroken, RingBuffer, RingClosed, RingStatistics
from delegation_machine.engine.schedule.board import TaskBoard, TaskObserver
from delegation_machine.engine.schedule.heft import rank_key, upward_rank
from delegation_machine.engine.schedule.stealing import WorkDeque
from delegation_machine.engine.schedule.tomasulo import OperandTracker

log = logging.getLogger(__name__)

RECENT_LIMIT = 64
# Scheduling data of finished tasks (their specs and ranks) remembered; older entries are
# dropped so a long editing session does not grow without bound. A forgotten id may be reused.
FINISHED_MEMORY = 10_000


class WorkerSpec(msgspec.Struct, frozen=True):
    """One agent slot; `kind` is its processor class, looked up in `TaskSpec.cost`.

    `serves` limits the task kinds the slot runs (None: every kind); a remote slot (one whose
    agents run in a worker process on another host, engine/scale) serves only the kinds the
    remote workers take."""

    worker_id: str
    kind: str
    serves: frozenset[str] | None = None


class WorkerStatus(msgspec.Struct, frozen=True):
    worker_id: str
    kind: str
    queue: tuple[str, ...]  # oldest first; the owner takes from the end
    running: str | None
    completed: int
    stolen: int


class StationEntry(msgspec.Struct, frozen=True):
    task_id: str
    kind: str
    waiting_on: tuple[str, ...]  # producer task ids not finished yet


class ScheduleRecord(msgspec.Struct, frozen=True):
    task_id: str
    worker_id: str
    start: float
    finish: float | None
    state: str
    stolen: bool = False


class DispatchStatus(msgspec.Struct, frozen=True):
    workers: tuple[WorkerStatus, ...]
    stations: dict[str, tuple[StationEntry, ...]]  # per task kind (functional unit)
    recent: tuple[ScheduleRecord, ...]
    done: int
    failed: int
    cancelled: int
    ring_closed: bool
    issue_queue: tuple[str, ...] = ()  # taken from the ring, stalled on a full station
    in_flight: dict[str, int] = {}  # per task kind: issued and not finished
    station_limits: dict[str, int] = {}
    ring: RingStatistics | None = None


class _Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.queue: WorkDeque[str] = WorkDeque()
        self.running: str | None = None
        self.completed = 0
        self.stolen = 0
        self.queued_cost = 0.0
        self.running_cost = 0.0


RunTask = Callable[[TaskSpec, WorkerSpec], Awaitable[bool]]
AgentFor = Callable[[TaskSpec, WorkerSpec], str | None]


class Dispatcher:
    """Consumes `TaskSpec`s from a ring and runs them on `workers` through `run_task`.

    Adds its consumer ("dispatch") to the ring at construction, so publish after building it.
    Any worker may run any task unless the task's `cost` for the worker's kind is `math.inf`.
    `stealing=False` keeps every task on the worker it was queued on (for comparison only).
    `stations` caps the tasks of a kind in flight (issued, not finished), like Tomasulo's
    reservation stations per functional unit: when the next task's kind has no free station,
    issue stalls in order and the ring consumer stops taking batches (back-pressure).
    Task state lives on `board` (a fresh one unless given): `agent_for(spec, worker)` names
    the agent recorded when a worker starts a task; a task `run_task` left unsettled becomes
    done or failed by its result. `on_state(task_id, state)` observes every change on the
    board; the reason of a cancellation is `reason_of(task_id)` by then.
    """

    def __init__(
        self,
        ring: RingBuffer[TaskSpec],
        workers: Sequence[WorkerSpec],
        run_task: RunTask,
        *,
        board: TaskBoard | None = None,
        agent_for: AgentFor | None = None,
        on_state: TaskObserver | None = None,
        tokens_per_unit: float = 1000.0,
        stealing: bool = True,
        stations: Mapping[str, int] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        failure_scope: Callable[[TaskSpec], str] | None = None,
    ) -> None:
        if not workers:
            raise ValueError("a dispatcher needs at least one worker")
        # A failed or cancelled producer cancels only the dependents in its own scope; others
        # read the tag's previous value (the swarm rolls a failed task's edits back).
        self._failure_scope = failure_scope
        ids = [w.worker_id for w in workers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"worker ids must be unique: {ids}")
        limits = dict(stations or {})
        for kind, limit in limits.items():
            if limit < 1:
                raise ValueError(f"stations[{kind!r}] must be at least 1, got {limit}")
        self._ring = ring
        self._consumer = ring.add_consumer("dispatch")
        self._workers = [_Worker(w) for w in workers]
        self._kinds = list(dict.fromkeys(w.kind for w in workers))
        self._run_task = run_task
        self.board = board if board is not None else TaskBoard(finished_memory=FINISHED_MEMORY)
        self._agent_for = agent_for
        if on_state is not None:
            self.board.observe(on_state)
        self._tokens_per_unit = tokens_per_unit
        self._stealing = stealing
        self._station_limits = limits
        self._in_flight: dict[str, int] = {}  # per kind: issued and not finished
        self._issue_queue: deque[TaskSpec] = deque()  # taken from the ring, not issued yet
        self._issued: set[str] = set()
        self._cancel_before_issue: set[str] = set()
        self._station_freed: asyncio.Future[None] | None = None
        self._rng = random.Random(seed)
        self._clock = clock
        self._tracker: OperandTracker[str] = OperandTracker()
        self._specs: dict[str, TaskSpec] = {}
        self._rank: dict[str, float] = {}
        self._publish_order: dict[str, int] = {}
        self._stations: dict[str, TaskSpec] = {}  # issued, waiting on producers
        self._recent: deque[ScheduleRecord] = deque(maxlen=RECENT_LIMIT)
        self._ring_drained = False
        self._wakers: list[asyncio.Future[None]] = []
        self._counts = {"done": 0, "failed": 0, "cancelled": 0}
        self._finished_order: deque[str] = deque()

    # -- public API ------------------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch until the ring is closed and every task is done, failed or cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._consume_ring(), name="dispatch:ring")
                for index, worker in enumerate(self._workers):
                    group.create_task(self._work(index), name=f"dispatch:{worker.spec.worker_id}")
        finally:
            self._consumer.release()

    def cancel(self, task_id: str) -> bool:
        """Cancel a task that has not started; its dependents are cancelled too."""
        if any(spec.task_id == task_id for spec in self._issue_queue):
            if task_id in self._cancel_before_issue:
                return False
            self._cancel_before_issue.add(task_id)
            self._settle(task_id, TaskState.CANCELLED, "cancelled on request")
            return True
        if self.board.state_of(task_id) != TaskState.WAITING:
            return False
        for worker in self._workers:
            if worker.queue.remove(task_id):
                worker.queued_cost -= self._cost(task_id, worker)
        self._stations.pop(task_id, None)
        self._cancel_with_dependents(task_id, "cancelled on request")
        self._wake_workers()
        return True

    def status(self) -> DispatchStatus:
        stations: dict[str, list[StationEntry]] = {}
        waiting = self._tracker.waiting()
        for task_id, spec in self._stations.items():
            entry = StationEntry(task_id, spec.kind, tuple(sorted(waiting.get(task_id, ()))))
            stations.setdefault(spec.kind, []).append(entry)
        return DispatchStatus(
            workers=tuple(
                WorkerStatus(
                    worker_id=w.spec.worker_id,
                    kind=w.spec.kind,
                    queue=tuple(w.queue),
                    running=w.running,
                    completed=w.completed,
                    stolen=w.stolen,
                )
                for w in self._workers
            ),
            stations={kind: tuple(entries) for kind, entries in stations.items()},
            recent=tuple(self._recent),
            done=self._counts["done"],
            failed=self._counts["failed"],
            cancelled=self._counts["cancelled"],
            ring_closed=self._ring.closed,
            issue_queue=tuple(spec.task_id for spec in self._issue_queue),
            in_flight={k: n for k, n in self._in_flight.items() if n},
            station_limits=dict(self._station_limits),
            ring=self._ring.statistics(),
        )

    def state_of(self, task_id: str) -> TaskState | None:
        return self.board.state_of(task_id)

    def reason_of(self, task_id: str) -> str:
        return self.board.reason_of(task_id)

    # -- issue -----------------------------------------------------------------------------

    async def _consume_ring(self) -> None:
        try:
            while True:
                batch = await self._consumer.next_batch()
                self._accept_batch([spec for _, spec in batch])
                while self._issue_queue:
                    # Stalled on a full station: keep the batch (and its ring slots) until a
                    # task of that kind finishes.
                    await self._wait_for_station()
                    self._issue_in_order()
        except RingClosed:
            pass
        except RingBroken as exc:
            log.warning("task ring broken: %s", exc)
        finally:
            self._ring_drained = True
            self._wake_workers()

    def _accept_batch(self, batch: list[TaskSpec]) -> None:
        fresh = self._drop_duplicates(batch)
        self._rank_batch(fresh)
        self._issue_queue.extend(fresh)
        self._issue_in_order()

    def _issue_in_order(self) -> None:
        """Issue queued tasks in publish (program) order until one finds its station full."""
        ready: list[str] = []
        while self._issue_queue:
            spec = self._issue_queue[0]
            limit = self._station_limits.get(spec.kind)
            if limit is not None and self._in_flight.get(spec.kind, 0) >= limit:
                break
            self._issue_queue.popleft()
            if self._issue(spec):
                ready.append(spec.task_id)
        self._enqueue_ready(ready)

    async def _wait_for_station(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self._station_freed = future
        await future

    def _drop_duplicates(self, batch: list[TaskSpec]) -> list[TaskSpec]:
        fresh: list[TaskSpec] = []
        for spec in batch:
            if spec.task_id in self._specs:
                log.warning("task %s published twice; the second copy is ignored", spec.task_id)
                continue
            self._specs[spec.task_id] = spec
            self._publish_order[spec.task_id] = len(self._publish_order)
            self.board.track(spec)
            fresh.append(spec)
        return fresh

    def _rank_batch(self, batch: list[TaskSpec]) -> None:
        graph = TaskGraph.from_tags(batch)
        comp = graph.computation_matrix(self._kinds)
        comm = graph.communication_matrix(self._tokens_per_unit)
        for task_id, rank in upward_rank(comp, comm).items():
            self._rank[task_id] = rank_key(rank)

    def _issue(self, spec: TaskSpec) -> bool:
        """Issue one task into a station; True when it is ready at once."""
        task_id = spec.task_id
        pending, poisoned = self._tracker.issue(task_id, spec.inputs, spec.outputs)
        if task_id in self._cancel_before_issue:
            # Cancelled while queued for issue: poison its tags so later readers see it.
            self._cancel_before_issue.discard(task_id)
            self._cancel_dependents(task_id, f"task {task_id} was cancelled")
            return False
        self._issued.add(task_id)
        self._in_flight[spec.kind] = self._in_flight.get(spec.kind, 0) + 1
        self.board.mark_waiting(task_id)
        poisoned = {t: c for t, c in poisoned.items() if self._same_scope(c, task_id)}
        if poisoned:
            tag, culprit = next(iter(poisoned.items()))
            self._cancel_with_dependents(
                task_id, f"input {tag!r} comes from task {culprit} which did not finish"
            )
            return False
        if not any(math.isfinite(self._cost(task_id, w)) for w in self._workers):
            self._cancel_with_dependents(task_id, f"no worker can run kind {spec.kind!r}")
            return False
        if pending:
            self._stations[task_id] = spec
            return False
        return True

    def _enqueue_ready(self, task_ids: list[str]) -> None:
        # Lowest priority pushed first: owners pop LIFO, so each worker starts its highest-ranked
        # task; equal ranks go in publish order (docs/decisions/010-scheduling-tie-breaking.md).
        def priority(task_id: str) -> tuple[float, int]:
            return (self._rank.get(task_id, 0.0), -self._publish_order.get(task_id, 0))

        for task_id in sorted(task_ids, key=priority):
            worker = self._choose_worker(task_id)
            worker.queue.push(task_id)
            worker.queued_cost += self._cost(task_id, worker)
        if task_ids:
            self._wake_workers()

    def _choose_worker(self, task_id: str) -> _Worker:
        # Earliest estimated finish: work already queued or running plus this task's cost.
        def finish(worker: _Worker) -> float:
            return worker.queued_cost + worker.running_cost + self._cost(task_id, worker)

        return min(self._workers, key=finish)

    def _cost(self, task_id: str, worker: _Worker) -> float:
        spec = self._specs[task_id]
        if worker.spec.serves is not None and spec.kind not in worker.spec.serves:
            return math.inf
        return spec.cost_on(worker.spec.kind)

    # -- execution -------------------------------------------------------------------------

    async def _work(self, index: int) -> None:
        worker = self._workers[index]
        while True:
            task_id = self._pop_own(worker)
            stolen = task_id is None
            if task_id is None and self._stealing:
                task_id = self._steal(index)
            if task_id is not None:
                await self._execute(task_id, worker, stolen=stolen)
                continue
            if self._all_finished():
                self._wake_workers()
                return
            await self._wait_for_work()

    def _pop_own(self, worker: _Worker) -> str | None:
        task_id = worker.queue.pop()
        if task_id is not None:
            worker.queued_cost -= self._cost(task_id, worker)
        return task_id

    def _steal(self, index: int) -> str | None:
        """The oldest task this worker can run from a random victim (trying each victim)."""
        thief = self._workers[index]
        victims = [w for i, w in enumerate(self._workers) if i != index and len(w.queue)]
        self._rng.shuffle(victims)
        for victim in victims:
            task_id = victim.queue.steal(lambda t: math.isfinite(self._cost(t, thief)))
            if task_id is not None:
                victim.queued_cost -= self._cost(task_id, victim)
                thief.stolen += 1
                return task_id
        return None

    async def _execute(self, task_id: str, worker: _Worker, *, stolen: bool) -> None:
        spec = self._specs[task_id]
        worker.running = task_id
        worker.running_cost = self._cost(task_id, worker)
        start = self._clock()
        agent = self._agent_for(spec, worker.spec) if self._agent_for is not None else None
        self.board.start(task_id, agent, worker.spec.worker_id)
        try:
            ok = await self._run_task(spec, worker.spec)
        except Exception:
            log.exception("task %s raised on worker %s", task_id, worker.spec.worker_id)
            ok = False
        finally:
            worker.running = None
            worker.running_cost = 0.0
        worker.completed += 1
        outcome = "done" if ok else "failed"
        self._recent.append(
            ScheduleRecord(task_id, worker.spec.worker_id, start, self._clock(), outcome, stolen)
        )
        self._counts[outcome] += 1
        if ok:
            self.board.finish(task_id, TaskState.DONE, "")
        else:
            self.board.finish(task_id, TaskState.FAILED, f"task {task_id} failed")
        self._task_final(task_id)
        if ok:
            self._enqueue_ready(self._release_waiters(self._tracker.broadcast(task_id)))
        else:
            self._cancel_dependents(task_id, f"task {task_id} failed")
        self._wake_workers()

    def _release_waiters(self, ready: list[str]) -> list[str]:
        for task_id in ready:
            self._stations.pop(task_id, None)
        return ready

    def _same_scope(self, culprit: str, task_id: str) -> bool:
        if self._failure_scope is None:
            return True
        culprit_spec, spec = self._specs.get(culprit), self._specs.get(task_id)
        if culprit_spec is None or spec is None:
            return False
        return self._failure_scope(culprit_spec) == self._failure_scope(spec)

    def _cancel_dependents(self, task_id: str, reason: str) -> None:
        released: list[str] = []
        for dependent in self._tracker.fail(task_id):
            if not self._same_scope(task_id, dependent):
                if self._tracker.drop_dependency(dependent, task_id):
                    released.append(dependent)
                continue
            self._stations.pop(dependent, None)
            self._cancel_with_dependents(dependent, f"{reason}; it produces an input of this task")
        if released:
            self._enqueue_ready(self._release_waiters(released))

    def _cancel_with_dependents(self, task_id: str, reason: str) -> None:
        self._settle(task_id, TaskState.CANCELLED, reason)
        self._cancel_dependents(task_id, f"task {task_id} was cancelled")

    def _settle(self, task_id: str, state: TaskState, reason: str) -> None:
        """A scheduling decision ends the task (cancelled before it ran)."""
        self._counts["cancelled"] += 1
        self.board.finish(task_id, state, reason)
        self._task_final(task_id)

    def _task_final(self, task_id: str) -> None:
        self._free_station(task_id)
        self._forget_oldest_finished(task_id)

    def _free_station(self, task_id: str) -> None:
        if task_id not in self._issued:
            return
        self._issued.discard(task_id)
        kind = self._specs[task_id].kind
        self._in_flight[kind] -= 1
        future, self._station_freed = self._station_freed, None
        if future is not None and not future.done():
            future.set_result(None)

    def _forget_oldest_finished(self, task_id: str) -> None:
        self._rank.pop(task_id, None)
        self._finished_order.append(task_id)
        while len(self._finished_order) > FINISHED_MEMORY:
            old = self._finished_order.popleft()
            state = self.board.state_of(old)
            if state is None or state.finished:
                self._specs.pop(old, None)
                self._publish_order.pop(old, None)

    def _all_finished(self) -> bool:
        return (
            self._ring_drained
            and not self._issue_queue
            and not self._stations
            and all(not len(w.queue) and w.running is None for w in self._workers)
        )

    async def _wait_for_work(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakers.append(future)
        await future

    def _wake_workers(self) -> None:
        wakers, self._wakers = self._wakers, []
        for future in wakers:
            if not future.done():
                future.set_result(None)
