"""The retrieval router: structural questions in words go to the graph, the rest are ranked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from delegation_machine.engine.memory import retrieval
from delegation_machine.engine.memory.retrieval import RetrievalRouter, answer_lines
from delegation_machine.engine.memory.symbols import SymbolIndex
from tests.engine.memory.minilm import needs_minilm


@pytest.fixture
def index(repo: Path) -> SymbolIndex:
    built = SymbolIndex(repo)
    built.build()
    return built


@pytest.fixture
def router(index: SymbolIndex) -> RetrievalRouter:
    return RetrievalRouter(index, use_vectors=False)


@pytest.mark.parametrize(
    ("question", "kind", "phrase"),
    [
        ("who calls total_price?", "callers", "total_price"),
        ("What uses `Discount.apply`?", "callers", "Discount.apply"),
        ("which functions call total price", "callers", "total price"),
        ("where is round cents used?", "callers", "round cents"),
        ("which files depend on shop/pricing.py?", "dependents", "shop/pricing.py"),
        ("what depends on the pricing module", "dependents", "the pricing module"),
        ("who imports shop.cart", "dependents", "shop.cart"),
        ("what imports cart?", "dependents", "cart"),
        ("what does shop/report.py import?", "dependencies", "shop/report.py"),
        ("what does the report module depend on", "dependencies", "the report module"),
        ("where is Discount defined?", "definition", "Discount"),
        ("definition of yearly total", "definition", "yearly total"),
    ],
)
def test_structural_questions_in_words_go_to_the_graph(
    router: RetrievalRouter, question: str, kind: str, phrase: str
) -> None:
    assert router.route(question) == ("graph", kind, phrase)


def test_subjects_resolve_from_words(router: RetrievalRouter) -> None:
    assert router.resolve("the pricing module").files == ("shop/pricing.py",)
    assert router.resolve("the pricing module").wants == "file"
    assert router.resolve("shop.cart").files == ("shop/cart.py",)
    assert router.resolve("verify password").symbol is None
    assert router.resolve("total price").symbol == "total_price"
    assert router.resolve("round cents").symbol == "_round_cents"
    assert router.resolve("the format price function").symbol == "formatPrice"
    assert router.resolve("Discount.apply").symbol == "apply"


def test_graph_answers(router: RetrievalRouter) -> None:
    callers = router.ask("who calls total_price?")
    assert [(h.path, h.line) for h in callers.hits] == [
        ("shop/cart.py", 21),
        ("shop/cart.py", 21),
        ("shop/report.py", 14),
    ]
    assert any("as tp" in h.detail for h in callers.hits)
    in_words = router.ask("which functions call total price")
    assert in_words.route == "graph" and in_words.subject == "total_price"
    assert [(h.path, h.line) for h in in_words.hits] == [(h.path, h.line) for h in callers.hits]
    dependents = router.ask("which files depend on shop.cart?")
    assert [h.path for h in dependents.hits] == ["shop/report.py"]
    module_words = router.ask("what depends on the pricing module")
    assert module_words.subject == "shop/pricing.py"
    assert sorted(h.path for h in module_words.hits) == [
        "shop/__init__.py",
        "shop/cart.py",
        "shop/report.py",
    ]
    uses_module = router.ask("what uses the cart module?")
    assert uses_module.kind == "dependents" and [h.path for h in uses_module.hits] == [
        "shop/report.py"
    ]
    imports = router.ask("what does the report module import")
    assert sorted(h.path for h in imports.hits) == ["shop/cart.py", "shop/pricing.py"]
    definition = router.ask("where is Discount defined?")
    assert [(h.path, h.text) for h in definition.hits] == [("shop/pricing.py", "class Discount:")]
    missing = router.ask("who calls nothing_like_this?")
    assert missing.route == "lexical" and "no file or symbol" in missing.note


def test_other_questions_are_ranked_by_bm25_without_vectors(router: RetrievalRouter) -> None:
    answer = router.ask("how is tax added to the total price")
    assert answer.route == "lexical"
    assert answer.hits[0].path == "shop/pricing.py"
    assert "total_price" in [hit.detail for hit in answer.hits[:2]]
    code = router.ask("formatPrice amount")
    assert code.route == "lexical" and code.hits[0].detail == "formatPrice"
    assert answer_lines(code)[0] == "route: lexical (search)"


def test_plain_language_is_hybrid_when_vectors_are_on(index: SymbolIndex) -> None:
    router = RetrievalRouter(index, use_vectors=True)
    assert router.route("how is tax added to a total")[0] == "hybrid"
    assert router.route("where is total_price used in carts")[0] == "lexical"


@needs_minilm
def test_hybrid_and_vector_search_with_minilm(index: SymbolIndex) -> None:
    router = RetrievalRouter(index, use_vectors=True)
    # No word of the question is in the discount code: only the vectors can find it.
    question = "reduce a price by some percent"
    lexical = router.lexical_hits(question, 3)
    assert all(hit.detail != "Discount.apply" for hit in lexical[:1])
    answer = router.ask(question)
    assert answer.route == "hybrid"
    assert answer.hits[0].path == "shop/pricing.py"
    assert {h.detail for h in answer.hits[:3]} & {"Discount", "Discount.apply"}
    vector = router.vector_hits(question, 3)
    assert vector[0].path == "shop/pricing.py"


def test_chunk_vectors_are_cached_until_the_index_changes(
    index: SymbolIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counts the embedding calls around the real router (the model itself is covered above).
    calls: list[int] = []

    def bag_of_words(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        vectors = []
        for text in texts:
            vector = [0.0] * 64
            for word in re.findall(r"[a-z]+", text.lower()):
                vector[sum(map(ord, word)) % 64] += 1.0
            vectors.append(vector)
        return vectors

    monkeypatch.setattr(retrieval, "embed", bag_of_words)
    router = RetrievalRouter(index, use_vectors=True)
    first = router.ask("how is a discount percent taken off an amount")
    assert first.route == "hybrid" and first.hits
    router.ask("what formats a price for the web")
    assert len([n for n in calls if n > 1]) == 1  # chunk vectors computed once, reused
    index.update_file("shop/extra.py", "def discount_note():\n    return 'percent off'\n")
    router.ask("which note mentions a percent off")
    assert len([n for n in calls if n > 1]) == 2
