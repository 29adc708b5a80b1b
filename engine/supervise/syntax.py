"""The syntax check: tree-sitter ERROR and MISSING nodes as findings with exact positions.

Owns the suffix -> grammar map for every grammar package that is installed (python,
javascript, typescript/tsx, go, rust) and the conversion of tree-sitter byte columns to code
points. Invariant: a file whose grammar is not installed is reported as unchecked, never clean.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator

import tree_sitter as ts

from delegation_machine.engine.protocol import Finding, Point, Span

# suffix -> (grammar package, function returning the language pointer)
GRAMMARS: dict[str, tuple[str, str]] = {
    ".py": ("tree_sitter_python", "language"),
    ".pyi": ("tree_sitter_python", "language"),
    ".js": ("tree_sitter_javascript", "language"),
    ".mjs": ("tree_sitter_javascript", "language"),
    ".cjs": ("tree_sitter_javascript", "language"),
    ".jsx": ("tree_sitter_javascript", "language"),
    ".ts": ("tree_sitter_typescript", "language_typescript"),
    ".mts": ("tree_sitter_typescript", "language_typescript"),
    ".cts": ("tree_sitter_typescript", "language_typescript"),
    ".tsx": ("tree_sitter_typescript", "language_tsx"),
    ".go": ("tree_sitter_go", "language"),
    ".rs": ("tree_sitter_rust", "language"),
}
MAX_FINDINGS_PER_FILE = 50


class GrammarMissing(LookupError):
    """The file's language is known but its grammar package is not installed."""


def suffix_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def has_grammar(path: str) -> bool:
    """True when `path` has a language this check knows (installed or not)."""
    return suffix_of(path) in GRAMMARS


@functools.cache
def parser_for_suffix(suffix: str) -> ts.Parser:
    """A parser for the suffix's grammar; raises GrammarMissing when it is not installed."""
    package, function = GRAMMARS[suffix]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise GrammarMissing(f"grammar package {package} is not installed") from exc
    return ts.Parser(ts.Language(getattr(module, function)()))


def syntax_findings(path: str, text: str) -> list[Finding]:
    """Findings for every outermost-precise ERROR and every MISSING node in `text`.

    Raises KeyError for a suffix with no known language and GrammarMissing when the grammar
    is not installed.
    """
    parser = parser_for_suffix(suffix_of(path))
    source = text.encode("utf-8")
    tree = parser.parse(source)
    if not tree.root_node.has_error:
        return []
    lines = source.split(b"\n")
    findings = []
    for node in _error_nodes(tree.root_node):
        findings.append(_finding(path, node, lines))
        if len(findings) >= MAX_FINDINGS_PER_FILE:
            break
    return findings


def _error_nodes(root: ts.Node) -> Iterator[ts.Node]:
    """MISSING nodes, and ERROR nodes that contain no smaller ERROR (the precise culprit)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_missing:
            yield node
            continue
        if not node.has_error:
            continue
        children = list(node.children)
        if node.is_error and not any(child.has_error for child in children):
            yield node
            continue
        stack.extend(reversed(children))


def _finding(path: str, node: ts.Node, lines: list[bytes]) -> Finding:
    start = _point(node.start_point, lines)
    end = _point(node.end_point, lines)
    if end.line > start.line:
        # A multi-line ERROR node: point at its first line, where the parser got lost.
        end = Point(start.line, len(_line_text(lines, start.line)))
    if node.is_missing:
        message = f"syntax error: missing {node.type!r}"
    else:
        snippet = _line_text(lines, start.line)[start.column : end.column].strip()
        message = f"syntax error: unexpected {snippet[:40]!r}" if snippet else "syntax error"
    return Finding(path=path, span=Span(start, end), message=message, code="syntax")


def _point(point: ts.Point, lines: list[bytes]) -> Point:
    row, byte_column = point
    if row >= len(lines):
        return Point(row, 0)
    column = len(lines[row][:byte_column].decode("utf-8", errors="replace"))
    return Point(row, column)


def _line_text(lines: list[bytes], row: int) -> str:
    return lines[row].decode("utf-8", errors="replace") if row < len(lines) else ""
