"""Time to schedule 1,000 and 10,000 tasks: HEFT, CPOP and the live Dispatcher.

(1) `heft` (insertion-based, gap lists) and `cpop` on layered graphs of 4 agent kinds, against
the textbook insertion scan (every busy interval of every processor visited per placement),
measured in the same run, whose makespans must agree. (2) The live path: one ring batch of n
TaskSpecs through `Dispatcher` (HEFT ranks, stations, deques, stealing) with 4 workers whose
`run_task` returns at once: tasks dispatched per second. Target: 1,000 tasks under 0.5 s.
Writes benchmarks/results/schedule_time.json.
Run: .venv/bin/python benchmarks/schedule_time.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.schedule.dispatch import Dispatcher, WorkerSpec
from delegation_machine.engine.schedule.heft import cpop, heft, upward_rank
from delegation_machine.engine.schedule.simulation import GeneratedGraph, layered_graph

RESULTS = Path(__file__).parent / "results" / "schedule_time.json"
KINDS = ("tool", "small-llm", "large-llm", "review")


def textbook_heft(
    comp: Mapping[int, Sequence[float]], comm: Mapping[tuple[int, int], float]
) -> float:
    """HEFT as usually written: scan every busy interval for an idle gap (baseline)."""
    rank = upward_rank(comp, comm)
    predecessors: dict[int, list[tuple[int, float]]] = {t: [] for t in comp}
    for (a, b), cost in comm.items():
        predecessors[b].append((a, cost))
    processors = len(next(iter(comp.values())))
    busy: list[list[tuple[float, float]]] = [[] for _ in range(processors)]
    placed: dict[int, tuple[int, float]] = {}
    for task in sorted(comp, key=lambda t: (-round(rank[t], 9), t)):
        best: tuple[float, int, float] | None = None
        for p in range(processors):
            ready = max(
                (placed[q][1] + (0 if placed[q][0] == p else c) for q, c in predecessors[task]),
                default=0.0,
            )
            duration = comp[task][p]
            start, previous_end = None, 0.0
            for s, e in busy[p]:
                if max(ready, previous_end) + duration <= s:
                    start = max(ready, previous_end)
                    break
                previous_end = max(previous_end, e)
            if start is None:
                start = max(ready, previous_end)
            if best is None or start + duration < best[0]:
                best = (start + duration, p, start)
        assert best is not None
        finish, p, start = best
        busy[p].append((start, finish))
        busy[p].sort()
        placed[task] = (p, finish)
    return max(f for _, f in placed.values())


def median_time(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def graph_of(tasks: int) -> GeneratedGraph:
    return layered_graph(random.Random(tasks), tasks=tasks, layers=tasks // 10)


def specs_of(graph: GeneratedGraph) -> list[TaskSpec]:
    """The same DAG as TaskSpecs: edges become tags (t<a> produced by a, read by b)."""
    inputs: dict[int, list[str]] = {t: [] for t in graph.comp}
    for a, b in graph.comm:
        inputs[b].append(f"t{a}")
    return [
        TaskSpec(
            task_id=f"task-{t}",
            kind="fix",
            inputs=tuple(inputs[t]),
            outputs=(f"t{t}",),
            cost=dict(zip(KINDS, costs, strict=True)),
            handoff_tokens=1000,
        )
        for t, costs in graph.comp.items()
    ]


async def dispatch_all(specs: list[TaskSpec]) -> float:
    capacity = 1 << (len(specs) - 1).bit_length()
    ring = RingBuffer[TaskSpec](capacity, producer="single")
    done = 0

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        nonlocal done
        done += 1
        return True

    workers = [WorkerSpec(f"w{i}", kind) for i, kind in enumerate(KINDS)]
    dispatcher = Dispatcher(ring, workers, run_task)
    start = time.perf_counter()
    await ring.publish_batch(specs)
    ring.close()
    await dispatcher.run()
    elapsed = time.perf_counter() - start
    assert done == len(specs), (done, len(specs))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = (1_000, 3_000) if args.quick else (1_000, 3_000, 10_000)
    baseline_limit = 3_000  # the textbook scan takes about a minute at 10,000
    rows: list[dict[str, Any]] = []
    for tasks in sizes:
        graph = graph_of(tasks)
        repeats = 5 if tasks <= 3_000 else 3
        heft_s, schedule = median_time(lambda g=graph: heft(g.comp, g.comm), repeats)  # type: ignore[misc]
        cpop_s, _ = median_time(lambda g=graph: cpop(g.comp, g.comm), repeats)  # type: ignore[misc]
        specs = specs_of(graph)
        dispatch_s, _ = median_time(lambda s=specs: asyncio.run(dispatch_all(s)), repeats)  # type: ignore[misc]
        row: dict[str, Any] = {
            "tasks": tasks,
            "edges": len(graph.comm),
            "repeats": repeats,
            "heft_median_s": heft_s,
            "cpop_median_s": cpop_s,
            "dispatcher_median_s": dispatch_s,
            "dispatcher_tasks_per_s": tasks / dispatch_s,
        }
        if tasks <= baseline_limit:
            base_s, base_makespan = median_time(
                lambda g=graph: textbook_heft(g.comp, g.comm),  # type: ignore[misc]
                3,
            )
            assert abs(base_makespan - schedule.makespan) < 1e-6  # type: ignore[attr-defined, operator]
            row["textbook_heft_median_s"] = base_s
            row["speedup_vs_textbook"] = base_s / heft_s
        rows.append(row)
    print(
        f"{'tasks':>6} {'edges':>6} {'heft s':>8} {'cpop s':>8} {'textbook s':>10}"
        f" {'speed-up':>8} {'dispatch s':>10} {'tasks/s':>8}"
    )
    for row in rows:
        textbook = row.get("textbook_heft_median_s")
        speedup = row.get("speedup_vs_textbook")
        print(
            f"{row['tasks']:>6} {row['edges']:>6} {row['heft_median_s']:>8.3f}"
            f" {row['cpop_median_s']:>8.3f}"
            f" {f'{textbook:.3f}' if textbook else '-':>10}"
            f" {f'{speedup:.1f}x' if speedup else '-':>8}"
            f" {row['dispatcher_median_s']:>10.3f} {row['dispatcher_tasks_per_s']:>8,.0f}"
        )
    first = rows[0]
    targets = {
        "heft_1000_under_0.5s": first["heft_median_s"] < 0.5,
        "dispatcher_1000_under_0.5s": first["dispatcher_median_s"] < 0.5,
    }
    print("targets:", targets)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "figure": "schedule_time",
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "quick": args.quick,
                "agent_kinds": list(KINDS),
                "rows": rows,
                "targets_met": targets,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
