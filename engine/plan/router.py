"""Which plan a request gets: a built-in plan, a plan template, or the model planner.

Owns `classify` (a request's task kind and arguments, from its explicit kind or from its
instruction) and `PlanRouter`, which turns a classified request into a validated TaskGraph:
per-file or workspace-wide built-in plans, `rename` over the files the symbol index says
mention the name, a natural-language request on one file or a selection straight to one
agent (its template if one fits, else one LLM task: no model planner), and a workspace-wide
request through `plan_request` (templates, then the model planner).
Every refusal is a `DelegationError` that says what the user can do instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from delegation_machine.engine.agents.builtin.instructions import parse_builtin_instruction
from delegation_machine.engine.agents.llm_tools import repo_map_budget, workspace_repo_map
from delegation_machine.engine.inference.accounting import BudgetExceeded
from delegation_machine.engine.inference.backend import BackendError
from delegation_machine.engine.inference.config import ModelSetup, no_backend_message
from delegation_machine.engine.memory.workspace_index import WorkspaceIndex
from delegation_machine.engine.plan.builtin import (
    BUILTIN_KINDS,
    SOURCE_SUFFIXES,
    plan_builtin,
    python_targets,
)
from delegation_machine.engine.plan.graph import TaskGraph, TaskSpec
from delegation_machine.engine.plan.planner import (
    PLAN_REPLY_TOKENS,
    PlanningFailed,
    PlanningUnavailable,
    plan_request,
)
from delegation_machine.engine.plan.templates import plan_from_template
from delegation_machine.engine.protocol import DelegationError, DelegationRequest
from delegation_machine.engine.state import StateError, WorkspaceState
from delegation_machine.engine.supervise.python_parse import parses_as_python

MODEL_KIND = "llm"


def classify(request: DelegationRequest) -> tuple[str, dict[str, Any]]:
    """The task kind of a request and the arguments its instruction gives that kind."""
    parsed = parse_builtin_instruction(request.instruction)
    if request.kind:
        if request.kind in BUILTIN_KINDS:
            arguments = parsed[1] if parsed and parsed[0] == request.kind else {}
            return request.kind, dict(arguments)
        if request.kind == MODEL_KIND:
            return MODEL_KIND, {}
        raise DelegationError(
            f"unknown task kind {request.kind!r}; built-in kinds are "
            f"{', '.join(BUILTIN_KINDS)}, or omit the kind to let a model plan the work"
        )
    if parsed is not None:
        return parsed[0], dict(parsed[1])
    return MODEL_KIND, {}


def one_agent_plan(plan_id: str, request: DelegationRequest, path: str) -> TaskGraph:
    """One LLM task on `path` (workspace-relative): the editor's (or `run --file`) targeting
    already says where the work is, so there is nothing for a planner to split."""
    where = path
    if request.span is not None:
        where += f" lines {request.span.start.line + 1}-{request.span.end.line + 1}"
    tag = f"file:{path}"
    task = TaskSpec(
        task_id=f"{plan_id}.1",
        kind=MODEL_KIND,
        instruction=f"In {where}: {request.instruction.strip()}",
        paths=(path,),
        inputs=(tag,),
        outputs=(tag,),
        cost={MODEL_KIND: 20.0},
        handoff_tokens=200,
        plan_id=plan_id,
    )
    return TaskGraph.from_tags([task])


class PlanRouter:
    """Plans requests for one workspace."""

    def __init__(
        self,
        state: WorkspaceState,
        index: WorkspaceIndex,
        model: ModelSetup,
        *,
        workspace_version: Callable[[], int],
        parallelism: int = 1,
        batch_files: Callable[[], bool] = lambda: True,
    ) -> None:
        """`parallelism`: how many tasks the swarm's workers run at once (batches per plan);
        `batch_files`: whether file-wise tasks may batch files now (not when each task's
        change is judged by tests, which cannot say which file of a batch failed them)."""
        self._state = state
        self._index = index
        self._model = model
        self._workspace_version = workspace_version
        self._parallelism = parallelism
        self._batch_files = batch_files

    def workspace_sources(self) -> list[str]:
        """The workspace's Python sources (the targets of workspace-wide built-in plans)."""
        return python_targets(self._index.files())

    async def plan(
        self, plan_id: str, kind: str, request: DelegationRequest, arguments: Mapping[str, Any]
    ) -> TaskGraph:
        if kind == MODEL_KIND:
            graph = await self._plan_with_model(plan_id, request)
        elif kind == "rename":
            graph = await self._plan_rename(plan_id, request, arguments)
        else:
            targets = (
                [self._state.resolve(request.path)] if request.path else self.workspace_sources()
            )
            sizes, refused = self._sizes(targets)
            graph = plan_builtin(
                plan_id,
                kind,
                request.instruction,
                targets=targets,
                arguments=arguments,
                parallelism=self._parallelism,
                sizes=sizes,
                batched=self._batch_files(),
                alone=refused,
            )
        if not len(graph):
            where = request.path or "the workspace"
            raise DelegationError(f"{kind}: nothing to do in {where} (no Python files found)")
        return graph

    def _sizes(self, targets: list[str]) -> tuple[dict[str, int], set[str]]:
        """The targets' sizes in bytes, for the cost model, and the ones to keep out of batches:
        files the workspace refuses to read (binary, not UTF-8, too large, not a regular file)
        and Python files that do not parse. Each goes in a task of its own, which fails with
        its own reason; in a batch it would fail the batch (its check says "does not parse")
        and take the other files' good changes with it."""
        sizes: dict[str, int] = {}
        refused: set[str] = set()
        for rel in targets:
            try:
                text, _ = self._state.read(rel)
            except StateError:
                refused.add(rel)
                continue
            sizes[rel] = len(text.encode("utf-8"))
            if rel.endswith(SOURCE_SUFFIXES) and not parses_as_python(text):
                refused.add(rel)
        return sizes, refused

    async def _plan_rename(
        self, plan_id: str, request: DelegationRequest, arguments: Mapping[str, Any]
    ) -> TaskGraph:
        old, new = arguments.get("old"), arguments.get("new")
        if not old or not new:
            raise DelegationError("rename needs two names: 'rename OLD NEW'")
        await self._index.wait_ready()
        paths = sorted({o.path for o in self._index.symbols.occurrences(old)})
        if not paths:
            raise DelegationError(f"rename: no symbol named {old!r} in this workspace")
        return plan_builtin(
            plan_id, "rename", request.instruction, targets=paths, arguments=arguments
        )

    async def _plan_with_model(self, plan_id: str, request: DelegationRequest) -> TaskGraph:
        session = self._model.session
        if session is None:
            raise DelegationError(no_backend_message())
        if request.path:
            return self._plan_on_file(plan_id, request, self._state.resolve(request.path))
        await self._index.wait_ready()
        config = self._model.config
        try:
            window = await session.context_window()
            return await plan_request(
                request,
                backend=session,
                plan_id=plan_id,
                workspace_version=self._workspace_version(),
                repo_map=workspace_repo_map(
                    self._index.symbols,
                    token_budget=repo_map_budget(window.tokens if window else None),
                ),
                prefixes=self._model.prefixes,
                workspace=str(self._state.root),
                max_output_tokens=(
                    config.max_output_tokens if config is not None else PLAN_REPLY_TOKENS
                ),
                max_retries=config.max_validation_retries if config is not None else 2,
            )
        except PlanningUnavailable:
            raise DelegationError(no_backend_message()) from None
        except PlanningFailed as exc:
            raise DelegationError(f"the model could not plan this request: {exc}") from None
        except (BackendError, BudgetExceeded) as exc:
            raise DelegationError(f"planning failed: {exc}") from None

    def _plan_on_file(self, plan_id: str, request: DelegationRequest, rel: str) -> TaskGraph:
        """A request on one file or a selection: its template, else one agent; no planner."""
        on_file = msgspec.structs.replace(request, path=rel)
        templated = plan_from_template(
            on_file, plan_id=plan_id, files={rel: self._state.read(rel)[0]}
        )
        if templated is not None:
            templated.validate()
            return templated
        return one_agent_plan(plan_id, on_file, rel)
