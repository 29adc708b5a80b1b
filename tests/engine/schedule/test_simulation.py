"""Virtual-clock simulation of scheduling policies on generated graphs."""

from __future__ import annotations

import itertools
import random

import pytest

from delegation_machine.engine.schedule.heft import heft
from delegation_machine.engine.schedule.simulation import (
    POLICIES,
    VirtualClock,
    layered_graph,
    simulate_policy,
)

from .paper_graph import COMM, COMP


def test_virtual_clock_runs_events_in_time_then_insertion_order() -> None:
    clock = VirtualClock()
    seen: list[str] = []
    clock.call_at(5.0, lambda: seen.append("b"))
    clock.call_at(1.0, lambda: clock.call_at(5.0, lambda: seen.append("c")))
    clock.call_at(5.0, lambda: seen.append("d"))
    assert clock.run() == 5.0
    assert seen == ["b", "d", "c"]
    with pytest.raises(ValueError, match="before now"):
        clock.call_at(1.0, lambda: None)


def test_replaying_heft_in_the_simulator_reproduces_its_makespan() -> None:
    assert simulate_policy(COMP, COMM, "heft").makespan == 80.0


def _check_valid(comp, comm, result) -> None:  # type: ignore[no-untyped-def]
    placement = result.placement
    assert set(placement) == set(comp)
    for (a, b), cost in comm.items():
        pa, pb = placement[a], placement[b]
        delay = 0.0 if pa[0] == pb[0] else cost
        assert pb[1] >= pa[2] + delay - 1e-9
    for task, (processor, start, finish) in placement.items():
        assert finish - start == pytest.approx(comp[task][processor])
    for processor in range(len(result.busy)):
        runs = sorted((s, f) for p, s, f in placement.values() if p == processor)
        for (_, end), (start, _) in itertools.pairwise(runs):
            assert start >= end - 1e-9


@pytest.mark.parametrize("seed", range(8))
def test_every_policy_gives_a_valid_schedule(seed: int) -> None:
    graph = layered_graph(random.Random(seed), tasks=60, layers=8)
    static = heft(graph.comp, graph.comm)
    for policy in POLICIES:
        result = simulate_policy(graph.comp, graph.comm, policy, seed=seed)
        _check_valid(graph.comp, graph.comm, result)
        assert 0 < result.utilisation <= 1.0
        if policy == "heft":
            assert result.makespan <= static.makespan + 1e-9


def test_simulation_is_deterministic() -> None:
    graph = layered_graph(random.Random(3), tasks=50)
    for policy in POLICIES:
        first = simulate_policy(graph.comp, graph.comm, policy, seed=11)
        again = simulate_policy(graph.comp, graph.comm, policy, seed=11)
        assert first == again
    assert layered_graph(random.Random(3), tasks=50) == graph


def test_layered_graph_shape() -> None:
    graph = layered_graph(random.Random(0), tasks=100, layers=10, processor_speeds=(1, 2, 3, 4))
    assert sorted(graph.comp) == list(range(100))
    assert all(len(costs) == 4 for costs in graph.comp.values())
    assert sum(len(layer) for layer in graph.layers) == 100 and len(graph.layers) == 10
    depth = {t: d for d, layer in enumerate(graph.layers) for t in layer}
    assert all(depth[a] < depth[b] for a, b in graph.comm)
    with_parent = {b for _, b in graph.comm}
    assert all(t in with_parent for layer in graph.layers[1:] for t in layer)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy 'lifo'"):
        simulate_policy(COMP, COMM, "lifo")  # type: ignore[arg-type]
