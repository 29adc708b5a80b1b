"""`delegation-machine map WORKSPACE`: the repo map, ranked by PageRank, within a token budget."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.memory.graph import RepoGraph
from delegation_machine.engine.memory.repomap import build_repo_map
from delegation_machine.server.cli.index import build_index, workspace_or_error


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "map",
        help="print the repo map: the most used definitions, fitted to a token budget",
        description=(
            "Rank the workspace's files by PageRank over their dependency graph (personalised "
            "to --focus files) and print the signatures of the best definitions that fit in "
            "--tokens tokens."
        ),
    )
    parser.add_argument("workspace", type=Path, help="the workspace folder")
    parser.add_argument(
        "--focus", nargs="*", default=[], metavar="FILE", help="the task's files (relative)"
    )
    parser.add_argument("--tokens", type=int, default=1024, help="token budget (default 1024)")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.set_defaults(handler=run_map)


def run_map(args: argparse.Namespace) -> int:
    root = workspace_or_error(args.workspace)
    if root is None:
        return 2
    if args.tokens <= 0:
        print("delegation-machine map: --tokens must be positive", file=sys.stderr)
        return 2
    index, _ = build_index(root)
    focus = [_relative(root, f) for f in args.focus]
    unknown = [f for f in focus if f not in set(index.files())]
    if unknown:
        print(f"delegation-machine map: not indexed: {', '.join(unknown)}", file=sys.stderr)
        return 2
    repo_map = build_repo_map(RepoGraph(index), focus=focus, token_budget=args.tokens)
    if args.json:
        sys.stdout.write(msgspec.json.encode(repo_map).decode() + "\n")
    else:
        sys.stdout.write(repo_map.text)
        print(f"({repo_map.tokens} of {repo_map.budget} tokens)", file=sys.stderr)
    return 0


def _relative(root: Path, name: str) -> str:
    path = Path(name)
    if path.is_absolute():
        try:
            return path.resolve().relative_to(root).as_posix()
        except ValueError:
            return name
    return path.as_posix()
