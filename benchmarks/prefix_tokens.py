"""Uncached prompt tokens per task as the swarm grows from 1 to 64 agents on one workspace.

Runs the real planner and real LLM agents (3 turns each: read_symbol, propose_edit, finish)
through the OpenAI-compatible backend against the scripted HTTP server, once with the
shared-prefix layout and once with the naive layout (each agent's own full context first), and
counts reuse with the radix accounting (block size 16) and from the server's reported usage.
Targets: shared layout flat within 10% from 1 to 64 agents; >= 90% of prompt tokens reusable.

    .venv/bin/python benchmarks/prefix_tokens.py [--sizes 1,2,4,8,16,32,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _inference_workspace import DECISION_RECORDS, write_workspace

from delegation_machine.engine.a2a import package_for_task
from delegation_machine.engine.agents.base import AgentWork, FileVersion
from delegation_machine.engine.agents.llm import LLMAgent
from delegation_machine.engine.agents.llm_tools import workspace_repo_map
from delegation_machine.engine.inference.backend import RetryPolicy
from delegation_machine.engine.inference.layout import PrefixCatalog
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import (
    RecordedRequest,
    ScriptedServer,
    ScriptedTurn,
)
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.plan.planner import plan_request
from delegation_machine.engine.protocol import DelegationRequest

BLOCK_SIZE = 16
WORKSPACE_VERSION = 42
TASK_RE = re.compile(r"# Task (\S+) \(")


class SwarmScript:
    """Answers the planner with N tasks and each agent with its three turns."""

    def __init__(self, agents: int, modules: int) -> None:
        self.agents = agents
        self.modules = modules
        self.turns: dict[str, int] = {}
        self.lock = threading.Lock()

    def target(self, number: int) -> tuple[str, str, str]:
        module = number % self.modules
        k = (number // self.modules) % 6
        return f"mod{module:02d}.py", f"f{module}_{k}", f"(x + {module * 100 + k})"

    def __call__(self, request: RecordedRequest) -> ScriptedTurn:
        text = "".join(m["content"] for m in request.body["messages"])
        if "# Planning" in text and "# Task " not in text:
            tasks = []
            for n in range(self.agents):
                path, function, _ = self.target(n)
                tasks.append(
                    {
                        "id": str(n + 1),
                        "instruction": f"fix {function}: off by one",
                        "paths": [path],
                    }
                )
            return ScriptedTurn(content=json.dumps({"tasks": tasks}))
        found = TASK_RE.search(text)
        assert found, "request without a task header"
        task_id = found.group(1)
        with self.lock:
            turn = self.turns.get(task_id, 0)
            self.turns[task_id] = turn + 1
        number = int(task_id.rsplit(".", 1)[1]) - 1
        path, function, expression = self.target(number)
        if turn == 0:
            action = {"tool": "read_symbol", "name": function, "thought": "see the body"}
        elif turn == 1:
            new = expression.replace(" + ", " + 1 + ")
            action = {
                "tool": "propose_edit",
                "path": path,
                "old": expression,
                "new": new,
                "uses": [1],
            }
        else:
            action = {"tool": "finish", "summary": f"fixed {function}", "uses": [2]}
        return ScriptedTurn(content=json.dumps(action), chunk_chars=64)


async def run_swarm(
    agents: int, layout: str, root: Path, index: SymbolIndex, texts: dict[str, str], modules: int
) -> dict[str, float]:
    script = SwarmScript(agents, modules)
    with ScriptedServer(script, block_size=BLOCK_SIZE) as server:
        backend = OpenAICompatibleBackend(
            base_url=server.base_url, model="scripted", retry=RetryPolicy(max_retries=0)
        )
        session = InferenceSession(backend, block_size=BLOCK_SIZE)
        catalog = PrefixCatalog()
        repo_map = workspace_repo_map(index)
        request = DelegationRequest(instruction="fix the off-by-one helpers across the workspace")
        graph = await plan_request(
            request,
            backend=session,
            plan_id="p",
            workspace_version=WORKSPACE_VERSION,
            repo_map=repo_map,
            decision_records=DECISION_RECORDS,
            prefixes=catalog,
        )
        works = []
        for spec in graph.tasks():
            package = package_for_task(
                task_id=spec.task_id,
                plan_id=spec.plan_id,
                kind=spec.kind,
                instruction=spec.instruction,
                request=request,
                workspace_version=WORKSPACE_VERSION,
                paths=spec.paths,
                inputs=spec.inputs,
                outputs=spec.outputs,
                decision_records=DECISION_RECORDS,
            )
            works.append(
                AgentWork(
                    task_id=spec.task_id,
                    package=package,
                    request=request,
                    files={p: FileVersion(texts[p], 1) for p in spec.paths},
                    workspace_root=root,
                    index=index,
                )
            )
        swarm = [
            LLMAgent(f"agent{n}", session, checker=None, prefixes=catalog, layout=layout)  # type: ignore[arg-type]
            for n in range(agents)
        ]
        results = await asyncio.gather(*(a.run(w) for a, w in zip(swarm, works, strict=True)))
        await backend.aclose()
    assert all(len(r.mutations) == 1 for r in results), "every agent should propose its edit"
    summaries = [session.ledger.task_summary(w.task_id) for w in works]
    predicted_uncached = [s.prompt_tokens - s.predicted_reusable_tokens for s in summaries]
    reported_uncached = [s.prompt_tokens - s.cached_tokens for s in summaries]
    prompt = sum(s.prompt_tokens for s in summaries)
    reusable = sum(s.predicted_reusable_tokens for s in summaries)
    planner = session.ledger.task_summary("p")
    return {
        "agents": agents,
        "layout": layout,
        "tasks": len(summaries),
        "requests": sum(s.requests for s in summaries),
        "prompt_tokens_per_task": statistics.mean(s.prompt_tokens for s in summaries),
        "uncached_per_task_mean": statistics.mean(predicted_uncached),
        "uncached_per_task_median": statistics.median(predicted_uncached),
        "uncached_per_task_reported_mean": statistics.mean(reported_uncached),
        "reusable_share": reusable / prompt if prompt else 0.0,
        "planner_prompt_tokens": planner.prompt_tokens,
        "predicted_equals_reported": predicted_uncached == reported_uncached,
    }


async def main_async(sizes: list[int]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        modules = 48
        texts = write_workspace(root, modules=modules)
        index = SymbolIndex(root)
        index.build()
        rows = []
        started = time.perf_counter()
        for agents in sizes:
            for layout in ("shared", "naive"):
                rows.append(await run_swarm(agents, layout, root, index, texts, modules))
        elapsed = time.perf_counter() - started
        prefix_tokens = rows[0]["planner_prompt_tokens"]
    shared = [r for r in rows if r["layout"] == "shared"]
    naive = [r for r in rows if r["layout"] == "naive"]
    shared_uncached = [float(r["uncached_per_task_mean"]) for r in shared]
    flatness = max(shared_uncached) / min(shared_uncached)
    min_share = min(float(r["reusable_share"]) for r in shared)
    return {
        "figure": "uncached prompt tokens per task vs swarm size",
        "block_size": BLOCK_SIZE,
        "tokenizer": "approx-regex-v1",
        "planner_prompt_tokens": prefix_tokens,
        "rows": rows,
        "shared_flatness_max_over_min": flatness,
        "shared_min_reusable_share": min_share,
        "naive_over_shared_uncached_ratio_at_max": float(naive[-1]["uncached_per_task_mean"])
        / float(shared[-1]["uncached_per_task_mean"]),
        "target_flat_within_10pct": flatness <= 1.10,
        "target_reusable_at_least_90pct": min_share >= 0.90,
        "wall_s": elapsed,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def print_table(result: dict[str, object]) -> None:
    print(
        f"{'agents':>6} {'layout':>7} {'prompt/task':>12} {'uncached/task':>14} "
        f"{'reported':>9} {'reusable':>9}"
    )
    for row in result["rows"]:  # type: ignore[union-attr]
        print(
            f"{row['agents']:>6} {row['layout']:>7} {row['prompt_tokens_per_task']:>12.0f} "
            f"{row['uncached_per_task_mean']:>14.0f} {row['uncached_per_task_reported_mean']:>9.0f} "
            f"{row['reusable_share']:>9.1%}"
        )
    print(
        f"shared layout: max/min uncached per task = {result['shared_flatness_max_over_min']:.3f} "
        f"(target <= 1.10: {result['target_flat_within_10pct']}); min reusable share = "
        f"{result['shared_min_reusable_share']:.1%} (target >= 90%: "
        f"{result['target_reusable_at_least_90pct']}); naive/shared uncached at the largest "
        f"swarm = {result['naive_over_shared_uncached_ratio_at_max']:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "prefix_tokens.json")
    )
    args = parser.parse_args()
    result = asyncio.run(main_async([int(s) for s in args.sizes.split(",")]))
    print_table(result)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
