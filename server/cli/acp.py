"""`delegation-machine acp`: the Agent Client Protocol agent over stdio, for editors' agent
panels (Zed, JetBrains, Neovim's CodeCompanion and avante.nvim, Emacs agent-shell)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from delegation_machine.engine.secrets import install_log_redaction
from delegation_machine.server.acp.stdio import serve_or_attach, take_protocol_pipes


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "acp",
        help="run as an Agent Client Protocol agent over stdio (editors' agent panels)",
        description=(
            "Serve the Agent Client Protocol on stdin/stdout: each session works on the "
            "folder its client names (session/new cwd), each prompt is a delegation to the "
            "swarm ('fix', 'format', 'rename OLD NEW', or plain language with a model "
            "configured), and its changes are kept only when the user allows them. When a "
            "`delegation-machine serve` hosts the workspace, this command attaches to it, so "
            "the editor's LSP and ACP clients share one swarm. Editors start this command; "
            "see docs/editors.md."
        ),
    )
    parser.add_argument(
        "--workspace",
        default=None,
        metavar="PATH",
        help="the workspace whose running `serve` to attach to (default: the current folder)",
    )
    parser.add_argument("--log-file", default=None, help="write the log to this file")
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    parser.set_defaults(handler=handle_acp)


def handle_acp(args: argparse.Namespace) -> int:
    # stdout carries the protocol: logs go to stderr or a file, never stdout.
    destination = {"filename": args.log_file} if args.log_file else {"stream": sys.stderr}
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        **destination,  # type: ignore[arg-type]
    )
    install_log_redaction()
    workspace = Path(args.workspace or Path.cwd()).resolve()
    if not workspace.is_dir():
        print(f"error: --workspace {args.workspace!r} is not a folder", file=sys.stderr)
        return 2
    protocol_in, protocol_out = take_protocol_pipes()
    asyncio.run(serve_or_attach(workspace, protocol_in, protocol_out))
    return 0
