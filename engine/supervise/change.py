"""Judging one change: which checks it gets, which of their findings are new, what to show.

Owns `ChangeChecker`: the workspace's check level (file-local "quick" verdicts through the
per-file `VerdictCache`, the "full" level always run), the quarantine pass (an agent the
economy holds in quarantine gets a second, strict pass at the full level with semgrep warnings
failing, named `quarantine:<check>`, once its change is clean at the normal level), new-finding
detection against the text before the change, and the diagnostics notices of a check round.
Invariant: a check that could not run is a failure of the change, never a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

from delegation_machine.engine.notices import DiagnosticsNotice
from delegation_machine.engine.protocol import Finding, Verdict
from delegation_machine.engine.supervise.checks import CheckLevel, CheckRunner
from delegation_machine.engine.supervise.diagnostics import task_diagnostics
from delegation_machine.engine.supervise.verdict_cache import VerdictCache

QUARANTINE_PREFIX = "quarantine:"


class ChangeVerdict(msgspec.Struct, frozen=True):
    """The checks of a change: every verdict (shown) and what the change broke (judged)."""

    verdicts: tuple[Verdict, ...]
    failures: tuple[Verdict, ...]


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
        level: CheckLevel,
        is_quarantined: Callable[[str], bool],
    ) -> None:
        self.runner = runner
        self.level: CheckLevel = level
        self._is_quarantined = is_quarantined
        self._quick = VerdictCache(self._run_quick)

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
        """The checks of `files` at `level` (default: the workspace's level)."""
        if (level or self.level) == "quick":
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
        baseline = await self.check_files(before, list(before), task_id=None)
        verdicts = await self.check_files(after, touched, task_id=task_id)
        failures = new_failures(verdicts, baseline, before, after)
        if failures or not self._is_quarantined(agent_id):
            return ChangeVerdict(tuple(verdicts), tuple(failures))
        strict_before = await self._strict(before, list(before), task_id=None)
        strict_after = await self._strict(after, touched, task_id=task_id)
        strict_failures = new_failures(strict_after, strict_before, before, after)
        return ChangeVerdict(tuple(verdicts + strict_after), tuple(strict_failures))

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
