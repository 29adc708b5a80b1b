"""`delegation-machine run WORKSPACE --task TASK [--file PATH [--lines A-B]]`: delegate from
the terminal, no editor.

Owns the command's arguments and the editor-like targeting: `--file` and `--lines` become the
request's workspace-relative path and span, validated here (inside the workspace, an existing
UTF-8 file, a 1-based inclusive range within it) so a bad target is a usage error, exit 2.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from delegation_machine.engine.config import STATE_DIR_NAME
from delegation_machine.engine.protocol import Point, Span
from delegation_machine.server.cli._swarm_runner import (
    add_display_arguments,
    run_sync,
    run_tasks,
    workspace_argument,
)

_LINES = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


class TargetError(ValueError):
    """`--file` or `--lines` does not name a region of a file in the workspace."""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run delegated tasks on a workspace and print a summary",
        description=(
            "Run one or more delegated tasks on WORKSPACE with a swarm of agents. Built-in "
            "tasks need no model: 'fix', 'format', 'check', 'rename OLD NEW'. With --file "
            "(and --lines) a task targets one file or a selection, as from the editor; a "
            "natural-language task there goes straight to one agent. Exit code 0 when every "
            "task did what was asked (verified, or nothing needed changing), 1 when some did "
            "not (failed, escalated, changed nothing it was asked to, or held because it "
            "changed its own tests), 2 on a usage error, 3 when another process owns the "
            "workspace."
        ),
    )
    parser.add_argument("workspace", type=workspace_argument, help="the workspace folder")
    parser.add_argument(
        "--task",
        "-t",
        action="append",
        required=True,
        metavar="TASK",
        help="an instruction, e.g. 'fix' or 'rename old_name new_name' (repeatable)",
    )
    parser.add_argument(
        "--file",
        "-f",
        metavar="PATH",
        help=(
            "the file the tasks work on: absolute, relative to the current folder, or "
            "relative to WORKSPACE; it must lie inside WORKSPACE"
        ),
    )
    parser.add_argument(
        "--lines",
        "-l",
        metavar="A-B",
        help="the selection in --file: lines A to B, 1-based and inclusive (or one line, A)",
    )
    parser.add_argument("--agents", type=int, default=None, help="number of agent workers")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument(
        "--allow-test-changes",
        action="store_true",
        help="keep a task's edits to the tests, fixtures or check configuration that judge it "
        "(by default such a task is held, reported, and left unwritten)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait (600)")
    parser.add_argument(
        "--redis",
        nargs="?",
        const="",
        metavar="URL",
        help="send [scale] kinds to `delegation-machine worker` processes through this Redis "
        "(no password in it; without URL: $REDIS_URL); see docs/scale-out.md",
    )
    add_display_arguments(parser)
    parser.set_defaults(handler=handle_run)


def resolve_target_file(workspace: Path, given: str) -> str:
    """`given` as a workspace-relative POSIX path; TargetError if it is not a workspace file."""
    candidate = Path(given).expanduser()
    if not candidate.is_absolute() and not candidate.exists():
        candidate = workspace / candidate  # not found from here: a path inside the workspace
    real = candidate.resolve()
    try:
        relative = real.relative_to(workspace)
    except ValueError:
        raise TargetError(f"--file {given}: outside the workspace {workspace}") from None
    if relative.parts and relative.parts[0] == STATE_DIR_NAME:
        raise TargetError(f"--file {given}: {STATE_DIR_NAME}/ holds the server's own state")
    if not real.exists():
        raise TargetError(f"--file {given}: no such file in {workspace}")
    if not real.is_file():
        raise TargetError(f"--file {given}: not a regular file")
    return relative.as_posix()


def selection_span(text: str, lines: str, where: str) -> Span:
    """The span of 1-based inclusive lines 'A-B' (or 'A') of `text`; TargetError if invalid."""
    found = _LINES.match(lines)
    if found is None:
        raise TargetError(f"--lines {lines!r}: expected A-B or A, 1-based line numbers")
    first = int(found.group(1))
    last = int(found.group(2) or first)
    rows = text.split("\n")
    if text.endswith("\n"):
        rows.pop()  # the empty string after the final newline is not a line
    if first < 1 or last < first:
        raise TargetError(f"--lines {lines}: need 1 <= A <= B")
    if last > len(rows):
        raise TargetError(f"--lines {lines}: {where} has {len(rows)} lines")
    return Span(Point(first - 1, 0), Point(last - 1, len(rows[last - 1].rstrip("\r"))))


def request_target(
    workspace: Path, file: str | None, lines: str | None
) -> tuple[str | None, Span | None]:
    """The request's (path, span) from --file and --lines; TargetError on a bad target."""
    if file is None:
        if lines is not None:
            raise TargetError("--lines needs --file: the file the lines are in")
        return None, None
    path = resolve_target_file(workspace, file)
    if lines is None:
        return path, None
    try:
        text = (workspace / path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TargetError(f"--file {file}: not UTF-8 text, so it has no lines to select") from None
    return path, selection_span(text, lines, path)


def handle_run(args: argparse.Namespace) -> int:
    if args.agents is not None and args.agents < 1:
        print("error: --agents must be at least 1")
        return 2
    try:
        path, span = request_target(args.workspace, args.file, args.lines)
    except TargetError as exc:
        print(f"error: {exc}")
        return 2
    return run_sync(
        run_tasks(
            args.workspace,
            args.task,
            agents=args.agents,
            as_json=args.json,
            timeout_s=args.timeout,
            path=path,
            span=span,
            allow_test_changes=args.allow_test_changes,
            plain=args.plain,
            quiet=args.quiet,
            report_path=args.report,
            redis_url=args.redis,
        )
    )
