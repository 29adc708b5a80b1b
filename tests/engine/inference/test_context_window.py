"""The context window learnt from the server, and every prompt fitted to it before sending.

Against the scripted OpenAI-compatible server reporting its window like vLLM (`/v1/models`
max_model_len) or llama.cpp (`/props` n_ctx), and refusing, like vLLM, a request whose prompt
plus max_tokens exceeds it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from delegation_machine.engine.inference.backend import (
    BackendContextOverflow,
    BackendUnavailable,
    ChatMessage,
    ChatRequest,
    ContextWindow,
    RetryPolicy,
)
from delegation_machine.engine.inference.layout import OMITTED
from delegation_machine.engine.inference.openai_compat import OpenAICompatibleBackend
from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from delegation_machine.engine.inference.session import InferenceSession
from tests.engine.model_doubles import RecordingSleep

Start = Callable[..., ScriptedServer]


def session_for(
    server: ScriptedServer, *, configured: int | None = None, base_url: str | None = None
) -> InferenceSession:
    backend = OpenAICompatibleBackend(
        base_url=base_url or server.base_url,
        model=server.model,
        retry=RetryPolicy(max_retries=0),
        sleep=RecordingSleep(),
    )
    return InferenceSession(backend, context_window=configured)


def long_request(*, prefix_words: int, feedback_words: int, max_tokens: int) -> ChatRequest:
    prefix = " ".join(f"rule{i}" for i in range(prefix_words))
    return ChatRequest(
        messages=(
            ChatMessage("system", prefix, cache_breakpoint=True),
            ChatMessage("user", "# Task p1\nAdd a docstring to parse_quantity."),
            ChatMessage("assistant", " ".join(f"ramble{i}" for i in range(feedback_words))),
            ChatMessage("user", "The validation gate rejected that reply: not JSON."),
        ),
        max_tokens=max_tokens,
    )


@pytest.mark.parametrize("source", ["models", "props"])
async def test_the_window_is_learnt_from_the_server(scripted: Start, source: str) -> None:
    server = scripted([], max_model_len=2048, context_source=source)
    session = session_for(server)
    window = await session.context_window()
    await session.aclose()
    field = "max_model_len" if source == "models" else "n_ctx"
    assert window is not None and window.tokens == 2048
    assert field in window.source and str(server.port) in window.source


async def test_the_configured_window_is_used_when_the_server_reports_none(
    scripted: Start,
) -> None:
    server = scripted([])  # reports no window
    session = session_for(server, configured=4096)
    assert await session.context_window() == ContextWindow(4096, "inference.context_window")
    smaller = session_for(scripted([], max_model_len=8192), configured=4096)
    assert (await smaller.context_window()) == ContextWindow(4096, "inference.context_window")
    larger = session_for(scripted([], max_model_len=1024), configured=4096)
    assert (await larger.context_window()).tokens == 1024  # type: ignore[union-attr]
    for s in (session, smaller, larger):
        await s.aclose()


async def test_a_long_retry_is_trimmed_to_fit_and_the_server_accepts_it(
    scripted: Start,
) -> None:
    """The issue's case: a retry grown past the window would be the server's 400; trimmed, it
    is answered, with the shared prefix sent byte for byte."""
    server = scripted([ScriptedTurn(content='{"ok": true}')], max_model_len=2048)
    session = session_for(server)
    request = long_request(prefix_words=300, feedback_words=1500, max_tokens=400)
    completion = await session.complete(request)
    await session.aclose()
    assert completion.text == '{"ok": true}'
    (sent,) = server.requests
    messages = sent.body["messages"]
    assert messages[0]["content"] == request.messages[0].content
    assert messages[1]["content"] == request.messages[1].content
    assert messages[3]["content"] == request.messages[3].content
    assert OMITTED in messages[2]["content"]
    assert sent.prompt_tokens + sent.body["max_tokens"] <= 2048
    assert session.trimmed_requests == 1


async def test_the_reply_room_is_at_most_a_quarter_of_a_small_window(scripted: Start) -> None:
    server = scripted([ScriptedTurn(content="{}")], max_model_len=2048)
    session = session_for(server)
    await session.complete(long_request(prefix_words=10, feedback_words=10, max_tokens=2048))
    await session.aclose()
    assert server.requests[0].body["max_tokens"] == 512


async def test_a_prompt_that_cannot_fit_is_refused_before_sending(scripted: Start) -> None:
    server = scripted([ScriptedTurn(content="{}")], max_model_len=300)
    session = session_for(server)
    await session.complete(long_request(prefix_words=1, feedback_words=1, max_tokens=64))
    huge_prefix = ChatRequest(
        messages=(
            ChatMessage("system", "\n".join(["constitution"] * 400), cache_breakpoint=True),
            ChatMessage("user", "task"),
        ),
        max_tokens=64,
    )
    with pytest.raises(BackendContextOverflow) as caught:
        await session.complete(huge_prefix)
    await session.aclose()
    message = str(caught.value)
    assert "does not fit the model's context window of 300 tokens" in message
    assert "max_model_len reported by" in message and "Nothing was sent" in message
    assert "inference.context_window" in message and "--max-model-len" in message
    assert not caught.value.retryable
    assert len(server.requests) == 1  # the one that fitted; the refused one never left


async def test_an_unreachable_server_is_still_the_clear_unreachable_error(
    scripted: Start,
) -> None:
    server = scripted([])
    url = server.base_url
    server.stop()
    session = session_for(server, base_url=url)
    with pytest.raises(BackendUnavailable, match="not reachable"):
        await session.complete(long_request(prefix_words=1, feedback_words=1, max_tokens=8))
    await session.aclose()


async def test_a_denser_tokenizer_is_learnt_from_usage_and_prompts_fit_tighter(
    scripted: Start,
) -> None:
    """The server counts 1.5 tokens per token of ours: after one answer the session fits to
    that, and the long prompt is accepted the first time."""
    server = scripted([ScriptedTurn(content="{}")] * 2, max_model_len=2048, token_scale=1.5)
    session = session_for(server)
    await session.complete(long_request(prefix_words=50, feedback_words=10, max_tokens=16))
    assert session.token_ratio == pytest.approx(1.5, abs=0.05)
    await session.complete(long_request(prefix_words=300, feedback_words=1500, max_tokens=400))
    await session.aclose()
    assert len(server.requests) == 2  # no refusal
    sent = server.requests[-1]
    assert sent.prompt_tokens + sent.body["max_tokens"] <= 2048
    assert OMITTED in sent.body["messages"][2]["content"]


async def test_a_refusal_by_a_denser_tokenizer_is_learnt_from_and_fitted_once_more(
    scripted: Start,
) -> None:
    """Unlearnt, the prompt fitted to our count is the server's 400; the session reads the
    server's count from the refusal, fits tighter and is answered."""
    turns = [ScriptedTurn(content="{}")] * 2
    server = scripted(turns, max_model_len=2048, token_scale=1.5)
    session = session_for(server)
    long = long_request(prefix_words=300, feedback_words=1500, max_tokens=400)
    completion = await session.complete(long)
    await session.aclose()
    assert completion.text == "{}"
    refused, answered = server.requests
    assert refused.prompt_tokens + refused.body["max_tokens"] > 2048  # the server's 400
    assert answered.prompt_tokens + answered.body["max_tokens"] <= 2048
    assert 1.5 <= session.token_ratio <= 1.6


async def test_a_refusal_of_a_prompt_that_cannot_shrink_is_not_sent_again(
    scripted: Start,
) -> None:
    """A one-message prompt has nothing to cut: refitted it cannot fit and is refused here."""
    server = scripted([ScriptedTurn(content="{}")] * 2, max_model_len=512, token_scale=2.0)
    session = session_for(server)
    request = ChatRequest(
        messages=(ChatMessage("system", " ".join(["rule"] * 300), cache_breakpoint=True),),
        max_tokens=64,
    )
    with pytest.raises(BackendContextOverflow, match="maximum context length is 512") as caught:
        await session.complete(request)
    await session.aclose()
    assert caught.value.status == 400 and "--max-model-len" in str(caught.value)
    assert len(server.requests) == 1  # the server's refusal; the refit was not sent


async def test_a_window_named_only_in_a_refusal_is_learnt_and_fitted_to(scripted: Start) -> None:
    """A server that reports no window (a proxy) but names it when it refuses: the session
    takes it from the refusal, fits the prompt to it, and is answered."""
    turns = [ScriptedTurn(content="{}")] * 2
    server = scripted(turns, max_model_len=2048, context_source="none")
    session = session_for(server)
    assert await session.context_window() is None
    long = long_request(prefix_words=300, feedback_words=1500, max_tokens=400)
    assert (await session.complete(long)).text == "{}"
    window = await session.context_window()
    await session.aclose()
    assert window is not None and window.tokens == 2048 and "refusal" in window.source
    refused, answered = server.requests
    assert refused.prompt_tokens + refused.body["max_tokens"] > 2048
    assert answered.prompt_tokens + answered.body["max_tokens"] <= 2048
    assert OMITTED in answered.body["messages"][2]["content"]
