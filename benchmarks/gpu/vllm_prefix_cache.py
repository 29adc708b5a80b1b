"""vLLM prefix-cache hit rate for 1 to 32 concurrent agents, shared-prefix vs naive layout.

Needs a CUDA GPU, `vllm`, `transformers` and `tokenizers`; downloads nothing. It builds a small
randomly initialised Llama model and a word-level tokenizer locally, starts `vllm serve` on it
with prefix caching, drives N concurrent agents' prompts through the project's real
OpenAI-compatible backend, and records (a) vLLM's own prefix-cache counters from /metrics,
(b) the cached tokens vLLM reports per request, (c) the radix accounting's prediction with the
same tokenizer. A random model writes nonsense, so the agents' prompts are replayed (prefix +
task delta + a fixed trace) rather than driven by its replies.

    python benchmarks/gpu/vllm_prefix_cache.py --out results.json [--sizes 1,2,4,8,16,32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _inference_workspace import DECISION_RECORDS, write_workspace  # noqa: E402

from delegation_machine.engine.agents.llm import constitution  # noqa: E402
from delegation_machine.engine.agents.llm_tools import workspace_repo_map  # noqa: E402
from delegation_machine.engine.inference.backend import ChatRequest, RetryPolicy  # noqa: E402
from delegation_machine.engine.inference.layout import (  # noqa: E402
    SharedPrefix,
    naive_layout,
    shared_layout,
)
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend  # noqa: E402
from delegation_machine.engine.inference.radix import PrefixAccounting  # noqa: E402
from delegation_machine.engine.memory.symbols import SymbolIndex  # noqa: E402

BLOCK_SIZE = 16  # vLLM's default KV block size
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_model(folder: Path, corpus: list[str]) -> None:
    """A 2-layer random Llama and a word-level tokenizer trained on the workspace text."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    tokenizer.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=specials))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=32768,
        bos_token_id=1,
        eos_token_id=2,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)


def start_server(model_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        "tiny",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--block-size",
        str(BLOCK_SIZE),
        "--max-model-len",
        "32768",
        "--gpu-memory-utilization",
        "0.5",
        "--dtype",
        "bfloat16",
    ]
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 420) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)  # polling a subprocess start-up in a benchmark script, not a test
    raise TimeoutError("vllm serve did not become ready")


def prefix_counters(port: int) -> tuple[float, float]:
    """(queries, hits) in tokens from vLLM's Prometheus metrics (V1 engine names)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text

    def total(name: str) -> float:
        return sum(
            float(v)
            for v in re.findall(rf"^{name}(?:_total)?(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
        )

    return total("vllm:prefix_cache_queries"), total("vllm:prefix_cache_hits")


async def run_swarm(
    backend: OpenAICompatibleBackend,
    prefix: SharedPrefix,
    agents: int,
    layout: str,
    tokenizer: Any,
    accounting: PrefixAccounting,
    salt: str,
) -> dict[str, Any]:
    async def one(n: int) -> tuple[int, int, int]:
        delta = (
            f"# Task {salt}.{n} (llm)\nfix f{n % 48}_{n % 6} in mod{n % 48:02d}.py: off by one\n"
        )
        trace = f"%1 = read_symbol: f{n % 48}_{n % 6}\n    def f{n % 48}_{n % 6}(x): return x\n"
        messages = (
            shared_layout(prefix, delta, trace)
            if layout == "shared"
            else naive_layout(prefix, delta, f"a{n}", trace)
        )
        ids = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages], add_generation_prompt=True
        )
        predicted = accounting.observe(ids).reusable_tokens
        completion = await backend.complete(ChatRequest(messages=messages, max_tokens=4))
        return completion.usage.prompt_tokens, completion.usage.cached_tokens, predicted

    results = await asyncio.gather(*(one(n) for n in range(agents)))
    prompt = sum(r[0] for r in results)
    return {
        "agents": agents,
        "layout": layout,
        "prompt_tokens": prompt,
        "reported_cached_tokens": sum(r[1] for r in results),
        "predicted_reusable_tokens": sum(r[2] for r in results),
        "reported_uncached_per_agent": (prompt - sum(r[1] for r in results)) / agents,
    }


async def main_async(sizes: list[int], port: int, workdir: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer

    workspace = workdir / "workspace"
    workspace.mkdir()
    texts = write_workspace(workspace)
    index = SymbolIndex(workspace)
    index.build()
    prefix = SharedPrefix(1, constitution(), workspace_repo_map(index), DECISION_RECORDS)
    model_dir = workdir / "tiny-llama"
    corpus = [
        *texts.values(),
        prefix.render(),
        *DECISION_RECORDS,
        "Task fix off by one read_symbol",
    ]
    build_model(model_dir, corpus)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    process = start_server(model_dir, port, workdir / "vllm.log")
    rows = []
    try:
        wait_ready(port, process)
        backend = OpenAICompatibleBackend(
            base_url=f"http://127.0.0.1:{port}/v1",
            model="tiny",
            timeout_s=300,
            retry=RetryPolicy(max_retries=1),
            guided_json=False,
            provider="vllm",
        )
        for layout in ("shared", "naive"):
            for agents in sizes:
                # A fresh prefix per row (the version number changes) so rows do not share cache.
                row_prefix = SharedPrefix(
                    1000 * agents + (layout == "naive"),
                    prefix.constitution,
                    prefix.repo_map,
                    prefix.decision_records,
                )
                accounting = PrefixAccounting(BLOCK_SIZE)
                warm = await run_swarm(
                    backend, row_prefix, 1, layout, tokenizer, accounting, "warm"
                )
                before = prefix_counters(port)
                row = await run_swarm(
                    backend, row_prefix, agents, layout, tokenizer, accounting, f"t{agents}"
                )
                after = prefix_counters(port)
                queries, hits = after[0] - before[0], after[1] - before[1]
                row["vllm_prefix_cache_hit_rate"] = hits / queries if queries else None
                row["warm_up_prompt_tokens"] = warm["prompt_tokens"]
                rows.append(row)
                print(json.dumps(row), flush=True)
        await backend.aclose()
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {
        "figure": "vLLM prefix-cache hit rate vs concurrent agents",
        "rows": rows,
        "block_size": BLOCK_SIZE,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4,8,16,32")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "gpu_vllm_prefix_cache.json")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(
            main_async([int(s) for s in args.sizes.split(",")], args.port, Path(folder))
        )
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
