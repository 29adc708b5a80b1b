"""The repo map: the workspace's most important definitions, fitted to a token budget.

Files are ranked by PageRank over the file dependency graph, personalised to the task's focus
files (the Aider repo-map idea); a definition scores its file's rank times how much the rest of
the workspace uses it. The map lists each chosen definition's signature under its file, in
source order, and is the longest such listing whose token count fits the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec
import networkx as nx

from delegation_machine.engine.inference.tokens import ApproxTokenizer
from delegation_machine.engine.memory.graph import RepoGraph, SymbolRef

TokenCounter = Callable[[str], int]
_DEFAULT_COUNTER = ApproxTokenizer().count
_MAP_KINDS = frozenset(
    {"function", "method", "class", "struct", "interface", "enum", "trait", "type"}
)


class RankedDefinition(msgspec.Struct, frozen=True):
    symbol: SymbolRef
    score: float
    signature: str


class RepoMap(msgspec.Struct, frozen=True):
    """A rendered map and what went into it."""

    text: str
    tokens: int
    budget: int
    files: tuple[str, ...]
    definitions: tuple[RankedDefinition, ...]
    file_ranks: dict[str, float]


def rank_files(graph: RepoGraph, focus: Iterable[str] = ()) -> dict[str, float]:
    """PageRank of every file; with focus files, personalised to them (restart there)."""
    files = graph.file_graph()
    if files.number_of_nodes() == 0:
        return {}
    focus_set = [path for path in focus if files.has_node(path)]
    # Rank flows from a user to what it uses, so important definitions collect rank.
    personalization = {path: 1.0 for path in focus_set} if focus_set else None
    return pagerank(files, alpha=0.85, personalization=personalization)


def pagerank(
    graph: nx.DiGraph,
    *,
    alpha: float = 0.85,
    personalization: dict[str, float] | None = None,
    tolerance: float = 1.0e-10,
    max_iterations: int = 200,
) -> dict[str, float]:
    """Weighted PageRank by power iteration (networkx's definition, without scipy).

    Dangling nodes (no out-edges) give their rank back through the personalisation vector,
    as networkx does by default.
    """
    nodes = list(graph.nodes)
    if not nodes:
        return {}
    restart_total = sum(personalization.values()) if personalization else 0.0
    restart = (
        {node: personalization.get(node, 0.0) / restart_total for node in nodes}
        if personalization and restart_total > 0
        else {node: 1.0 / len(nodes) for node in nodes}
    )
    out_weight = {
        node: sum(data.get("weight", 1.0) for _, _, data in graph.out_edges(node, data=True))
        for node in nodes
    }
    rank = dict.fromkeys(nodes, 1.0 / len(nodes))
    for _ in range(max_iterations):
        dangling = alpha * sum(rank[node] for node in nodes if out_weight[node] == 0)
        updated = {node: (1.0 - alpha) * restart[node] + dangling * restart[node] for node in nodes}
        for source, target, data in graph.edges(data=True):
            updated[target] += alpha * rank[source] * data.get("weight", 1.0) / out_weight[source]
        error = sum(abs(updated[node] - rank[node]) for node in nodes)
        rank = updated
        if error < len(nodes) * tolerance:
            break
    return rank


def rank_definitions(graph: RepoGraph, focus: Iterable[str] = ()) -> list[RankedDefinition]:
    """Every mappable definition, best first."""
    focus_list = list(focus)
    ranks = rank_files(graph, focus_list)
    uses = graph.use_counts()
    focus_uses: dict[str, int] = {}
    for use in graph.uses():
        if use.path in focus_list:
            focus_uses[use.callee.node] = focus_uses.get(use.callee.node, 0) + 1
    ranked: list[RankedDefinition] = []
    for path in graph.index.files():
        file_rank = ranks.get(path, 0.0)
        in_focus = path in focus_list
        for symbol in _file_definitions(graph, path):
            score = file_rank * (1.0 + uses.get(symbol.node, 0))
            score *= 1.0 + 4.0 * focus_uses.get(symbol.node, 0) + (2.0 if in_focus else 0.0)
            if symbol.name.startswith("_"):
                score *= 0.5  # private helpers matter less to a reader of the map
            ranked.append(RankedDefinition(symbol, score, signature_of(graph, symbol)))
    ranked.sort(key=lambda item: (-item.score, item.symbol.path, item.symbol.line))
    return ranked


def _file_definitions(graph: RepoGraph, path: str) -> list[SymbolRef]:
    """Top-level and class-member definitions (functions nested in functions are private)."""
    function_scopes = {s.qualname for s in graph.index.scopes(path) if s.kind == "function"}
    found: list[SymbolRef] = []
    for occurrence in graph.index.file_occurrences(path):
        if occurrence.kind != "definition" or occurrence.symbol_kind not in _MAP_KINDS:
            continue
        if occurrence.container in function_scopes:
            continue
        qualname = (
            f"{occurrence.container}.{occurrence.name}" if occurrence.container else occurrence.name
        )
        symbol = graph.symbol(path, qualname)
        if symbol is not None and symbol.line == occurrence.span.start.line:
            found.append(symbol)
    return found


def signature_of(graph: RepoGraph, symbol: SymbolRef) -> str:
    """The definition's header: from its line to the end of its signature, at most 4 lines."""
    parsed = graph.index.parsed(symbol.path)
    if parsed is None:
        return symbol.qualname
    lines = parsed.text.splitlines()
    if symbol.line >= len(lines):
        return symbol.qualname
    header = [lines[symbol.line].rstrip()]
    closers = (":", "{", ";", "=>")
    line_number = symbol.line
    while not header[-1].endswith(closers) and len(header) < 4 and line_number + 1 < len(lines):
        line_number += 1
        header.append(lines[line_number].rstrip())
    return "\n".join(header)


def render(definitions: list[RankedDefinition]) -> str:
    """Group definitions by file (files in best-first order), signatures in source order."""
    order: list[str] = []
    by_file: dict[str, list[RankedDefinition]] = {}
    for item in definitions:
        if item.symbol.path not in by_file:
            order.append(item.symbol.path)
            by_file[item.symbol.path] = []
        by_file[item.symbol.path].append(item)
    blocks: list[str] = []
    for path in order:
        lines = [f"{path}:"]
        for item in sorted(by_file[path], key=lambda d: d.symbol.line):
            lines.extend(f"│{line}" for line in item.signature.splitlines())
        blocks.append("\n".join(lines))
    return "\n".join(blocks) + ("\n" if blocks else "")


def build_repo_map(
    graph: RepoGraph,
    *,
    focus: Iterable[str] = (),
    token_budget: int = 1024,
    count_tokens: TokenCounter = _DEFAULT_COUNTER,
) -> RepoMap:
    """The longest best-first prefix of ranked definitions whose rendering fits the budget."""
    focus_list = list(focus)
    ranked = rank_definitions(graph, focus_list)
    low, high = 0, len(ranked)
    # Token count grows with the number of definitions: binary search the largest that fits.
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(render(ranked[:middle])) <= token_budget:
            low = middle
        else:
            high = middle - 1
    chosen = ranked[:low]
    text = render(chosen)
    files = tuple(dict.fromkeys(item.symbol.path for item in chosen))
    return RepoMap(
        text=text,
        tokens=count_tokens(text),
        budget=token_budget,
        files=files,
        definitions=tuple(chosen),
        file_ranks=rank_files(graph, focus_list),
    )
