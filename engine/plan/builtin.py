"""Plans for the built-in task kinds, which need no model: fix, format, check, rename.

Owns the mapping from a built-in request to a TaskGraph. File-wise kinds (fix, format)
get one task per batch of target files: the batches are contiguous runs of the sorted paths,
balanced by size, as many as the workers can run at once but none smaller than
`MIN_BATCH_BYTES`, and the files that judge code (tests, fixtures, check configuration) never
share a batch with the code they judge, so a batch is judged as its files would be one by one
(a change to judging files alone needs no test run; decision 047) (the cost model below: a task's bookkeeping — ledger events, leases, checks,
the acceptance run — costs about as much as the tools' work on a few dozen small files, and the
tools themselves run batched, so one task per file spent most of a large plan on overhead;
decision 086). One file is one task, and so is every file when the change of a task is
judged by running tests (a failing test does not say which file of a batch broke it). `rename` is one task over every file that mentions the
symbol, and `check` one task over every target (the checkers run batched). Each task names the files it writes as `file:<path>`
output tags and reads them as input tags, so the dispatcher runs a task only after every
earlier task that writes one of its files has finished (read-after-write ordering).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from delegation_machine.engine.plan.graph import TaskGraph, TaskSpec
from delegation_machine.engine.supervise.integrity import is_judging_file

FILEWISE_KINDS = ("fix", "format")
BUILTIN_KINDS = (*FILEWISE_KINDS, "check", "rename")

# The cost model HEFT ranks on (seconds on one core of the 2-core reference machine, measured
# with benchmarks/builtin_vs_tools.py): a task's fixed bookkeeping, plus its tools' work per
# MiB of source (warm semgrep and ruff for fix; ruff format; the batched checkers for check).
TASK_OVERHEAD_S = 0.04
_COST_PER_MIB_S = {"fix": 1.6, "format": 0.15, "check": 1.2, "rename": 2.0}
_KIND_COST = {"fix": 3.0, "format": 0.5, "check": 2.0, "rename": 4.0, "index": 0.2}
# A batch smaller than this spends a noticeable share of its time on bookkeeping.
MIN_BATCH_BYTES = 512 * 1024
SOURCE_SUFFIXES = (".py",)


def file_tag(path: str) -> str:
    return f"file:{path}"


def python_targets(paths: Iterable[str]) -> list[str]:
    return sorted(p for p in paths if p.endswith(SOURCE_SUFFIXES))


def plan_builtin(
    plan_id: str,
    kind: str,
    instruction: str,
    *,
    targets: Sequence[str],
    arguments: Mapping[str, Any] | None = None,
    worker_classes: Sequence[str] = ("builtin",),
    parallelism: int = 1,
    sizes: Mapping[str, int] | None = None,
    batched: bool = True,
    alone: Collection[str] = (),
) -> TaskGraph:
    """A TaskGraph for a built-in kind over `targets` (workspace-relative paths).

    `parallelism` is how many tasks can run at once, `sizes` the targets' sizes in bytes
    (unknown sizes count as `MIN_BATCH_BYTES`, so without sizes each file is its own batch up
    to `parallelism` batches). `batched=False` gives one task per file: the caller's checks
    would run tests on each change, and a test that fails cannot say which file of a batch
    broke it, so only one file per task keeps the other files' changes when one is undone.
    Files in `alone` (ones the workspace refuses to read: binary, not UTF-8, too large) get a
    task each, so each fails with its own reason and no batch fails for them."""
    if kind not in BUILTIN_KINDS:
        raise ValueError(f"not a built-in task kind: {kind!r} (known: {', '.join(BUILTIN_KINDS)})")
    graph = TaskGraph()
    if kind in ("rename", "check"):  # one task over every file: one batched checker run
        graph.add_task(
            TaskSpec(
                task_id=f"{plan_id}.1",
                kind=kind,
                instruction=instruction,
                paths=tuple(targets),
                inputs=tuple(file_tag(p) for p in targets),
                outputs=tuple(file_tag(p) for p in targets) if kind == "rename" else (),
                cost=_cost(kind, worker_classes, targets, sizes),
                plan_id=plan_id,
                arguments=dict(arguments or {}),
            )
        )
        return graph
    if batched:
        batchable = [rel for rel in targets if rel not in alone]
        batches = file_batches(batchable, parallelism, sizes)
        batches += [[rel] for rel in targets if rel in alone]
    else:
        batches = [[rel] for rel in targets]
    for number, batch in enumerate(batches, start=1):
        graph.add_task(
            TaskSpec(
                task_id=f"{plan_id}.{number}",
                kind=kind,
                instruction=instruction,
                paths=tuple(batch),
                inputs=tuple(file_tag(p) for p in batch),
                outputs=tuple(file_tag(p) for p in batch),
                cost=_cost(kind, worker_classes, batch, sizes),
                plan_id=plan_id,
                arguments=dict(arguments or {}),
            )
        )
    graph.validate()
    return graph


def file_batches(
    targets: Sequence[str], parallelism: int, sizes: Mapping[str, int] | None = None
) -> list[list[str]]:
    """`targets` cut into contiguous batches of about equal size: `parallelism` of them at
    most, fewer when a batch would hold less than `MIN_BATCH_BYTES`, never an empty one.

    The cut depends only on the targets, their sizes and `parallelism`, so a fix plan and a
    format plan over the same files get the same batches (each format task then waits on
    exactly one fix task)."""
    judging = [rel for rel in targets if is_judging_file(rel)]
    code = [rel for rel in targets if not is_judging_file(rel)]
    return _balanced(code, parallelism, sizes) + _balanced(judging, parallelism, sizes)


def _balanced(
    targets: Sequence[str], parallelism: int, sizes: Mapping[str, int] | None
) -> list[list[str]]:
    if not targets:
        return []
    weights = [max(1, (sizes or {}).get(rel, MIN_BATCH_BYTES)) for rel in targets]
    total = sum(weights)
    count = max(1, min(parallelism, len(targets), -(-total // MIN_BATCH_BYTES)))
    batches: list[list[str]] = [[]]
    done = 0
    for rel, weight in zip(targets, weights, strict=True):
        # start the next batch once this one has its share of the total
        if batches[-1] and done >= total * len(batches) / count and len(batches) < count:
            batches.append([])
        batches[-1].append(rel)
        done += weight
    return batches


def _cost(
    kind: str,
    worker_classes: Sequence[str],
    paths: Sequence[str],
    sizes: Mapping[str, int] | None,
) -> dict[str, float]:
    if sizes is None or kind not in _COST_PER_MIB_S:
        seconds = (
            _KIND_COST[kind] * max(1, len(paths)) if kind in FILEWISE_KINDS else _KIND_COST[kind]
        )
    else:
        mib = sum(sizes.get(rel, 0) for rel in paths) / (1024 * 1024)
        seconds = TASK_OVERHEAD_S + _COST_PER_MIB_S[kind] * mib
    return dict.fromkeys(worker_classes, round(seconds, 4))
