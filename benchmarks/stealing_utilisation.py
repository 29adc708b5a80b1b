"""Agent utilisation with and without work stealing on imbalanced work.

(1) Simulated (virtual time, engine/schedule/stealing.py): a binary fork-join graph whose root
is spawned on one worker, 4 workers; with stealing the run is greedy (Graham: T_P <= T_1/P +
T_inf), without it one worker does everything. (2) Live (asyncio, the real Dispatcher, 4
agents): 160 independent tasks whose estimated costs are all equal, so the dispatcher spreads
them evenly, but whose real durations differ: heavy-tailed (lognormal, mean 4 ms), or one task
kind in four really 10x slower than estimated. Idle agents steal, or sit idle without stealing.
Utilisation = busy time / (workers x makespan). Writes benchmarks/results/stealing_utilisation.json.
Run: .venv/bin/python benchmarks/stealing_utilisation.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.schedule.dispatch import Dispatcher, WorkerSpec
from delegation_machine.engine.schedule.stealing import simulate_work_stealing

RESULTS = Path(__file__).parent / "results" / "stealing_utilisation.json"
WORKERS = 4


def fork_join(depth: int, rng: random.Random) -> tuple[dict[str, float], dict[str, list[str]]]:
    durations: dict[str, float] = {}
    successors: dict[str, list[str]] = {}

    def build(name: str, level: int) -> tuple[str, str]:
        if level == depth:
            durations[name] = rng.lognormvariate(0, 1)
            return name, name
        fork, join = f"{name}/fork", f"{name}/join"
        durations[fork] = durations[join] = 0.05
        for half in "LR":
            entry, exit_ = build(name + half, level + 1)
            successors.setdefault(fork, []).append(entry)
            successors.setdefault(exit_, []).append(join)
        return fork, join

    build("r", 0)
    return durations, successors


def simulated(seeds: int) -> dict[str, Any]:
    rows: dict[str, list[float]] = {
        "util_stealing": [],
        "util_no_stealing": [],
        "makespan_stealing": [],
        "makespan_no_stealing": [],
        "bound_slack": [],
    }
    for seed in range(seeds):
        durations, successors = fork_join(8, random.Random(seed))
        on = simulate_work_stealing(durations, successors, WORKERS, seed=seed)
        off = simulate_work_stealing(durations, successors, WORKERS, seed=seed, stealing=False)
        rows["util_stealing"].append(on.utilisation)
        rows["util_no_stealing"].append(off.utilisation)
        rows["makespan_stealing"].append(on.makespan)
        rows["makespan_no_stealing"].append(off.makespan)
        rows["bound_slack"].append(on.work / WORKERS + on.span - on.makespan)
    return {
        "graph": "binary fork-join, depth 8 (256 lognormal leaves), spawned on worker 0",
        "seeds": seeds,
        "median_utilisation_stealing": statistics.median(rows["util_stealing"]),
        "median_utilisation_no_stealing": statistics.median(rows["util_no_stealing"]),
        "median_speedup": statistics.median(
            b / a
            for a, b in zip(rows["makespan_stealing"], rows["makespan_no_stealing"], strict=True)
        ),
        "graham_bound_held": all(s >= -1e-9 for s in rows["bound_slack"]),
    }


async def live_run(durations: list[float], stealing: bool) -> tuple[float, float]:
    ring = RingBuffer[TaskSpec](256, producer="single")
    busy = 0.0

    async def run_task(spec: TaskSpec, worker: WorkerSpec) -> bool:
        nonlocal busy
        started = time.perf_counter()
        await asyncio.sleep(spec.arguments["seconds"])
        busy += time.perf_counter() - started
        return True

    workers = [WorkerSpec(f"agent-{i}", "llm") for i in range(WORKERS)]
    dispatcher = Dispatcher(ring, workers, run_task, stealing=stealing)
    specs = [
        TaskSpec(task_id=f"t{i}", kind="llm", cost={"llm": 1.0}, arguments={"seconds": d})
        for i, d in enumerate(durations)
    ]
    started = time.perf_counter()
    await ring.publish_batch(specs)
    ring.close()
    await dispatcher.run()
    makespan = time.perf_counter() - started
    return busy / (WORKERS * makespan), makespan


def heavy_tailed(rng: random.Random, tasks: int) -> list[float]:
    # lognormal(mu, 1) has mean exp(mu + 1/2): mean 4 ms.
    return [rng.lognormvariate(math.log(0.004) - 0.5, 1.0) for _ in range(tasks)]


def misestimated_kind(rng: random.Random, tasks: int) -> list[float]:
    # Four task kinds in turn, all estimated alike; one kind really takes 10x longer (20 ms).
    return [0.020 if i % 4 == 0 else 0.002 for i in range(tasks)]


def live(rounds: int, tasks: int, durations_of: Any, description: str) -> dict[str, Any]:
    util: dict[bool, list[float]] = {True: [], False: []}
    spans: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(rounds):
        durations = durations_of(random.Random(seed), tasks)
        for stealing in (True, False):
            u, m = asyncio.run(live_run(durations, stealing))
            util[stealing].append(u)
            spans[stealing].append(m)
    return {
        "tasks": tasks,
        "rounds": rounds,
        "durations": description,
        "median_utilisation_stealing": statistics.median(util[True]),
        "median_utilisation_no_stealing": statistics.median(util[False]),
        "median_makespan_stealing_s": statistics.median(spans[True]),
        "median_makespan_no_stealing_s": statistics.median(spans[False]),
        "median_speedup": statistics.median(
            b / a for a, b in zip(spans[True], spans[False], strict=True)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sim = simulated(10 if args.quick else 50)
    rounds = 3 if args.quick else 9
    real = live(rounds, 160, heavy_tailed, "lognormal, mean 4 ms, sigma 1; estimates all equal")
    skewed = live(
        rounds, 160, misestimated_kind, "every 4th task 20 ms, the rest 2 ms; estimates all equal"
    )
    print(f"{'case':<40} {'util (steal)':>12} {'util (none)':>11} {'speed-up':>8}")
    cases = (
        ("simulated fork-join, 4 workers", sim),
        ("live Dispatcher, heavy-tailed durations", real),
        ("live Dispatcher, one kind misestimated", skewed),
    )
    for name, row in cases:
        print(
            f"{name:<40} {row['median_utilisation_stealing']:>12.0%}"
            f" {row['median_utilisation_no_stealing']:>11.0%} {row['median_speedup']:>7.2f}x"
        )
    print(f"Graham bound held in every simulated run: {sim['graham_bound_held']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "figure": "stealing_utilisation",
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "quick": args.quick,
                "workers": WORKERS,
                "simulated": sim,
                "live_heavy_tailed": real,
                "live_misestimated_kind": skewed,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
