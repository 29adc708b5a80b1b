"""Plans a killed process left unfinished: found at start, abandoned explicitly, reported.

Owns `abandon_interrupted`. It runs once the swarm owns the workspace (so no other process is
running them): every plan the ledger shows submitted and never ended was interrupted. Its
tasks that verified keep their edits (they were checked and written); every other task's
edits, which the CRDT journal restored, are undone (selective undo, everyone else's edits
stay), so nothing unverified reaches the disk. Each plan gets a `plan.abandoned` event with
what was kept and undone, and a message the CLI prints and the editor shows.
"""

from __future__ import annotations

import time

import msgspec

from delegation_machine.engine.ledger import Ledger, UnfinishedPlan
from delegation_machine.engine.protocol import TaskState
from delegation_machine.engine.state import WorkspaceState

KEPT_STATES = frozenset({TaskState.VERIFIED.value, TaskState.ACCEPTED.value})


class InterruptedPlan(msgspec.Struct, frozen=True):
    """What was done about one interrupted plan."""

    plan_id: str
    kind: str
    instruction: str
    submitted_ts: float
    kept_tasks: tuple[str, ...]  # verified before the interruption: their edits stay
    undone_tasks: tuple[str, ...]  # not verified: their edits were undone
    restored_paths: tuple[str, ...]  # files whose text the undo changed back

    def message(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.submitted_ts))
        total = len(self.kept_tasks) + len(self.undone_tasks)
        undone = (
            f"the unverified edits of {len(self.undone_tasks)} task(s) were undone in "
            + ", ".join(self.restored_paths)
            if self.restored_paths
            else "it had no unverified edits"
        )
        return (
            f"Plan {self.plan_id} ({self.kind}: {self.instruction!r}, submitted {when}) was "
            f"interrupted: the process running it stopped before it finished. It is abandoned; "
            f"{len(self.kept_tasks)}/{total} task(s) had verified and keep their edits, "
            f"{undone}. Run the request again to finish it."
        )


def abandon_interrupted(ledger: Ledger, state: WorkspaceState) -> list[InterruptedPlan]:
    """Abandon every unfinished plan of the ledger; call only as the workspace's owner."""
    if not state.owns_workspace:
        raise RuntimeError("abandon_interrupted needs the workspace owner lock")
    return [_abandon(ledger, state, plan) for plan in ledger.unfinished_plans()]


def _abandon(ledger: Ledger, state: WorkspaceState, plan: UnfinishedPlan) -> InterruptedPlan:
    kept = tuple(t for t, s in plan.task_states.items() if s in KEPT_STATES)
    undone = tuple(t for t in plan.task_states if t not in kept)
    restored: set[str] = set()
    for task_id in undone:
        restored.update(state.reject_task(task_id))
    outcome = InterruptedPlan(
        plan_id=plan.plan_id,
        kind=plan.kind,
        instruction=plan.instruction,
        submitted_ts=plan.ts,
        kept_tasks=kept,
        undone_tasks=undone,
        restored_paths=tuple(sorted(restored)),
    )
    ledger.record(
        "plan.abandoned",
        task_id=plan.plan_id,
        reason="interrupted: the process running it stopped before the plan finished",
        kept_tasks=list(kept),
        undone_tasks=list(undone),
        restored_paths=sorted(restored),
        task_states=plan.task_states,
    )
    return outcome
