"""Wall time, tokens and the acceptance outcome of 20 delegated tasks on samples/inventory,
against a real model server: the swarm (shared-prefix prompts, 2 agents, 4 tasks at once)
and, in the same run on the same server, a single-agent naive-prompt baseline (one agent,
each prompt its own task first, one task at a time).

Tasks: document a function (6), add type hints (4), write a test (4), fix a seeded bug (3:
the benchmark plants each bug in its copy of the sample first), rename through the model (3).
Each task names its file, so it goes straight to one agent, as from the editor. Each task runs
in its own swarm on its own fresh copy of the sample, so one task's failures (and the circuit
breaker they open) never decide another's; the copies render the same shared prefix. A task's outcome is the swarm's own verdict (its state
and `goal_met`: the judicial checks and acceptance); tokens are the server's usage per task,
`cached_tokens` from vLLM's report.

A 135M model solves few of these; the harness is the point. The same script runs unchanged
against a bigger model, e.g. on a GPU (docs/gpu.md):

    .venv/bin/python benchmarks/model_tasks.py                      # starts the bundled vLLM
    .venv/bin/python benchmarks/model_tasks.py --base-url http://HOST:8000/v1 --model NAME \
        --block-size 16 --max-output-tokens 1024 --max-turns 12
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from delegation_machine.engine.agents import factory
from delegation_machine.engine.inference.model_server import ModelServer, ModelServerSpec
from delegation_machine.engine.inference.provision import ModelServerCache, provision
from delegation_machine.engine.protocol import DelegationError, DelegationRequest
from delegation_machine.engine.swarm import Swarm

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "inventory"
RESULT = ROOT / "benchmarks" / "results" / "model_tasks.json"


@dataclass(frozen=True)
class Task:
    kind: str
    file: str
    instruction: str
    seed: tuple[str, str] | None = None  # (old, new) planted in the file before the run


TASKS = (
    Task("document", "inventory/money.py", "add a docstring to the function format_money"),
    Task("document", "inventory/reports.py", "add a docstring to the function low_stock"),
    Task("document", "inventory/reports.py", "add a docstring to the function stock_value"),
    Task("document", "inventory/ids.py", "add a docstring to the function new_order_id"),
    Task("document", "inventory/auth.py", "add a docstring to the function hash_password"),
    Task("document", "inventory/config.py", "add a docstring to the function load_settings"),
    Task("type-hints", "inventory/cli.py", "add type hints to the parameters of main"),
    Task("type-hints", "inventory/storage.py", "add a return type hint to product_to_dict"),
    Task("type-hints", "inventory/storage.py", "add a return type hint to order_to_dict"),
    Task("type-hints", "inventory/config.py", "add a type hint for the raw parameter"),
    Task("write-test", "tests/test_pricing.py", "write a test for calc_total with no lines"),
    Task(
        "write-test",
        "tests/test_auth.py",
        "write a test that verify_password rejects a wrong password",
    ),
    Task("write-test", "tests/test_storage.py", "write a test for product_to_dict"),
    Task("write-test", "tests/test_reports_and_cli.py", "write a test for low_stock"),
    Task(
        "fix-bug",
        "inventory/reports.py",
        "fix the bug in low_stock: it must list products at or below the threshold",
        seed=("p.quantity <= threshold", "p.quantity > threshold"),
    ),
    Task(
        "fix-bug",
        "inventory/money.py",
        "fix the bug in to_money: amounts must round half up to whole cents",
        seed=("rounding=ROUND_HALF_UP", "rounding=ROUND_DOWN"),
    ),
    Task(
        "fix-bug",
        "inventory/ids.py",
        "fix the bug in new_customer_id: ids start with CUS-",
        seed=('f"CUS-{', 'f"CUST{'),
    ),
    Task("rename", "inventory/reports.py", "rename the parameter threshold of low_stock to limit"),
    Task("rename", "inventory/ids.py", "rename the local variable stamp in new_order_id to millis"),
    Task("rename", "inventory/money.py", "rename the parameter value of to_money to amount"),
)


def fresh_copy(parent: Path, name: str) -> Path:
    workspace = parent / name
    shutil.copytree(SAMPLE, workspace, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    for task in TASKS:
        if task.seed is not None:
            path = workspace / task.file
            text = path.read_text(encoding="utf-8")
            assert task.seed[0] in text, (task.file, task.seed[0])
            path.write_text(text.replace(task.seed[0], task.seed[1], 1), encoding="utf-8")
    return workspace


def write_config(workspace: Path, inference: dict[str, Any]) -> None:
    folder = workspace / ".delegation"
    folder.mkdir(exist_ok=True)
    lines = ["[inference]", *(f"{k} = {json.dumps(v)}" for k, v in inference.items())]
    (folder / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def plan_tokens(swarm: Swarm, plan_id: str) -> dict[str, int] | None:
    """The server's usage summed over the plan's tasks (the planner's requests included)."""
    if swarm.backend is None:
        return None
    totals = {"prompt_tokens": 0, "cached_tokens": 0, "output_tokens": 0, "requests": 0}
    for task in swarm.backend.ledger.snapshot().tasks:
        if task.task_id.startswith(plan_id):
            for key in totals:
                totals[key] += getattr(task, key)
    return totals


async def run_task(
    task: Task, workspace: Path, inference: dict[str, Any], agents: int, timeout_s: float
) -> dict[str, Any]:
    """One task in its own swarm on its own copy: a failure of one task (and the circuit
    breaker it may open) never decides another's outcome."""
    write_config(workspace, inference)
    began = time.monotonic()
    swarm = Swarm(workspace, editor_settings={"agents": agents}, watch=False)
    await swarm.start()
    try:
        request = DelegationRequest(instruction=task.instruction, path=task.file)
        try:
            plan_id = await swarm.submit(request)
        except DelegationError as exc:  # refused: the row says why
            return {"kind": task.kind, "file": task.file, "state": "refused", "error": str(exc)}
        await swarm.wait(plan_id, timeout=timeout_s)
        summaries = swarm.task_summaries(plan_id)
        usage = plan_tokens(swarm, plan_id)
    finally:
        await swarm.stop()
    return {
        "kind": task.kind,
        "file": task.file,
        "instruction": task.instruction,
        "state": ",".join(s.state for s in summaries) or "none",
        "goal_met": bool(summaries) and all(s.goal_met for s in summaries),
        "message": "; ".join(s.message for s in summaries if s.message)[:300],
        "wall_s": round(time.monotonic() - began, 2),
        "tokens": usage,
    }


async def run_arm(
    name: str,
    parent: Path,
    inference: dict[str, Any],
    agents: int,
    concurrent: int,
    timeout_s: float,
) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrent)

    async def one(index: int, task: Task) -> dict[str, Any]:
        async with gate:
            workspace = fresh_copy(parent, f"{name}-{index}")
            return await run_task(task, workspace, inference, agents, timeout_s)

    started = time.monotonic()
    rows = list(await asyncio.gather(*(one(i, task) for i, task in enumerate(TASKS))))
    wall = time.monotonic() - started
    prompt = sum(r["tokens"]["prompt_tokens"] for r in rows if r.get("tokens"))
    cached = sum(r["tokens"]["cached_tokens"] for r in rows if r.get("tokens"))
    output = sum(r["tokens"]["output_tokens"] for r in rows if r.get("tokens"))
    met = sum(1 for r in rows if r.get("goal_met"))
    summary = {
        "arm": name,
        "agents": agents,
        "concurrent_tasks": concurrent,
        "tasks": len(rows),
        "goal_met": met,
        "wall_s": round(wall, 1),
        "wall_s_per_task_mean": round(sum(r.get("wall_s", 0) for r in rows) / len(rows), 1),
        "prompt_tokens_per_task": round(prompt / len(rows), 1),
        "uncached_prompt_tokens_per_task": round((prompt - cached) / len(rows), 1),
        "output_tokens_per_task": round(output / len(rows), 1),
        "cached_share": round(cached / prompt, 3) if prompt else 0.0,
    }
    print(json.dumps(summary), flush=True)
    return {"summary": summary, "rows": rows}


def naive_prompts() -> None:
    """The baseline's agents lay out each prompt with their own task first (no shared prefix)."""
    factory.LLMAgent = functools.partial(factory.LLMAgent, layout="naive")  # type: ignore[misc]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=None, help="a running server (else one starts)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--max-output-tokens", type=int, default=200)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--agents", type=int, default=2, help="agents per task's swarm")
    parser.add_argument("--concurrent", type=int, default=4, help="tasks at once (swarm arm)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
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
    inference = {
        "provider": "openai",
        "base_url": base_url,
        "model": model,
        "block_size": args.block_size,
        "max_output_tokens": args.max_output_tokens,
        "max_turns": args.max_turns,
        "timeout_s": 300,
    }
    arms = []
    try:
        with tempfile.TemporaryDirectory(prefix="model-tasks-") as scratch:
            parent = Path(scratch)
            shared = run_arm(
                "swarm-shared", parent, inference, args.agents, args.concurrent, args.timeout
            )
            arms.append(asyncio.run(shared))
            naive_prompts()
            baseline = run_arm("single-agent-naive", parent, inference, 1, 1, args.timeout)
            arms.append(asyncio.run(baseline))
    finally:
        if server is not None:
            server.stop()
    result = {
        "benchmark": "model_tasks",
        "server": "vLLM (started here)" if server is not None else base_url,
        "model": model,
        "block_size": args.block_size,
        "max_output_tokens": args.max_output_tokens,
        "max_turns": args.max_turns,
        "setup_s": round(setup_s, 1),
        "server_start_s": round(start_s, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "arms": arms,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
