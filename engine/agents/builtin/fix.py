"""FixAgent (kind "fix"): the bundled semgrep rules' autofixes, then ruff's safe fixes.

Owns turning one snapshot of Python files into one Mutation per changed file. In a swarm the
matches come from the supervisor's warm semgrep worker (the scan it is given), alone from one
CLI scan per task. Invariants: it never writes the workspace (semgrep sees a private copy,
ruff reads stdin); every
file it changes parses before and after (a file that does not parse is left alone, and a fix
that would break a file is dropped; the notes say which); in a test file, no fix touches an
assertion (a fix that rewrote a test's expected value would change what judges it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from delegation_machine.engine.agents.base import (
    AgentResult,
    AgentWork,
    FileVersion,
    TokenUsage,
    apply_edits,
    edits_from_texts,
)
from delegation_machine.engine.agents.builtin.ruff_tool import ruff_texts
from delegation_machine.engine.agents.builtin.semgrep_fixes import (
    FixOutcome,
    ScanTexts,
    apply_semgrep_fixes,
    cli_fix_scan,
)
from delegation_machine.engine.agents.builtin.targets import python_targets, skipped_non_python
from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.supervise.affected import is_test_file
from delegation_machine.engine.supervise.integrity import assertion_lines
from delegation_machine.engine.supervise.python_parse import parses_as_python
from delegation_machine.engine.supervise.semgrep_worker import SemgrepResult


class FixAgent:
    """Applies safe automatic fixes; leaves findings without a safe fix to the user."""

    kind = "fix"

    def __init__(
        self,
        agent_id: str,
        *,
        workspace_root: Path,
        rule_paths: Sequence[Path] | None = None,
        timeout_s: float = 180.0,
        scan: ScanTexts | None = None,
    ) -> None:
        """`scan` finds the matches (default: one CLI run over `rule_paths`, else the
        bundled rules); `rule_paths` is ignored when `scan` is given."""
        self.agent_id = agent_id
        self.workspace_root = workspace_root
        self.timeout_s = timeout_s
        self.scan = scan if scan is not None else cli_fix_scan(rule_paths, timeout_s)

    async def run(self, work: AgentWork) -> AgentResult:
        targets = python_targets(work)
        notes = [f"skipped (not Python): {rel}" for rel in skipped_non_python(work)]
        for rel in [rel for rel, version in targets.items() if not parses_as_python(version.text)]:
            notes.append(f"{rel} is not valid Python, so it was left unchanged")
            del targets[rel]
        if not targets:
            return AgentResult(notes="\n".join([*notes, "no Python files to fix"]))
        outcome = await apply_semgrep_fixes(
            {rel: version.text for rel, version in targets.items()}, self.scan
        )
        semgrep_fixed: dict[str, str] = {}
        for rel, version in targets.items():
            text = outcome.texts.get(rel, version.text)
            if text != version.text and not parses_as_python(text):
                notes.append(f"{rel}: semgrep fixes dropped, the result would not parse")
                text = version.text
                outcome.applied.pop(rel, None)
            semgrep_fixed[rel] = text
        root = work.workspace_root or self.workspace_root
        ruff = await ruff_texts("fix", semgrep_fixed, root, self.timeout_s)
        mutations: list[Mutation] = []
        for rel, version in targets.items():
            mutation = self._fix_file(
                work, rel, version, semgrep_fixed[rel], ruff.texts.get(rel), outcome, notes
            )
            if mutation is not None:
                mutations.append(mutation)
        notes.extend(_unfixable_notes(outcome.unfixable))
        usage = TokenUsage(tool_calls=outcome.scans + ruff.runs)
        return AgentResult(tuple(mutations), usage, "\n".join(notes))

    def _fix_file(
        self,
        work: AgentWork,
        rel: str,
        version: FileVersion,
        text: str,
        fixed: str | None,
        outcome: FixOutcome,
        notes: list[str],
    ) -> Mutation | None:
        """The Mutation for one file: `text` is it after the semgrep fixes, `fixed` after
        ruff's too (None: ruff could not parse it)."""
        applied = outcome.applied.get(rel, [])
        if fixed is None or (fixed != text and not parses_as_python(fixed)):
            notes.append(f"{rel}: ruff fixes dropped, the result would not parse")
            fixed = text
        edits = edits_from_texts(version.text, fixed)
        scope = selected_lines(work, rel)
        if scope is not None:  # a selection (or a diagnostic's range): fix only those lines
            edits = tuple(e for e in edits if _touches_lines(version.text, e, scope))
            if edits and not parses_as_python(apply_edits(version.text, edits)):
                notes.append(f"{rel}: the fixes inside the selection do not parse on their own")
                return None
        if is_test_file(rel):
            edits = _outside_assertions(version.text, edits, rel, notes)
        if not edits:
            return None
        return Mutation(
            task_id=work.task_id,
            agent_id=self.agent_id,
            path=rel,
            base_version=version.version,
            edits=edits,
            description=_describe(applied, ruff_changed=fixed != text),
        )


def selected_lines(work: AgentWork, rel: str) -> tuple[int, int] | None:
    """The 0-based line range a non-empty selection on `rel` covers, else None (whole file)."""
    return work.request.selected_lines(rel)


def _outside_assertions(
    text: str, edits: tuple[TextEdit, ...], rel: str, notes: list[str]
) -> tuple[TextEdit, ...]:
    """The edits that touch no assertion line (all of them when the rest would not parse)."""
    asserted = assertion_lines(text)
    kept = tuple(e for e in edits if not any(_touches_lines(text, e, (n, n)) for n in asserted))
    if len(kept) == len(edits):
        return edits
    notes.append(f"{rel}: {len(edits) - len(kept)} fix(es) inside test assertions left alone")
    if kept and not parses_as_python(apply_edits(text, kept)):
        notes.append(f"{rel}: the fixes outside its assertions do not parse on their own")
        return ()
    return kept


def _touches_lines(text: str, edit: TextEdit, lines: tuple[int, int]) -> bool:
    first = text.count("\n", 0, edit.start)
    last = text.count("\n", 0, max(edit.start, edit.end - 1))
    return first <= lines[1] and last >= lines[0]


def _describe(applied: list[str], *, ruff_changed: bool) -> str:
    parts = []
    if applied:
        counts = {rule: applied.count(rule) for rule in sorted(set(applied))}
        parts.append("semgrep autofix: " + ", ".join(f"{r} x{n}" for r, n in counts.items()))
    if ruff_changed:
        parts.append("ruff safe fixes")
    return "; ".join(parts)


def _unfixable_notes(unfixable: list[SemgrepResult]) -> list[str]:
    if not unfixable:
        return []
    lines = [f"{len(unfixable)} finding(s) have no safe automatic fix:"]
    lines += [f"  {r.path}:{r.line} {r.rule_id}" for r in unfixable]
    return lines
