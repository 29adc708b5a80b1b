"""`run --file PATH [--lines A-B]`: the editor's targeting from the command line.

Bad targets are usage errors (exit 2, one clear line, nothing written to the workspace);
a good one reaches the swarm as the request's path and selection, so a natural-language
task goes straight to one agent. The model is the scripted OpenAI-compatible server (a real
local HTTP server standing in for vLLM or a hosted API), configured in .delegation/config.toml.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from delegation_machine.engine.inference.scripted import (
    RecordedRequest,
    ScriptedServer,
    ScriptedTurn,
)
from delegation_machine.engine.protocol import Point, Span
from delegation_machine.server.cli.run import (
    TargetError,
    request_target,
    resolve_target_file,
    selection_span,
)

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "delegation_machine.server"]
TARGET = "inventory/money.py"
SIGNATURE = 'def format_money(amount: Decimal, currency: str = "EUR") -> str:\n'
DOCSTRING = '    """The amount with two decimals and thousands separators, then the currency."""\n'


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "inventory"
    shutil.copytree(
        ROOT / "samples" / "inventory",
        target,
        ignore=shutil.ignore_patterns(".delegation", "__pycache__"),
    )
    return target


# --- validation, in process --------------------------------------------------------------


def test_a_file_is_found_from_here_or_inside_the_workspace(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace.parent)
    assert resolve_target_file(workspace, TARGET) == TARGET  # relative to the workspace
    assert resolve_target_file(workspace, f"inventory/{TARGET}") == TARGET  # from here
    assert resolve_target_file(workspace, str(workspace / TARGET)) == TARGET  # absolute


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ws: str(ws.parent / "elsewhere.py"), "outside the workspace"),
        (lambda ws: "../elsewhere.py", "outside the workspace"),
        (lambda ws: "inventory/no_such_module.py", "no such file"),
        (lambda ws: "inventory", "not a regular file"),
        (lambda ws: ".delegation/config.toml", "server's own state"),
        (lambda ws: "escape.py", "outside the workspace"),  # a symlink out of the workspace
    ],
)
def test_bad_files_are_refused(workspace: Path, make, message: str) -> None:
    (workspace.parent / "elsewhere.py").write_text("x = 1\n")
    (workspace / "escape.py").symlink_to(workspace.parent / "elsewhere.py")
    (workspace / ".delegation").mkdir()
    (workspace / ".delegation" / "config.toml").write_text("")
    with pytest.raises(TargetError, match=message):
        resolve_target_file(workspace, make(workspace))


def test_lines_become_the_selection_span() -> None:
    text = "a = 1\nbb = 2\r\nccc = 3\n"
    assert selection_span(text, "1-2", "f.py") == Span(Point(0, 0), Point(1, 6))
    assert selection_span(text, "3", "f.py") == Span(Point(2, 0), Point(2, 7))
    assert selection_span(text, " 2 - 3 ", "f.py") == Span(Point(1, 0), Point(2, 7))
    assert selection_span("no newline at the end", "1", "f.py").end == Point(0, 21)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("3-2", "need 1 <= A <= B"),
        ("0-1", "need 1 <= A <= B"),
        ("1-4", "f.py has 3 lines"),
        ("4", "f.py has 3 lines"),
        ("one-two", "expected A-B or A"),
        ("1-2-3", "expected A-B or A"),
        ("-2", "expected A-B or A"),
        ("", "expected A-B or A"),
    ],
)
def test_bad_ranges_are_refused(lines: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        selection_span("a = 1\nb = 2\nc = 3\n", lines, "f.py")


def test_lines_need_a_file_and_a_text_file(workspace: Path) -> None:
    with pytest.raises(TargetError, match="--lines needs --file"):
        request_target(workspace, None, "1-2")
    (workspace / "blob.py").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(TargetError, match="not UTF-8 text"):
        request_target(workspace, "blob.py", "1")
    assert request_target(workspace, TARGET, None) == (TARGET, None)


# --- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (["--file", "/etc/hostname"], "outside the workspace"),
        (["--file", "inventory/missing.py"], "no such file"),
        (["--file", TARGET, "--lines", "9-3"], "need 1 <= A <= B"),
        (["--file", TARGET, "--lines", "1-100000"], "lines"),
        (["--lines", "1-2"], "--lines needs --file"),
    ],
)
def test_bad_targets_are_usage_errors_that_touch_nothing(
    workspace: Path, target: list[str], message: str
) -> None:
    before = sorted(p.relative_to(workspace) for p in workspace.rglob("*"))
    result = run_cli("run", str(workspace), "--task", "document this function", *target)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.startswith("error: ") and message in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(p.relative_to(workspace) for p in workspace.rglob("*")) == before


AGENT_TURNS = [
    ScriptedTurn(content=json.dumps({"tool": "read_file", "path": TARGET})),
    ScriptedTurn(
        content=json.dumps(
            {
                "tool": "propose_edit",
                "path": TARGET,
                "old": SIGNATURE,
                "new": SIGNATURE + DOCSTRING,
                "description": "document format_money",
                "uses": [1],
            }
        )
    ),
    ScriptedTurn(content=json.dumps({"tool": "finish", "summary": "documented", "uses": [2]})),
]


def agent_then_refuse(seen: RecordedRequest) -> ScriptedTurn:
    """The agent's turns by its trace length; anything else (a planner, a reviewer) refused."""
    if "# Task " not in json.dumps(seen.body["messages"]):
        return ScriptedTurn(status=400, error="this script answers only the agent")
    steps_so_far = len(re.findall(r"^%\d+ = ", seen.body["messages"][-1]["content"], re.M))
    return AGENT_TURNS[min(steps_so_far, len(AGENT_TURNS) - 1)]


@pytest.fixture
def model_workspace(workspace: Path) -> Iterator[tuple[Path, ScriptedServer]]:
    server = ScriptedServer(agent_then_refuse).start()
    (workspace / ".delegation").mkdir()
    (workspace / ".delegation" / "config.toml").write_text(
        f'[inference]\nprovider = "scripted"\nbase_url = "{server.base_url}"\nmodel = "m"\n'
    )
    yield workspace, server
    server.stop()


def report_of(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report: dict = json.loads(result.stdout)
    return report


def test_document_this_function_on_a_selection(
    model_workspace: tuple[Path, ScriptedServer],
) -> None:
    workspace, server = model_workspace
    first = (workspace / TARGET).read_text().splitlines().index(SIGNATURE.rstrip("\n")) + 1
    lines = f"{first}-{first + 1}"
    result = run_cli(
        "run", str(workspace), "--task", "document this function", "--file", TARGET,
        "--lines", lines, "--json",
    )  # fmt: skip
    report = report_of(result)
    assert report["errors"] == []
    llm_tasks = [t for t in report["tasks"] if t["kind"] == "llm"]
    assert [t["files"] for t in llm_tasks] == [[TARGET]]  # one agent, on the file
    prompts = [json.dumps(r.body["messages"]) for r in server.requests]
    assert prompts and not any("# Planning" in p for p in prompts)
    # the document template, on the function the selection is in
    assert f"Document `format_money` in {TARGET}" in prompts[0]
    assert f"(selection: lines {lines})" in prompts[0]
    assert len([p for p in prompts if "# Task " in p]) >= len(AGENT_TURNS)


def test_a_request_on_a_file_goes_to_one_agent(
    model_workspace: tuple[Path, ScriptedServer],
) -> None:
    workspace, server = model_workspace
    instruction = "say what format_money returns"
    result = run_cli("run", str(workspace), "--task", instruction, "--file", TARGET, "--json")
    report = report_of(result)
    assert [(t["kind"], t["files"]) for t in report["tasks"]] == [("llm", [TARGET])]
    prompts = [json.dumps(r.body["messages"]) for r in server.requests]
    assert prompts and not any("# Planning" in p for p in prompts)
    assert f"In {TARGET}: {instruction}" in prompts[0] and f"## {TARGET}" in prompts[0]
