"""Known-answer tests of the JavaScript, TypeScript, Go and Rust extractors."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.memory.symbols import SymbolIndex


@pytest.fixture
def index(repo: Path) -> SymbolIndex:
    built = SymbolIndex(repo)
    built.build()
    return built


def _kinds(index: SymbolIndex, name: str) -> set[tuple[str, str, str | None, str | None]]:
    return {
        (o.path, o.kind, o.symbol_kind or o.usage, o.container) for o in index.occurrences(name)
    }


def test_every_language_is_indexed_with_exact_tokens(repo: Path, index: SymbolIndex) -> None:
    assert {"web/util.js", "web/app.ts", "svc/main.go", "core/lib.rs"} <= set(index.files())
    for rel in ("web/util.js", "web/app.ts", "svc/main.go", "core/lib.rs"):
        text = (repo / rel).read_text(encoding="utf-8")
        occurrences = index.file_occurrences(rel)
        assert occurrences
        for occurrence in occurrences:
            assert text[occurrence.start : occurrence.end] == occurrence.name


def test_javascript_and_typescript(index: SymbolIndex) -> None:
    assert _kinds(index, "formatPrice") == {
        ("web/util.js", "definition", "function", None),
        ("web/app.ts", "import", "name", None),
        ("web/app.ts", "reference", "call", "CartView.render"),
    }
    [imported] = index.imports("formatPrice")
    assert imported.target == "./util.js"
    assert ("web/app.ts", "definition", "method", "CartView") in _kinds(index, "render")
    assert ("web/app.ts", "definition", "interface", None) in _kinds(index, "LineItem")
    assert ("web/app.ts", "reference", "type", "CartView.render") in _kinds(index, "LineItem")
    assert ("web/util.js", "definition", "variable", None) in _kinds(index, "CURRENCY")


def test_go(index: SymbolIndex) -> None:
    assert _kinds(index, "Describe") == {
        ("svc/main.go", "definition", "method", None),
        ("svc/main.go", "reference", "call", "main"),
    }
    assert ("svc/main.go", "definition", "type", None) in _kinds(index, "Invoice")
    [fmt_import] = index.imports("fmt")
    assert fmt_import.target == "fmt"
    assert {o.qualifier for o in index.references("Println")} == {"fmt"}


def test_rust(index: SymbolIndex) -> None:
    assert ("core/lib.rs", "definition", "method", "Ledger") in _kinds(index, "balance")
    assert ("core/lib.rs", "definition", "struct", None) in _kinds(index, "Ledger")
    assert ("core/lib.rs", "definition", "function", None) in _kinds(index, "open_ledger")
    hashmap = {(o.kind, o.symbol_kind) for o in index.occurrences("HashMap")}
    assert ("import", "name") in hashmap
    [collections] = index.imports("collections")
    assert collections.symbol_kind == "module"


def test_updating_a_javascript_file_reindexes_it(repo: Path, index: SymbolIndex) -> None:
    text = (repo / "web" / "util.js").read_text(encoding="utf-8")
    index.update_file("web/util.js", text.replace("formatPrice", "formatAmount"))
    assert [o.path for o in index.definitions("formatAmount")] == ["web/util.js"]
    assert [o.path for o in index.occurrences("formatPrice")] == ["web/app.ts", "web/app.ts"]
    parsed = index.parsed("web/util.js")
    assert parsed is not None and parsed.last_edit is not None  # re-parsed with the old tree
