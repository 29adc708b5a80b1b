"""`delegation-machine ask WORKSPACE QUESTION`: answer from the graph, BM25, or BM25 + vectors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.memory.retrieval import RetrievalRouter, answer_lines
from delegation_machine.server.cli.index import build_index, workspace_or_error


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ask",
        help="ask a question about the code ('who calls f?', 'what depends on the x module?')",
        description=(
            "Route QUESTION to the repo graph (structural questions in words, their subject "
            "resolved to files or symbols), BM25 (questions naming code) or BM25 plus MiniLM "
            "vectors (plain language, with the `embeddings` extra) and print the places that "
            "answer it."
        ),
    )
    parser.add_argument("workspace", type=Path, help="the workspace folder")
    parser.add_argument("question", help="the question, quoted")
    parser.add_argument("--limit", type=int, default=10, help="most answers to print")
    parser.add_argument("--no-vectors", action="store_true", help="never use vector retrieval")
    parser.add_argument("--json", action="store_true", help="print a JSON answer")
    parser.set_defaults(handler=run_ask)


def run_ask(args: argparse.Namespace) -> int:
    root = workspace_or_error(args.workspace)
    if root is None:
        return 2
    index, _ = build_index(root)
    router = RetrievalRouter(index, use_vectors=False if args.no_vectors else None)
    answer = router.ask(args.question, limit=args.limit)
    if args.json:
        sys.stdout.write(msgspec.json.encode(answer).decode() + "\n")
    else:
        print("\n".join(answer_lines(answer)))
    return 0
