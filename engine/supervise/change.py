"""Judging one change: which checks it gets, which of their findings are new, what to show.

Owns `ChangeChecker`: the workspace's check policy — "auto" (the default: keystroke checks
"quick", a task's change "full", its affected tests run, before it is committed, whenever the
workspace has tests), "quick" or "full" everywhere — with file-local "quick" verdicts through the
per-file `VerdictCache` and the "full" level always run; the integrity check (a task's edits to
the files that judge it never judge it: the pre-task versions run against the changed code);
the quarantine pass (an agent the
economy holds in quarantine gets a second, strict pass at the full level with semgrep warnings
failing, named `quarantine:<check>`, once its change is clean at the normal level), new-finding
detection against the text before the change, and the diagnostics notices of a check round.
Invariant: a check that could not run is a failure of the change, never a pass.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import msgspec

from delegation_machine.engine.notices import DiagnosticsNotice
from delegation_machine.engine.protocol import Finding, Verdict
from delegation_machine.engine.supervise.checks import CheckLevel, CheckRunner
from delegation_machine.engine.supervise.diagnostics import task_diagnostics
from delegation_machine.engine.supervise.verdict_cache import VerdictCache

QUARANTINE_PREFIX = "quarantine:"
INTEGRITY_CHECK = "integrity"
QUICK_CHECKS = frozenset({"syntax", "semgrep"})  # what level "quick" runs
CheckPolicy = Literal["auto", "quick", "full"]


class ChangeVerdict(msgspec.Struct, frozen=True):
    """The checks of a change: every verdict (shown), what the change broke (judged), and the
    same checks of the files before it (what acceptance compares with)."""

    verdicts: tuple[Verdict, ...]
    failures: tuple[Verdict, ...]
    baseline: tuple[Verdict, ...] = ()


class Blame(msgspec.Struct, frozen=True):
    """Who a check round's new findings are about."""

    agent_id: str | None
    task_kind: str | None
    attempt: int | None


class ChangeChecker:
    """The supervisors' judgement of changes in one workspace."""

    def __init__(
        self,
        runner: CheckRunner,
        *,
        level: CheckPolicy,
        is_quarantined: Callable[[str], bool],
        has_tests: Callable[[], bool] = lambda: False,
    ) -> None:
        self.runner = runner
        self.level: CheckPolicy = level
        self._is_quarantined = is_quarantined
        self._has_tests = has_tests
        self._quick = VerdictCache(self._run_quick)

    @property
    def edit_level(self) -> CheckLevel:
        """The level of the checks an edit (a keystroke, a save) triggers."""
        return "full" if self.level == "full" else "quick"

    @property
    def task_level(self) -> CheckLevel:
        """The level a task's change is checked at before it is committed."""
        if self.level == "full" or (self.level == "auto" and self._has_tests()):
            return "full"
        return "quick"

    def prefetch(self, files: Mapping[str, str]) -> None:
        """Start the quick checks of `files` now, in one batched run (the quick level only)."""
        self._quick.prefetch(files)

    async def check_files(
        self,
        files: Mapping[str, str],
        changed: Sequence[str],
        *,
        task_id: str | None,
        level: CheckLevel | None = None,
    ) -> list[Verdict]:
        """The checks of `files` at `level` (default: the level of an edit's checks)."""
        if (level or self.edit_level) == "quick":
            return await self._quick.check(files, task_id)
        return await self.runner.check(files, changed, task_id=task_id, level="full")

    async def check_change(
        self,
        before: Mapping[str, str],
        after: Mapping[str, str],
        touched: Sequence[str],
        *,
        task_id: str,
        agent_id: str,
    ) -> ChangeVerdict:
        """Check the files after a task's change and compare with the same files before it."""
        level = self.task_level
        verdicts = await self.check_files(after, touched, task_id=task_id, level=level)
        # The quick checks of the text before (cached per file); the slow ones (compile, the
        # affected tests) only run on it when they found something after the change, to tell
        # the change's failures from the ones the workspace had already.
        baseline = await self.check_files(before, list(before), task_id=None, level="quick")
        slow_findings = any(v.findings for v in verdicts if v.check not in QUICK_CHECKS)
        if level == "full" and slow_findings:
            baseline = await self.check_files(before, list(before), task_id=None, level="full")
        failures = new_failures(verdicts, baseline, before, after)
        if failures or not self._is_quarantined(agent_id):
            return ChangeVerdict(tuple(verdicts), tuple(failures), tuple(baseline))
        strict_before = await self._strict(before, list(before), task_id=None)
        strict_after = await self._strict(after, touched, task_id=task_id)
        strict_failures = new_failures(strict_after, strict_before, before, after)
        return ChangeVerdict(
            tuple(verdicts + strict_after), tuple(strict_failures), tuple(baseline)
        )

    async def check_integrity(
        self,
        before: Mapping[str, str],
        after: Mapping[str, str],
        judging: Sequence[str],
        *,
        task_id: str,
    ) -> Verdict:
        """Run the pre-task versions of the judging files the task changed (`judging`)
        against its changed code: the tests it touched judge it as they were before it."""
        started = time.monotonic()
        files = {rel: text for rel, text in after.items() if rel not in judging}
        files.update({rel: before[rel] for rel in judging if rel in before})
        code = [rel for rel in files if before.get(rel) != files[rel]]
        if not code:
            return Verdict(
                check=INTEGRITY_CHECK,
                kind="passed",
                reason="only files that judge code changed; the code they judge did not",
                task_id=task_id,
                paths=tuple(judging),
                duration_s=time.monotonic() - started,
            )
        verdict = await self.runner.tests.run(files, code, task_id=task_id)
        return msgspec.structs.replace(
            verdict,
            check=INTEGRITY_CHECK,
            reason=verdict.reason or "the tests as they were before the task, on its change",
            duration_s=time.monotonic() - started,
        )

    async def aclose(self) -> None:
        await self.runner.aclose()

    async def _strict(
        self, files: Mapping[str, str], changed: Sequence[str], *, task_id: str | None
    ) -> list[Verdict]:
        verdicts = await self.runner.check(
            files, changed, task_id=task_id, level="full", strict=True
        )
        return [msgspec.structs.replace(v, check=QUARANTINE_PREFIX + v.check) for v in verdicts]

    async def _run_quick(self, files: dict[str, str], changed: list[str]) -> list[Verdict]:
        return await self.runner.check(files, changed, level="quick")


def finding_key(finding: Finding, text: str) -> tuple[str, str, str]:
    """Identity of a finding that survives unrelated edits: its code and the line's content."""
    lines = text.splitlines()
    number = finding.span.start.line
    line = lines[number].strip() if number < len(lines) else ""
    return (finding.path, finding.code, line)


def new_failures(
    verdicts: Sequence[Verdict],
    baseline: Sequence[Verdict],
    before: Mapping[str, str],
    after: Mapping[str, str],
) -> list[Verdict]:
    """Checks that could not run, and findings the change introduced (not pre-existing).

    A baseline finding is identified by its line's content in the text *before* the change,
    a new one by its line in the text after, so moved lines still match.
    """
    known = {
        (v.check, *finding_key(f, before.get(f.path, ""))) for v in baseline for f in v.findings
    }
    failures = []
    for verdict in verdicts:
        if verdict.kind == "error":
            failures.append(verdict)
            continue
        new = tuple(
            f
            for f in verdict.findings
            if f.severity == "error" or f.code.startswith("semgrep:")
            if (verdict.check, *finding_key(f, after.get(f.path, ""))) not in known
        )
        if new:
            failures.append(msgspec.structs.replace(verdict, kind="failed", findings=new))
    return failures


def diagnostics_notices(
    files: Mapping[str, str],
    verdicts: Sequence[Verdict],
    *,
    failures: Sequence[Verdict] = (),
    blame: Blame | None = None,
) -> list[DiagnosticsNotice]:
    """One notice per (check, file) that a check covered; findings in `failures` are blamed.

    A check that could not run, or did not look at a file, leaves what it showed before.
    """
    blamed = task_diagnostics(
        failures,
        agent_id=blame.agent_id if blame else None,
        task_kind=blame.task_kind if blame else None,
        attempt=blame.attempt if blame else None,
    )
    notices = []
    for verdict in verdicts:
        if verdict.kind == "error":
            continue
        for rel, text in files.items():
            if verdict.paths and rel not in verdict.paths:
                continue
            findings = tuple(f for f in verdict.findings if f.path == rel)
            ours = tuple(blamed.get((verdict.check, rel), ()))
            notices.append(DiagnosticsNotice(rel, verdict.check, findings, text, ours))
    return notices


def change_diff(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """A unified diff of every file whose text differs (what the agent changed)."""
    parts: list[str] = []
    for rel in sorted(set(before) | set(after)):
        old, new = before.get(rel, ""), after.get(rel, "")
        if old != new:
            parts.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"a/{rel}",
                    tofile=f"b/{rel}",
                )
            )
    return "".join(parts)
