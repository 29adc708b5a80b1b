"""Context funnel compression and recall on a labelled set built from a real code base.

The corpus is the Django package from benchmarks/index_speed.py (fetched on first use). Each
case is one documented function or method: the goal hint is its name and the first line of
its docstring; the relevant lines are the non-blank lines of its definition and of every call
site of that name, in its own file and in up to two other files that call it. The project:
`funnel(text, hint)` on each of those files. The baseline, same run: a grep-style skimmer that
keeps every line mentioning a hint word (words of 3+ letters) with two lines of context.

    .venv/bin/python benchmarks/funnel_recall.py [--cases 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_speed import obtain_corpus

from delegation_machine.engine.inference.tokens import ApproxTokenizer
from delegation_machine.engine.memory.funnel import funnel
from delegation_machine.engine.memory.symbols import SymbolIndex

COUNT = ApproxTokenizer().count
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


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


def build_cases(index: SymbolIndex, count: int, seed: int) -> list[dict[str, Any]]:
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


def grep_skim(text: str, hint: str, context: int = 2) -> set[int]:
    words = {w.lower() for w in _WORD.findall(hint)}
    lines = text.split("\n")
    keep: set[int] = set()
    for row, line in enumerate(lines):
        found = {w.lower() for w in _WORD.findall(line)}
        if words & found:
            keep.update(range(max(0, row - context), min(len(lines), row + context + 1)))
    return keep


def evaluate(index: SymbolIndex, cases: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, dict[str, float]] = {
        name: {"relevant": 0, "kept": 0, "in": 0, "out": 0} for name in ("funnel", "grep")
    }
    per_case: dict[str, list[float]] = {"funnel": [], "grep": [], "funnel_ratio": []}
    funnel_seconds: list[float] = []
    for case in cases:
        relevant_found = {"funnel": 0, "grep": 0}
        relevant_total = 0
        for rel, rows in case["relevant"].items():
            parsed = index.parsed(rel)
            if parsed is None:
                continue
            text = parsed.text
            lines = text.split("\n")
            relevant = {r for r in rows if r < len(lines) and lines[r].strip()}
            relevant_total += len(relevant)
            started = time.perf_counter()
            result = funnel(text, case["hint"], path=rel)
            funnel_seconds.append(time.perf_counter() - started)
            kept = set(result.kept_rows)
            relevant_found["funnel"] += len(relevant & kept)
            totals["funnel"]["in"] += result.input_tokens
            totals["funnel"]["out"] += result.output_tokens
            per_case["funnel_ratio"].append(result.compression)
            skim = grep_skim(text, case["hint"])
            relevant_found["grep"] += len(relevant & skim)
            skim_text = "\n".join(lines[r] for r in sorted(skim))
            totals["grep"]["in"] += result.input_tokens
            totals["grep"]["out"] += COUNT(skim_text)
        for name in ("funnel", "grep"):
            totals[name]["relevant"] += relevant_total
            totals[name]["kept"] += relevant_found[name]
            per_case[name].append(relevant_found[name] / relevant_total if relevant_total else 1)
    report: dict[str, Any] = {}
    for name in ("funnel", "grep"):
        t = totals[name]
        report[name] = {
            "recall_of_relevant_lines": round(t["kept"] / max(t["relevant"], 1), 4),
            "median_case_recall": round(statistics.median(per_case[name]), 4),
            "compression_total_tokens": round(t["in"] / max(t["out"], 1), 2),
            "tokens_in": int(t["in"]),
            "tokens_out": int(t["out"]),
        }
    report["funnel"]["median_file_compression"] = round(
        statistics.median(per_case["funnel_ratio"]), 2
    )
    report["funnel"]["median_ms_per_file"] = round(statistics.median(funnel_seconds) * 1000, 2)
    report["funnel_files"] = len(funnel_seconds)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "funnel_recall.json",
    )
    args = parser.parse_args()
    index = SymbolIndex(obtain_corpus(), languages=["python"])
    index.build()
    cases = build_cases(index, args.cases, args.seed)
    report = evaluate(index, cases)
    funnel_report, grep_report = report["funnel"], report["grep"]
    result = {
        "figure": "funnel_recall",
        "corpus": "django 5.2.19 sdist, django/ package",
        "cases": len(cases),
        "files_funnelled": report["funnel_files"],
        "funnel": funnel_report,
        "baseline_grep_skim": grep_report,
        "vector_scoring": "not measured: the `embeddings` extra is not installed here",
        "targets": {
            "compression_min": 5.0,
            "recall_min": 0.95,
            "met": funnel_report["compression_total_tokens"] >= 5.0
            and funnel_report["recall_of_relevant_lines"] >= 0.95,
        },
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{len(cases)} cases, {report['funnel_files']} files (django 5.2.19)")
    print(f"{'method':<22}{'recall':>10}{'median case':>13}{'compression':>13}")
    for name, r in (("funnel", funnel_report), ("grep skim (baseline)", grep_report)):
        print(
            f"{name:<22}{r['recall_of_relevant_lines']:>10.3f}{r['median_case_recall']:>13.3f}"
            f"{r['compression_total_tokens']:>12.1f}x"
        )
    print(
        f"funnel median file compression {funnel_report['median_file_compression']}x, "
        f"{funnel_report['median_ms_per_file']} ms per file"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
