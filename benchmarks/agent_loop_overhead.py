"""Overhead of the LLM agent loop per turn: everything but the model, p50 and p99.

The project: `LLMAgent` turns (prompt layout, budget check, radix accounting, Validation Gate
decode, tool execution on the real SymbolIndex, SSA pruning, ledger) with the backend time
subtracted (the scripted HTTP server answers; its time is reported separately as "backend").
The baseline, same run: the least a loop must do per turn, building the same messages and
decoding the same action with msgspec, nothing else.

    .venv/bin/python benchmarks/agent_loop_overhead.py [--tasks 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _inference_workspace import DECISION_RECORDS, write_workspace

from delegation_machine.engine.a2a import package_for_task
from delegation_machine.engine.agents.base import AgentWork, FileVersion
from delegation_machine.engine.agents.llm import LLMAgent, constitution
from delegation_machine.engine.agents.llm_tools import AgentAction, workspace_repo_map
from delegation_machine.engine.inference.backend import RetryPolicy
from delegation_machine.engine.inference.layout import SharedPrefix, shared_layout
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import (
    RecordedRequest,
    ScriptedServer,
    ScriptedTurn,
)
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.protocol import DelegationRequest


def actions_for(number: int) -> list[dict[str, Any]]:
    module, k = number % 48, number % 6
    path, function = f"mod{module:02d}.py", f"f{module}_{k}"
    expression = f"(x + {module * 100 + k})"
    return [
        {"tool": "search_symbols", "query": function},
        {"tool": "read_symbol", "name": function, "uses": [1]},
        {"tool": "read_file", "path": path, "start_line": 1, "end_line": 30},
        {
            "tool": "propose_edit",
            "path": path,
            "old": expression,
            "new": f"(x + 1 + {module * 100 + k})",
            "uses": [2],
        },
        {"tool": "finish", "summary": "done", "uses": [4]},
    ]


class Script:
    def __init__(self) -> None:
        self.turns: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> ScriptedTurn:
        delta = request.body["messages"][1]["content"]
        task_id = delta.split("# Task ", 1)[1].split(" ", 1)[0]
        with self.lock:
            turn = self.turns.get(task_id, 0)
            self.turns[task_id] = turn + 1
        number = int(task_id.rsplit(".", 1)[1])
        return ScriptedTurn(content=json.dumps(actions_for(number)[turn]), chunk_chars=64)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def baseline_turns(prefix: SharedPrefix, tasks: int) -> list[float]:
    """Per turn: build the same messages, decode the same action. Nothing else."""
    samples = []
    for number in range(tasks):
        for action in actions_for(number):
            reply = json.dumps(action).encode()
            started = time.perf_counter()
            shared_layout(prefix, f"# Task p.{number} (llm)\nfix it\n", "trace")
            msgspec.json.decode(reply, type=cast(Any, AgentAction))
            samples.append(time.perf_counter() - started)
    return samples


async def main_async(tasks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        texts = write_workspace(root)
        index = SymbolIndex(root)
        index.build()
        loop_s: list[float] = []
        model_s: list[float] = []
        with ScriptedServer(Script()) as server:
            backend = OpenAICompatibleBackend(
                base_url=server.base_url, model="scripted", retry=RetryPolicy(max_retries=0)
            )
            session = InferenceSession(backend)
            request = DelegationRequest(instruction="fix the helper")
            for number in range(tasks):
                path = f"mod{number % 48:02d}.py"
                package = package_for_task(
                    task_id=f"p.{number}",
                    plan_id="p",
                    kind="llm",
                    instruction="fix the helper",
                    request=request,
                    workspace_version=1,
                    paths=[path],
                    decision_records=DECISION_RECORDS,
                )
                work = AgentWork(
                    task_id=f"p.{number}",
                    package=package,
                    request=request,
                    files={path: FileVersion(texts[path], 1)},
                    workspace_root=root,
                    index=index,
                )
                agent = LLMAgent(f"a{number}", session, checker=None)
                result = await agent.run(work)
                assert len(result.mutations) == 1
                assert agent.last_stats is not None
                loop_s.extend(t.loop_s for t in agent.last_stats.turns)
                model_s.extend(t.model_s for t in agent.last_stats.turns)
            await backend.aclose()
        prefix = SharedPrefix(1, constitution(), workspace_repo_map(index), DECISION_RECORDS)
        base = baseline_turns(prefix, tasks)
    return {
        "figure": "agent loop overhead per turn (everything but the model)",
        "turns": len(loop_s),
        "loop_p50_ms": statistics.median(loop_s) * 1000,
        "loop_p99_ms": percentile(loop_s, 0.99) * 1000,
        "baseline_p50_ms": statistics.median(base) * 1000,
        "baseline_p99_ms": percentile(base, 0.99) * 1000,
        "loop_over_baseline_p50": statistics.median(loop_s) / statistics.median(base),
        "backend_http_p50_ms": statistics.median(model_s) * 1000,
        "prefix_tokens_approx": len(session.tokenizer.encode(prefix.render())),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "agent_loop_overhead.json")
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args.tasks))
    print(f"{'':>28} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{'agent loop (not the model)':>28} {result['loop_p50_ms']:>8.2f} {result['loop_p99_ms']:>8.2f}"
    )
    print(
        f"{'baseline (messages+decode)':>28} {result['baseline_p50_ms']:>8.2f} {result['baseline_p99_ms']:>8.2f}"
    )
    print(f"{'backend over local HTTP':>28} {result['backend_http_p50_ms']:>8.2f}")
    print(
        f"turns={result['turns']} loop/baseline p50 = {result['loop_over_baseline_p50']:.1f}x "
        f"prefix ~{result['prefix_tokens_approx']} tokens"
    )
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
