"""`delegation-machine index WORKSPACE`: build the symbol index and report what it holds."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.memory.symbols import SymbolIndex


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "index",
        help="index a workspace's definitions, references and imports",
        description=(
            "Parse every Python, JavaScript/TypeScript, Go and Rust file of WORKSPACE with "
            "tree-sitter (skipping .delegation/, .git/, .venv/, node_modules/, files over 5 MB "
            "and binaries) and report counts per language and kind."
        ),
    )
    parser.add_argument("workspace", type=Path, help="the workspace folder")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument(
        "--name", action="append", default=[], metavar="NAME", help="also list NAME's occurrences"
    )
    parser.set_defaults(handler=run_index)


def workspace_or_error(path: Path) -> Path | None:
    if not path.is_dir():
        print(f"delegation-machine: {path}: not a folder", file=sys.stderr)
        return None
    return path.resolve()


def build_index(root: Path) -> tuple[SymbolIndex, float]:
    started = time.perf_counter()
    index = SymbolIndex(root)
    index.build()
    return index, time.perf_counter() - started


def run_index(args: argparse.Namespace) -> int:
    root = workspace_or_error(args.workspace)
    if root is None:
        return 2
    index, seconds = build_index(root)
    kinds: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for rel in index.files():
        occurrences = index.file_occurrences(rel)
        kinds.update(o.kind for o in occurrences)
        parsed = index.parsed(rel)
        if parsed is not None:
            languages[parsed.language] += 1
    report: dict[str, Any] = {
        "workspace": str(root),
        "files": len(index.files()),
        "lines": index.line_count(),
        "seconds": round(seconds, 3),
        "languages": dict(sorted(languages.items())),
        "occurrences": dict(sorted(kinds.items())),
        "skipped": [{"path": s.path, "reason": s.reason} for s in index.skipped],
        "names": {name: msgspec.to_builtins(index.occurrences(name)) for name in args.name},
    }
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
        return 0
    print(f"indexed {report['files']} files, {report['lines']} lines in {seconds:.2f} s")
    for language, count in report["languages"].items():
        print(f"  {language:<11} {count} files")
    for kind, count in report["occurrences"].items():
        print(f"  {kind:<11} {count}")
    for skipped in index.skipped:
        print(f"  skipped {skipped.path}: {skipped.reason}")
    for name in args.name:
        for o in index.occurrences(name):
            print(f"{o.path}:{o.span.start.line + 1}:{o.span.start.column + 1}: {o.kind} {o.name}")
    return 0
