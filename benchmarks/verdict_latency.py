"""Verdict latency for a one-file change: parser only, + semgrep warm, full, and semgrep cold.

Workspace: a scratch copy of samples/inventory (14 modules, 6 test files). Each sample edits
inventory/pricing.py (a new function appended, different every time) and asks CheckRunner for
verdicts on that one file, as the swarm does after an agent's change. Figures per scenario:
p50 / p95 / mean wall time over the samples.

- parser only: the tree-sitter syntax check alone (in process).
- parser + semgrep warm: level "quick" with the supervised `semgrep lsp` worker (rules loaded).
- parser + semgrep batch: level "quick", one `semgrep scan` process per check (rules prepared).
- semgrep cold (baseline): a fresh CheckRunner per check (rules copied, new process).
- full: level "full" (syntax, warm semgrep, compile, affected tests by pytest in the sandbox).
- task judgement, default "auto": what a task's one-file change waits for before it is
  committed — `ChangeChecker.check_change` at the task level (the workspace has tests, so the
  before and after checks are full) plus the acceptance verdict of a `fix` task; beside it the
  same judgement with `check_level = "quick"` (the opt-out, the old default).

    .venv/bin/python benchmarks/verdict_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from delegation_machine.engine.supervise.acceptance import AcceptanceJudge
from delegation_machine.engine.supervise.change import ChangeChecker, CheckPolicy
from delegation_machine.engine.supervise.checks import CheckRunner, syntax_verdict

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "inventory"
RESULTS = ROOT / "benchmarks" / "results" / "verdict_latency.json"
CHANGED = "inventory/pricing.py"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(samples_s: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in samples_s]
    return {
        "samples": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


class Edits:
    """A new, valid text of the changed file for every sample."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.n = 0

    def next(self) -> dict[str, str]:
        self.n += 1
        addition = f"\n\ndef bench_helper_{self.n}(x):\n    return x * {self.n}\n"
        return {CHANGED: self.base + addition}


async def measure(
    samples: int, run: Callable[[dict[str, str]], Awaitable[object]], edits: Edits
) -> list[float]:
    timings = []
    for _ in range(samples):
        files = edits.next()
        started = time.perf_counter()
        await run(files)
        timings.append(time.perf_counter() - started)
    return timings


async def main(quick: bool) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="dm-bench-latency-"))
    workspace = scratch / "inventory"
    shutil.copytree(SAMPLE, workspace)
    edits = Edits((workspace / CHANGED).read_text(encoding="utf-8"))
    counts = {"parser": 200, "warm": 40, "batch": 6, "cold": 4, "full": 6, "task": 8}
    if quick:
        counts = {name: max(3, n // 4) for name, n in counts.items()}
    results: dict[str, Any] = {}

    async def parser_only(files: dict[str, str]) -> object:
        return await asyncio.to_thread(syntax_verdict, files, [CHANGED], "bench")

    results["parser_only"] = summary(await measure(counts["parser"], parser_only, edits))

    warm = CheckRunner(workspace, warm_semgrep=True)
    started = time.perf_counter()
    ready = await warm.warm_up(timeout_s=180)
    results["warm_worker_start_s"] = round(time.perf_counter() - started, 2)
    if not ready:
        raise SystemExit(f"the warm semgrep worker did not start: {warm.semgrep._worker}")

    async def quick_warm(files: dict[str, str]) -> object:
        verdicts = await warm.check(files, [CHANGED], task_id="bench")
        assert all(v.kind != "error" for v in verdicts), verdicts
        return verdicts

    results["parser_semgrep_warm"] = summary(await measure(counts["warm"], quick_warm, edits))

    async def full(files: dict[str, str]) -> object:
        verdicts = await warm.check(files, [CHANGED], task_id="bench", level="full")
        # The sample keeps a seeded eval() in pricing.py, so semgrep fails; the tests pass.
        assert all(v.kind != "error" for v in verdicts), verdicts
        assert next(v for v in verdicts if v.check == "tests").passed, verdicts
        return verdicts

    results["full_with_affected_tests"] = summary(await measure(counts["full"], full, edits))
    results["affected_tests"] = warm.tests.select({}, [CHANGED])
    original = {CHANGED: (workspace / CHANGED).read_text(encoding="utf-8")}

    def read_text(rel: str) -> str | None:
        path = workspace / rel
        return path.read_text(encoding="utf-8") if path.is_file() else None

    judge = AcceptanceJudge(workspace, tests=warm.tests, read_text=read_text)
    for policy in ("auto", "quick"):
        checker = ChangeChecker(
            warm,
            level=cast(CheckPolicy, policy),
            is_quarantined=lambda _: False,
            has_tests=lambda: True,
        )

        async def task_judgement(files: dict[str, str], checker: ChangeChecker = checker) -> object:
            judged = await checker.check_change(
                original, files, [CHANGED], task_id="bench", agent_id="bench"
            )
            assert not judged.failures, judged.failures
            return await judge.judge(
                task_id="bench",
                kind="fix",
                instruction="fix",
                paths=[CHANGED],
                arguments={},
                before=original,
                after=files,
                baseline=judged.baseline,
                verdicts=judged.verdicts,
                diff="",
            )

        results[f"task_judgement_{policy}"] = summary(
            await measure(counts["task"], task_judgement, edits)
        )
    await warm.aclose()

    batch = CheckRunner(workspace)

    async def quick_batch(files: dict[str, str]) -> object:
        verdicts = await batch.check(files, [CHANGED], task_id="bench")
        assert all(v.kind != "error" for v in verdicts), verdicts
        return verdicts

    results["parser_semgrep_batch"] = summary(await measure(counts["batch"], quick_batch, edits))
    batch.close()

    async def cold(files: dict[str, str]) -> object:
        runner = CheckRunner(workspace)
        try:
            return await runner.check(files, [CHANGED], task_id="bench")
        finally:
            runner.close()

    results["semgrep_cold"] = summary(await measure(counts["cold"], cold, edits))
    shutil.rmtree(scratch, ignore_errors=True)

    warm_p50 = results["parser_semgrep_warm"]["p50_ms"]
    results["ratios"] = {
        "cold_over_warm_p50": round(results["semgrep_cold"]["p50_ms"] / warm_p50, 1),
        "batch_over_warm_p50": round(results["parser_semgrep_batch"]["p50_ms"] / warm_p50, 1),
        "task_auto_over_quick_p50": round(
            results["task_judgement_auto"]["p50_ms"] / results["task_judgement_quick"]["p50_ms"], 1
        ),
    }
    return results


def table(results: dict[str, Any]) -> str:
    rows = [
        ("parser only (tree-sitter)", "parser_only"),
        ("parser + semgrep, warm worker", "parser_semgrep_warm"),
        ("parser + semgrep, batch CLI", "parser_semgrep_batch"),
        ("semgrep cold (fresh runner) - baseline", "semgrep_cold"),
        ("full: + compile + affected tests", "full_with_affected_tests"),
        ("task judgement, default auto (full + acceptance)", "task_judgement_auto"),
        ("task judgement, quick opt-out - baseline", "task_judgement_quick"),
    ]
    lines = [
        "| scenario | samples | p50 (ms) | p95 (ms) | mean (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in rows:
        r = results[key]
        lines.append(
            f"| {label} | {r['samples']} | {r['p50_ms']:,} | {r['p95_ms']:,} | {r['mean_ms']:,} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the samples")
    args = parser.parse_args()
    began = time.perf_counter()
    figures = asyncio.run(main(args.quick))
    figures = {
        "figure": "verdict_latency",
        "workspace": "samples/inventory (scratch copy), one-file change to " + CHANGED,
        **figures,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - began, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(table(figures))
    print(f"warm worker start: {figures['warm_worker_start_s']} s; ratios: {figures['ratios']}")
    print(f"affected tests: {figures['affected_tests']}")
    print(f"wrote {RESULTS.relative_to(ROOT)} in {figures['wall_s']} s", file=sys.stderr)
