"""Acceptance (the Judicial branch's "done"): whether a task did what it was asked.

Owns `AcceptanceJudge.judge`, run by the supervisor after the safety checks (no new parser,
semgrep or test failure) have passed. It returns one Verdict named "acceptance" whose findings
are the unmet criteria, so the recovery ladder can name them back to the agent:
- every kind: each changed Python file parses;
- `fix`: no fixable finding is left in its files (outside test assertions, which fixers
  never rewrite), within the selection when there was one;
- `format`: the formatter's check passes on its files;
- `rename`: no definition, import or `module.name` use of the old name is left in the files it
  planned, the new name is defined, and every import of the renamed module resolves;
- `document` (template): the targeted symbol (or the module) has a docstring, and nothing but
  docstrings changed (the ASTs without docstrings are equal; comments are not in the AST);
- `write-tests` (template): new test functions exist, are collected and pass, and by
  themselves execute the target (line coverage measured with coverage.py in the sandbox);
- `fix-diagnostic` (template): the finding at the named line is gone;
- a model task: the criteria the planner attached (tests that must pass, a symbol that must
  exist or be gone, a finding that must vanish, a question for the `Reviewer`), else one
  reviewer question — did the change do what was asked.
Invariant: a criterion that cannot be evaluated is an "error" verdict, never a pass.
"""

from __future__ import annotations

import ast
import copy
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.agents.builtin.rename import module_name, resolve_import_target
from delegation_machine.engine.agents.builtin.ruff_tool import ruff_texts
from delegation_machine.engine.memory.occurrence import SymbolOccurrence
from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.protocol import (
    ACCEPTANCE_CHECK,
    Criterion,
    Finding,
    FindingGone,
    PassingTests,
    Point,
    ProtocolError,
    ReviewQuestion,
    Span,
    SymbolExists,
    SymbolGone,
    Verdict,
    convert,
    criterion_problem,
)
from delegation_machine.engine.supervise.affected import AffectedTests, is_test_file
from delegation_machine.engine.supervise.integrity import assertion_lines, new_test_functions
from delegation_machine.engine.supervise.python_parse import parse_python
from delegation_machine.engine.supervise.review import Reviewer

DEFAULT_QUESTION = "Does the change do what the instruction asks, completely?"
MIN_TARGET_COVERAGE = 0.5  # of the target's body lines, executed by the new tests alone
MODEL_KINDS = frozenset({"llm"})
ReadText = Callable[[str], str | None]


class Unmet(msgspec.Struct, frozen=True):
    """One acceptance criterion that does not hold: where and why."""

    path: str
    line: int
    message: str
    code: str


class AcceptanceJudge:
    """Decides, per task kind, whether the change did the work."""

    def __init__(
        self,
        root: Path,
        *,
        tests: AffectedTests,
        read_text: ReadText,
        reviewer: Callable[[], Reviewer | None] = lambda: None,
        format_timeout_s: float = 60.0,
    ) -> None:
        self.root = root
        self._tests = tests
        self._read_text = read_text
        self._reviewer = reviewer
        self._format_timeout_s = format_timeout_s

    async def judge(
        self,
        *,
        task_id: str,
        kind: str,
        instruction: str,
        paths: Sequence[str],
        arguments: Mapping[str, Any],
        before: Mapping[str, str],
        after: Mapping[str, str],
        baseline: Sequence[Verdict],
        verdicts: Sequence[Verdict],
        diff: str,
        selection: tuple[int, int] | None = None,
    ) -> Verdict:
        """The "acceptance" verdict of a task's whole change (`before` -> `after`)."""
        started = time.monotonic()
        changed = [rel for rel in after if before.get(rel) != after[rel]]
        unmet = _unparsable(after, changed)
        reason = ""
        template = str(arguments.get("template", ""))
        try:
            if kind == "fix":
                unmet += _fixable_left(after, verdicts, paths, selection)
            elif kind == "format":
                unmet += await self._unformatted(after, paths)
            elif kind == "rename":
                unmet += self._rename_left(before, after, paths, arguments)
            elif template == "document":
                unmet += _undocumented(before, after, paths, str(arguments.get("symbol", "")))
            elif template == "write-tests":
                unmet += await self._untested(before, after, paths, arguments, task_id)
            elif template == "fix-diagnostic":
                unmet += _diagnostic_left(baseline, verdicts, before, after, paths, arguments)
            if kind in MODEL_KINDS and not template:
                criteria: list[Criterion] = planned_criteria(arguments) or [
                    ReviewQuestion(DEFAULT_QUESTION)
                ]
                machine: list[Criterion] = [
                    c for c in criteria if not isinstance(c, ReviewQuestion)
                ]
                if not changed and len(machine) < len(criteria):  # nothing for a reviewer
                    unmet.append(Unmet(_first(paths), 0, "the agent changed nothing", "no-change"))
                    criteria = machine
                unmet += await self._criteria(
                    criteria, task_id, instruction, after, verdicts, diff, paths
                )
        except CannotJudge as exc:
            return _verdict(task_id, paths, "error", (), str(exc), started)
        if not unmet:
            reason = "the goal holds" if changed else "the goal already held: nothing to change"
        findings = tuple(
            Finding(
                path=u.path,
                span=Span(Point(u.line, 0), Point(u.line + 1, 0)),
                message=u.message,
                code=f"acceptance:{u.code}",
            )
            for u in unmet
        )
        return _verdict(task_id, paths, "failed" if unmet else "passed", findings, reason, started)

    # --- per kind ------------------------------------------------------------------------

    async def _unformatted(self, after: Mapping[str, str], paths: Sequence[str]) -> list[Unmet]:
        texts = {rel: after[rel] for rel in paths if rel.endswith(".py") and rel in after}
        try:  # one ruff run over the task's files; unparsable ones: the parse criterion's
            formatted = await ruff_texts("format", texts, self.root, self._format_timeout_s)
        except AgentFailure as exc:
            raise CannotJudge(f"the formatter's check could not run: {exc}") from None
        return [
            Unmet(rel, 0, "ruff format --check: would reformat", "format")
            for rel, text in formatted.texts.items()
            if text != texts[rel]
        ]

    def _rename_left(
        self,
        before: Mapping[str, str],
        after: Mapping[str, str],
        paths: Sequence[str],
        arguments: Mapping[str, Any],
    ) -> list[Unmet]:
        old, new = str(arguments.get("old", "")), str(arguments.get("new", ""))
        if not old or not new:
            raise CannotJudge("rename without its old and new names")
        # Where the old name was defined before: only there can a definition of it be "left",
        # and only imports of it from those modules (an unrelated `old` elsewhere stays).
        was = SymbolIndex(self.root, languages=("python",))
        index = SymbolIndex(self.root, languages=("python",))
        for rel in paths:
            if rel in before:
                was.update_file(rel, before[rel])
            if rel in after:
                index.update_file(rel, after[rel])
        defining = {
            o.path
            for o in was.occurrences(old)
            if o.kind == "definition" and o.symbol_kind in RENAMED_KINDS
        }
        modules = {
            module_name(o.path)
            for o in was.occurrences(old)
            if o.kind == "definition" and o.container is None and o.symbol_kind in RENAMED_KINDS
        }
        hint = arguments.get("path")
        if isinstance(hint, str) and hint in defining:  # the rename named its definition
            defining = {hint}
            modules &= {module_name(hint)}
        unmet = []
        if not any(o.kind == "definition" for o in index.occurrences(new)):
            unmet.append(Unmet(_first(paths), 0, f"`{new}` is not defined anywhere", "rename"))
        for occurrence in index.occurrences(old):
            if occurrence.kind == "definition" and occurrence.path not in defining:
                continue
            if _still_names(occurrence, old, modules):
                line = occurrence.span.start.line
                unmet.append(Unmet(occurrence.path, line, f"`{old}` is still there", "rename-left"))
        for rel in paths:  # every name imported from a workspace module is defined there
            for occurrence in index.file_occurrences(rel):
                problem = self._unresolved_import(occurrence, rel, after)
                if problem:
                    unmet.append(Unmet(rel, occurrence.span.start.line, problem, "import"))
        return unmet

    def _unresolved_import(
        self, occurrence: SymbolOccurrence, importer: str, after: Mapping[str, str]
    ) -> str | None:
        if occurrence.kind != "import" or occurrence.symbol_kind != "name":
            return None
        if not occurrence.target:
            return None
        full = resolve_import_target(occurrence.target, importer)
        module, _, name = full.rpartition(".")
        source = self._module_text(module, after)
        if source is None or self._module_text(full, after) is not None:
            return None  # not a workspace module, or the name is a submodule
        if _binds(source, name):
            return None
        return f"`from {module} import {name}`: {module} has no `{name}`"

    def _module_text(self, module: str, after: Mapping[str, str]) -> str | None:
        if not module:
            return None
        base = module.replace(".", "/")
        for rel in (f"{base}.py", f"{base}/__init__.py"):
            if rel in after:
                return after[rel]
            text = self._read_text(rel)
            if text is not None:
                return text
        return None

    async def _untested(
        self,
        before: Mapping[str, str],
        after: Mapping[str, str],
        paths: Sequence[str],
        arguments: Mapping[str, Any],
        task_id: str,
    ) -> list[Unmet]:
        test_path = str(arguments.get("test_path") or next(filter(is_test_file, paths), ""))
        target_path = next((p for p in paths if p != test_path), "")
        if not test_path or test_path not in after:
            return [Unmet(test_path or _first(paths), 0, "no test file was written", "tests")]
        added = new_test_functions(before.get(test_path, ""), after[test_path])
        if not added:
            return [Unmet(test_path, 0, "no new test function", "tests")]
        node_ids = [f"{test_path}::{name}" for name in added]
        verdict, executed = await self._tests.run_named(
            after, node_ids, task_id=task_id, measure=[target_path] if target_path else []
        )
        if verdict.kind == "error":
            raise CannotJudge(f"the new tests could not run: {verdict.reason}")
        unmet = [
            Unmet(f.path or test_path, f.span.start.line, f.message, "tests")
            for f in verdict.findings
        ]
        if unmet or not target_path:
            return unmet
        target_lines = _target_lines(after.get(target_path, ""), str(arguments.get("symbol", "")))
        if not target_lines:
            return []
        ran = executed.get(target_path, set()) & target_lines
        share = len(ran) / len(target_lines)
        if share < MIN_TARGET_COVERAGE:
            what = arguments.get("symbol") or target_path
            unmet.append(
                Unmet(
                    test_path,
                    0,
                    f"the new tests execute {share:.0%} of `{what}` "
                    f"(at least {MIN_TARGET_COVERAGE:.0%} needed)",
                    "coverage",
                )
            )
        return unmet

    async def _criteria(
        self,
        criteria: Sequence[Criterion],
        task_id: str,
        instruction: str,
        after: Mapping[str, str],
        verdicts: Sequence[Verdict],
        diff: str,
        paths: Sequence[str],
    ) -> list[Unmet]:
        unmet: list[Unmet] = []
        where = _first(paths)
        for criterion in criteria:
            if isinstance(criterion, PassingTests):
                verdict, _ = await self._tests.run_named(after, criterion.tests, task_id=task_id)
                if verdict.kind == "error":
                    raise CannotJudge(f"tests {criterion.tests} could not run: {verdict.reason}")
                unmet += [
                    Unmet(f.path, f.span.start.line, f.message, "tests") for f in verdict.findings
                ]
            elif isinstance(criterion, SymbolExists | SymbolGone):
                defined = _definitions(after, criterion.name, getattr(criterion, "path", None))
                if isinstance(criterion, SymbolExists) and not defined:
                    unmet.append(
                        Unmet(
                            criterion.path or where,
                            0,
                            f"`{criterion.name}` is not defined",
                            "symbol",
                        )
                    )
                if isinstance(criterion, SymbolGone) and defined:
                    rel, line = defined[0]
                    unmet.append(Unmet(rel, line, f"`{criterion.name}` is still defined", "symbol"))
            elif isinstance(criterion, FindingGone):
                left = [
                    f
                    for v in verdicts
                    for f in v.findings
                    if f.code == criterion.code and (criterion.path in (None, f.path))
                ]
                unmet += [
                    Unmet(f.path, f.span.start.line, f"{f.code} is still reported", "finding")
                    for f in left
                ]
            else:
                reviewer = self._reviewer()
                if reviewer is None:
                    raise CannotJudge(f"no model to review: {criterion.question}")
                answer = await reviewer.review(
                    task_id=task_id,
                    instruction=instruction,
                    question=criterion.question,
                    diff=diff,
                    paths=tuple(paths),
                )
                if answer.kind == "error":
                    raise CannotJudge(answer.reason)
                if answer.kind == "failed":
                    unmet.append(Unmet(where, 0, answer.findings[0].message, "review"))
        return unmet


class CannotJudge(Exception):
    """A criterion could not be evaluated (its check did not run): an "error" verdict."""


def planned_criteria(arguments: Mapping[str, Any]) -> list[Criterion]:
    """The validated acceptance criteria a planner attached to a task (none when absent)."""
    raw = arguments.get("acceptance")
    if not raw:
        return []
    try:
        criteria = convert(raw, list[Criterion])
    except ProtocolError as exc:
        raise CannotJudge(f"the task's acceptance criteria are invalid: {exc}") from None
    for criterion in criteria:
        problem = criterion_problem(criterion)
        if problem:
            raise CannotJudge(f"the task's acceptance criteria are invalid: {problem}")
    return criteria


# --- helpers over texts ----------------------------------------------------------------------


def _verdict(
    task_id: str,
    paths: Sequence[str],
    kind: Literal["passed", "failed", "error"],
    findings: tuple[Finding, ...],
    reason: str,
    started: float,
) -> Verdict:
    return Verdict(
        check=ACCEPTANCE_CHECK,
        kind=kind,
        findings=findings,
        reason=reason,
        task_id=task_id,
        paths=tuple(paths),
        duration_s=time.monotonic() - started,
    )


def _first(paths: Sequence[str]) -> str:
    return paths[0] if paths else ""


def _parse(text: str) -> ast.Module | None:
    return parse_python(text)


def _unparsable(after: Mapping[str, str], changed: Sequence[str]) -> list[Unmet]:
    unmet = []
    for rel in changed:
        if rel.endswith(".py") and _parse(after[rel]) is None:
            unmet.append(Unmet(rel, 0, f"{rel} does not parse", "parse"))
    return unmet


def _fixable_left(
    after: Mapping[str, str],
    verdicts: Sequence[Verdict],
    paths: Sequence[str],
    selection: tuple[int, int] | None,
) -> list[Unmet]:
    semgrep = [v for v in verdicts if v.check == "semgrep"]
    if any(v.kind == "error" for v in semgrep):
        raise CannotJudge("semgrep could not run, so the fixable findings are unknown")
    unmet = []
    for verdict in semgrep:
        for finding in verdict.findings:
            line = finding.span.start.line
            if finding.path not in paths or not finding.fix_available:
                continue
            rel = finding.path
            if rel in after and is_test_file(rel) and line in assertion_lines(after[rel]):
                continue  # fixers never rewrite what a test asserts
            if selection is not None and not selection[0] <= line <= selection[1]:
                continue
            unmet.append(Unmet(finding.path, line, f"{finding.code} is still there", "fixable"))
    return unmet


def _without_docstrings(shared: ast.Module) -> str:
    tree = copy.deepcopy(shared)  # parsed trees are shared (python_parse): never edit them
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


DEFINITIONS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
RENAMED_KINDS = frozenset({"function", "class", "variable", "method", "attribute"})


def _still_names(occurrence: SymbolOccurrence, old: str, modules: set[str]) -> bool:
    """True when an occurrence of the old name is one the rename should have rewritten: a
    definition, an import of it from the renamed module, or a `module.old` use."""
    if occurrence.kind == "definition":
        return occurrence.symbol_kind in RENAMED_KINDS
    if occurrence.kind == "import":
        target = occurrence.target or ""
        return any(target.endswith(f"{module}.{old}") for module in modules)
    qualifier = occurrence.qualifier
    leaves = {module.rsplit(".", 1)[-1] for module in modules}
    return qualifier is not None and qualifier.rsplit(".", 1)[-1] in leaves


def _find_definition(tree: ast.Module, symbol: str) -> ast.AST | None:
    name = symbol.rsplit(".", 1)[-1]
    for node in ast.walk(tree):
        if isinstance(node, DEFINITIONS) and node.name == name:
            return node
    return None


def _undocumented(
    before: Mapping[str, str], after: Mapping[str, str], paths: Sequence[str], symbol: str
) -> list[Unmet]:
    rel = _first(paths)
    old_tree, new_tree = _parse(before.get(rel, "")), _parse(after.get(rel, ""))
    if new_tree is None or old_tree is None:
        return []  # the parse criterion reports it
    unmet = []
    if symbol:
        node = _find_definition(new_tree, symbol)
        if node is None:
            unmet.append(Unmet(rel, 0, f"`{symbol}` is not defined in {rel}", "document"))
        elif not ast.get_docstring(node):  # type: ignore[arg-type]
            line = getattr(node, "lineno", 1) - 1
            unmet.append(Unmet(rel, line, f"`{symbol}` has no docstring", "document"))
    else:  # the module: its docstring and every public top-level function's and class's
        if not ast.get_docstring(new_tree):
            unmet.append(Unmet(rel, 0, f"{rel} has no module docstring", "document"))
        for node in new_tree.body:
            if (
                isinstance(node, DEFINITIONS)
                and not node.name.startswith("_")
                and not ast.get_docstring(node)
            ):
                line = node.lineno - 1
                unmet.append(Unmet(rel, line, f"`{node.name}` has no docstring", "document"))
    if _without_docstrings(old_tree) != _without_docstrings(new_tree):
        unmet.append(
            Unmet(rel, 0, "code changed, not only docstrings and comments", "document-code")
        )
    return unmet


def _target_lines(text: str, symbol: str) -> set[int]:
    """1-based lines of the target's body statements (the whole module's when no symbol)."""
    tree = _parse(text)
    if tree is None:
        return set()
    node = _find_definition(tree, symbol) if symbol else None
    body = getattr(node, "body", None) if node is not None else tree.body
    lines: set[int] = set()
    for statement in body or []:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring executes nothing worth measuring
        if isinstance(statement, ast.Import | ast.ImportFrom) and node is None:
            continue
        lines.add(statement.lineno)
    return lines


def _diagnostic_left(
    baseline: Sequence[Verdict],
    verdicts: Sequence[Verdict],
    before: Mapping[str, str],
    after: Mapping[str, str],
    paths: Sequence[str],
    arguments: Mapping[str, Any],
) -> list[Unmet]:
    rel = _first(paths)
    line = int(arguments.get("line") or 0) - 1  # the template's line is 1-based
    named = [f for v in baseline for f in v.findings if f.path == rel and f.span.start.line == line]
    if not named:
        return []
    old_lines, new_lines = before.get(rel, "").splitlines(), after.get(rel, "").splitlines()
    old_text = old_lines[line].strip() if 0 <= line < len(old_lines) else None
    unmet = []
    for finding in named:
        for verdict in verdicts:
            for now in verdict.findings:
                if now.path != rel or now.code != finding.code:
                    continue
                at = now.span.start.line
                same_line = 0 <= at < len(new_lines) and new_lines[at].strip() == old_text
                if at == line or same_line:
                    unmet.append(Unmet(rel, at, f"{finding.code} is still reported", "diagnostic"))
    return unmet


def _definitions(after: Mapping[str, str], name: str, path: str | None) -> list[tuple[str, int]]:
    found = []
    for rel, text in after.items():
        if path not in (None, rel) or not rel.endswith(".py"):
            continue
        tree = _parse(text)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, DEFINITIONS) and node.name == name:
                found.append((rel, node.lineno - 1))
    return found


def _binds(source: str, name: str) -> bool:
    """True when a module's top level defines, assigns or imports `name`."""
    tree = _parse(source)
    if tree is None:
        return True  # cannot tell: the parse criterion reports broken files
    return _binds_in(tree.body, name)


def _binds_in(body: Sequence[ast.stmt], name: str) -> bool:
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any((a.asname or a.name.split(".")[0]) == name or a.name == "*" for a in node.names):
                return True
        elif isinstance(node, ast.If | ast.Try):  # conditional definitions count
            handlers = [h.body for h in getattr(node, "handlers", [])]
            blocks = [node.body, node.orelse, getattr(node, "finalbody", []), *handlers]
            if any(_binds_in(block, name) for block in blocks):
                return True
    return False
