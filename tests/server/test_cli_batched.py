"""A workspace-wide fix + format at check level quick runs batched and gives the tools' files.

On code nobody here wrote (two subpackages of the networkx installed in the venv), the swarm's
`run --task fix --task format` must leave exactly the files that running the tools it wraps by
hand leaves (semgrep --autofix with the bundled rules, ruff check --fix, ruff format), while
the plan is cut into a few batches by the cost model instead of one task per file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import networkx

from delegation_machine.engine.plan.builtin import MIN_BATCH_BYTES
from delegation_machine.engine.rules import bundled_semgrep_rules

BIN = Path(sys.executable).parent
CLI = [sys.executable, "-m", "delegation_machine.server"]
SUBPACKAGES = ("generators", "readwrite")
OFFLINE = {"SEMGREP_ENABLE_VERSION_CHECK": "0", "SEMGREP_SEND_METRICS": "off"}


def _corpus(target: Path) -> Path:
    source = Path(networkx.__file__).parent
    for name in SUBPACKAGES:
        shutil.copytree(
            source / name, target / "networkx" / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    (target / ".semgrepignore").write_text("", encoding="utf-8")  # scan tests/ too, as we do
    return target


def _python_texts(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*.py"))
        if ".delegation" not in p.parts
    }


def _by_hand(workspace: Path) -> None:
    semgrep = [str(BIN / "semgrep"), "scan", "--autofix", "--quiet", "--metrics=off"]
    semgrep += ["--disable-version-check", "--no-git-ignore"]
    for rule in bundled_semgrep_rules():
        semgrep += ["--config", str(rule)]
    ruff = str(BIN / "ruff")
    for argv in (
        [*semgrep, "."],
        [ruff, "check", "--fix", "--exit-zero", "--no-cache", "--quiet", "."],
        [ruff, "format", "--no-cache", "--quiet", "."],
    ):
        done = subprocess.run(
            argv, cwd=workspace, env={**os.environ, **OFFLINE}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]


def test_batched_fix_and_format_leave_the_files_the_tools_leave(tmp_path: Path) -> None:
    by_hand = _corpus(tmp_path / "by-hand")
    _by_hand(by_hand)
    expected = _python_texts(by_hand)

    workspace = _corpus(tmp_path / "swarm")
    original = _python_texts(workspace)
    code_bytes = sum(len(t.encode()) for r, t in original.items() if "/tests/" not in r)
    assert code_bytes > MIN_BATCH_BYTES  # large enough for more than one code batch
    (workspace / ".delegation").mkdir()
    (workspace / ".delegation" / "config.toml").write_text('check_level = "quick"\n')
    argv = [*CLI, "run", str(workspace), "--task", "fix", "--task", "format", "--agents", "4"]
    done = subprocess.run(
        [*argv, "--allow-test-changes", "--json"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    tasks = report["tasks"]
    fixes = [t for t in tasks if t["kind"] == "fix"]
    formats = [t for t in tasks if t["kind"] == "format"]
    # two batches of code, one of tests, per plan: not one task per file
    assert len(fixes) == len(formats) == 3, [(t["task_id"], t["state"]) for t in tasks]
    assert all(t["goal_met"] for t in tasks), [(t["task_id"], t["message"]) for t in tasks]
    assert original != expected  # the tools did change something
    got = _python_texts(workspace)
    differing = sorted(rel for rel in expected if got.get(rel) != expected[rel])
    assert differing == []
