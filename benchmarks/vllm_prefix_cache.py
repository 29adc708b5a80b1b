"""Uncached prompt tokens per task from vLLM's own `cached_tokens`, 1 to 16 concurrent agents.

Real vLLM (the bundled SmolLM2-135M-Instruct on CPU, started here through
`engine.inference.model_server`; or any running OpenAI-compatible vLLM with --base-url, e.g. a
bigger model on a GPU) is sent each agent's first prompt, laid out as the swarm lays it out:
the shared prefix (constitution, repo map of samples/inventory) then the task delta; and the
naive layout (each agent's own task first) in the same run. Per swarm size N, agent 0 goes
first and agents 1..N-1 follow concurrently, as a swarm's agents start after its planner.
Beside vLLM's report stands the radix accounting's prediction, computed on the server's own
token ids (`/tokenize` with the chat template) at the server's block size: they should agree
within 5%. Each row's shared prefix is one no earlier row sent; one radix tree spans the run, as the
server's cache does (a naive prompt starts with its agent's task, which an earlier row may
have sent).

    .venv/bin/python benchmarks/vllm_prefix_cache.py [--sizes 1,2,4,8,16]
    .venv/bin/python benchmarks/vllm_prefix_cache.py --base-url http://HOST:8000/v1 \
        --model NAME --block-size 16      # an already running server (benchmarks/gpu/)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from delegation_machine.engine.agents.llm import constitution
from delegation_machine.engine.inference.backend import ChatMessage, ChatRequest
from delegation_machine.engine.inference.layout import SharedPrefix, naive_layout, shared_layout
from delegation_machine.engine.inference.model_server import ModelServer, ModelServerSpec
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.provision import ModelServerCache, provision
from delegation_machine.engine.inference.radix import PrefixAccounting

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "inventory"
RESULT = ROOT / "benchmarks" / "results" / "vllm_prefix_cache.json"
TASKS = (
    "document the function {name}",
    "add type hints to {name}",
    "write a test for {name}",
    "fix the bug in {name}",
)


def sample_functions() -> list[tuple[str, str, str]]:
    """(file, function name, its source) for every top-level function of the sample."""
    found = []
    for path in sorted(SAMPLE.rglob("*.py")):
        if "test" in path.name:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.startswith("def "):
                end = next(
                    (j for j in range(i + 1, len(lines)) if lines[j] and not lines[j][0].isspace()),
                    len(lines),
                )
                name = line[4:].split("(")[0]
                found.append((str(path.relative_to(SAMPLE)), name, "\n".join(lines[i:end])))
    return found


def repo_map() -> str:
    rows = []
    for path in sorted(SAMPLE.rglob("*.py")):
        defs = [
            line.split("(")[0].split(":")[0]
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith(("def ", "class "))
        ]
        rows.append(f"{path.relative_to(SAMPLE)}: " + "; ".join(defs))
    return "\n".join(rows)


def delta_for(agent: int, functions: list[tuple[str, str, str]]) -> str:
    file, name, source = functions[agent % len(functions)]
    task = TASKS[agent % len(TASKS)].format(name=name)
    return f"# Task\n{task} in {file}\n\n# Focus\n```python\n{source}\n```\n"


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def server_tokens(base_url: str, model: str, messages: tuple[ChatMessage, ...]) -> list[int]:
    """The prompt's token ids as the server renders and tokenizes it (vLLM's /tokenize)."""
    root = base_url.removesuffix("/v1")
    answer = post_json(
        f"{root}/tokenize",
        {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "add_generation_prompt": True,
        },
    )
    return list(answer["tokens"])


async def run_row(
    backend: OpenAICompatibleBackend,
    base_url: str,
    model: str,
    block_size: int,
    size: int,
    layout: str,
    functions: list[tuple[str, str, str]],
    accounting: PrefixAccounting,
) -> dict[str, Any]:
    nonce = uuid.uuid4().hex[:12]  # a prefix no earlier row sent
    prefix = SharedPrefix(1, f"# Session {nonce}\n{constitution()}", repo_map())
    prompts = []
    for agent in range(size):
        delta = delta_for(agent, functions)
        if layout == "shared":
            prompts.append(shared_layout(prefix, delta))
        else:
            prompts.append(naive_layout(prefix, delta, f"llm-{agent}"))
    token_ids = [server_tokens(base_url, model, messages) for messages in prompts]
    predicted = [accounting.observe(ids).reusable_tokens for ids in token_ids]

    async def send(messages: tuple[ChatMessage, ...]) -> Any:
        return await backend.complete(ChatRequest(messages=messages, max_tokens=1))

    started = time.perf_counter()
    first = await send(prompts[0])
    rest = await asyncio.gather(*(send(p) for p in prompts[1:]))
    wall = time.perf_counter() - started
    usages = [first.usage, *(c.usage for c in rest)]
    prompt_tokens = sum(u.prompt_tokens for u in usages)
    cached = sum(u.cached_tokens for u in usages)
    predicted_total = sum(predicted)
    return {
        "agents": size,
        "layout": layout,
        "prompt_tokens": prompt_tokens,
        "tokenize_matches_usage": [len(t) for t in token_ids] == [u.prompt_tokens for u in usages],
        "vllm_cached_tokens": cached,
        "radix_predicted_reusable": predicted_total,
        "uncached_per_task": round((prompt_tokens - cached) / size, 1),
        "predicted_uncached_per_task": round((prompt_tokens - predicted_total) / size, 1),
        "agreement_error": (
            round(abs(predicted_total - cached) / cached, 4) if cached else float(predicted_total)
        ),
        "per_agent_cached": [u.cached_tokens for u in usages],
        "per_agent_predicted": predicted,
        "wall_s": round(wall, 2),
    }


async def measure(
    base_url: str, model: str, block_size: int, sizes: list[int]
) -> list[dict[str, Any]]:
    functions = sample_functions()
    # One radix tree for the whole run, as the server has one cache: a naive prompt repeats
    # an earlier row's agent task first, and both see that reuse.
    accounting = PrefixAccounting(block_size)
    backend = OpenAICompatibleBackend(base_url=base_url, model=model, timeout_s=600)
    rows = []
    try:
        for size in sizes:
            for layout in ("shared", "naive"):
                row = await run_row(
                    backend, base_url, model, block_size, size, layout, functions, accounting
                )
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if not k.startswith("per_")}))
    finally:
        await backend.aclose()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8,16")
    parser.add_argument("--base-url", default=None, help="a running server (else one starts)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    server: ModelServer | None = None
    setup_s = start_s = 0.0
    if args.base_url is None:
        cache = ModelServerCache.default()
        setup_s = provision(cache, lambda line: print(f"setup: {line}", file=sys.stderr))
        spec = ModelServerSpec(kind="vllm", model=cache.bundled_model, block_size=args.block_size)
        server = ModelServer(spec, cache).start()
        start_s = server.started_s
        base_url, model = server.base_url, spec.served_name
    else:
        base_url, model = args.base_url, args.model or ""
    try:
        rows = asyncio.run(measure(base_url, model, args.block_size, sizes))
    finally:
        if server is not None:
            server.stop()
    shared = [r for r in rows if r["layout"] == "shared"]
    result = {
        "benchmark": "vllm_prefix_cache",
        "server": "vLLM (started here)" if server is not None else base_url,
        "model": model,
        "block_size": args.block_size,
        "setup_s": round(setup_s, 1),
        "server_start_s": round(start_s, 1),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "rows": rows,
        "max_agreement_error_shared": max(r["agreement_error"] for r in shared if r["agents"] > 1)
        if any(r["agents"] > 1 for r in shared)
        else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
