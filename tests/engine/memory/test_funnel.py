"""The context funnel keeps what a hint needs and never cuts inside a kept statement."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tree_sitter as ts
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.memory.funnel import CONTAINERS, funnel
from delegation_machine.engine.memory.parsing import Parsers, language_for_path
from delegation_machine.engine.memory.symbols import SymbolIndex

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "memory_repo"
PRICING = (FIXTURE / "shop" / "pricing.py").read_text(encoding="utf-8")
_MARKER = re.compile(r"^\s*(#|//) \.\.\. (\d+) lines? omitted$")


def _lines(text: str) -> list[str]:
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def test_hinted_definition_is_kept_whole_and_the_rest_elided_with_counts() -> None:
    result = funnel(PRICING, "_round_cents: Round an amount to whole cents.", path="p.py")
    lines = _lines(PRICING)
    definition = lines.index("def _round_cents(amount: float) -> float:")
    assert {definition, definition + 1, definition + 2} <= set(result.kept_rows)
    # Call sites of the hinted function are kept with their enclosing scope headers.
    out = result.text
    assert "    return _round_cents(subtotal * (1 + tax))" in out
    assert "def total_price(items: list[float], tax: float = TAX_RATE) -> float:" in out
    assert "class Discount:" in out and "    def apply(self, amount: float) -> float:" in out
    assert "TAX_RATE = 0.2" not in out
    omitted = sum(int(m.group(2)) for m in map(_MARKER.match, _lines(out)) if m)
    assert omitted == result.omitted_lines
    assert len(result.kept_rows) + result.omitted_lines == len(lines)


def test_signatures_are_kept_on_request_and_dropped_first_under_a_budget() -> None:
    with_signatures = funnel(PRICING, "_round_cents", path="p.py", keep_signatures=True)
    assert "    def __init__(self, percent: int) -> None:" in with_signatures.text
    assert with_signatures.level == "signatures"
    tight = funnel(
        PRICING,
        "_round_cents",
        path="p.py",
        keep_signatures=True,
        token_budget=with_signatures.output_tokens - 1,
    )
    assert tight.level in ("hits", "strong")
    assert "def __init__" not in tight.text
    assert tight.output_tokens < with_signatures.output_tokens


def test_unknown_file_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"notes\.txt: no grammar"):
        funnel("hello", "hello", path="notes.txt")


def test_other_languages_prune_between_statements() -> None:
    text = (FIXTURE / "svc" / "main.go").read_text(encoding="utf-8")
    result = funnel(text, "Describe", path="svc/main.go")
    assert "func (i Invoice) Describe() string {" in result.text
    assert "\tfmt.Println(inv.Describe())" in result.text
    assert "\tinv := Invoice{Total: 3}" not in result.text


def _leaf_statements(node: ts.Node, containers: frozenset[str]) -> list[ts.Node]:
    """Statements with no block inside them: the units the funnel may never cut."""
    leaves: list[ts.Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        for child in current.named_children:
            if current.type in containers:
                inner = [c for c in _walk(child) if c.type in containers]
                if not inner:
                    leaves.append(child)
            stack.append(child)
    return leaves


def _walk(node: ts.Node) -> list[ts.Node]:
    found = []
    stack = list(node.named_children)
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(current.named_children)
    return found


_INDEX = SymbolIndex(FIXTURE)
_INDEX.build()
_FILES = [f for f in _INDEX.files()]
_NAMES = sorted({o.name for f in _FILES for o in _INDEX.file_occurrences(f)})


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(_FILES),
    st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3),
    st.booleans(),
)
def test_no_kept_statement_is_ever_cut(rel: str, names: list[str], signatures: bool) -> None:
    text = (FIXTURE / rel).read_text(encoding="utf-8")
    result = funnel(text, " ".join(names), path=rel, keep_signatures=signatures)
    language = language_for_path(rel)
    assert language is not None
    tree = Parsers().parse(rel, language, text).tree
    kept = set(result.kept_rows)
    lines = _lines(text)
    for leaf in _leaf_statements(tree.root_node, CONTAINERS[language]):
        rows = {r for r in range(leaf.start_point[0], leaf.end_point[0] + 1) if lines[r].strip()}
        assert not (rows & kept) or rows <= kept, (rel, leaf.type, leaf.start_point)
    # Every definition named in the hint (a code-like name of 3+ characters) is there.
    for occurrence in _INDEX.file_occurrences(rel):
        named = occurrence.name in names and len(occurrence.name) >= 3
        if occurrence.kind == "definition" and named and "_" in occurrence.name:
            assert occurrence.span.start.line in kept
    assert len(kept) + result.omitted_lines == len(lines)


class _KeywordScorer:
    """A ChunkScorer standing in for MiniLM (torch is not installed here): 1.0 if the chunk
    mentions the keyword, else 0."""

    name = "keyword"

    def __init__(self, keyword: str) -> None:
        self.keyword = keyword
        self.chunks_seen = 0

    def score(self, query: str, chunks: list[str]) -> list[float]:
        self.chunks_seen += len(chunks)
        return [1.0 if self.keyword in chunk else 0.0 for chunk in chunks]


def test_a_scorer_chooses_the_weak_hits() -> None:
    scorer = _KeywordScorer("TAX_RATE")
    result = funnel(PRICING, "how is tax applied", path="p.py", scorer=scorer)
    assert scorer.chunks_seen > 0
    assert "TAX_RATE = 0.2" in result.text
    assert "def total_price(items: list[float], tax: float = TAX_RATE) -> float:" in result.text
    assert "class Discount:" not in result.text
