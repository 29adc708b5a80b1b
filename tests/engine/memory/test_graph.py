"""Repo graph and repo map: known answers on the fixture repository, PageRank against networkx."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from networkx.algorithms.link_analysis.pagerank_alg import _pagerank_python

from delegation_machine.engine.memory.graph import RepoGraph, python_module_name
from delegation_machine.engine.memory.repomap import build_repo_map, pagerank
from delegation_machine.engine.memory.symbols import SymbolIndex


@pytest.fixture
def graph(repo: Path) -> RepoGraph:
    index = SymbolIndex(repo)
    index.build()
    return RepoGraph(index)


def test_which_files_depend_on_a_file(graph: RepoGraph) -> None:
    assert graph.dependents("shop/pricing.py") == [
        "shop/__init__.py",
        "shop/cart.py",
        "shop/report.py",
    ]
    assert graph.dependencies("shop/report.py") == ["shop/cart.py", "shop/pricing.py"]
    assert graph.dependents("web/util.js") == ["web/app.ts"]
    assert graph.transitive_dependents("shop/cart.py") == ["shop/report.py"]


def test_who_calls_a_function(graph: RepoGraph) -> None:
    calls = [(c.path, c.caller, c.occurrence.span.start.line) for c in graph.callers("total_price")]
    assert calls == [
        ("shop/cart.py", "Cart.checkout", 21),
        ("shop/cart.py", "Cart.checkout", 21),
        ("shop/report.py", "yearly_total", 14),
    ]
    # The alias `tp` and the qualified `shop.pricing.total_price` both resolve to the one def.
    assert {c.occurrence.name for c in graph.callers("total_price")} == {"tp", "total_price"}
    assert [(c.path, c.caller) for c in graph.callers("_round_cents")] == [
        ("shop/pricing.py", "total_price"),
        ("shop/pricing.py", "Discount.apply"),
    ]
    assert [c.callee.node for c in graph.callers("apply")] == ["shop/pricing.py::Discount.apply"]
    assert [c.path for c in graph.callers("formatPrice")] == ["web/app.ts"]
    assert [c.caller for c in graph.callers("Describe")] == ["main"]


def test_graph_edges_link_callers_to_definitions(graph: RepoGraph) -> None:
    g = graph.graph
    assert g.has_edge("shop/cart.py::Cart.checkout", "shop/pricing.py::total_price")
    assert g["shop/cart.py::Cart.checkout"]["shop/pricing.py::total_price"]["kind"] == "calls"
    assert g.has_edge("shop/pricing.py", "shop/pricing.py::Discount")


def test_module_names() -> None:
    assert python_module_name("pkg/mod.py") == "pkg.mod"
    assert python_module_name("pkg/__init__.py") == "pkg"
    assert python_module_name("web/app.ts") is None


def test_pagerank_matches_networkx_reference() -> None:
    g = nx.gnp_random_graph(40, 0.08, seed=7, directed=True)
    for u, v in g.edges:
        g[u][v]["weight"] = 1 + (u * v) % 4
    personal = {0: 1.0, 5: 3.0}
    ours = pagerank(g, personalization=personal)
    reference = _pagerank_python(g, personalization=personal, tol=1e-12, max_iter=500)
    assert max(abs(ours[n] - reference[n]) for n in g) < 1e-8
    plain = pagerank(g)
    assert max(abs(plain[n] - _pagerank_python(g, tol=1e-12)[n]) for n in g) < 1e-8


def test_repo_map_ranks_used_definitions_and_fits_the_budget(graph: RepoGraph) -> None:
    full = build_repo_map(graph, token_budget=10_000)
    assert full.files[0] == "shop/pricing.py"
    assert "│def total_price(items: list[float], tax: float = TAX_RATE) -> float:" in full.text
    small = build_repo_map(graph, token_budget=40)
    assert small.tokens <= 40 and small.definitions
    assert len(small.definitions) < len(full.definitions)
    ranks = [d.score for d in full.definitions]
    assert ranks == sorted(ranks, reverse=True)


def test_focus_files_personalise_the_map(graph: RepoGraph) -> None:
    focused = build_repo_map(graph, focus=["web/app.ts"], token_budget=40)
    assert focused.files[0] in ("web/app.ts", "web/util.js")
    assert "formatPrice" in focused.text
    assert focused.file_ranks["web/util.js"] > build_repo_map(graph).file_ranks["web/util.js"]


def test_graph_follows_index_updates(graph: RepoGraph) -> None:
    index = graph.index
    index.update_file(
        "shop/extra.py",
        "from shop.pricing import total_price\n\n\ndef grand():\n    return total_price([])\n",
    )
    assert ("shop/extra.py", "grand") in {(c.path, c.caller) for c in graph.callers("total_price")}
    assert "shop/extra.py" in graph.dependents("shop/pricing.py")
    index.remove_file("shop/extra.py")
    assert "shop/extra.py" not in graph.dependents("shop/pricing.py")


def test_star_imports_and_reexports_are_followed(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "impl").mkdir(parents=True)
    (package / "__init__.py").write_text("from .api import *\nfrom .impl import Engine\n")
    (package / "api.py").write_text("def request(url):\n    return url\n")
    (package / "impl" / "__init__.py").write_text("from .engine import Engine\n")
    (package / "impl" / "engine.py").write_text("class Engine:\n    pass\n")
    (tmp_path / "app.py").write_text("from pkg import Engine, request\n\nrequest('x')\nEngine()\n")
    index = SymbolIndex(tmp_path)
    index.build()
    graph = RepoGraph(index)
    # `from .api import *` is an import of pkg/api.py.
    assert "pkg/api.py" in graph.dependencies("pkg/__init__.py")
    # `Engine` is re-exported twice; `request` through the star import: both reach their home.
    assert [(u.path, u.callee.path) for u in graph.callers("Engine")] == [
        ("app.py", "pkg/impl/engine.py")
    ]
    assert [(u.path, u.callee.path) for u in graph.callers("request")] == [("app.py", "pkg/api.py")]
    assert "app.py" in graph.dependents("pkg/impl/engine.py")
