"""Running one dispatched task to a final state on the board.

Owns `TaskRunner`, the dispatcher's `run_task`: an `index` task updates the symbol index; an
edit's `check` task runs the workspace's checks and publishes what they find; a delegated
`check` is the supervisors' own work (their verdicts are its result); every other kind is an
agent task, taken through the `AttemptLoop`. It names the agent a worker starts each task
with, settles the board with every outcome, and asks the user about escalated tasks.
Invariant: a task that crashes fails with the reason and its edits rolled back; the swarm
goes on serving.
"""

from __future__ import annotations

import logging

from delegation_machine.engine.agents.factory import AgentFactory
from delegation_machine.engine.intake import EDIT_PLAN
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.workspace_index import WorkspaceIndex
from delegation_machine.engine.notices import MessageNotice, NoticeStream
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import TaskState, verdict_summary
from delegation_machine.engine.schedule.board import TaskBoard, TaskRecord
from delegation_machine.engine.schedule.dispatch import WorkerSpec
from delegation_machine.engine.state import StateError, WorkspaceState
from delegation_machine.engine.supervise.attempts import AttemptLoop, TaskOutcome
from delegation_machine.engine.supervise.change import ChangeChecker, diagnostics_notices
from delegation_machine.engine.supervise.checks import CheckLevel
from delegation_machine.engine.supervise.unparsed import describe_unparsed

log = logging.getLogger(__name__)

SUPERVISOR = "builtin:supervisor"  # the deterministic checkers, as a peer of the agents
MAX_LISTED_FAILURES = 50  # a failed check's message names this many, then counts the rest


class TaskRunner:
    def __init__(
        self,
        *,
        board: TaskBoard,
        state: WorkspaceState,
        index: WorkspaceIndex,
        checker: ChangeChecker,
        attempts: AttemptLoop,
        agents: AgentFactory,
        ledger: Ledger,
        notices: NoticeStream,
    ) -> None:
        self._board = board
        self._state = state
        self._index = index
        self._checker = checker
        self._attempts = attempts
        self._agents = agents
        self._ledger = ledger
        self._notices = notices

    def agent_for(self, spec: TaskSpec, worker: WorkerSpec) -> str | None:
        """Who works on `spec` when `worker` starts it (recorded on the board)."""
        if spec.kind == "index" or spec.plan_id == EDIT_PLAN:
            return None
        if spec.kind == "check":
            return SUPERVISOR
        return self._agents.agent_id(spec.kind, worker.worker_id)

    async def run(self, spec: TaskSpec, worker: WorkerSpec) -> bool:
        if spec.kind == "index":
            return self._run_index(spec)
        if spec.plan_id == EDIT_PLAN:
            return await self._run_edit_check(spec)
        record = self._board.task(spec.task_id)
        if record is None or record.state.finished:
            return False
        if spec.kind == "check":
            return await self._run_delegated_check(record)
        try:
            outcome = await self._attempts.run(record)
        except StateError as exc:  # bad content (binary, not UTF-8, a FIFO...): its reason
            self._attempts.rollback(spec.task_id)
            outcome = TaskOutcome(TaskState.FAILED, f"refused: {exc}")
        except Exception as exc:  # an agent or a check crashed: this task fails, not the swarm
            log.exception("task %s crashed", spec.task_id)
            self._attempts.rollback(spec.task_id)
            outcome = TaskOutcome(TaskState.FAILED, f"internal error: {exc}")
        return self._settle(record, outcome)

    def cancel_running(self, task_id: str) -> bool:
        """Cancel a task whose agent is at work now: its edits are rolled back at once."""
        if not self._attempts.cancel(task_id):
            return False
        self._board.finish(task_id, TaskState.CANCELLED, "cancelled while running")
        self._attempts.rollback(task_id)
        return True

    def _settle(self, record: TaskRecord, outcome: TaskOutcome) -> bool:
        spec = record.spec
        self._board.finish(spec.task_id, outcome.state, outcome.message, goal_met=outcome.goal_met)
        if outcome.escalation is not None:
            what = (
                "is held until you decide"
                if outcome.state == TaskState.HELD
                else "was rolled back and needs you"
            )
            self._notices.emit(
                MessageNotice(
                    "warning" if outcome.state == TaskState.HELD else "error",
                    f"Task {spec.task_id} ({spec.kind}) {what}: {outcome.escalation.reason}",
                    task_id=spec.plan_id,
                    choices=outcome.escalation.choices,
                )
            )
        return outcome.succeeded

    def _run_index(self, spec: TaskSpec) -> bool:
        for rel in spec.paths:
            try:
                text, _ = self._state.read(rel)
            except StateError:  # gone or refused since the edit: nothing to index
                continue
            self._index.symbols.update_file(rel, text)
        return True

    async def _run_edit_check(self, spec: TaskSpec) -> bool:
        files = self._attempts.read_files(spec.paths)
        if not files:
            return False
        verdicts = await self._checker.check_files(files, list(files), task_id=None)
        self._ledger.record(
            "check.completed",
            task_id=spec.task_id,
            paths=list(files),
            verdicts=[verdict_summary(v) for v in verdicts],
        )
        for notice in diagnostics_notices(files, verdicts):
            self._notices.emit(notice)
        return True

    async def _run_delegated_check(self, record: TaskRecord) -> bool:
        """A delegated `check` is the supervisors' own work: run them, report what they find."""
        spec = record.spec
        self._board.mark_checking(spec.task_id)
        refused: dict[str, str] = {}
        files = self._attempts.read_files(spec.paths, refused=refused)
        level: CheckLevel = (
            "full" if spec.arguments.get("level") == "full" else self._checker.task_level
        )
        verdicts = await self._checker.check_files(
            files, list(files), task_id=spec.task_id, level=level
        )
        self._board.set_verdicts(spec.task_id, verdicts)
        self._ledger.record(
            "task.checked",
            task_id=spec.task_id,
            agent_id=SUPERVISOR,
            verdicts=[verdict_summary(v) for v in verdicts],
        )
        for notice in diagnostics_notices(files, verdicts):
            self._notices.emit(notice)
        unavailable = [v for v in verdicts if v.kind == "error"]
        if unavailable:
            reasons = "; ".join(f"{v.check}: {v.reason}" for v in unavailable)
            return self._settle(
                record, TaskOutcome(TaskState.FAILED, f"a check could not run: {reasons}")
            )
        found = sum(len(v.findings) for v in verdicts)
        summary = f"{found} finding(s) in {len(files)} file(s)"
        if unparsed := describe_unparsed(verdicts):  # named, never passed off as checked
            summary += f"; does not parse: {unparsed}"
        if refused:  # the files it could not check are named with the reason, never skipped
            summary += f"; {len(refused)} refused: " + "; ".join(
                f"{rel} ({reason})" for rel, reason in sorted(refused.items())
            )
        failing = [f for v in verdicts for f in v.findings if f.severity == "error"]
        if failing:  # a check over a failing workspace fails, naming every failure
            listed = "; ".join(
                f"{f.path}:{f.span.start.line + 1} {f.code}: {f.message}"
                for f in failing[:MAX_LISTED_FAILURES]
            )
            more = len(failing) - MAX_LISTED_FAILURES
            listed += f"; and {more} more" if more > 0 else ""
            return self._settle(
                record,
                TaskOutcome(TaskState.FAILED, f"{len(failing)} failure(s): {listed}; {summary}"),
            )
        return self._settle(record, TaskOutcome(TaskState.VERIFIED, summary))
