"""`delegation-machine worker --redis URL [--agents N] [--kinds fix,format]`: a worker process.

Owns the command: it connects to Redis (credentials from the environment only: `REDIS_URL`,
or `REDIS_USERNAME` / `REDIS_PASSWORD`), refuses clearly (exit 2) when Redis is unreachable or
refuses the credentials, then serves the namespace's tasks of its kinds with N agent slots
(engine/scale/worker.py) until SIGTERM or SIGINT, on which it finishes or gives back its
running tasks. Its model, if any, comes from its own `--config FILE` (an `[inference]`
table), never from the host. It prints one line once it is serving.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any

from delegation_machine.engine.scale.connection import (
    ScaleError,
    StreamNames,
    check_connection,
    connect,
    redacted_url,
    resolve_url,
)
from delegation_machine.engine.scale.worker import ScaleWorker
from delegation_machine.engine.scale.worker_agents import ToolWorkerAgents
from delegation_machine.engine.secrets import install_log_redaction

USAGE_EXIT = 2


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="run agents for a host on another machine, through Redis Streams",
        description=(
            "Serve agent tasks of a delegation-machine host through Redis Streams: take tasks "
            "of the given kinds, run their agents on the snapshots sent, send back the "
            "Mutations. Credentials come from the environment: REDIS_URL, or REDIS_USERNAME "
            "and REDIS_PASSWORD with a URL that has none (rediss:// for TLS, REDIS_CA_CERT "
            "for its CA). See docs/scale-out.md."
        ),
    )
    parser.add_argument("--redis", metavar="URL", help="redis:// or rediss:// (or $REDIS_URL)")
    parser.add_argument("--agents", type=int, default=1, help="tasks run at once (1)")
    parser.add_argument(
        "--kinds",
        default="fix,format",
        help="comma-separated task kinds to serve: fix, format, llm (fix,format)",
    )
    parser.add_argument("--namespace", default="dm", help="the host's [scale] namespace (dm)")
    parser.add_argument("--name", help="this worker's name (host-pid)")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML file whose [inference] table is this worker's own model (for llm tasks)",
    )
    parser.add_argument(
        "--drain-s",
        type=float,
        default=30.0,
        help="on SIGTERM, seconds running tasks may take to finish before they are given back",
    )
    parser.set_defaults(handler=handle_worker)


def handle_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    install_log_redaction()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if args.agents < 1 or not kinds:
        print("error: --agents must be at least 1 and --kinds must name a kind", file=sys.stderr)
        return USAGE_EXIT
    inference: dict[str, Any] | None = None
    if args.config is not None:
        try:
            inference = tomllib.loads(args.config.read_text(encoding="utf-8")).get("inference")
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            print(f"error: --config {args.config}: {exc}", file=sys.stderr)
            return USAGE_EXIT
    try:
        return asyncio.run(_serve(args, kinds, inference))
    except ScaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT


async def _serve(args: argparse.Namespace, kinds: list[str], inference: Any) -> int:
    url = resolve_url(args.redis)
    client = connect(url, connections=args.agents * 2 + 8)  # a blocking read per slot
    agents: ToolWorkerAgents | None = None
    try:
        await check_connection(client, url)
        agents = ToolWorkerAgents(inference)
        try:
            worker = ScaleWorker(
                client,
                url=url,
                names=StreamNames(args.namespace),
                name=args.name or f"{socket.gethostname()}-{os.getpid()}",
                agents=agents,
                kinds=kinds,
                slots=args.agents,
                drain_s=args.drain_s,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return USAGE_EXIT
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        print(
            f"worker {worker.name} serving {','.join(kinds)} with {args.agents} agent(s) on "
            f"{redacted_url(url)} (namespace {args.namespace})",
            flush=True,
        )
        await worker.run()
        print(
            f"worker {worker.name} stopped: {worker.completed} done, {worker.released} given "
            f"back, {worker.rejected} refused",
            flush=True,
        )
        return 0
    finally:
        if agents is not None:
            await agents.aclose()
        await client.aclose()
