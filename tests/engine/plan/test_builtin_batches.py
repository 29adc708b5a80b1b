"""File-wise built-in plans batch their files by the cost model (engine/plan/builtin.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from delegation_machine.engine.plan.builtin import (
    MIN_BATCH_BYTES,
    TASK_OVERHEAD_S,
    file_batches,
    plan_builtin,
)
from delegation_machine.engine.supervise.integrity import is_judging_file

MIB = 1024 * 1024


def test_a_large_workspace_is_cut_into_one_batch_per_worker_balanced_by_size() -> None:
    targets = [f"pkg/m{n:03}.py" for n in range(100)]
    sizes = {rel: (40_000 if n < 50 else 10_000) for n, rel in enumerate(targets)}
    batches = file_batches(targets, 4, sizes)
    assert len(batches) == 4
    assert [rel for batch in batches for rel in batch] == targets  # contiguous, in order
    weights = [sum(sizes[rel] for rel in batch) for batch in batches]
    assert max(weights) - min(weights) <= 40_000  # within one file of each other


def test_a_small_workspace_is_one_batch() -> None:
    targets = [f"m{n}.py" for n in range(20)]
    assert file_batches(targets, 4, dict.fromkeys(targets, 2_000)) == [targets]


def test_tests_never_share_a_batch_with_the_code_they_judge() -> None:
    targets = ["app/a.py", "app/b.py", "tests/conftest.py", "tests/test_a.py"]
    batches = file_batches(targets, 4, dict.fromkeys(targets, 100))
    assert batches == [["app/a.py", "app/b.py"], ["tests/conftest.py", "tests/test_a.py"]]


def test_fix_and_format_plans_over_the_same_files_get_the_same_batches() -> None:
    targets = [f"pkg/m{n:03}.py" for n in range(60)]
    sizes = {rel: 30_000 + 97 * n for n, rel in enumerate(targets)}
    fix = plan_builtin("p1", "fix", "fix", targets=targets, parallelism=4, sizes=sizes)
    fmt = plan_builtin("p2", "format", "format", targets=targets, parallelism=4, sizes=sizes)
    assert [t.paths for t in fix.tasks()] == [t.paths for t in fmt.tasks()]
    assert len(fix) == 4


def test_the_cost_is_the_overhead_plus_the_work_per_mib() -> None:
    targets = ["a.py", "b.py"]
    sizes = {"a.py": MIB, "b.py": MIB}
    graph = plan_builtin("p", "format", "f", targets=targets, parallelism=1, sizes=sizes)
    (task,) = graph.tasks()
    assert task.paths == ("a.py", "b.py")
    fix = plan_builtin("q", "fix", "f", targets=targets, parallelism=1, sizes=sizes)
    (fix_task,) = fix.tasks()
    assert task.cost["builtin"] > TASK_OVERHEAD_S
    assert fix_task.cost["builtin"] > task.cost["builtin"]  # semgrep costs more than ruff


def test_unbatched_plans_keep_one_task_per_file() -> None:
    targets = ["a.py", "b.py", "c.py"]
    graph = plan_builtin("p", "fix", "fix", targets=targets, parallelism=4, batched=False)
    assert [t.paths for t in graph.tasks()] == [("a.py",), ("b.py",), ("c.py",)]


paths = st.lists(
    st.builds(
        lambda folder, name: f"{folder}/{name}.py",
        st.sampled_from(["app", "tests", "lib/tests", "lib"]),
        st.sampled_from(["a", "b", "test_a", "conftest", "c", "test_c"]),
    ),
    unique=True,
    max_size=40,
)


@given(paths, st.integers(min_value=1, max_value=9), st.data())
def test_batches_partition_the_targets(
    targets: list[str], parallelism: int, data: st.DataObject
) -> None:
    targets = sorted(targets)
    sizes = {
        rel: data.draw(st.integers(min_value=0, max_value=3 * MIN_BATCH_BYTES)) for rel in targets
    }
    batches = file_batches(targets, parallelism, sizes)
    assert sorted(rel for batch in batches for rel in batch) == targets
    assert all(batch for batch in batches)
    for batch in batches:
        assert len({is_judging_file(rel) for rel in batch}) == 1
    code = [b for b in batches if not is_judging_file(b[0])]
    judging = [b for b in batches if is_judging_file(b[0])]
    assert len(code) <= parallelism and len(judging) <= parallelism


def test_files_the_workspace_refuses_get_a_task_each() -> None:
    targets = ["a.py", "binary.py", "c.py", "latin1.py"]
    sizes = dict.fromkeys(targets, 100)
    alone = {"binary.py", "latin1.py"}
    graph = plan_builtin("p", "fix", "f", targets=targets, parallelism=4, sizes=sizes, alone=alone)
    assert [t.paths for t in graph.tasks()] == [("a.py", "c.py"), ("binary.py",), ("latin1.py",)]
