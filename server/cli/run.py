"""`delegation-machine run WORKSPACE --task TASK`: delegate from the terminal, no editor."""

from __future__ import annotations

import argparse
from typing import Any

from delegation_machine.server.cli._swarm_runner import run_sync, run_tasks, workspace_argument


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run delegated tasks on a workspace and print a summary",
        description=(
            "Run one or more delegated tasks on WORKSPACE with a swarm of agents. Built-in "
            "tasks need no model: 'fix', 'format', 'check', 'rename OLD NEW'. Exit code 0 "
            "when every task verified, 1 when some failed, 2 on a usage error."
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
    parser.add_argument("--agents", type=int, default=None, help="number of agent workers")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait (600)")
    parser.set_defaults(handler=handle_run)


def handle_run(args: argparse.Namespace) -> int:
    if args.agents is not None and args.agents < 1:
        print("error: --agents must be at least 1")
        return 2
    return run_sync(
        run_tasks(
            args.workspace, args.task, agents=args.agents, as_json=args.json, timeout_s=args.timeout
        )
    )
