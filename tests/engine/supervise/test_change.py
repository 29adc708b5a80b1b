"""Judging a change: new findings against the text before it, and the quarantine pass."""

from __future__ import annotations

from delegation_machine.engine.protocol import Finding, Point, Span, Verdict
from delegation_machine.engine.supervise.change import (
    ChangeChecker,
    diagnostics_notices,
    new_failures,
)
from delegation_machine.engine.supervise.checks import CheckRunner

from .conftest import needs_semgrep


def finding(path: str, line: int, code: str, severity: str = "error") -> Finding:
    return Finding(path, Span(Point(line, 0), Point(line, 1)), f"{code} here", code, severity)  # type: ignore[arg-type]


def test_a_preexisting_finding_on_a_moved_line_is_not_new() -> None:
    before = {"a.py": "x = eval(s)\n"}
    after = {"a.py": "import os\n\nx = eval(s)\ny = eval(t)\n"}
    baseline = [Verdict("semgrep", "failed", (finding("a.py", 0, "semgrep:eval"),))]
    verdicts = [
        Verdict(
            "semgrep",
            "failed",
            (finding("a.py", 2, "semgrep:eval"), finding("a.py", 3, "semgrep:eval")),
        )
    ]
    (failure,) = new_failures(verdicts, baseline, before, after)
    assert [f.span.start.line for f in failure.findings] == [3]  # only the added line


def test_a_check_that_could_not_run_is_a_failure_and_warnings_outside_semgrep_are_not() -> None:
    verdicts = [
        Verdict("tests", "error", reason="pytest timed out"),
        Verdict("syntax", "passed", (finding("a.py", 0, "style", "warning"),)),
    ]
    failures = new_failures(verdicts, [], {"a.py": ""}, {"a.py": "x\n"})
    assert [(v.check, v.kind) for v in failures] == [("tests", "error")]


def test_notices_cover_only_the_files_a_check_looked_at_and_carry_their_text() -> None:
    files = {"a.py": "x = 1\n", "b.py": "y = 2\n"}
    verdicts = [
        Verdict("syntax", "passed", paths=("a.py",)),
        Verdict("semgrep", "error", reason="no semgrep"),  # could not run: shows nothing
    ]
    (notice,) = diagnostics_notices(files, verdicts)
    assert (notice.path, notice.check, notice.findings, notice.text) == (
        "a.py",
        "syntax",
        (),
        "x = 1\n",
    )


@needs_semgrep
async def test_quarantined_agent_gets_a_strict_second_pass(runner: CheckRunner) -> None:
    # md5 is a warning that was there before; the duplicate argument only compile() rejects.
    before = {"h.py": "import hashlib\nh = hashlib.md5(b'x')\n"}
    after = {"h.py": before["h.py"] + "\n\ndef f(a, a):\n    return a\n"}
    trusted = ChangeChecker(runner, level="quick", is_quarantined=lambda agent: False)
    quarantined = ChangeChecker(runner, level="quick", is_quarantined=lambda agent: True)
    normal = await trusted.check_change(before, after, ["h.py"], task_id="t1", agent_id="a1")
    strict = await quarantined.check_change(before, after, ["h.py"], task_id="t1", agent_id="a2")
    assert normal.failures == ()  # the warning was there before; tree-sitter parses it all
    assert {v.check for v in strict.verdicts} >= {"quarantine:semgrep", "quarantine:compile"}
    assert not next(v for v in strict.verdicts if v.check == "quarantine:semgrep").passed
    assert "quarantine:compile" in {v.check for v in strict.failures}
    assert "quarantine:semgrep" not in {v.check for v in strict.failures}  # it was there before
