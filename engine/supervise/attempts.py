"""The attempt and recovery loop of one agent task: run, apply, check, recover.

Owns `AttemptLoop.run`, which takes a started task to its `TaskOutcome`: the agent works on a
snapshot; its mutations are applied under file leases; the supervisors check the change
against the same files before it; a clean change is committed (closed files flushed, the
agents credited, a decision record written when it needed fixing first); a failing one goes
up the recovery ladder (targeted fix with the findings and the agent's own diff, then
rollback and a fresh agent, then rollback and a human). It also owns the running agents'
asyncio tasks, so a running task can be cancelled. Invariant: a task that does not end
verified keeps none of its edits (decision 004).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from delegation_machine.engine.agents.base import Agent, AgentFailure, AgentResult
from delegation_machine.engine.agents.factory import AgentFactory
from delegation_machine.engine.economy import Economy, KeptWork, kept_work_from_mutations
from delegation_machine.engine.intake import DocumentIntake
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.adr import DecisionRecords
from delegation_machine.engine.memory.context import ContextBuilder
from delegation_machine.engine.notices import MessageNotice, NoticeStream
from delegation_machine.engine.protocol import Mutation, TaskState, Verdict, verdict_summary
from delegation_machine.engine.schedule.board import TaskBoard, TaskRecord
from delegation_machine.engine.state import LeaseError, StateError, WorkspaceState
from delegation_machine.engine.supervise.change import Blame, ChangeChecker, diagnostics_notices
from delegation_machine.engine.supervise.recovery import ESCALATION_CHOICES, RecoveryLadder
from delegation_machine.engine.supervise.unparsed import unparsed_message

log = logging.getLogger(__name__)


class Escalation(msgspec.Struct, frozen=True):
    """The question the user is asked about a task the swarm gave up on."""

    reason: str
    choices: tuple[str, ...]


class TaskOutcome(msgspec.Struct, frozen=True):
    """How a task ended: verified, failed, escalated or cancelled, and why."""

    state: TaskState
    message: str
    escalation: Escalation | None = None

    @property
    def verified(self) -> bool:
        return self.state == TaskState.VERIFIED


class AttemptResult(msgspec.Struct, frozen=True):
    """One attempt's applied change: the files it touched and the mutations it kept."""

    touched: frozenset[str]
    kept: tuple[Mutation, ...]


class AttemptLoop:
    """Runs agent tasks through attempts and the recovery ladder."""

    def __init__(
        self,
        *,
        board: TaskBoard,
        state: WorkspaceState,
        intake: DocumentIntake,
        checker: ChangeChecker,
        recovery: RecoveryLadder,
        agents: AgentFactory,
        context: ContextBuilder,
        economy: Economy,
        decisions: DecisionRecords,
        ledger: Ledger,
        notices: NoticeStream,
        lease_ttl_s: float,
    ) -> None:
        self._board = board
        self._state = state
        self._intake = intake
        self._checker = checker
        self._recovery = recovery
        self._agents = agents
        self._context = context
        self._economy = economy
        self._decisions = decisions
        self._ledger = ledger
        self._notices = notices
        self.lease_ttl_s = lease_ttl_s
        self._running: dict[str, asyncio.Task[AgentResult]] = {}

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, record: TaskRecord) -> TaskOutcome:
        """Take a started task (its agent named on the board) to its outcome."""
        spec = record.spec
        if record.agent is None:
            raise AgentFailure(f"task {spec.task_id} was started without an agent")
        breaker = self._recovery.breaker(spec.kind)
        if breaker is not None:  # no agent is built for a task that is not going to run
            return self._escalate(
                record,
                (),
                f"the circuit breaker for {spec.kind!r} tasks is open since {breaker.task_id}",
                ESCALATION_CHOICES,
            )
        agent = self._agents.create(spec.kind, record.agent)
        baseline_texts = self.read_files(spec.paths)
        feedback: tuple[Verdict, ...] = ()
        previous_diff = ""
        earlier_failures: list[Verdict] = []
        while True:
            attempt = self._board.begin_attempt(spec.task_id)
            applied = await self._attempt(record, agent, feedback, previous_diff, baseline_texts)
            if isinstance(applied, TaskOutcome):
                return applied
            self._board.mark_checking(spec.task_id)
            # Every file the task has changed in any attempt, not only in this one.
            files = self.read_files(sorted(record.files | set(spec.paths)))
            before = {p: baseline_texts[p] for p in files if p in baseline_texts}
            judged = await self._checker.check_change(
                before,
                files,
                sorted(applied.touched),
                task_id=spec.task_id,
                agent_id=agent.agent_id,
            )
            self._board.set_verdicts(spec.task_id, judged.verdicts)
            self._ledger.record(
                "task.checked",
                task_id=spec.task_id,
                agent_id=agent.agent_id,
                attempt=attempt,
                verdicts=[verdict_summary(v) for v in judged.verdicts],
                new_failures=[verdict_summary(v) for v in judged.failures],
            )
            blame = Blame(agent.agent_id, spec.kind, attempt)
            for notice in diagnostics_notices(
                files, judged.verdicts, failures=judged.failures, blame=blame
            ):
                self._notices.emit(notice)
            if not judged.failures:
                if (unparsed := unparsed_message(judged.verdicts)) is not None:
                    self.rollback(spec.task_id)  # broken before or by it: never "verified"
                    return TaskOutcome(TaskState.FAILED, unparsed)
                if earlier_failures:  # failed, then fixed: the judicial loop writes an ADR
                    self._record_decision(record, applied.kept, earlier_failures)
                return self._commit(record, applied.kept)
            earlier_failures.extend(judged.failures)
            action = self._recovery.on_failure(
                spec.task_id, spec.kind, judged.failures, diff=change_diff(before, files)
            )
            self._ledger.record(
                "task.recovery",
                task_id=spec.task_id,
                agent_id=agent.agent_id,
                action=action.kind,
                attempt=action.attempt,
                message=action.message,
            )
            if action.rollback:
                self.rollback(spec.task_id)
            if action.kind == "escalate":
                return self._escalate(record, (), action.message, action.choices)
            if action.fresh_agent:
                replacement = self._agents.replacement_id(spec.kind, agent.agent_id)
                agent = self._agents.create(spec.kind, replacement)
                self._board.assign_agent(spec.task_id, agent.agent_id)
            feedback, previous_diff = action.feedback, action.diff

    async def _attempt(
        self,
        record: TaskRecord,
        agent: Agent,
        feedback: tuple[Verdict, ...],
        previous_diff: str,
        baseline_texts: dict[str, str],
    ) -> AttemptResult | TaskOutcome:
        """Run the agent once and apply its mutations under a lease."""
        spec = record.spec
        request = self._board.plan_of(spec.task_id).request
        work = self._context.work_for(spec, request, feedback=feedback, previous_diff=previous_diff)
        run = asyncio.get_running_loop().create_task(agent.run(work), name=f"agent-{spec.task_id}")
        self._running[spec.task_id] = run
        try:
            result = await run
        except asyncio.CancelledError:
            self.rollback(spec.task_id)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the swarm itself is stopping
            return TaskOutcome(TaskState.CANCELLED, "cancelled")
        except AgentFailure as exc:
            self.rollback(spec.task_id)
            return TaskOutcome(TaskState.FAILED, str(exc))
        finally:
            self._running.pop(spec.task_id, None)
        self._ledger.record(
            "agent.result",
            task_id=spec.task_id,
            agent_id=agent.agent_id,
            mutations=[mutation_summary(m) for m in result.mutations],
            usage=msgspec.to_builtins(result.usage),
            notes=result.notes,
        )
        touched = await self._apply_mutations(record, result.mutations, baseline_texts)
        self._board.add_result(spec.task_id, result.usage, touched)
        return AttemptResult(frozenset(touched), tuple(result.mutations))

    async def _apply_mutations(
        self, record: TaskRecord, mutations: Sequence[Mutation], baseline_texts: dict[str, str]
    ) -> set[str]:
        if not mutations:
            return set()
        paths = sorted({self._state.resolve(m.path) for m in mutations})
        for rel in paths:  # files beyond the task's own: remember them as they were
            if rel not in baseline_texts:
                baseline_texts[rel] = self._state.read(rel)[0]
        holder = f"agent:{record.agent}/task:{record.spec.task_id}"
        # Leases are between agents only: wait (bounded, woken on release) for a busy file.
        lease = await self._state.wait_for_lease(
            paths, holder, ttl_s=self.lease_ttl_s, wait_s=self.lease_ttl_s
        )
        try:
            for mutation in mutations:
                try:
                    self._state.apply_mutation(mutation, lease)
                except LeaseError as exc:
                    self._ledger.record(
                        "lease.rejected",
                        task_id=record.spec.task_id,
                        path=mutation.path,
                        reason=str(exc),
                    )
                    raise
        finally:
            self._state.release(lease)
        return set(paths)

    # --- endings ----------------------------------------------------------------------------

    def cancel(self, task_id: str) -> bool:
        """Stop the task's agent if it is running now; True if there was one."""
        running = self._running.get(task_id)
        if running is None:
            return False
        running.cancel()
        return True

    def cancel_all(self) -> None:
        """Stop every running agent (the swarm is stopping); their tasks end cancelled."""
        for running in list(self._running.values()):
            running.cancel()

    def rollback(self, task_id: str) -> None:
        """Undo exactly this task's edits (everyone else's stay) and re-check those files."""
        record = self._board.task(task_id)
        if record is None or not record.files:
            return
        restored = self._state.reject_task(task_id)
        if not restored:
            return  # already undone
        self._intake.restored(restored)  # the rolled-back findings go away
        self._ledger.record("task.rolled_back", task_id=task_id, paths=restored)

    def _commit(self, record: TaskRecord, kept: Sequence[Mutation]) -> TaskOutcome:
        if record.files:
            self._intake.bump_version()
        for rel in record.files:
            if not self._state.is_open(rel):
                self._state.flush(rel)
        self._recovery.on_success(record.spec.task_id, record.spec.kind)
        self._record_outcome(record, kept, passed=True)
        changed = len(record.files)
        message = f"{changed} file(s) changed" if changed else "no changes needed"
        return TaskOutcome(TaskState.VERIFIED, message)

    def _escalate(
        self, record: TaskRecord, kept: Sequence[Mutation], reason: str, choices: Iterable[str]
    ) -> TaskOutcome:
        self._record_outcome(record, kept, passed=False)
        return TaskOutcome(
            TaskState.ESCALATED, f"needs a human: {reason}", Escalation(reason, tuple(choices))
        )

    def _record_outcome(
        self, record: TaskRecord, kept: Sequence[Mutation], *, passed: bool
    ) -> None:
        if record.agent is None:
            return
        contributions = kept_work_from_mutations(kept) or {record.agent: KeptWork(())}
        self._economy.record_task(
            record.spec.task_id,
            record.spec.kind,
            contributions,
            passed,
            record.usage,
            retries=max(record.attempts - 1, 0),  # escalated before any attempt: none
        )

    def _record_decision(
        self, record: TaskRecord, kept: Sequence[Mutation], failures: Sequence[Verdict]
    ) -> None:
        spec = record.spec
        summary = (
            "; ".join(m.description or f"edited {m.path}" for m in kept)
            or "the task's final change"
        )
        symbols = tuple(
            str(spec.arguments[k]) for k in ("old", "new", "symbol") if spec.arguments.get(k)
        )
        paths = sorted(record.files | set(spec.paths))
        try:
            written = self._decisions.record_resolution(
                spec.task_id, failures, summary, paths, symbols
            )
        except OSError as exc:  # the change stands; only its record could not be written
            log.warning("no decision record for %s: %s", spec.task_id, exc)
            self._notices.emit(
                MessageNotice("warning", f"decision record for {spec.task_id} not written: {exc}")
            )
            return
        self._ledger.record("adr.written", task_id=spec.task_id, record=str(written))

    # --- reading ----------------------------------------------------------------------------

    def read_files(
        self, paths: Iterable[str], *, refused: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The current texts of `paths`; a file that cannot be read is reported and skipped
        (and its reason put in `refused` when given)."""
        files = {}
        for rel in paths:
            try:
                files[rel] = self._state.read(rel)[0]
            except StateError as exc:
                self._notices.emit(MessageNotice("warning", f"{rel}: {exc.reason}"))
                if refused is not None:
                    refused[rel] = exc.reason
        return files


def change_diff(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """A unified diff of every file whose text differs (what the agent changed)."""
    parts: list[str] = []
    for rel in sorted(after):
        old, new = before.get(rel, ""), after[rel]
        if old != new:
            parts.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"a/{rel}",
                    tofile=f"b/{rel}",
                )
            )
    return "".join(parts)


def mutation_summary(mutation: Mutation) -> dict[str, object]:
    """A mutation as the ledger stores it."""
    return {
        "path": mutation.path,
        "base_version": mutation.base_version,
        "description": mutation.description,
        "edits": [[e.start, e.end, e.new_text] for e in mutation.edits],
    }


def describe_attempts(ledger: Ledger, headline: str, task_ids: Iterable[str]) -> str:
    """What each attempt of these tasks changed and what the checks said, from the ledger."""
    lines = [headline]
    for task_id in task_ids:
        for event in ledger.events(task_id=task_id, kinds=("agent.result", "task.checked")):
            if event.kind == "agent.result":
                paths = sorted({m["path"] for m in event.payload.get("mutations", [])})
                lines.append(
                    f"  {task_id} {event.agent_id} changed {', '.join(paths) or 'nothing'}"
                )
                continue
            for verdict in event.payload.get("new_failures", []):
                for finding in verdict.get("findings", [])[:5]:
                    lines.append(
                        f"    {finding['path']}:{finding['line'] + 1} "
                        f"{finding['code']}: {finding['message']}"
                    )
    return "\n".join(lines)
