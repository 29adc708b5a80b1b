"""The `delegation-machine` command line: one parser, one module per subcommand.

Each module of `SUBCOMMANDS` defines `register(subparsers)`, which adds its subcommand; the
parser it adds sets `handler=fn` where `fn(args) -> int` is the exit code. Exit codes: 0
success, 1 some task failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from delegation_machine.server.cli import (
    acp,
    ask,
    demo,
    funnel,
    index,
    ledger,
    map,
    model,
    plan_kv,
    run,
    serve,
    worker,
)

SUBCOMMANDS = (acp, ask, demo, funnel, index, ledger, map, model, plan_kv, run, serve, worker)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delegation-machine",
        description="A language server that hosts a swarm of coding agents.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
