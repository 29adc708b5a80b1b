"""`delegation-machine demo`: the main job on the embedded default, with no model.

Copies the sample workspace to a scratch folder (samples/ is never modified) and runs a swarm
of built-in agents over it: fix every file, format it, rename a symbol. Every change is judged
by the supervisors (its affected tests included) and kept only when it did what was asked; a
separate `check` task is not part of the default, since the sample keeps findings on purpose
that need a human (a `check` over them fails, listing each).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from delegation_machine.server.cli._swarm_runner import (
    add_display_arguments,
    run_sync,
    run_tasks,
)

DEFAULT_TASKS = ("fix", "format", "rename calc_total compute_order_total")


def default_sample() -> Path:
    return Path(__file__).resolve().parents[2] / "samples" / "inventory"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run built-in agents over a scratch copy of the sample project",
        description=(
            "Copy a sample workspace to a scratch folder and run a swarm of built-in agents "
            "(no model) over it, printing progress and a summary table."
        ),
    )
    parser.add_argument("--sample", type=Path, default=None, help="sample folder to copy")
    parser.add_argument("--into", type=Path, default=None, help="scratch folder (kept)")
    parser.add_argument("--agents", type=int, default=None, help="number of agent workers")
    parser.add_argument(
        "--task",
        "-t",
        action="append",
        default=None,
        metavar="TASK",
        help=f"instructions to run (default: {', '.join(DEFAULT_TASKS)})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    add_display_arguments(parser)
    parser.set_defaults(handler=handle_demo)


def handle_demo(args: argparse.Namespace) -> int:
    sample = (args.sample or default_sample()).resolve()
    if not sample.is_dir():
        print(f"error: sample folder not found: {sample}")
        return 2
    scratch_parent = args.into or Path(tempfile.mkdtemp(prefix="delegation-demo-"))
    scratch = scratch_parent / sample.name
    if scratch.exists():
        print(f"error: {scratch} already exists; choose another --into")
        return 2
    shutil.copytree(sample, scratch, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    if not args.json:
        print(f"Delegation Machine demo: a swarm of built-in agents on a copy of {sample.name}")
        print(f"scratch workspace: {scratch}\n")
    return run_sync(
        run_tasks(
            scratch,
            args.task or DEFAULT_TASKS,
            agents=args.agents,
            as_json=args.json,
            plain=args.plain,
            quiet=args.quiet,
            report_path=args.report or scratch / ".delegation" / "report.html",
        )
    )
