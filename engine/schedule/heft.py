"""HEFT and CPOP list scheduling (Topcuoglu, Hariri and Wu, IEEE TPDS 2002).

Owns the rank functions and the two static schedulers over a cost model: `comp[task][p]` is the
time of `task` on processor `p`; `comm[(a, b)]` is the hand-off time of edge a -> b, paid only
when a and b run on different processors (every dependency must appear in `comm`, 0 allowed);
`math.inf` marks a processor that cannot run a task (ranks average the finite costs).
Ties are broken deterministically by the order of `comp`'s keys, then by processor index
(docs/decisions/010-scheduling-tie-breaking.md).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from delegation_machine.engine.plan.graph import CycleError

K = TypeVar("K", bound=Hashable)

# Two priorities closer than this are equal (CPOP's critical-path test on float ranks).
RANK_TOLERANCE = 1e-9
# Ranks are compared after rounding to this many decimals, so that float noise (79.999...
# against 80.0) does not decide a tie that the exact arithmetic would leave to the index.
RANK_DECIMALS = 9


def rank_key(rank: float) -> float:
    """The value ranks are compared by: rounded so that float noise cannot break a tie."""
    return round(rank, RANK_DECIMALS)


@dataclass(frozen=True)
class ScheduledTask:
    processor: int
    start: float
    finish: float


@dataclass(frozen=True)
class Schedule(Generic[K]):
    """A static schedule: where and when each task runs, in the order it was placed."""

    tasks: dict[K, ScheduledTask]
    order: tuple[K, ...]
    processors: int

    @property
    def makespan(self) -> float:
        return max((t.finish for t in self.tasks.values()), default=0.0)

    def on_processor(self, processor: int) -> list[tuple[K, ScheduledTask]]:
        placed = [(k, t) for k, t in self.tasks.items() if t.processor == processor]
        return sorted(placed, key=lambda item: item[1].start)


@dataclass
class TaskDag(Generic[K]):
    """The DAG implied by `comp` and `comm`: adjacency with edge costs, a topological order."""

    index: dict[K, int]
    successors: dict[K, list[tuple[K, float]]] = field(default_factory=dict)
    predecessors: dict[K, list[tuple[K, float]]] = field(default_factory=dict)
    order: list[K] = field(default_factory=list)  # topological, ties by index


def build_dag(comp: Mapping[K, Sequence[float]], comm: Mapping[tuple[K, K], float]) -> TaskDag[K]:
    """Check the edges name known tasks and order the DAG (ties by `comp` order)."""
    index = {task: i for i, task in enumerate(comp)}
    dag: TaskDag[K] = TaskDag(index)
    for task in comp:
        dag.successors[task] = []
        dag.predecessors[task] = []
    for (before, after), cost in comm.items():
        for task in (before, after):
            if task not in index:
                raise ValueError(f"edge {before!r} -> {after!r} names unknown task {task!r}")
        dag.successors[before].append((after, cost))
        dag.predecessors[after].append((before, cost))
    dag.order = _topological_order(dag)
    return dag


def _topological_order(dag: TaskDag[K]) -> list[K]:
    missing = {task: len(preds) for task, preds in dag.predecessors.items()}
    ready = [(dag.index[t], t) for t, n in missing.items() if n == 0]
    heapq.heapify(ready)
    order: list[K] = []
    while ready:
        _, task = heapq.heappop(ready)
        order.append(task)
        for successor, _ in dag.successors[task]:
            missing[successor] -= 1
            if missing[successor] == 0:
                heapq.heappush(ready, (dag.index[successor], successor))
    if len(order) < len(missing):
        raise CycleError(_find_cycle(dag, set(order)))
    return order


def _find_cycle(dag: TaskDag[K], acyclic: set[K]) -> list[str]:
    # Walk predecessors inside the unplaced remainder until a task repeats.
    remainder = [t for t in dag.index if t not in acyclic]
    path: list[K] = [remainder[0]]
    seen = {remainder[0]: 0}
    while True:
        nxt = next(p for p, _ in dag.predecessors[path[-1]] if p not in acyclic)
        if nxt in seen:
            cycle = path[seen[nxt] :]
            return [str(t) for t in reversed(cycle)]
        seen[nxt] = len(path)
        path.append(nxt)


def _mean(costs: Sequence[float]) -> float:
    """Mean over the processors that can run the task (`math.inf` marks those that cannot)."""
    finite = [c for c in costs if c != math.inf]
    return sum(finite) / len(finite) if finite else math.inf


def upward_rank(
    comp: Mapping[K, Sequence[float]], comm: Mapping[tuple[K, K], float]
) -> dict[K, float]:
    """rank_u(i) = mean comp(i) + max over successors j of (comm(i, j) + rank_u(j))."""
    dag = build_dag(comp, comm)
    return _upward_rank(dag, comp)


def _upward_rank(dag: TaskDag[K], comp: Mapping[K, Sequence[float]]) -> dict[K, float]:
    rank: dict[K, float] = {}
    for task in reversed(dag.order):
        tail = max((cost + rank[s] for s, cost in dag.successors[task]), default=0.0)
        rank[task] = _mean(comp[task]) + tail
    return rank


def downward_rank(
    comp: Mapping[K, Sequence[float]], comm: Mapping[tuple[K, K], float]
) -> dict[K, float]:
    """rank_d(i) = max over predecessors j of (rank_d(j) + mean comp(j) + comm(j, i))."""
    dag = build_dag(comp, comm)
    return _downward_rank(dag, comp)


def _downward_rank(dag: TaskDag[K], comp: Mapping[K, Sequence[float]]) -> dict[K, float]:
    rank: dict[K, float] = {}
    for task in dag.order:
        rank[task] = max(
            (rank[p] + _mean(comp[p]) + cost for p, cost in dag.predecessors[task]), default=0.0
        )
    return rank


class _Timeline:
    """Each processor's idle gaps (sorted, disjoint) and the end of its last busy interval.

    Keeping only the gaps makes insertion-based placement a bisect plus a short scan: a
    processor packed with thousands of tasks usually has few gaps after a task's ready time.
    """

    def __init__(self, processors: int) -> None:
        self.gap_starts: list[list[float]] = [[] for _ in range(processors)]
        self.gap_ends: list[list[float]] = [[] for _ in range(processors)]
        self.tail = [0.0] * processors

    def earliest_start(
        self, processor: int, ready: float, duration: float, insertion: bool
    ) -> float:
        if insertion:
            starts, ends = self.gap_starts[processor], self.gap_ends[processor]
            for j in range(bisect.bisect_right(ends, ready), len(ends)):
                start = max(ready, starts[j])
                if start + duration <= ends[j]:
                    return start
        return max(ready, self.tail[processor])

    def place(self, processor: int, start: float, finish: float) -> None:
        starts, ends = self.gap_starts[processor], self.gap_ends[processor]
        tail = self.tail[processor]
        if start >= tail:
            if start > tail:
                starts.append(tail)
                ends.append(start)
            self.tail[processor] = finish
            return
        j = bisect.bisect_right(starts, start) - 1
        gap_start, gap_end = starts[j], ends[j]
        del starts[j], ends[j]
        # Re-insert what is left of the gap on either side of the new task.
        if finish < gap_end:
            starts.insert(j, finish)
            ends.insert(j, gap_end)
        if gap_start < start:
            starts.insert(j, gap_start)
            ends.insert(j, start)


def _ready_time(dag: TaskDag[K], placed: dict[K, ScheduledTask], task: K, processor: int) -> float:
    return max(
        (
            placed[p].finish + (0.0 if placed[p].processor == processor else cost)
            for p, cost in dag.predecessors[task]
        ),
        default=0.0,
    )


def _place_earliest_finish(
    dag: TaskDag[K],
    comp: Mapping[K, Sequence[float]],
    timeline: _Timeline,
    placed: dict[K, ScheduledTask],
    task: K,
    processors: Sequence[int],
    insertion: bool,
) -> ScheduledTask:
    best: ScheduledTask | None = None
    for processor in processors:
        duration = comp[task][processor]
        ready = _ready_time(dag, placed, task, processor)
        start = timeline.earliest_start(processor, ready, duration, insertion)
        # Strict `<`: on equal finish times the lower processor index wins.
        if best is None or start + duration < best.finish:
            best = ScheduledTask(processor, start, start + duration)
    assert best is not None
    timeline.place(best.processor, best.start, best.finish)
    placed[task] = best
    return best


def _processor_count(comp: Mapping[K, Sequence[float]]) -> int:
    counts = {len(costs) for costs in comp.values()}
    if len(counts) > 1:
        raise ValueError(f"every task needs one cost per processor; got lengths {sorted(counts)}")
    count = counts.pop() if counts else 0
    if comp and count == 0:
        raise ValueError("no processors: each task's cost sequence is empty")
    return count


def heft(
    comp: Mapping[K, Sequence[float]],
    comm: Mapping[tuple[K, K], float],
    *,
    insertion: bool = True,
) -> Schedule[K]:
    """Heterogeneous Earliest Finish Time: tasks by decreasing upward rank, each on the
    processor giving it the earliest finish (insertion into idle gaps when `insertion`)."""
    processors = _processor_count(comp)
    dag = build_dag(comp, comm)
    rank = _upward_rank(dag, comp)
    # Decreasing rank, ties by comp order; a predecessor always outranks its successor when
    # costs are positive, and the topological position settles zero-cost ties.
    position = {task: i for i, task in enumerate(dag.order)}
    order = sorted(comp, key=lambda t: (-rank_key(rank[t]), position[t]))
    placed: dict[K, ScheduledTask] = {}
    timeline = _Timeline(processors)
    for task in order:
        _place_earliest_finish(dag, comp, timeline, placed, task, range(processors), insertion)
    return Schedule(placed, tuple(order), processors)


def critical_path(comp: Mapping[K, Sequence[float]], comm: Mapping[tuple[K, K], float]) -> list[K]:
    """CPOP's critical path: from the highest-priority entry, follow successors whose
    priority (rank_u + rank_d) equals the entry's."""
    dag = build_dag(comp, comm)
    priority = _priorities(dag, comp)
    return _critical_path(dag, priority)


def _priorities(dag: TaskDag[K], comp: Mapping[K, Sequence[float]]) -> dict[K, float]:
    up, down = _upward_rank(dag, comp), _downward_rank(dag, comp)
    return {t: up[t] + down[t] for t in dag.order}


def _critical_path(dag: TaskDag[K], priority: dict[K, float]) -> list[K]:
    if not dag.order:
        return []
    entries = [t for t in dag.order if not dag.predecessors[t]]
    current = max(entries, key=lambda t: (rank_key(priority[t]), -dag.index[t]))
    length = priority[current]
    path = [current]
    while dag.successors[current]:
        on_path = [
            s
            for s, _ in dag.successors[current]
            if abs(priority[s] - length) <= RANK_TOLERANCE * max(1.0, length)
        ]
        if not on_path:
            break
        current = min(on_path, key=lambda t: dag.index[t])
        path.append(current)
    return path


def cpop(comp: Mapping[K, Sequence[float]], comm: Mapping[tuple[K, K], float]) -> Schedule[K]:
    """Critical-Path-on-a-Processor: critical-path tasks all go to the one processor that
    runs the path fastest; the others to their earliest-finish processor (insertion-based)."""
    processors = _processor_count(comp)
    dag = build_dag(comp, comm)
    priority = _priorities(dag, comp)
    path = _critical_path(dag, priority)
    on_path = set(path)
    path_processor = (
        min(range(processors), key=lambda p: (sum(comp[t][p] for t in path), p))
        if processors
        else 0
    )
    missing = {t: len(dag.predecessors[t]) for t in dag.order}
    ready = [(-rank_key(priority[t]), dag.index[t], t) for t in dag.order if missing[t] == 0]
    heapq.heapify(ready)
    placed: dict[K, ScheduledTask] = {}
    order: list[K] = []
    timeline = _Timeline(processors)
    while ready:
        _, _, task = heapq.heappop(ready)
        # A critical-path task the path's processor cannot run is placed like any other.
        pinned = task in on_path and comp[task][path_processor] != math.inf
        candidates = [path_processor] if pinned else range(processors)
        _place_earliest_finish(dag, comp, timeline, placed, task, candidates, True)
        order.append(task)
        for successor, _ in dag.successors[task]:
            missing[successor] -= 1
            if missing[successor] == 0:
                heapq.heappush(
                    ready, (-rank_key(priority[successor]), dag.index[successor], successor)
                )
    return Schedule(placed, tuple(order), processors)
