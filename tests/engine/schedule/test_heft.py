"""HEFT and CPOP against Topcuoglu, Hariri and Wu (IEEE TPDS 13(3), 2002), Fig. 2 and 4."""

from __future__ import annotations

import itertools
import random

import pytest

from delegation_machine.engine.plan.graph import CycleError
from delegation_machine.engine.schedule.heft import (
    cpop,
    critical_path,
    downward_rank,
    heft,
    upward_rank,
)

from .paper_graph import COMM, COMP


def test_upward_ranks_match_the_paper() -> None:
    expected = {
        1: 108.0,
        2: 77.0,
        3: 80.0,
        4: 80.0,
        5: 69.0,
        6: 63.333,
        7: 42.667,
        8: 35.667,
        9: 44.333,
        10: 14.667,
    }
    ranks = upward_rank(COMP, COMM)
    for task, rank in expected.items():
        assert ranks[task] == pytest.approx(rank, abs=1e-3), task


def test_downward_ranks_match_the_paper() -> None:
    expected = {1: 0.0, 2: 31.0, 3: 25.0, 4: 22.0, 5: 24.0, 6: 27.0, 7: 62.333, 8: 66.667}
    ranks = downward_rank(COMP, COMM)
    for task, rank in expected.items():
        assert ranks[task] == pytest.approx(rank, abs=1e-3), task
    assert ranks[9] == pytest.approx(63.667, abs=1e-3)
    assert ranks[10] == pytest.approx(93.333, abs=1e-3)


def test_heft_schedule_is_the_papers() -> None:
    schedule = heft(COMP, COMM)
    assert schedule.makespan == 80
    # The paper's order: n3 and n4 tie at rank 80; the lower index goes first.
    assert schedule.order == (1, 3, 4, 2, 5, 6, 9, 7, 8, 10)
    placed = {t: (s.processor + 1, s.start, s.finish) for t, s in schedule.tasks.items()}
    assert placed == {
        1: (3, 0, 9),
        3: (3, 9, 28),
        4: (2, 18, 26),
        2: (1, 27, 40),
        5: (3, 28, 38),
        6: (2, 26, 42),
        9: (2, 56, 68),
        7: (3, 38, 49),
        8: (1, 57, 62),
        10: (2, 73, 80),
    }


def test_cpop_schedule_is_the_papers() -> None:
    assert critical_path(COMP, COMM) == [1, 2, 9, 10]
    schedule = cpop(COMP, COMM)
    assert schedule.makespan == 86
    # Every critical-path task on P2, the processor minimising the path's cost (54).
    assert {schedule.tasks[t].processor for t in (1, 2, 9, 10)} == {1}


def _random_dag(
    rng: random.Random, tasks: int, processors: int
) -> tuple[dict[int, list[float]], dict[tuple[int, int], float]]:
    comp = {t: [rng.uniform(1, 20) for _ in range(processors)] for t in range(tasks)}
    comm = {
        (a, b): rng.uniform(0, 15)
        for a in range(tasks)
        for b in range(a + 1, tasks)
        if rng.random() < 0.15
    }
    return comp, comm


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("insertion", [True, False])
def test_heft_schedules_are_valid(seed: int, insertion: bool) -> None:
    rng = random.Random(seed)
    comp, comm = _random_dag(rng, tasks=25, processors=3)
    for schedule in (heft(comp, comm, insertion=insertion), cpop(comp, comm)):
        assert set(schedule.tasks) == set(comp)
        for (a, b), cost in comm.items():
            pa, pb = schedule.tasks[a], schedule.tasks[b]
            delay = 0 if pa.processor == pb.processor else cost
            assert pb.start >= pa.finish + delay - 1e-9
        for processor in range(3):
            slots = schedule.on_processor(processor)
            for (_, first), (_, second) in itertools.pairwise(slots):
                assert second.start >= first.finish - 1e-9
            for task, placed in slots:
                assert placed.finish - placed.start == pytest.approx(comp[task][processor])


def test_heft_is_deterministic_under_ties() -> None:
    comp = {name: [5.0, 5.0] for name in "abcdef"}
    first = heft(comp, {})
    assert first.order == tuple("abcdef")
    assert [first.tasks[t].processor for t in "abcdef"] == [0, 1, 0, 1, 0, 1]
    assert heft(comp, {}) == first


def test_insertion_fills_an_idle_gap() -> None:
    # b waits on x's hand-off from P1, leaving P0 idle over [1, 11): a and c fit in it.
    comp = {"x": [100.0, 1.0], "b": [2.0, 100.0], "a": [1.0, 100.0], "c": [5.0, 50.0]}
    comm = {("x", "b"): 10.0}
    with_insertion = heft(comp, comm, insertion=True)
    assert with_insertion.order == ("x", "b", "a", "c")
    assert (with_insertion.tasks["a"].start, with_insertion.tasks["c"].start) == (0.0, 1.0)
    assert with_insertion.makespan == 13.0
    assert heft(comp, comm, insertion=False).makespan == 19.0


def test_cycles_and_bad_input_are_refused() -> None:
    with pytest.raises(CycleError, match="cycle"):
        heft({1: [1.0], 2: [1.0]}, {(1, 2): 0.0, (2, 1): 0.0})
    with pytest.raises(ValueError, match="one cost per processor"):
        heft({1: [1.0], 2: [1.0, 2.0]}, {})
    with pytest.raises(ValueError, match="unknown task 3"):
        heft({1: [1.0]}, {(1, 3): 1.0})


def test_empty_graph() -> None:
    assert heft({}, {}).makespan == 0.0
    assert cpop({}, {}).makespan == 0.0


def test_infinite_cost_marks_a_processor_that_cannot_run_the_task() -> None:
    inf = float("inf")
    comp = {"a": [inf, 4.0], "b": [2.0, 6.0], "c": [1.0, inf]}
    comm = {("a", "b"): 1.0, ("b", "c"): 1.0}
    assert upward_rank(comp, comm)["c"] == 1.0  # the mean of the finite costs only
    assert upward_rank(comp, comm)["a"] == 4.0 + 1.0 + 4.0 + 1.0 + 1.0
    for schedule in (heft(comp, comm), cpop(comp, comm)):
        assert schedule.tasks["a"].processor == 1
        assert schedule.tasks["c"].processor == 0
        assert schedule.makespan < inf
