"""The one place where engine types become LSP types and back.

Owns Finding -> Diagnostic (placed on the client's text when it differs from the checked
one), LSP Range -> engine Span, TaskUpdate -> the `delegation/taskUpdated` payload, the
`delegation.status` payload, DelegateArguments -> DelegationRequest, and a pending hunk ->
its `Accept | Reject` code lenses and its `delegation.hunks` entry. Columns are
converted between code points and the negotiated position encoding by `server.positions`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from lsprotocol import types

from delegation_machine.engine.protocol import (
    DelegationRequest,
    Finding,
    Point,
    Span,
    TaskUpdate,
    verdict_summary,
)
from delegation_machine.engine.state import PendingHunk
from delegation_machine.engine.state.textdiff import diff_edits, map_position
from delegation_machine.engine.supervise.diagnostics import TaskDiagnostic
from delegation_machine.engine.swarm import SwarmStatus
from delegation_machine.server import positions
from delegation_machine.server.commands import (
    ACCEPT_HUNK,
    REJECT_HUNK,
    DelegateArguments,
    WireRange,
)

SOURCE = "delegation-machine"

_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}


def _line(lines: list[str], number: int) -> str:
    return lines[number] if 0 <= number < len(lines) else ""


def split_lines(text: str) -> list[str]:
    """Lines without their terminators; \\r\\n, \\n and \\r all end a line, as in LSP."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def point_to_position(point: Point, lines: list[str], encoding: str) -> types.Position:
    line = _line(lines, point.line)
    column = min(point.column, len(line))
    return types.Position(point.line, positions.to_client_column(line, column, encoding))


def span_to_range(span: Span, text: str, encoding: str) -> types.Range:
    lines = split_lines(text)
    return types.Range(
        point_to_position(span.start, lines, encoding), point_to_position(span.end, lines, encoding)
    )


def range_to_span(wire: WireRange | types.Range, text: str, encoding: str) -> Span:
    lines = split_lines(text)

    def to_point(line: int, character: int) -> Point:
        line_text = _line(lines, line)
        return Point(line, positions.from_client_column(line_text, character, encoding))

    return Span(
        to_point(wire.start.line, wire.start.character), to_point(wire.end.line, wire.end.character)
    )


def relocate_findings(
    findings: tuple[Finding, ...], checked_text: str, client_text: str
) -> list[tuple[Finding, Finding]]:
    """(finding, the same finding placed on `client_text`) for findings on `checked_text`.

    Positions move through the difference of the two texts: text typed before a finding
    pushes it on, text inserted at its end does not widen it, a deleted finding shrinks to
    where its text was.
    """
    if checked_text == client_text:
        return [(f, f) for f in findings]
    change = diff_edits(checked_text, client_text)
    checked, client = positions.LineIndex(checked_text), positions.LineIndex(client_text)

    def moved(point: Point, *, after_inserts: bool) -> int:
        offset = checked.offset_of(point.line, point.column, "utf-32")
        return map_position(offset, change, after_inserts=after_inserts)

    placed = []
    for finding in findings:
        start = moved(finding.span.start, after_inserts=True)
        end = max(start, moved(finding.span.end, after_inserts=False))
        span = Span(
            Point(*client.position_of(start, "utf-32")), Point(*client.position_of(end, "utf-32"))
        )
        placed.append((finding, msgspec.structs.replace(finding, span=span)))
    return placed


def finding_to_diagnostic(
    finding: Finding,
    text: str,
    encoding: str,
    *,
    uri: str | None = None,
    blame: TaskDiagnostic | None = None,
) -> types.Diagnostic:
    """A diagnostic; a finding blamed on a task names the task and agent (related info) and
    carries the task id in `data`, which the Retry / Escalate / Show task actions read."""
    range_ = span_to_range(finding.span, text, encoding)
    data: dict[str, Any] = {"fixAvailable": finding.fix_available, "path": finding.path}
    related = None
    if blame is not None and blame.task_id is not None:
        data.update(taskId=blame.task_id, agent=blame.agent_id)
        if uri is not None:
            related = [
                types.DiagnosticRelatedInformation(
                    location=types.Location(uri=uri, range=range_), message=blame.related_message
                )
            ]
    return types.Diagnostic(
        range=range_,
        message=finding.message,
        severity=_SEVERITY.get(finding.severity, types.DiagnosticSeverity.Error),
        code=finding.code,
        source=SOURCE,
        data=data,
        related_information=related,
    )


def delegate_request(
    arguments: DelegateArguments, rel_path: str | None, text: str | None, encoding: str
) -> DelegationRequest:
    span = None
    if arguments.range is not None and text is not None:
        span = range_to_span(arguments.range, text, encoding)
    return DelegationRequest(
        instruction=arguments.instruction.strip(),
        path=rel_path,
        span=span,
        kind=arguments.kind,
        agents=arguments.agents,
        requested_by="lsp",
    )


def task_updated_payload(update: TaskUpdate) -> dict[str, Any]:
    return {
        "taskId": update.task_id,
        "state": update.state.value,
        "kind": update.kind,
        "agent": update.agent,
        "files": list(update.files),
        "tokens": update.tokens,
        "verdicts": [verdict_summary(v) for v in update.verdicts],
        "message": update.message,
    }


def status_payload(status: SwarmStatus) -> dict[str, Any]:
    """`delegation.status`: the swarm's status as JSON, plans keyed by their `taskId`."""
    payload: dict[str, Any] = msgspec.to_builtins(status)
    payload["plans"] = [
        {
            "taskId": plan.plan_id,
            "kind": plan.kind,
            "state": plan.state,
            "instruction": plan.instruction,
            "tasks": plan.tasks,
            "message": plan.message,
        }
        for plan in status.plans
    ]
    return payload


def hunk_range(hunk: PendingHunk, text: str, encoding: str) -> types.Range:
    """The hunk's code-point range in `text` (the text it was read from) as an LSP Range."""
    index = positions.LineIndex(text)
    unit = positions.normalize_encoding(encoding)
    start = index.position_of(hunk.start, unit)
    end = index.position_of(hunk.end, unit)
    return types.Range(types.Position(*start), types.Position(*end))


def hunk_code_lenses(hunk: PendingHunk, text: str, encoding: str) -> list[types.CodeLens]:
    """`Accept | Reject` above a pending hunk, each running its command on it."""
    arguments = [{"taskId": hunk.task_id, "hunkId": hunk.hunk_id}]
    where = hunk_range(hunk, text, encoding)
    return [
        types.CodeLens(
            range=where, command=types.Command(title=title, command=command, arguments=arguments)
        )
        for title, command in (("Accept", ACCEPT_HUNK), ("Reject", REJECT_HUNK))
    ]


def hunk_payload(hunk: PendingHunk, text: str, encoding: str, uri: str) -> dict[str, Any]:
    """One entry of `delegation.hunks`: where the hunk is, and its text before and after."""
    where = hunk_range(hunk, text, encoding)
    return {
        "taskId": hunk.task_id,
        "hunkId": hunk.hunk_id,
        "uri": uri,
        "range": {
            "start": {"line": where.start.line, "character": where.start.character},
            "end": {"line": where.end.line, "character": where.end.character},
        },
        "before": hunk.before,
        "after": hunk.after,
    }
