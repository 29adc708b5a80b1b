"""The composition root: the one object the server and the CLI talk to.

Builds and wires, for one workspace: the ledger, the CodeCRDT state, the symbol index, the
notice stream, the task board, the ring and the dispatcher, the document intake, the planner,
the agent factory, the change checker, the attempt loop and the economy; starts and stops
them; and offers the public surface as thin delegations: `submit`, `cancel`, `accept`,
`reject`, per-hunk `hunks` / `accept_hunk` / `reject_hunk`, `retry`, `escalate`, `status`,
`events`, `subscribe`, and `documents` for document sync. Everything it builds lives on one
asyncio event loop, which owns all mutable state.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.agents.builtin.semgrep_fixes import shared_fix_scan
from delegation_machine.engine.agents.factory import AgentFactory, SwarmAgents
from delegation_machine.engine.config import (
    SwarmConfig,
    load_config,
    normalise_keys,
    parse_config,
    state_dir,
)
from delegation_machine.engine.economy import AgentStanding, Economy, economy_config_from
from delegation_machine.engine.inference.accounting import LedgerSnapshot
from delegation_machine.engine.inference.config import ModelSetup
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.intake import DocumentIntake
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.adr import DecisionRecords
from delegation_machine.engine.memory.context import ContextBuilder
from delegation_machine.engine.memory.workspace_index import WorkspaceIndex
from delegation_machine.engine.notices import MessageNotice, NoticeListener, NoticeStream
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.plan.router import PlanRouter, classify
from delegation_machine.engine.plan.templates import OFFERED_TEMPLATES
from delegation_machine.engine.protocol import DelegationError, DelegationRequest, Event, TaskState
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.rules import workspace_semgrep_rules
from delegation_machine.engine.scale.host import RemoteHost
from delegation_machine.engine.schedule.board import (
    AgentActivity,
    PlanRecord,
    PlanSummary,
    TaskBoard,
    TaskSummary,
)
from delegation_machine.engine.schedule.dispatch import Dispatcher, DispatchStatus, WorkerSpec
from delegation_machine.engine.schedule.interrupted import InterruptedPlan, abandon_interrupted
from delegation_machine.engine.state import PendingHunk, StateError, WorkspaceState
from delegation_machine.engine.supervise.acceptance import AcceptanceJudge
from delegation_machine.engine.supervise.attempts import AttemptLoop, describe_attempts
from delegation_machine.engine.supervise.change import ChangeChecker
from delegation_machine.engine.supervise.checks import CheckRunner
from delegation_machine.engine.supervise.recovery import ESCALATION_CHOICES, RecoveryLadder
from delegation_machine.engine.supervise.review import Reviewer
from delegation_machine.engine.supervise.runner import SUPERVISOR, TaskRunner

__all__ = ["DelegationError", "Swarm", "SwarmStatus"]

log = logging.getLogger(__name__)

USER_PEER = "user"  # the person at the editor, a peer who rates agents by rejecting their work
RING_CAPACITY = 1024
STOP_TIMEOUT_S = 30


class SwarmStatus(msgspec.Struct, frozen=True):
    workspace: str
    plans: tuple[PlanSummary, ...]
    tasks: tuple[TaskSummary, ...]
    agents: tuple[AgentActivity, ...]
    dispatcher: DispatchStatus
    economy: tuple[AgentStanding, ...] = ()
    tokens: LedgerSnapshot | None = None
    ledger_seq: int = 0


class Swarm:
    """A swarm of agents working on one workspace."""

    def __init__(
        self,
        root: Path | str,
        config: SwarmConfig | None = None,
        *,
        editor_settings: Mapping[str, Any] | None = None,
        watch: bool | None = None,
        agents: AgentFactory | None = None,
        redis_url: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise DelegationError(f"workspace folder does not exist: {self.root}")
        self.config = config or load_config(self.root, editor_settings)
        self._watch = self.config.watch if watch is None else watch
        self.ledger = Ledger(state_dir(self.root) / "ledger.sqlite3")
        self.notices = NoticeStream()
        self.state = WorkspaceState(
            self.root, max_file_bytes=self.config.max_file_bytes, record=self._record_event
        )
        self.state.subscribe(self.notices.emit)  # text changes join the one ordered stream
        self.index = WorkspaceIndex(self.root, warn=self._warn)
        self.decisions = DecisionRecords(self.root)
        self.board = TaskBoard(self.ledger)
        self.board.subscribe(self.notices.emit)
        # A corrupt economy.json is set aside (renamed) rather than stopping the swarm.
        self.economy = Economy.open(
            self.root, config=economy_config_from(self.config.economy), set_aside_corrupt=True
        )
        self.model = ModelSetup(self.config.inference)
        self.recovery = RecoveryLadder()
        self.checker = ChangeChecker(
            CheckRunner(
                self.root,
                rule_paths=workspace_semgrep_rules(self.root, self.config.semgrep_rules),
                warm_semgrep=True,
            ),
            level=self.config.check_level,
            is_quarantined=self.economy.is_quarantined,
            has_tests=self.index.has_tests,
        )
        self.ring: RingBuffer[TaskSpec] = RingBuffer(capacity=RING_CAPACITY, producer="multi")
        self.workers = [
            WorkerSpec(worker_id=f"worker-{n}", kind="builtin")
            for n in range(1, self.config.worker_count() + 1)
        ]
        # [scale] redis (or `redis_url`; "" reads $REDIS_URL): remote slots beside the local
        # workers, their agents run by worker processes through Redis (docs/scale-out.md).
        self.remote: RemoteHost | None = None
        if redis_url is not None or self.config.scale.redis:
            scale_url = self.config.scale.redis if redis_url is None else redis_url
            self.remote = RemoteHost(
                self.config.scale, root=self.root, ledger=self.ledger, url=scale_url
            )
        self._background: set[asyncio.Task[Any]] = set()
        self.documents = DocumentIntake(
            self.state,
            self.index,
            self.ring,
            self.ledger,
            self.notices,
            debounce_s=self.config.check_debounce_ms / 1000,
            spawn=lambda coroutine, name: self.spawn(coroutine, name=name),
        )
        self.planner = PlanRouter(
            self.state,
            self.index,
            self.model,
            workspace_version=self._workspace_version,
            parallelism=len(self.workers) + (self.config.scale.slots if self.remote else 0),
            batch_files=lambda: self.checker.task_level == "quick",
        )
        self.agents: AgentFactory = agents or SwarmAgents(
            self.root,
            [w.worker_id for w in self.workers],
            self.economy,
            self.model,
            busy_agents=self.board.busy_agents,
            checker=lambda files, changed: self.checker.check_files(
                files, changed, task_id=None, level="quick"
            ),
            trajectory=self._record_event,
            fix_scan=shared_fix_scan(self.checker.runner.semgrep),  # one warm semgrep for all
        )
        if self.remote is not None:
            self.agents = self.remote.agents(self.agents)
        self.attempts = AttemptLoop(
            board=self.board,
            state=self.state,
            intake=self.documents,
            checker=self.checker,
            recovery=self.recovery,
            agents=self.agents,
            context=ContextBuilder(
                self.state,
                self.index,
                self.decisions,
                workspace_version=self._workspace_version,
                list_sources=self.planner.workspace_sources,
            ),
            economy=self.economy,
            decisions=self.decisions,
            ledger=self.ledger,
            notices=self.notices,
            lease_ttl_s=self.config.lease_ttl_s,
            acceptance=AcceptanceJudge(
                self.root,
                tests=self.checker.runner.tests,
                read_text=self._read_text,
                reviewer=self._reviewer,
            ),
            allow_test_changes=lambda: self.config.allow_test_changes,
        )
        self.runner = TaskRunner(
            board=self.board,
            state=self.state,
            index=self.index,
            checker=self.checker,
            attempts=self.attempts,
            agents=self.agents,
            ledger=self.ledger,
            notices=self.notices,
        )
        self.dispatcher = Dispatcher(
            self.ring,
            [*self.workers, *(self.remote.slots() if self.remote is not None else ())],
            self.runner.run,
            board=self.board,
            agent_for=self.runner.agent_for,
            failure_scope=lambda spec: spec.plan_id,  # failed tasks are rolled back (004)
        )
        self._dispatcher_task: asyncio.Task[None] | None = None
        self._started = False
        self.interrupted: list[InterruptedPlan] = []  # found and abandoned by `start`

    @property
    def backend(self) -> InferenceSession | None:
        """The model session agents and the planner share (None: built-in agents only)."""
        return self.model.session

    def _workspace_version(self) -> int:
        return self.documents.workspace_version

    def _read_text(self, rel: str) -> str | None:
        """A file's current text for the acceptance checks (None: absent or refused)."""
        if not (self.root / rel).is_file() and not self.state.is_open(rel):
            return None
        try:
            return self.state.read(rel)[0]
        except StateError:
            return None

    def _reviewer(self) -> Reviewer | None:
        """The Judicial branch's reviewer: the model session, with a context of its own."""
        session = self.model.session
        return Reviewer(session) if session is not None else None

    def _record_event(self, event: Event) -> None:
        self.ledger.append(event)

    def _warn(self, text: str) -> None:
        self.notices.emit(MessageNotice("warning", text))

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Own the workspace (`WorkspaceBusy` while another process does), recover what a
        killed owner left (temp files, journaled edits, interrupted plans), start the workers."""
        if self._started:
            return
        removed = self.state.claim_owner()
        try:
            restored = self.state.restore_from_journal()  # unsaved agent edits survive a restart
            self.interrupted = abandon_interrupted(self.ledger, self.state)
        except BaseException:
            self.state.release_owner()
            raise
        if self.remote is not None:
            try:
                await self.remote.start()  # a clear ScaleError when Redis refuses
            except BaseException:
                self.state.release_owner()
                raise
        self._started = True
        self.ledger.record(
            "swarm.started",
            workspace=str(self.root),
            workers=[w.worker_id for w in self.workers],
            restored=restored,
            removed_temp_files=removed,
            interrupted=[plan.plan_id for plan in self.interrupted],
        )
        for plan in self.interrupted:
            self._warn(plan.message())
        self._dispatcher_task = self.spawn(self.dispatcher.run(), name="dispatcher")
        self.spawn(self.index.build(), name="index-build")
        if self._watch:
            self.documents.start_watching()

    async def stop(self) -> None:
        if not self._started:
            return
        self.documents.close()
        self.attempts.cancel_all()
        self.ring.close()
        if self._dispatcher_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._dispatcher_task), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("dispatcher did not drain in %d s; cancelling it", STOP_TIMEOUT_S)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.checker.aclose()
        if self.remote is not None:
            await self.remote.aclose()
        if self.model.session is not None:
            await self.model.session.aclose()
        for task_id in self.attempts.rollback_held():  # nothing held is written unaccepted
            self.ledger.record("task.held_rolled_back", task_id=task_id)
        self.state.flush_all()
        self.ledger.record("swarm.stopped")
        self.ledger.close()
        self.state.release_owner()
        self._started = False

    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run a background coroutine owned by the swarm; its failure is logged, not lost."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task

    def subscribe(self, listener: NoticeListener) -> Callable[[], None]:
        """Every notice (text changes, task updates, diagnostics, messages), in order."""
        return self.notices.subscribe(listener)

    # --- delegation ----------------------------------------------------------------------------

    async def submit(self, request: DelegationRequest) -> str:
        """Plan the request, publish its tasks on the ring, return the plan's task id."""
        if not self._started:
            raise DelegationError("the swarm is not running")
        kind, arguments = classify(request)
        plan_id = f"t-{uuid.uuid4().hex[:8]}"
        try:
            graph = await self.planner.plan(plan_id, kind, request, arguments)
        except DelegationError as exc:  # refused or the model failed: recorded, then reported
            self.ledger.record(
                "plan.refused",
                task_id=plan_id,
                kind=kind,
                instruction=request.instruction,
                path=request.path,
                reason=str(exc),
            )
            raise
        specs = [graph.task(task_id) for task_id in graph.topological_order()]
        self.board.add_plan(plan_id, request, kind, specs)
        # Every task's quick baseline from one batched run (the slow checks of a baseline run
        # only when they find something after a change: ChangeChecker.check_change).
        if specs:
            self.checker.prefetch(self.attempts.read_files({p for s in specs for p in s.paths}))
        await self.ring.publish_batch(specs)
        return plan_id

    async def wait(self, plan_id: str, timeout: float | None = None) -> TaskState:
        """Wait until the plan has finished; returns its final state."""
        return await self.board.wait(plan_id, timeout)

    async def cancel(self, task_id: str) -> TaskState:
        plan = self.board.plan(task_id)
        for record in self.board.plan_tasks(task_id):
            if not record.state.finished and not self.dispatcher.cancel(record.spec.task_id):
                self.runner.cancel_running(record.spec.task_id)
        self.ledger.record("plan.cancel_requested", task_id=task_id)
        return plan.state

    async def accept(self, task_id: str) -> TaskState:
        """Keep the plan's edits for good; a held task's change (it edited its own tests) is
        written now, on this explicit accept."""
        plan = self.board.plan(task_id)
        if not plan.state.finished:
            raise DelegationError(f"task {task_id} is still {plan.state.value}; wait or cancel")
        for sub_id in plan.task_ids:
            if self.attempts.commit_held(sub_id):
                self.board.settle_held(sub_id, TaskState.ACCEPTED, "accepted by the user")
            self.state.accept_task(sub_id)
        self.board.close_plan(task_id, TaskState.ACCEPTED)
        return plan.state

    async def reject(self, task_id: str) -> TaskState:
        """Undo exactly this task's edits, keeping everyone else's (the user's included)."""
        plan = self.board.plan(task_id)
        if not plan.state.finished:
            await self.cancel(task_id)
        restored: set[str] = set()
        for record in self.board.plan_tasks(task_id):
            if self.attempts.rollback_held(record.spec.task_id):
                self.board.settle_held(record.spec.task_id, TaskState.REJECTED, "rejected")
            changed = self.state.reject_task(record.spec.task_id)
            restored.update(changed)
            if changed and record.agent and record.agent != SUPERVISOR:
                # The user undid this agent's work: its change broke what the user wanted.
                self.economy.record_breakage(record.agent, USER_PEER)
        self.documents.restored(sorted(restored))
        self.board.close_plan(task_id, TaskState.REJECTED, paths=sorted(restored))
        return plan.state

    # --- per-hunk review (engine/state/hunks.py) -------------------------------------------

    def hunks(self, task_id: str | None = None, path: str | None = None) -> list[PendingHunk]:
        """Pending hunks of one plan (or of every finished, unsettled plan), in one file or
        all; `task_id` of each is its plan's id."""
        if task_id is not None:
            plans = [self.board.plan(task_id)]
        else:
            plans = [
                plan
                for summary in self.board.plan_summaries()
                if (plan := self.board.plan(summary.plan_id)).state.finished
                and plan.state not in (TaskState.ACCEPTED, TaskState.REJECTED)
            ]
        rel = self.state.resolve(path) if path is not None else None
        return [
            msgspec.structs.replace(hunk, task_id=plan.plan_id)
            for plan in plans
            for hunk in self.state.hunks(plan.task_ids, rel)
        ]

    async def accept_hunk(self, task_id: str, hunk_id: str) -> TaskState:
        """Keep one hunk of a finished plan; the plan settles once its last hunk is decided."""
        plan = self._reviewable(task_id)
        hunk = self._decide(plan.task_ids, hunk_id, self.state.accept_hunk)
        self.ledger.record("hunk.accepted", task_id=plan.plan_id, **_hunk_payload(hunk))
        return await self._settle_when_reviewed(plan.plan_id)

    async def reject_hunk(self, task_id: str, hunk_id: str) -> TaskState:
        """Undo exactly one hunk of a finished plan, keeping everything typed inside and
        beside it; the plan settles once its last hunk is decided."""
        plan = self._reviewable(task_id)
        hunk = self._decide(plan.task_ids, hunk_id, self.state.reject_hunk)
        self.ledger.record("hunk.rejected", task_id=plan.plan_id, **_hunk_payload(hunk))
        self.documents.restored([hunk.path])
        return await self._settle_when_reviewed(plan.plan_id)

    def _reviewable(self, task_id: str) -> PlanRecord:
        plan = self.board.plan(task_id)
        if not plan.state.finished:
            raise DelegationError(f"task {task_id} is still {plan.state.value}; wait or cancel")
        if plan.state in (TaskState.ACCEPTED, TaskState.REJECTED):
            raise DelegationError(f"task {task_id} is {plan.state.value} already")
        return plan

    @staticmethod
    def _decide(
        task_ids: Sequence[str],
        hunk_id: str,
        decide: Callable[[Sequence[str], str], PendingHunk],
    ) -> PendingHunk:
        try:
            return decide(task_ids, hunk_id)
        except StateError as exc:
            raise DelegationError(exc.reason) from None

    async def _settle_when_reviewed(self, plan_id: str) -> TaskState:
        """With every hunk decided, the plan is accepted (if any hunk was) or rejected."""
        plan = self.board.plan(plan_id)
        if self.state.hunks(plan.task_ids):
            return plan.state
        if self.ledger.events(task_id=plan_id, kinds=["hunk.accepted"], limit=1):
            return await self.accept(plan_id)
        rejected = {
            e.payload["task"] for e in self.ledger.events(task_id=plan_id, kinds=["hunk.rejected"])
        }
        for record in self.board.plan_tasks(plan_id):
            if record.spec.task_id in rejected and record.agent and record.agent != SUPERVISOR:
                self.economy.record_breakage(record.agent, USER_PEER)  # the user undid it all
        return await self.reject(plan_id)

    async def retry(self, task_id: str) -> str:
        """Run the task's request again with fresh agents (closing its kind's breaker)."""
        plan = self.board.plan_of(task_id)
        self.recovery.reset(plan.kind)
        self.ledger.record("plan.retry_requested", task_id=plan.plan_id)
        return await self.submit(msgspec.structs.replace(plan.request, kind=plan.kind))

    def escalate(self, task_id: str) -> None:
        """The user asks for a decision on a task now (the same choices as the breaker's)."""
        plan = self.board.plan_of(task_id)
        self.ledger.record("plan.escalated_by_user", task_id=plan.plan_id)
        self.notices.emit(
            MessageNotice(
                "warning",
                f"Task {plan.plan_id} ({plan.kind}: {plan.request.instruction}) is "
                f"{plan.state.value}: {plan.message}",
                task_id=plan.plan_id,
                choices=ESCALATION_CHOICES,
            )
        )

    async def resolve_escalation(self, task_id: str, choice: str) -> None:
        """The user answered an escalation: retry with a fresh agent, show the diff, or abandon."""
        plan = self.board.plan(task_id)
        lowered = choice.lower()
        self.ledger.record("plan.escalation_answered", task_id=task_id, choice=choice)
        if lowered.startswith("accept"):  # a held task's test change, accepted explicitly
            await self.accept(task_id)
        elif lowered.startswith("retry"):
            self.recovery.reset(plan.kind)
            await self.submit(msgspec.structs.replace(plan.request, kind=plan.kind))
        elif lowered.startswith("show"):
            self.notices.emit(MessageNotice("info", self.describe_attempts(task_id)))
        else:
            await self.reject(task_id)

    def describe_attempts(self, task_id: str) -> str:
        """What each attempt of a plan's tasks changed and what the checks said."""
        plan = self.board.plan_of(task_id)
        headline = f"{plan.plan_id} ({plan.kind}, {plan.state.value}): {plan.request.instruction}"
        return describe_attempts(self.ledger, headline, plan.task_ids)

    def update_settings(self, settings: Mapping[str, Any]) -> None:
        """Apply changed editor settings; the worker count takes effect on the next start."""
        merged = {**msgspec.to_builtins(self.config), **normalise_keys(settings)}
        self.config = parse_config(merged)
        previous = self.model.configure(self.config.inference)
        if previous is not None:  # its HTTP client would otherwise stay open
            self.spawn(previous.aclose(), name="close-replaced-backend")
        self.checker.level = self.config.check_level
        self.documents.debounce_s = self.config.check_debounce_ms / 1000
        self.attempts.lease_ttl_s = self.config.lease_ttl_s
        self.ledger.record("config.changed", keys=sorted(settings))

    def model_templates(self) -> list[str]:
        """Requests a model can take that have a deterministic plan (offered as code actions)."""
        return list(OFFERED_TEMPLATES)

    # --- status and events ---------------------------------------------------------------------

    def task_summaries(self, plan_id: str | None = None) -> list[TaskSummary]:
        return self.board.summaries(plan_id)

    def status(self) -> SwarmStatus:
        session = self.model.session
        return SwarmStatus(
            workspace=str(self.root),
            plans=tuple(self.board.plan_summaries()),
            tasks=tuple(self.board.summaries()),
            agents=tuple(self.board.activity()),
            dispatcher=self.dispatcher.status(),
            economy=tuple(self.economy.summary()),
            tokens=session.ledger.snapshot() if session is not None else None,
            ledger_seq=self.ledger.last_seq(),
        )

    def events(
        self,
        since: int = 0,
        *,
        task_id: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> list[Event]:
        return self.ledger.events(since, task_id=task_id, kinds=kinds)


def _hunk_payload(hunk: PendingHunk) -> dict[str, Any]:
    return {
        "hunk_id": hunk.hunk_id,
        "task": hunk.task_id,
        "path": hunk.path,
        "start": hunk.start,
        "end": hunk.end,
    }


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())
