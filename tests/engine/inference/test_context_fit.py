"""Prompts fitted to the model's context window: the pure layout rule, as a property.

For any sizes of shared prefix, task delta and feedback of earlier attempts, the fitted prompt
fits the window with the reply's room, the shared prefix is sent unchanged (or the prompt is refused
as not fitting), and trimming goes oldest first: a message is cut only once every message
before it in the trim order is down to its marker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from delegation_machine.engine.inference.backend import (
    BackendContextOverflow,
    BackendUsage,
    ChatMessage,
    ChatRequest,
    Completion,
    ContextWindow,
    StreamDelta,
)
from delegation_machine.engine.inference.layout import (
    OMITTED,
    PromptDoesNotFit,
    fit_messages,
    prompt_limit,
    reply_room,
    trim_order,
)
from delegation_machine.engine.inference.session import InferenceSession
from delegation_machine.engine.inference.tokens import ApproxTokenizer, ChatTurnText, render_chat

TOKENIZER = ApproxTokenizer()


def count(message: ChatMessage) -> int:
    return len(TOKENIZER.encode(render_chat([ChatTurnText(message.role, message.content)])))


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n)) + "\n"


def prompt(prefix_words: int, delta_words: int, feedback: list[int]) -> list[ChatMessage]:
    messages = [
        ChatMessage("system", words(prefix_words, "rule"), cache_breakpoint=True),
        ChatMessage("user", "# Task t1\n" + words(delta_words, "delta")),
    ]
    for n, size in enumerate(feedback):
        role = "assistant" if n % 2 == 0 else "user"
        messages.append(ChatMessage(role, words(size, f"attempt{n}x")))
    return messages


def marker(message: ChatMessage) -> ChatMessage:
    return ChatMessage(message.role, f"[… {len(message.content)} characters omitted {OMITTED} …]")


def reduced(before: ChatMessage, after: ChatMessage) -> bool:
    """Cut to its marker, or already no longer than its marker (nothing to gain)."""
    return is_marker_only(after) or (after == before and count(before) <= count(marker(before)))


def is_marker_only(message: ChatMessage) -> bool:
    return message.content.startswith("[… ") and message.content.endswith(f"{OMITTED} …]")


@settings(max_examples=200, deadline=None)
@given(
    prefix_words=st.integers(0, 200),
    delta_words=st.integers(0, 600),
    feedback=st.lists(st.integers(0, 500), max_size=6),
    window=st.integers(256, 4096),
    max_tokens=st.integers(1, 2048),
)
def test_the_fitted_prompt_fits_keeps_the_prefix_and_trims_oldest_first(
    prefix_words: int, delta_words: int, feedback: list[int], window: int, max_tokens: int
) -> None:
    messages = prompt(prefix_words, delta_words, feedback)
    reply = reply_room(window, max_tokens)
    limit = prompt_limit(window, reply)
    assert reply <= max_tokens and limit + reply <= window
    order = trim_order(messages)
    markers_only = count(messages[0]) + sum(min(count(m), count(marker(m))) for m in messages[1:])
    try:
        fitted = fit_messages(messages, limit=limit, count=count)
    except PromptDoesNotFit as exc:
        event("does not fit")
        assert exc.minimum_tokens > limit
        assert markers_only > limit  # the prefix and the markers alone exceed the limit
        return
    event(f"{len(fitted.trimmed)} trimmed")
    assert fitted.tokens == sum(count(m) for m in fitted.messages) <= limit
    if sum(count(m) for m in messages) <= limit:
        assert fitted.messages == tuple(messages) and not fitted.trimmed
    assert fitted.messages[0] == messages[0]  # the shared prefix, byte for byte
    changed = [n for n in order if fitted.messages[n] != messages[n]]
    if changed:  # oldest first: all before the last one cut are down to their marker
        last = order.index(changed[-1])
        assert all(reduced(messages[n], fitted.messages[n]) for n in order[:last])
    for n, (before, after) in enumerate(zip(messages, fitted.messages, strict=True)):
        assert after.role == before.role and after.cache_breakpoint == before.cache_breakpoint
        if after != before and not is_marker_only(after):
            kept = (
                after.content.split(" …]\n", 1)[1]
                if n >= 2
                else after.content.rsplit("\n[… ", 1)[0]
            )
            # earlier attempts keep their newest end; the delta and the prefix keep their head
            assert before.content.endswith(kept) if n >= 2 else before.content.startswith(kept)


def test_trim_order_is_feedback_oldest_first_then_delta_then_prefix() -> None:
    messages = prompt(5, 5, [5, 5, 5])
    assert trim_order(messages) == [2, 3, 4, 1]


def test_an_early_failed_reply_goes_before_the_task() -> None:
    """The issue's planner retry: a 1,024-token ramble appended; it is cut, the task is not."""
    messages = prompt(300, 120, [1024, 40])
    limit = sum(count(m) for m in (messages[0], messages[1], messages[3])) + 150
    fitted = fit_messages(messages, limit=limit, count=count)
    assert fitted.messages[:2] == tuple(messages[:2])
    assert fitted.messages[3] == messages[3]  # the latest feedback is whole
    assert fitted.messages[2].content.startswith("[… ") and "earlier characters" in (
        fitted.messages[2].content
    )
    assert fitted.messages[2].content.endswith(messages[2].content[-150:])  # its newest end
    assert fitted.tokens <= limit
    assert fitted.trimmed == (2,)


def test_a_window_too_small_for_even_the_markers_does_not_fit() -> None:
    messages = prompt(2000, 10, [30])
    with pytest.raises(PromptDoesNotFit) as caught:
        fit_messages(messages, limit=20, count=count)
    assert caught.value.prefix_tokens > 2000 and caught.value.minimum_tokens > 20


class WindowBackend:
    """A backend with a context window that records what it is sent (no network)."""

    provider = "fake"
    model = "m"
    supports_guided_json = False

    def __init__(self, window: int) -> None:
        self.window = window
        self.sent: list[ChatRequest] = []

    async def context_window(self) -> ContextWindow:
        return ContextWindow(self.window, "the test")

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        raise NotImplementedError

    async def complete(self, request: ChatRequest) -> Completion:
        self.sent.append(request)
        return Completion(text="{}", usage=BackendUsage())

    async def aclose(self) -> None:
        return None


@settings(max_examples=100, deadline=None)
@given(
    prefix_words=st.integers(0, 200),
    delta_words=st.integers(0, 600),
    feedback=st.lists(st.integers(0, 500), max_size=4),
    window=st.integers(256, 8192),
    max_tokens=st.integers(1, 4096),
)
def test_what_the_session_sends_fits_the_window_with_its_reply(
    prefix_words: int, delta_words: int, feedback: list[int], window: int, max_tokens: int
) -> None:
    backend = WindowBackend(window)
    session = InferenceSession(backend)
    request = ChatRequest(
        messages=tuple(prompt(prefix_words, delta_words, feedback)), max_tokens=max_tokens
    )
    try:
        asyncio.run(session.complete(request))
    except BackendContextOverflow as exc:
        assert backend.sent == [] and "Nothing was sent" in str(exc)
        event("refused")
        return
    (sent,) = backend.sent
    assert sent.max_tokens <= max_tokens
    assert len(session.prompt_tokens(sent)) + sent.max_tokens <= window
    assert sent.messages[0] == request.messages[0]
    event("trimmed" if sent.messages != request.messages else "whole")
