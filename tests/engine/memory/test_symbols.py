"""Known-answer tests of the Python symbol index on the fixture repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.memory.symbols import SymbolIndex, SymbolOccurrence


@pytest.fixture
def index(repo: Path) -> SymbolIndex:
    built = SymbolIndex(repo)
    built.build()
    return built


def _text(repo: Path, occurrence: SymbolOccurrence) -> str:
    return (repo / occurrence.path).read_text(encoding="utf-8")[occurrence.start : occurrence.end]


def _line_col(repo: Path, occurrence: SymbolOccurrence) -> tuple[int, int]:
    text = (repo / occurrence.path).read_text(encoding="utf-8")
    before = text[: occurrence.start]
    return before.count("\n"), occurrence.start - (before.rfind("\n") + 1)


def test_every_occurrence_points_at_its_identifier_token(repo: Path, index: SymbolIndex) -> None:
    for rel in index.files():
        for occurrence in index.file_occurrences(rel):
            assert _text(repo, occurrence) == occurrence.name
            line, column = _line_col(repo, occurrence)
            assert (occurrence.span.start.line, occurrence.span.start.column) == (line, column)
            assert occurrence.span.end.column - occurrence.span.start.column == len(occurrence.name)


def test_function_definition_and_its_uses_across_files(index: SymbolIndex) -> None:
    definitions = index.definitions("total_price")
    assert [(d.path, d.symbol_kind, d.container, d.span.start.line) for d in definitions] == [
        ("shop/pricing.py", "function", None, 12)
    ]
    imports = {(o.path, o.symbol_kind, o.target) for o in index.imports("total_price")}
    assert imports == {
        ("shop/__init__.py", "name", "shop.pricing.total_price"),
        ("shop/cart.py", "name", "shop.pricing.total_price"),
    }
    references = {(o.path, o.usage, o.qualifier) for o in index.references("total_price")}
    assert references == {
        ("shop/cart.py", "call", "shop.pricing"),
        ("shop/report.py", "call", "pricing"),
    }


def test_strings_and_comments_are_not_occurrences(index: SymbolIndex) -> None:
    # cart.py mentions total_price in a comment and in a string literal; neither counts.
    cart_lines = sorted(o.span.start.line for o in index.occurrences("total_price"))
    assert [o.path for o in index.occurrences("total_price")].count("shop/cart.py") == 2
    assert 18 not in cart_lines and 19 not in cart_lines


def test_alias_import_binds_alias_and_its_uses(index: SymbolIndex) -> None:
    [alias] = index.imports("tp")
    assert (alias.path, alias.symbol_kind, alias.target) == (
        "shop/cart.py",
        "alias",
        "shop.pricing.total_price",
    )
    [use] = index.references("tp")
    assert (use.usage, use.container) == ("call", "Cart.checkout")


def test_plain_and_dotted_module_imports(index: SymbolIndex) -> None:
    shop_imports = {(o.path, o.target) for o in index.imports("shop")}
    assert ("shop/cart.py", "shop") in shop_imports
    pricing = {(o.path, o.symbol_kind, o.target) for o in index.imports("pricing")}
    assert ("shop/cart.py", "module", "shop.pricing") in pricing
    assert ("shop/report.py", "name", "shop.pricing") in pricing
    assert ("shop/__init__.py", "module_path", "shop.pricing") in pricing


def test_methods_classes_and_class_attributes(index: SymbolIndex) -> None:
    [apply_def] = index.definitions("apply")
    assert (apply_def.symbol_kind, apply_def.container) == ("method", "Discount")
    [discount] = index.definitions("Discount")
    assert discount.symbol_kind == "class"
    percent = {(o.kind, o.symbol_kind, o.usage, o.container) for o in index.occurrences("percent")}
    assert ("definition", "attribute", None, "Discount") in percent
    assert ("definition", "parameter", None, "Discount.__init__") in percent
    assert ("reference", None, "attribute", "Discount.apply") in percent
    [apply_call] = index.references("apply")
    assert (apply_call.path, apply_call.usage, apply_call.qualifier) == (
        "shop/cart.py",
        "call",
        "discount",
    )


def test_module_level_assignment_and_decorator(index: SymbolIndex) -> None:
    [tax] = index.definitions("TAX_RATE")
    assert (tax.path, tax.symbol_kind, tax.container) == ("shop/pricing.py", "variable", None)
    assert {(o.path, o.usage) for o in index.references("TAX_RATE")} == {
        ("shop/pricing.py", "load"),
        ("shop/report.py", "attribute"),
    }
    [decorator] = index.references("lru_cache")
    assert (decorator.usage, decorator.qualifier) == ("decorator", "functools")
    locals_ = {(o.symbol_kind, o.container) for o in index.definitions("subtotal")}
    assert locals_ == {("local", "total_price")}


def test_fstring_interpolations_are_code_and_non_ascii_offsets(
    repo: Path, index: SymbolIndex
) -> None:
    uses = [o for o in index.occurrences("café") if o.path == "shop/report.py"]
    assert [o.kind for o in uses] == ["definition", "reference"]
    assert all(_text(repo, o) == "café" for o in uses)
    [call] = [o for o in index.references("yearly_total") if o.container == "summary"]
    assert call.usage == "call"
    # The line holds "café" (one non-ASCII code point) before the call: columns are code points.
    line = (repo / "shop/report.py").read_text(encoding="utf-8").splitlines()[call.span.start.line]
    assert line[call.span.start.column :].startswith("yearly_total(")


def test_build_skips_ignored_folders_binaries_and_large_files(repo: Path) -> None:
    (repo / ".delegation" / "tasks").mkdir(parents=True)
    (repo / ".delegation" / "tasks" / "hidden.py").write_text("def total_price(): pass\n")
    (repo / "node_modules" / "dep").mkdir(parents=True)
    (repo / "node_modules" / "dep" / "index.py").write_text("def total_price(): pass\n")
    (repo / ".venv").mkdir()
    (repo / ".venv" / "site.py").write_text("def total_price(): pass\n")
    (repo / "shop" / "__pycache__").mkdir()
    (repo / "shop" / "__pycache__" / "x.py").write_text("def total_price(): pass\n")
    (repo / "shop" / "blob.py").write_bytes(b"def total_price():\n    return '\x00'\n")
    (repo / "shop" / "huge.py").write_text("def total_price(): pass\n" + "#" * 2000)
    index = SymbolIndex(repo, max_file_bytes=1000)
    index.build()
    assert [d.path for d in index.definitions("total_price")] == ["shop/pricing.py"]
    skipped = {s.path: s.reason for s in index.skipped}
    assert skipped["shop/blob.py"] == "binary"
    assert skipped["shop/huge.py"].startswith("too large")
    assert all(not f.startswith((".delegation", "node_modules", ".venv")) for f in index.files())


def test_remove_file_drops_its_occurrences(index: SymbolIndex) -> None:
    assert index.remove_file("shop/cart.py")
    assert "shop/cart.py" not in index.files()
    assert index.occurrences("tp") == []
    assert not index.remove_file("shop/cart.py")


def test_update_file_adds_new_definitions_and_references(index: SymbolIndex) -> None:
    text = "from shop.pricing import total_price\n\n\ndef grand_total():\n    return total_price([2.0])\n"
    index.update_file("shop/extra.py", text)
    assert "shop/extra.py" in index.files()
    assert [d.path for d in index.definitions("grand_total")] == ["shop/extra.py"]
    assert ("shop/extra.py", "call") in {(r.path, r.usage) for r in index.references("total_price")}
    index.update_file("shop/extra.py", text.replace("grand_total", "overall_total"))
    assert index.definitions("grand_total") == []
    assert [d.name for d in index.definitions("overall_total")] == ["overall_total"]


def test_unsupported_files_are_ignored_by_update(index: SymbolIndex) -> None:
    assert index.update_file("notes.txt", "total_price") == []
    assert "notes.txt" not in index.files()


def test_language_filter_limits_the_walk(repo: Path) -> None:
    index = SymbolIndex(repo, languages=["go", "rust"])
    index.build()
    assert index.files() == ["core/lib.rs", "svc/main.go"]


def test_gitignored_folders_and_files_are_skipped(repo: Path) -> None:
    (repo / ".gitignore").write_text("# generated code\ngenerated/\n/web/app.ts\n*_pb2.py\n")
    (repo / "generated").mkdir()
    (repo / "generated" / "api.py").write_text("def total_price(): pass\n")
    (repo / "shop" / "generated").mkdir()
    (repo / "shop" / "generated" / "x.py").write_text("def total_price(): pass\n")
    (repo / "shop" / "money_pb2.py").write_text("def total_price(): pass\n")
    index = SymbolIndex(repo)
    index.build()
    assert [d.path for d in index.definitions("total_price")] == ["shop/pricing.py"]
    assert "web/app.ts" not in index.files() and "web/util.js" in index.files()
