"""Plans for the built-in task kinds, which need no model: fix, format, check, rename.

Owns the mapping from a built-in request to a TaskGraph. File-wise kinds get one task per
target file (so a swarm can work through a workspace in parallel); `rename` is one task over
every file that mentions the symbol, and `check` one task over every target (the checkers run
batched). Each task names the files it writes as `file:<path>`
output tags and reads them as input tags, so the dispatcher runs a task only after every
earlier task that writes one of its files has finished (read-after-write ordering).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from delegation_machine.engine.plan.graph import TaskGraph, TaskSpec

FILEWISE_KINDS = ("fix", "format")
BUILTIN_KINDS = (*FILEWISE_KINDS, "check", "rename")

# Relative cost estimates (seconds of work) per worker class; HEFT ranks on these.
_KIND_COST = {"fix": 3.0, "format": 0.5, "check": 2.0, "rename": 4.0, "index": 0.2}
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
) -> TaskGraph:
    """A TaskGraph for a built-in kind over `targets` (workspace-relative paths)."""
    if kind not in BUILTIN_KINDS:
        raise ValueError(f"not a built-in task kind: {kind!r} (known: {', '.join(BUILTIN_KINDS)})")
    graph = TaskGraph()
    cost = dict.fromkeys(worker_classes, _KIND_COST[kind])
    if kind in ("rename", "check"):  # one task over every file: one batched checker run
        graph.add_task(
            TaskSpec(
                task_id=f"{plan_id}.1",
                kind=kind,
                instruction=instruction,
                paths=tuple(targets),
                inputs=tuple(file_tag(p) for p in targets),
                outputs=tuple(file_tag(p) for p in targets) if kind == "rename" else (),
                cost=cost,
                plan_id=plan_id,
                arguments=dict(arguments or {}),
            )
        )
        return graph
    for number, path in enumerate(targets, start=1):
        graph.add_task(
            TaskSpec(
                task_id=f"{plan_id}.{number}",
                kind=kind,
                instruction=instruction,
                paths=(path,),
                inputs=(file_tag(path),),
                outputs=(file_tag(path),),
                cost=cost,
                plan_id=plan_id,
                arguments=dict(arguments or {}),
            )
        )
    graph.validate()
    return graph
