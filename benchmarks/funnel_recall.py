"""Context funnel recall and compression on hints written by other people, and on the old cases.

Docstring cases (the main figure): from the modules of third-party packages installed in .venv
(networkx, httpx, pygls, hypothesis), every function or method with a docstring and a body of
at least three statements besides it. Hint = the first sentence of its docstring, as its
authors wrote it; file = its module with every docstring removed (so the hint's words are not
in the file), modules over `--min-tokens` tokens only (a file that fits the budget is shown
whole, which says nothing about ranking). A hit keeps the `def` line and at least 80% of the
body's non-blank lines. Recall (share of hits) and compression (tokens in / tokens out, over
all cases) at budgets of 400, 800 and 1,600 tokens, same run, for:
- the funnel with BM25 and structure only,
- the funnel with MiniLM vectors too (when the `embeddings` extra is installed),
- the baseline: BM25 over whole functions (each function's text one document, the same word
  splitting), keeping the best-ranked functions whole while they fit the budget.

Identifier cases (the figure published before, kept so nothing regresses): Django 5.2.19
(fetched on first use by benchmarks/index_speed.py), 200 documented functions that are called
somewhere; hint = "name: first docstring line"; relevant = the definition's lines and the call
sites in its file and up to two other files; recall of relevant lines at 800 and 1,600 tokens.

    .venv/bin/python benchmarks/funnel_recall.py [--cases 240] [--no-vectors]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_speed import CORPUS_PACKAGE, CORPUS_VERSION, obtain_corpus

from delegation_machine.engine.inference.tokens import ApproxTokenizer
from delegation_machine.engine.memory.embeddings import MiniLMScorer, embeddings_available
from delegation_machine.engine.memory.funnel import ChunkScorer, funnel
from delegation_machine.engine.memory.lexical import BM25, terms
from delegation_machine.engine.memory.symbols import SymbolIndex

COUNT = ApproxTokenizer().count
BUDGETS = (400, 800, 1600)
PACKAGES = ("networkx", "httpx", "pygls", "hypothesis")
BODY_SHARE = 0.8


# --- docstring cases --------------------------------------------------------------------------


def strip_docstrings(source: str) -> str | None:
    """The module without its docstrings (a body left empty gets `pass`); None if it can't."""
    tree = ast.parse(source)
    lines = source.split("\n")
    removals: list[tuple[int, int, str | None]] = []  # (first row, last row, replacement)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if not node.body:
            continue
        first = node.body[0]
        if not (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            continue
        start, end = first.lineno - 1, (first.end_lineno or first.lineno) - 1
        before = lines[start][: first.col_offset]
        after = lines[end][first.end_col_offset or 0 :]
        if before.strip() or after.strip().lstrip(";").strip():
            return None  # the docstring shares a line with code
        replacement = f"{before}pass" if len(node.body) == 1 else None
        removals.append((start, end, replacement))
    for start, end, replacement in sorted(removals, reverse=True):
        lines[start : end + 1] = [replacement] if replacement is not None else []
    stripped = "\n".join(lines)
    ast.parse(stripped)
    return stripped


def first_sentence(doc: str) -> str:
    paragraph = inspect.cleandoc(doc).split("\n\n")[0]
    text = " ".join(paragraph.split())
    match = re.search(r"(?<=[.!?])\s", text)
    return text[: match.start()] if match else text


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function and method, in source order."""
    found = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


@dataclass
class DocCase:
    package: str
    module: str
    name: str
    hint: str
    def_row: int  # 0-based, in the stripped text
    body_rows: frozenset[int]  # non-blank rows of the body, in the stripped text


@dataclass
class Module:
    package: str
    module: str
    text: str
    tokens: int
    functions: list[tuple[str, int, int]]  # (name, first row, last row) in the stripped text


def package_modules(package: str, min_tokens: int) -> list[Module]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed in this environment")
    root = Path(next(iter(spec.submodule_search_locations)))
    modules = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if "/tests/" in rel or "/test_" in rel:
            continue
        source = path.read_text(encoding="utf-8")
        try:
            stripped = strip_docstrings(source)
        except SyntaxError:
            continue
        if stripped is None or COUNT(stripped) <= min_tokens:
            continue
        tree = ast.parse(stripped)
        functions = [
            (f.name, f.lineno - 1, (f.end_lineno or f.lineno) - 1) for f in _functions(tree)
        ]
        modules.append(Module(package, rel, stripped, COUNT(stripped), functions))
    return modules


def docstring_cases(module: Module, source: str) -> list[DocCase]:
    original = _functions(ast.parse(source))
    stripped = _functions(ast.parse(module.text))
    if [f.name for f in original] != [f.name for f in stripped]:
        return []
    lines = module.text.split("\n")
    cases = []
    for before, after in zip(original, stripped, strict=True):
        doc = ast.get_docstring(before, clean=False)
        if doc is None or len(before.body) - 1 < 3:
            continue
        hint = first_sentence(doc)
        if len(hint.split()) < 3:
            continue
        first_body = after.body[0].lineno - 1
        body = frozenset(
            row for row in range(first_body, after.end_lineno or after.lineno) if lines[row].strip()
        )
        cases.append(
            DocCase(module.package, module.module, after.name, hint, after.lineno - 1, body)
        )
    return cases


def build_doc_cases(
    packages: tuple[str, ...], count: int, seed: int, min_tokens: int
) -> tuple[dict[str, Module], list[DocCase], dict[str, int]]:
    modules: dict[str, Module] = {}
    pools: dict[str, list[DocCase]] = {}
    for package in packages:
        pool: list[DocCase] = []
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations
        root = Path(next(iter(spec.submodule_search_locations))).parent
        for module in package_modules(package, min_tokens):
            modules[module.module] = module
            pool.extend(docstring_cases(module, (root / module.module).read_text(encoding="utf-8")))
        pools[package] = pool
    rng = random.Random(seed)
    chosen: list[DocCase] = []
    share = count // len(packages)
    leftovers: list[DocCase] = []
    for package in packages:  # an equal share from each package; the rest from the big ones
        pool = list(pools[package])
        rng.shuffle(pool)
        chosen.extend(pool[:share])
        leftovers.extend(pool[share:])
    rng.shuffle(leftovers)
    chosen.extend(leftovers[: max(0, count - len(chosen))])
    available = {package: len(pool) for package, pool in pools.items()}
    return modules, chosen, available


def function_tokens(module: Module, case: DocCase) -> int:
    """Tokens of the case's whole function: above the budget, no method can score a hit."""
    lines = module.text.split("\n")
    last = next(end for _, first, end in module.functions if first == case.def_row)
    return sum(COUNT(lines[row]) + 1 for row in range(case.def_row, last + 1))


def is_hit(case: DocCase, kept: set[int]) -> bool:
    if case.def_row not in kept or not case.body_rows:
        return False
    return len(case.body_rows & kept) >= BODY_SHARE * len(case.body_rows)


def baseline_top_functions(module: Module, hint: str, budget: int) -> tuple[set[int], int]:
    """BM25 over whole functions; the best-ranked kept whole while they fit. (rows, tokens)."""
    lines = module.text.split("\n")
    documents = [terms("\n".join(lines[a : b + 1])) for _, a, b in module.functions]
    scores = BM25(documents).scores(terms(hint))
    order = sorted(range(len(scores)), key=lambda n: (-scores[n], n))
    kept: set[int] = set()
    used = 0
    for number in order:
        if scores[number] <= 0:
            break
        _, first, last = module.functions[number]
        rows = set(range(first, last + 1)) - kept
        cost = sum(COUNT(lines[row]) + 1 for row in rows)
        if used + cost <= budget:
            kept |= rows
            used += cost
    return kept, used


def evaluate_doc_cases(
    modules: dict[str, Module], cases: list[DocCase], scorer: ChunkScorer | None
) -> dict[str, Any]:
    methods = ["funnel_bm25", "baseline_bm25_top_functions"]
    if scorer is not None:
        methods.insert(1, "funnel_bm25_minilm")
    results: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in methods}
    seconds: dict[str, list[float]] = defaultdict(list)
    for budget in BUDGETS:
        tally = {m: {"hits": 0, "in": 0, "out": 0, "over_budget": 0} for m in methods}
        fitting = [function_tokens(modules[case.module], case) <= budget for case in cases]
        fit_hits = dict.fromkeys(methods, 0)
        for case, fits in zip(cases, fitting, strict=True):
            module = modules[case.module]
            for method in methods:
                started = time.perf_counter()
                if method == "baseline_bm25_top_functions":
                    kept, out = baseline_top_functions(module, case.hint, budget)
                else:
                    result = funnel(
                        module.text,
                        case.hint,
                        path=case.module,
                        token_budget=budget,
                        scorer=scorer if method == "funnel_bm25_minilm" else None,
                    )
                    kept, out = set(result.kept_rows), result.output_tokens
                    assert result.token_budget == budget
                seconds[method].append(time.perf_counter() - started)
                entry = tally[method]
                hit = is_hit(case, kept)
                entry["hits"] += hit
                fit_hits[method] += hit and fits
                entry["in"] += module.tokens
                entry["out"] += out
                entry["over_budget"] += out > budget
        for method in methods:
            entry = tally[method]
            results[method][budget] = {
                "recall": round(entry["hits"] / max(len(cases), 1), 4),
                "hits": entry["hits"],
                # Cases whose whole function fits the budget: the most any method can hit.
                "attainable_recall": round(sum(fitting) / max(len(cases), 1), 4),
                "recall_of_fitting_cases": round(fit_hits[method] / max(sum(fitting), 1), 4),
                "compression": round(entry["in"] / max(entry["out"], 1), 2),
                "tokens_in": entry["in"],
                "tokens_out": entry["out"],
                "over_budget": entry["over_budget"],
            }
    return {
        method: {
            "by_budget": {str(b): r for b, r in results[method].items()},
            "median_ms_per_case": round(statistics.median(seconds[method]) * 1000, 2),
        }
        for method in methods
    }


# --- identifier cases (the figure published before) -------------------------------------------


def docstring_first_line(text: str, body_start_line: int) -> str | None:
    """The first non-empty line of the docstring opening within 3 lines of the body start."""
    lines = text.split("\n")
    for row in range(body_start_line, min(body_start_line + 3, len(lines))):
        stripped = lines[row].strip()
        for quote in ('"""', "'''"):
            if stripped.startswith(quote):
                first = stripped[3:].split(quote)[0].strip()
                if first:
                    return first
                following = lines[row + 1].strip() if row + 1 < len(lines) else ""
                return following or None
    return None


def build_identifier_cases(index: SymbolIndex, count: int, seed: int) -> list[dict[str, Any]]:
    """Documented, non-dunder functions that are called somewhere, sampled with a seed."""
    call_lines: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for rel in index.files():
        for o in index.file_occurrences(rel):
            if o.kind == "reference" and o.usage in ("call", "decorator"):
                call_lines[o.name][rel].add(o.span.start.line)
    candidates: list[dict[str, Any]] = []
    for rel in index.files():
        parsed = index.parsed(rel)
        if parsed is None:
            continue
        scopes = {s.name_start_byte: s for s in index.scopes(rel)}
        for o in index.file_occurrences(rel):
            if o.kind != "definition" or o.symbol_kind not in ("function", "method"):
                continue
            if o.name.startswith("__") or len(o.name) < 4 or o.name not in call_lines:
                continue
            scope = next(
                (s for s in scopes.values() if s.qualname.endswith(o.name) and s.name_start_byte
                 and parsed.data.count(b"\n", 0, s.name_start_byte) == o.span.start.line),
                None,
            )  # fmt: skip
            if scope is None:
                continue
            first = parsed.data.count(b"\n", 0, scope.start_byte)
            last = parsed.data.count(b"\n", 0, scope.end_byte)
            doc = docstring_first_line(parsed.text, o.span.start.line + 1)
            if doc is None:
                continue
            candidates.append(
                {"name": o.name, "path": rel, "first": first, "last": last, "doc": doc}
            )
    rng = random.Random(seed)
    rng.shuffle(candidates)
    cases: list[dict[str, Any]] = []
    for candidate in candidates[:count]:
        name = candidate["name"]
        files = {candidate["path"]: set(call_lines[name].get(candidate["path"], set()))}
        files[candidate["path"]].update(range(candidate["first"], candidate["last"] + 1))
        others = sorted(p for p in call_lines[name] if p != candidate["path"])
        for other in rng.sample(others, min(2, len(others))):
            files[other] = set(call_lines[name][other])
        candidate["relevant"] = files
        candidate["hint"] = f"{name}: {candidate['doc']}"
        cases.append(candidate)
    return cases


def evaluate_identifier_cases(index: SymbolIndex, cases: list[dict[str, Any]]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for budget in (800, 1600):
        relevant_total = kept_total = tokens_in = tokens_out = files = 0
        per_case: list[float] = []
        for case in cases:
            found = wanted = 0
            for rel, rows in case["relevant"].items():
                parsed = index.parsed(rel)
                if parsed is None:
                    continue
                lines = parsed.text.split("\n")
                relevant = {r for r in rows if r < len(lines) and lines[r].strip()}
                result = funnel(parsed.text, case["hint"], path=rel, token_budget=budget)
                found += len(relevant & set(result.kept_rows))
                wanted += len(relevant)
                tokens_in += result.input_tokens
                tokens_out += result.output_tokens
                files += 1
            relevant_total += wanted
            kept_total += found
            per_case.append(found / wanted if wanted else 1.0)
        report[str(budget)] = {
            "recall_of_relevant_lines": round(kept_total / max(relevant_total, 1), 4),
            "median_case_recall": round(statistics.median(per_case), 4),
            "compression_total_tokens": round(tokens_in / max(tokens_out, 1), 2),
            "files": files,
        }
    return report


# --- the run ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=240, help="docstring cases")
    parser.add_argument("--identifier-cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--min-tokens", type=int, default=3200, help="smallest module (tokens)")
    parser.add_argument("--no-vectors", action="store_true", help="skip the MiniLM variant")
    parser.add_argument(
        "--packages", default=",".join(PACKAGES), help="comma-separated packages in .venv"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "funnel_recall.json",
    )
    args = parser.parse_args()
    packages = tuple(args.packages.split(","))
    scorer: MiniLMScorer | None = None
    if not args.no_vectors and embeddings_available():
        scorer = MiniLMScorer(cache_size=1_000_000)  # every chunk once, reused across budgets
    modules, cases, available = build_doc_cases(packages, args.cases, args.seed, args.min_tokens)
    per_package = {p: sum(c.package == p for c in cases) for p in packages}
    doc_report = evaluate_doc_cases(modules, cases, scorer)
    index = SymbolIndex(obtain_corpus(), languages=["python"])
    index.build()
    identifier_cases = build_identifier_cases(index, args.identifier_cases, args.seed)
    identifier_report = evaluate_identifier_cases(index, identifier_cases)
    funnel_800 = doc_report["funnel_bm25_minilm" if scorer else "funnel_bm25"]["by_budget"]["800"]
    baseline_800 = doc_report["baseline_bm25_top_functions"]["by_budget"]["800"]
    result = {
        "figure": "funnel_recall",
        "docstring_cases": {
            "packages": list(packages),
            "cases": len(cases),
            "per_package": per_package,
            "available_per_package": available,
            "modules": len({c.module for c in cases}),
            "min_module_tokens": args.min_tokens,
            "hit": f"def line and >= {BODY_SHARE:.0%} of the body's non-blank lines kept",
            "methods": doc_report,
            "vector_scoring": "measured" if scorer else "not measured: embeddings extra absent",
        },
        "identifier_cases": {
            "corpus": f"{CORPUS_PACKAGE} {CORPUS_VERSION} sdist",
            "cases": len(identifier_cases),
            "funnel_bm25_by_budget": identifier_report,
            "published_before": {"recall_of_relevant_lines": 0.9779, "compression": 13.31},
        },
        "targets": {
            "recall_min_at_800": 0.95,
            "compression_min_at_800": 5.0,
            "attainable_recall_at_800": funnel_800["attainable_recall"],
            "met": funnel_800["recall"] >= 0.95
            and funnel_800["compression"] >= 5.0
            and funnel_800["recall"] > baseline_800["recall"],
        },
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{len(cases)} docstring cases from {result['docstring_cases']['modules']} modules")
    print(f"{'method':<30}" + "".join(f"{f'recall@{b}':>12}{'comp':>8}" for b in BUDGETS))
    for method, report in doc_report.items():
        row = report["by_budget"]
        print(
            f"{method:<30}"
            + "".join(
                f"{row[str(b)]['recall']:>12.3f}{row[str(b)]['compression']:>7.1f}x"
                for b in BUDGETS
            )
        )
    print(
        f"{'attainable (function fits)':<30}"
        + "".join(
            f"{doc_report['funnel_bm25']['by_budget'][str(b)]['attainable_recall']:>12.3f}{'':>8}"
            for b in BUDGETS
        )
    )
    for budget, report in identifier_report.items():
        print(
            f"identifier cases @{budget}: recall {report['recall_of_relevant_lines']:.3f}, "
            f"compression {report['compression_total_tokens']:.1f}x"
        )
    print(f"targets met: {result['targets']['met']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
