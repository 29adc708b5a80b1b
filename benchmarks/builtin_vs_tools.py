"""The built-in swarm's `fix` + `format` against the tools it wraps, run directly, same run.

Corpora (each run works on a fresh copy; nothing is modified in place):
- small: samples/inventory (21 Python files, with tests).
- large: a copy of networkx as installed in .venv (580 files, about 190k lines of Python that
  nobody here wrote, with its own tests).

Per corpus and per contender, wall time and CPU time (this process's children: user + sys)
over several runs; the figure is the median, with min and max:
- direct (the baseline): `semgrep scan --autofix` with the bundled rules (with an empty
  `.semgrepignore`, so that it scans test folders as the swarm does), then
  `ruff check --fix --exit-zero`, then `ruff format` — what a user runs by hand;
- swarm, check level quick: `delegation-machine run COPY --task fix --task format` with
  `check_level = "quick"` (every change parsed and rescanned by semgrep before it is kept);
- swarm, check level auto (the default; small corpus only): as above, and each change also
  waits for the tests it affects. On networkx that would run its test suite per changed
  module, which is a different job from the direct tools', so it is not timed there.
Every swarm run uses `--allow-test-changes` (the direct tools edit test files too) and
`--quiet`. After each swarm run its Python files are compared with the direct tools' output:
the figures say how many files differ and list them, so speed is never bought with a
different result.

    .venv/bin/python benchmarks/builtin_vs_tools.py [--runs N] [--large-runs N] [--skip-large]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import networkx

from delegation_machine.engine.rules import bundled_semgrep_rules

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "builtin_vs_tools.json"
BIN = Path(sys.executable).parent
SMALL = ROOT / "samples" / "inventory"
LARGE = Path(networkx.__file__).resolve().parent
IGNORED = shutil.ignore_patterns("__pycache__", ".delegation", ".ruff_cache", "*.pyc")
OFFLINE = {"SEMGREP_ENABLE_VERSION_CHECK": "0", "SEMGREP_SEND_METRICS": "off"}


def copy_corpus(source: Path, parent: Path) -> Path:
    """A fresh copy; networkx goes into a folder of its own so its imports stay absolute."""
    target = parent / ("ws" if source == SMALL else "ws/networkx")
    shutil.copytree(source, target, ignore=IGNORED)
    return parent / "ws"


def python_texts(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*.py"))
        if ".delegation" not in path.parts
    }


def timed(commands: list[list[str]], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s of the children) of running `commands` one after the other."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for argv in commands:
        done = subprocess.run(
            argv, cwd=cwd, env={**os.environ, **OFFLINE}, capture_output=True, text=True
        )
        if done.returncode not in (0, 1):
            raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def direct_commands() -> list[list[str]]:
    semgrep = [str(BIN / "semgrep"), "scan", "--autofix", "--quiet", "--metrics=off"]
    semgrep += ["--disable-version-check", "--no-git-ignore"]
    for rule in bundled_semgrep_rules():
        semgrep += ["--config", str(rule)]
    ruff = str(BIN / "ruff")
    return [
        [*semgrep, "."],
        [ruff, "check", "--fix", "--exit-zero", "--no-cache", "--quiet", "."],
        [ruff, "format", "--no-cache", "--quiet", "."],
    ]


def swarm_command(workspace: Path) -> list[str]:
    return [
        str(BIN / "delegation-machine"),
        "run",
        str(workspace),
        "--task",
        "fix",
        "--task",
        "format",
        "--allow-test-changes",
        "--quiet",
    ]


def figures(samples: list[tuple[float, float]]) -> dict[str, Any]:
    walls = [wall for wall, _ in samples]
    cpus = [cpu for _, cpu in samples]
    return {
        "runs": len(samples),
        "wall_median_s": round(statistics.median(walls), 2),
        "wall_min_s": round(min(walls), 2),
        "wall_max_s": round(max(walls), 2),
        "cpu_median_s": round(statistics.median(cpus), 2),
    }


def measure(source: Path, runs: int, levels: list[str]) -> dict[str, Any]:
    direct: list[tuple[float, float]] = []
    expected: dict[str, str] = {}
    original: dict[str, str] = {}
    swarm: dict[str, list[tuple[float, float]]] = {level: [] for level in levels}
    differing: dict[str, set[str]] = {level: set() for level in levels}
    for _ in range(runs):  # interleaved, so drift in the machine's load hits both alike
        with tempfile.TemporaryDirectory(prefix="dm-bench-direct-") as folder:
            workspace = copy_corpus(source, Path(folder))
            original = python_texts(workspace)
            # the swarm scans test files too: turn off semgrep's default ignores (tests/, …)
            (workspace / ".semgrepignore").write_text("", encoding="utf-8")
            direct.append(timed(direct_commands(), workspace))
            expected = python_texts(workspace)
        for level in levels:
            with tempfile.TemporaryDirectory(prefix="dm-bench-swarm-") as folder:
                workspace = copy_corpus(source, Path(folder))
                (workspace / ".delegation").mkdir()
                config = workspace / ".delegation" / "config.toml"
                config.write_text(f'check_level = "{level}"\n', encoding="utf-8")
                swarm[level].append(timed([swarm_command(workspace)], workspace))
                got = python_texts(workspace)
                differing[level] |= {rel for rel in expected if got.get(rel) != expected[rel]}
    base = figures(direct)
    result: dict[str, Any] = {
        "corpus": str(source.relative_to(ROOT) if source.is_relative_to(ROOT) else source.name),
        "python_files": len(original),
        "python_lines": sum(text.count("\n") for text in original.values()),
        "files_changed_by_the_tools": sum(original[r] != expected[r] for r in original),
        "direct_tools": base,
    }
    for level in levels:
        got = figures(swarm[level])
        result[f"swarm_{level}"] = {
            **got,
            "wall_ratio_vs_direct": round(got["wall_median_s"] / base["wall_median_s"], 2),
            "cpu_ratio_vs_direct": round(got["cpu_median_s"] / max(base["cpu_median_s"], 1e-9), 2),
            "files_differing_from_direct": sorted(differing[level]),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs on the small corpus (5)")
    parser.add_argument("--large-runs", type=int, default=3, help="runs on networkx (3)")
    parser.add_argument("--skip-large", action="store_true", help="only the small corpus")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "builtin_vs_tools",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "small": measure(SMALL, args.runs, ["quick", "auto"]),
    }
    if not args.skip_large:
        report["large"] = measure(LARGE, args.large_runs, ["quick"])
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
