"""Work stealing: deque discipline, stolen sub-graph roots, Graham's bound on fork-join."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.schedule.stealing import (
    WorkDeque,
    simulate_work_stealing,
    span_of,
)


def test_owner_pops_newest_and_thief_steals_oldest() -> None:
    work: WorkDeque[str] = WorkDeque()
    for item in ("a", "b", "c", "d"):
        work.push(item)
    assert work.pop() == "d"
    assert work.steal() == "a"
    assert work.steal(accept=lambda item: item != "b") == "c"
    assert list(work) == ["b"]
    assert work.remove("b") and not work.remove("b")
    assert work.pop() is None and work.steal() is None and len(work) == 0


def fork_join(depth: int, leaf: float = 1.0) -> tuple[dict[str, float], dict[str, list[str]]]:
    """A binary fork-join tree: each fork spawns two halves, a join waits for both."""
    durations: dict[str, float] = {}
    successors: dict[str, list[str]] = {}

    def build(name: str, level: int) -> tuple[str, str]:
        if level == depth:
            durations[name] = leaf
            return name, name
        fork, join = f"{name}/fork", f"{name}/join"
        durations[fork] = 0.5
        durations[join] = 0.5
        for half in ("L", "R"):
            entry, exit_ = build(f"{name}{half}", level + 1)
            successors.setdefault(fork, []).append(entry)
            successors.setdefault(exit_, []).append(join)
        return fork, join

    build("r", 0)
    return durations, successors


def test_fork_join_respects_grahams_bound() -> None:
    durations, successors = fork_join(depth=7)
    work = sum(durations.values())
    span = span_of(durations, successors)
    assert span == 0.5 * 7 + 1.0 + 0.5 * 7
    for workers in (1, 2, 3, 4, 8):
        for seed in range(5):
            run = simulate_work_stealing(durations, successors, workers, seed=seed)
            assert run.work == work and run.span == span
            assert run.makespan <= work / workers + span + 1e-9
            assert run.makespan >= max(work / workers, span) - 1e-9
    assert simulate_work_stealing(durations, successors, 1).makespan == work


def test_thief_steals_the_oldest_root_and_owner_continues_depth_first() -> None:
    durations = {"root": 1.0, "left": 4.0, "right": 4.0, "left.1": 1.0, "right.1": 1.0}
    successors = {"root": ["left", "right"], "left": ["left.1"], "right": ["right.1"]}
    run = simulate_work_stealing(durations, successors, 2, seed=0)
    # root spawns left then right: the owner pops right (newest), the thief takes left.
    assert run.placement["right"][0] == 0
    assert run.placement["left"][0] == 1
    assert run.steals == 1
    assert run.makespan == 6.0


def test_without_stealing_one_worker_does_everything() -> None:
    durations, successors = fork_join(depth=5)
    alone = simulate_work_stealing(durations, successors, 4, stealing=False)
    shared = simulate_work_stealing(durations, successors, 4, stealing=True)
    assert alone.makespan == alone.work
    assert alone.busy[1:] == (0.0, 0.0, 0.0)
    assert shared.utilisation > 2 * alone.utilisation
    assert shared.makespan < alone.makespan / 2


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=40).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
        )
    ),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=0, max_value=1000),
)
def test_random_dags_respect_precedence_and_the_bound(
    graph: tuple[list[float], list[tuple[int, int]]], workers: int, seed: int
) -> None:
    costs, pairs = graph
    durations = dict(enumerate(costs))
    successors: dict[int, list[int]] = {}
    for a, b in {(min(p), max(p)) for p in pairs if p[0] != p[1]}:
        successors.setdefault(a, []).append(b)
    run = simulate_work_stealing(durations, successors, workers, seed=seed)
    for task, after in successors.items():
        for successor in after:
            assert run.placement[successor][1] >= run.placement[task][2] - 1e-9
    assert run.makespan <= run.work / workers + run.span + 1e-9
