"""Deterministic virtual-time simulation for comparing schedulers on generated task graphs.

Owns `VirtualClock` (an event queue; time moves only when the next event is taken),
`simulate_policy`, which runs a DAG on heterogeneous processors under a named policy
("heft" replays the static HEFT plan; "rank", "fifo" and "random" are dynamic list schedulers;
"stealing" uses per-processor deques), and `layered_graph`, a seeded generator of
random layered graphs. Same inputs and seed, same result: nothing reads the wall clock.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from delegation_machine.engine.schedule.heft import build_dag, heft, rank_key, upward_rank
from delegation_machine.engine.schedule.stealing import WorkDeque, pick_victim

K = TypeVar("K", bound=Hashable)

Policy = Literal["heft", "rank", "fifo", "random", "stealing"]
POLICIES: tuple[Policy, ...] = ("heft", "rank", "fifo", "random", "stealing")


class VirtualClock:
    """Simulated time: callbacks scheduled at instants, run in (time, insertion) order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = 0

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        if when < self.now:
            raise ValueError(f"cannot schedule at {when}, before now ({self.now})")
        heapq.heappush(self._events, (when, self._counter, callback))
        self._counter += 1

    def run_next(self) -> bool:
        """Advance to the next event and run it; False when none is left."""
        if not self._events:
            return False
        self.now, _, callback = heapq.heappop(self._events)
        callback()
        return True

    def run(self) -> float:
        while self.run_next():
            pass
        return self.now


@dataclass(frozen=True)
class SimulationResult(Generic[K]):
    policy: str
    makespan: float
    busy: tuple[float, ...]  # time each processor spent executing
    placement: dict[K, tuple[int, float, float]] = field(default_factory=dict)
    steals: int = 0

    @property
    def utilisation(self) -> float:
        if self.makespan == 0:
            return 1.0
        return sum(self.busy) / (len(self.busy) * self.makespan)


class _Run(Generic[K]):
    """One simulation: processors pull work when idle and wait for their task's data."""

    def __init__(
        self,
        comp: Mapping[K, Sequence[float]],
        comm: Mapping[tuple[K, K], float],
        policy: Policy,
        seed: int,
    ) -> None:
        self.comp = comp
        self.dag = build_dag(comp, comm)
        self.policy = policy
        self.rng = random.Random(seed)
        self.clock = VirtualClock()
        self.processors = len(next(iter(comp.values()))) if comp else 0
        self.missing = {t: len(self.dag.predecessors[t]) for t in comp}
        self.placement: dict[K, tuple[int, float, float]] = {}
        self.idle = list(range(self.processors))
        self.busy = [0.0] * self.processors
        self.ready: list[tuple[float, int, K]] = []  # heap; key depends on the policy
        self.ready_random: list[K] = []
        self.deques: list[WorkDeque[K]] = [WorkDeque() for _ in range(self.processors)]
        self.steals = 0
        self.plan: list[list[K]] = []
        self.rank: dict[K, float] = {}
        if policy == "heft":
            schedule = heft(comp, comm)
            self.plan = [
                [task for task, _ in reversed(schedule.on_processor(p))]
                for p in range(self.processors)
            ]
        if policy == "rank":
            self.rank = {t: rank_key(r) for t, r in upward_rank(comp, comm).items()}

    def arrival(self, task: K, processor: int) -> float:
        """When all of `task`'s inputs are available on `processor`."""
        times = [
            finish + (0.0 if p == processor else cost)
            for pred, cost in self.dag.predecessors[task]
            for p, _, finish in [self.placement[pred]]
        ]
        return max(times, default=0.0)

    def make_ready(self, task: K, finished_on: int | None) -> None:
        if self.policy == "random":
            self.ready_random.append(task)
        elif self.policy == "stealing":
            self.deques[finished_on if finished_on is not None else 0].push(task)
        elif self.policy == "rank":
            heapq.heappush(self.ready, (-self.rank[task], self.dag.index[task], task))
        elif self.policy == "fifo":
            heapq.heappush(self.ready, (self.clock.now, self.dag.index[task], task))
        # "heft" follows its plan and ignores the ready set.

    def take(self, processor: int) -> K | None:
        if self.policy == "heft":
            plan = self.plan[processor]
            if plan and self.missing[plan[-1]] == 0:
                return plan.pop()
            return None
        if self.policy == "random":
            if not self.ready_random:
                return None
            return self.ready_random.pop(self.rng.randrange(len(self.ready_random)))
        if self.policy == "stealing":
            task = self.deques[processor].pop()
            if task is None:
                victim = pick_victim(processor, self.deques, self.rng)
                task = self.deques[victim].steal() if victim is not None else None
                self.steals += task is not None
            return task
        return heapq.heappop(self.ready)[2] if self.ready else None

    def dispatch(self) -> None:
        # Processors in index order (random order for the random policy) take work.
        order = sorted(self.idle)
        if self.policy == "random":
            self.rng.shuffle(order)
        for processor in order:
            task = self.take(processor)
            if task is None:
                continue
            self.idle.remove(processor)
            self.missing[task] = -1  # taken
            start = max(self.clock.now, self.arrival(task, processor))
            finish = start + self.comp[task][processor]
            self.placement[task] = (processor, start, finish)
            self.busy[processor] += finish - start
            self.clock.call_at(finish, functools.partial(self.complete, task, processor))

    def complete(self, task: K, processor: int) -> None:
        self.idle.append(processor)
        for successor, _ in self.dag.successors[task]:
            self.missing[successor] -= 1
            if self.missing[successor] == 0:
                self.make_ready(successor, processor)
        self.dispatch()

    def run(self) -> SimulationResult[K]:
        for task in self.dag.order:
            if self.missing[task] == 0:
                self.make_ready(task, None)
        self.dispatch()
        makespan = self.clock.run()
        if len(self.placement) < len(self.comp):
            raise RuntimeError(f"policy {self.policy!r} left tasks unscheduled")
        return SimulationResult(
            self.policy, makespan, tuple(self.busy), self.placement, self.steals
        )


def simulate_policy(
    comp: Mapping[K, Sequence[float]],
    comm: Mapping[tuple[K, K], float],
    policy: Policy,
    *,
    seed: int = 0,
) -> SimulationResult[K]:
    """Run the DAG (`comp`/`comm` as for `heft`) under `policy` in virtual time.

    A processor that takes a task waits for its inputs: a predecessor's result arrives
    `comm[(pred, task)]` after it finished, or at once on the same processor.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")
    return _Run(comp, comm, policy, seed).run()


@dataclass(frozen=True)
class GeneratedGraph:
    comp: dict[int, list[float]]
    comm: dict[tuple[int, int], float]
    layers: list[list[int]]


def layered_graph(
    rng: random.Random,
    *,
    tasks: int = 100,
    layers: int = 10,
    processor_speeds: Sequence[float] = (1.0, 1.5, 2.5, 4.0),
    heterogeneity: float = 0.5,
    mean_cost: float = 20.0,
    edge_probability: float = 0.2,
    communication_to_computation: float = 0.5,
) -> GeneratedGraph:
    """A random layered DAG (edges only from earlier to later layers).

    Each task has a base cost; its cost on processor p is base * speed[p] * a factor in
    [1 - heterogeneity, 1 + heterogeneity] (agent kinds differ per task). Edge costs are
    hand-offs averaging `communication_to_computation` times the mean task cost.
    """
    sizes = _layer_sizes(rng, tasks, layers)
    layer_of: list[list[int]] = []
    next_id = 0
    for size in sizes:
        layer_of.append(list(range(next_id, next_id + size)))
        next_id += size
    comp: dict[int, list[float]] = {}
    for task in range(tasks):
        base = rng.uniform(0.5, 1.5) * mean_cost
        comp[task] = [
            base * speed * rng.uniform(1 - heterogeneity, 1 + heterogeneity)
            for speed in processor_speeds
        ]
    comm: dict[tuple[int, int], float] = {}
    mean_handoff = communication_to_computation * mean_cost
    for depth in range(1, len(layer_of)):
        earlier = [t for layer in layer_of[:depth] for t in layer]
        for task in layer_of[depth]:
            parents = [t for t in layer_of[depth - 1] if rng.random() < edge_probability]
            parents.append(rng.choice(layer_of[depth - 1]))  # every task has a parent
            if rng.random() < edge_probability:
                parents.append(rng.choice(earlier))
            for parent in set(parents):
                comm[(parent, task)] = rng.uniform(0, 2 * mean_handoff)
    return GeneratedGraph(comp, comm, layer_of)


def _layer_sizes(rng: random.Random, tasks: int, layers: int) -> list[int]:
    layers = max(1, min(layers, tasks))
    cuts = sorted(rng.sample(range(1, tasks), layers - 1)) if layers > 1 else []
    bounds = [0, *cuts, tasks]
    return [b - a for a, b in itertools.pairwise(bounds)]
