"""The command line: exit codes, usage errors, --help on every command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "delegation_machine.server"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_every_command_has_help() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    commands = ["serve", "run", "demo"]
    for command in commands:
        assert command in top.stdout
        result = run_cli(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("run",),  # missing workspace and task
        ("run", "/definitely/not/a/folder", "--task", "fix"),
        ("run", ".", "--task", "fix", "--agents", "0"),
        ("no-such-command",),
        ("serve", "--tcp", "nonsense"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "error" in (result.stdout + result.stderr).lower()


def test_run_exits_0_when_every_task_verified(tmp_path: Path) -> None:
    workspace = tmp_path / "inventory"
    shutil.copytree(ROOT / "samples" / "inventory", workspace)
    result = run_cli("run", str(workspace), "--task", "format", "--agents", "2", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["tasks"]
    # Files ruff already formats need no change: no-change with the goal held, never verified.
    assert all(task["goal_met"] for task in report["tasks"])
    states = {task["state"] for task in report["tasks"]}
    assert "verified" in states and states <= {"verified", "no-change"}
    workers = {task["agent"].split("@")[1] for task in report["tasks"] if task["agent"]}
    assert workers and workers <= {"worker-1", "worker-2"}  # --agents 2 is honoured
    assert all(agent["pretrusted"] for agent in report["agents"])
    assert report["ledger_events"] > len(report["tasks"])


def test_run_exits_1_when_a_task_cannot_be_done(tmp_path: Path) -> None:
    workspace = tmp_path / "w"
    workspace.mkdir()
    (workspace / "a.py").write_text("x = 1\n")
    result = run_cli("run", str(workspace), "--task", "rename missing_symbol other")
    assert result.returncode == 1
    assert "no symbol named" in result.stdout


def test_a_check_over_a_failing_workspace_exits_1_listing_each_failure(tmp_path: Path) -> None:
    workspace = tmp_path / "w"
    (workspace / "tests").mkdir(parents=True)
    (workspace / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (workspace / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
    )
    result = run_cli("run", str(workspace), "--task", "check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed: " in result.stdout and "test_add" in result.stdout
    assert "0/1 tasks done" in result.stdout


def test_a_bad_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    workspace = tmp_path / "w"
    (workspace / ".delegation").mkdir(parents=True)
    (workspace / "a.py").write_text("x = 1\n")
    (workspace / ".delegation" / "config.toml").write_text("check_level = [\n")
    result = run_cli("run", str(workspace), "--task", "check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "config.toml" in result.stderr
    (workspace / ".delegation" / "config.toml").write_text("no_such_key = 1\n")
    unknown = run_cli("run", str(workspace), "--task", "check")
    assert unknown.returncode == 2 and "no_such_key" in unknown.stderr


def test_a_fix_to_a_test_file_is_held_unless_test_changes_are_allowed(tmp_path: Path) -> None:
    workspace = tmp_path / "w"
    (workspace / "tests").mkdir(parents=True)
    test_text = (
        "import yaml\n\n\ndef load_fixture(text):\n    return yaml.load(text)\n\n\n"
        "def test_nothing():\n    assert load_fixture is not None\n"
    )
    (workspace / "tests" / "test_data.py").write_text(test_text)
    held = run_cli("run", str(workspace), "--task", "fix", "--file", "tests/test_data.py")
    assert held.returncode == 1, held.stdout + held.stderr
    assert "held: " in held.stdout and "--allow-test-changes" in held.stdout
    assert (workspace / "tests" / "test_data.py").read_text() == test_text  # left unwritten
    allowed = run_cli(
        "run",
        str(workspace),
        "--task",
        "fix",
        "--file",
        "tests/test_data.py",
        "--allow-test-changes",
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "yaml.safe_load(text)" in (workspace / "tests" / "test_data.py").read_text()
