"""A past run read back from the ledger: what each worker did when, and how each task ended.

Owns `read_run`, which turns the events of some plans (`plan.submitted`, `task.state`,
`agent.result`, `task.checked`, `plan.finished`/`plan.abandoned`, `swarm.started`) into a
frozen `RunTimeline`: one `TaskTimeline` per task with its worker, start and finish in seconds
since the first plan was submitted, outcome, last checks and tokens; the workers' lanes; and
the critical path (the longest chain of the plans' tag dependencies by measured duration).
Reading never changes the ledger. Knows nothing of HTML (server/report/page.py draws it).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.plan.graph import TaskGraph, TaskSpec
from delegation_machine.engine.protocol import Event, TaskState
from delegation_machine.engine.schedule.heft import critical_path

# A task whose plan was abandoned (its process stopped) before the task finished.
INTERRUPTED = "interrupted"
# A task the ledger shows neither finished nor abandoned (the run is still going).
UNFINISHED = "unfinished"
FINISHED_STATES = frozenset(s.value for s in TaskState if s.finished)
RUN_KINDS = (
    "swarm.started",
    "plan.submitted",
    "plan.finished",
    "plan.abandoned",
    "task.state",
    "agent.result",
    "task.checked",
)


class ReportError(ValueError):
    """The report cannot be made: no ledger, an unknown plan, an output that cannot be written."""


class Tokens(msgspec.Struct, frozen=True):
    prompt: int = 0
    cached: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.output

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.prompt + other.prompt, self.cached + other.cached, self.output + other.output
        )


class CheckResult(msgspec.Struct, frozen=True):
    """One verdict of a task's last check round: `result` is passed, failed or error;
    `new` is False for a failure the code had before the task changed it (its baseline)."""

    check: str
    result: str
    detail: str = ""
    new: bool = True


class TaskTimeline(msgspec.Struct, frozen=True):
    task_id: str
    plan_id: str
    kind: str
    instruction: str
    paths: tuple[str, ...]
    outcome: str
    changed: tuple[str, ...] = ()
    worker: str | None = None
    agent: str | None = None
    start_s: float | None = None  # None: no worker ever took it
    finish_s: float | None = None
    attempts: int = 0
    checks: tuple[CheckResult, ...] = ()
    tokens: Tokens = Tokens()
    depends_on: tuple[str, ...] = ()
    critical: bool = False

    @property
    def started(self) -> bool:
        return self.start_s is not None

    @property
    def duration_s(self) -> float:
        if self.start_s is None or self.finish_s is None:
            return 0.0
        return max(0.0, self.finish_s - self.start_s)


class PlanLine(msgspec.Struct, frozen=True):
    plan_id: str
    kind: str
    instruction: str
    state: str
    tasks: int
    submitted_s: float
    finished_s: float | None


class AgentLine(msgspec.Struct, frozen=True):
    agent: str
    tasks: int
    busy_s: float
    tokens: Tokens


class RunTimeline(msgspec.Struct, frozen=True):
    """What a set of plans did, ordered as submitted; times in seconds since `start_ts`."""

    ledger: str
    workspace: str
    start_ts: float
    plans: tuple[PlanLine, ...]
    tasks: tuple[TaskTimeline, ...]
    lanes: tuple[str, ...]  # worker ids, in natural order
    critical_path: tuple[str, ...]
    agents: tuple[AgentLine, ...]

    @property
    def makespan_s(self) -> float:
        ends = [t.finish_s for t in self.tasks if t.finish_s is not None]
        ends += [p.finished_s for p in self.plans if p.finished_s is not None]
        return max(ends, default=0.0)

    @property
    def tokens(self) -> Tokens:
        total = Tokens()
        for task in self.tasks:
            total = total + task.tokens
        return total

    @property
    def used_a_model(self) -> bool:
        return self.tokens.total > 0

    @property
    def critical_path_s(self) -> float:
        by_id = {t.task_id: t for t in self.tasks}
        return sum(by_id[t].duration_s for t in self.critical_path)


@dataclass
class _TaskFacts:
    """What the events say about one task, gathered in sequence order."""

    spec: TaskSpec
    last_state: str = TaskState.QUEUED.value
    worker: str | None = None
    agent: str | None = None
    start_ts: float | None = None
    finish_ts: float | None = None
    attempts: int = 0
    changed: set[str] = field(default_factory=set)
    checks: tuple[CheckResult, ...] = ()
    tokens: Tokens = field(default_factory=Tokens)


@dataclass
class _PlanFacts:
    plan_id: str
    kind: str
    instruction: str
    submitted_ts: float
    specs: list[TaskSpec]
    state: str = TaskState.QUEUED.value
    finished_ts: float | None = None
    abandoned: bool = False
    session: int = 0  # how many swarm.started events came before it
    session_workers: tuple[str, ...] = ()


def open_ledger(path: Path) -> Ledger:
    """The ledger at `path`, refusing a missing file (opening one would create it)."""
    if not path.is_file():
        raise ReportError(f"{path}: no ledger there")
    try:
        ledger = Ledger(path)
        ledger.last_seq()
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"{path}: not a ledger ({exc})") from exc
    return ledger


def read_run(ledger: Ledger, plan_ids: Sequence[str] | None = None) -> RunTimeline:
    """The timeline of `plan_ids` (default: every plan of the latest swarm session)."""
    events = ledger.events(kinds=RUN_KINDS)
    plans = _plans(events)
    if not plans:
        raise ReportError(f"{ledger.path}: the ledger holds no plan")
    chosen = _choose(plans, plan_ids, ledger)
    facts = {s.task_id: _TaskFacts(s) for p in chosen for s in p.specs}
    for event in events:
        if event.task_id in facts:
            _gather(facts[event.task_id], event)
    abandoned = {p.plan_id for p in chosen if p.abandoned}
    start_ts = min(p.submitted_ts for p in chosen)
    specs = [s for p in chosen for s in p.specs]
    graph = TaskGraph.from_tags(specs)
    tasks = [
        _timeline(facts[s.task_id], start_ts, s.plan_id in abandoned, graph.predecessors(s.task_id))
        for s in specs
    ]
    path = _critical_path(tasks)
    on_path = set(path)
    tasks = [msgspec.structs.replace(t, critical=t.task_id in on_path) for t in tasks]
    lanes = {w for p in chosen for w in p.session_workers}
    lanes.update(t.worker for t in tasks if t.worker is not None)
    return RunTimeline(
        ledger=str(ledger.path),
        workspace=_workspace(events, chosen),
        start_ts=start_ts,
        plans=tuple(_plan_line(p, start_ts) for p in chosen),
        tasks=tuple(tasks),
        lanes=tuple(sorted(lanes, key=natural_key)),
        critical_path=tuple(path),
        agents=tuple(_agent_lines(tasks)),
    )


def natural_key(text: str) -> list[Any]:
    """Sort key putting worker-2 before worker-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _plans(events: list[Event]) -> list[_PlanFacts]:
    plans: dict[str, _PlanFacts] = {}
    workers: tuple[str, ...] = ()
    session = 0
    for event in events:
        if event.kind == "swarm.started":
            session += 1
            workers = tuple(str(w) for w in event.payload.get("workers", ()))
        elif event.kind == "plan.submitted" and event.task_id is not None:
            try:
                specs = msgspec.convert(event.payload.get("tasks", []), list[TaskSpec])
            except msgspec.ValidationError as exc:
                raise ReportError(
                    f"ledger event {event.seq} (plan.submitted {event.task_id}): "
                    f"its tasks do not read as task specs ({exc})"
                ) from exc
            plans[event.task_id] = _PlanFacts(
                plan_id=event.task_id,
                kind=str(event.payload.get("kind", "")),
                instruction=str(event.payload.get("instruction", "")),
                submitted_ts=event.ts,
                specs=specs,
                session=session,
                session_workers=workers,
            )
        elif event.task_id in plans and event.kind in ("plan.finished", "plan.abandoned"):
            plan = plans[event.task_id]
            plan.finished_ts = event.ts
            plan.abandoned = event.kind == "plan.abandoned"
            plan.state = INTERRUPTED if plan.abandoned else str(event.payload.get("state", ""))
    return list(plans.values())


def _choose(
    plans: list[_PlanFacts], plan_ids: Sequence[str] | None, ledger: Ledger
) -> list[_PlanFacts]:
    if plan_ids:
        by_id = {p.plan_id: p for p in plans}
        unknown = [p for p in plan_ids if p not in by_id]
        if unknown:
            known = ", ".join(p.plan_id for p in plans[-5:])
            raise ReportError(
                f"{ledger.path}: no plan {', '.join(map(repr, unknown))} in the ledger "
                f"(latest plans: {known})"
            )
        wanted = set(plan_ids)
        return [p for p in plans if p.plan_id in wanted]
    latest = plans[-1].session
    return [p for p in plans if p.session == latest]


def _gather(facts: _TaskFacts, event: Event) -> None:
    payload = event.payload
    if event.kind == "task.state":
        state = str(payload.get("state", ""))
        facts.last_state = state
        if event.agent_id:
            facts.agent = event.agent_id
        if state == TaskState.RUNNING.value:
            if facts.start_ts is None:
                facts.start_ts = event.ts
            facts.worker = str(payload.get("worker") or "") or facts.worker or _worker_of(facts)
        elif state in FINISHED_STATES and facts.finish_ts is None:
            facts.finish_ts = event.ts
    elif event.kind == "agent.result":
        facts.attempts += 1
        usage = payload.get("usage") or {}
        facts.tokens = facts.tokens + Tokens(
            prompt=int(usage.get("prompt_tokens", 0)),
            cached=int(usage.get("cached_tokens", 0)),
            output=int(usage.get("output_tokens", 0)),
        )
    elif event.kind == "task.checked":
        facts.changed.update(str(p) for p in payload.get("changed", ()))
        new = {str(v.get("check")) for v in payload.get("new_failures", ())}
        judged_change = "new_failures" in payload  # a delegated check has no baseline
        facts.checks = tuple(
            _check(v, new=not judged_change or str(v.get("check")) in new)
            for v in payload.get("verdicts", ())
        )


def _worker_of(facts: _TaskFacts) -> str | None:
    """A ledger older than the worker field: the worker is the agent id's `@worker` suffix."""
    if facts.agent and "@" in facts.agent:
        return facts.agent.rsplit("@", 1)[1]
    return facts.agent


def _check(verdict: dict[str, Any], *, new: bool) -> CheckResult:
    kind = str(verdict.get("kind", ""))
    findings = verdict.get("findings") or []
    if kind == "error":
        detail = str(verdict.get("reason", ""))
    elif findings:
        first = findings[0]
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        detail = f"{first.get('code', '')} at {first.get('path', '')}:{int(first.get('line', 0)) + 1}{more}"
    else:
        detail = str(verdict.get("reason", ""))
    return CheckResult(
        check=str(verdict.get("check", "")), result=kind, detail=detail, new=new or kind != "failed"
    )


def _timeline(
    facts: _TaskFacts, start_ts: float, abandoned: bool, depends_on: list[str]
) -> TaskTimeline:
    spec = facts.spec
    outcome = facts.last_state
    if outcome not in FINISHED_STATES:
        outcome = INTERRUPTED if abandoned else UNFINISHED

    def since(ts: float | None) -> float | None:
        return None if ts is None else round(ts - start_ts, 6)

    return TaskTimeline(
        task_id=spec.task_id,
        plan_id=spec.plan_id,
        kind=spec.kind,
        instruction=spec.instruction,
        paths=spec.paths,
        outcome=outcome,
        changed=tuple(sorted(facts.changed)),
        worker=facts.worker,
        agent=facts.agent,
        start_s=since(facts.start_ts),
        finish_s=since(facts.finish_ts),
        attempts=facts.attempts,
        checks=facts.checks,
        tokens=facts.tokens,
        depends_on=tuple(depends_on),
    )


def _critical_path(tasks: list[TaskTimeline]) -> list[str]:
    """CPOP's critical path over the tag dependencies, with each task's measured duration as
    its one cost and free hand-offs: the chain of dependent tasks that took longest."""
    if not any(t.started for t in tasks):
        return []
    comp = {t.task_id: [t.duration_s] for t in tasks}
    comm = {(before, t.task_id): 0.0 for t in tasks for before in t.depends_on}
    started = {t.task_id for t in tasks if t.started}
    return [t for t in critical_path(comp, comm) if t in started]


def _plan_line(plan: _PlanFacts, start_ts: float) -> PlanLine:
    return PlanLine(
        plan_id=plan.plan_id,
        kind=plan.kind,
        instruction=plan.instruction,
        state=plan.state if plan.finished_ts is not None else UNFINISHED,
        tasks=len(plan.specs),
        submitted_s=round(plan.submitted_ts - start_ts, 6),
        finished_s=None if plan.finished_ts is None else round(plan.finished_ts - start_ts, 6),
    )


def _agent_lines(tasks: list[TaskTimeline]) -> list[AgentLine]:
    lines: dict[str, AgentLine] = {}
    for task in tasks:
        if task.agent is None:
            continue
        line = lines.get(task.agent, AgentLine(task.agent, 0, 0.0, Tokens()))
        lines[task.agent] = AgentLine(
            agent=task.agent,
            tasks=line.tasks + 1,
            busy_s=line.busy_s + task.duration_s,
            tokens=line.tokens + task.tokens,
        )
    return sorted(lines.values(), key=lambda a: natural_key(a.agent))


def _workspace(events: list[Event], plans: list[_PlanFacts]) -> str:
    first = plans[0].submitted_ts
    started = [e for e in events if e.kind == "swarm.started" and e.ts <= first]
    return str(started[-1].payload.get("workspace", "")) if started else ""
