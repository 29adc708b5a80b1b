"""Makespan of HEFT against FIFO and random list scheduling on 200 random layered graphs.

Each graph: 100 tasks in 10 layers, 4 heterogeneous agent kinds (processor speeds 1, 1.5, 2.5
and 4 times a task's base cost, each task varying +-50% per kind), hand-off costs averaging half
a mean task (about 1,000 context tokens at 100 tokens/s against 20 s tasks). Every policy runs in
the same virtual-time simulator (engine/schedule/simulation.py), so the numbers compare
policies, not implementations. Writes benchmarks/results/heft_makespan.json.
Run: .venv/bin/python benchmarks/heft_makespan.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from delegation_machine.engine.schedule.heft import cpop
from delegation_machine.engine.schedule.simulation import layered_graph, simulate_policy

RESULTS = Path(__file__).parent / "results" / "heft_makespan.json"
POLICIES = ("heft", "cpop", "rank", "fifo", "random", "stealing")
DESCRIPTIONS = {
    "heft": "HEFT plan (insertion), replayed in the simulator",
    "cpop": "CPOP plan (static makespan)",
    "rank": "dynamic: idle agent takes the ready task of highest upward rank",
    "fifo": "dynamic: idle agent takes the oldest ready task",
    "random": "dynamic: idle agent (random order) takes a random ready task",
    "stealing": "dynamic: per-agent deques, owner LIFO, thieves FIFO",
}


def lower_bound(comp: dict[int, list[float]], successors: dict[int, list[int]]) -> float:
    """max(critical path at the fastest costs, total fastest work / processors)."""
    best = {t: min(costs) for t, costs in comp.items()}
    longest: dict[int, float] = {}
    for task in sorted(comp, reverse=True):  # layered ids: successors have larger ids
        longest[task] = best[task] + max((longest[s] for s in successors.get(task, [])), default=0)
    processors = len(next(iter(comp.values())))
    return max(max(longest.values()), sum(best.values()) / processors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--graphs", type=int, default=None)
    args = parser.parse_args()
    graphs = args.graphs or (40 if args.quick else 200)
    makespans: dict[str, list[float]] = {p: [] for p in POLICIES}
    bounds: list[float] = []
    started = time.perf_counter()
    for seed in range(graphs):
        graph = layered_graph(random.Random(seed), tasks=100, layers=10)
        successors: dict[int, list[int]] = {}
        for a, b in graph.comm:
            successors.setdefault(a, []).append(b)
        bounds.append(lower_bound(graph.comp, successors))
        for policy in POLICIES:
            if policy == "cpop":
                makespans[policy].append(cpop(graph.comp, graph.comm).makespan)
            else:
                result = simulate_policy(graph.comp, graph.comm, policy, seed=seed)  # type: ignore[arg-type]
                makespans[policy].append(result.makespan)
    elapsed = time.perf_counter() - started
    rows: list[dict[str, Any]] = []
    heft_spans = makespans["heft"]
    for policy in POLICIES:
        ratios = [m / h for m, h in zip(makespans[policy], heft_spans, strict=True)]
        rows.append(
            {
                "policy": policy,
                "description": DESCRIPTIONS[policy],
                "median_makespan": statistics.median(makespans[policy]),
                "mean_ratio_to_heft": statistics.fmean(ratios),
                "median_ratio_to_heft": statistics.median(ratios),
                "worst_ratio_to_heft": max(ratios),
                "best_ratio_to_heft": min(ratios),
                "heft_better_or_equal_share": sum(r >= 1 - 1e-9 for r in ratios) / len(ratios),
                "mean_ratio_to_lower_bound": statistics.fmean(
                    m / b for m, b in zip(makespans[policy], bounds, strict=True)
                ),
            }
        )
    print(f"{graphs} graphs, 100 tasks, 4 agent kinds ({elapsed:.1f} s)")
    print(
        f"{'policy':<9} {'median span':>11} {'mean /HEFT':>10} {'worst /HEFT':>11}"
        f" {'best /HEFT':>10} {'HEFT<=':>7} {'/bound':>7}"
    )
    for row in rows:
        print(
            f"{row['policy']:<9} {row['median_makespan']:>11.1f} {row['mean_ratio_to_heft']:>10.3f}"
            f" {row['worst_ratio_to_heft']:>11.3f} {row['best_ratio_to_heft']:>10.3f}"
            f" {row['heft_better_or_equal_share']:>7.0%} {row['mean_ratio_to_lower_bound']:>7.3f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "figure": "heft_makespan",
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "quick": args.quick,
                "graphs": graphs,
                "tasks_per_graph": 100,
                "agent_kinds": 4,
                "processor_speeds": [1.0, 1.5, 2.5, 4.0],
                "heterogeneity": 0.5,
                "communication_to_computation": 0.5,
                "ratio": "policy makespan / HEFT makespan on the same graph",
                "policies": rows,
                "elapsed_s": elapsed,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
