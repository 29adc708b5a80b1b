"""The task board: the single owner of every task's and every plan's state.

Owns one `TaskRecord` per task the swarm knows (each delegated plan's tasks, and the index and
check tasks that edits publish) and one `PlanRecord` per delegated request, and the state
machine between them. The dispatcher (waiting, cancelled, done) and the task runner (running,
checking, verified, failed, escalated) change a task's state only here; nobody keeps a copy.
Invariants: a task never leaves a final state; a plan's state follows from its tasks' until
the user accepts or rejects it; the ledger records each change of a plan or one of its tasks
before any listener is told. Finished tasks outside any plan are forgotten after
`finished_memory`, so a long editing session stays bounded. Lives on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from delegation_machine.engine.agents.base import TokenUsage
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import (
    DelegationError,
    DelegationRequest,
    TaskState,
    TaskUpdate,
    Verdict,
)

FINISHED_MEMORY = 10_000
ACTIVE_STATES = (TaskState.RUNNING, TaskState.CHECKING)
# A plan's final state is the worst of its tasks' (in this order); then "no-change" when a
# task changed nothing without its goal holding, or when no task changed anything; else verified.
WORST_FIRST = (TaskState.ESCALATED, TaskState.FAILED, TaskState.CANCELLED, TaskState.HELD)
GOAL_STATES = frozenset({TaskState.VERIFIED, TaskState.ACCEPTED})

TaskObserver = Callable[[str, TaskState], None]
PlanListener = Callable[[TaskUpdate], None]


NO_USAGE = TokenUsage()


@dataclass(slots=True)
class TaskRecord:
    """What the swarm knows about one task; changed only through the `TaskBoard`.

    The defaults are immutable, so a record costs no allocation until its task does work
    (the dispatcher creates one per task it takes, edit tasks included)."""

    spec: TaskSpec
    state: TaskState = TaskState.QUEUED
    agent: str | None = None
    files: frozenset[str] = frozenset()  # every file the task has changed
    verdicts: tuple[Verdict, ...] = ()  # of its latest check round
    usage: TokenUsage = NO_USAGE
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    message: str = ""
    # Whether the work asked for holds (set when the task finishes): verified and accepted
    # tasks, and no-change tasks whose acceptance check passed on the unchanged code.
    goal_met: bool = False

    @property
    def elapsed_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started


@dataclass
class PlanRecord:
    """One delegated request: its id is the `taskId` the client sees."""

    plan_id: str
    request: DelegationRequest
    kind: str
    task_ids: list[str]
    state: TaskState = TaskState.QUEUED
    message: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class TaskSummary(msgspec.Struct, frozen=True):
    task_id: str
    plan_id: str
    kind: str
    state: str
    agent: str | None
    files: tuple[str, ...]
    verdicts: tuple[str, ...]
    elapsed_s: float
    tokens: int
    message: str = ""
    goal_met: bool = False


class PlanSummary(msgspec.Struct, frozen=True):
    plan_id: str
    kind: str
    state: str
    instruction: str
    tasks: int
    message: str = ""


class AgentActivity(msgspec.Struct, frozen=True):
    agent: str | None
    task: str
    state: str


def verdict_text(verdict: Verdict) -> str:
    """One line per verdict for summaries: passed, could not run, or the first finding."""
    if verdict.kind == "error":
        return f"{verdict.check}: could not run ({verdict.reason})"
    if verdict.kind == "passed" or not verdict.findings:
        return f"{verdict.check}: passed"
    first = verdict.findings[0]
    more = f" (+{len(verdict.findings) - 1} more)" if len(verdict.findings) > 1 else ""
    return f"{verdict.check}: {first.code} at {first.path}:{first.span.start.line + 1}{more}"


class TaskBoard:
    """Every task's and plan's state, its transitions, and who is told about them."""

    def __init__(
        self, ledger: Ledger | None = None, *, finished_memory: int = FINISHED_MEMORY
    ) -> None:
        self._ledger = ledger
        self._finished_memory = finished_memory
        self._tasks: dict[str, TaskRecord] = {}
        self._plans: dict[str, PlanRecord] = {}
        self._finished_unplanned: deque[str] = deque()
        self._observers: list[TaskObserver] = []
        self._listeners: list[PlanListener] = []

    # --- who is told ------------------------------------------------------------------------

    def observe(self, observer: TaskObserver) -> None:
        """Call `observer(task_id, state)` after every state change of any task."""
        self._observers.append(observer)

    def subscribe(self, listener: PlanListener) -> Callable[[], None]:
        """Call `listener(TaskUpdate)` whenever a plan or one of its tasks changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # --- records ----------------------------------------------------------------------------

    def add_plan(
        self, plan_id: str, request: DelegationRequest, kind: str, specs: Iterable[TaskSpec]
    ) -> PlanRecord:
        specs = list(specs)
        plan = PlanRecord(plan_id, request, kind, [s.task_id for s in specs])
        self._plans[plan_id] = plan
        for spec in specs:
            self._tasks[spec.task_id] = TaskRecord(spec)
        self._record(
            "plan.submitted",
            task_id=plan_id,
            kind=kind,
            instruction=request.instruction,
            path=request.path,
            tasks=[msgspec.to_builtins(s) for s in specs],
        )
        self._notify_plan(plan)
        return plan

    def track(self, spec: TaskSpec) -> TaskRecord:
        """The record of a dispatched task, created for one no plan announced (edit tasks)."""
        record = self._tasks.get(spec.task_id)
        if record is None:
            record = self._tasks[spec.task_id] = TaskRecord(spec)
        return record

    def task(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def plan_size(self, plan_id: str) -> int | None:
        """How many tasks the plan has; None when no plan has this id (an edit's own task)."""
        plan = self._plans.get(plan_id)
        return None if plan is None else len(plan.task_ids)

    def plan(self, plan_id: str) -> PlanRecord:
        plan = self._plans.get(plan_id)
        if plan is None:
            raise DelegationError(f"no task with id {plan_id!r}")
        return plan

    def plan_of(self, task_id: str) -> PlanRecord:
        """The plan a task id names: a plan's own id or one of its tasks' ids."""
        record = self._tasks.get(task_id)
        if record is not None and record.spec.plan_id in self._plans:
            return self._plans[record.spec.plan_id]
        return self.plan(task_id)

    def plan_tasks(self, plan_id: str) -> list[TaskRecord]:
        return [self._tasks[t] for t in self.plan(plan_id).task_ids]

    def state_of(self, task_id: str) -> TaskState | None:
        record = self._tasks.get(task_id)
        return record.state if record is not None else None

    def reason_of(self, task_id: str) -> str:
        record = self._tasks.get(task_id)
        return record.message if record is not None else ""

    def busy_agents(self, prefix: str = "") -> set[str]:
        """Agents (whose id starts with `prefix`) of tasks running or being checked."""
        return {a.agent for a in self.activity() if a.agent and a.agent.startswith(prefix)}

    # --- transitions ------------------------------------------------------------------------

    def mark_waiting(self, task_id: str) -> None:
        """Issued into a reservation station (its inputs may not be ready)."""
        record = self._tasks[task_id]
        if not record.state.finished:
            self._transition(record, TaskState.WAITING)

    def start(self, task_id: str, agent: str | None, worker: str | None = None) -> None:
        """A worker's agent took the task (the ledger's running event names the worker)."""
        record = self._tasks[task_id]
        if record.state.finished:
            return
        record.agent = agent
        if record.started is None:
            record.started = time.monotonic()
        self._transition(record, TaskState.RUNNING, **({"worker": worker} if worker else {}))

    def assign_agent(self, task_id: str, agent: str) -> None:
        """A fresh agent replaces the task's agent (the restart tier of recovery)."""
        record = self._tasks[task_id]
        record.agent = agent
        self._notify_task(record)

    def mark_checking(self, task_id: str) -> None:
        record = self._tasks[task_id]
        if not record.state.finished:
            self._transition(record, TaskState.CHECKING)

    def begin_attempt(self, task_id: str) -> int:
        record = self._tasks[task_id]
        record.attempts += 1
        return record.attempts

    def add_result(self, task_id: str, usage: TokenUsage, files: Iterable[str]) -> None:
        record = self._tasks[task_id]
        record.usage = record.usage + usage
        record.files = record.files.union(files)

    def set_verdicts(self, task_id: str, verdicts: Iterable[Verdict]) -> None:
        self._tasks[task_id].verdicts = tuple(verdicts)

    def finish(
        self, task_id: str, state: TaskState, message: str, *, goal_met: bool | None = None
    ) -> bool:
        """Move a task to a final state; False (and nothing changes) if it already was.

        `goal_met` defaults to whether the state is verified or accepted."""
        if not state.finished:
            raise ValueError(f"{state.value} is not a final state")
        record = self._tasks.get(task_id)
        if record is None or record.state.finished:
            return False
        record.finished = time.monotonic()
        record.message = message
        record.goal_met = state in GOAL_STATES if goal_met is None else goal_met
        self._transition(record, state)
        return True

    def settle_held(self, task_id: str, state: TaskState, message: str) -> bool:
        """The user decided on a held task: ACCEPTED (its change kept) or REJECTED."""
        if state not in (TaskState.ACCEPTED, TaskState.REJECTED):
            raise ValueError(f"a held task is accepted or rejected, not {state.value}")
        record = self._tasks.get(task_id)
        if record is None or record.state != TaskState.HELD:
            return False
        record.message = message
        record.goal_met = state == TaskState.ACCEPTED
        self._transition(record, state)
        return True

    def goal_met(self, plan_id: str) -> bool:
        """True when every task of the plan finished with its goal holding."""
        return all(r.goal_met and r.state.finished for r in self.plan_tasks(plan_id))

    def close_plan(self, plan_id: str, state: TaskState, **payload: Any) -> None:
        """The user settled a finished plan: ACCEPTED or REJECTED (recorded as plan.<state>)."""
        if state not in (TaskState.ACCEPTED, TaskState.REJECTED):
            raise ValueError(f"a plan is closed as accepted or rejected, not {state.value}")
        plan = self.plan(plan_id)
        plan.state = state
        self._record(f"plan.{state.value}", task_id=plan_id, **payload)
        self._notify_plan(plan)

    async def wait(self, plan_id: str, timeout: float | None = None) -> TaskState:
        """Wait until the plan has finished; returns its final state."""
        plan = self.plan(plan_id)
        await asyncio.wait_for(plan.done.wait(), timeout)
        return plan.state

    # --- views ------------------------------------------------------------------------------

    def summaries(self, plan_id: str | None = None) -> list[TaskSummary]:
        plans = [self.plan(plan_id)] if plan_id else list(self._plans.values())
        return [self._summary(self._tasks[t]) for p in plans for t in p.task_ids]

    def plan_summaries(self) -> list[PlanSummary]:
        return [
            PlanSummary(
                plan_id=p.plan_id,
                kind=p.kind,
                state=p.state.value,
                instruction=p.request.instruction,
                tasks=len(p.task_ids),
                message=p.message,
            )
            for p in self._plans.values()
        ]

    def activity(self) -> list[AgentActivity]:
        return [
            AgentActivity(r.agent, r.spec.task_id, r.state.value)
            for p in self._plans.values()
            for r in (self._tasks[t] for t in p.task_ids)
            if r.state in ACTIVE_STATES
        ]

    @staticmethod
    def _summary(record: TaskRecord) -> TaskSummary:
        return TaskSummary(
            task_id=record.spec.task_id,
            plan_id=record.spec.plan_id,
            kind=record.spec.kind,
            state=record.state.value,
            agent=record.agent,
            files=tuple(sorted(record.files)),
            verdicts=tuple(verdict_text(v) for v in record.verdicts),
            elapsed_s=round(record.elapsed_s, 3),
            tokens=record.usage.prompt_tokens + record.usage.output_tokens,
            message=record.message,
            goal_met=record.goal_met,
        )

    # --- internals --------------------------------------------------------------------------

    def _transition(self, record: TaskRecord, state: TaskState, **payload: Any) -> None:
        """Set a state the caller has checked may follow (a final state is never left);
        `payload` joins the ledger's task.state event."""
        record.state = state
        task_id = record.spec.task_id
        for observer in self._observers:
            observer(task_id, state)
        if record.spec.plan_id in self._plans:
            self._record(
                "task.state", task_id=task_id, agent_id=record.agent, state=state.value, **payload
            )
            self._notify_task(record)
        elif state.finished:
            self._forget_oldest_unplanned(task_id)

    def _notify_task(self, record: TaskRecord) -> None:
        plan = self._plans.get(record.spec.plan_id)
        if plan is not None:
            self._notify_plan(plan)

    def _notify_plan(self, plan: PlanRecord) -> None:
        records = [self._tasks[t] for t in plan.task_ids]
        state = self._plan_state(plan, records)
        changed = state != plan.state
        plan.state = state
        messages = [
            f"{r.spec.task_id}: {r.message}"
            for r in records
            if r.message and (r.state in WORST_FIRST or (r.state.finished and not r.goal_met))
        ]
        done = sum(r.state.finished for r in records)
        plan.message = "; ".join(messages) or f"{done}/{len(records)} tasks finished"
        finishing = state.finished and not plan.done.is_set()
        # The ledger leads: an event is recorded before anyone is told about it.
        if finishing:
            self._record(
                "plan.finished", task_id=plan.plan_id, state=state.value, message=plan.message
            )
        elif changed:
            self._record("plan.state", task_id=plan.plan_id, state=state.value)
        update = TaskUpdate(
            task_id=plan.plan_id,
            state=state,
            kind=plan.kind,
            agent=_plan_agent(records),
            files=tuple(sorted(set().union(*(r.files for r in records)))) if records else (),
            tokens=sum(r.usage.prompt_tokens + r.usage.output_tokens for r in records),
            verdicts=tuple(v for r in records for v in r.verdicts),
            message=plan.message,
        )
        for listener in list(self._listeners):
            listener(update)
        if finishing:
            plan.done.set()

    @staticmethod
    def _plan_state(plan: PlanRecord, records: list[TaskRecord]) -> TaskState:
        if plan.state in (TaskState.ACCEPTED, TaskState.REJECTED):
            return plan.state
        states = {r.state for r in records}
        if not all(s.finished for s in states):
            for active in (TaskState.CHECKING, TaskState.RUNNING, TaskState.WAITING):
                if active in states:
                    return active
            return TaskState.QUEUED
        for worst in WORST_FIRST:
            if worst in states:
                return worst
        unchanged = [r for r in records if r.state == TaskState.NO_CHANGE]
        if unchanged and (len(unchanged) == len(records) or not all(r.goal_met for r in unchanged)):
            return TaskState.NO_CHANGE
        return TaskState.VERIFIED

    def _record(
        self,
        kind: str,
        /,
        *,
        task_id: str | None = None,
        agent_id: str | None = None,
        **payload: Any,
    ) -> None:
        if self._ledger is not None:
            self._ledger.record(kind, task_id=task_id, agent_id=agent_id, **payload)

    def _forget_oldest_unplanned(self, task_id: str) -> None:
        self._finished_unplanned.append(task_id)
        while len(self._finished_unplanned) > self._finished_memory:
            old = self._finished_unplanned.popleft()
            record = self._tasks.get(old)
            if record is not None and record.state.finished:
                del self._tasks[old]


def _plan_agent(records: list[TaskRecord]) -> str | None:
    """The agent a plan update names: one at work now, else the last one that worked."""
    active = next((r.agent for r in records if r.state in ACTIVE_STATES), None)
    return active or next((r.agent for r in reversed(records) if r.agent), None)
