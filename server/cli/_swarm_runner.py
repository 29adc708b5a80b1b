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
from delegation_machine.engine.notices import MessageNotice, Notice
from delegation_machine.engine.protocol import (
    DelegationError,
    DelegationRequest,
    Span,
    TaskState,
    TaskUpdate,
)
from delegation_machine.engine.schedule.board import TaskSummary
from delegation_machine.engine.state.owner import WorkspaceBusy
from delegation_machine.engine.swarm import Swarm

VERIFIED_STATES = {TaskState.VERIFIED.value, TaskState.ACCEPTED.value}
USAGE_EXIT = 2  # a usage or configuration error; nothing was done
WORKSPACE_BUSY_EXIT = 3  # another process owns the workspace; nothing was done


class ProgressPrinter:
    """Prints one line whenever a task of the run changes state."""

    def __init__(self, swarm: Swarm, out: TextIO, *, enabled: bool) -> None:
        self._swarm = swarm
        self._out = out
        self._enabled = enabled
        self._seen: dict[str, str] = {}
        self._started = time.monotonic()

    def __call__(self, notice: Notice) -> None:
        if not self._enabled:
            return
        if isinstance(notice, MessageNotice):
            print(f"[{notice.level}] {notice.text}", file=self._out, flush=True)
            return
        if not isinstance(notice, TaskUpdate):
            return
        for task in self._swarm.task_summaries(notice.task_id):
            if self._seen.get(task.task_id) == task.state:
                continue
            self._seen[task.task_id] = task.state
            elapsed = time.monotonic() - self._started
            where = ", ".join(task.files) or (task.message if task.state == "failed" else "")
            print(
                f"{elapsed:7.2f}s  {task.task_id:<14} {task.kind:<7} {task.state:<9} "
                f"{task.agent or '-':<28} {where}",
                file=self._out,
                flush=True,
            )


def summary_table(tasks: Sequence[TaskSummary]) -> str:
    headers = ("task", "kind", "state", "agent", "files", "verdicts", "time")
    rows = [
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
    return render_table(headers, rows)


def standings_table(standings: Sequence[AgentStanding]) -> str:
    """Each agent's trust, credit, context budget and quarantine (the economy's view)."""
    headers = ("agent", "trust", "credit", "budget", "tasks", "passed", "quarantined")
    rows = [
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
    return render_table(headers, rows)


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
) -> int:
    """Submit each instruction (on `path` and `span` when given, as the editor targets a file
    or selection), wait for every plan, print the summary; the exit code (0 only when every
    task's goal holds). A task that changed its own tests is held and left unwritten unless
    `allow_test_changes`."""
    settings: dict[str, Any] = {"agents": agents} if agents else {}
    if allow_test_changes:
        settings["allow_test_changes"] = True
    try:
        swarm = Swarm(workspace, editor_settings=settings or None, watch=False)
    except ConfigError as exc:  # a bad .delegation/config.toml: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    printer = ProgressPrinter(swarm, out, enabled=not as_json)
    swarm.subscribe(printer)
    try:
        await swarm.start()
    except WorkspaceBusy as exc:  # another run or serve owns it: refused, nothing touched
        print(f"error: {exc}", file=sys.stderr)
        return WORKSPACE_BUSY_EXIT
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
        await swarm.stop()
    elapsed = time.monotonic() - started
    ok = not errors and all(t.goal_met for t in tasks)
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
        }
        print(json.dumps(report, indent=2), file=out)
    else:
        for error in errors:
            print(f"error: {error}", file=out)
        if tasks:
            print("\n" + summary_table(tasks), file=out)
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
            print("\n" + standings_table(standings), file=out)
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


def run_sync(coroutine: Any) -> int:
    return int(asyncio.run(coroutine))
