"""Integrity of the checks: what judges a task, and whether the task edited it.

Owns the notion of a *judging file* — a test file, a fixture, a conftest, the test runner's or
the checkers' configuration — and the questions the supervisor asks about a change to one:
which judging files it changed, whether the change only adds tests (what a `write-tests` task is
for), and which lines of a test are assertions (which the built-in fixers never rewrite).
Pure functions over texts; the supervisor (`ChangeChecker.check_integrity`) runs the pre-task
versions of these files against the changed code.
"""

from __future__ import annotations

import ast
import functools
import io
import tokenize
from collections.abc import Mapping
from pathlib import PurePosixPath

from delegation_machine.engine.supervise.affected import is_test_file
from delegation_machine.engine.supervise.python_parse import parse_python

# Files whose content decides how the code is judged, wherever they are.
CHECK_CONFIG_NAMES = frozenset(
    {
        "conftest.py",
        "pytest.ini",
        "tox.ini",
        "setup.cfg",
        "pyproject.toml",
        "noxfile.py",
        ".coveragerc",
        "ruff.toml",
        ".ruff.toml",
        "mypy.ini",
        ".semgrep.yml",
        ".semgrep.yaml",
        ".semgrepignore",
    }
)
FIXTURE_FOLDERS = frozenset({"fixtures", "testdata", "test_data", "snapshots", "cassettes"})
TEST_FOLDERS = frozenset({"tests", "test", "testing"})


def is_judging_file(rel: str) -> bool:
    """True for what judges code rather than being judged: tests, fixtures, check config."""
    path = PurePosixPath(rel)
    parts = path.parts
    if path.name in CHECK_CONFIG_NAMES or is_test_file(rel):
        return True
    if parts[:2] == (".delegation", "semgrep"):  # the workspace's own semgrep rules
        return True
    folders = set(parts[:-1])
    if folders & FIXTURE_FOLDERS:
        return True
    # Data next to the tests (expected outputs, golden files) judges as much as the tests do.
    return bool(folders & TEST_FOLDERS) and path.suffix != ".py"


def judging_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The judging files whose text the change altered (created and deleted ones included)."""
    changed = []
    for rel in sorted(set(before) | set(after)):
        if is_judging_file(rel) and before.get(rel) != after.get(rel):
            changed.append(rel)
    return changed


def renamed_only(before: str, after: str, old: str, new: str) -> bool:
    """True when `after` is `before` with the identifier `old` renamed to `new` and nothing
    else (strings, comments and every other token equal): the same judge under a new name."""

    def tokens(text: str, rename: bool) -> list[tuple[int, str]] | None:
        try:
            stream = list(tokenize.generate_tokens(io.StringIO(text).readline))
        except (tokenize.TokenError, SyntaxError):
            return None
        return [
            (t.type, new if rename and t.type == tokenize.NAME and t.string == old else t.string)
            for t in stream
        ]

    renamed, found = tokens(before, True), tokens(after, False)
    return renamed is not None and renamed == found


def test_functions(text: str) -> dict[str, str]:
    """Test functions of a pytest module: node-id suffix (`test_x`, `TestC::test_y`) -> source."""
    tree = parse_python(text)
    if tree is None:
        return {}
    found: dict[str, str] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test"
            ):
                found[prefix + node.name] = ast.get_source_segment(text, node) or node.name
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                visit(node.body, f"{prefix}{node.name}::")

    visit(tree.body, "")
    return found


def new_test_functions(before: str, after: str) -> list[str]:
    """Test functions present after the change and not before (by name)."""
    old = test_functions(before)
    return [name for name in test_functions(after) if name not in old]


def adds_tests_only(before: str, after: str) -> bool:
    """True when the change to a test file keeps every existing test function as it was
    (only adds tests, imports and helpers): such a change cannot have weakened a check."""
    old, new = test_functions(before), test_functions(after)
    return all(new.get(name) == source for name, source in old.items())


@functools.lru_cache(maxsize=1024)
def assertion_lines(text: str) -> frozenset[int]:
    """0-based lines inside `assert` statements and `pytest.raises`/`approx` calls."""
    tree = parse_python(text)
    if tree is None:
        return frozenset()
    lines: set[int] = set()
    for node in ast.walk(tree):
        judged = isinstance(node, ast.Assert)
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            judged = name in {"raises", "approx", "assertEqual", "assertTrue", "assertIn"}
        if judged and isinstance(node, ast.stmt | ast.expr):
            end = node.end_lineno or node.lineno
            lines.update(range(node.lineno - 1, end))
    return frozenset(lines)
