"""Incremental re-indexing equals a full re-index of the same text, for any edit sequence."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delegation_machine.engine.memory.lang_python import extract_python
from delegation_machine.engine.memory.parsing import Parsers, changed_byte_region
from delegation_machine.engine.memory.symbols import SymbolIndex

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "memory_repo"
BASE_TEXT = (FIXTURE / "shop" / "report.py").read_text(encoding="utf-8") + (
    FIXTURE / "shop" / "pricing.py"
).read_text(encoding="utf-8")

SNIPPETS = [
    "x",
    "total_price",
    " ",
    "\n",
    "\n    ",
    "(",
    ")",
    ":",
    '"',
    "'''",
    "#",
    "def f(a):\n    return a\n",
    "class K:\n    y = 1\n",
    "import os\n",
    "é",
    "naïve = 1\n",
    ".attr",
    "@deco\n",
]


def _full_index(tmp: Path, text: str) -> SymbolIndex:
    index = SymbolIndex(tmp)
    index.update_file("mod.py", text)
    return index


edit = st.tuples(st.floats(0, 1), st.integers(0, 12), st.sampled_from(SNIPPETS))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(edit, min_size=1, max_size=6))
def test_incremental_update_matches_full_index(
    tmp_path: Path, edits: list[tuple[float, int, str]]
) -> None:
    incremental = SymbolIndex(tmp_path)
    text = BASE_TEXT
    incremental.update_file("mod.py", text)
    for where, delete, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + delete :]
        incremental.update_file("mod.py", text)
        parsed = incremental.parsed("mod.py")
        assert parsed is not None
        # The region re-extraction equals extracting the whole of the same (reused) tree.
        occurrences, scopes = extract_python(parsed)
        assert incremental.file_occurrences("mod.py") == occurrences
        assert incremental.scopes("mod.py") == scopes
        # tree-sitter recovers from syntax errors differently with and without an old tree,
        # so against a parse from scratch only error-free text must agree.
        if not parsed.tree.root_node.has_error:
            fresh = _full_index(tmp_path, text)
            assert occurrences == fresh.file_occurrences("mod.py")


def test_one_line_edit_reuses_the_old_tree_and_shifts_later_occurrences(tmp_path: Path) -> None:
    index = SymbolIndex(tmp_path)
    index.update_file("mod.py", BASE_TEXT)
    before = {(o.name, o.kind, o.span.start.line) for o in index.file_occurrences("mod.py")}
    edited = BASE_TEXT.replace(
        "    subtotal = sum(items)\n", "    subtotal = sum(items)\n    n = 1\n"
    )
    index.update_file("mod.py", edited)
    assert (index.region_updates, index.full_updates) == (1, 0)
    parsed = index.parsed("mod.py")
    assert parsed is not None and parsed.last_edit is not None
    after = {(o.name, o.kind, o.span.start.line) for o in index.file_occurrences("mod.py")}
    n_line = edited.splitlines().index("    n = 1")
    assert ("n", "definition", n_line) in after
    # `apply` was defined below the edit: it moved down one line.
    [apply_before] = [
        line for name, kind, line in before if name == "apply" and kind == "definition"
    ]
    [apply_after] = [line for name, kind, line in after if name == "apply" and kind == "definition"]
    assert apply_after == apply_before + 1


@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=40))
def test_changed_region_isolates_the_edit(prefix: str, middle: str, suffix: str) -> None:
    old = (prefix + suffix).encode()
    new = (prefix + middle + suffix).encode()
    start, old_end, new_end = changed_byte_region(old, new)
    assert old[:start] == new[:start]
    assert old[old_end:] == new[new_end:]
    assert new_end - start - (old_end - start) == len(new) - len(old)
    # Boundaries stay on UTF-8 characters so tree-sitter points are valid.
    old[:start].decode()
    new[new_end:].decode()


def test_reparse_with_identical_text_keeps_tree() -> None:
    parsers = Parsers()
    first = parsers.parse("m.py", "python", "x = 1\n")
    second = parsers.reparse(first, "x = 1\n")
    assert second.tree is first.tree and second.last_edit is None
