"""What one agent run may read: the Context Package and the snapshot behind it.

Owns `ContextBuilder`, which turns a task (its spec and request) into `AgentWork`: the task's
files at their current CRDT versions, the Context Package (manifest, environment at the
workspace version, goal hint, audit trail, and the decision records that bear on the task's
files), the read-only symbol index, and readers for files beyond the task's own. Invariant:
everything handed out is a snapshot or a read-only view; nothing lets an agent write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from delegation_machine.engine.agents.base import AgentWork, FileVersion
from delegation_machine.engine.memory.adr import DecisionRecords
from delegation_machine.engine.memory.workspace_index import WorkspaceIndex
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import (
    AuditTrail,
    ContextPackage,
    DelegationRequest,
    EnvironmentSnapshot,
    GoalHint,
    TaskManifest,
    Verdict,
)
from delegation_machine.engine.state import WorkspaceState

DECISION_RECORDS_PER_TASK = 5


class ContextBuilder:
    def __init__(
        self,
        state: WorkspaceState,
        index: WorkspaceIndex,
        decisions: DecisionRecords,
        *,
        workspace_version: Callable[[], int],
        list_sources: Callable[[], list[str]],
    ) -> None:
        self._state = state
        self._index = index
        self._decisions = decisions
        self._workspace_version = workspace_version
        self._list_sources = list_sources

    def package_for(self, spec: TaskSpec, request: DelegationRequest) -> ContextPackage:
        records = self._decisions.relevant_records(spec.paths)[:DECISION_RECORDS_PER_TASK]
        return ContextPackage(
            manifest=TaskManifest(
                task_id=spec.task_id,
                plan_id=spec.plan_id,
                kind=spec.kind,
                instruction=spec.instruction,
                inputs=spec.inputs,
                outputs=spec.outputs,
            ),
            environment=EnvironmentSnapshot(
                workspace_version=self._workspace_version(),
                paths=tuple(spec.paths),
                decision_records=tuple(r.summary() for r in records),
            ),
            goal=GoalHint(text=spec.instruction, focus_paths=tuple(spec.paths)),
            audit=AuditTrail(
                requested_by=request.requested_by,
                created_at=time.time(),
                parent_task=spec.plan_id,
            ),
        )

    def work_for(
        self,
        spec: TaskSpec,
        request: DelegationRequest,
        *,
        feedback: Sequence[Verdict] = (),
        previous_diff: str = "",
    ) -> AgentWork:
        files = {
            rel: FileVersion(*self._state.read(rel))
            for rel in spec.paths
            if self._state.is_open(rel) or self._state.absolute(rel).is_file()
        }
        return AgentWork(
            task_id=spec.task_id,
            package=self.package_for(spec, request),
            request=request,
            files=files,
            workspace_root=self._state.root,
            arguments=dict(spec.arguments),
            feedback=tuple(feedback),
            previous_diff=previous_diff,
            index=self._index.symbols,
            list_workspace_files=self._list_sources,
            read_file=self._read_file,
        )

    def _read_file(self, path: str) -> FileVersion:
        return FileVersion(*self._state.read(self._state.resolve(path)))
