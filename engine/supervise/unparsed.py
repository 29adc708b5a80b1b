"""A file that does not parse is never reported verified.

Owns the reading of a task's `syntax` verdicts for files that do not parse, whether the task
broke them or they were broken before it began (a baseline failure is not a new failure, so the
change check alone would let such a task verify). `unparsed_message` is the reason a task on
such a file fails; `describe_unparsed` names the files and lines for a `check` summary.
"""

from __future__ import annotations

from collections.abc import Iterable

from delegation_machine.engine.protocol import Finding, Verdict

SYNTAX_CHECK = "syntax"


def unparsed_findings(verdicts: Iterable[Verdict]) -> dict[str, Finding]:
    """The first syntax error of each file the syntax check found not parsing, by path."""
    found: dict[str, Finding] = {}
    for verdict in verdicts:
        if verdict.check != SYNTAX_CHECK or verdict.passed:
            continue
        for finding in verdict.findings:
            found.setdefault(finding.path, finding)
    return dict(sorted(found.items()))


def describe_unparsed(verdicts: Iterable[Verdict]) -> str:
    """'a.py (line 3: ...); b.py (line 1: ...)', or '' when every file parses."""
    return "; ".join(
        f"{path} (line {finding.span.start.line + 1}: {finding.message})"
        for path, finding in unparsed_findings(verdicts).items()
    )


def unparsed_message(verdicts: Iterable[Verdict]) -> str | None:
    """Why a task whose files include one that does not parse cannot verify; None if all do."""
    named = describe_unparsed(verdicts)
    if not named:
        return None
    return (
        f"not verified: {named} does not parse, so no check can vouch for it; "
        "fix the syntax error and run the task again"
    )
