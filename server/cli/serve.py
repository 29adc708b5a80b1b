"""`delegation-machine serve`: the language server over stdio, or TCP with --tcp HOST:PORT."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from delegation_machine.engine.secrets import install_log_redaction
from delegation_machine.server.handlers import create_server


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="start the language server (stdio by default)",
        description="Start the Delegation Machine language server. Editors start this command.",
    )
    parser.add_argument("--stdio", action="store_true", help="serve over stdio (the default)")
    parser.add_argument("--tcp", metavar="HOST:PORT", default=None, help="serve over TCP")
    parser.add_argument("--log-file", default=None, help="write the server log to this file")
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    parser.set_defaults(handler=handle_serve)


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--tcp expects HOST:PORT, e.g. 127.0.0.1:2087, not {value!r}")
    return host, int(port)


def handle_serve(args: argparse.Namespace) -> int:
    # stdout carries the protocol: logs go to stderr or a file, never stdout.
    destination = {"filename": args.log_file} if args.log_file else {"stream": sys.stderr}
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        **destination,  # type: ignore[arg-type]
    )
    install_log_redaction()  # secrets never reach the log editors keep
    server = create_server()
    if args.tcp:
        try:
            host, port = parse_host_port(args.tcp)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        server.start_tcp(host, port)
    else:
        server.start_io()
    return 0
