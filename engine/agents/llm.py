"""The LLM agent loop: prompt at a shared prefix, validated actions, tools, working memory.

Owns `LLMAgent`, which implements the Agent protocol. Each turn sends the shared prefix
(constitution + tool reference, repo map at version V, decision records), then the task's delta,
then the reasoning trace; the reply is decoded by the Validation Gate into one `AgentAction`,
which the toolbox executes. With working memory on (the default) the trace keeps every step,
and the outputs of steps older than `mask_window` are masked: their key facts go to the task's
MEMORY.md, the output to the episodic store, and a placeholder with a recall handle takes its
place; the boundary moves every `mask_step` steps, so between moves each prompt extends the
previous one and a prefix cache keeps serving it. With it off, the trace is SSA-pruned to the
steps still live. Invariants: the agent returns only Mutations against its snapshot; it stops
at `finish`, at `max_turns`, or at the task's token cap; a masked output can always be
recalled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import msgspec

from delegation_machine.engine.a2a import validate_package
from delegation_machine.engine.agents.base import AgentFailure, AgentResult, AgentWork, TokenUsage
from delegation_machine.engine.agents.llm_tools import (
    AgentAction,
    AgentToolbox,
    Checker,
    Finish,
    ProposeEdit,
    action_schema,
    fallback_repo_map,
    repo_map_budget,
    tool_reference,
)
from delegation_machine.engine.inference.accounting import BudgetExceeded
from delegation_machine.engine.inference.backend import (
    Backend,
    BackendError,
    ChatRequest,
    failure_record,
)
from delegation_machine.engine.inference.gate import GateFailure, complete_validated
from delegation_machine.engine.inference.layout import (
    CONSTITUTION,
    PrefixCatalog,
    SharedPrefix,
    naive_layout,
    shared_layout,
)
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.memory.funnel import ChunkScorer
from delegation_machine.engine.memory.timetravel import turn_event
from delegation_machine.engine.memory.working import (
    EpisodicStore,
    ObservationMasker,
    Turn,
    memory_file_path,
)
from delegation_machine.engine.plan.ssa import ReasoningTrace
from delegation_machine.engine.protocol import DelegationRequest, Event, Verdict

FOCUS_CONTEXT_LINES = 40
MASK_ABOVE_CHARS = 240
# The reply room of one action: the largest action is an edit with bounded `old` and `new`
# (llm_tools.MAX_EDIT_CHARS each). inference.max_output_tokens can only lower it; the session
# lowers it further to a quarter of a small context window.
ACTION_REPLY_TOKENS = 1536


class ValidationGateFailure(AgentFailure):
    """The model never produced a valid action; `verdict` is the failure verdict to show."""

    def __init__(self, failure: GateFailure) -> None:
        super().__init__(str(failure))
        self.verdict: Verdict = failure.verdict


class TurnTiming(msgspec.Struct, frozen=True):
    model_s: float  # awaiting the backend (HTTP and the model)
    loop_s: float  # everything else: layout, accounting, validation, tools, pruning


class RunStats(msgspec.Struct, frozen=True):
    turns: tuple[TurnTiming, ...]
    pruned_steps: int
    validation_retries: int
    masked_outputs: int = 0  # tool outputs working memory replaced by a recall handle


def constitution() -> str:
    return CONSTITUTION + "\n" + tool_reference() + "\n"


def render_delta(work: AgentWork) -> str:
    """The task's own part of the prompt: instruction, focus region, arguments, feedback."""
    manifest, request = work.package.manifest, work.request
    parts = [
        f"# Task {work.task_id} ({manifest.kind})",
        manifest.instruction or request.instruction,
    ]
    if work.arguments:
        parts.append("Arguments: " + msgspec.json.encode(dict(work.arguments)).decode())
    if request.path and request.path in work.files:
        parts.append(_focus_region(request.path, work.files[request.path].text, request))
    others = sorted(p for p in work.files if p != request.path)
    if others:
        parts.append("Other files in this task: " + ", ".join(others))
    if work.previous_diff:
        parts.append("Your previous change (already in the files above):\n" + work.previous_diff)
    if work.feedback:
        lines = ["Checks failed on the previous attempt; fix these:"]
        for verdict in work.feedback:
            lines.append(f"- {verdict.check}: {verdict.reason}")
            lines.extend(
                f"  {f.path}:{f.span.start.line + 1} {f.code}: {f.message}"
                for f in verdict.findings
            )
        parts.append("\n".join(lines))
    return "\n\n".join(p for p in parts if p) + "\n"


def _focus_region(path: str, text: str, request: DelegationRequest) -> str:
    lines = text.splitlines()
    if request.span is not None:
        first = max(0, request.span.start.line - FOCUS_CONTEXT_LINES)
        last = min(len(lines), request.span.end.line + FOCUS_CONTEXT_LINES + 1)
        selected = f" (selection: lines {request.span.start.line + 1}-{request.span.end.line + 1})"
    else:
        first, last, selected = 0, min(len(lines), 2 * FOCUS_CONTEXT_LINES), ""
    body = "\n".join(f"{n + 1:>5}  {lines[n]}" for n in range(first, last))
    return f"## {path}{selected}\n{body}"


class LLMAgent:
    """An agent whose decisions come from a model through the Validation Gate."""

    kind = "llm"

    def __init__(
        self,
        agent_id: str,
        backend: Backend | InferenceSession,
        *,
        budget: int | None = None,
        checker: Checker | None = None,
        repo_map: Callable[[AgentWork], str] | None = None,
        decision_records: Callable[[AgentWork], Sequence[str]] | None = None,
        prefixes: PrefixCatalog | None = None,
        max_turns: int = 12,
        max_validation_retries: int = 2,
        max_output_tokens: int = 1024,
        trace_window: int = 3,
        mask_window: int | None = 6,
        mask_step: int = 3,
        funnel_scorer: ChunkScorer | None = None,
        layout: Literal["shared", "naive"] = "shared",
        trajectory: Callable[[Event], None] | None = None,
    ) -> None:
        self.agent_id = agent_id
        # Each action and observation as an "agent.turn" event (episodic memory, time travel).
        self.trajectory = trajectory
        self.session = (
            backend if isinstance(backend, InferenceSession) else InferenceSession(backend)
        )
        self.budget = budget
        self.checker = checker
        self.repo_map = repo_map  # None: the index's map, sized to the context window
        self.decision_records = decision_records or (
            lambda work: work.package.environment.decision_records
        )
        self.prefixes = prefixes or PrefixCatalog()
        self.max_turns = max_turns
        self.max_validation_retries = max_validation_retries
        self.max_output_tokens = max_output_tokens
        self.trace_window = trace_window
        # Working memory: tool outputs of steps older than `mask_window` become placeholders
        # with a recall handle; the boundary moves every `mask_step` steps. None: no working
        # memory, the trace is SSA-pruned to the last `trace_window` steps and what they use.
        self.mask_window = mask_window
        self.mask_step = mask_step
        self.funnel_scorer = funnel_scorer
        self.layout = layout
        self.last_stats: RunStats | None = None
        self._turn = 0

    def prefix_for(self, work: AgentWork, window_tokens: int | None = None) -> SharedPrefix:
        """The shared prefix at the work's version; its repo map sized to the context window."""
        repo_map = self.repo_map
        budget = repo_map_budget(window_tokens)
        return self.prefixes.prefix_for(
            work.package.environment.workspace_version,
            constitution=constitution(),
            repo_map=(
                (lambda: repo_map(work))
                if repo_map is not None
                else (lambda: fallback_repo_map(work, budget))
            ),
            decision_records=lambda: self.decision_records(work),
            workspace=str(work.workspace_root),
        )

    async def run(self, work: AgentWork) -> AgentResult:
        validate_package(work.package, stage="agent")
        if self.budget is not None:
            self.session.ledger.set_budget(work.task_id, self.budget)
        masker = self.working_memory(work)
        toolbox = AgentToolbox(
            work,
            checker=self.checker,
            memory=masker.store if masker is not None else None,
            scorer=self.funnel_scorer,
        )
        try:
            return await self._loop(work, toolbox, masker)
        except BudgetExceeded as exc:
            raise AgentFailure(str(exc)) from None
        except GateFailure as exc:  # the model answered, never validly (or past its cap)
            self._record_failure(
                work,
                {
                    "error": "GateFailure",
                    "provider": self.session.backend.provider,
                    "status": None,
                    "retryable": False,
                    "reason": str(exc),
                    "attempts": exc.attempts,
                },
            )
            raise ValidationGateFailure(exc) from None
        except BackendError as exc:
            self._record_failure(work, failure_record(exc))
            raise AgentFailure(f"agent {self.agent_id}: {exc}") from None

    def _record_failure(self, work: AgentWork, record: dict[str, Any]) -> None:
        """A model.failed event: the ledger keeps what failed, where and why."""
        if self.trajectory is None:
            return
        self.trajectory(
            Event(
                kind="model.failed",
                payload={"task_id": work.task_id, "agent_id": self.agent_id, **record},
                task_id=work.task_id,
                agent_id=self.agent_id,
            )
        )

    def working_memory(self, work: AgentWork) -> ObservationMasker | None:
        """The run's masker: pages and key facts under `.delegation/tasks/<task>/`."""
        if self.mask_window is None:
            return None
        memory_file = memory_file_path(work.workspace_root, work.task_id)
        return ObservationMasker(
            window=self.mask_window,
            step=self.mask_step,
            store=EpisodicStore(memory_file.parent / "pages"),
            memory_file=memory_file,
        )

    async def _loop(
        self, work: AgentWork, toolbox: AgentToolbox, masker: ObservationMasker | None
    ) -> AgentResult:
        window = await self.session.context_window()
        prefix = self.prefix_for(work, window.tokens if window is not None else None)
        delta = render_delta(work)
        self._turn = 0
        trace = ReasoningTrace()
        edit_steps: list[int] = []
        usage = TokenUsage()
        timings: list[TurnTiming] = []
        pruned = retries = 0
        schema = action_schema()
        for _ in range(self.max_turns):
            turn_start = time.perf_counter()
            if masker is None:  # no working memory: drop the steps nothing live uses
                roots = trace.default_roots(window=self.trace_window, pinned=edit_steps)
                live = trace.pruned(roots)
                pruned += len(trace) - len(live)
            else:  # working memory: every step stays, old outputs behind recall handles
                live = _masked(trace, masker, trace.next_id)
            request = ChatRequest(
                messages=self._messages(prefix, delta, live, work),
                max_tokens=min(self.max_output_tokens, ACTION_REPLY_TOKENS),
                task_id=work.task_id,
                agent_id=self.agent_id,
            )
            backend_before = self.session.backend_time_for(work.task_id, self.agent_id)
            validated = await complete_validated(
                self.session,
                request,
                cast(Any, AgentAction),
                what="action",
                max_retries=self.max_validation_retries,
                schema=schema,
            )
            model_s = self.session.backend_time_for(work.task_id, self.agent_id) - backend_before
            retries += validated.attempts - 1
            usage = usage + TokenUsage(
                validated.usage.prompt_tokens,
                validated.usage.cached_tokens,
                validated.usage.output_tokens,
            )
            action = validated.value
            tool = action.__struct_config__.tag or "action"
            self._record_turn(
                work, "assistant", _describe(action), tool, validated.usage.output_tokens
            )
            if isinstance(action, Finish):
                timings.append(TurnTiming(model_s, time.perf_counter() - turn_start - model_s))
                self.last_stats = RunStats(
                    tuple(timings), pruned, retries, masker.masked_count if masker else 0
                )
                return AgentResult(
                    mutations=toolbox.mutations(work.task_id, self.agent_id),
                    usage=usage + TokenUsage(tool_calls=toolbox.tool_calls),
                    notes=action.summary,
                )
            observation = await toolbox.execute(action)
            self._record_turn(work, "tool", observation, tool, 0)
            step = trace.add(
                tool,
                _describe(action),
                uses=[u for u in action.uses if u in trace],
                value=observation,
            )
            if isinstance(action, ProposeEdit) and observation.startswith("ok"):
                edit_steps.append(step)
            timings.append(TurnTiming(model_s, time.perf_counter() - turn_start - model_s))
        self.last_stats = RunStats(
            tuple(timings), pruned, retries, masker.masked_count if masker else 0
        )
        raise AgentFailure(
            f"agent {self.agent_id} did not finish task {work.task_id} within {self.max_turns} "
            "turns (inference.max_turns); its proposed edits were not applied"
        )

    def _record_turn(
        self, work: AgentWork, role: str, content: str, tool: str, tokens: int
    ) -> None:
        if self.trajectory is None:
            return
        self._turn += 1
        self.trajectory(
            turn_event(
                task_id=work.task_id,
                agent_id=self.agent_id,
                turn=self._turn,
                role=role,
                content=content,
                tokens=tokens,
                tool=str(tool),
            )
        )

    def _messages(
        self, prefix: SharedPrefix, delta: str, live: ReasoningTrace, work: AgentWork
    ) -> Any:
        trace_text = None
        if len(live):
            trace_text = (
                "# Trace so far (steps nothing uses were pruned)\n"
                + live.render()
                + "\n\nReply with the next action as one JSON object."
            )
        if self.layout == "naive":
            return naive_layout(prefix, delta, self.agent_id, trace_text)
        return shared_layout(prefix, delta, trace_text)


def _masked(live: ReasoningTrace, masker: ObservationMasker, current: int) -> ReasoningTrace:
    """The live trace with the outputs of old steps replaced by recall placeholders."""
    turns = [
        Turn(step.id, "tool", step.value, step.kind)
        for step in live.steps
        if len(step.value) > MASK_ABOVE_CHARS  # a short output costs less than its placeholder
    ]
    shown = {turn.turn: turn.content for turn in masker.view(turns, current)}
    return ReasoningTrace(
        msgspec.structs.replace(step, value=shown[step.id]) if step.id in shown else step
        for step in live.steps
    )


def _describe(action: Any) -> str:
    fields = {
        name: getattr(action, name)
        for name in action.__struct_fields__
        if name not in ("thought", "uses") and getattr(action, name) not in (None, "", ())
    }
    if isinstance(action, ProposeEdit):
        fields = {"path": action.path, "description": action.description}
    text = msgspec.json.encode(fields).decode()
    return f"{text}  # {action.thought}" if action.thought else text
