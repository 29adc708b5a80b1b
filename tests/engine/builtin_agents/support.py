"""Helpers for the built-in agents' tests: real semgrep, ruff and the sample's own test suite.

The sample under samples/ is never modified: tests work on copies in tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from delegation_machine.engine.agents.base import AgentWork, FileVersion, apply_edits
from delegation_machine.engine.protocol import (
    AuditTrail,
    ContextPackage,
    DelegationRequest,
    EnvironmentSnapshot,
    GoalHint,
    Mutation,
    TaskManifest,
)

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "samples" / "inventory"
SAMPLES_README = REPO / "samples" / "README.md"


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def run_semgrep(paths: list[Path], cwd: Path) -> dict:
    """Real semgrep with the bundled rules, offline; returns the parsed JSON report."""
    import json

    from delegation_machine.engine.rules import bundled_semgrep_rules

    argv = [tool("semgrep"), "scan", "--json", "--quiet", "--disable-version-check"]
    argv += ["--metrics=off", "--no-git-ignore"]
    for rule in bundled_semgrep_rules():
        argv += ["--config", str(rule)]
    argv += [str(p) for p in paths]
    env = {**os.environ, "SEMGREP_ENABLE_VERSION_CHECK": "0", "SEMGREP_SEND_METRICS": "off"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict = json.loads(done.stdout)
    return report


def run_sample_tests(root: Path) -> subprocess.CompletedProcess[str]:
    """The sample's own pytest suite, run on a (modified) copy."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def python_files(root: Path) -> list[str]:
    """Workspace-relative paths of the Python files under `root`, sorted."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if "__pycache__" not in p.parts and not any(part.startswith(".") for part in p.parts)
    )


def make_work(
    root: Path,
    paths: list[str],
    *,
    kind: str,
    instruction: str = "",
    arguments: dict[str, object] | None = None,
    overrides: dict[str, str] | None = None,
    index: object = None,
    request_path: str | None = None,
) -> AgentWork:
    """An AgentWork over real files in `root`; `overrides` are unsaved buffer texts (version 7)."""
    overrides = overrides or {}

    def read_file(rel: str) -> FileVersion:
        if rel in overrides:
            return FileVersion(overrides[rel], 7)
        return FileVersion((root / rel).read_text(encoding="utf-8"), 1)

    package = ContextPackage(
        manifest=TaskManifest(task_id="t1", plan_id="p1", kind=kind, instruction=instruction),
        environment=EnvironmentSnapshot(workspace_version=1, paths=tuple(paths)),
        goal=GoalHint(text=instruction or kind, focus_paths=tuple(paths)),
        audit=AuditTrail(requested_by="test", created_at=0.0),
    )
    return AgentWork(
        task_id="t1",
        package=package,
        request=DelegationRequest(instruction=instruction or kind, kind=kind, path=request_path),
        files={rel: read_file(rel) for rel in paths},
        workspace_root=root,
        arguments=arguments or {},
        index=index,
        list_workspace_files=lambda: python_files(root),
        read_file=read_file,
    )


def apply_mutations(root: Path, work: AgentWork, mutations: tuple[Mutation, ...]) -> dict[str, str]:
    """Apply each Mutation to the text it was computed against; write and return the results."""
    results = {}
    for mutation in mutations:
        base = (
            work.files[mutation.path]
            if mutation.path in work.files
            else work.read_file(mutation.path)
        )
        assert mutation.base_version == base.version
        assert mutation.task_id == work.task_id
        text = apply_edits(base.text, mutation.edits)
        (root / mutation.path).write_text(text, encoding="utf-8")
        results[mutation.path] = text
    assert len(results) == len(mutations), "one Mutation per file"
    return results


def pin_ruff_config(root: Path, select: str = '["F"]') -> None:
    """A ruff.toml in a scratch workspace, so the machine's ruff defaults do not leak in."""
    (root / "ruff.toml").write_text(f"[lint]\nselect = {select}\n", encoding="utf-8")


def snapshot_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def readme_rows(section: str) -> list[tuple[str, int, str, str]]:
    """(path, line, second column, rest) for each table row of a samples/README.md section."""
    import re

    text = SAMPLES_README.read_text(encoding="utf-8").split(f"### {section}", 1)[1]
    text = text.split("\n### ", 1)[0]
    rows = []
    for match in re.finditer(r"^\| `([^`:]+):(\d+)` \| ([^|]+?) \|(.*)$", text, re.MULTILINE):
        rows.append(
            (match.group(1), int(match.group(2)), match.group(3).strip("` "), match.group(4))
        )
    return rows
