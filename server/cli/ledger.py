"""`delegation-machine ledger show|replay|fork|report`: the event ledger, time travel over it,
and the HTML picture of a past run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.timetravel import ReplayError, TimeTravel
from delegation_machine.server.report import ReportError, write_run_report


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ledger",
        help="show the ledger, replay the workspace and agents to a step, fork a task",
        description=(
            "Read the workspace's ledger (.delegation/ledger.sqlite3). `show` lists events; "
            "`replay --step N` prints every file and agent as they were at step N; "
            "`fork TASK --step N` starts a new task from that step; "
            "`report --out FILE.html` writes one self-contained page picturing a past run "
            "(the schedule per worker, tokens, verdicts): the latest swarm session's plans, "
            "or those named with --plan."
        ),
    )
    parser.add_argument("action", choices=("show", "replay", "fork", "report"))
    parser.add_argument("task", nargs="?", default=None, help="the task to fork (fork only)")
    parser.add_argument("--workspace", type=Path, default=Path("."), help="workspace folder")
    parser.add_argument("--ledger", type=Path, default=None, help="ledger file (overrides)")
    parser.add_argument("--step", type=int, default=None, help="the ledger step (event seq)")
    parser.add_argument("--task-id", dest="task_filter", default=None, help="only this task")
    parser.add_argument("--agent", default=None, help="replay: only this agent")
    parser.add_argument("--file", default=None, help="replay: print this file's text")
    parser.add_argument("--new-task", default=None, help="fork: id of the new task")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--plan",
        dest="plan_ids",
        action="append",
        default=None,
        metavar="PLAN_ID",
        help="report: a plan to picture (repeatable; default: the latest session's plans)",
    )
    parser.add_argument("--out", type=Path, default=None, help="report: the HTML file to write")
    parser.set_defaults(handler=run_ledger)


def _open(args: argparse.Namespace) -> Ledger | None:
    path = args.ledger or (args.workspace / ".delegation" / "ledger.sqlite3")
    if not Path(path).is_file():
        print(f"delegation-machine ledger: {path}: no ledger there", file=sys.stderr)
        return None
    return Ledger(path)


def run_ledger(args: argparse.Namespace) -> int:
    if args.action == "report":
        return _report(args)
    ledger = _open(args)
    if ledger is None:
        return 2
    try:
        if args.action == "show":
            return _show(ledger, args)
        if args.action == "replay":
            return _replay(ledger, args)
        return _fork(ledger, args)
    except ReplayError as exc:
        print(f"delegation-machine ledger: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.close()


def _show(ledger: Ledger, args: argparse.Namespace) -> int:
    events = [
        e
        for e in ledger.events(task_id=args.task_filter)
        if args.step is None or e.seq <= args.step
    ]
    if args.json:
        sys.stdout.write(msgspec.json.encode(events).decode() + "\n")
        return 0
    for event in events:
        who = " ".join(x for x in (event.task_id, event.agent_id) if x)
        print(f"{event.seq:>6}  {event.kind:<16} {who:<24} {_summary(event.payload)}")
    return 0


def _summary(payload: dict[str, Any]) -> str:
    parts = []
    for key in ("path", "turn", "role", "tool", "version", "from_task", "step"):
        if key in payload and payload[key] is not None:
            parts.append(f"{key}={payload[key]}")
    if "edits" in payload:
        parts.append(f"edits={len(payload['edits'])}")
    return " ".join(parts)


def _replay(ledger: Ledger, args: argparse.Namespace) -> int:
    travel = TimeTravel(ledger)
    step = args.step if args.step is not None else travel.last_step()
    workspace = travel.workspace_at(step, strict=False)
    for path, problem in sorted(workspace.problems.items()):
        print(f"delegation-machine ledger: cannot replay {path}: {problem}", file=sys.stderr)
    agents = [
        a
        for a in travel.agents_at(step, task_id=args.task_filter)
        if args.agent is None or a.agent_id == args.agent
    ]
    if args.file is not None:
        if args.file not in workspace.files:
            print(
                f"delegation-machine ledger: {args.file}: not in the ledger at step {step}",
                file=sys.stderr,
            )
            return 1
        sys.stdout.write(workspace.files[args.file].text)
        return 0
    if args.json:
        report = {"step": step, "workspace": workspace, "agents": agents}
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
        return 0
    print(f"step {step}: {len(workspace.files)} files")
    for path, state in sorted(workspace.files.items()):
        print(f"  {path}  version {state.version}  ({len(state.text)} chars, seq {state.last_seq})")
    for agent in agents:
        print(
            f"agent {agent.agent_id} (task {agent.task_id}): {len(agent.turns)} turns, "
            f"{agent.tokens} tokens, last turn {agent.last_turn}"
        )
    return 0


def _fork(ledger: Ledger, args: argparse.Namespace) -> int:
    if args.task is None or args.step is None:
        print("delegation-machine ledger fork: needs TASK and --step N", file=sys.stderr)
        return 2
    forked = TimeTravel(ledger).fork(args.task, args.step, new_task_id=args.new_task)
    if args.json:
        sys.stdout.write(msgspec.json.encode(forked).decode() + "\n")
    else:
        print(
            f"forked {forked.task_id} from {forked.parent_task} at step {forked.step} "
            f"(event {forked.event_seq}; {len(forked.workspace.files)} files)"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.out is None:
        print("delegation-machine ledger report: needs --out FILE.html", file=sys.stderr)
        return 2
    path = args.ledger or (args.workspace / ".delegation" / "ledger.sqlite3")
    try:
        written = write_run_report(Path(path), args.out, args.plan_ids)
    except ReportError as exc:
        print(f"delegation-machine ledger report: {exc}", file=sys.stderr)
        return 2
    print(f"run report: {written}")
    return 0
