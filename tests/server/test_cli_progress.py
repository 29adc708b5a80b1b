"""The CLI's progress views: live on a terminal (rich), plain lines otherwise, quiet on request.

The live view is checked on a real pseudo-terminal (the CLI cannot tell it from a person's
terminal) and, for its content, by rendering it from real task-board records.
"""

from __future__ import annotations

import io
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import TaskState
from delegation_machine.engine.schedule.board import TaskRecord
from delegation_machine.server.cli.progress import RunProgress, display_mode

CLI = [sys.executable, "-m", "delegation_machine.server"]
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "inventory"
PROGRESS_LINE = re.compile(r"^\s*\d+\.\d\ds  t-\w+\.\d+\s+format\s+(\S+)", re.MULTILINE)
SUMMARY = re.compile(r"(\d+)/(\d+) tasks done")


def scratch(tmp_path: Path) -> Path:
    workspace = tmp_path / "inventory"
    shutil.copytree(SAMPLE, workspace, ignore=shutil.ignore_patterns("__pycache__", ".delegation"))
    return workspace


def run_plain(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def run_on_terminal(*args: str) -> str:
    """The CLI's output when its stdout is a pseudo-terminal (as in a person's shell)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([*CLI, *args], stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal closed when the process exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=300) == 0
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_output_that_is_not_a_terminal_gets_one_line_per_state_change(tmp_path: Path) -> None:
    output = run_plain("run", str(scratch(tmp_path)), "--task", "format")
    states = PROGRESS_LINE.findall(output)
    tasks = len(list((SAMPLE).rglob("*.py")))
    assert states.count("running") == tasks  # each task's start, once
    assert {"waiting", "running", "checking"} <= set(states)
    assert states.count("verified") + states.count("no-change") == tasks
    assert "\x1b[" not in output  # no terminal control codes in a log
    assert SUMMARY.search(output).groups() == (str(tasks), str(tasks))  # type: ignore[union-attr]


def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    output = run_plain("run", str(scratch(tmp_path)), "--task", "format", "--quiet")
    assert PROGRESS_LINE.findall(output) == []
    assert SUMMARY.search(output) is not None and "agent" in output


def test_a_terminal_gets_the_live_display_and_a_rich_summary(tmp_path: Path) -> None:
    report = tmp_path / "run.html"
    output = run_on_terminal(
        "run", str(scratch(tmp_path)), "--task", "format", "--report", str(report)
    )
    assert PROGRESS_LINE.findall(output) == []  # not the log lines
    assert "\x1b[?25l" in output  # the live view hides the cursor while it redraws
    assert "━" in output  # progress bar glyphs
    assert "┏" in output and "quarantined" in output  # the summaries as rich tables
    assert f"report: {report}" in output and report.read_text().startswith("<!DOCTYPE html>")


def test_plain_forces_lines_on_a_terminal(tmp_path: Path) -> None:
    output = run_on_terminal("run", str(scratch(tmp_path)), "--task", "format", "--plain")
    assert "running" in {state for state in PROGRESS_LINE.findall(output)}
    assert "┏" not in output


def record(task_id: str, state: TaskState, agent: str | None, path: str) -> TaskRecord:
    spec = TaskSpec(task_id=task_id, kind="fix", paths=(path,), plan_id="t-plan")
    return TaskRecord(spec=spec, state=state, agent=agent)


def test_the_live_view_shows_each_plan_and_each_busy_agent() -> None:
    records = {
        "t-plan.1": record("t-plan.1", TaskState.VERIFIED, "builtin:fix@worker-1", "a.py"),
        "t-plan.2": record("t-plan.2", TaskState.RUNNING, "builtin:fix@worker-2", "b.py"),
        "t-plan.3": record("t-plan.3", TaskState.WAITING, None, "c.py"),
    }
    now = [100.0]
    progress = RunProgress(
        io.StringIO(),
        "live",
        task_of=records.get,
        plan_size=lambda plan_id: 3,
        clock=lambda: now[0],
    )
    for task_id, entry in records.items():
        progress.observe(task_id, entry.state)
    now[0] = 102.5
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(progress.renderable())
    screen = console.export_text()
    assert re.search(r"fix t-plan .*1/3", screen)  # one finished of three
    busy = [line for line in screen.splitlines() if "worker-2" in line]
    assert len(busy) == 1 and "t-plan.2" in busy[0] and "b.py" in busy[0] and "2.5s" in busy[0]
    assert "worker-1" not in screen  # a finished task's agent is not busy
    assert [t.task_id for t in progress.busy()] == ["t-plan.2"]


def test_the_mode_follows_the_flags_and_the_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert display_mode(Terminal(), plain=False, quiet=False) == "live"
    assert display_mode(Terminal(), plain=True, quiet=False) == "plain"
    assert display_mode(io.StringIO(), plain=False, quiet=False) == "plain"
    assert display_mode(Terminal(), plain=False, quiet=True) == "quiet"


def test_an_edit_check_without_a_plan_is_not_shown_and_never_raises() -> None:
    edit = TaskRecord(spec=TaskSpec(task_id="edit-7", kind="check", plan_id="edit-7"))
    progress = RunProgress(
        io.StringIO(), "plain", task_of={"edit-7": edit}.get, plan_size=lambda plan_id: None
    )
    progress.observe("edit-7", TaskState.RUNNING)  # a rollback's file change being checked
    progress.observe("gone", TaskState.DONE)  # a record the board has forgotten
    assert progress.busy() == []
