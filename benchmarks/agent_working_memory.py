"""Working memory in the LLM agent loop: tokens sent and prefix-cache reuse, per context policy.

Scripted multi-turn runs of the real `LLMAgent` (real tools on a real SymbolIndex, the real
funnel and retrieval router, prompts over local HTTP) against the scripted OpenAI-compatible
server, whose usage reports cached tokens with vLLM's radix-tree block arithmetic. Workspace:
a copy of the httpx package installed in .venv. Each run is a seeded script of tool calls
(whole-file reads, line ranges, read_symbol, search_symbols, plain-language search; some use
an earlier step), then `finish`; every policy replays the same scripts, same run:
- full history: every step and output kept (no pruning, no masking);
- SSA pruning: the loop before working memory (last 3 steps and what they use);
- masking, sliding: outputs older than 6 steps masked, the boundary moved every step;
- masking, stepped (the default): the same window, the boundary moved every 3 steps.
Reported per policy: prompt tokens sent, cached (reused) tokens, reuse = cached / sent,
uncached tokens (what the server must compute), the largest prompt, outputs masked.

    .venv/bin/python benchmarks/agent_working_memory.py [--runs 6] [--turns 24]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from delegation_machine.engine.a2a import package_for_task
from delegation_machine.engine.agents.base import AgentWork, FileVersion
from delegation_machine.engine.agents.llm import LLMAgent
from delegation_machine.engine.inference.backend import RetryPolicy
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.protocol import DelegationRequest

PACKAGE = "httpx"
POLICIES: dict[str, dict[str, Any]] = {
    "full_history": {"mask_window": None, "trace_window": 1_000_000},
    "ssa_pruning": {"mask_window": None, "trace_window": 3},
    "masking_sliding": {"mask_window": 6, "mask_step": 1},
    "masking_stepped": {"mask_window": 6, "mask_step": 3},
}


def copy_package(target: Path) -> dict[str, str]:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{PACKAGE} is not installed in this environment")
    source = Path(next(iter(spec.submodule_search_locations)))
    texts: dict[str, str] = {}
    for path in sorted(source.rglob("*.py")):
        rel = path.relative_to(source.parent).as_posix()
        destination = target / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8")
        destination.write_text(text, encoding="utf-8")
        texts[rel] = text
    return texts


def script(
    index: SymbolIndex, texts: dict[str, str], turns: int, seed: int
) -> list[dict[str, Any]]:
    """A seeded sequence of tool calls over the workspace, then finish."""
    rng = random.Random(seed)
    paths = sorted(texts)
    functions = sorted(
        {
            o.name
            for rel in index.files()
            for o in index.file_occurrences(rel)
            if o.kind == "definition" and o.symbol_kind == "function" and len(o.name) > 5
        }
    )
    actions: list[dict[str, Any]] = []
    for step in range(1, turns + 1):
        kind = rng.choice(("read_file", "read_file", "read_range", "read_symbol", "find", "ask"))
        action: dict[str, Any]
        if kind == "read_file":
            action = {"tool": "read_file", "path": rng.choice(paths)}
        elif kind == "read_range":
            path = rng.choice(paths)
            start = rng.randrange(1, max(2, texts[path].count("\n") - 60))
            action = {
                "tool": "read_file",
                "path": path,
                "start_line": start,
                "end_line": start + 60,
            }
        elif kind == "read_symbol":
            action = {"tool": "read_symbol", "name": rng.choice(functions)}
        elif kind == "find":
            action = {"tool": "search_symbols", "query": rng.choice(functions)[:6]}
        else:
            action = {"tool": "search", "question": f"who calls {rng.choice(functions)}"}
        if step > 1 and rng.random() < 0.3:
            action["uses"] = [rng.randrange(1, step)]
        actions.append(action)
    actions.append({"tool": "finish", "summary": "looked around", "uses": [turns]})
    return actions


def work_for(root: Path, index: SymbolIndex, texts: dict[str, str], task_id: str) -> AgentWork:
    instruction = "find why redirects drop the authorization header and fix it"
    request = DelegationRequest(instruction=instruction, path="httpx/_client.py")
    package = package_for_task(
        task_id=task_id,
        plan_id="p",
        kind="llm",
        instruction=instruction,
        request=request,
        workspace_version=1,
        paths=sorted(texts),
        inputs=[f"file:{p}" for p in sorted(texts)],
        outputs=["file:httpx/_client.py"],
    )
    return AgentWork(
        task_id=task_id,
        package=package,
        request=request,
        files={p: FileVersion(t, 1) for p, t in texts.items()},
        workspace_root=root,
        index=index,
    )


async def run_policy(
    root: Path, index: SymbolIndex, texts: dict[str, str], scripts: list[list[dict[str, Any]]],
    policy: str,
) -> dict[str, Any]:  # fmt: skip
    sent = cached = masked = 0
    peaks: list[int] = []
    for number, actions in enumerate(scripts):
        turns = [ScriptedTurn(content=json.dumps(a), chunk_chars=256) for a in actions]
        with ScriptedServer(turns) as server:  # a fresh cache per run: reuse within one task
            backend = OpenAICompatibleBackend(
                base_url=server.base_url, model="scripted", retry=RetryPolicy(max_retries=0)
            )
            session = InferenceSession(backend)
            agent = LLMAgent(
                "a1", session, checker=None, max_turns=len(actions), **POLICIES[policy]
            )
            result = await agent.run(work_for(root, index, texts, f"{policy}.{number}"))
            await backend.aclose()
            assert result.notes == "looked around"
            sent += sum(r.prompt_tokens for r in server.requests)
            cached += sum(r.cached_tokens for r in server.requests)
            peaks.append(max(r.prompt_tokens for r in server.requests))
            assert agent.last_stats is not None
            masked += agent.last_stats.masked_outputs
    return {
        "prompt_tokens": sent,
        "cached_tokens": cached,
        "uncached_tokens": sent - cached,
        "reuse": round(cached / max(sent, 1), 4),
        "median_peak_prompt_tokens": statistics.median(peaks),
        "masked_outputs": masked,
    }


async def main_async(runs: int, turns: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="working-memory-") as folder:
        root = Path(folder)
        texts = copy_package(root)
        index = SymbolIndex(root, languages=["python"])
        index.build()
        scripts = [script(index, texts, turns, seed + n) for n in range(runs)]
        report = {}
        for policy in POLICIES:
            report[policy] = await run_policy(root, index, texts, scripts, policy)
            shutil.rmtree(root / ".delegation", ignore_errors=True)
    full = report["full_history"]
    for entry in report.values():
        entry["prompt_tokens_vs_full"] = round(entry["prompt_tokens"] / full["prompt_tokens"], 4)
        entry["uncached_vs_full"] = round(entry["uncached_tokens"] / full["uncached_tokens"], 4)
    return {
        "figure": "agent_working_memory",
        "workspace": f"{PACKAGE} package from .venv ({len(texts)} files)",
        "runs": runs,
        "turns_per_run": turns + 1,
        "policies": report,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--turns", type=int, default=24, help="tool calls per run before finish")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "agent_working_memory.json",
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args.runs, args.turns, args.seed))
    print(f"{result['runs']} runs x {result['turns_per_run']} turns on {result['workspace']}")
    print(
        f"{'policy':<18}{'sent':>10}{'cached':>10}{'reuse':>8}{'uncached':>10}{'vs full':>9}"
        f"{'peak':>8}"
    )
    for policy, entry in result["policies"].items():
        print(
            f"{policy:<18}{entry['prompt_tokens']:>10}{entry['cached_tokens']:>10}"
            f"{entry['reuse']:>8.3f}{entry['uncached_tokens']:>10}{entry['uncached_vs_full']:>9.3f}"
            f"{entry['median_peak_prompt_tokens']:>8}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
