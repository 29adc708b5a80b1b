"""Runs delegated tasks from the terminal: progress lines and a summary table.

Owns the CLI's view of a swarm run; shared by the `run` and `demo` subcommands. The exit code
is 0 when every task's goal holds (verified, accepted, or nothing needed changing), 1 when some
task's does not (failed, escalated, held, or changed nothing it was asked to), 3 when another
process owns the workspace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

from delegation_machine.engine.config import ConfigError
from delegation_machine.engine.economy import AgentStanding
from delegation_machine.engine.protocol import (
    DelegationError,
    DelegationRequest,
    Span,
    TaskState,
)
from delegation_machine.engine.scale.connection import ScaleError
from delegation_machine.engine.schedule.board import TaskSummary
from delegation_machine.engine.state.owner import WorkspaceBusy
from delegation_machine.engine.swarm import Swarm
from delegation_machine.server.cli.progress import RunProgress, display_mode
from delegation_machine.server.report import ReportError, write_run_report

VERIFIED_STATES = {TaskState.VERIFIED.value, TaskState.ACCEPTED.value}
USAGE_EXIT = 2  # a usage or configuration error; nothing was done
WORKSPACE_BUSY_EXIT = 3  # another process owns the workspace; nothing was done


SUMMARY_HEADERS = ("task", "kind", "state", "agent", "files", "verdicts", "time")
STANDINGS_HEADERS = ("agent", "trust", "credit", "budget", "tasks", "passed", "quarantined")


def summary_table(tasks: Sequence[TaskSummary]) -> str:
    return render_table(SUMMARY_HEADERS, summary_rows(tasks))


def summary_rows(tasks: Sequence[TaskSummary]) -> list[tuple[str, ...]]:
    return [
        (
            t.task_id,
            t.kind,
            t.state,
            t.agent or "-",
            ", ".join(t.files) or "-",
            "; ".join(t.verdicts) or "-",
            f"{t.elapsed_s:.2f}s",
        )
        for t in tasks
    ]


def standings_table(standings: Sequence[AgentStanding]) -> str:
    """Each agent's trust, credit, context budget and quarantine (the economy's view)."""
    return render_table(STANDINGS_HEADERS, standings_rows(standings))


def standings_rows(standings: Sequence[AgentStanding]) -> list[tuple[str, ...]]:
    return [
        (
            a.agent_id,
            f"{a.trust:.3f}" + (" (pre-trusted)" if a.pretrusted else ""),
            f"{a.credit:.2f}",
            str(a.budget),
            str(a.tasks),
            str(a.passed),
            "yes" if a.quarantined else "no",
        )
        for a in standings
    ]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        min(60, max(len(h), *(len(r[i]) for r in rows))) if rows else len(h)
        for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c[: widths[i]].ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


async def run_tasks(
    workspace: Path,
    instructions: Sequence[str],
    *,
    agents: int | None,
    as_json: bool,
    out: TextIO = sys.stdout,
    timeout_s: float = 600,
    path: str | None = None,
    span: Span | None = None,
    allow_test_changes: bool = False,
    plain: bool = False,
    quiet: bool = False,
    report_path: Path | None = None,
    redis_url: str | None = None,
) -> int:
    """Submit each instruction (on `path` and `span` when given, as the editor targets a file
    or selection), wait for every plan, print the summary; the exit code (0 only when every
    task's goal holds). A task that changed its own tests is held and left unwritten unless
    `allow_test_changes`. Progress shows live on a terminal, as lines with `plain` (or when
    `out` is not a terminal), not at all with `quiet`; `report_path` names an HTML page of the run
    to write at the end; `redis_url` sends the remote kinds to worker processes through Redis
    ("" reads $REDIS_URL; None: as `[scale] redis` says)."""
    settings: dict[str, Any] = {"agents": agents} if agents else {}
    if allow_test_changes:
        settings["allow_test_changes"] = True
    try:
        swarm = Swarm(workspace, editor_settings=settings or None, watch=False, redis_url=redis_url)
    except (ConfigError, ScaleError) as exc:  # bad configuration: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    progress = RunProgress(
        out,
        "quiet" if as_json else display_mode(out, plain=plain, quiet=quiet),
        task_of=swarm.board.task,
        plan_size=swarm.board.plan_size,
    )
    swarm.subscribe(progress)  # the swarm's warnings
    swarm.board.observe(progress.observe)  # each task's state changes
    try:
        await swarm.start()
    except WorkspaceBusy as exc:  # another run or serve owns it: refused, nothing touched
        print(f"error: {exc}", file=sys.stderr)
        return WORKSPACE_BUSY_EXIT
    except ScaleError as exc:  # Redis unreachable or refusing the credentials: nothing done
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    progress.start()
    plan_ids: list[str] = []
    errors: list[str] = []
    started = time.monotonic()
    try:
        for instruction in instructions:
            try:
                request = DelegationRequest(instruction=instruction, path=path, span=span)
                plan_ids.append(await swarm.submit(request))
            except DelegationError as exc:
                errors.append(f"{instruction!r}: {exc}")
        for plan_id in plan_ids:
            await swarm.wait(plan_id, timeout=timeout_s)
        tasks = [t for p in plan_ids for t in swarm.task_summaries(p)]
        ledger_events = swarm.ledger.last_seq()
        standings = swarm.economy.summary()
        tokens = swarm.backend.ledger.snapshot() if swarm.backend is not None else None
    finally:
        progress.stop()
        await swarm.stop()
    elapsed = time.monotonic() - started
    ok = not errors and all(t.goal_met for t in tasks)
    report_line = ""
    if report_path is not None and plan_ids:
        try:
            written = write_run_report(swarm.ledger.path, report_path, plan_ids)
            report_line = f"report: {written}"
        except ReportError as exc:  # the run itself is done: say why there is no page
            report_line = f"report not written: {exc}"
            ok = False
    if as_json:
        report: dict[str, Any] = {
            "workspace": str(workspace),
            "ok": ok,
            "elapsed_s": round(elapsed, 3),
            "errors": errors,
            "ledger_events": ledger_events,
            "interrupted": msgspec.to_builtins(swarm.interrupted),
            "tasks": msgspec.to_builtins(tasks),
            "agents": msgspec.to_builtins(standings),
            "tokens": msgspec.to_builtins(tokens),
            "report": report_line.partition(": ")[2] if report_line.startswith("report:") else None,
        }
        print(json.dumps(report, indent=2), file=out)
    else:
        for error in errors:
            print(f"error: {error}", file=out)
        if tasks:
            progress.print_table(SUMMARY_HEADERS, summary_rows(tasks), summary_table(tasks))
        for task in tasks:  # why each goal does not hold, one line each (model faults too)
            if not task.goal_met and task.message:
                print(f"{task.state}: {task.task_id}: {task.message}", file=out)
        held = [t.task_id for t in tasks if t.state == TaskState.HELD.value]
        if held:
            print(
                f"held: {', '.join(held)} changed their own tests and were left unwritten; "
                "run again with --allow-test-changes to keep such changes",
                file=out,
            )
        if standings:
            progress.print_table(
                STANDINGS_HEADERS, standings_rows(standings), standings_table(standings)
            )
        if tokens is not None:
            print(
                f"\ntokens: {tokens.prompt_tokens} prompt ({tokens.cached_tokens} cached), "
                f"{tokens.output_tokens} output, about ${tokens.cost_usd:.4f}",
                file=out,
            )
        print(
            f"\n{outcome_line(tasks)} in {elapsed:.1f}s; "
            f"{ledger_events} events in {workspace / '.delegation' / 'ledger.sqlite3'}",
            file=out,
        )
        if report_line:
            print(report_line, file=out)
    return 0 if ok else 1


def outcome_line(tasks: Sequence[TaskSummary]) -> str:
    """`7/9 tasks done (5 verified, 2 no change needed; 1 failed, 1 held)`."""
    done = sum(t.goal_met for t in tasks)
    verified = sum(t.state in VERIFIED_STATES for t in tasks)
    unchanged = sum(t.goal_met and t.state == TaskState.NO_CHANGE.value for t in tasks)
    parts = [f"{verified} verified"] + ([f"{unchanged} no change needed"] if unchanged else [])
    missed: dict[str, int] = {}
    for task in tasks:
        if not task.goal_met:
            missed[task.state] = missed.get(task.state, 0) + 1
    tail = "; " + ", ".join(f"{n} {state}" for state, n in sorted(missed.items())) if missed else ""
    return f"{done}/{len(tasks)} tasks done ({', '.join(parts)}{tail})"


def workspace_argument(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"not a folder: {value}")
    return path.resolve()


def add_display_arguments(parser: argparse.ArgumentParser) -> None:
    """--plain, --quiet and --report, shared by `run` and `demo`."""
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument(
        "--plain",
        action="store_true",
        help="one line per task state change instead of the live display (the default when "
        "stdout is not a terminal)",
    )
    shown.add_argument("--quiet", "-q", action="store_true", help="print only the summary")
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE.html",
        help="write a self-contained HTML page of the run (schedule, tokens, verdicts)",
    )


def run_sync(coroutine: Any) -> int:
    return int(asyncio.run(coroutine))
