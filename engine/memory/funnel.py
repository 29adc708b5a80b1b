"""The context funnel: prune one file to what a goal hint needs, cutting only between nodes.

Owns goal-hint line pruning (SWE-Pruner style). A definition named in the hint is kept whole;
a statement that uses a hinted name is kept whole when small, otherwise its own lines (headers,
braces) are kept and its blocks are pruned the same way; enclosing scopes keep their headers;
other definitions keep their signatures while the budget allows. Omitted statements become one
marker line saying how many lines were left out. Invariant: a kept statement is never cut.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import tree_sitter as ts

from delegation_machine.engine.inference.tokens import ApproxTokenizer
from delegation_machine.engine.memory.parsing import Parsers, language_for_path
from delegation_machine.engine.memory.symbols import extractor_for_language

TokenCounter = Callable[[str], int]
_DEFAULT_COUNTER = ApproxTokenizer().count

CONTAINERS: dict[str, frozenset[str]] = {
    "python": frozenset({"module", "block"}),
    "javascript": frozenset({"program", "statement_block", "class_body", "switch_body"}),
    "typescript": frozenset(
        {"program", "statement_block", "class_body", "switch_body", "interface_body"}
    ),
    "go": frozenset({"source_file", "statement_list", "field_declaration_list"}),
    "rust": frozenset({"source_file", "block", "declaration_list"}),
}
CONTAINERS["tsx"] = CONTAINERS["typescript"]

DEFINITIONS: dict[str, frozenset[str]] = {
    "python": frozenset({"function_definition", "class_definition", "decorated_definition"}),
    "javascript": frozenset(
        {
            "function_declaration",
            "generator_function_declaration",
            "class_declaration",
            "method_definition",
            "export_statement",
        }
    ),
    "typescript": frozenset(
        {
            "function_declaration",
            "generator_function_declaration",
            "class_declaration",
            "abstract_class_declaration",
            "interface_declaration",
            "method_definition",
            "export_statement",
        }
    ),
    "go": frozenset({"function_declaration", "method_declaration", "type_declaration"}),
    "rust": frozenset(
        {"function_item", "impl_item", "struct_item", "enum_item", "trait_item", "mod_item"}
    ),
}
DEFINITIONS["tsx"] = DEFINITIONS["typescript"]

_CLASS_LIKE = frozenset(
    {
        "class_definition",
        "class_declaration",
        "abstract_class_declaration",
        "interface_declaration",
        "impl_item",
        "trait_item",
        "mod_item",
    }
)
_NAMED_KINDS = frozenset(
    {"function", "method", "class", "struct", "interface", "enum", "trait", "type", "variable"}
)
_COMMENT = {"python": "#"}
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "with",
        "return",
        "returns",
        "self",
        "none",
        "true",
        "false",
        "def",
        "class",
        "function",
        "if",
        "else",
        "not",
    ]
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
SMALL_STATEMENT_LINES = 12
WEAK_ROW_SHARE = 0.6  # share of the hint's (IDF-weighted) words a row needs


class ChunkScorer(Protocol):
    """Scores text chunks against a query (MiniLM when the extra is installed)."""

    name: str

    def score(self, query: str, chunks: Sequence[str]) -> list[float]: ...


class FunnelResult(msgspec.Struct, frozen=True):
    """A pruned file: its text, the original rows shown verbatim, and the sizes before and after.

    Every original row is either in `kept_rows` or stood for by a marker line:
    len(kept_rows) + omitted_lines == total_lines.
    """

    text: str
    kept_rows: tuple[int, ...]
    total_lines: int
    omitted_lines: int
    input_tokens: int
    output_tokens: int
    level: str  # "signatures", "hits" or "strong": the richest level that fitted the budget

    @property
    def compression(self) -> float:
        return self.input_tokens / max(self.output_tokens, 1)


def hint_terms(hint: str) -> tuple[frozenset[str], frozenset[str]]:
    """(identifiers named in the hint, lowercased word parts without stopwords)."""
    identifiers = frozenset(word for word in _WORD.findall(hint) if len(word) >= 3)
    parts = {
        part.lower()
        for word in _WORD.findall(hint)
        for piece in word.split("_")
        for part in _CAMEL.findall(piece)
    }
    return identifiers, frozenset(p for p in parts if len(p) >= 3 and p not in _STOPWORDS)


def _looks_like_code(word: str) -> bool:
    """snake_case, camelCase, CONSTANT or digits: not a plain English word."""
    return "_" in word or any(c.isdigit() for c in word) or word[1:] != word[1:].lower()


def _row_terms(line: str) -> set[str]:
    return {
        part.lower()
        for word in _WORD.findall(line)
        for piece in word.split("_")
        for part in _CAMEL.findall(piece)
    }


@dataclass
class _Plan:
    """Rows chosen so far, and the per-row evidence they were chosen on."""

    strong_rows: set[int]
    weak_rows: set[int]
    named: frozenset[str]
    language: str
    signatures: bool
    use_weak: bool
    blank_rows: frozenset[int]
    kept: set[int] = field(default_factory=set)


def _rows(node: ts.Node) -> range:
    return range(node.start_point[0], node.end_point[0] + 1)


def _definition_name(node: ts.Node) -> str | None:
    inner = node
    if node.type == "decorated_definition":
        inner = node.child_by_field_name("definition") or node
    elif node.type == "export_statement":
        inner = node.child_by_field_name("declaration") or node
    elif node.type == "impl_item":
        type_node = node.child_by_field_name("type")
        return type_node.text.decode("utf-8", "replace") if type_node and type_node.text else None
    elif node.type == "type_declaration":
        spec = next((c for c in node.named_children if c.type == "type_spec"), None)
        inner = spec or node
    name = inner.child_by_field_name("name")
    if name is None or name.text is None:
        return None
    return name.text.decode("utf-8", "replace")


def _containers_below(node: ts.Node, containers: frozenset[str]) -> list[ts.Node]:
    """The first container nodes under `node` (not looking inside a container)."""
    found: list[ts.Node] = []
    stack = list(reversed(node.named_children))
    while stack:
        current = stack.pop()
        if current.type in containers:
            found.append(current)
        else:
            stack.extend(reversed(current.named_children))
    return found


def _owned_rows(node: ts.Node, containers: list[ts.Node]) -> set[int]:
    """Rows of `node` outside the statements of its containers: headers, braces, clauses."""
    rows = set(_rows(node))
    for container in containers:
        for child in container.named_children:
            rows.difference_update(_rows(child))
    return rows


def _visit_container(container: ts.Node, plan: _Plan, signatures_only: bool) -> None:
    for child in container.named_children:
        _visit_statement(child, plan, signatures_only)


def _visit_statement(node: ts.Node, plan: _Plan, signatures_only: bool) -> None:
    rows = _rows(node)
    is_definition = node.type in DEFINITIONS[plan.language]
    if is_definition and not signatures_only and _definition_name(node) in plan.named:
        plan.kept.update(rows)
        return
    hit_rows = plan.strong_rows | plan.weak_rows if plan.use_weak else plan.strong_rows
    has_hit = not signatures_only and any(row in hit_rows for row in rows)
    containers = _containers_below(node, CONTAINERS[plan.language])
    if has_hit and (not containers or (len(rows) <= SMALL_STATEMENT_LINES and not is_definition)):
        plan.kept.update(rows)
        return
    if has_hit:
        _keep_shell(node, containers, plan, signatures_only=False)
    elif is_definition and plan.signatures:
        # A signature keeps its own rows; only class-like bodies list their members' signatures.
        _keep_shell(node, containers if _is_class_like(node) else [], plan, signatures_only=True)


def _is_class_like(node: ts.Node) -> bool:
    inner = node
    if node.type == "decorated_definition":
        inner = node.child_by_field_name("definition") or node
    elif node.type == "export_statement":
        inner = node.child_by_field_name("declaration") or node
    return inner.type in _CLASS_LIKE


def _keep_shell(
    node: ts.Node, containers: list[ts.Node], plan: _Plan, *, signatures_only: bool
) -> None:
    """Keep a node's own rows and prune its blocks; a statement sharing a kept row stays whole."""
    owned = _owned_rows(node, containers) - plan.blank_rows
    plan.kept.update(owned)
    for container in containers:
        for child in container.named_children:
            if any(row in owned for row in _rows(child)):
                plan.kept.update(_rows(child))
            else:
                _visit_statement(child, plan, signatures_only)


def _render(lines: list[str], kept: set[int], comment: str) -> tuple[str, set[int], int]:
    """The pruned text, the rows it shows verbatim, and how many rows markers stand for.

    A run of omitted rows becomes one marker line; a run of blank rows stays as it is.
    """
    out: list[str] = []
    shown: set[int] = set()
    omitted_total = 0
    run: list[int] = []

    def flush() -> None:
        nonlocal omitted_total
        if not run:
            return
        content = [lines[row] for row in run if lines[row].strip()]
        if not content:
            out.extend(lines[row] for row in run)
            shown.update(run)
        else:
            omitted_total += len(run)
            indent = content[0][: len(content[0]) - len(content[0].lstrip())]
            plural = "line" if len(run) == 1 else "lines"
            out.append(f"{indent}{comment} ... {len(run)} {plural} omitted")
        run.clear()

    for row, line in enumerate(lines):
        if row in kept:
            flush()
            out.append(line)
            shown.add(row)
        else:
            run.append(row)
    flush()
    return "\n".join(out) + ("\n" if out else ""), shown, omitted_total


def funnel(
    text: str,
    hint: str,
    *,
    path: str = "snippet.py",
    token_budget: int | None = None,
    keep_signatures: bool = False,
    scorer: ChunkScorer | None = None,
    count_tokens: TokenCounter = _DEFAULT_COUNTER,
    parsers: Parsers | None = None,
) -> FunnelResult:
    """Prune `text` (the file at `path`) to what `hint` needs, within `token_budget` if given.

    With `keep_signatures`, unrelated definitions keep their signature lines too; when the
    result is over the budget, signatures go first, then rows that match only by words.
    """
    language = language_for_path(path)
    if language is None:
        raise ValueError(f"{path}: no grammar for this file type, cannot funnel it")
    parsed = (parsers or Parsers()).parse(path, language, text)
    occurrences, _ = extractor_for_language(language)(parsed)
    words, terms = hint_terms(hint)
    defined = {
        o.name for o in occurrences if o.kind == "definition" and o.symbol_kind in _NAMED_KINDS
    }
    # A hint word is a code name when it looks like one or the file defines it.
    named = frozenset(w for w in words if _looks_like_code(w) or w in defined)
    strong_rows = {o.span.start.line for o in occurrences if o.name in named}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    weak_rows = _weak_rows(lines, terms, hint, parsed.tree.root_node, language, scorer)
    blank_rows = frozenset(row for row, line in enumerate(lines) if not line.strip())
    input_tokens = count_tokens(text)
    comment = _COMMENT.get(language, "//")
    levels: tuple[tuple[str, bool, bool], ...] = (
        ("signatures", True, True),
        ("hits", False, True),
        ("strong", False, False),
    )
    if not keep_signatures:
        levels = levels[1:]
    result: FunnelResult | None = None
    for level, signatures, use_weak in levels:
        plan = _Plan(strong_rows, weak_rows, named, language, signatures, use_weak, blank_rows)
        _visit_container(parsed.tree.root_node, plan, signatures_only=False)
        rendered, shown, omitted = _render(lines, plan.kept, comment)
        result = FunnelResult(
            text=rendered,
            kept_rows=tuple(sorted(shown)),
            total_lines=len(lines),
            omitted_lines=omitted,
            input_tokens=input_tokens,
            output_tokens=count_tokens(rendered),
            level=level,
        )
        if token_budget is None or result.output_tokens <= token_budget:
            break
    assert result is not None
    return result


def _weak_rows(
    lines: list[str],
    terms: frozenset[str],
    hint: str,
    root: ts.Node,
    language: str,
    scorer: ChunkScorer | None,
) -> set[int]:
    """Rows that share most of the hint's words (or, with a scorer, the closest statements)."""
    if scorer is not None:
        return _scored_rows(lines, hint, root, language, scorer)
    if not terms:
        return set()
    row_terms = [_row_terms(line) & terms for line in lines]
    frequency = {term: sum(term in found for found in row_terms) for term in terms}
    # Words common in this file say little: weight each by its inverse row frequency.
    weight = {term: math.log((len(lines) + 1) / (count + 0.5)) for term, count in frequency.items()}
    total = sum(weight.values()) or 1.0
    return {
        row
        for row, found in enumerate(row_terms)
        if len(found) >= min(2, len(terms))
        and sum(weight[term] for term in found) / total >= WEAK_ROW_SHARE
    }


def _scored_rows(
    lines: list[str], hint: str, root: ts.Node, language: str, scorer: ChunkScorer
) -> set[int]:
    statements: list[ts.Node] = []
    stack = [root]
    containers = CONTAINERS[language]
    while stack:
        node = stack.pop()
        for child in node.named_children:
            inner = _containers_below(child, containers)
            if inner and len(_rows(child)) > SMALL_STATEMENT_LINES:
                stack.extend(inner)
            else:
                statements.append(child)
    if not statements:
        return set()
    chunks = ["\n".join(lines[n.start_point[0] : n.end_point[0] + 1])[:1000] for n in statements]
    scores = scorer.score(hint, chunks)
    best = max(scores)
    chosen: set[int] = set()
    for node, value in zip(statements, scores, strict=True):
        if value >= max(0.35, best - 0.1):
            chosen.update(_rows(node))
    return chosen
