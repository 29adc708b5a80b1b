"""Work stealing: per-worker deques, owner LIFO and thief FIFO, and a virtual-time simulator.

Owns `WorkDeque` (the owner pushes and pops at the bottom, thieves steal the oldest item from
the top, which in a fork-join graph is the root of the largest unexplored sub-graph) and
`simulate_work_stealing`, a deterministic greedy simulation used to check Graham's bound
T_P <= T_1 / P + T_inf and to measure utilisation. Single-threaded: the owner of a deque is an
asyncio task or the simulator, never two threads.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkDeque(Generic[K]):
    """A worker's double-ended queue of ready work."""

    def __init__(self) -> None:
        self._items: deque[K] = deque()

    def push(self, item: K) -> None:
        """Owner side: newest work goes to the bottom."""
        self._items.append(item)

    def pop(self) -> K | None:
        """Owner side: the newest item (LIFO keeps the owner on the sub-graph it just opened)."""
        return self._items.pop() if self._items else None

    def steal(self, accept: Callable[[K], bool] | None = None) -> K | None:
        """Thief side: the oldest item (FIFO), or the oldest one `accept` allows."""
        if accept is None:
            return self._items.popleft() if self._items else None
        for item in self._items:
            if accept(item):
                self._items.remove(item)
                return item
        return None

    def remove(self, item: K) -> bool:
        try:
            self._items.remove(item)
        except ValueError:
            return False
        return True

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items


def pick_victim(thief: int, deques: Sequence[WorkDeque[K]], rng: random.Random) -> int | None:
    """A random worker other than `thief` whose deque holds work, or None."""
    victims = [i for i, d in enumerate(deques) if i != thief and len(d)]
    return rng.choice(victims) if victims else None


# --- simulation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StealingRun(Generic[K]):
    """The outcome of one simulated run on P workers."""

    makespan: float
    work: float  # T_1: total duration of all tasks
    span: float  # T_inf: the longest path
    workers: int
    busy: tuple[float, ...]  # busy time per worker
    steals: int
    placement: dict[K, tuple[int, float, float]] = field(default_factory=dict)

    @property
    def utilisation(self) -> float:
        if self.makespan == 0:
            return 1.0
        return sum(self.busy) / (self.workers * self.makespan)


def span_of(durations: Mapping[K, float], successors: Mapping[K, Sequence[K]]) -> float:
    """T_inf: the longest path through the DAG, summing durations."""
    indegree = {t: 0 for t in durations}
    for task in durations:
        for s in successors.get(task, ()):
            indegree[s] += 1
    finish: dict[K, float] = {}
    frontier = [t for t, n in indegree.items() if n == 0]
    earliest = {t: 0.0 for t in durations}
    while frontier:
        task = frontier.pop()
        finish[task] = earliest[task] + durations[task]
        for s in successors.get(task, ()):
            earliest[s] = max(earliest[s], finish[task])
            indegree[s] -= 1
            if indegree[s] == 0:
                frontier.append(s)
    if len(finish) < len(durations):
        raise ValueError("the task graph has a cycle")
    return max(finish.values(), default=0.0)


def simulate_work_stealing(
    durations: Mapping[K, float],
    successors: Mapping[K, Sequence[K]],
    workers: int,
    *,
    seed: int = 0,
    stealing: bool = True,
    initial_owner: Callable[[K], int] | None = None,
) -> StealingRun[K]:
    """Run a DAG on `workers` workers in virtual time.

    A task made ready by a finishing task goes to the finisher's deque (fork-join locality);
    roots go to `initial_owner(task)` (default worker 0). Idle workers pop their own deque
    LIFO, then, when `stealing`, steal FIFO from a random non-empty victim. Steals are free,
    so with stealing the schedule is greedy and Graham's bound holds.
    """
    rng = random.Random(seed)
    deques: list[WorkDeque[K]] = [WorkDeque() for _ in range(workers)]
    indegree = {t: 0 for t in durations}
    for task in durations:
        for s in successors.get(task, ()):
            indegree[s] += 1
    for task in durations:
        if indegree[task] == 0:
            deques[initial_owner(task) if initial_owner else 0].push(task)
    running: list[tuple[float, int, int, K]] = []  # (finish, worker, tie, task)
    idle = set(range(workers))
    busy = [0.0] * workers
    placement: dict[K, tuple[int, float, float]] = {}
    steals = 0
    now = 0.0
    tie = 0
    while True:
        for worker in sorted(idle):
            candidate = deques[worker].pop()
            if candidate is None and stealing:
                victim = pick_victim(worker, deques, rng)
                candidate = deques[victim].steal() if victim is not None else None
                steals += candidate is not None
            if candidate is None:
                continue
            started: K = candidate
            idle.discard(worker)
            finish = now + durations[started]
            placement[started] = (worker, now, finish)
            busy[worker] += durations[started]
            heapq.heappush(running, (finish, worker, tie, started))
            tie += 1
        if not running:
            break
        now, worker, _, finished = heapq.heappop(running)
        idle.add(worker)
        for s in successors.get(finished, ()):
            indegree[s] -= 1
            if indegree[s] == 0:
                deques[worker].push(s)
    if len(placement) < len(durations):
        raise ValueError("the task graph has a cycle: some tasks never became ready")
    return StealingRun(
        makespan=now,
        work=sum(durations.values()),
        span=span_of(durations, successors),
        workers=workers,
        busy=tuple(busy),
        steals=steals,
        placement=placement,
    )
