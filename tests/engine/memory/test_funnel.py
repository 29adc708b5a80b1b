"""The context funnel keeps what a hint needs and never cuts inside a kept statement."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import tree_sitter as ts
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.memory.embeddings import MiniLMScorer
from delegation_machine.engine.memory.funnel import CONTAINERS, funnel
from delegation_machine.engine.memory.parsing import Parsers, language_for_path
from delegation_machine.engine.memory.symbols import SymbolIndex
from tests.engine.memory.minilm import needs_minilm

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "memory_repo"
PRICING = (FIXTURE / "shop" / "pricing.py").read_text(encoding="utf-8")
REPORTS = (
    Path(__file__).resolve().parents[3] / "samples" / "inventory" / "inventory" / "reports.py"
).read_text(encoding="utf-8")
_MARKER = re.compile(r"^\s*(#|//) \.\.\. (\d+) lines? omitted$")


def _lines(text: str) -> list[str]:
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def test_hinted_definition_is_kept_whole_and_the_rest_elided_with_counts() -> None:
    result = funnel(
        PRICING, "_round_cents: Round an amount to whole cents.", path="p.py", token_budget=130
    )
    assert result.level == "exact" and result.token_budget == 130
    assert result.output_tokens <= 130
    lines = _lines(PRICING)
    definition = lines.index("def _round_cents(amount: float) -> float:")
    assert {definition, definition + 1, definition + 2} <= set(result.kept_rows)
    # A call site of the hinted function is kept whole, with its enclosing scopes' headers.
    out = result.text
    assert "        return _round_cents(amount * (100 - self.percent) / 100)" in out
    assert "class Discount:" in out and "    def apply(self, amount: float) -> float:" in out
    assert "TAX_RATE = 0.2" not in out
    omitted = sum(int(m.group(2)) for m in map(_MARKER.match, _lines(out)) if m)
    assert omitted == result.omitted_lines
    assert len(result.kept_rows) + result.omitted_lines == len(lines)


def test_a_file_that_fits_the_budget_is_returned_whole() -> None:
    result = funnel(PRICING, "anything at all", path="p.py", token_budget=10_000)
    assert result.level == "whole" and result.text == PRICING and result.omitted_lines == 0


@pytest.mark.parametrize("budget", [30, 60, 120, 200])
def test_the_budget_is_the_tokens_option_and_is_never_exceeded(budget: int) -> None:
    result = funnel(REPORTS, "customer order totals", path="reports.py", token_budget=budget)
    assert result.token_budget == budget
    assert 0 < result.output_tokens <= budget
    assert result.level == "ranked"


def test_plain_words_with_no_name_in_them_keep_the_function_they_describe() -> None:
    # The example: the old funnel kept only a marker here.
    for hint in ("flag low stock items under the threshold", "items under the threshold"):
        result = funnel(REPORTS, hint, path="reports.py", token_budget=120)
        assert result.output_tokens <= 120
        assert "def low_stock(products: dict[str, Product], threshold: int = 5) -> list[str]:" in (
            result.text
        )
        assert (
            "    return sorted(sku for sku, p in products.items() if p.quantity <= threshold)"
            in (result.text)
        )


def test_more_budget_keeps_more_and_never_less() -> None:
    hint = "render the stock report with values per sku"
    kept = [
        set(funnel(REPORTS, hint, path="reports.py", token_budget=b).kept_rows)
        for b in (60, 150, 300)
    ]
    assert len(kept[0]) < len(kept[1]) < len(kept[2])
    render = _lines(REPORTS).index(
        'def render_stock_report(products: dict[str, Product], currency: str = "EUR") -> str:'
    )
    assert render in kept[1] and render in kept[2]


def test_signatures_fill_what_the_hits_leave() -> None:
    plain = funnel(PRICING, "_round_cents", path="p.py", token_budget=150)
    with_signatures = funnel(
        PRICING, "_round_cents", path="p.py", token_budget=150, keep_signatures=True
    )
    assert set(plain.kept_rows) <= set(with_signatures.kept_rows)
    assert with_signatures.output_tokens <= 150


def test_unknown_file_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"notes\.txt: no grammar"):
        funnel("hello", "hello", path="notes.txt")
    with pytest.raises(ValueError, match="budget must be positive"):
        funnel(PRICING, "x", path="p.py", token_budget=0)


def test_other_languages_prune_between_statements() -> None:
    text = (FIXTURE / "svc" / "main.go").read_text(encoding="utf-8")
    result = funnel(text, "Describe", path="svc/main.go", token_budget=60)
    assert "func (i Invoice) Describe() string {" in result.text
    assert '\treturn strings.ToUpper(fmt.Sprintf("total %.2f", i.Total))' in result.text
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
_WORDS = ["total", "price", "cart", "tax", "items", "discount", "amount", "format", "web"]


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(_FILES),
    st.lists(st.sampled_from(_NAMES + _WORDS), min_size=1, max_size=4),
    st.booleans(),
    st.integers(min_value=12, max_value=400),
)
def test_no_kept_statement_is_ever_cut(
    rel: str, names: list[str], signatures: bool, budget: int
) -> None:
    text = (FIXTURE / rel).read_text(encoding="utf-8")
    result = funnel(
        text, " ".join(names), path=rel, keep_signatures=signatures, token_budget=budget
    )
    assert result.output_tokens <= budget
    language = language_for_path(rel)
    assert language is not None
    tree = Parsers().parse(rel, language, text).tree
    kept = set(result.kept_rows)
    lines = _lines(text)
    for leaf in _leaf_statements(tree.root_node, CONTAINERS[language]):
        rows = {r for r in range(leaf.start_point[0], leaf.end_point[0] + 1) if lines[r].strip()}
        assert not (rows & kept) or rows <= kept, (rel, leaf.type, leaf.start_point)
    # Every definition named in the hint (a snake_case name) is there when it fits.
    for occurrence in _INDEX.file_occurrences(rel):
        named = occurrence.name in names and "_" in occurrence.name.strip("_")
        if occurrence.kind == "definition" and named and budget >= result.input_tokens:
            assert occurrence.span.start.line in kept
    assert len(kept) + result.omitted_lines == len(lines)


class _KeywordScorer:
    """A ChunkScorer that likes chunks mentioning one keyword (the MiniLM test is below)."""

    name = "keyword"

    def __init__(self, keyword: str) -> None:
        self.keyword = keyword
        self.chunks_seen = 0

    def score(self, query: str, chunks: Sequence[str]) -> list[float]:
        self.chunks_seen += len(chunks)
        return [1.0 if self.keyword in chunk else 0.0 for chunk in chunks]


def test_a_scorer_adds_to_the_ranking() -> None:
    scorer = _KeywordScorer("TAX_RATE")
    hint = "what is charged on a sale"
    without = funnel(PRICING, hint, path="p.py", token_budget=40)
    result = funnel(PRICING, hint, path="p.py", scorer=scorer, token_budget=40)
    assert scorer.chunks_seen > 0 and result.scoring == "bm25+keyword"
    assert "TAX_RATE = 0.2" in result.text and "TAX_RATE = 0.2" not in without.text


@needs_minilm
def test_minilm_vectors_find_a_function_no_word_of_the_hint_names() -> None:
    hint = "shrink the saved document with compression"
    text = REPORTS.replace(
        '    """Compress a written report next to itself and return the archive\'s path."""\n', ""
    )
    scorer = MiniLMScorer()
    result = funnel(text, hint, path="reports.py", token_budget=90, scorer=scorer)
    assert result.scoring == "bm25+minilm" and result.output_tokens <= 90
    assert "def archive_report(path: Path) -> Path:" in result.text
    assert '    subprocess.run(f"gzip -kf {path}", shell=True, check=True)' in result.text
    without = funnel(text, hint, path="reports.py", token_budget=90)
    assert "def archive_report(path: Path) -> Path:" not in without.text
    embedded = scorer.embedded
    funnel(text, hint, path="reports.py", token_budget=90, scorer=scorer)
    assert scorer.embedded == embedded  # the second look embeds nothing: vectors are cached
