"""The deterministic checks every agent change passes before it is kept.

Owns `CheckRunner`: level "quick" runs the tree-sitter syntax check and one batched semgrep
scan; level "full" adds Python compilation and the tests affected by the change (selected
through the import graph, run with pytest in the sandbox). Checks read the given texts (the
CRDT state), never the user's files in place. Invariant: a check that cannot run returns a
Verdict of kind "error" with the reason, never "passed".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from delegation_machine.engine.protocol import Finding, Point, Severity, Span, Verdict
from delegation_machine.engine.supervise.affected import AffectedTests
from delegation_machine.engine.supervise.python_parse import compile_python
from delegation_machine.engine.supervise.sandbox import SandboxLimits
from delegation_machine.engine.supervise.semgrep import SemgrepScanner
from delegation_machine.engine.supervise.syntax import GrammarMissing, has_grammar, syntax_findings

CheckLevel = Literal["quick", "full"]


class CheckRunner:
    """Runs the checks of one workspace; keeps the semgrep rules prepared between calls."""

    def __init__(
        self,
        root: Path,
        *,
        rule_paths: Sequence[Path] | None = None,
        semgrep_timeout_s: float = 60,
        tests_timeout_s: float = 120,
        test_limits: SandboxLimits | None = None,
        warm_semgrep: bool = False,
    ) -> None:
        self.root = Path(root)
        self.semgrep = SemgrepScanner(
            self.root, rule_paths=rule_paths, timeout_s=semgrep_timeout_s, warm=warm_semgrep
        )
        self.tests = AffectedTests(self.root, timeout_s=tests_timeout_s, limits=test_limits)

    async def check(
        self,
        files: Mapping[str, str],
        changed: Sequence[str],
        *,
        task_id: str | None = None,
        level: CheckLevel = "quick",
        strict: bool = False,
    ) -> list[Verdict]:
        """Verdicts for `changed` (paths into `files`, the current texts).

        `strict` (quarantine) fails semgrep findings of severity warning too.
        """
        changed = list(dict.fromkeys(changed))
        fail_at: Severity = "warning" if strict else "error"
        jobs = [
            asyncio.to_thread(syntax_verdict, files, changed, task_id),
            self.semgrep.scan(files, changed, task_id=task_id, fail_at=fail_at),
        ]
        if level == "full":
            jobs.append(asyncio.to_thread(compile_verdict, files, changed, task_id))
            jobs.append(self.tests.run(files, changed, task_id=task_id))
        return list(await asyncio.gather(*jobs))

    async def warm_up(self, timeout_s: float = 120.0) -> bool:
        """Start the warm semgrep worker (if enabled) and wait until it is ready."""
        return await self.semgrep.warm_up(timeout_s)

    async def aclose(self) -> None:
        await self.semgrep.aclose()

    def close(self) -> None:
        self.semgrep.close()


def syntax_verdict(
    files: Mapping[str, str], changed: Sequence[str], task_id: str | None
) -> Verdict:
    """Tree-sitter over every changed file with a known language."""
    started = time.monotonic()
    checked = [p for p in changed if p in files and has_grammar(p)]
    findings: list[Finding] = []
    missing: list[str] = []
    for path in checked:
        try:
            findings.extend(syntax_findings(path, files[path]))
        except GrammarMissing as exc:
            missing.append(f"{path}: {exc}")
    kind: Literal["passed", "failed", "error"] = "failed" if findings else "passed"
    reason = ""
    if missing and not findings:
        kind, reason = "error", "; ".join(missing)
    return Verdict(
        check="syntax",
        kind=kind,
        findings=tuple(findings),
        reason=reason,
        task_id=task_id,
        paths=tuple(checked),
        duration_s=time.monotonic() - started,
    )


def compile_verdict(
    files: Mapping[str, str], changed: Sequence[str], task_id: str | None
) -> Verdict:
    """Python's own compiler over the changed .py files (compiles, never executes)."""
    started = time.monotonic()
    checked = [p for p in changed if p in files and p.endswith((".py", ".pyi"))]
    findings = []
    for path in checked:
        finding = _compile_finding(path, files[path])
        if finding is not None:
            findings.append(finding)
    return Verdict(
        check="compile",
        kind="failed" if findings else "passed",
        findings=tuple(findings),
        task_id=task_id,
        paths=tuple(checked),
        duration_s=time.monotonic() - started,
    )


def _compile_finding(path: str, text: str) -> Finding | None:
    try:
        compile_python(text, path)
    except SyntaxError as exc:
        line = max((exc.lineno or 1) - 1, 0)
        column = max((exc.offset or 1) - 1, 0)
        end_line = max((exc.end_lineno or exc.lineno or 1) - 1, line)
        end_column = max((exc.end_offset or exc.offset or 1) - 1, 0)
        if (end_line, end_column) <= (line, column):
            end_line, end_column = line, column + 1
        span = Span(Point(line, column), Point(end_line, end_column))
        return Finding(
            path=path, span=span, message=f"{type(exc).__name__}: {exc.msg}", code="compile"
        )
    except (ValueError, RecursionError, MemoryError) as exc:
        span = Span(Point(0, 0), Point(0, 0))
        return Finding(path=path, span=span, message=f"does not compile: {exc}", code="compile")
    return None
