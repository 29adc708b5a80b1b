"""The context funnel: rank one file's statements against a goal hint and fill a token budget.

Owns goal-hint pruning. The file is cut into statement-level chunks (a statement with no block
inside, a small compound statement, or the header rows of a larger one); chunks that share a
row are one chunk. Each chunk is scored against the hint: BM25 over the words of its
identifiers, comments and strings, plus its enclosing definition's BM25 score (so a function's
statements rise together), plus MiniLM similarity when a scorer is given. A chunk inside a
definition the hint names, or using a name the hint names, outranks every other chunk. Chunks
are kept best first, each with the headers of its enclosing scopes, while they fit the token
budget; keeping a chunk lifts the chunks it has call edges to. Omitted rows become one marker
line per run. Invariants: a kept chunk is never cut; the output never exceeds the budget
(unless the budget is smaller than one marker line); every row is kept or counted by a marker.
"""

from __future__ import annotations

import bisect
import heapq
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import msgspec
import tree_sitter as ts

from delegation_machine.engine.inference.tokens import ApproxTokenizer
from delegation_machine.engine.memory.lexical import (
    BM25,
    STOPWORDS,
    identifier_parts,
    stem,
    terms,
)
from delegation_machine.engine.memory.occurrence import SymbolOccurrence
from delegation_machine.engine.memory.parsing import Parsers, language_for_path
from delegation_machine.engine.memory.symbols import extractor_for_language

TokenCounter = Callable[[str], int]
_DEFAULT_COUNTER = ApproxTokenizer().count
DEFAULT_TOKEN_BUDGET = 800

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

_NAMED_KINDS = frozenset(
    {"function", "method", "class", "struct", "interface", "enum", "trait", "type", "variable"}
)
_NAMED_USES = frozenset({"call", "decorator", "attribute", "load"})
_COMMENT = {"python": "#"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SMALL_STATEMENT_LINES = 12
CHUNK_WEIGHT = 0.5  # a chunk's own BM25 (normalised) next to its definition's (normalised)
NAME_REPEAT = 3  # a definition's name counts this many times in its BM25 document
VECTOR_WEIGHT = 1.0  # MiniLM similarity (normalised), definitions and chunks, when scored
NAME_WEIGHT = 1.0  # a definition whose name the hint spells out (share of its name's parts)
CALL_BONUS = 0.3  # share of a kept chunk's score given to the chunks it has call edges to
EXACT_DEFINITION, EXACT_USE, RANKED, SIGNATURE = 3, 2, 1, 0  # tiers, best first
_VECTOR_CHARS = 1000

Level = Literal["whole", "exact", "ranked"]


class ChunkScorer(Protocol):
    """Scores text chunks against a query (MiniLM when the extra is installed)."""

    name: str

    def score(self, query: str, chunks: Sequence[str]) -> list[float]: ...


class FunnelResult(msgspec.Struct, frozen=True):
    """A pruned file: its text, the original rows shown verbatim, and the sizes before and after.

    Every original row is either in `kept_rows` or stood for by a marker line:
    len(kept_rows) + omitted_lines == total_lines. `token_budget` is the budget it was cut to.
    """

    text: str
    kept_rows: tuple[int, ...]
    total_lines: int
    omitted_lines: int
    input_tokens: int
    output_tokens: int
    token_budget: int
    level: Level  # "whole": the file fitted; "exact": the hint names code here; else "ranked"
    scoring: str = "bm25"  # "bm25" or "bm25+<scorer name>"

    @property
    def compression(self) -> float:
        return self.input_tokens / max(self.output_tokens, 1)


def named_in_hint(hint: str, defined: set[str]) -> frozenset[str]:
    """The code names a hint names: snake_case and camelCase words, and words the file defines
    that the hint marks as code (in backticks, called `f(`, `name:` first, the whole hint, or a
    capitalised class name inside a sentence). "neighbors" in plain prose is a word, not a name.
    """
    words = _WORD.findall(hint)
    found = {w for w in words if len(w) >= 3 and _looks_like_code(w)}
    marked = set(re.findall(r"`([A-Za-z_][\w.]*)`", hint))
    marked |= set(re.findall(r"([A-Za-z_]\w*)\(", hint))
    lead = re.match(r"\s*([A-Za-z_]\w*)\s*:", hint)
    if lead:
        marked.add(lead.group(1))
    if len(words) == 1:
        marked.add(words[0])
    marked |= {w for w in words[1:] if w[:1].isupper() and w[1:].islower()}
    marked = {part for name in marked for part in name.split(".")}
    found |= {w for w in marked if w in defined}
    return frozenset(found)


def _looks_like_code(word: str) -> bool:
    """snake_case or camelCase: not a plain English word (nor an acronym such as DAG)."""
    return "_" in word.strip("_") or bool(re.search(r"[a-z][A-Z]", word))


@dataclass
class _Definition:
    name: str | None
    rows: range
    header: int = -1  # the chunk holding its header rows


@dataclass
class _Unit:
    """A statement-level piece before merging: a leaf statement or a scope's header rows."""

    rows: set[int]
    definition: int  # innermost enclosing definition (a header: the one it opens), -1 if none
    ancestors: tuple[int, ...]  # units holding the headers of its enclosing scopes
    heads: int = -1  # the definition whose header this is


@dataclass
class _Chunk:
    rows: list[int]
    definitions: set[int]
    heads: set[int]
    ancestors: set[int] = field(default_factory=set)
    tokens: int = 0
    text: str = ""


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


class _Splitter:
    """Cuts a syntax tree into units: leaves, small compound statements, scope headers."""

    def __init__(self, language: str, blank_rows: frozenset[int]) -> None:
        self.containers = CONTAINERS[language]
        self.definition_types = DEFINITIONS[language]
        self.blank_rows = blank_rows
        self.units: list[_Unit] = []
        self.definitions: list[_Definition] = []

    def split(self, container: ts.Node, ancestors: tuple[int, ...], definition: int) -> None:
        for child in container.named_children:
            rows = _rows(child)
            is_definition = child.type in self.definition_types
            inner = _containers_below(child, self.containers)
            if not is_definition and (not inner or len(rows) <= SMALL_STATEMENT_LINES):
                self.units.append(_Unit(set(rows), definition, ancestors))
                continue
            opened = definition
            if is_definition:
                opened = len(self.definitions)
                self.definitions.append(_Definition(_definition_name(child), rows))
            header = (_owned_rows(child, inner) - self.blank_rows) | {rows.start}
            self.units.append(_Unit(header, opened, ancestors, opened if is_definition else -1))
            below = (*ancestors, len(self.units) - 1)
            for block in inner:
                self.split(block, below, opened)


def _merge(units: list[_Unit]) -> tuple[list[_Chunk], list[int]]:
    """Units that share a row become one chunk; returns the chunks and each unit's chunk."""
    parent = list(range(len(units)))

    def find(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    owner: dict[int, int] = {}
    for number, unit in enumerate(units):
        for row in unit.rows:
            if row in owner:
                parent[find(number)] = find(owner[row])
            else:
                owner[row] = number
    roots: dict[int, int] = {}
    chunks: list[_Chunk] = []
    chunk_of: list[int] = []
    for number, unit in enumerate(units):
        root = find(number)
        if root not in roots:
            roots[root] = len(chunks)
            chunks.append(_Chunk([], set(), set()))
        chunk = chunks[roots[root]]
        chunk.rows.extend(unit.rows)
        chunk.definitions.add(unit.definition)
        if unit.heads >= 0:
            chunk.heads.add(unit.heads)
        chunk_of.append(roots[root])
    for number, unit in enumerate(units):
        chunk = chunks[chunk_of[number]]
        chunk.ancestors.update(chunk_of[a] for a in unit.ancestors)
    for number, chunk in enumerate(chunks):
        chunk.rows = sorted(set(chunk.rows))
        chunk.definitions.discard(-1)
        chunk.ancestors.discard(number)
    # An ancestor's ancestors are ancestors too (merging can join scopes).
    for chunk in chunks:
        pending = list(chunk.ancestors)
        while pending:
            above = chunks[pending.pop()]
            for grand in above.ancestors:
                if grand not in chunk.ancestors and chunks[grand] is not chunk:
                    chunk.ancestors.add(grand)
                    pending.append(grand)
    return chunks, chunk_of


def _normalised(values: Sequence[float]) -> list[float]:
    top = max(values, default=0.0)
    return [max(value, 0.0) / top for value in values] if top > 0 else [0.0 for _ in values]


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


class _Ranking(msgspec.Struct):
    tiers: list[int]
    scores: list[float]
    owner: list[int]  # innermost definition per chunk, -1 outside every definition
    exact: bool


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
    """Keep the chunks of `text` (the file at `path`) that best serve `hint`, within the budget.

    `token_budget` defaults to DEFAULT_TOKEN_BUDGET. A file that fits is returned whole. With
    `keep_signatures`, the headers of definitions nothing else kept fill what budget is left.
    """
    language = language_for_path(path)
    if language is None:
        raise ValueError(f"{path}: no grammar for this file type, cannot funnel it")
    budget = DEFAULT_TOKEN_BUDGET if token_budget is None else token_budget
    if budget < 1:
        raise ValueError(f"token budget must be positive, got {budget}")
    scoring = "bm25" if scorer is None else f"bm25+{scorer.name}"
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    input_tokens = count_tokens(text)
    if input_tokens <= budget:
        return FunnelResult(
            text, tuple(range(len(lines))), len(lines), 0, input_tokens, input_tokens, budget,
            "whole", scoring,
        )  # fmt: skip
    parsed = (parsers or Parsers()).parse(path, language, text)
    blank_rows = frozenset(row for row, line in enumerate(lines) if not line.strip())
    splitter = _Splitter(language, blank_rows)
    splitter.split(parsed.tree.root_node, (), -1)
    chunks, chunk_of = _merge(splitter.units)
    definitions = splitter.definitions
    for number, unit in enumerate(splitter.units):
        if unit.heads >= 0:
            definitions[unit.heads].header = chunk_of[number]
    row_tokens = [count_tokens(line) + 1 for line in lines]
    for chunk in chunks:
        chunk.rows = [row for row in chunk.rows if row < len(lines)]
        chunk.text = "\n".join(lines[row] for row in chunk.rows)
        chunk.tokens = sum(row_tokens[row] for row in chunk.rows)
    occurrences, _ = extractor_for_language(language)(parsed)
    ranking = _rank(hint, lines, chunks, definitions, occurrences, scorer, keep_signatures)
    uses = [set(_WORD.findall(chunk.text)) for chunk in chunks]
    kept = _fill(chunks, definitions, ranking, uses, lines, row_tokens, budget, count_tokens)
    comment = _COMMENT.get(language, "//")
    while True:
        rendered, shown, omitted = _render(lines, kept.rows(), comment)
        output_tokens = count_tokens(rendered)
        if output_tokens <= budget or not kept.drop_last():
            break
    return FunnelResult(
        rendered, tuple(sorted(shown)), len(lines), omitted, input_tokens, output_tokens, budget,
        "exact" if ranking.exact else "ranked", scoring,
    )  # fmt: skip


def _rank(
    hint: str,
    lines: list[str],
    chunks: list[_Chunk],
    definitions: list[_Definition],
    occurrences: Sequence[SymbolOccurrence],
    scorer: ChunkScorer | None,
    keep_signatures: bool,
) -> _Ranking:
    """Tier and score per chunk: exact name hits first, then BM25 (+ vectors) by definition.

    A definition's document is its own rows (not its nested definitions') with its name
    repeated; a statement outside every definition is a document of its own on that scale.
    A chunk scores its document's normalised score plus CHUNK_WEIGHT times its own.
    """
    query = frozenset(terms(hint))
    defined = {
        o.name for o in occurrences if o.kind == "definition" and o.symbol_kind in _NAMED_KINDS
    }
    # Its uses count when they bind, call, import or decorate it.
    named = named_in_hint(hint, defined)
    strong_rows = {
        o.span.start.line
        for o in occurrences
        if o.name in named
        and (
            (o.kind == "definition" and o.symbol_kind in _NAMED_KINDS)
            or o.kind == "import"
            or (o.kind == "reference" and o.usage in _NAMED_USES)
        )
    }
    owner = _innermost_definitions(chunks, definitions)
    own_rows: list[list[int]] = [[] for _ in definitions]
    for number, chunk in enumerate(chunks):
        if owner[number] >= 0:
            own_rows[owner[number]].extend(chunk.rows)
    documents: list[list[str]] = []
    texts: list[str] = []
    for number, definition in enumerate(definitions):
        text = "\n".join(lines[row] for row in sorted(own_rows[number]))
        name_terms = [stem(p) for p in identifier_parts(definition.name or "")]
        documents.append(terms(text) + name_terms * NAME_REPEAT)
        texts.append("\n".join(lines[definition.rows.start : definition.rows.stop]))
    loose = [n for n in range(len(chunks)) if owner[n] < 0]
    document_of = list(owner)
    for number in loose:
        document_of[number] = len(documents)
        documents.append(terms(chunks[number].text))
        texts.append(chunks[number].text)
    chunk_documents = []
    for chunk in chunks:
        enclosing = [
            stem(part)
            for number in chunk.definitions
            for part in identifier_parts(definitions[number].name or "")
        ]
        chunk_documents.append(terms(chunk.text) + enclosing)
    document_scores = [0.0] * len(documents)
    chunk_scores = [0.0] * len(chunks)
    if query:
        document_scores = _normalised(BM25(documents).scores(query))
        chunk_scores = _normalised(BM25(chunk_documents).scores(query))
    if scorer is not None and hint.strip():
        document_vectors = _normalised(scorer.score(hint, [t[:_VECTOR_CHARS] for t in texts]))
        chunk_vectors = _normalised(scorer.score(hint, [c.text[:_VECTOR_CHARS] for c in chunks]))
        document_scores = [
            lexical + VECTOR_WEIGHT * vector
            for lexical, vector in zip(document_scores, document_vectors, strict=True)
        ]
        chunk_scores = [
            lexical + VECTOR_WEIGHT * vector
            for lexical, vector in zip(chunk_scores, chunk_vectors, strict=True)
        ]
    hint_words = {stem(part) for word in _WORD.findall(hint) for part in identifier_parts(word)}
    for number, definition in enumerate(definitions):
        document_scores[number] += NAME_WEIGHT * _name_coverage(definition.name, hint_words)
    named_definitions = [d for d in definitions if d.name in named]
    tiers: list[int] = []
    scores: list[float] = []
    for number, chunk in enumerate(chunks):
        score = document_scores[document_of[number]] + CHUNK_WEIGHT * chunk_scores[number]
        if any(chunk.rows[0] in d.rows for d in named_definitions):
            tier = EXACT_DEFINITION
        elif any(row in strong_rows for row in chunk.rows):
            tier = EXACT_USE
        elif score > 0:
            tier = RANKED
        elif keep_signatures and chunk.heads:
            tier = SIGNATURE
        else:
            tier = -1
        tiers.append(tier)
        scores.append(score)
    return _Ranking(tiers, scores, owner, bool(named_definitions or strong_rows))


def _name_coverage(name: str | None, hint_words: set[str]) -> float:
    """Share of a definition name's parts that the hint says (`move_one_node`: "move one node")."""
    parts = [stem(part) for part in identifier_parts(name or "")]
    if not parts or not any(p in hint_words and p not in STOPWORDS for p in parts):
        return 0.0
    return sum(p in hint_words for p in parts) / len(parts)


def _innermost_definitions(chunks: list[_Chunk], definitions: list[_Definition]) -> list[int]:
    """Per chunk, the innermost definition it lies in (a header: the one it opens), or -1."""
    owner = []
    for chunk in chunks:
        inside = [d for d in chunk.definitions | chunk.heads if definitions[d].rows]
        owner.append(max(inside, key=lambda d: definitions[d].rows.start, default=-1))
    return owner


class _Kept:
    """Rows kept so far, in the order they were added, with a running token estimate."""

    def __init__(self, total_rows: int, marker_tokens: int) -> None:
        self.total_rows = total_rows
        self.marker_tokens = marker_tokens
        self.kept_rows: set[int] = set()
        self.chunks: set[int] = set()
        self.steps: list[tuple[list[int], list[int]]] = []  # (chunks, rows) per addition
        self.estimate = marker_tokens  # the whole file omitted is one marker

    def rows(self) -> set[int]:
        return set(self.kept_rows)

    def cost(self, rows: list[int], row_tokens: list[int]) -> int:
        """Tokens the rows add, markers included (a split run adds one, a closed run frees one)."""
        new = sorted(set(rows) - self.kept_rows)
        tokens = sum(row_tokens[row] for row in new)
        markers = 0
        adding = set(new)
        for start, end in _runs(new):
            before = start > 0 and (start - 1) not in self.kept_rows and (start - 1) not in adding
            after = end + 1 < self.total_rows and (end + 1) not in self.kept_rows
            after = after and (end + 1) not in adding
            markers += (1 if before and after else 0) - (0 if before or after else 1)
        return tokens + markers * self.marker_tokens

    def add(self, chunks: list[int], rows: list[int], cost: int) -> None:
        new = [row for row in rows if row not in self.kept_rows]
        self.kept_rows.update(new)
        self.chunks.update(chunks)
        self.steps.append((chunks, new))
        self.estimate += cost

    def drop_last(self) -> bool:
        if not self.steps:
            return False
        chunks, rows = self.steps.pop()
        self.kept_rows.difference_update(rows)
        self.chunks.difference_update(chunks)
        return True


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for row in rows:
        if runs and runs[-1][1] == row - 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs


def _fill(
    chunks: list[_Chunk],
    definitions: list[_Definition],
    ranking: _Ranking,
    uses: list[set[str]],
    lines: list[str],
    row_tokens: list[int],
    budget: int,
    count_tokens: TokenCounter,
) -> _Kept:
    """Keep chunks best first, with their scopes' headers, while the estimate fits the budget.

    The first time a chunk of a definition comes up, the whole definition is kept if it fits;
    if it could fit an empty budget but not what is left, its chunks wait until every chunk of
    their tier was tried, then go one by one; a signature is only its header;
    a definition larger than the budget is kept chunk by chunk.
    """
    marker_tokens = count_tokens("        # ... 1000 lines omitted") + 1
    kept = _Kept(len(lines), marker_tokens)
    scores = list(ranking.scores)
    heap = [
        (-ranking.tiers[n], -scores[n], chunk.rows[0], n)
        for n, chunk in enumerate(chunks)
        if ranking.tiers[n] >= 0 and chunk.rows
    ]
    heapq.heapify(heap)
    firsts = sorted((chunk.rows[0], n) for n, chunk in enumerate(chunks) if chunk.rows)
    first_rows = [row for row, _ in firsts]
    by_name: dict[str, list[int]] = {}
    for number, definition in enumerate(definitions):
        if definition.name:
            by_name.setdefault(definition.name, []).append(number)
    users: dict[str, list[int]] = {}
    for number, names in enumerate(uses):
        for name in names & by_name.keys():
            users.setdefault(name, []).append(number)
    tried: set[int] = set()  # definitions whose whole was tried
    deferred: set[int] = set()  # ... and did not fit what was left: their chunks wait
    waiting: list[tuple[int, float, int, int]] = []

    def keep(number: int, wanted: list[int]) -> bool:
        wanted = [*wanted, *(a for a in chunks[number].ancestors if a not in kept.chunks)]
        wanted = sorted(set(wanted) - kept.chunks)
        rows = [row for n in wanted for row in chunks[n].rows]
        cost = kept.cost(rows, row_tokens)
        if kept.estimate + cost > budget:
            return False
        kept.add(wanted, rows, cost)
        for member in wanted:
            lift(member)
        return True

    def lift(number: int) -> None:
        share = CALL_BONUS * scores[number]
        related: list[int] = []
        for name in uses[number] & by_name.keys():  # what this chunk calls: their headers
            related.extend(definitions[d].header for d in by_name[name])
        for heads in chunks[number].heads:  # what calls the definition this chunk opens
            related.extend(users.get(definitions[heads].name or "", []))
        for other in related:
            if other >= 0 and other not in kept.chunks and ranking.tiers[other] >= 0:
                scores[other] += share
                first = chunks[other].rows[0]
                heapq.heappush(heap, (-ranking.tiers[other], -scores[other], first, other))

    while heap or waiting:
        if waiting and (not heap or waiting[0][0] < heap[0][0]):
            # Every whole definition of this tier was tried: the waiting chunks go one by one.
            number = heapq.heappop(waiting)[3]
            if number not in kept.chunks:
                keep(number, [number])
            continue
        entry = heapq.heappop(heap)
        number = entry[3]
        if number in kept.chunks or -entry[1] < scores[number]:
            continue  # kept already, or a stale entry from before a call-edge lift
        owner = ranking.owner[number]
        if owner in deferred:
            heapq.heappush(waiting, entry)
            continue
        if ranking.tiers[number] > SIGNATURE and owner >= 0 and owner not in tried:
            tried.add(owner)
            rows = definitions[owner].rows
            low = bisect.bisect_left(first_rows, rows.start)
            high = bisect.bisect_left(first_rows, rows.stop)
            members = [n for _, n in firsts[low:high]]
            if keep(number, members):
                continue
            if sum(chunks[n].tokens for n in members) <= budget:
                deferred.add(owner)
                heapq.heappush(waiting, entry)
                continue
        keep(number, [number])
    return kept
