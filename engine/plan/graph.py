"""Task specifications and the task graph the schedulers work on.

Owns `TaskSpec` (one unit of delegated work, frozen) and `TaskGraph`, a networkx DiGraph whose
nodes are task ids and whose edges carry the hand-off cost in context tokens. Invariant: a
validated graph is acyclic; `validate()` refuses a cycle with `CycleError` naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec
import networkx as nx

DEFAULT_COST = 1.0


class TaskSpec(msgspec.Struct, frozen=True):
    """One task of a plan: what to do, what it reads (tags) and writes (tags).

    `cost` maps an agent kind (processor class) to the estimated time on it; a kind missing
    from it costs the mean of the given costs (1.0 when none are given); `math.inf` means
    that kind cannot run the task.
    """

    task_id: str
    kind: str
    instruction: str = ""
    paths: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    cost: dict[str, float] = {}
    handoff_tokens: int = 0
    plan_id: str = ""
    arguments: dict[str, Any] = {}

    def cost_on(self, processor_kind: str) -> float:
        """Estimated time of this task on a processor of `processor_kind`."""
        if processor_kind in self.cost:
            return self.cost[processor_kind]
        finite = [c for c in self.cost.values() if c != float("inf")]
        return sum(finite) / len(finite) if finite else DEFAULT_COST


class GraphError(ValueError):
    """The task graph is malformed (unknown task, duplicate id, ...)."""


class CycleError(GraphError):
    """The task graph has a cycle; `cycle` lists the task ids along it."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        path = " -> ".join([*self.cycle, self.cycle[0]]) if self.cycle else "?"
        super().__init__(f"task graph has a cycle: {path}")


class TaskGraph:
    """A DAG of `TaskSpec`s; edges carry the hand-off cost (tokens) between two tasks.

    Insertion order of tasks is remembered and used to break ties deterministically.
    """

    def __init__(self, tasks: Iterable[TaskSpec] = ()) -> None:
        self._graph: nx.DiGraph[str] = nx.DiGraph()
        for task in tasks:
            self.add_task(task)

    @classmethod
    def from_tags(cls, tasks: Sequence[TaskSpec]) -> TaskGraph:
        """Build edges from tags in program order: a task depends on the latest earlier task
        producing each of its input tags (renaming: later producers do not affect it)."""
        graph = cls(tasks)
        latest_producer: dict[str, TaskSpec] = {}
        for task in tasks:
            for tag in task.inputs:
                producer = latest_producer.get(tag)
                if producer is not None and producer.task_id != task.task_id:
                    graph.add_dependency(
                        producer.task_id, task.task_id, handoff_tokens=producer.handoff_tokens
                    )
            for tag in task.outputs:
                latest_producer[tag] = task
        return graph

    @property
    def nx_graph(self) -> nx.DiGraph[str]:
        return self._graph

    def add_task(self, task: TaskSpec) -> None:
        if task.task_id in self._graph:
            raise GraphError(f"duplicate task id {task.task_id!r}")
        self._graph.add_node(task.task_id, spec=task, order=len(self._graph))

    def add_dependency(self, before: str, after: str, handoff_tokens: int = 0) -> None:
        """`after` needs `before`'s result; the hand-off costs `handoff_tokens` tokens."""
        for task_id in (before, after):
            if task_id not in self._graph:
                raise GraphError(f"unknown task {task_id!r} in dependency {before} -> {after}")
        if handoff_tokens < 0:
            raise GraphError(f"negative hand-off cost on {before} -> {after}")
        self._graph.add_edge(before, after, handoff_tokens=handoff_tokens)

    def task(self, task_id: str) -> TaskSpec:
        spec: TaskSpec = self._graph.nodes[task_id]["spec"]
        return spec

    def tasks(self) -> list[TaskSpec]:
        return [self.task(t) for t in self._graph.nodes]

    def __len__(self) -> int:
        return len(self._graph)

    def __iter__(self) -> Iterator[str]:
        return iter(self._graph.nodes)

    def predecessors(self, task_id: str) -> list[str]:
        return list(self._graph.predecessors(task_id))

    def successors(self, task_id: str) -> list[str]:
        return list(self._graph.successors(task_id))

    def edges(self) -> list[tuple[str, str, int]]:
        return [(a, b, int(d["handoff_tokens"])) for a, b, d in self._graph.edges(data=True)]

    def validate(self) -> None:
        """Raise `CycleError` naming a cycle if there is one."""
        try:
            cycle = nx.find_cycle(self._graph)
        except nx.NetworkXNoCycle:
            return
        raise CycleError([edge[0] for edge in cycle])

    def topological_order(self) -> list[str]:
        """Tasks in dependency order, ties broken by insertion order."""
        self.validate()
        order = self._graph.nodes(data="order")
        return list(nx.lexicographical_topological_sort(self._graph, key=lambda n: order[n]))

    def computation_matrix(self, processor_kinds: Sequence[str]) -> dict[str, list[float]]:
        """HEFT's `comp`: task -> estimated time on each processor, in `processor_kinds` order."""
        return {t: [self.task(t).cost_on(k) for k in processor_kinds] for t in self._graph}

    def communication_matrix(self, tokens_per_unit: float = 1000.0) -> dict[tuple[str, str], float]:
        """HEFT's `comm`: edge -> hand-off time, `tokens_per_unit` tokens per time unit."""
        return {(a, b): tokens / tokens_per_unit for a, b, tokens in self.edges()}
