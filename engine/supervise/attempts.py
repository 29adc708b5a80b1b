"""The attempt and recovery loop of one agent task: run, apply, judge, recover.

Owns `AttemptLoop.run`, which takes a started task to its `TaskOutcome`: the agent works on a
snapshot; its mutations are applied under file leases; the task's whole change since it began
is judged — the safety checks against the same files before it (no new failure), the integrity
check when it edited what judges it (the pre-task tests, fixtures and check configuration run
against its change), then the acceptance check of its kind (did it do what was asked). A clean
change is committed (closed files flushed, the agents credited, a decision record written when
it needed fixing first); a change that edited its own judges is held for the user's explicit
accept; a task that changed nothing ends "no-change", never verified; a failing one — an unmet
acceptance criterion or a no-change included — goes up the recovery ladder (targeted fix with
the findings and the agent's own diff, then rollback and a fresh agent, then rollback and a
human). It also owns the running agents' asyncio tasks, so a running task can be cancelled.
Invariant: a task that does not end verified (or accepted) keeps none of its edits
(decision 004); a held task's edits are never written until accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

import msgspec

from delegation_machine.engine.agents.base import Agent, AgentFailure, AgentResult
from delegation_machine.engine.agents.factory import AgentFactory
from delegation_machine.engine.economy import Economy, KeptWork, kept_work_from_mutations
from delegation_machine.engine.intake import DocumentIntake
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.adr import DecisionRecords
from delegation_machine.engine.memory.context import ContextBuilder
from delegation_machine.engine.notices import MessageNotice, NoticeStream
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import Mutation, TaskState, Verdict, verdict_summary
from delegation_machine.engine.schedule.board import TaskBoard, TaskRecord
from delegation_machine.engine.state import LeaseError, StateError, WorkspaceState
from delegation_machine.engine.supervise.acceptance import AcceptanceJudge
from delegation_machine.engine.supervise.affected import is_test_file
from delegation_machine.engine.supervise.change import (
    Blame,
    ChangeChecker,
    change_diff,
    diagnostics_notices,
)
from delegation_machine.engine.supervise.integrity import (
    adds_tests_only,
    judging_changes,
    renamed_only,
)
from delegation_machine.engine.supervise.recovery import ESCALATION_CHOICES, RecoveryLadder
from delegation_machine.engine.supervise.unparsed import unparsed_message

log = logging.getLogger(__name__)

HELD_CHOICES = ("Accept the test change", "Show the diff", "Reject")


class Escalation(msgspec.Struct, frozen=True):
    """The question the user is asked about a task the swarm gave up on."""

    reason: str
    choices: tuple[str, ...]


class TaskOutcome(msgspec.Struct, frozen=True):
    """How a task ended (verified, no-change, held, failed, escalated or cancelled), why, and
    whether its goal holds (`None`: as its state says)."""

    state: TaskState
    message: str
    escalation: Escalation | None = None
    goal_met: bool | None = None

    @property
    def succeeded(self) -> bool:
        """Verified, or nothing needed doing (dependent tasks may go on)."""
        if self.goal_met is not None:
            return self.goal_met
        return self.state == TaskState.VERIFIED


class AttemptResult(msgspec.Struct, frozen=True):
    """One attempt's applied change: the files it touched and the mutations it kept."""

    touched: frozenset[str]
    kept: tuple[Mutation, ...]
    notes: str = ""


class Judgement(msgspec.Struct, frozen=True):
    """One check round of a task's whole change: what was shown, what failed, what is held."""

    verdicts: tuple[Verdict, ...]
    failures: tuple[Verdict, ...]
    changed: tuple[str, ...]  # files whose text differs from the task's start
    held: tuple[str, ...] = ()  # judging files it changed, kept only on the user's accept
    broken: str | None = None  # a file of the task did not parse before it and still does not


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
        acceptance: AcceptanceJudge,
        allow_test_changes: Callable[[], bool] = lambda: False,
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
        self._acceptance = acceptance
        self._allow_test_changes = allow_test_changes
        self._running: dict[str, asyncio.Task[AgentResult]] = {}
        self._held: dict[str, tuple[Mutation, ...]] = {}  # task id -> its kept mutations

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
            # Every file the task has changed in any attempt, not only in this one: the whole
            # change since the task began is what is judged (a later attempt that changes
            # nothing does not pass on an empty diff).
            files = self.read_files(sorted(record.files | set(spec.paths)))
            before = {p: baseline_texts[p] for p in files if p in baseline_texts}
            judged = await self._judge(record, agent.agent_id, attempt, before, files)
            if judged.broken is not None:  # bad content: its reason, never "verified"
                self.rollback(spec.task_id)
                return TaskOutcome(TaskState.FAILED, judged.broken)
            if not judged.failures:
                if judged.held:
                    return self._hold(record, applied.kept, judged.held, before, files)
                if not judged.changed:
                    return self._no_change(record, applied.notes, judged)
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
                if not judged.changed:  # it never did anything: no-change, and a human asked
                    return self._escalate(
                        record, (), action.message, action.choices, state=TaskState.NO_CHANGE
                    )
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
        return AttemptResult(frozenset(touched), tuple(result.mutations), result.notes)

    async def _judge(
        self,
        record: TaskRecord,
        agent_id: str,
        attempt: int,
        before: dict[str, str],
        after: dict[str, str],
    ) -> Judgement:
        """Safety, then integrity, then acceptance, over the task's whole change."""
        spec = record.spec
        changed = tuple(rel for rel in after if before.get(rel) != after[rel])
        held: tuple[str, ...] = ()
        if changed:
            checked = await self._checker.check_change(
                before, after, list(changed), task_id=spec.task_id, agent_id=agent_id
            )
            verdicts, failures = list(checked.verdicts), list(checked.failures)
            baseline = list(checked.baseline)
        else:  # nothing to check for harm; acceptance still reads the findings
            verdicts = await self._checker.check_files(before, list(before), task_id=None)
            failures, baseline = [], verdicts
        broken = None if failures else unparsed_message(verdicts)
        if not failures and broken is None:
            judging = [
                rel
                for rel in judging_changes(before, after)
                if not _renames(spec, before, after, rel)
            ]
            if judging and not self._adds_tests_only(spec, before, after, judging):
                integrity = await self._checker.check_integrity(
                    before, after, judging, task_id=spec.task_id
                )
                verdicts.append(integrity)
                if not integrity.passed:
                    failures.append(integrity)
                elif not self._allow_test_changes():
                    held = tuple(judging)
        if not failures and broken is None:
            request = self._board.plan_of(spec.task_id).request
            acceptance = await self._acceptance.judge(
                task_id=spec.task_id,
                kind=spec.kind,
                instruction=spec.instruction,
                paths=list(spec.paths) or list(after),
                arguments=spec.arguments,
                before=before,
                after=after,
                baseline=baseline,
                verdicts=verdicts,
                diff=change_diff(before, after),
                selection=request.selected_lines(request.path)
                if request.path in spec.paths
                else None,
            )
            verdicts.append(acceptance)
            if not acceptance.passed:
                failures.append(acceptance)
        self._board.set_verdicts(spec.task_id, verdicts)
        self._ledger.record(
            "task.checked",
            task_id=spec.task_id,
            agent_id=agent_id,
            attempt=attempt,
            changed=list(changed),
            verdicts=[verdict_summary(v) for v in verdicts],
            new_failures=[verdict_summary(v) for v in failures],
            held=list(held),
        )
        blame = Blame(agent_id, spec.kind, attempt)
        for notice in diagnostics_notices(after, verdicts, failures=failures, blame=blame):
            self._notices.emit(notice)
        return Judgement(tuple(verdicts), tuple(failures), changed, held, broken)

    @staticmethod
    def _adds_tests_only(
        spec: TaskSpec, before: dict[str, str], after: dict[str, str], judging: list[str]
    ) -> bool:
        """A `write-tests` task may add tests: that is its work, not a change to its judges."""
        if spec.arguments.get("template") != "write-tests":
            return False
        return all(
            rel.endswith(".py")
            and is_test_file(rel)
            and adds_tests_only(before.get(rel, ""), after.get(rel, ""))
            for rel in judging
        )

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
        self._write(record)
        self._recovery.on_success(record.spec.task_id, record.spec.kind)
        self._record_outcome(record, kept, passed=True)
        return TaskOutcome(TaskState.VERIFIED, f"{len(record.files)} file(s) changed")

    def _write(self, record: TaskRecord) -> None:
        if record.files:
            self._intake.bump_version()
        for rel in record.files:
            if not self._state.is_open(rel):
                self._state.flush(rel)

    def _no_change(self, record: TaskRecord, notes: str, judged: Judgement) -> TaskOutcome:
        """Nothing changed and the acceptance check passed: the goal already held."""
        self._recovery.on_success(record.spec.task_id, record.spec.kind)
        self._record_outcome(record, (), passed=True)
        accepted = next((v for v in judged.verdicts if v.check == "acceptance"), None)
        why = accepted.reason if accepted is not None else "nothing to change"
        note = f"; the agent said: {notes.strip()[:300]}" if notes.strip() else ""
        return TaskOutcome(TaskState.NO_CHANGE, f"no change: {why}{note}", goal_met=True)

    def _hold(
        self,
        record: TaskRecord,
        kept: Sequence[Mutation],
        judging: Sequence[str],
        before: dict[str, str],
        after: dict[str, str],
    ) -> TaskOutcome:
        """The change edited what judges it: kept applied, never written, until accepted."""
        self._held[record.spec.task_id] = tuple(kept)
        hunks = change_diff(
            {rel: before.get(rel, "") for rel in judging}, {rel: after[rel] for rel in judging}
        )
        reason = (
            f"changed its own tests: {', '.join(judging)} (the tests as they were pass on its "
            "change); accept the test change to keep it, or reject it"
        )
        self._ledger.record(
            "task.held", task_id=record.spec.task_id, paths=list(judging), diff=hunks[:20_000]
        )
        return TaskOutcome(
            TaskState.HELD,
            reason,
            Escalation(f"{reason}\n{hunks[:4_000]}", HELD_CHOICES),
            goal_met=False,
        )

    def commit_held(self, task_id: str) -> bool:
        """The user accepted a held task's change: write it like a verified one."""
        kept = self._held.pop(task_id, None)
        record = self._board.task(task_id)
        if kept is None or record is None:
            return False
        self._write(record)
        self._record_outcome(record, kept, passed=True)
        self._ledger.record("task.held_accepted", task_id=task_id, paths=sorted(record.files))
        return True

    def rollback_held(self, task_id: str | None = None) -> list[str]:
        """Undo held changes (one task's, or all when stopping): nothing held is ever written."""
        undone = []
        for held_id in [task_id] if task_id else list(self._held):
            if self._held.pop(held_id, None) is not None:
                self.rollback(held_id)
                undone.append(held_id)
        return undone

    def _escalate(
        self,
        record: TaskRecord,
        kept: Sequence[Mutation],
        reason: str,
        choices: Iterable[str],
        *,
        state: TaskState = TaskState.ESCALATED,
    ) -> TaskOutcome:
        self._record_outcome(record, kept, passed=False)
        return TaskOutcome(state, f"needs a human: {reason}", Escalation(reason, tuple(choices)))

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


def _renames(spec: TaskSpec, before: dict[str, str], after: dict[str, str], rel: str) -> bool:
    """A rename's edit to a test only renames: the test judges as it did, so it is not held."""
    old, new = spec.arguments.get("old"), spec.arguments.get("new")
    if spec.kind != "rename" or not isinstance(old, str) or not isinstance(new, str):
        return False
    return rel in before and rel in after and renamed_only(before[rel], after[rel], old, new)


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
