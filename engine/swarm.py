"""The composition root: the one object the server and the CLI talk to.

Owns the wiring of ledger, CodeCRDT state, symbol index, checks, ring, dispatcher, agents,
recovery and economy for one workspace, and the record of every delegated task. It lives on
one asyncio event loop, which owns all of its mutable state; agents and checks receive
snapshots. Public surface: `start`, `stop`, `submit`, `cancel`, `accept`, `reject`,
`status`, `events`, the document-sync calls, and `subscribe` for notices.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.agents.base import (
    Agent,
    AgentFailure,
    AgentWork,
    FileVersion,
    TokenUsage,
)
from delegation_machine.engine.config import SwarmConfig, load_config, state_dir
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.plan.builtin import (
    BUILTIN_KINDS,
    plan_builtin,
    python_targets,
)
from delegation_machine.engine.plan.graph import TaskGraph, TaskSpec
from delegation_machine.engine.protocol import (
    AuditTrail,
    ContextPackage,
    DelegationRequest,
    EnvironmentSnapshot,
    Event,
    Finding,
    GoalHint,
    Mutation,
    TaskManifest,
    TaskState,
    TaskUpdate,
    Verdict,
)
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.schedule.dispatch import Dispatcher, WorkerSpec
from delegation_machine.engine.supervise.diagnostics import TaskDiagnostic, task_diagnostics
from delegation_machine.engine.supervise.recovery import ESCALATION_CHOICES
from delegation_machine.engine.verdict_cache import VerdictCache

log = logging.getLogger(__name__)

EDIT_PLAN = "edit"  # plan id of the check/index tasks that user edits publish
SUPERVISOR = "builtin:supervisor"  # the deterministic checkers, as a peer of the agents
USER_PEER = "user"  # the person at the editor, a peer who rates agents by rejecting their work
# Instructions that match a deterministic plan template (engine/plan/templates.py).
MODEL_TEMPLATE_TITLES = (
    "write tests for this function",
    "document this module",
)  # the deterministic checkers, as a peer of the agents


class DelegationError(Exception):
    """A request the swarm cannot take; the message says why and what to do instead."""


# --- notices the swarm sends to its listeners (the server, the CLI) --------------------------


class DiagnosticsNotice(msgspec.Struct, frozen=True):
    """The current findings of one check on one file (replaces earlier ones of that check).

    `blamed` are the findings a task's change introduced, with the task and agent they are
    about (related information and the Retry / Escalate / Show task actions in the editor).
    """

    path: str
    check: str
    findings: tuple[Finding, ...]
    blamed: tuple[TaskDiagnostic, ...] = ()


class MessageNotice(msgspec.Struct, frozen=True):
    level: str  # "error" | "warning" | "info"
    text: str
    task_id: str | None = None
    choices: tuple[str, ...] = ()


Notice = TaskUpdate | DiagnosticsNotice | MessageNotice
NoticeListener = Callable[[Notice], None]


@dataclass
class TaskRecord:
    """What the swarm knows about one task of a plan."""

    spec: TaskSpec
    state: TaskState = TaskState.QUEUED
    agent: str | None = None
    files: set[str] = field(default_factory=set)
    verdicts: list[Verdict] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    attempts: int = 0
    kept: list[Mutation] = field(default_factory=list)  # mutations of the current attempt
    baseline_texts: dict[str, str] = field(default_factory=dict)  # files before the task
    started: float | None = None
    finished: float | None = None
    message: str = ""

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


class SwarmStatus(msgspec.Struct, frozen=True):
    workspace: str
    plans: tuple[dict[str, Any], ...]
    tasks: tuple[TaskSummary, ...]
    agents: tuple[dict[str, Any], ...]
    dispatcher: Any
    economy: tuple[Any, ...] = ()
    tokens: Any = None
    ledger_seq: int = 0


def _finding_key(finding: Finding, text: str) -> tuple[str, str, str]:
    """Identity of a finding that survives unrelated edits: its code and the line's content."""
    lines = text.splitlines()
    line = lines[finding.span.start.line].strip() if finding.span.start.line < len(lines) else ""
    return (finding.path, finding.code, line)


class Swarm:
    """A swarm of agents working on one workspace."""

    def __init__(
        self,
        root: Path | str,
        config: SwarmConfig | None = None,
        *,
        editor_settings: Mapping[str, Any] | None = None,
        watch: bool | None = None,
    ) -> None:
        from delegation_machine.engine.memory.adr import DecisionRecords
        from delegation_machine.engine.memory.symbols import SymbolIndex
        from delegation_machine.engine.state import WorkspaceState
        from delegation_machine.engine.supervise import CheckRunner

        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise DelegationError(f"workspace folder does not exist: {self.root}")
        self.config = config or load_config(self.root, editor_settings)
        self.state_dir = state_dir(self.root)
        self.ledger = Ledger(self.state_dir / "ledger.sqlite3")
        self.state = WorkspaceState(
            self.root, max_file_bytes=self.config.max_file_bytes, record=self._record_event
        )
        self.index = SymbolIndex(self.root)
        self.decisions = DecisionRecords(self.root)
        self.checks = CheckRunner(self.root, rule_paths=self._rule_paths(), warm_semgrep=True)
        self.ring: RingBuffer[TaskSpec] = RingBuffer(capacity=1024, producer="multi")
        self.workers = [
            WorkerSpec(worker_id=f"worker-{n}", kind="builtin")
            for n in range(1, self.config.worker_count() + 1)
        ]
        self.dispatcher = Dispatcher(
            self.ring,
            self.workers,
            self._run_task,
            on_state=self._on_dispatch_state,
            failure_scope=lambda spec: spec.plan_id,  # failed tasks are rolled back (004)
        )
        self.recovery = self._create_recovery()
        self.economy = self._create_economy()
        self.backend = self._create_backend()
        self._watch = self.config.watch if watch is None else watch
        self._watcher: Any = None
        self._listeners: list[NoticeListener] = []
        self._tasks: dict[str, TaskRecord] = {}
        self._plans: dict[str, PlanRecord] = {}
        self._running_agents: dict[str, asyncio.Task[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._pending_checks: dict[str, asyncio.TimerHandle] = {}
        self._quick_checks = VerdictCache(self._run_quick_checks)
        self._index_ready = asyncio.Event()
        self._dispatcher_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._edit_counter = 0
        self._started = False
        # Bumped whenever workspace content changes; agents at one version share a prefix.
        self.workspace_version = 0

    def _record_event(self, event: Event) -> None:
        self.ledger.append(event)

    # --- parts built from the configuration ------------------------------------------------

    def _rule_paths(self) -> list[Path]:
        from delegation_machine.engine.rules import bundled_semgrep_rules

        paths = list(bundled_semgrep_rules())
        user_rules = self.root / ".delegation" / "semgrep"
        if user_rules.is_dir():
            paths.extend(sorted(user_rules.glob("*.y*ml")))
        paths.extend(self.root / p for p in self.config.semgrep_rules)
        return paths

    def _create_recovery(self) -> Any:
        from delegation_machine.engine.supervise.recovery import RecoveryLadder

        return RecoveryLadder()

    def _create_economy(self) -> Any:
        from delegation_machine.engine.economy import Economy, economy_config_from

        # A corrupt economy.json is set aside (renamed) rather than stopping the swarm.
        return Economy.open(
            self.root, config=economy_config_from(self.config.economy), set_aside_corrupt=True
        )

    def _create_backend(self) -> Any:
        """The inference session (backend + shared prefix accounting + token ledger), if any."""
        from delegation_machine.engine.inference.config import create_session, load_backend_config
        from delegation_machine.engine.inference.layout import PrefixCatalog

        self.inference_config = load_backend_config(self.config.inference or None)
        self.prefixes = PrefixCatalog()
        if self.inference_config is None:
            return None
        return create_session(self.inference_config)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        restored = self.state.restore_from_journal()  # unsaved agent edits survive a restart
        self.ledger.record(
            "swarm.started",
            workspace=str(self.root),
            workers=[w.worker_id for w in self.workers],
            restored=restored,
        )
        self._dispatcher_task = asyncio.create_task(self.dispatcher.run(), name="dispatcher")
        self._dispatcher_task.add_done_callback(self._log_task_failure)
        self.spawn(self._build_index(), name="index-build")
        if self._watch:
            self._start_watcher()

    async def stop(self) -> None:
        if not self._started:
            return
        for handle in self._pending_checks.values():
            handle.cancel()
        self._pending_checks.clear()
        if self._watcher is not None:
            self._watcher.stop()
        for task in list(self._running_agents.values()):
            task.cancel()
        self.ring.close()
        if self._dispatcher_task is not None:
            try:
                await asyncio.wait_for(self._dispatcher_task, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                self._dispatcher_task.cancel()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.checks.aclose()
        if self.backend is not None:
            await self.backend.aclose()
        self.state.flush_all()
        self.ledger.record("swarm.stopped")
        self.ledger.close()
        self._started = False

    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run a background coroutine owned by the swarm; its failure is logged, not lost."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(self._log_task_failure)
        return task

    @staticmethod
    def _log_task_failure(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def _build_index(self) -> None:
        try:
            await asyncio.to_thread(self.index.build)
        finally:
            self._index_ready.set()

    def _start_watcher(self) -> None:
        from delegation_machine.engine.state.watcher import WorkspaceWatcher

        # The watcher relays inotify events onto this loop and drops our own atomic writes.
        self._watcher = WorkspaceWatcher(
            self.root, self._on_disk_change, is_own_write=self.state.is_own_write
        )
        self._watcher.start()

    def _on_disk_change(self, rel: str, kind: str) -> None:
        try:
            if kind == "deleted":
                self.index.remove_file(rel)
                self._emit(DiagnosticsNotice(rel, "*", ()))
                return
            self.state.ingest_disk_change(rel)
        except Exception as exc:  # a refused file (binary, huge) is reported, not fatal
            log.info("external change to %s not taken in: %s", rel, exc)
            return
        self.workspace_version += 1
        self.ledger.record("file.external_change", path=rel, change=kind)
        self._schedule_edit_tasks(rel, delay_s=0.0)

    # --- notices -----------------------------------------------------------------------------

    def subscribe(self, listener: NoticeListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, notice: Notice) -> None:
        for listener in list(self._listeners):
            try:
                listener(notice)
            except Exception:
                log.exception("notice listener failed")

    # --- document sync (the editor's buffers are the peer "user") ----------------------------

    def open_document(self, path: str, text: str, version: int) -> str:
        rel = self.state.resolve(path)
        self.state.open_document(rel, text, version)
        self._schedule_edit_tasks(rel, delay_s=0.0)
        return rel

    def note_user_change(self, rel: str) -> None:
        """The editor bridge applied a user edit to the CRDT: re-check and re-index, debounced."""
        self.workspace_version += 1
        self._schedule_edit_tasks(rel, delay_s=self.config.check_debounce_ms / 1000)

    def recheck(self, path: str) -> str:
        """The file may differ from what was last checked (opened, saved): check and index it."""
        rel = self.state.resolve(path)
        self._schedule_edit_tasks(rel, delay_s=0.0)
        return rel

    def _schedule_edit_tasks(self, rel: str, *, delay_s: float) -> None:
        """Debounced: the latest edit to a file publishes one check and one index task."""
        loop = self._loop or asyncio.get_running_loop()
        pending = self._pending_checks.pop(rel, None)
        if pending is not None:
            pending.cancel()
        self._pending_checks[rel] = loop.call_later(delay_s, self._publish_edit_tasks, rel)

    def _publish_edit_tasks(self, rel: str) -> None:
        self._pending_checks.pop(rel, None)
        self._edit_counter += 1
        n = self._edit_counter
        specs = [
            TaskSpec(
                task_id=f"{EDIT_PLAN}.{n}.index",
                kind="index",
                paths=(rel,),
                plan_id=EDIT_PLAN,
                cost={"builtin": 0.2},
            ),
            TaskSpec(
                task_id=f"{EDIT_PLAN}.{n}.check",
                kind="check",
                paths=(rel,),
                plan_id=EDIT_PLAN,
                cost={"builtin": 2.0},
            ),
        ]
        self.spawn(self.ring.publish_batch(specs), name=f"publish-edit-{n}")

    # --- delegation --------------------------------------------------------------------------

    async def submit(self, request: DelegationRequest) -> str:
        """Plan the request, publish its tasks on the ring, return the plan's task id."""
        if not self._started:
            raise DelegationError("the swarm is not running")
        kind, arguments = self._classify(request)
        plan_id = f"t-{uuid.uuid4().hex[:8]}"
        graph = await self._plan(plan_id, kind, request, arguments)
        specs = [graph.task(task_id) for task_id in graph.topological_order()]
        if not specs:
            raise DelegationError(self._nothing_to_do(kind, request))
        plan = PlanRecord(plan_id, request, kind, [s.task_id for s in specs])
        self._plans[plan_id] = plan
        for spec in specs:
            self._tasks[spec.task_id] = TaskRecord(spec)
        self.ledger.record(
            "plan.submitted",
            task_id=plan_id,
            kind=kind,
            instruction=request.instruction,
            path=request.path,
            tasks=[msgspec.to_builtins(s) for s in specs],
        )
        self._notify_plan(plan)
        if self.config.check_level == "quick":  # baselines for every task from one batched run
            self._quick_checks.prefetch(self._read_files({p for s in specs for p in s.paths}))
        await self.ring.publish_batch(specs)
        return plan_id

    def _classify(self, request: DelegationRequest) -> tuple[str, dict[str, Any]]:
        from delegation_machine.engine.agents.builtin import parse_builtin_instruction

        if request.kind:
            if request.kind in BUILTIN_KINDS:
                parsed = parse_builtin_instruction(request.instruction)
                arguments = parsed[1] if parsed and parsed[0] == request.kind else {}
                return request.kind, dict(arguments)
            if request.kind == "llm":
                return "llm", {}
            raise DelegationError(
                f"unknown task kind {request.kind!r}; built-in kinds are "
                f"{', '.join(BUILTIN_KINDS)}, or omit the kind to let a model plan the work"
            )
        parsed = parse_builtin_instruction(request.instruction)
        if parsed is not None:
            return parsed[0], dict(parsed[1])
        return "llm", {}

    async def _plan(
        self, plan_id: str, kind: str, request: DelegationRequest, arguments: dict[str, Any]
    ) -> TaskGraph:
        if kind == "llm":
            return await self._plan_with_model(plan_id, request)
        if kind == "rename":
            return await self._plan_rename(plan_id, request, arguments)
        targets = [self.state.resolve(request.path)] if request.path else self._workspace_sources()
        return plan_builtin(
            plan_id, kind, request.instruction, targets=targets, arguments=arguments
        )

    async def _plan_rename(
        self, plan_id: str, request: DelegationRequest, arguments: dict[str, Any]
    ) -> TaskGraph:
        old, new = arguments.get("old"), arguments.get("new")
        if not old or not new:
            raise DelegationError("rename needs two names: 'rename OLD NEW'")
        await self._index_ready.wait()
        paths = sorted({o.path for o in self.index.occurrences(old)})
        if not paths:
            raise DelegationError(f"rename: no symbol named {old!r} in this workspace")
        return plan_builtin(
            plan_id, "rename", request.instruction, targets=paths, arguments=arguments
        )

    async def _plan_with_model(self, plan_id: str, request: DelegationRequest) -> TaskGraph:
        from delegation_machine.engine.agents.llm_tools import workspace_repo_map
        from delegation_machine.engine.inference.config import no_backend_message
        from delegation_machine.engine.plan.planner import (
            PlanningFailed,
            PlanningUnavailable,
            plan_request,
        )

        if self.backend is None:
            raise DelegationError(no_backend_message())
        files = {}
        if request.path:
            rel = self.state.resolve(request.path)
            files[rel] = self.state.read(rel)[0]
        await self._index_ready.wait()
        try:
            return await plan_request(
                request,
                backend=self.backend,
                files=files,
                plan_id=plan_id,
                workspace_version=self.workspace_version,
                repo_map=workspace_repo_map(self.index),
                prefixes=self.prefixes,
                workspace=str(self.root),
            )
        except PlanningUnavailable:
            raise DelegationError(no_backend_message()) from None
        except PlanningFailed as exc:
            raise DelegationError(f"the model could not plan this request: {exc}") from None

    def _workspace_sources(self) -> list[str]:
        files = self.index.files() if self._index_ready.is_set() else self._walk_sources()
        return python_targets(files)

    def _walk_sources(self) -> list[str]:
        skip = {".delegation", ".git", ".venv", "node_modules", "__pycache__", ".mypy_cache"}
        found = []
        for path in self.root.rglob("*.py"):
            rel = path.relative_to(self.root)
            if not skip.intersection(rel.parts):
                found.append(rel.as_posix())
        return sorted(found)

    @staticmethod
    def _nothing_to_do(kind: str, request: DelegationRequest) -> str:
        where = request.path or "the workspace"
        return f"{kind}: nothing to do in {where} (no Python files found)"

    async def wait(self, plan_id: str, timeout: float | None = None) -> TaskState:
        """Wait until the plan has finished; returns its final state."""
        plan = self._plans[plan_id]
        await asyncio.wait_for(plan.done.wait(), timeout)
        return plan.state

    # --- running one task (called by the dispatcher on a worker) -----------------------------

    async def _run_task(self, spec: TaskSpec, worker: WorkerSpec) -> bool:
        if spec.kind == "index":
            return self._run_index_task(spec)
        if spec.kind == "check" and spec.plan_id == EDIT_PLAN:
            return await self._run_edit_check(spec)
        if spec.kind == "check":
            return await self._run_delegated_check(spec)
        record = self._tasks.get(spec.task_id)
        if record is None or record.state.finished:
            return False
        record.started = time.monotonic()
        try:
            ok = await self._run_agent_task(record, worker)
        except asyncio.CancelledError:
            if record.state != TaskState.CANCELLED:
                raise
            ok = False
        except Exception as exc:  # an agent or check crashed: the task fails, the swarm goes on
            log.exception("task %s crashed", spec.task_id)
            self._rollback(record)
            self._finish(record, TaskState.FAILED, f"internal error: {exc}")
            ok = False
        return ok

    def _run_index_task(self, spec: TaskSpec) -> bool:
        for rel in spec.paths:
            try:
                text, _ = self.state.read(rel)
            except Exception:
                continue
            self.index.update_file(rel, text)
        return True

    async def _run_edit_check(self, spec: TaskSpec) -> bool:
        files = self._read_files(spec.paths)
        if not files:
            return False
        verdicts = await self._check(files, list(files), task_id=None)
        self._publish_diagnostics(files, verdicts)
        self.ledger.record(
            "check.completed",
            task_id=spec.task_id,
            paths=list(files),
            verdicts=[self._verdict_summary(v) for v in verdicts],
        )
        return True

    async def _run_delegated_check(self, spec: TaskSpec) -> bool:
        """A delegated `check` is the supervisors' own work: run them, report what they find."""
        record = self._tasks.get(spec.task_id)
        if record is None or record.state.finished:
            return False
        record.started = time.monotonic()
        record.agent = SUPERVISOR
        self._set_state(record, TaskState.CHECKING)
        files = self._read_files(spec.paths)
        if spec.arguments.get("level") == "full":
            verdicts = await self.checks.check(
                files=files, changed=list(files), task_id=spec.task_id, level="full"
            )
        else:
            verdicts = await self._check(files, list(files), task_id=spec.task_id)
        record.verdicts = list(verdicts)
        self._publish_diagnostics(files, verdicts)
        self.ledger.record(
            "task.checked",
            task_id=spec.task_id,
            agent_id=SUPERVISOR,
            verdicts=[self._verdict_summary(v) for v in verdicts],
        )
        unavailable = [v for v in verdicts if v.kind == "error"]
        if unavailable:
            reasons = "; ".join(f"{v.check}: {v.reason}" for v in unavailable)
            self._finish(record, TaskState.FAILED, f"a check could not run: {reasons}")
            return False
        found = sum(len(v.findings) for v in verdicts)
        self._finish(record, TaskState.VERIFIED, f"{found} finding(s) in {len(files)} file(s)")
        return True

    def _read_files(self, paths: Iterable[str]) -> dict[str, str]:
        files = {}
        for rel in paths:
            try:
                files[rel] = self.state.read(rel)[0]
            except Exception as exc:
                self._emit(MessageNotice("warning", f"{rel}: {exc}"))
        return files

    async def _check(
        self,
        files: Mapping[str, str],
        changed: Sequence[str],
        *,
        task_id: str | None,
        strict: bool = False,
    ) -> list[Verdict]:
        """Checks of `files`; `strict` (quarantine) is the full level with warnings failing.

        The quick level goes through the per-file cache; the full level always runs.
        """
        level = "full" if strict else self.config.check_level
        if level == "quick":
            return await self._quick_checks.check(files, task_id)
        return await self.checks.check(
            files=dict(files), changed=list(changed), task_id=task_id, level=level, strict=strict
        )

    async def _run_quick_checks(self, files: dict[str, str], changed: list[str]) -> list[Verdict]:
        return await self.checks.check(files=files, changed=changed, level="quick")

    def _publish_diagnostics(
        self,
        files: Mapping[str, str],
        verdicts: Sequence[Verdict],
        *,
        failures: Sequence[Verdict] = (),
        record: TaskRecord | None = None,
    ) -> None:
        """Diagnostics per (check, file); findings in `failures` are blamed on `record`."""
        blamed = task_diagnostics(
            failures,
            agent_id=record.agent if record else None,
            task_kind=record.spec.kind if record else None,
            attempt=record.attempts if record else None,
        )
        for verdict in verdicts:
            if verdict.kind == "error":
                continue
            for rel in files:
                if verdict.paths and rel not in verdict.paths:
                    continue  # this check did not look at the file: keep what it showed
                findings = tuple(f for f in verdict.findings if f.path == rel)
                ours = tuple(blamed.get((verdict.check, rel), ()))
                self._emit(DiagnosticsNotice(rel, verdict.check, findings, ours))

    async def _run_agent_task(self, record: TaskRecord, worker: WorkerSpec) -> bool:
        spec = record.spec
        agent = self._create_agent(spec.kind, worker)
        record.agent = agent.agent_id
        self._set_state(record, TaskState.RUNNING)
        if self.recovery.breaker_open(spec.kind):
            breaker = self.recovery.breaker(spec.kind)
            self._escalate(
                record,
                f"the circuit breaker for {spec.kind!r} tasks is open "
                f"since {breaker.task_id if breaker else 'an earlier task'}",
                ESCALATION_CHOICES,
            )
            return False
        strict = self.economy.is_quarantined(agent.agent_id)
        record.baseline_texts = self._read_files(spec.paths)
        feedback: tuple[Verdict, ...] = ()
        earlier_failures: list[Verdict] = []
        while True:
            record.attempts += 1
            touched = await self._attempt(record, agent, feedback)
            if touched is None:
                return False
            self._set_state(record, TaskState.CHECKING)
            # Every file the task has changed in any attempt, not only in this one.
            files = self._read_files(sorted(touched | record.files | set(spec.paths)))
            before = {p: record.baseline_texts[p] for p in files if p in record.baseline_texts}
            baseline = await self._check(before, list(before), task_id=None, strict=strict)
            verdicts = await self._check(
                files, sorted(touched), task_id=spec.task_id, strict=strict
            )
            failures = self._new_failures(verdicts, baseline, before, files)
            record.verdicts = list(verdicts)
            self._publish_diagnostics(files, verdicts, failures=failures, record=record)
            self.ledger.record(
                "task.checked",
                task_id=spec.task_id,
                agent_id=agent.agent_id,
                attempt=record.attempts,
                verdicts=[self._verdict_summary(v) for v in verdicts],
                new_failures=[self._verdict_summary(v) for v in failures],
            )
            if not failures:
                if earlier_failures:  # failed, then fixed: the judicial loop writes an ADR
                    self._record_decision(record, earlier_failures)
                self._commit(record)
                return True
            earlier_failures.extend(failures)
            action = self.recovery.on_failure(spec.task_id, spec.kind, failures)
            self.ledger.record(
                "task.recovery",
                task_id=spec.task_id,
                agent_id=agent.agent_id,
                action=action.kind,
                attempt=action.attempt,
                message=action.message,
            )
            if action.kind == "targeted_fix":
                feedback = tuple(action.feedback)
                continue
            self._rollback(record)
            if action.kind == "restart":
                agent = self._create_agent(spec.kind, worker, replacing=agent.agent_id)
                record.agent = agent.agent_id
                feedback = tuple(action.feedback)
                continue
            self._escalate(record, action.message, action.choices)
            return False

    async def _attempt(
        self, record: TaskRecord, agent: Agent, feedback: tuple[Verdict, ...]
    ) -> set[str] | None:
        """Run the agent once and apply its mutations under a lease; None if the task ended."""
        spec = record.spec
        work = self._work_for(record, feedback)
        run = asyncio.get_running_loop().create_task(agent.run(work), name=f"agent-{spec.task_id}")
        self._running_agents[spec.task_id] = run
        try:
            result = await run
        except asyncio.CancelledError:
            self._rollback(record)
            self._finish(record, TaskState.CANCELLED, "cancelled")
            return None
        except AgentFailure as exc:
            self._finish(record, TaskState.FAILED, str(exc))
            return None
        finally:
            self._running_agents.pop(spec.task_id, None)
        record.usage = record.usage + result.usage
        self.ledger.record(
            "agent.result",
            task_id=spec.task_id,
            agent_id=agent.agent_id,
            mutations=[self._mutation_summary(m) for m in result.mutations],
            usage=msgspec.to_builtins(result.usage),
            notes=result.notes,
        )
        touched = await self._apply_mutations(record, result.mutations)
        record.files |= touched
        record.kept = list(result.mutations)
        return touched

    def _work_for(self, record: TaskRecord, feedback: tuple[Verdict, ...]) -> AgentWork:
        spec = record.spec
        plan = self._plans[spec.plan_id]
        files = {
            rel: FileVersion(*self.state.read(rel))
            for rel in spec.paths
            if self.state.is_open(rel) or self.state.absolute(rel).is_file()
        }
        package = ContextPackage(
            manifest=TaskManifest(
                task_id=spec.task_id,
                plan_id=spec.plan_id,
                kind=spec.kind,
                instruction=spec.instruction,
                inputs=spec.inputs,
                outputs=spec.outputs,
            ),
            environment=EnvironmentSnapshot(
                workspace_version=self.workspace_version,
                paths=tuple(spec.paths),
                decision_records=tuple(
                    r.summary() for r in self.decisions.relevant_records(spec.paths)[:5]
                ),
            ),
            goal=GoalHint(text=spec.instruction, focus_paths=tuple(spec.paths)),
            audit=AuditTrail(
                requested_by=plan.request.requested_by,
                created_at=time.time(),
                parent_task=spec.plan_id,
            ),
        )
        return AgentWork(
            task_id=spec.task_id,
            package=package,
            request=plan.request,
            files=files,
            workspace_root=self.root,
            arguments=dict(spec.arguments),
            feedback=feedback,
            index=self.index,
            list_workspace_files=self._workspace_sources,
            read_file=lambda rel: FileVersion(*self.state.read(self.state.resolve(rel))),
        )

    async def _apply_mutations(self, record: TaskRecord, mutations: Sequence[Mutation]) -> set[str]:
        from delegation_machine.engine.state import LeaseError

        if not mutations:
            return set()
        paths = sorted({self.state.resolve(m.path) for m in mutations})
        for rel in paths:  # files beyond the task's own: remember them as they were
            if rel not in record.baseline_texts:
                record.baseline_texts[rel] = self.state.read(rel)[0]
        holder = f"agent:{record.agent}/task:{record.spec.task_id}"
        lease = await self._lease(paths, holder)
        try:
            for mutation in mutations:
                try:
                    self.state.apply_mutation(mutation, lease)
                except LeaseError as exc:
                    self.ledger.record(
                        "lease.rejected",
                        task_id=record.spec.task_id,
                        path=mutation.path,
                        reason=str(exc),
                    )
                    raise
        finally:
            self.state.release(lease)
        return set(paths)

    async def _lease(self, paths: Sequence[str], holder: str) -> Any:
        """Leases are between agents only; wait (bounded) while another agent holds a file."""
        from delegation_machine.engine.state import LeaseError

        deadline = time.monotonic() + self.config.lease_ttl_s
        delay = 0.01
        while True:
            try:
                return self.state.lease_files(paths, holder=holder, ttl_s=self.config.lease_ttl_s)
            except LeaseError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _new_failures(
        self,
        verdicts: Sequence[Verdict],
        baseline: Sequence[Verdict],
        before: Mapping[str, str],
        files: Mapping[str, str],
    ) -> list[Verdict]:
        """Checks that could not run, and findings the change introduced (not pre-existing).

        A baseline finding is identified by its line's content in the text *before* the
        change, a new one by its line in the text after, so moved lines still match.
        """
        known = {
            (v.check, *_finding_key(f, before.get(f.path, "")))
            for v in baseline
            for f in v.findings
        }
        failures = []
        for verdict in verdicts:
            if verdict.kind == "error":
                failures.append(verdict)
                continue
            new = tuple(
                f
                for f in verdict.findings
                if f.severity == "error" or f.code.startswith("semgrep:")
                if (verdict.check, *_finding_key(f, files.get(f.path, ""))) not in known
            )
            if new:
                failures.append(msgspec.structs.replace(verdict, kind="failed", findings=new))
        return failures

    def _record_decision(self, record: TaskRecord, failures: Sequence[Verdict]) -> None:
        spec = record.spec
        summary = (
            "; ".join(m.description or f"edited {m.path}" for m in record.kept)
            or "the task's final change"
        )
        symbols = tuple(
            str(spec.arguments[k]) for k in ("old", "new", "symbol") if spec.arguments.get(k)
        )
        try:
            written = self.decisions.record_resolution(
                spec.task_id, failures, summary, sorted(record.files | set(spec.paths)), symbols
            )
        except Exception:
            log.exception("no decision record for %s", spec.task_id)
            return
        self.ledger.record("adr.written", task_id=spec.task_id, record=str(written))

    def _commit(self, record: TaskRecord) -> None:
        if record.files:
            self.workspace_version += 1
        for rel in record.files:
            if not self.state.is_open(rel):
                self.state.flush(rel)
        self.recovery.on_success(record.spec.task_id, record.spec.kind)
        self._record_outcome(record, passed=True)
        message = (
            "no changes needed" if not record.files else f"{len(record.files)} file(s) changed"
        )
        self._finish(record, TaskState.VERIFIED, message)

    def _rollback(self, record: TaskRecord) -> None:
        if not record.files:
            return
        restored = self.state.reject_task(record.spec.task_id)
        for rel in restored:
            if not self.state.is_open(rel):
                self.state.flush(rel)
            self._schedule_edit_tasks(rel, delay_s=0.0)  # the rolled-back findings go away
        self.ledger.record("task.rolled_back", task_id=record.spec.task_id, paths=restored)

    def _escalate(self, record: TaskRecord, reason: str, choices: Sequence[str]) -> None:
        record.kept = []
        self._record_outcome(record, passed=False)
        self._finish(record, TaskState.ESCALATED, f"needs a human: {reason}")
        self._emit(
            MessageNotice(
                "error",
                f"Task {record.spec.task_id} ({record.spec.kind}) was rolled back and needs "
                f"you: {reason}",
                task_id=record.spec.plan_id,
                choices=tuple(choices),
            )
        )

    def _record_outcome(self, record: TaskRecord, *, passed: bool) -> None:
        from delegation_machine.engine.economy import KeptWork, kept_work_from_mutations

        if record.agent is None:
            return
        contributions = kept_work_from_mutations(record.kept) or {record.agent: KeptWork(())}
        try:
            self.economy.record_task(
                record.spec.task_id,
                record.spec.kind,
                contributions,
                passed,
                record.usage,
                retries=record.attempts - 1,
            )
        except Exception:
            log.exception("economy could not record %s", record.spec.task_id)

    def _create_agent(
        self, kind: str, worker: WorkerSpec, *, replacing: str | None = None
    ) -> Agent:
        """The agent for `kind` on `worker`; a restart (`replacing`) takes, by reputation, the
        agent of another worker, so a fresh agent really is another one."""
        from delegation_machine.engine.agents.builtin import create_builtin_agent

        family = f"builtin:{kind}" if kind in BUILTIN_KINDS else kind
        agent_id = f"{family}@{worker.worker_id}"
        if replacing is not None:
            candidates = [f"{family}@{w.worker_id}" for w in self.workers]
            others = [c for c in candidates if c != replacing] or [f"{replacing}/fresh"]
            agent_id = self.economy.choose_agent(others)
        if kind in BUILTIN_KINDS:
            return create_builtin_agent(kind, agent_id, workspace_root=self.root)
        if kind == "llm" and self.backend is not None:
            return self._create_llm_agent(agent_id)
        raise AgentFailure(f"no agent can run tasks of kind {kind!r}")

    def _create_llm_agent(self, agent_id: str) -> Agent:
        from delegation_machine.engine.agents.llm import LLMAgent

        cfg = self.inference_config
        assert cfg is not None
        return LLMAgent(
            agent_id,
            self.backend,
            prefixes=self.prefixes,
            budget=self._context_budget(agent_id, cfg.max_tokens_per_task),
            max_turns=cfg.max_turns,
            max_validation_retries=cfg.max_validation_retries,
            max_output_tokens=cfg.max_output_tokens,
            trajectory=self._record_event,
        )

    def _context_budget(self, agent_id: str, cap: int) -> int:
        """This agent's token budget: its share of the swarm's context capacity, bought in the
        Fisher market with a bid weighted by its trust (never above the per-task cap)."""
        running = {
            r.agent
            for r in self._tasks.values()
            if r.agent and r.agent.startswith("llm") and r.state == TaskState.RUNNING
        }
        bidders = sorted(running | {agent_id})
        bids = {a: max(self.economy.relative_trust(a), 0.05) for a in bidders}
        plan = self.economy.allocate_budgets(
            bids, capacity_tokens=cap * len(self.workers), max_concurrent=len(self.workers)
        )
        return max(1, min(cap, int(plan.budgets.get(agent_id, cap))))

    # --- task state --------------------------------------------------------------------------

    def _on_dispatch_state(self, task_id: str, state: str) -> None:
        record = self._tasks.get(task_id)
        if record is None or record.state.finished:
            return
        if state == "waiting":
            self._set_state(record, TaskState.WAITING)
        elif state == "cancelled":
            self._finish(
                record, TaskState.CANCELLED, self.dispatcher.reasons.get(task_id, "cancelled")
            )

    def _set_state(self, record: TaskRecord, state: TaskState) -> None:
        record.state = state
        self.ledger.record(
            "task.state", task_id=record.spec.task_id, agent_id=record.agent, state=state.value
        )
        self._notify_plan(self._plans[record.spec.plan_id])

    def _finish(self, record: TaskRecord, state: TaskState, message: str) -> None:
        record.finished = time.monotonic()
        record.message = message
        self._set_state(record, state)

    def _notify_plan(self, plan: PlanRecord) -> None:
        records = [self._tasks[t] for t in plan.task_ids]
        state = self._plan_state(plan, records)
        changed = state != plan.state
        plan.state = state
        files = sorted(set().union(*(r.files for r in records))) if records else []
        tokens = sum(r.usage.prompt_tokens + r.usage.output_tokens for r in records)
        verdicts = tuple(v for r in records for v in r.verdicts)
        messages = [
            f"{r.spec.task_id}: {r.message}"
            for r in records
            if r.message and r.state in (TaskState.FAILED, TaskState.ESCALATED, TaskState.CANCELLED)
        ]
        done = sum(r.state.finished for r in records)
        message = "; ".join(messages) or f"{done}/{len(records)} tasks finished"
        plan.message = message
        active = (TaskState.RUNNING, TaskState.CHECKING)
        agent = next((r.agent for r in records if r.state in active), None) or next(
            (r.agent for r in reversed(records) if r.agent), None
        )
        # The ledger leads: an event is recorded before anyone is told about it.
        finishing = state.finished and not plan.done.is_set()
        if finishing:
            self.ledger.record(
                "plan.finished", task_id=plan.plan_id, state=state.value, message=message
            )
        elif changed:
            self.ledger.record("plan.state", task_id=plan.plan_id, state=state.value)
        self._emit(
            TaskUpdate(
                task_id=plan.plan_id,
                state=state,
                kind=plan.kind,
                agent=agent,
                files=tuple(files),
                tokens=tokens,
                verdicts=verdicts,
                message=message,
            )
        )
        if finishing:
            plan.done.set()

    @staticmethod
    def _plan_state(plan: PlanRecord, records: Sequence[TaskRecord]) -> TaskState:
        if plan.state in (TaskState.ACCEPTED, TaskState.REJECTED):
            return plan.state
        states = {r.state for r in records}
        if not all(s.finished for s in states):
            if TaskState.CHECKING in states:
                return TaskState.CHECKING
            if TaskState.RUNNING in states:
                return TaskState.RUNNING
            return TaskState.WAITING if TaskState.WAITING in states else TaskState.QUEUED
        for worst in (TaskState.ESCALATED, TaskState.FAILED, TaskState.CANCELLED):
            if worst in states:
                return worst
        return TaskState.VERIFIED

    # --- cancel / accept / reject ------------------------------------------------------------

    def _plan_or_error(self, task_id: str) -> PlanRecord:
        plan = self._plans.get(task_id)
        if plan is None:
            raise DelegationError(f"no task with id {task_id!r}")
        return plan

    async def cancel(self, task_id: str) -> TaskState:
        plan = self._plan_or_error(task_id)
        for sub_id in plan.task_ids:
            record = self._tasks[sub_id]
            if record.state.finished:
                continue
            if self.dispatcher.cancel(sub_id):
                self._finish(record, TaskState.CANCELLED, "cancelled before it started")
            elif (running := self._running_agents.get(sub_id)) is not None:
                record.state = TaskState.CANCELLED
                running.cancel()
                self._rollback(record)
                self._finish(record, TaskState.CANCELLED, "cancelled while running")
        self.ledger.record("plan.cancel_requested", task_id=task_id)
        return plan.state

    async def accept(self, task_id: str) -> TaskState:
        plan = self._plan_or_error(task_id)
        if not plan.state.finished:
            raise DelegationError(f"task {task_id} is still {plan.state.value}; wait or cancel")
        for sub_id in plan.task_ids:
            self.state.accept_task(sub_id)
        plan.state = TaskState.ACCEPTED
        self.ledger.record("plan.accepted", task_id=task_id)
        self._notify_plan(plan)
        return plan.state

    async def reject(self, task_id: str) -> TaskState:
        """Undo exactly this task's edits, keeping everyone else's (the user's included)."""
        plan = self._plan_or_error(task_id)
        if not plan.state.finished:
            await self.cancel(task_id)
        restored: set[str] = set()
        for sub_id in plan.task_ids:
            changed = self.state.reject_task(sub_id)
            restored.update(changed)
            agent = self._tasks[sub_id].agent
            if changed and agent and agent != SUPERVISOR:
                # The user undid this agent's work: its change broke what the user wanted.
                self.economy.record_breakage(agent, USER_PEER)
        for rel in restored:
            if not self.state.is_open(rel):
                self.state.flush(rel)
            self._schedule_edit_tasks(rel, delay_s=0.0)
        plan.state = TaskState.REJECTED
        self.ledger.record("plan.rejected", task_id=task_id, paths=sorted(restored))
        self._notify_plan(plan)
        return plan.state

    def plan_of(self, task_id: str) -> PlanRecord:
        """The plan a task id names: a plan's own id or one of its tasks' ids."""
        record = self._tasks.get(task_id)
        return self._plan_or_error(record.spec.plan_id if record else task_id)

    async def retry(self, task_id: str) -> str:
        """Run the task's request again with fresh agents (closing its kind's breaker)."""
        plan = self.plan_of(task_id)
        self.recovery.reset(plan.kind)
        self.ledger.record("plan.retry_requested", task_id=plan.plan_id)
        return await self.submit(msgspec.structs.replace(plan.request, kind=plan.kind))

    def escalate(self, task_id: str) -> None:
        """The user asks for a decision on a task now (the same choices as the breaker's)."""
        plan = self.plan_of(task_id)
        self.ledger.record("plan.escalated_by_user", task_id=plan.plan_id)
        self._emit(
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
        plan = self._plan_or_error(task_id)
        lowered = choice.lower()
        self.ledger.record("plan.escalation_answered", task_id=task_id, choice=choice)
        if lowered.startswith("retry"):
            self.recovery.reset(plan.kind)
            await self.submit(msgspec.structs.replace(plan.request, kind=plan.kind))
        elif lowered.startswith("show"):
            self._emit(MessageNotice("info", self.describe_attempts(task_id), task_id=None))
        else:
            await self.reject(task_id)

    def describe_attempts(self, task_id: str) -> str:
        """What each attempt of a plan's tasks changed and what the checks said, from the ledger."""
        plan = self.plan_of(task_id)
        lines = [f"{plan.plan_id} ({plan.kind}, {plan.state.value}): {plan.request.instruction}"]
        for sub_id in plan.task_ids:
            for event in self.ledger.events(task_id=sub_id, kinds=("agent.result", "task.checked")):
                if event.kind == "agent.result":
                    paths = sorted({m["path"] for m in event.payload.get("mutations", [])})
                    lines.append(
                        f"  {sub_id} {event.agent_id} changed {', '.join(paths) or 'nothing'}"
                    )
                else:
                    for verdict in event.payload.get("new_failures", []):
                        for finding in verdict.get("findings", [])[:5]:
                            lines.append(
                                f"    {finding['path']}:{finding['line'] + 1} "
                                f"{finding['code']}: {finding['message']}"
                            )
        return "\n".join(lines)

    def update_settings(self, settings: Mapping[str, Any]) -> None:
        """Apply changed editor settings; the worker count takes effect on the next start."""
        from delegation_machine.engine.config import normalise_keys, parse_config

        merged = {**msgspec.to_builtins(self.config), **normalise_keys(settings)}
        self.config = parse_config(merged)
        previous, self.backend = self.backend, self._create_backend()
        if previous is not None:  # its HTTP client would otherwise stay open
            self.spawn(previous.aclose(), name="close-replaced-backend")
        self.ledger.record("config.changed", keys=sorted(settings))

    def model_templates(self) -> list[str]:
        """Requests a model can take that have a deterministic plan (offered as code actions)."""
        return list(MODEL_TEMPLATE_TITLES)

    # --- status and events -------------------------------------------------------------------

    def task_summaries(self, plan_id: str | None = None) -> list[TaskSummary]:
        plans = [self._plans[plan_id]] if plan_id else list(self._plans.values())
        return [self._summary(self._tasks[t]) for p in plans for t in p.task_ids]

    def _summary(self, record: TaskRecord) -> TaskSummary:
        return TaskSummary(
            task_id=record.spec.task_id,
            plan_id=record.spec.plan_id,
            kind=record.spec.kind,
            state=record.state.value,
            agent=record.agent,
            files=tuple(sorted(record.files)),
            verdicts=tuple(self._verdict_text(v) for v in record.verdicts),
            elapsed_s=round(record.elapsed_s, 3),
            tokens=record.usage.prompt_tokens + record.usage.output_tokens,
            message=record.message,
        )

    def status(self) -> SwarmStatus:
        plans = tuple(
            {
                "taskId": p.plan_id,
                "kind": p.kind,
                "state": p.state.value,
                "instruction": p.request.instruction,
                "tasks": len(p.task_ids),
                "message": p.message,
            }
            for p in self._plans.values()
        )
        agents = tuple(
            {"agent": r.agent, "task": r.spec.task_id, "state": r.state.value}
            for r in self._tasks.values()
            if r.state in (TaskState.RUNNING, TaskState.CHECKING)
        )
        return SwarmStatus(
            workspace=str(self.root),
            plans=plans,
            tasks=tuple(self.task_summaries()),
            agents=agents,
            dispatcher=msgspec.to_builtins(self.dispatcher.status()),
            economy=tuple(msgspec.to_builtins(self.economy.summary())),
            tokens=msgspec.to_builtins(self.backend.ledger.snapshot()) if self.backend else None,
            ledger_seq=self.ledger.last_seq(),
        )

    def events(self, since: int = 0, **filters: Any) -> list[Event]:
        return self.ledger.events(since, **filters)

    # --- formatting helpers for the ledger and summaries ------------------------------------

    @staticmethod
    def _verdict_text(verdict: Verdict) -> str:
        if verdict.kind == "error":
            return f"{verdict.check}: could not run ({verdict.reason})"
        if verdict.kind == "passed" or not verdict.findings:
            return f"{verdict.check}: passed"
        first = verdict.findings[0]
        more = f" (+{len(verdict.findings) - 1} more)" if len(verdict.findings) > 1 else ""
        line = first.span.start.line + 1
        return f"{verdict.check}: {first.code} at {first.path}:{line}{more}"

    @staticmethod
    def _verdict_summary(verdict: Verdict) -> dict[str, Any]:
        return {
            "check": verdict.check,
            "kind": verdict.kind,
            "reason": verdict.reason,
            "findings": [
                {"path": f.path, "line": f.span.start.line, "code": f.code, "message": f.message}
                for f in verdict.findings
            ],
        }

    @staticmethod
    def _mutation_summary(mutation: Mutation) -> dict[str, Any]:
        return {
            "path": mutation.path,
            "base_version": mutation.base_version,
            "description": mutation.description,
            "edits": [[e.start, e.end, e.new_text] for e in mutation.edits],
        }
