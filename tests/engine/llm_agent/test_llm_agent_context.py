"""The LLM agent on a model with a small context window (like SmolLM2's 2,048 tokens on
llama.cpp): its reply room, its repo map sized to the window and shared by every agent, a turn
cut off at the cap retried, and a prompt that cannot fit failing before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.agents.llm import ACTION_REPLY_TOKENS, LLMAgent
from delegation_machine.engine.agents.llm_tools import repo_map_budget
from delegation_machine.engine.inference.backend import RetryPolicy
from delegation_machine.engine.inference.layout import PrefixCatalog
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.protocol import Event

from .conftest import make_work

Start = Callable[..., ScriptedServer]
FINISH = ScriptedTurn(content=json.dumps({"tool": "finish", "summary": "nothing to do"}))


def session_for(server: ScriptedServer, configured: int | None = None) -> InferenceSession:
    backend = OpenAICompatibleBackend(
        base_url=server.base_url, model=server.model, retry=RetryPolicy(max_retries=0)
    )
    return InferenceSession(backend, context_window=configured)


@pytest.fixture
def big_index(workspace: Path) -> SymbolIndex:
    for n in range(120):
        body = "".join(f"def helper_{n}_{k}(value):\n    return value + {k}\n\n" for k in range(6))
        (workspace / f"module_{n:03}.py").write_text(body, encoding="utf-8")
    built = SymbolIndex(workspace)
    built.build()
    return built


async def test_a_small_window_sizes_reply_and_repo_map_the_same_for_every_agent(
    scripted: Start, workspace: Path, big_index: SymbolIndex
) -> None:
    server = scripted([FINISH, FINISH], max_model_len=2048)
    session, prefixes = session_for(server), PrefixCatalog()
    for agent_id in ("a1", "a2"):
        agent = LLMAgent(agent_id, session, prefixes=prefixes, max_output_tokens=4096)
        await agent.run(make_work(workspace, big_index, task_id=f"p1.{agent_id[-1]}"))
    await session.aclose()
    first, second = (r.body for r in server.requests)
    assert first["max_tokens"] == second["max_tokens"] == 512  # a quarter of 2,048
    assert first["messages"][0] == second["messages"][0]  # one shared prefix
    assert "helper_" in first["messages"][0]["content"]
    sent_map = first["messages"][0]["content"].split("# Repository map\n", 1)[1]
    assert session.tokenizer.count(sent_map) <= repo_map_budget(2048) == 256
    wide = LLMAgent("a3", session).prefix_for(make_work(workspace, big_index), None)
    assert session.tokenizer.count(wide.repo_map) > 4 * repo_map_budget(2048)  # unbounded
    assert all(r.prompt_tokens + 512 <= 2048 for r in server.requests)


async def test_without_a_known_window_the_action_reply_room_applies(
    scripted: Start, workspace: Path, big_index: SymbolIndex
) -> None:
    server = scripted([FINISH])
    session = session_for(server)
    await LLMAgent("a1", session, max_output_tokens=4096).run(make_work(workspace, big_index))
    await session.aclose()
    assert server.requests[0].body["max_tokens"] == ACTION_REPLY_TOKENS


async def test_a_turn_cut_at_the_cap_is_asked_again(
    scripted: Start, workspace: Path, big_index: SymbolIndex
) -> None:
    ramble = ScriptedTurn(
        content='{"tool": "finish", "summary": "fini shi fini', finish_reason="length"
    )
    server = scripted([ramble, FINISH], max_model_len=2048)
    session = session_for(server)
    agent = LLMAgent("a1", session)
    result = await agent.run(make_work(workspace, big_index))
    await session.aclose()
    assert result.notes == "nothing to do"
    assert agent.last_stats is not None and agent.last_stats.validation_retries == 1
    assert "cut off at its limit of 512" in server.requests[1].body["messages"][-1]["content"]


async def test_a_prompt_that_cannot_fit_fails_the_task_before_sending(
    scripted: Start, workspace: Path, index: SymbolIndex
) -> None:
    server = scripted([FINISH])
    session = session_for(server, configured=512)  # smaller than the constitution
    events: list[Event] = []
    agent = LLMAgent("a1", session, trajectory=events.append)
    with pytest.raises(AgentFailure, match="does not fit the model's context window of 512"):
        await agent.run(make_work(workspace, index))
    await session.aclose()
    assert server.requests == []  # nothing was sent
    (failed,) = [e for e in events if e.kind == "model.failed"]
    assert failed.payload["error"] == "BackendContextOverflow"
    assert "inference.context_window" in str(failed.payload["reason"])
    assert failed.payload["retryable"] is False
