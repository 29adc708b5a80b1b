"""What the editor needs to show a verdict: findings grouped per (check, path), with who did it.

Owns `TaskDiagnostic` (a finding plus the task and agent it is about, the related-information
text and the code actions Retry / Escalate / Show task) and the grouping per (check, path)
that lets the server keep diagnostics per (source, uri) without one check erasing another.
Pure data: the server converts paths to URIs and these records to LSP types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from delegation_machine.engine.protocol import Finding, Verdict

TaskActionName = Literal["retry", "escalate", "show"]


class DiagnosticAction(msgspec.Struct, frozen=True):
    """What the user may do about a finding a task introduced (the server maps `action` to
    its command): retry the task with fresh agents, escalate it now, or show its attempts."""

    title: str
    action: TaskActionName
    task_id: str


class TaskDiagnostic(msgspec.Struct, frozen=True):
    finding: Finding
    check: str
    task_id: str | None
    agent_id: str | None
    related_message: str  # e.g. "task t3 (fix), agent llm-2, attempt 2: semgrep"
    actions: tuple[DiagnosticAction, ...] = ()


TASK_ACTIONS: tuple[tuple[str, TaskActionName], ...] = (
    ("Retry", "retry"),
    ("Escalate", "escalate"),
    ("Show task", "show"),
)


def task_diagnostics(
    verdicts: Sequence[Verdict],
    *,
    agent_id: str | None = None,
    task_kind: str | None = None,
    attempt: int | None = None,
) -> dict[tuple[str, str], list[TaskDiagnostic]]:
    """Findings of every verdict that ran, keyed by (check, path); errors carry no findings.

    Each check that ran on a path gets a key even with no findings, so publishing it clears
    that check's stale diagnostics for the path.
    """
    grouped: dict[tuple[str, str], list[TaskDiagnostic]] = {}
    for verdict in verdicts:
        if verdict.kind == "error":
            continue  # could not run: keep the previous diagnostics, report the reason apart
        for path in verdict.paths:
            grouped.setdefault((verdict.check, path), [])
        for finding in verdict.findings:
            diagnostic = _diagnostic(verdict, finding, agent_id, task_kind, attempt)
            grouped.setdefault((verdict.check, finding.path), []).append(diagnostic)
    return grouped


def _diagnostic(
    verdict: Verdict,
    finding: Finding,
    agent_id: str | None,
    task_kind: str | None,
    attempt: int | None,
) -> TaskDiagnostic:
    task_id = verdict.task_id
    if task_id is None:
        return TaskDiagnostic(finding, verdict.check, None, agent_id, f"check {verdict.check}")
    parts = [f"task {task_id}" + (f" ({task_kind})" if task_kind else "")]
    if agent_id:
        parts.append(f"agent {agent_id}")
    if attempt:
        parts.append(f"attempt {attempt}")
    actions = tuple(DiagnosticAction(title, action, task_id) for title, action in TASK_ACTIONS)
    related = ", ".join(parts) + f": {verdict.check}"
    return TaskDiagnostic(finding, verdict.check, task_id, agent_id, related, actions)
