"""The Anthropic Messages backend against the scripted server's /v1/messages route."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from delegation_machine.engine.inference.anthropic import AnthropicBackend
from delegation_machine.engine.inference.backend import BackendRefused, ChatMessage, ChatRequest
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from tests.engine.model_doubles import RecordingSleep


def _request(task: str) -> ChatRequest:
    return ChatRequest(
        messages=(
            ChatMessage("system", "constitution and repo map " * 40, cache_breakpoint=True),
            ChatMessage("user", task),
        )
    )


async def test_cache_control_breakpoint_and_cache_read_tokens(
    scripted: Callable[..., ScriptedServer],
    backoff: RecordingSleep,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DM_TEST_ANTHROPIC", "ak-test-91b2c3d4e5")
    server = scripted([ScriptedTurn(content="one"), ScriptedTurn(content="two")])
    backend = AnthropicBackend(
        model="claude-test",
        base_url=server.anthropic_base_url,
        api_key_env="DM_TEST_ANTHROPIC",
        sleep=backoff,
    )
    first = await backend.complete(_request("task A"))
    second = await backend.complete(_request("task B"))
    await backend.aclose()
    body = server.requests[0].body
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in body["messages"][0]["content"][0]
    assert body["stream"] is True
    assert (first.text, second.text) == ("one", "two")
    assert first.usage.cached_tokens == 0
    # The second call reads the whole prefix up to the breakpoint from the cache.
    assert second.usage.cached_tokens == server.requests[1].cached_tokens > 0
    assert second.usage.prompt_tokens == server.requests[1].prompt_tokens
    assert second.usage.output_tokens == 1
    assert server.requests[1].had_credentials


async def test_refusal_message_is_clear(
    scripted: Callable[..., ScriptedServer], backoff: RecordingSleep
) -> None:
    server = scripted([ScriptedTurn(status=404, error="model not found")])
    backend = AnthropicBackend(
        model="nope", base_url=server.anthropic_base_url, api_key_env=None, sleep=backoff
    )
    with pytest.raises(BackendRefused, match=r"HTTP 404.*model not found.*base_url and model"):
        await backend.complete(_request("x"))
    await backend.aclose()
