"""Token waste of recovery: the three tiers (RecoveryLadder) against always restarting.

A scripted, seeded mix of tasks: most pass at once, most failures are fixable by a targeted
fix, some need a fresh agent, a few are hopeless. The project's policy is the real
`RecoveryLadder` deciding each step; the baseline restarts from scratch on every failure (a
fresh agent with the errors, at most three attempts, as the seed's "naive 3x"); the optimum
is an oracle that knows each task's class. Figures: tokens per policy and the ratio to the
optimum, over all tasks and over the failing ones only. Target: tiers <= 1.3x the optimum.

Token cost model (stated in docs/bench/supervision.md):
  full attempt  = C + O (+ E of the errors so far, for a restart)      uncached
  targeted fix  = 0.1 x (C + O)  [conversation prefix, cached]  + D + E + F
  C: context package 2,000-8,000; O: output 300-1,500; D (diff) = 0.6 O; F (fix) = 0.25 O;
  E: the failing verdicts as the agent sees them (JSON of the Findings) / 4 chars per token.

    .venv/bin/python benchmarks/recovery_tokens.py [--tasks 400] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from delegation_machine.engine.protocol import Finding, Point, Span, Verdict
from delegation_machine.engine.supervise.recovery import RecoveryLadder

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "recovery_tokens.json"
CACHED_WEIGHT = 0.1
MIX = {"clean": 0.55, "fixable": 0.30, "restart": 0.10, "hopeless": 0.05}
TaskClass = Literal["clean", "fixable", "restart", "hopeless"]


@dataclass(frozen=True)
class ScriptedTask:
    task_id: str
    task_class: TaskClass
    context: int
    output: int
    failures: tuple[Verdict, ...]  # what the checks report when an attempt fails

    @property
    def diff(self) -> int:
        return int(0.6 * self.output)

    @property
    def fix(self) -> int:
        return int(0.25 * self.output)


def error_tokens(verdicts: tuple[Verdict, ...]) -> int:
    return len(msgspec.json.encode(verdicts)) // 4


def full_attempt(task: ScriptedTask, errors_so_far: int) -> float:
    return task.context + task.output + errors_so_far


def targeted_fix(task: ScriptedTask) -> float:
    cached = CACHED_WEIGHT * (task.context + task.output)
    return cached + task.diff + error_tokens(task.failures) + task.fix


def scripted_tasks(count: int, seed: int) -> list[ScriptedTask]:
    rng = random.Random(seed)
    classes: list[TaskClass] = []
    for name, share in MIX.items():
        classes += [name] * round(share * count)  # type: ignore[list-item]
    rng.shuffle(classes)
    tasks = []
    for n, task_class in enumerate(classes):
        task_id = f"t{n}"
        findings = tuple(
            Finding(
                path=f"pkg/mod{rng.randrange(20)}.py",
                span=Span(Point(rng.randrange(300), 4), Point(rng.randrange(300), 30)),
                message=rng.choice(
                    [
                        "syntax error: missing ')'",
                        "tests/test_mod.py::test_total: AssertionError: assert 41 == 42",
                        "subprocess called with shell=True: command injection risk",
                        "NameError: name 'totl' is not defined",
                    ]
                ),
                code=rng.choice(["syntax", "test:tests/test_mod.py::test_total", "semgrep:x"]),
            )
            for _ in range(rng.randint(1, 3))
        )
        failure = Verdict("tests", "failed", findings, task_id=task_id, paths=("pkg/mod.py",))
        tasks.append(
            ScriptedTask(
                task_id,
                task_class,
                context=rng.randint(2000, 8000),
                output=rng.randint(300, 1500),
                failures=(failure,),
            )
        )
    return tasks


def attempt_passes(task: ScriptedTask, step: str) -> bool:
    """The scripted outcome of one attempt: 'first', 'targeted_fix' or 'restart'."""
    if task.task_class == "clean":
        return True
    if task.task_class == "fixable":
        return step in ("targeted_fix", "restart")
    if task.task_class == "restart":
        return step == "restart"
    return False


def three_tiers(task: ScriptedTask, ladder: RecoveryLadder) -> tuple[float, bool]:
    spent = full_attempt(task, 0)
    step = "first"
    errors_seen = 0
    kind = f"kind-{task.task_id}"  # one kind per task: breakers of other tasks do not interfere
    while not attempt_passes(task, step):
        errors_seen += error_tokens(task.failures)
        action = ladder.on_failure(task.task_id, kind, task.failures)
        if action.kind == "escalate":
            return spent, False
        step = action.kind
        if action.kind == "targeted_fix":
            spent += targeted_fix(task)
        else:
            spent += full_attempt(task, error_tokens(action.feedback))
    ladder.on_success(task.task_id, kind)
    return spent, True


def always_restart(task: ScriptedTask) -> tuple[float, bool]:
    spent = full_attempt(task, 0)
    errors = 0
    for _ in range(2):  # three attempts in all, then escalate
        if attempt_passes(task, "restart" if errors else "first"):
            return spent, True
        errors += error_tokens(task.failures)
        spent += full_attempt(task, errors)
    return spent, attempt_passes(task, "restart")


def optimum(task: ScriptedTask) -> tuple[float, bool]:
    first = full_attempt(task, 0)
    if task.task_class == "clean":
        return first, True
    if task.task_class == "fixable":
        return first + targeted_fix(task), True
    if task.task_class == "restart":
        return first + full_attempt(task, error_tokens(task.failures)), True
    return first, False  # one attempt is needed to learn it is hopeless


def run(count: int, seed: int) -> dict[str, Any]:
    tasks = scripted_tasks(count, seed)
    ladder = RecoveryLadder()
    totals: dict[str, dict[str, float]] = {"all": {}, "failing": {}}
    outcomes: dict[str, int] = {}
    decision_times: list[float] = []
    for policy in ("three_tiers", "always_restart", "optimum"):
        spent_all = spent_failing = 0.0
        succeeded = 0
        for task in tasks:
            if policy == "three_tiers":
                started = time.perf_counter()
                spent, ok = three_tiers(task, ladder)
                decision_times.append(time.perf_counter() - started)
            elif policy == "always_restart":
                spent, ok = always_restart(task)
            else:
                spent, ok = optimum(task)
            spent_all += spent
            spent_failing += spent if task.task_class != "clean" else 0
            succeeded += ok
        totals["all"][policy] = spent_all
        totals["failing"][policy] = spent_failing
        outcomes[policy] = succeeded
    by_class = {name: sum(1 for t in tasks if t.task_class == name) for name in MIX}
    ratios = {
        scope: {
            policy: round(values[policy] / values["optimum"], 3)
            for policy in ("three_tiers", "always_restart")
        }
        for scope, values in totals.items()
    }
    return {
        "tasks": count,
        "seed": seed,
        "mix": by_class,
        "tokens": {s: {p: round(v) for p, v in vals.items()} for s, vals in totals.items()},
        "ratio_to_optimum": ratios,
        "tasks_succeeded": outcomes,
        "target_three_tiers_le": 1.3,
        "target_met": ratios["all"]["three_tiers"] <= 1.3
        and ratios["failing"]["three_tiers"] <= 1.3,
        "ladder_decision_us_median": round(statistics.median(decision_times) * 1e6, 2),
        "cost_model": {
            "full_attempt": "C + O (+ E of errors so far for a restart), uncached",
            "targeted_fix": f"{CACHED_WEIGHT} x (C + O) cached prefix + D + E + F",
            "C": "2000-8000",
            "O": "300-1500",
            "D": "0.6 O",
            "F": "0.25 O",
            "E": "len(JSON of failing verdicts) / 4",
            "cached_weight": CACHED_WEIGHT,
        },
    }


def table(figures: dict[str, Any]) -> str:
    lines = [
        "| policy | tokens, all tasks | ratio | tokens, failing tasks | ratio | succeeded |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for policy in ("optimum", "three_tiers", "always_restart"):
        all_ratio = figures["ratio_to_optimum"]["all"].get(policy, 1.0)
        failing_ratio = figures["ratio_to_optimum"]["failing"].get(policy, 1.0)
        lines.append(
            f"| {policy.replace('_', ' ')} | {figures['tokens']['all'][policy]:,} | "
            f"{all_ratio:.3f} | {figures['tokens']['failing'][policy]:,} | "
            f"{failing_ratio:.3f} | {figures['tasks_succeeded'][policy]} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--cached-weight", type=float, default=CACHED_WEIGHT, help="1.0: no prefix cache"
    )
    args = parser.parse_args()
    CACHED_WEIGHT = args.cached_weight
    figures = {
        "figure": "recovery_tokens",
        **run(args.tasks, args.seed),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    of_record = args.cached_weight == parser.get_default("cached_weight")
    if of_record:  # the sensitivity run (another cached weight) is printed, not saved
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(table(figures))
    print(f"mix: {figures['mix']}; target met: {figures['target_met']}")
    print(f"wrote {RESULTS.relative_to(ROOT)}" if of_record else "not saved (sensitivity run)")
