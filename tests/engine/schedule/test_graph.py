"""TaskGraph and TaskSpec: dependencies, cycles named, cost matrices."""

from __future__ import annotations

import math

import msgspec
import pytest

from delegation_machine.engine.plan.graph import CycleError, GraphError, TaskGraph, TaskSpec


def spec(task_id: str, **fields: object) -> TaskSpec:
    return msgspec.convert({"task_id": task_id, "kind": "fix", **fields}, TaskSpec)


def test_task_spec_is_frozen_and_round_trips_json() -> None:
    original = spec("t1", inputs=("a",), outputs=("b",), cost={"llm": 3.0}, arguments={"n": 1})
    with pytest.raises(AttributeError):
        original.kind = "x"  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(original), type=TaskSpec) == original


def test_cost_on_falls_back_to_the_mean_of_finite_costs() -> None:
    assert spec("a").cost_on("anything") == 1.0
    task = spec("b", cost={"llm": 4.0, "tool": 2.0, "never": math.inf})
    assert task.cost_on("tool") == 2.0
    assert task.cost_on("other") == 3.0
    assert task.cost_on("never") == math.inf


def test_cycle_is_refused_and_named() -> None:
    graph = TaskGraph([spec("t1"), spec("t2"), spec("t3")])
    graph.add_dependency("t1", "t2")
    graph.add_dependency("t2", "t3")
    graph.add_dependency("t3", "t1")
    with pytest.raises(CycleError) as caught:
        graph.validate()
    message = str(caught.value)
    assert "cycle" in message
    cycle = caught.value.cycle
    assert sorted(cycle) == ["t1", "t2", "t3"]
    # The message walks the cycle and returns to its start.
    assert message.endswith(f"{cycle[0]} -> {cycle[1]} -> {cycle[2]} -> {cycle[0]}")
    with pytest.raises(CycleError):
        graph.topological_order()


def test_two_task_cycle_message() -> None:
    graph = TaskGraph([spec("t1"), spec("t2")])
    graph.add_dependency("t1", "t2")
    graph.add_dependency("t2", "t1")
    with pytest.raises(CycleError, match=r"t1 -> t2 -> t1|t2 -> t1 -> t2"):
        graph.validate()


def test_unknown_task_and_duplicates_are_refused() -> None:
    graph = TaskGraph([spec("a")])
    with pytest.raises(GraphError, match="duplicate task id 'a'"):
        graph.add_task(spec("a"))
    with pytest.raises(GraphError, match="unknown task 'b'"):
        graph.add_dependency("a", "b")
    graph.add_task(spec("b"))
    with pytest.raises(GraphError, match="negative"):
        graph.add_dependency("a", "b", handoff_tokens=-1)


def test_topological_order_breaks_ties_by_insertion() -> None:
    graph = TaskGraph([spec("c"), spec("a"), spec("b"), spec("d")])
    graph.add_dependency("b", "d")
    graph.add_dependency("c", "d")
    assert graph.topological_order() == ["c", "a", "b", "d"]


def test_from_tags_links_each_reader_to_the_latest_earlier_writer() -> None:
    tasks = [
        spec("w1", outputs=("f",), handoff_tokens=500),
        spec("r1", inputs=("f",)),
        spec("w2", inputs=("f",), outputs=("f",), handoff_tokens=200),
        spec("r2", inputs=("f", "unknown")),
    ]
    graph = TaskGraph.from_tags(tasks)
    assert sorted(graph.edges()) == [("w1", "r1", 500), ("w1", "w2", 500), ("w2", "r2", 200)]


def test_cost_matrices_for_heft() -> None:
    graph = TaskGraph([spec("a", cost={"llm": 10.0, "tool": 2.0}), spec("b")])
    graph.add_dependency("a", "b", handoff_tokens=1500)
    assert graph.computation_matrix(["llm", "tool"]) == {"a": [10.0, 2.0], "b": [1.0, 1.0]}
    assert graph.communication_matrix(tokens_per_unit=500) == {("a", "b"): 3.0}
    assert graph.predecessors("b") == ["a"]
    assert graph.successors("a") == ["b"]
    assert len(graph) == 2 and list(graph) == ["a", "b"]
