"""The LLM path against a real model server: vLLM serving SmolLM2-135M-Instruct.

A 135M model solves little; what these tests hold is that every path reaches the real
server and ends in an honest state: an edit that passed its checks, or a failure that says
why, with the file untouched and no traceback. Replies are kept short (about 30 tokens/s).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from delegation_machine.engine.agents.llm import constitution
from delegation_machine.engine.inference.accounting import TokenLedger
from delegation_machine.engine.inference.backend import (
    BackendContextOverflow,
    ChatMessage,
    ChatRequest,
)
from delegation_machine.engine.inference.layout import PrefixCatalog, shared_layout
from delegation_machine.engine.inference.model_server import get_json
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.session import InferenceSession
from tests.model.conftest import MAX_MODEL_LEN, ServedModel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TARGET = "inventory/money.py"
CLI = [sys.executable, "-m", "delegation_machine.server"]


def backend_for(server: ServedModel) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=server.base_url, model=server.model, timeout_s=120, provider="openai"
    )


def test_model_serve_prints_settings_that_reach_the_bundled_model(live_vllm: ServedModel) -> None:
    assert live_vllm.banner.startswith("# vllm serves SmolLM2-135M-Instruct at http://127.0.0.1:")
    assert live_vllm.settings["provider"] == "openai"
    assert live_vllm.block_size == 32  # vLLM's CPU block, for the radix accounting
    models = get_json(f"{live_vllm.base_url}/models")
    assert [m["id"] for m in models["data"]] == [live_vllm.model]
    assert models["data"][0]["max_model_len"] == MAX_MODEL_LEN


async def test_the_shared_prefix_is_served_from_vllms_cache_from_the_second_agent_on(
    live_vllm: ServedModel, workspace: Path
) -> None:
    """Four agents' first prompts at one workspace version, laid out as the swarm lays them:
    the first fills vLLM's prefix cache, each later one is served the prefix from it."""
    repo_map = "\n".join(
        f"{p.relative_to(workspace)}: "
        + ", ".join(
            line.split("(")[0][4:] for line in p.read_text().splitlines() if line.startswith("def ")
        )
        for p in sorted(workspace.rglob("*.py"))
    )
    nonce = uuid.uuid4().hex  # a prefix no earlier test sent
    prefix = PrefixCatalog().prefix_for(
        1, constitution=f"# Session {nonce}\n{constitution()}", repo_map=repo_map
    )
    session = InferenceSession(
        backend_for(live_vllm), ledger=TokenLedger(), block_size=live_vllm.block_size
    )
    tasks = ["document format_money", "add type hints to parse_quantity", "fix restock", "test"]

    async def first_turn(agent: int) -> None:
        request = ChatRequest(
            messages=shared_layout(prefix, f"Task {agent}: {tasks[agent]}"),
            max_tokens=1,
            task_id=f"t{agent}",
            agent_id=f"llm-{agent}",
        )
        await session.complete(request)

    try:
        await first_turn(0)
        await asyncio.gather(*(first_turn(agent) for agent in (1, 2, 3)))
    finally:
        await session.aclose()
    snapshot = {
        f"llm-{i}": session.ledger.task_summary(f"t{i}").agents[f"llm-{i}"] for i in range(4)
    }
    assert snapshot["llm-0"].cached_tokens == 0, snapshot
    prefix_tokens = snapshot["llm-0"].prompt_tokens - 20  # the delta is a few tokens
    for agent in ("llm-1", "llm-2", "llm-3"):
        totals = snapshot[agent]
        assert totals.unreported_cache_requests == 0  # vLLM reported prompt-token details
        assert totals.cached_tokens > 0, snapshot
        # Whole 32-token blocks of the shared prefix: all but the last partial block.
        assert totals.cached_tokens >= prefix_tokens - 2 * live_vllm.block_size, snapshot
        assert totals.cached_tokens % live_vllm.block_size == 0


async def test_a_prompt_over_the_context_window_is_refused_with_what_to_configure(
    live_vllm: ServedModel,
) -> None:
    backend = backend_for(live_vllm)
    too_long = "word " * (MAX_MODEL_LEN * 2)
    request = ChatRequest(messages=(ChatMessage("user", too_long),), max_tokens=16)
    try:
        with pytest.raises(BackendContextOverflow) as raised:
            await backend.complete(request)
    finally:
        await backend.aclose()
    assert backend.retries_made == 0  # the same prompt would overflow again: not retried
    message = str(raised.value)
    assert live_vllm.base_url in message and "context" in message.lower()
    assert "Traceback" not in message
    # The server is unharmed: the next request is answered.
    again = backend_for(live_vllm)
    try:
        done = await again.complete(
            ChatRequest(messages=(ChatMessage("user", "Say OK."),), max_tokens=4)
        )
    finally:
        await again.aclose()
    assert done.usage.prompt_tokens > 0


def write_inference_config(workspace: Path, server: ServedModel, **extra: object) -> None:
    folder = workspace / ".delegation"
    folder.mkdir(exist_ok=True)
    settings = {
        "provider": "openai",
        "base_url": server.base_url,
        "model": server.model,
        "block_size": server.block_size,
        "max_output_tokens": 200,
        "max_turns": 4,
        "timeout_s": 120,
        **extra,
    }
    lines = ["[inference]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
    (folder / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    "target",
    [
        pytest.param([], id="planned"),  # the request names the file: the planner runs
        pytest.param(["--file", TARGET], id="one-file"),  # straight to one agent
    ],
)
def test_the_cli_natural_language_path_reaches_the_model_and_ends_honestly(
    live_vllm: ServedModel, workspace: Path, target: list[str]
) -> None:
    write_inference_config(workspace, live_vllm)
    original = (workspace / TARGET).read_text()
    done = subprocess.run(
        [
            *CLI,
            "run",
            str(workspace),
            "--json",
            *target,
            "--task",
            f"add a docstring to the function format_money in {TARGET}",
        ],
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode in (0, 1), output
    report = json.loads(done.stdout)
    assert report["tokens"]["prompt_tokens"] > 0, report  # the real model was asked
    assert all(t["cached_tokens"] <= t["prompt_tokens"] for t in report["tokens"]["tasks"])
    tasks = report["tasks"]
    if done.returncode == 0:
        assert tasks and all(t["goal_met"] for t in tasks), report
        assert (workspace / TARGET).read_text() != original
        return
    # An honest failure: it says why, and nothing was half-applied.
    reasons = report["errors"] + [t["message"] for t in tasks if not t["goal_met"]]
    assert reasons and all(reasons), report
    if not any(t["state"] == "verified" for t in tasks):
        assert (workspace / TARGET).read_text() == original
