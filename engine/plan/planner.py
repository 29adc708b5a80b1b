"""The planner (Legislative branch): a DelegationRequest becomes a validated TaskGraph.

Owns `plan_request`: built-in kinds go to `plan.builtin`, common requests to deterministic
templates, and anything else to the model, whose plan passes the Validation Gate (schema,
known dependencies, no cycle, relative paths) with bounded retries. The planner's prompt uses the
same shared prefix as the agents, so planning warms the prefix cache they will read.
Invariant: what it returns has passed `TaskGraph.validate()`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

import msgspec

from delegation_machine.engine.agents.llm import constitution
from delegation_machine.engine.inference.backend import Backend, ChatRequest
from delegation_machine.engine.inference.config import no_backend_message
from delegation_machine.engine.inference.gate import GateFailure, complete_validated
from delegation_machine.engine.inference.layout import PrefixCatalog, shared_layout
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.plan.builtin import BUILTIN_KINDS, plan_builtin
from delegation_machine.engine.plan.graph import CycleError, TaskGraph, TaskSpec
from delegation_machine.engine.plan.templates import plan_from_template
from delegation_machine.engine.protocol import (
    MAX_CRITERIA,
    Criterion,
    DelegationRequest,
    Verdict,
    criterion_problem,
)

MAX_PLANNED_TASKS = 64


class PlanningUnavailable(Exception):
    """A natural-language request arrived and no backend is configured."""

    def __init__(self) -> None:
        super().__init__(no_backend_message())


class PlanningFailed(Exception):
    """The model's plan never passed the gate; `verdict` is the failure to show."""

    def __init__(self, failure: GateFailure) -> None:
        super().__init__(f"planning failed: {failure}")
        self.verdict: Verdict = failure.verdict


MAX_TASK_ID_CHARS = 32
MAX_INSTRUCTION_CHARS = 1000
MAX_TASK_PATHS = 16
MAX_PATH_CHARS = 300
# What a plan reply may take: a few tasks with their instructions and checks. A reply that
# hits it is one failed gate attempt ("too long"), not minutes of generated text.
PLAN_REPLY_TOKENS = 768

TaskId = Annotated[str, msgspec.Meta(max_length=MAX_TASK_ID_CHARS)]
PlanPath = Annotated[str, msgspec.Meta(max_length=MAX_PATH_CHARS)]


class PlannedTask(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: TaskId
    instruction: Annotated[str, msgspec.Meta(max_length=MAX_INSTRUCTION_CHARS)]
    kind: Literal["llm", "check", "format", "fix"] = "llm"
    paths: Annotated[list[PlanPath], msgspec.Meta(max_length=MAX_TASK_PATHS)] = []
    depends_on: Annotated[list[TaskId], msgspec.Meta(max_length=MAX_PLANNED_TASKS)] = []
    # What "done" means for this task, checked by the supervisor after the safety checks.
    acceptance: Annotated[list[Criterion], msgspec.Meta(max_length=MAX_CRITERIA)] = []


class PlanDraft(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tasks: Annotated[list[PlannedTask], msgspec.Meta(max_length=MAX_PLANNED_TASKS)]


def plan_problem(draft: PlanDraft, max_tasks: int = MAX_PLANNED_TASKS) -> str | None:
    """The semantic part of the gate: what a schema cannot say about a plan."""
    if not draft.tasks:
        return "$.tasks: a plan needs at least one task"
    if len(draft.tasks) > max_tasks:
        return f"$.tasks: at most {max_tasks} tasks, got {len(draft.tasks)}"
    ids = [t.id for t in draft.tasks]
    for number, task in enumerate(draft.tasks):
        where = f"$.tasks[{number}]"
        if not task.id.strip():
            return f"{where}.id: must not be empty"
        if ids.count(task.id) > 1:
            return f"{where}.id: duplicate id {task.id!r}"
        for dep in task.depends_on:
            if dep not in ids:
                return f"{where}.depends_on: unknown task {dep!r}"
        for path in task.paths:
            if path.startswith("/") or ".." in path.split("/") or "\\" in path:
                return f"{where}.paths: {path!r} is not a workspace-relative path"
        if len(task.acceptance) > MAX_CRITERIA:
            return f"{where}.acceptance: at most {MAX_CRITERIA} criteria"
        for position, criterion in enumerate(task.acceptance):
            problem = criterion_problem(criterion)
            if problem:
                return f"{where}.acceptance[{position}]: {problem}"
    try:
        graph_from_draft(draft, plan_id="check").validate()
    except CycleError as exc:
        return f"$.tasks: {exc}"
    return None


def graph_from_draft(draft: PlanDraft, *, plan_id: str) -> TaskGraph:
    """Task ids become `<plan_id>.<n>` in the model's order (decision 003); a dependency is both
    an edge and an operand tag."""
    full = {t.id: f"{plan_id}.{n}" for n, t in enumerate(draft.tasks, start=1)}
    graph = TaskGraph()
    for task in draft.tasks:
        writes = task.kind != "check"
        graph.add_task(
            TaskSpec(
                task_id=full[task.id],
                kind=task.kind,
                instruction=task.instruction,
                paths=tuple(task.paths),
                inputs=tuple(f"task:{full[d]}" for d in task.depends_on),
                outputs=(f"task:{full[task.id]}", *(f"file:{p}" for p in task.paths if writes)),
                cost={"llm": 20.0} if task.kind == "llm" else {"builtin": 2.0},
                handoff_tokens=300,
                plan_id=plan_id,
                arguments=(
                    {"acceptance": msgspec.to_builtins(task.acceptance)} if task.acceptance else {}
                ),
            )
        )
    for task in draft.tasks:
        for dep in task.depends_on:
            graph.add_dependency(full[dep], full[task.id], handoff_tokens=300)
    return graph


def _planning_delta(request: DelegationRequest, files: Mapping[str, str]) -> str:
    where = request.path or "the workspace"
    if request.path and request.span is not None:
        where += f" lines {request.span.start.line + 1}-{request.span.end.line + 1}"
    return (
        "# Planning\n"
        "Split the request below into tasks for coding agents. Reply with one JSON object: "
        '{"tasks": [{"id": "1", "instruction": "...", "kind": "llm", "paths": ["a.py"], '
        '"depends_on": []}]}. kind is "llm" (a model edits files), "check", "format" or "fix". '
        "Give each task the files it edits; a task that needs another's result lists it in "
        "depends_on. Prefer few tasks; independent tasks run in parallel. Give each task "
        '"acceptance": the checks that show it is done, from {"check": "tests-pass", "tests": '
        '[...]}, {"check": "symbol-exists", "name": "..."}, {"check": "symbol-gone", "name": '
        '"..."}, {"check": "finding-gone", "code": "..."}, and {"check": "review", "question": '
        '"..."} where no machine check fits.\n'
        f"Request on {where}: {request.instruction.strip()}\n"
        f"Files open for this request: {', '.join(sorted(files)) or '(none)'}\n"
    )


def _builtin_graph(request: DelegationRequest, plan_id: str, files: Mapping[str, str]) -> TaskGraph:
    kind = request.kind or ""
    targets = [request.path] if request.path else sorted(files)
    arguments: dict[str, str] = {}
    if kind == "rename":
        words = request.instruction.split()
        if words and words[0].lower() == "rename":
            words = words[1:]
        if len(words) >= 2:
            arguments = {"old": words[0], "new": words[1]}
    return plan_builtin(plan_id, kind, request.instruction, targets=targets, arguments=arguments)


async def plan_request(
    request: DelegationRequest,
    *,
    backend: Backend | InferenceSession | None = None,
    files: Mapping[str, str] | None = None,
    plan_id: str | None = None,
    workspace_version: int = 0,
    repo_map: str = "",
    decision_records: Sequence[str] = (),
    prefixes: PrefixCatalog | None = None,
    max_retries: int = 2,
    max_tasks: int = MAX_PLANNED_TASKS,
    workspace: str = "",
    max_output_tokens: int = PLAN_REPLY_TOKENS,
) -> TaskGraph:
    """Built-in kind -> template -> model. Raises PlanningUnavailable or PlanningFailed."""
    plan_id = plan_id or f"p{uuid.uuid4().hex[:8]}"
    files = files or {}
    if request.kind in BUILTIN_KINDS:
        return _builtin_graph(request, plan_id, files)
    templated = plan_from_template(request, plan_id=plan_id, files=files)
    if templated is not None:
        templated.validate()
        return templated
    if backend is None:
        raise PlanningUnavailable()
    session = backend if isinstance(backend, InferenceSession) else InferenceSession(backend)
    prefix = (prefixes or PrefixCatalog()).prefix_for(
        workspace_version,
        constitution=constitution(),
        repo_map=repo_map,
        decision_records=decision_records,
        workspace=workspace,
    )
    chat = ChatRequest(
        messages=shared_layout(prefix, _planning_delta(request, files)),
        max_tokens=min(max_output_tokens, PLAN_REPLY_TOKENS),
        task_id=plan_id,
        agent_id="planner",
    )
    try:
        validated = await complete_validated(
            session,
            chat,
            PlanDraft,
            what="plan",
            max_retries=max_retries,
            check=lambda draft: plan_problem(draft, max_tasks),
        )
    except GateFailure as exc:
        raise PlanningFailed(exc) from None
    graph = graph_from_draft(validated.value, plan_id=plan_id)
    graph.validate()
    return graph
